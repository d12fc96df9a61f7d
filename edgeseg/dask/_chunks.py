"""Chunk geometry and the two per-chunk steps of :func:`edgeseg.dask.segment_array` (numpy only).

Step 1 (:func:`candidates`), once per chunk: the chunk is segmented with ``overlap`` px of its
neighbours around it (its *extended* box). Instances that reach within 2 px of an inner edge of
the extended box are taken as cut and dropped (the neighbour that sees them whole keeps them); the others are *candidates*,
each with a priority: the distance from its centroid to the nearest inner edge of the extended
box, i.e. how much context the network had around it. A nucleus that lies in the overlap of two
chunks is a candidate in both.

Step 2 (:func:`assemble`), once per output chunk: the candidates of the 3 x 3 neighbouring chunks
that reach the chunk's *core* (its own pixels) are resolved:

* a candidate is dropped when it and a candidate of another chunk with a higher priority overlap
  by at least 30% of the smaller one (the same nucleus seen twice, or one chunk's fragment or
  merge of it): exactly one copy of each nucleus
  survives, the one whose chunk saw it with the most context -- the chunk whose core holds its
  centroid (ties: the lower chunk index). The rule is pairwise, so every output chunk that sees a
  candidate decides the same, with no chain of decisions to follow across the image;
* the survivors are painted in increasing priority (where two overlap, the higher one wins).

A candidate keeps the id ``chunk index * stride + its id in its chunk``: unique over the whole
array without any pass over it. Consistency needs nuclei smaller than ``overlap`` and chunks of at
least ``4 * overlap``, both checked or warned about.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..postprocess import InstanceTable, instance_table

__all__ = ["Candidates", "Layout", "assemble", "candidates", "concat_tables", "split_axis"]

log = logging.getLogger(__name__)

INT32_MAX = np.iinfo(np.int32).max
_EDGE = 2  # px: an instance this close to an inner edge of the extended box counts as cut
_DUPLICATE = 0.3  # two candidates overlapping by this much of the smaller one: the same nucleus


def split_axis(length: int, chunk: int) -> tuple[int, ...]:
    """Chunk sizes along one axis: ``chunk`` each, the remainder merged into the last one (so no
    chunk is smaller than ``chunk``, unless the axis itself is)."""
    n = max(1, length // chunk)
    return (chunk,) * (n - 1) + (length - chunk * (n - 1),)


@dataclass(frozen=True)
class Layout:
    """The chunk grid of an H x W array: row and column chunk sizes, and the overlap in px."""

    rows: tuple[int, ...]
    cols: tuple[int, ...]
    overlap: int

    @property
    def shape(self) -> tuple[int, int]:
        return sum(self.rows), sum(self.cols)

    @property
    def grid(self) -> tuple[int, int]:
        return len(self.rows), len(self.cols)

    @property
    def stride(self) -> int:
        """Ids per chunk: chunk ``k``'s candidates get ids ``k * stride + 1 .. k * stride + stride - 1``."""
        return INT32_MAX // (len(self.rows) * len(self.cols))

    def index(self, i: int, j: int) -> int:
        return i * len(self.cols) + j

    def core(self, i: int, j: int) -> tuple[int, int, int, int]:
        """(y0, y1, x0, x1) of chunk (i, j)'s own pixels."""
        y0, x0 = sum(self.rows[:i]), sum(self.cols[:j])
        return y0, y0 + self.rows[i], x0, x0 + self.cols[j]

    def extended(self, i: int, j: int) -> tuple[int, int, int, int]:
        """The core grown by ``overlap`` on each side, clipped to the array."""
        return self.grow(self.core(i, j), self.overlap)

    def grow(self, box: tuple[int, int, int, int], by: int) -> tuple[int, int, int, int]:
        h, w = self.shape
        y0, y1, x0, x1 = box
        return max(0, y0 - by), min(h, y1 + by), max(0, x0 - by), min(w, x1 + by)


@dataclass(frozen=True)
class Candidates:
    """Step 1's result for one chunk: the whole instances of its extended box.

    ``labels``: the extended box's labels (local ids, cut instances removed; uint16 or int32).
    Per candidate (sorted by local id): ``ids`` (local), ``priority``, ``area``, ``score``
    (mean foreground probability) and ``intensity`` (mean image intensity) from the chunk.
    """

    box: tuple[int, int, int, int]
    origin: int
    labels: np.ndarray
    ids: np.ndarray
    priority: np.ndarray
    area: np.ndarray
    score: np.ndarray
    intensity: np.ndarray


def candidates(layout: Layout, i: int, j: int, labels: np.ndarray, table: InstanceTable) -> Candidates:
    """Step 1 after the network: keep the instances of chunk (i, j)'s extended box that are whole.

    ``labels`` / ``table``: the segmentation of the extended box (``Segmenter.segment``)."""
    box = layout.extended(i, j)
    y0, y1, x0, x1 = box
    h, w = layout.shape
    if labels.shape != (y1 - y0, x1 - x0):
        raise ValueError(f"chunk ({i}, {j}): labels of shape {labels.shape}, expected {(y1 - y0, x1 - x0)}")
    n = int(labels.max()) if labels.size else 0
    if n >= layout.stride:
        from ..errors import DataError
        raise DataError(f"chunk ({i}, {j}) holds {n} nuclei, more than the {layout.stride - 1} ids "
                        f"a chunk gets with {layout.grid[0] * layout.grid[1]} chunks in int32; use "
                        "larger chunks")
    # inner edges: an instance touching one is cut (the array's own border cuts nothing)
    e = _EDGE
    edges = [b.ravel() for b, inner in ((labels[:e], y0 > 0), (labels[-e:], y1 < h),
                                        (labels[:, :e], x0 > 0), (labels[:, -e:], x1 < w)) if inner]
    cut = np.unique(np.concatenate(edges)) if edges else np.zeros(0, labels.dtype)
    keep = np.ones(n + 1, bool)
    keep[0] = False
    keep[cut] = False
    ids = table.id.astype(np.int64)
    sel = keep[ids]
    cy = table.centroid[sel, 0] + y0
    cx = table.centroid[sel, 1] + x0
    inf = np.inf
    priority = np.minimum.reduce([cy - y0 if y0 > 0 else np.full(cy.shape, inf),
                                  y1 - cy if y1 < h else np.full(cy.shape, inf),
                                  cx - x0 if x0 > 0 else np.full(cx.shape, inf),
                                  x1 - cx if x1 < w else np.full(cx.shape, inf)])
    big = table.bbox[sel]
    big = ((big[:, 2] - big[:, 0]) > layout.overlap) | ((big[:, 3] - big[:, 1]) > layout.overlap)
    if big.any():
        log.warning("chunk (%d, %d): %d nuclei are larger than overlap=%d px; they may be cut or "
                    "duplicated at chunk seams: raise overlap", i, j, int(big.sum()), layout.overlap)
    lut = np.where(keep, np.arange(n + 1), 0).astype(np.uint16 if n < 65536 else np.int32)
    return Candidates(box=box, origin=layout.index(i, j), labels=lut[labels], ids=ids[sel],
                      priority=priority, area=table.area[sel].astype(np.int64),
                      score=table.score[sel].astype(np.float64),
                      intensity=table.intensity[sel].astype(np.float64))


def _intersect(a: tuple[int, int, int, int], b: tuple[int, int, int, int]):
    y0, y1, x0, x1 = max(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), min(a[3], b[3])
    return (y0, y1, x0, x1) if y0 < y1 and x0 < x1 else None


def _crop(c: Candidates, box: tuple[int, int, int, int]) -> np.ndarray:
    y0, x0 = c.box[0], c.box[2]
    return c.labels[box[0] - y0:box[1] - y0, box[2] - x0:box[3] - x0]


def assemble(layout: Layout, i: int, j: int, parts: list[Candidates]
             ) -> tuple[np.ndarray, InstanceTable]:
    """Step 2: the int32 labels of chunk (i, j)'s core and the rows of the instances whose
    centroid lies in it, from the candidates of the chunk and its neighbours (``parts``)."""
    core = layout.core(i, j)
    canvas = layout.grow(core, 2 * layout.overlap)
    parts = [p for p in parts if _intersect(p.box, canvas) is not None]
    # 1. of two candidates of different chunks overlapping by half the smaller one, drop the lower
    dropped = [np.zeros(len(p.ids) + 1, bool) for p in parts]
    where = [{int(v): k for k, v in enumerate(p.ids)} for p in parts]
    for a in range(len(parts)):
        for b in range(a + 1, len(parts)):
            box = _intersect(_intersect(parts[a].box, parts[b].box) or (0, 0, 0, 0), canvas)
            if box is None:
                continue
            la, lb = _crop(parts[a], box).ravel(), _crop(parts[b], box).ravel()
            both = (la > 0) & (lb > 0)
            if not both.any():
                continue
            pairs, counts = np.unique(la[both].astype(np.int64) << 32 | lb[both].astype(np.int64),
                                      return_counts=True)
            for pair, count in zip(pairs.tolist(), counts.tolist()):
                ka, kb = where[a][pair >> 32], where[b][pair & 0xFFFFFFFF]
                pa, pb = parts[a], parts[b]
                a_wins = (pa.priority[ka], -pa.origin) > (pb.priority[kb], -pb.origin)
                if count >= _DUPLICATE * min(pa.area[ka], pb.area[kb]):
                    loser, k = (b, kb) if a_wins else (a, ka)
                    dropped[loser][k + 1] = True
    # 2. paint the survivors, higher priority last; ranks index them in that order
    prio = np.concatenate([p.priority for p in parts] + [np.zeros(0)])
    origin = np.concatenate([np.full(len(p.ids), p.origin) for p in parts] + [np.zeros(0, int)])
    gid = np.concatenate([p.origin * layout.stride + p.ids for p in parts] + [np.zeros(0, np.int64)])
    alive = np.concatenate([~d[1:] for d in dropped] + [np.zeros(0, bool)])
    order = np.lexsort((-origin, prio))  # ascending: the last one painted wins
    rank = np.zeros(len(prio), np.int64)
    rank[order] = np.arange(1, len(prio) + 1)
    rank[~alive] = 0
    by_rank = np.zeros(len(prio) + 1, np.int64)
    by_rank[rank[alive]] = gid[alive]
    cy0, cy1, cx0, cx1 = canvas
    best = np.zeros((cy1 - cy0, cx1 - cx0), np.int64)
    start = 0
    for p in parts:
        box = _intersect(p.box, canvas)
        lut = np.zeros(int(p.ids.max(initial=0)) + 1, np.int64)
        lut[p.ids] = rank[start:start + len(p.ids)]
        start += len(p.ids)
        view = best[box[0] - cy0:box[1] - cy0, box[2] - cx0:box[3] - cx0]
        np.maximum(view, lut[_crop(p, box)], out=view)
    painted = by_rank[best].astype(np.int32)
    # 3. the rows of the instances whose centroid is in the core (measured on the painted canvas)
    table = instance_table(painted)
    cy, cx = table.centroid[:, 0] + cy0, table.centroid[:, 1] + cx0
    own = (cy >= core[0]) & (cy < core[1]) & (cx >= core[2]) & (cx < core[3])
    score = dict(zip(gid.tolist(), np.concatenate([p.score for p in parts] + [np.zeros(0)]).tolist()))
    inten = dict(zip(gid.tolist(), np.concatenate([p.intensity for p in parts] + [np.zeros(0)]).tolist()))
    ids = table.id[own]
    rows = InstanceTable(
        id=ids, area=table.area[own],
        bbox=table.bbox[own] + np.array([cy0, cx0, cy0, cx0]),
        centroid=np.stack([cy[own], cx[own]], axis=1),
        score=np.array([score[v] for v in ids.tolist()], np.float64),
        intensity=np.array([inten[v] for v in ids.tolist()], np.float64))
    y0, y1, x0, x1 = core
    return np.ascontiguousarray(painted[y0 - cy0:y1 - cy0, x0 - cx0:x1 - cx0]), rows


def concat_tables(tables: list[InstanceTable]) -> InstanceTable:
    """One table from the chunks' tables, sorted by id."""
    cols = {name: np.concatenate([getattr(t, name) for t in tables])
            for name in ("id", "area", "bbox", "centroid", "score", "intensity")}
    order = np.argsort(cols["id"], kind="stable")
    return InstanceTable(**{k: v[order] for k, v in cols.items()})

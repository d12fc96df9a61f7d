"""The seam rule of edgeseg.dask (numpy only, no dask needed): chunks that each see the nuclei of
their extended box -- identically, or with per-chunk differences -- stitch into one labelling with
every nucleus exactly once, whole, under an id no other nucleus has."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from edgeseg.dask._chunks import Layout, assemble, candidates, concat_tables, split_axis
from edgeseg.postprocess import instance_table


def discs(shape: tuple[int, int], n: int, rmax: int, seed: int) -> np.ndarray:
    """Non-overlapping discs of radius 2..rmax (1-pixel gaps), ids 1..k."""
    rng = np.random.default_rng(seed)
    out = np.zeros(shape, np.int32)
    k = 0
    for _ in range(n * 4):
        r = int(rng.integers(2, rmax + 1))
        y, x = int(rng.integers(0, shape[0])), int(rng.integers(0, shape[1]))
        disc = np.zeros(shape, np.uint8)
        cv2.circle(disc, (x, y), r, 1, -1)
        grown = cv2.dilate(disc, np.ones((3, 3), np.uint8))
        if (out[grown > 0] == 0).all():
            k += 1
            out[disc > 0] = k
        if k == n:
            break
    return out


def shift(mask: np.ndarray, axis: int, by: int) -> np.ndarray:
    """``mask`` moved by one pixel along ``axis`` (no wrap-around)."""
    out = np.zeros_like(mask)
    src = [slice(None)] * 2
    dst = [slice(None)] * 2
    src[axis], dst[axis] = (slice(0, -1), slice(1, None)) if by > 0 else (slice(1, None), slice(0, -1))
    out[tuple(dst)] = mask[tuple(src)]
    return out


def chunk_view(truth: np.ndarray, layout: Layout, i: int, j: int, rng: np.random.Generator | None):
    """What chunk (i, j) 'segments': the truth in its extended box, locally renumbered; with ``rng``
    some nuclei are eroded or shifted by a pixel (the same nucleus seen differently)."""
    y0, y1, x0, x1 = layout.extended(i, j)
    crop = truth[y0:y1, x0:x1]
    ids = np.unique(crop[crop > 0])
    local = np.zeros_like(crop)
    for k, v in enumerate(ids, start=1):
        mask = (crop == v).astype(np.uint8)
        inner = mask[1:-1, 1:-1].sum() == mask.sum()  # not cut by the box
        if rng is not None and rng.random() < 0.5 and inner:
            if rng.random() < 0.5:
                eroded = cv2.erode(mask, np.ones((3, 3), np.uint8))
                mask = eroded if eroded.sum() >= 0.5 * mask.sum() else mask
            else:
                mask = shift(mask, int(rng.integers(0, 2)), int(rng.choice([-1, 1])))
        local[(mask > 0) & (local == 0)] = k
    return local, instance_table(local)


def stitch(truth: np.ndarray, layout: Layout, rng: np.random.Generator | None):
    ni, nj = layout.grid
    first = [[candidates(layout, i, j, *chunk_view(truth, layout, i, j, rng)) for j in range(nj)]
             for i in range(ni)]
    out = np.zeros(truth.shape, np.int32)
    tables = []
    for i in range(ni):
        for j in range(nj):
            parts = [first[a][b] for a in range(max(0, i - 1), min(ni, i + 2))
                     for b in range(max(0, j - 1), min(nj, j + 2))]
            lab, tab = assemble(layout, i, j, parts)
            y0, y1, x0, x1 = layout.core(i, j)
            out[y0:y1, x0:x1] = lab
            tables.append(tab)
    return out, concat_tables(tables)


def check_stitched(truth: np.ndarray, out: np.ndarray, table) -> None:
    ids = np.unique(out[out > 0])
    # the table: one row per id, measured on the stitched labels
    assert table.id.tolist() == ids.tolist()
    assert table.area.tolist() == [int((out == v).sum()) for v in ids]
    for v in ids:  # each id is one connected nucleus
        n, _ = cv2.connectedComponents((out == v).astype(np.uint8), connectivity=8)
        assert n == 2, f"id {v} has {n - 1} separate parts"
    # each nucleus of the truth is found exactly once (one id covers most of it; no second copy)
    for t in np.unique(truth[truth > 0]):
        m = truth == t
        hits, counts = np.unique(out[m], return_counts=True)
        hits, counts = hits[hits != 0], counts[hits != 0]
        assert hits.size and counts.max() >= 0.4 * m.sum(), f"nucleus {t} lost"  # erosion: >= 50%
        best = hits[np.argmax(counts)]
        other = counts[hits != best]
        assert other.sum() <= 0.25 * m.sum(), f"nucleus {t} split over ids {hits}"
    assert len(ids) == len(np.unique(truth[truth > 0])), "a nucleus was duplicated or lost"


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2 ** 16), chunk=st.sampled_from([48, 56, 80]), perturb=st.booleans())
@example(seed=0, chunk=48, perturb=True)
def test_stitching_keeps_each_nucleus_once(seed: int, chunk: int, perturb: bool) -> None:
    truth = discs((150, 190), 140, 5, seed)
    layout = Layout(split_axis(150, chunk), split_axis(190, chunk), overlap=12)
    out, table = stitch(truth, layout, np.random.default_rng(seed) if perturb else None)
    check_stitched(truth, out, table)
    if not perturb:  # chunks that agree stitch into the truth itself, up to the ids
        pairs = np.unique(np.stack([truth.ravel(), out.ravel()]), axis=1)
        assert pairs.shape[1] == len(np.unique(truth))  # a bijection between ids (and 0 -> 0)


def test_ids_are_unique_across_chunks_without_a_global_pass() -> None:
    layout = Layout(split_axis(300, 64), split_axis(300, 64), overlap=16)
    assert layout.grid == (4, 4) and layout.rows == (64, 64, 64, 108)
    assert layout.stride * 16 <= np.iinfo(np.int32).max
    truth = discs((300, 300), 300, 6, 3)
    out, _ = stitch(truth, layout, None)
    ids = np.unique(out[out > 0])
    assert (ids // layout.stride).max() <= 15 and len(set((ids // layout.stride).tolist())) > 1


def test_split_axis_merges_the_remainder() -> None:
    assert split_axis(4096, 1024) == (1024,) * 4
    assert split_axis(5000, 1024) == (1024, 1024, 1024, 1928)
    assert split_axis(500, 1024) == (500,)


def test_too_many_nuclei_for_the_id_space_is_an_error() -> None:
    from edgeseg.errors import DataError

    layout = Layout((8,) * 4000, (8,) * 4000, overlap=0)  # 16 M chunks: 134 ids each
    labels = np.arange(64, dtype=np.int32).reshape(8, 8) + 100
    with pytest.raises(DataError, match="larger chunks"):
        candidates(layout, 0, 0, labels, instance_table(labels))

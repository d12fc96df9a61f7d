"""Per-instance measurements of a label image: :class:`InstanceTable`, :func:`instance_table`.

One pass over the labelled pixels, a row block at a time (bounded temporaries on large
frames): area, bounding box, centroid, mean foreground probability and mean intensity per id.
:mod:`edgeseg.postprocess_torch` measures the same on a device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InputError
from .tiling import row_blocks

__all__ = ["InstanceTable", "instance_table"]


@dataclass(frozen=True)
class InstanceTable:
    """Per-instance measurements, one row per nucleus, as columns (numpy arrays of length N).

    ``bbox`` rows are (y0, x0, y1, x1) with y1/x1 exclusive; ``centroid`` rows are (y, x);
    ``score`` is the mean foreground probability (1 - P(background)) over the instance, or NaN
    when no probabilities were given; ``intensity`` the mean image intensity (NaN without image).
    """

    id: np.ndarray
    area: np.ndarray
    bbox: np.ndarray
    centroid: np.ndarray
    score: np.ndarray
    intensity: np.ndarray

    def __len__(self) -> int:
        return int(self.id.shape[0])

    COLUMNS = ("id", "area", "y0", "x0", "y1", "x1", "centroid_y", "centroid_x", "score", "intensity")

    def rows(self) -> list[dict[str, Any]]:
        """One dict per instance with plain Python numbers (for CSV/JSON)."""
        out = []
        for i in range(len(self)):
            y0, x0, y1, x1 = (int(v) for v in self.bbox[i])
            out.append({
                "id": int(self.id[i]), "area": int(self.area[i]),
                "y0": y0, "x0": x0, "y1": y1, "x1": x1,
                "centroid_y": float(self.centroid[i, 0]), "centroid_x": float(self.centroid[i, 1]),
                "score": float(self.score[i]), "intensity": float(self.intensity[i]),
            })
        return out


def instance_table(
    labels: np.ndarray, probs: np.ndarray | None = None, image: np.ndarray | None = None
) -> InstanceTable:
    """Measure every instance of ``labels`` (H x W int) in one pass over the foreground pixels."""
    if not isinstance(labels, np.ndarray) or labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        got = f"{labels.dtype} array of shape {labels.shape}" if isinstance(labels, np.ndarray) else type(labels).__name__
        raise InputError(f"labels must be a 2-D integer array (H x W), got {got}")
    for name, arr, shape in (("probs", probs, (3, *labels.shape)), ("image", image, labels.shape)):
        if arr is not None and (not isinstance(arr, np.ndarray) or arr.shape != shape):
            got = arr.shape if isinstance(arr, np.ndarray) else type(arr).__name__
            raise InputError(f"{name} must have shape {shape} to match labels, got {got}")
    if labels.size and labels.dtype.kind == "i" and labels.min() < 0:
        raise InputError(f"labels must be >= 0, got a minimum of {int(labels.min())}")
    # Row blocks bound the per-pixel temporaries (int64 coordinates of the foreground pixels)
    # on large frames; the blocks' sums, minima and maxima are merged per id.
    parts = []
    for rows in row_blocks(*labels.shape):
        part = _block_stats(labels[rows], rows.start, None if probs is None else probs[0][rows],
                            None if image is None else image[rows])
        if part is not None:
            parts.append(part)
    if not parts:
        return InstanceTable(id=np.zeros(0, np.int64), area=np.zeros(0, np.int64),
                             bbox=np.zeros((0, 4), np.int64),
                             centroid=np.zeros((0, 2)), score=np.zeros(0), intensity=np.zeros(0))
    ids, g = np.unique(np.concatenate([u for u, _, _ in parts]), return_inverse=True)
    g = g.reshape(-1)
    n = ids.size
    sums = {key: np.bincount(g, weights=np.concatenate([s[key] for _, s, _ in parts]), minlength=n)
            for key in parts[0][1]}
    corners = np.concatenate([c for _, _, c in parts])
    bbox = np.stack([_reduce_at(np.minimum, g, corners[:, 0], n),
                     _reduce_at(np.minimum, g, corners[:, 1], n),
                     _reduce_at(np.maximum, g, corners[:, 2], n) + 1,
                     _reduce_at(np.maximum, g, corners[:, 3], n) + 1], axis=1)
    area = sums["area"].astype(np.int64)
    safe = np.maximum(area, 1)
    score = sums["score"] / safe if probs is not None else np.full(n, np.nan)
    intensity = sums["intensity"] / safe if image is not None else np.full(n, np.nan)
    return InstanceTable(id=ids.astype(np.int64), area=area, bbox=bbox,
                         centroid=np.stack([sums["y"] / safe, sums["x"] / safe], axis=1),
                         score=score, intensity=intensity)


def _reduce_at(fn: np.ufunc, index: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Per-index minimum (``np.minimum``) or maximum (``np.maximum``) of ``values``."""
    init = np.iinfo(np.int64).max if fn is np.minimum else -1
    out = np.full(n, init, np.int64)
    fn.at(out, index, values)
    return out


def _block_ids(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """np.unique(values, return_inverse=True) of non-negative ids (as int64 ids and intp
    positions): by a presence table when the ids are compact (label images of edgeseg are
    1..N), ~10x faster than np.unique's sort; by np.unique otherwise."""
    top = int(values.max())
    if top > 4 * values.size + 65536:  # sparse, huge ids: a table would be mostly empty
        u, inv = np.unique(values.astype(np.int64, copy=False), return_inverse=True)
        return u, inv.reshape(-1)
    values = values.astype(np.intp, copy=False)
    u = np.flatnonzero(np.bincount(values, minlength=top + 1))
    where = np.zeros(top + 1, np.intp)
    where[u] = np.arange(u.size)
    return u.astype(np.int64), np.take(where, values)


def _block_stats(block: np.ndarray, y0: int, bg: np.ndarray | None, image: np.ndarray | None
                 ) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray] | None:
    """Ids of the instances in rows ``y0..`` of a label image, their pixel count and sums of y,
    x, foreground probability and intensity, and their bbox corners (y0, x0, y1-1, x1-1).

    The labelled pixels are found as flat indices of a boolean mask and read with np.take:
    several times faster than np.nonzero's coordinate pairs and 2-D fancy indexing."""
    flat = block.reshape(-1)
    idx = np.flatnonzero(flat.astype(bool))
    if not idx.size:
        return None
    u, inv = _block_ids(np.take(flat, idx))
    ys, xs = np.divmod(idx, block.shape[1])
    k = u.size
    sums = {"area": np.bincount(inv, minlength=k).astype(np.float64),
            "y": np.bincount(inv, weights=ys + y0, minlength=k),
            "x": np.bincount(inv, weights=xs, minlength=k)}
    if bg is not None:
        sums["score"] = np.bincount(inv, weights=1.0 - np.take(bg.reshape(-1), idx).astype(np.float64),
                                    minlength=k)
    if image is not None:
        sums["intensity"] = np.bincount(inv, weights=np.take(image.reshape(-1), idx).astype(np.float64),
                                        minlength=k)
    corners = np.stack([_reduce_at(np.minimum, inv, ys, k) + y0, _reduce_at(np.minimum, inv, xs, k),
                        _reduce_at(np.maximum, inv, ys, k) + y0, _reduce_at(np.maximum, inv, xs, k)],
                       axis=1)
    return u, sums, corners

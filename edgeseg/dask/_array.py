"""``segment_array``: a 2-D (dask / numpy / zarr) array in, a lazy dask array of int32 labels out."""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from typing import Any

import numpy as np

from ..data import NormInfo, normalize
from ..errors import BackendUnavailableError, InputError
from ..sizing import check_diameter
from ._chunks import Layout, assemble, concat_tables, split_axis
from ._worker import ChunkOptions, as_frame, chunk_step1, segmenter_for

__all__ = ["DEFAULT_CHUNK", "require_dask", "segment_array"]

log = logging.getLogger(__name__)

DEFAULT_CHUNK = 1024
_SAMPLE = 1 << 16  # pixels of the strided sample that sets the array's normalisation
_CALIBRATION_CHUNKS = 4


def require_dask() -> Any:
    """``dask.array``, or one line saying how to install it."""
    try:
        import dask.array as da
    except ImportError:
        raise BackendUnavailableError(
            "edgeseg.dask needs dask, which is not installed; install it with "
            "`pip install 'edgeseg[dask]'` (dask, distributed and zarr)") from None
    return da


def _as_dask(arr: Any, da: Any) -> Any:
    if isinstance(arr, da.Array):
        return arr
    if not hasattr(arr, "shape") or not hasattr(arr, "dtype") or not hasattr(arr, "__getitem__"):
        raise InputError(f"segment_array takes a 2-D dask, numpy or zarr array, got "
                         f"{type(arr).__name__}; wrap other data with dask.array.from_array")
    return da.from_array(arr, chunks=getattr(arr, "chunks", None) or DEFAULT_CHUNK)


def _check(arr: Any) -> None:
    shape = tuple(arr.shape)
    if len(shape) not in (2, 3) or (len(shape) == 3 and shape[2] not in (1, 3, 4)):
        raise InputError(f"segment_array takes an H x W (or H x W x C, C in 1, 3, 4) array, got "
                         f"shape {shape}; for a stack or a channels-first array pass one 2-D plane "
                         "(e.g. arr[0] or arr.transpose(1, 2, 0))")
    if 0 in shape:
        raise InputError(f"segment_array got an empty array (shape {shape})")
    if np.dtype(arr.dtype).kind not in "buif":
        raise InputError(f"segment_array takes real-valued pixels (bool/int/float), got {arr.dtype}")


def _pixels(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{name} must be an integer number of pixels >= {minimum}, got {value!r}")
    return int(value)


def array_norm(arr: Any, cfg: Any) -> NormInfo:
    """The array's normalisation from a strided sample of about 65k pixels (the same pixels
    :func:`edgeseg.data.normalize` would read from the whole image held in memory)."""
    h, w = arr.shape[:2]
    step = max(1, math.ceil(math.sqrt(h * w / _SAMPLE)))
    sample = arr[::step, ::step]
    sample = np.asarray(sample.compute() if hasattr(sample, "compute") else sample)
    return normalize(as_frame(sample), cfg)[1]


def _calibrate(seg: Any, arr: Any, layout: Layout, norm: NormInfo) -> float:
    """The nucleus diameter from up to 4 chunks spread over the array (median of estimates)."""
    ni, nj = layout.grid
    picks = sorted({(round(a * (ni - 1) / 3), round(b * (nj - 1) / 3))
                    for a, b in ((1, 1), (2, 2), (1, 2), (2, 1))})[:_CALIBRATION_CHUNKS]
    found = []
    with seg.fixed_norm(norm):
        for i, j in picks:
            y0, y1, x0, x1 = layout.core(i, j)
            block = arr[y0:y1, x0:x1]
            block = np.asarray(block.compute() if hasattr(block, "compute") else block)
            d = seg.estimate_size(as_frame(block)).diameter
            if d is not None:
                found.append(d)
    if not found:
        raise InputError(f"diameter='auto': none of the {len(picks)} sample chunks showed enough nuclei "
                         "to estimate their size; pass diameter=<px> (or None for the model's own scale)")
    d = float(np.median(found))
    log.info("nucleus diameter %.1f px, calibrated once on %d chunks", d, len(found))
    return d


def segment_array(arr: Any, model: str = "default", *, chunk: int = DEFAULT_CHUNK,
                  overlap: int | None = None, diameter: float | str | None = "auto",
                  norm: NormInfo | str = "auto", with_table: bool = False,
                  backend: str | None = None, device: str = "auto", tile: int | None = None,
                  batch_size: int | None = None, tta: bool = False,
                  backend_options: dict[str, Any] | None = None, **thresholds: Any) -> Any:
    """Segment a large 2-D array chunk by chunk with Dask; returns a lazy int32 label array.

    Args:
        arr: H x W (or H x W x C) dask, numpy or zarr array (rechunked to ``chunk``).
        model: as for :class:`edgeseg.Segmenter`; it must be readable on every worker.
        chunk: chunk side in px (default 1024); a remainder is merged into the last chunk.
        overlap: context around each chunk in px; it must exceed the largest nucleus (default:
            ``max(128, 4 x diameter)`` rounded up to 16). Chunks must be at least ``4 x overlap``.
        diameter: nucleus diameter in px, None (the model's scale), or "auto" (default):
            estimated **once** on up to 4 chunks spread over the array, then the same zoom is
            used for every chunk (a per-chunk estimate would segment chunks at different scales).
        norm: "auto" (default): the intensity scale is measured once on a strided sample of the
            whole array (the pixels ``Segmenter`` would use on the whole image); or a
            :class:`~edgeseg.data.NormInfo`. Every chunk uses it, so chunks agree at seams.
        with_table: also return the instance table (a ``dask.delayed`` of
            :class:`~edgeseg.postprocess.InstanceTable`: id, area, bbox, centroid, score, intensity),
            gathered from the chunks; compute it with the labels (``dask.compute(labels, table)``
            or ``da.store(labels, target, compute=False)``) to run the chunks once.
        backend, device, tile, batch_size, tta, backend_options, **thresholds: as for Segmenter
            (``tile`` default: the extended chunk in one network call).

    Labels are unique over the whole array (``chunk index * stride + id``; not consecutive): a
    nucleus is kept by exactly one chunk, so none is duplicated or split at a seam. Each worker
    process loads the model once. Nothing of the whole array is held in memory: a worker holds a
    few extended chunks (its own and the neighbours' labels) at a time.
    """
    da = require_dask()
    arr = _as_dask(arr, da)
    _check(arr)
    chunk = _pixels(chunk, "chunk", 16)
    if not isinstance(with_table, bool):
        raise InputError(f"with_table must be True or False, got {with_table!r}")
    diameter = check_diameter(diameter)
    h, w = arr.shape[:2]
    client = ChunkOptions(model=str(model), backend=backend, device=device, tile=tile,
                          batch_size=batch_size, diameter=None, tta=tta,
                          thresholds=tuple(sorted(thresholds.items())),
                          backend_options=tuple(sorted((backend_options or {}).items())))
    seg = segmenter_for(client)  # the model's scale and preprocessing; also checks the options
    if norm == "auto":
        norm = array_norm(arr, seg.info.norm)
    elif not isinstance(norm, NormInfo):
        raise InputError(f"norm must be 'auto' or an edgeseg.data.NormInfo, got {norm!r}")
    rows, cols = split_axis(h, min(chunk, h)), split_axis(w, min(chunk, w))
    if diameter == "auto":
        probe = Layout(rows, cols, 0)
        diameter = _calibrate(seg, arr, probe, norm)
    scale = seg.info.diameter if diameter is None else float(diameter)
    if overlap is None:
        overlap = max(128, math.ceil(4 * scale / 16) * 16)
    overlap = _pixels(overlap, "overlap", 0)
    for n, length in ((len(rows), h), (len(cols), w)):
        if n > 1 and chunk < 4 * overlap:
            raise InputError(f"chunk={chunk} must be at least 4 x overlap={overlap} px (chunks see "
                             "their neighbours' nuclei only within the overlap); raise chunk or "
                             "lower overlap")
    layout = Layout(rows, cols, overlap)
    if tile is None:  # the extended chunk through the network in one call
        m = seg.info.multiple
        side = max(min(max(rows), h), min(max(cols), w)) + 2 * overlap
        tile = max(seg.tile, -(-side // m) * m)
    options = replace(client, diameter=diameter, tile=tile)
    return _graph(da, arr, layout, options, norm, with_table)


def _graph(da: Any, arr: Any, layout: Layout, options: ChunkOptions, norm: NormInfo,
           with_table: bool) -> Any:
    import dask

    three = arr.ndim == 3
    arr = arr.rechunk((layout.rows, layout.cols) + ((-1,) if three else ()))
    ni, nj = layout.grid
    depth = {0: layout.overlap if ni > 1 else 0, 1: layout.overlap if nj > 1 else 0}
    if three:
        depth[2] = 0
    ext = da.overlap.overlap(arr, depth=depth, boundary="none") if any(depth.values()) else arr
    blocks = ext.to_delayed()
    if three:
        blocks = blocks[:, :, 0]
    step1 = dask.delayed(chunk_step1, pure=True)
    step2 = dask.delayed(assemble, pure=True, nout=2)
    first = [[step1(blocks[i, j], layout, i, j, options, norm) for j in range(nj)] for i in range(ni)]
    labels, tables = [], []
    for i in range(ni):
        row = []
        for j in range(nj):
            parts = [first[a][b] for a in range(max(0, i - 1), min(ni, i + 2))
                     for b in range(max(0, j - 1), min(nj, j + 2))]
            lab, tab = step2(layout, i, j, parts)
            row.append(da.from_delayed(lab, shape=(layout.rows[i], layout.cols[j]), dtype=np.int32))
            tables.append(tab)
        labels.append(row)
    out = da.block(labels)
    if not with_table:
        return out
    return out, dask.delayed(concat_tables, pure=True)(tables)

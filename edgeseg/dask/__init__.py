"""Whole slides and image sets on Dask: :func:`segment_array` (``pip install 'edgeseg[dask]'``).

    import dask.array as da, edgeseg.dask
    image = da.from_zarr("slide.zarr", component="0")          # 50,000 x 50,000, say
    labels, table = edgeseg.dask.segment_array(image, chunk=1024, with_table=True)
    dask.compute(da.to_zarr(labels, "labels.zarr", compute=False), table)

The array is cut into chunks that are segmented with ``overlap`` px of context (one Segmenter per
worker process), nuclei at seams are kept by exactly one chunk, and ids are unique over the whole
array without a pass over it (:mod:`edgeseg.dask._chunks` explains the rule). ``import edgeseg``
never imports dask; this module imports it only when called.
"""

from __future__ import annotations

from ._array import DEFAULT_CHUNK, array_norm, segment_array
from ._chunks import concat_tables

__all__ = ["DEFAULT_CHUNK", "array_norm", "concat_tables", "segment_array"]

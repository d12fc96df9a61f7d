"""What runs on a Dask worker: one Segmenter per process, and one chunk's step 1.

Workers keep their Segmenters in a small per-process cache keyed by :class:`ChunkOptions` (model,
backend, device, tile, thresholds, ...): the model is loaded once per worker process, not per
chunk, and reused by every chunk and every array with the same options. Chunks share one
normalisation (:class:`~edgeseg.data.NormInfo`, measured once for the whole array) instead of each
taking its own percentiles, so a chunk is scaled exactly as the whole image would be; it is passed
per call (thread-local), so the cached Segmenter serves arrays of any intensity range.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data import NormInfo, apply_norm, to_grey
from ..segmenter import Segmenter, check_image
from ._chunks import Candidates, Layout, candidates

__all__ = ["ChunkOptions", "chunk_step1", "segmenter_for"]

log = logging.getLogger(__name__)

_DTYPES = (np.uint8, np.uint16, np.float32)
_CACHE: OrderedDict[ChunkOptions, _FixedNormSegmenter] = OrderedDict()
_CACHE_SIZE = 2
_LOCK = threading.Lock()
BUILDS = 0  # Segmenters this process has built (tests check: one per worker, not one per chunk)


@dataclass(frozen=True)
class ChunkOptions:
    """The Segmenter a worker builds (hashable: the cache key). ``diameter`` is a number of
    px or None, never "auto": the array's scale is settled once, before the chunks run."""

    model: str = "default"
    backend: str | None = None
    device: str = "auto"
    tile: int | None = None
    batch_size: int | None = None
    diameter: float | None = None
    tta: bool = False
    thresholds: tuple[tuple[str, Any], ...] = ()
    backend_options: tuple[tuple[str, Any], ...] = ()

    def build(self) -> _FixedNormSegmenter:
        return _FixedNormSegmenter(self.model, backend=self.backend, device=self.device,
                                   tile=self.tile, batch_size=self.batch_size,
                                   backend_options=dict(self.backend_options),
                                   diameter=self.diameter, tta=self.tta, **dict(self.thresholds))


class _FixedNormSegmenter(Segmenter):
    """A Segmenter that scales frames with a given NormInfo (set per thread by :meth:`segment_with`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._local = threading.local()

    def _preprocess(self, image: np.ndarray):
        fixed = getattr(self._local, "norm", None)
        if fixed is None:
            return super()._preprocess(image)
        image = check_image(image)
        cfg = self.info.norm
        grey = to_grey(image)
        return grey, apply_norm(grey if cfg.colour == "grey" else image, cfg, fixed), fixed

    @contextlib.contextmanager
    def fixed_norm(self, norm: NormInfo | None) -> Iterator[None]:
        """Within the block, this thread's frames are scaled with ``norm`` (None: per frame)."""
        self._local.norm = norm
        try:
            yield
        finally:
            self._local.norm = None

    def segment_with(self, image: np.ndarray, norm: NormInfo | None):
        with self.fixed_norm(norm):
            return self.segment(image)


def segmenter_for(options: ChunkOptions) -> _FixedNormSegmenter:
    """This process's Segmenter for ``options`` (built on first use, then reused)."""
    global BUILDS
    with _LOCK:
        seg = _CACHE.get(options)
        if seg is None:
            log.info("loading %s for chunks (once per worker process)", options.model)
            seg = _CACHE[options] = options.build()
            BUILDS += 1
            while len(_CACHE) > _CACHE_SIZE:
                _CACHE.popitem(last=False)[1].close()
        _CACHE.move_to_end(options)
        return seg


def as_frame(block: np.ndarray) -> np.ndarray:
    """A chunk as a frame the Segmenter takes (other dtypes become float32)."""
    block = np.asarray(block)
    if block.ndim == 3 and block.shape[2] == 1:
        block = block[:, :, 0]
    return block if block.dtype in _DTYPES or block.dtype == np.bool_ else block.astype(np.float32)


def chunk_step1(block: np.ndarray, layout: Layout, i: int, j: int, options: ChunkOptions,
                norm: NormInfo) -> Candidates:
    """Segment chunk (i, j)'s extended box ``block`` and keep its whole instances."""
    result = segmenter_for(options).segment_with(as_frame(block), norm)
    return candidates(layout, i, j, result.labels, result.instances)

"""Process-wide malloc settings for a steady frame loop: :func:`tune_allocator` (glibc Linux).

Why it matters: PyTorch's CPU tensors come from ``malloc``. An activation of the bundled U-Net
at 1024^2 (16 channels, float32) is 64 MiB, above glibc's largest mmap threshold (32 MiB), so
every such tensor is a fresh ``mmap``: the kernel maps and zero-fills each of its pages on first
touch and unmaps them on ``free``, frame after frame. Measured on a 2-core Xeon, torch eager at
1024^2: about 200,000 minor page faults per frame, 606 -> 417 ms per frame once freed memory is
kept for reuse (the naive PyTorch baseline of ``edgeseg bench`` there: 1578-2137 ms as is,
726-1134 ms tuned, ``benchmarks/results/2026-11-28-xeon/bench_cpu_v5_*.json``). ONNX Runtime
allocates from its own arena and gains little.

:func:`tune_allocator` sets, with ``mallopt``:

* ``M_MMAP_MAX`` 0: large blocks come from the heap, where freed ones are reused;
* ``M_TRIM_THRESHOLD`` at its maximum: freed memory is not handed back to the OS;
* ``M_ARENA_MAX`` 1: threads share the main heap, so a stream's worker thread reuses the same
  memory (a per-thread arena cannot hold a block over 64 MiB).

The cost: the process keeps its peak heap (its resident memory does not shrink after a large
frame), and threads share one malloc lock. For a dedicated segmentation process (``edgeseg
predict`` / ``live`` / ``eval`` / ``demo``, which call it unless ``--allocator default``; a
microscope's acquisition service) that is what is wanted; a host application that allocates
heavily on many threads should measure first. It is never called on import, only by the CLI and by
callers who ask. Elsewhere than glibc (macOS, Windows, musl) it changes nothing and says why.
"""

from __future__ import annotations

import ctypes
import logging
import platform
import threading
from dataclasses import dataclass

__all__ = ["AllocatorTuning", "allocator_tuning", "hint_allocator", "tune_allocator"]

log = logging.getLogger(__name__)

# glibc's mallopt parameter numbers (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8
_SETTINGS = (("M_MMAP_MAX", _M_MMAP_MAX, 0), ("M_TRIM_THRESHOLD", _M_TRIM_THRESHOLD, 2**31 - 1),
             ("M_ARENA_MAX", _M_ARENA_MAX, 1))

_lock = threading.Lock()
_done: "AllocatorTuning | None" = None
_hinted = False


@dataclass(frozen=True)
class AllocatorTuning:
    """What :func:`tune_allocator` did: ``applied`` (every setting taken), ``detail`` (the
    settings, or why nothing was changed)."""

    applied: bool
    detail: str


def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux":
        return None
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - present in glibc only (not in musl)
    except (OSError, AttributeError):
        return None
    return libc


def tune_allocator() -> AllocatorTuning:
    """Keep freed memory in the process for reuse (glibc): see the module docstring. Idempotent;
    process-wide; returns what was done (also logged at INFO)."""
    global _done
    with _lock:
        if _done is not None:
            return _done
        libc = _glibc()
        if libc is None:
            _done = AllocatorTuning(False, f"not glibc ({platform.system()}): the allocator is left as it is")
        else:
            failed = [name for name, param, value in _SETTINGS if libc.mallopt(param, value) != 1]
            settings = ", ".join(f"{name}={value}" for name, _, value in _SETTINGS)
            _done = (AllocatorTuning(True, f"glibc malloc: {settings}") if not failed else
                     AllocatorTuning(False, f"glibc refused {failed}; the rest of {settings} was set"))
        log.info("allocator: %s", _done.detail)
        return _done


def allocator_tuning() -> AllocatorTuning | None:
    """What :func:`tune_allocator` did in this process, or None if it was not called."""
    return _done


def hint_allocator(backend: object) -> bool:
    """Log once per process (INFO) that :func:`tune_allocator` would help, when ``backend`` is
    PyTorch on the CPU and malloc was not tuned: its large tensors are faulted in again every
    frame, more so on a stream's worker thread (the Segmenter calls this when it opens its backend).
    Returns whether it logged."""
    global _hinted
    if _hinted or _done is not None or getattr(backend, "name", None) != "torch" \
            or getattr(backend, "device", None) != "cpu":
        return False
    _hinted = True
    log.info("torch on the CPU: edgeseg.tune_allocator() keeps freed memory for reuse; without it large "
             "tensors are faulted in again every frame (the bundled model at 1024^2: 606 -> 417 ms per frame)")
    return True

"""How :class:`edgeseg.stream.FrameStream` lays its stages out on threads: the stream policy.

Three layouts of the same stages (read + preprocess, inference, post-processing), the same
results in the same order:

* ``overlap``: one thread per stage (read/preprocess | inference | post-processing). Where it
  pays: inference on a GPU (the CPU pre/post-processes while the device infers), or a CPU
  backend that leaves cores free (an inference thread count below the core count).
* ``pair``: read/preprocess + inference on one thread, post-processing on another.
* ``worker``: every stage of a frame on one worker thread, frame after frame, as the serial
  loop does; what overlaps is the consumer's own work (writing files, drawing) with the next
  frame.

Why not always ``overlap``: a CPU backend whose inference already uses every core (ONNX
Runtime and PyTorch default to one intra-op thread per core) has no core to give to the other
stages; running them at the same time only makes them contend with the inference threads
(whose parallel sections wait for their slowest thread), and the overlapped stream came out
1-6 % slower than the serial loop on a 2-core CPU for ONNX Runtime fp32 / fp16
(benchmarks/results/2026-11-27-cpu2/stream_vs_serial.json). So ``auto`` (the default) picks:

* inference not on the CPU (CUDA, TensorRT): ``overlap``;
* CPU inference using fewer threads than there are cores (as set by the user, e.g.
  ``backend_options={"threads": 1}`` or ``torch.set_num_threads(1)``): ``overlap``;
* CPU inference on every core: ``worker``.

Thread counts are never changed here: the backend's (ONNX Runtime intra-op threads,
``torch.get_num_threads()``) and OpenCV's stay what they are. The chosen policy is logged at
debug level and queryable as ``FrameStream.policy``; an explicit ``layout`` is always used as
given (``reason`` says so).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from .errors import InputError

__all__ = ["StreamPolicy", "LAYOUTS", "choose_policy", "inference_threads"]

log = logging.getLogger(__name__)

#: stage groups per thread, after the reader (which reads and preprocesses)
LAYOUTS: dict[str, tuple[tuple[str, ...], ...]] = {
    "overlap": ((), ("infer",), ("post",)),
    "pair": (("infer",), ("post",)),
    "worker": (("infer", "post"),),
}


@dataclass(frozen=True)
class StreamPolicy:
    """The thread layout of one stream and why it was chosen.

    ``layout``: "overlap", "pair" or "worker"; ``threads``: stage threads it starts;
    ``inference_threads``: the backend's CPU inference threads (None: not on the CPU, or not
    known); ``cpus``: ``os.cpu_count()`` when it was chosen; ``reason``: one sentence."""

    layout: str
    threads: int
    inference_threads: int | None
    cpus: int
    reason: str

    @property
    def groups(self) -> tuple[tuple[str, ...], ...]:
        return LAYOUTS[self.layout]

    def as_dict(self) -> dict[str, Any]:
        return {"layout": self.layout, "threads": self.threads, "inference_threads": self.inference_threads,
                "cpus": self.cpus, "reason": self.reason}

    def __str__(self) -> str:
        return f"{self.layout} ({self.threads} thread{'s' if self.threads > 1 else ''}): {self.reason}"


def inference_threads(backend: Any) -> int | None:
    """CPU threads the backend's inference runs on (None: it does not run on the CPU, or the
    backend does not say). ONNX Runtime's default (0) and PyTorch's default are one per core."""
    device = getattr(backend, "device", None)
    if device != "cpu":
        return None
    sess = getattr(backend, "_sess", None)
    if sess is not None and hasattr(sess, "get_session_options"):
        n = int(sess.get_session_options().intra_op_num_threads)
        return n if n > 0 else os.cpu_count() or 1
    torch = getattr(backend, "_torch", None)
    if torch is not None:
        return int(torch.get_num_threads())
    return None


def choose_policy(backend: Any, layout: str = "auto", cpus: int | None = None) -> StreamPolicy:
    """The stream policy for ``backend`` (see the module's docstring); ``layout`` other than
    "auto" is used as given. ``cpus``: the core count (default ``os.cpu_count()``)."""
    if layout != "auto" and layout not in LAYOUTS:
        raise InputError(f"stream: layout must be 'auto' or one of {sorted(LAYOUTS)}, got {layout!r}")
    cpus = int(cpus or os.cpu_count() or 1)
    n = inference_threads(backend)
    device = getattr(backend, "device", None)
    if layout != "auto":
        reason = "asked for"
    elif device not in (None, "cpu"):
        layout, reason = "overlap", f"inference runs on {device}: the CPU pre/post-processes meanwhile"
    elif n is None:
        layout, reason = "overlap", "the backend does not say how many CPU threads it infers with"
    elif n < cpus:
        layout, reason = "overlap", (f"CPU inference uses {n} of {cpus} cores: pre/post-processing "
                                     "runs on the others")
    else:
        layout, reason = "worker", (f"CPU inference uses {n} threads on {cpus} cores: no core left to "
                                    "overlap the stages on (they would contend with inference)")
    policy = StreamPolicy(layout, len(LAYOUTS[layout]), n, cpus, reason)
    log.debug("stream policy: %s", policy)
    return policy

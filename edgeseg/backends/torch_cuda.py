"""The torch backend's CUDA fast path: CUDA-graph replay per input shape, pinned host buffers.

Per input shape (N, 1, H, W) the runner keeps a static device input, the network's output of a
captured :class:`torch.cuda.CUDAGraph` (after a few warm-up runs on a side stream, as PyTorch
asks), and pinned host buffers for the input and the probabilities, so that a frame costs one
host copy into pinned memory, an asynchronous upload, a graph replay, an asynchronous download
and one synchronisation. Graphs are kept for the ``max_graphs`` most recently used shapes.
Without graphs (``graphs=False``) the same pinned, asynchronous copies surround an eager call.
"""

from __future__ import annotations

import collections
import logging
from typing import Any, Callable

import numpy as np

log = logging.getLogger(__name__)

_WARMUP = 3  # eager runs on a side stream before a capture (cuDNN picks its algorithms)


class _Graph:
    def __init__(self, forward: Callable[[Any], Any], torch: Any, shape: tuple[int, ...], dtype: Any,
                 graphs: bool) -> None:
        self.static_in = torch.zeros(shape, dtype=dtype, device="cuda").contiguous(
            memory_format=torch.channels_last)
        self.host_in = torch.empty(shape, dtype=torch.float32, pin_memory=True)
        self.graph = None
        if graphs:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(_WARMUP):
                    forward(self.static_in)
            torch.cuda.current_stream().wait_stream(side)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.static_out = forward(self.static_in)
        else:
            self.static_out = None
        self.forward = forward
        out_shape = (shape[0], 3, *shape[2:]) if self.static_out is None else tuple(self.static_out.shape)
        self.host_out = torch.empty(out_shape, dtype=torch.float32, pin_memory=True)

    def run(self, x: Any) -> Any:
        """Probabilities of ``x`` (a device tensor of this shape) on the device."""
        self.static_in.copy_(x, non_blocking=True)
        if self.graph is None:
            return self.forward(self.static_in)
        self.graph.replay()
        return self.static_out


class CudaRunner:
    """Runs ``forward`` on CUDA with graph replay per shape and pinned, asynchronous copies."""

    def __init__(self, forward: Callable[[Any], Any], torch: Any, dtype: Any, *, graphs: bool = True,
                 max_graphs: int = 8) -> None:
        self._forward, self._torch, self._dtype = forward, torch, dtype
        self.graphs = graphs
        self._max = max_graphs
        self._cache: collections.OrderedDict[tuple[int, ...], _Graph] = collections.OrderedDict()

    def _entry(self, shape: tuple[int, ...]) -> _Graph:
        entry = self._cache.get(shape)
        if entry is None:
            log.debug("torch CUDA: %s for input %s", "capturing a graph" if self.graphs else "buffers", shape)
            entry = _Graph(self._forward, self._torch, shape, self._dtype, self.graphs)
            self._cache[shape] = entry
            while len(self._cache) > self._max:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(shape)
        return entry

    def infer_device(self, x: Any) -> Any:
        """Probabilities of a device tensor (a graph's static output: copy it before the next call)."""
        return self._entry(tuple(x.shape)).run(x)

    def infer_host(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        entry = self._entry(tuple(batch.shape))
        entry.host_in.numpy()[...] = batch  # into pinned memory: the upload can be asynchronous
        probs = entry.run(entry.host_in.to("cuda", non_blocking=True))
        entry.host_out.copy_(probs, non_blocking=True)
        torch.cuda.current_stream().synchronize()
        return entry.host_out.numpy().copy()  # results never share the runner's buffers

    def close(self) -> None:
        self._cache.clear()

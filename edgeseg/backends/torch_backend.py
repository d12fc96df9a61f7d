"""PyTorch backend: checkpoints (``.pt``) and bundled models, on CPU or CUDA.

On CUDA the fast path (:mod:`edgeseg.backends.torch_cuda`): FP16 when asked for
(``precision="fp16"``), channels-last memory, one CUDA graph per input shape replayed with
static input/output buffers (``cuda_graphs``, on by default on CUDA), pinned host buffers with
asynchronous copies, and optionally ``torch.compile`` (``compile=True``). With
``device_postprocess`` (default on CUDA) the Segmenter normalises and labels on the device
(:mod:`edgeseg.devicepath`): only the label image and the instance table come back to the host.
What was asked for is never silently changed: fp16 or CUDA graphs on the CPU raise.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BackendUnavailableError, InputError
from ..modelinfo import ModelInfo

log = logging.getLogger(__name__)


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        raise BackendUnavailableError(
            "the torch backend needs PyTorch, which is not installed; install it with "
            "`pip install torch==2.13.0` (CPU) or use an .onnx / .engine model with the "
            "onnxruntime / tensorrt backend") from None
    return torch


def resolve_device(device: str, torch: Any) -> str:
    cuda = torch.cuda.is_available()
    if device == "auto":
        return "cuda" if cuda else "cpu"
    if device == "cuda" and not cuda:
        raise BackendUnavailableError(
            f"device 'cuda' was asked for but this PyTorch ({torch.__version__}) sees no CUDA GPU; "
            "use device='cpu', or install a CUDA build of PyTorch on a machine with an NVIDIA GPU")
    return device


def _flag(name: str, value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise InputError(f"the torch backend option {name} must be True, False or None, got {value!r}")


class TorchBackend:
    """Runs an edgeseg UNet checkpoint with PyTorch (BatchNorm folded, channels-last, inference mode).

    Args:
        precision: "fp32", or "fp16" (CUDA only).
        cuda_graphs: replay one CUDA graph per input shape (None: on for CUDA; True on the CPU raises).
        compile: wrap the network in ``torch.compile`` (compiled per input shape on first use).
        device_postprocess: normalise and label on the device (None: on for CUDA; on the CPU
            it can be asked for, e.g. to test the device path with CPU tensors).
        max_graphs: CUDA graphs kept (least recently used one dropped beyond that).
    """

    name = "torch"

    def __init__(self, model: str | Path, device: str = "auto", precision: str = "fp32", *,
                 cuda_graphs: bool | None = None, compile: bool = False,  # noqa: A002
                 device_postprocess: bool | None = None, max_graphs: int = 8) -> None:
        torch = _torch()
        from ..checkpoint import load_checkpoint

        self._torch = torch
        self.device = resolve_device(device, torch)
        if precision not in ("fp32", "fp16"):
            raise InputError(f"the torch backend runs fp32 or fp16, got precision={precision!r}; "
                             "INT8 runs through an INT8 ONNX model or TensorRT engine")
        if precision == "fp16" and self.device != "cuda":
            raise BackendUnavailableError("precision 'fp16' with the torch backend needs a CUDA "
                                          "device; on the CPU use fp32")
        cuda_graphs = _flag("cuda_graphs", cuda_graphs)
        if cuda_graphs and self.device != "cuda":
            raise BackendUnavailableError("cuda_graphs=True needs the CUDA device; on the CPU leave "
                                          "cuda_graphs unset")
        if not isinstance(compile, bool):
            raise InputError(f"the torch backend option compile must be True or False, got {compile!r}")
        if isinstance(max_graphs, bool) or not isinstance(max_graphs, int) or max_graphs < 1:
            raise InputError(f"max_graphs must be an integer >= 1, got {max_graphs!r}")
        dp = _flag("device_postprocess", device_postprocess)
        self.device_postprocess = self.device == "cuda" if dp is None else dp
        self.cuda_graphs = self.device == "cuda" if cuda_graphs is None else cuda_graphs
        self.compiled = compile
        self.precision = precision
        ckpt = load_checkpoint(model)
        self.info = ModelInfo.from_checkpoint(ckpt).replace(precision=precision)
        from ..model import fold_batchnorm

        # BatchNorm folded into the convolutions (equal within 1e-5) and channels-last memory:
        # 2.1x faster on a 2-core CPU (oneDNN), and the layout cuDNN prefers on CUDA.
        net = fold_batchnorm(ckpt.build_model()).to(self.device)
        net = net.to(memory_format=torch.channels_last)
        if precision == "fp16":
            net = net.half()
        net = net.eval()
        self._net = torch.compile(net, dynamic=False) if compile else net
        self._lock = threading.Lock()
        self._cuda = None
        if self.device == "cuda":
            from .torch_cuda import CudaRunner

            self._cuda = CudaRunner(self._forward, torch, self._dtype, graphs=self.cuda_graphs,
                                    max_graphs=max_graphs)
        self.path = ckpt.path
        log.info("torch backend: %s on %s (%s, cuda_graphs=%s, compile=%s, device_postprocess=%s)",
                 ckpt.path, self.device, precision, self.cuda_graphs, compile, self.device_postprocess)

    @property
    def _dtype(self) -> Any:
        return self._torch.float16 if self.precision == "fp16" else self._torch.float32

    def _forward(self, x: Any) -> Any:
        """N x 1 x H x W tensor on the device (network dtype) -> float32 probabilities."""
        return self._torch.softmax(self._net(x).float(), dim=1)

    def _prepare(self, x: Any) -> Any:
        return x.to(self._dtype).contiguous(memory_format=self._torch.channels_last)

    def infer(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        arr = np.ascontiguousarray(batch, dtype=np.float32)
        with self._lock, torch.inference_mode():
            if self._cuda is not None:
                return self._cuda.infer_host(arr)
            return self._forward(self._prepare(torch.from_numpy(arr))).numpy()

    def infer_tensor(self, x: Any) -> Any:
        """N x 1 x H x W float tensor on this backend's device -> N x C x H x W float32
        probabilities on the device (a new tensor, not a graph's static buffer)."""
        torch = self._torch
        with self._lock, torch.inference_mode():
            if self._cuda is not None:
                return self._cuda.infer_device(x).clone()
            return self._forward(self._prepare(x))

    def close(self) -> None:
        self._net = None
        if self._cuda is not None:
            self._cuda.close()
            self._cuda = None


def open(model: str | Path, device: str = "auto", **options: Any) -> TorchBackend:  # noqa: A001
    return TorchBackend(model, device=device, **options)

"""Inference backends behind one small protocol.

A backend turns a batch of normalised images (N x 1 x H x W float32, H and W multiples of the
model's ``multiple``) into class probabilities (N x 3 x H x W float32). Each backend lives in its
own module and imports its framework (torch, onnxruntime, tensorrt) only when opened, so that
``import edgeseg`` stays light and a device needs only the framework it uses.

The backend follows from the model file unless named: ``.pt`` (and bundled names such as
``"default"``) -> ``torch``; ``.onnx`` and bioimage.io packages (``.zip``, their ONNX weights) ->
``onnxruntime``; ``.engine`` -> ``tensorrt``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Protocol, Union

import numpy as np

from ..errors import BackendUnavailableError, InputError, ModelError
from ..modelinfo import ModelInfo

__all__ = ["Backend", "BACKENDS", "DEVICES", "open_backend", "backend_for"]

PathLike = Union[str, Path]
BACKENDS = ("torch", "onnxruntime", "tensorrt")
DEVICES = ("auto", "cpu", "cuda")
_MODULES = {"torch": "torch_backend", "onnxruntime": "onnxruntime_backend", "tensorrt": "tensorrt_backend"}
_SUFFIXES = {".pt": "torch", ".pth": "torch", ".onnx": "onnxruntime", ".zip": "onnxruntime",
             ".engine": "tensorrt"}


class Backend(Protocol):
    """What the Segmenter needs from an inference backend."""

    name: str  # "torch" | "onnxruntime" | "tensorrt"
    device: str  # the device actually used: "cpu" | "cuda" (never silently another)
    precision: str  # "fp32" | "fp16" | "int8"
    info: ModelInfo  # preprocessing, classes, thresholds of the model

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """N x 1 x H x W float32 -> N x C x H x W float32 probabilities."""

    def close(self) -> None:
        """Release the framework's resources (sessions, device memory)."""


def backend_for(model: PathLike) -> str:
    """The backend a model file implies (bundled names like ``"default"`` are torch models)."""
    suffix = Path(str(model)).suffix.lower()
    if suffix in _SUFFIXES:
        return _SUFFIXES[suffix]
    if suffix == "" and not Path(str(model)).exists():
        return "torch"  # a bundled model name, resolved by the torch backend
    raise InputError(
        f"cannot tell the backend of {model!s}: expected a .pt checkpoint, an .onnx model, a "
        f"bioimage.io package .zip, an .engine file or a bundled model name such as 'default'; pass backend= explicitly"
    )


def open_backend(model: PathLike, backend: str | None = None, device: str = "auto", **options: Any) -> Backend:
    """Open ``model`` with the named (or implied) backend on ``device``.

    Raises:
        InputError: unknown backend or device name.
        BackendUnavailableError: the framework or device is not available here (says how to get it).
        ModelError: the model file is missing, corrupted or of the wrong kind.
    """
    if backend is None:
        backend = backend_for(model)
    if backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r}; expected one of {BACKENDS} (or None to infer "
                         "it from the model file)")
    if device not in DEVICES:
        raise InputError(f"unknown device {device!r}; expected one of {DEVICES}")
    suffix = Path(str(model)).suffix.lower()
    implied = _SUFFIXES.get(suffix)
    if implied is not None and implied != backend:
        raise ModelError(f"{model} is a {suffix} file, which the {implied} backend reads, not "
                         f"{backend}; convert it first (edgeseg convert) or pass backend={implied!r}")
    try:
        mod = importlib.import_module(f"{__name__}.{_MODULES[backend]}")
    except ImportError as exc:  # pragma: no cover - the modules import nothing heavy at top level
        raise BackendUnavailableError(f"backend {backend!r} cannot be loaded: {exc}") from exc
    return mod.open(model, device=device, **options)

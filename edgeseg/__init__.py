"""edgeseg: real-time nuclei instance segmentation for microscope-attached NVIDIA devices.

``import edgeseg`` is light: it needs numpy and OpenCV only. torch, onnx, onnxruntime and
tensorrt are imported lazily by the parts that use them, so the runtime works on a device
that has TensorRT but no torch.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

from ._version import __version__
from .errors import (
    BackendUnavailableError,
    DataError,
    EdgesegError,
    InputError,
    ModelError,
)

logging.getLogger(__name__).addHandler(logging.NullHandler())

# Public names resolved on first use (PEP 562), so importing edgeseg stays cheap.
_LAZY = {
    "read_image": "edgeseg.data",
    "read_labels": "edgeseg.data",
    "load_dataset": "edgeseg.data",
    "split_dataset": "edgeseg.data",
    "normalize": "edgeseg.data",
    "NormConfig": "edgeseg.data",
    "encode": "edgeseg.targets",
    "TargetConfig": "edgeseg.targets",
    "label_instances": "edgeseg.postprocess",
    "instance_table": "edgeseg.measure",
    "tune_allocator": "edgeseg.allocator",
    "PostprocessConfig": "edgeseg.postprocess",
    "dsb_score": "edgeseg.metrics",
    "Segmenter": "edgeseg.segmenter",
    "Result": "edgeseg.segmenter",
}

__all__ = [
    "__version__",
    "EdgesegError",
    "InputError",
    "DataError",
    "ModelError",
    "BackendUnavailableError",
    *sorted(_LAZY),
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'edgeseg' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

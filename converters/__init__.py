"""Converters (``edgeseg.converters``): ONNX export, FP16 conversion, TensorRT engines.

    from edgeseg.converters import convert
    convert("default", "model.int8.onnx", precision="int8", calib_data="train_images/")
    convert("model.int8.onnx", "model.int8.engine")          # on the device, needs TensorRT
    export_bioimageio("default", "edgeseg-nuclei.zip")      # bioimage.io package (edgeseg[bioimageio])

Each function imports torch / onnx / onnxruntime / tensorrt only when called.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "export_onnx": "onnx_export",
    "onnx_info": "onnx_export",
    "convert_fp16": "fp16",
    "build_engine": "tensorrt_build",
    "convert": "pipeline",
    "ConvertReport": "pipeline",
    "export_bioimageio": "bioimageio",
    "BioimageioReport": "bioimageio",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'edgeseg.converters' has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)

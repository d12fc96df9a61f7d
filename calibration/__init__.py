"""INT8 calibration producing explicit Q/DQ ONNX models (``edgeseg.calibration``).

    from edgeseg.calibration import calibrate
    calibrate("model.onnx", "../shared/data/dsb2018/stage1_train", method="percentile")
    # -> model.int8.onnx for ONNX Runtime on CPUs (7-bit weights, integer convolutions)
    calibrate("model.onnx", "../shared/data/dsb2018/stage1_train", "model.trt.int8.onnx", target="tensorrt")
    # -> for TensorRT: INT8 Q/DQ at convolution inputs only, full-range weights, FP16 elsewhere

Needs onnx and onnxruntime (``pip install 'edgeseg[convert]'``), imported when used.
"""

from __future__ import annotations

from typing import Any

__all__ = ["calibrate", "CalibrationConfig", "METHODS", "TARGETS", "check_tensorrt_qdq"]


def __getattr__(name: str) -> Any:
    if name in ("calibrate", "CalibrationConfig", "METHODS", "TARGETS"):
        from . import quantize

        return getattr(quantize, name)
    if name == "check_tensorrt_qdq":
        from .rules import check_tensorrt_qdq

        return check_tensorrt_qdq
    raise AttributeError(f"module 'edgeseg.calibration' has no attribute {name!r}")

"""The TensorRT Q/DQ checker catches what ONNX Runtime's default quantize_static produces."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from edgeseg.calibration import check_tensorrt_qdq  # noqa: E402


def test_default_quantize_static_breaks_the_rules(tiny_onnx, tmp_path):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"image": np.random.default_rng(i).random((1, 1, 32, 32), dtype=np.float32)}
                            for i in range(4)])

        def get_next(self):
            return next(self.it, None)

    out = tmp_path / "default_qdq.onnx"
    quantize_static(str(tiny_onnx), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=False)
    problems = check_tensorrt_qdq(onnx.load(str(out)))
    text = " ".join(problems)
    assert "zero point" in text  # asymmetric uint8 activations
    assert "INT32 DequantizeLinear" in text or "bias" in text  # quantized biases
    assert "per-channel" in text  # per-tensor weights


def test_float_model_is_reported_unquantized(tiny_onnx):
    assert any("not quantized" in p for p in check_tensorrt_qdq(onnx.load(str(tiny_onnx))))

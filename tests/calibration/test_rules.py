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


def test_quantized_outputs_and_logits_are_reported(tiny_onnx):
    """The layout edgeseg used before: Q/DQ on every Conv/ConvTranspose output, logits included."""
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorsData
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer

    model = onnx.load(str(tiny_onnx))
    names = {t for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose") for t in (n.input[0], n.output[0])}
    ranges = TensorsData(CalibrationMethod.MinMax, {t: (np.float32(-1), np.float32(1)) for t in names})
    extra = {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False,
             "QDQOpTypePerChannelSupportToAxis": {"Conv": 0, "ConvTranspose": 1}}
    q = QDQQuantizer(model, True, False, QuantType.QInt8, QuantType.QInt8, ranges, None, None,
                     ["Conv", "ConvTranspose"], extra)
    q.quantize_model()
    problems = check_tensorrt_qdq(q.model.model)
    n_weighted = sum(n.op_type in ("Conv", "ConvTranspose") for n in model.graph.node)
    assert sum("is quantized; quantize only the inputs" in p for p in problems) == n_weighted
    assert any("(the logits) went through Q/DQ" in p for p in problems)
    assert not any("7 bits" in p or "zero point" in p or "per-channel" in p for p in problems)

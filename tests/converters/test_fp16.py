from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxconverter_common")

from edgeseg.converters.fp16 import convert_fp16  # noqa: E402
from edgeseg.converters.onnx_export import onnx_info  # noqa: E402
from edgeseg.errors import InputError  # noqa: E402


def test_fp16_graph_keeps_fp32_io_and_softmax(tiny_onnx, tmp_path):
    out = convert_fp16(tiny_onnx, tmp_path / "m.fp16.onnx")
    model = onnx.load(str(out))
    f32 = onnx.TensorProto.FLOAT
    assert model.graph.input[0].type.tensor_type.elem_type == f32
    assert model.graph.output[0].type.tensor_type.elem_type == f32
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
    info = onnx_info(out)
    assert info.precision == "fp16" and info.source_sha256 and info.postprocess == onnx_info(tiny_onnx).postprocess
    x = np.random.default_rng(0).random((1, 1, 32, 48), dtype=np.float32)
    a = ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
    b = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
    assert b.dtype == np.float32 and float(np.abs(a - b).max()) < 0.01


def test_fp16_refuses_non_fp32_and_bad_suffix(tiny_onnx, tmp_path):
    out = convert_fp16(tiny_onnx, tmp_path / "m.fp16.onnx")
    with pytest.raises(InputError, match="already fp16"):
        convert_fp16(out, tmp_path / "again.onnx")
    with pytest.raises(InputError, match=".onnx"):
        convert_fp16(tiny_onnx, tmp_path / "m.fp16")

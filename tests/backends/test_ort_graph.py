"""edgeseg.backends.ort_graph: the class Softmax as elementwise ops gives the fused op's output."""

from __future__ import annotations

import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper  # noqa: E402

from edgeseg.backends import open_backend  # noqa: E402
from edgeseg.backends.ort_graph import split_softmax  # noqa: E402


def _softmax_model(opset: int = 17, axis: int = 1, channels: int | str = 3, dtype: int = TensorProto.FLOAT,
                   ) -> bytes:
    """x (N x C x H x W) -> [Cast] -> Softmax(axis) -> probs, the channel count static or not."""
    shape = ["N", channels, "H", "W"]
    nodes, src = [], "x"
    if dtype != TensorProto.FLOAT:  # an fp16 body whose Softmax runs in float32, as edgeseg's
        nodes.append(helper.make_node("Cast", ["x"], ["x32"], to=TensorProto.FLOAT))
        src = "x32"
    nodes.append(helper.make_node("Softmax", [src], ["probs"], axis=axis, name="sm"))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", dtype, shape)],
                              [helper.make_tensor_value_info("probs", TensorProto.FLOAT, shape)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model.SerializeToString()


def _run(data: bytes, x: np.ndarray) -> np.ndarray:
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


@pytest.mark.parametrize("opset, axis, channels", [(17, 1, 3), (18, 1, 3), (19, -3, 3), (17, 1, 2), (17, 1, 5)])
@pytest.mark.parametrize("scale", [1.0, 30.0, 1e4])
def test_rewrite_equals_the_fused_softmax(opset, axis, channels, scale):
    data = _softmax_model(opset, axis, channels)
    new = split_softmax(data)
    assert new is not None
    ops = [n.op_type for n in onnx.load_from_string(new).graph.node]
    assert "Softmax" not in ops and ops.count("Exp") == channels
    x = (np.random.default_rng(opset + channels).standard_normal((2, channels, 17, 23)) * scale).astype(np.float32)
    x[0, :, 0, 0] = 7.0  # ties
    ref, got = _run(data, x), _run(new, x)
    assert np.isfinite(got).all()
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)


def test_float16_body_keeps_its_float32_softmax():
    data = _softmax_model(dtype=TensorProto.FLOAT16)
    new = split_softmax(data)
    x = np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float16)
    np.testing.assert_allclose(_run(new, x), _run(data, x), rtol=0, atol=1e-6)


@pytest.mark.parametrize("kwargs", [{"axis": 2}, {"axis": -1}, {"channels": "C"}, {"channels": 40},
                                    {"opset": 11}])
def test_other_softmaxes_are_left_alone(kwargs):
    """Another axis, an unknown or large class count, or pre-13 semantics: no rewrite."""
    assert split_softmax(_softmax_model(**kwargs)) is None


def test_no_onnx_or_unparseable_means_no_rewrite(monkeypatch):
    assert split_softmax(b"not a model") is None
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx raises ImportError
    assert split_softmax(_softmax_model()) is None


def test_backend_runs_the_rewrite_on_the_cpu_and_leaves_the_file(tiny_onnx):
    """The exported U-Net: the same probabilities with and without the rewrite; the file on disk
    keeps its Softmax."""
    before = tiny_onnx.read_bytes()
    fast = open_backend(tiny_onnx, device="cpu")
    plain = open_backend(tiny_onnx, device="cpu", split_softmax=False)
    assert fast.graph_rewrites == ["split_softmax"] and plain.graph_rewrites == []
    x = np.random.default_rng(2).standard_normal((2, 1, 64, 96)).astype(np.float32)
    np.testing.assert_allclose(fast.infer(x), plain.infer(x), rtol=0, atol=1e-6)
    assert tiny_onnx.read_bytes() == before
    assert "Softmax" in [n.op_type for n in onnx.load(str(tiny_onnx)).graph.node]

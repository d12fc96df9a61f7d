from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from edgeseg.converters.onnx_export import export_onnx, onnx_info  # noqa: E402
from edgeseg.errors import InputError, ModelError  # noqa: E402


def test_export_graph_metadata_and_dynamic_shapes(tiny_pt, tiny_onnx):
    proto = onnx.load(str(tiny_onnx))
    ops = {n.op_type for n in proto.graph.node}
    assert "BatchNormalization" not in ops  # folded
    assert ops <= {"Conv", "Relu", "MaxPool", "ConvTranspose", "Resize", "Concat", "Softmax"}
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    dims = [d.dim_param for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims[0] and dims[2] and dims[3] and dims[1] == ""
    info = onnx_info(tiny_onnx)
    assert info.precision == "fp32" and info.multiple == 4 and len(info.source_sha256) == 64
    keys = {p.key for p in proto.metadata_props}
    assert {"edgeseg", "edgeseg.version", "edgeseg.precision"} <= keys


def test_onnx_runtime_matches_torch(tiny_pt, tiny_onnx):
    import torch

    from edgeseg.checkpoint import load_checkpoint

    net = load_checkpoint(tiny_pt).build_model()
    sess = ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random((3, 1, 36, 52), dtype=np.float32)
    with torch.no_grad():
        ref = torch.softmax(net(torch.from_numpy(x)), 1).numpy()
    got = sess.run(None, {"image": x})[0]
    err = float(np.abs(got - ref).max())
    print(f"ONNX fp32 vs torch max abs: {err:.2e}")
    assert err <= 1e-4, f"max abs error {err:.2e} > 1e-4"


def test_export_errors(tiny_pt, tmp_path):
    with pytest.raises(InputError, match=".onnx"):
        export_onnx(tiny_pt, tmp_path / "m.bin")
    with pytest.raises(InputError, match="opset"):
        export_onnx(tiny_pt, tmp_path / "m.onnx", opset=11)
    with pytest.raises(ModelError):
        export_onnx(tmp_path / "missing.pt", tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_failed_verification_writes_nothing(tiny_pt, tmp_path):
    with pytest.raises(ModelError, match="atol"):
        export_onnx(tiny_pt, tmp_path / "m.onnx", atol=-1.0)
    assert list(tmp_path.iterdir()) == []


def test_onnx_info_rejects_foreign_models(tmp_path):
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    p = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(g), str(p))
    with pytest.raises(ModelError, match="not exported by edgeseg"):
        onnx_info(p)

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from edgeseg.calibration import calibrate, check_tensorrt_qdq  # noqa: E402
from edgeseg.converters.onnx_export import onnx_info  # noqa: E402
from edgeseg.errors import DataError, InputError  # noqa: E402


def images(n: int, size: int = 40, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        yy, xx = np.mgrid[:size, :size]
        img = np.zeros((size, size), np.float32)
        for _ in range(4):
            cy, cx = rng.uniform(0, size, 2)
            img += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 20.0)
        out.append((img / img.max() * 255).astype(np.uint8))
    return out


@pytest.fixture(scope="module")
def int8(tiny_onnx, tmp_path_factory):
    """The TensorRT flavour (and the ranges cache it wrote)."""
    d = tmp_path_factory.mktemp("int8")
    return calibrate(tiny_onnx, images(8), d / "tiny.int8.onnx", target="tensorrt", method="minmax",
                     num_images=8, shape=32, cache=d / "ranges.json"), d


@pytest.fixture(scope="module")
def int8_cpu(int8, tiny_onnx):
    """The ONNX Runtime flavour, from the same cached ranges."""
    _, d = int8
    return calibrate(tiny_onnx, images(8), d / "tiny.cpu.int8.onnx", target="onnxruntime", method="minmax",
                     num_images=8, shape=32, cache=d / "ranges.json")


def _graph(model):
    g = model.graph
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in g.initializer}
    producers = {o: n for n in g.node for o in n.output}
    consumers = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    return g, inits, producers, consumers


def _weight_q(n, inits, producers):
    dq = producers[n.input[1]]
    return dq, inits[dq.input[0]]


def test_int8_model_follows_tensorrt_rules(int8):
    path, _ = int8
    model = onnx.load(str(path))
    assert check_tensorrt_qdq(model) == []
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv", "ConvTranspose"} <= ops
    info = onnx_info(path)
    assert info.precision == "int8" and info.model_card["calibration"]["method"] == "minmax"
    assert info.model_card["int8"]["target"] == "tensorrt" and info.model_card["int8"]["weight_bits"] == 8
    assert {p.key: p.value for p in model.metadata_props}["edgeseg.int8_target"] == "tensorrt"
    g, inits, producers, consumers = _graph(model)
    for n in g.node:
        if n.op_type in ("Conv", "ConvTranspose"):
            # weights: int8, per channel (Conv axis 0, ConvTranspose axis 1), the full range
            dq, q = _weight_q(n, inits, producers)
            assert next(a.i for a in dq.attribute if a.name == "axis") == (0 if n.op_type == "Conv" else 1)
            assert q.dtype == np.int8 and np.abs(q.astype(int)).max() == 127
            assert producers[n.input[0]].op_type == "DequantizeLinear"  # the activation input: Q/DQ
            assert all(c.op_type != "QuantizeLinear" for c in consumers[n.output[0]])  # the output: not
    # mixed INT8 + FP16: float16 everywhere but the graph I/O and Softmax; Q/DQ scales float16 (opset 19)
    f16, f32 = onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT
    assert [i.type.tensor_type.elem_type for i in (*g.input, *g.output)] == [f32, f32]
    assert {t.data_type for t in g.initializer if t.data_type in (f16, f32)} == {f16}
    softmax = next(n for n in g.node if n.op_type == "Softmax")
    cast = producers[softmax.input[0]]
    assert cast.op_type == "Cast" and next(a.i for a in cast.attribute if a.name == "to") == f32
    assert producers[cast.input[0]].op_type == "Conv"  # the logits: straight from the head, no Q/DQ
    assert next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 19


def test_onnxruntime_flavour_has_7_bit_weights_uint8_activations_and_no_float_relu(int8_cpu):
    model = onnx.load(str(int8_cpu))
    info = onnx_info(int8_cpu)
    assert info.model_card["int8"]["target"] == "onnxruntime" and info.model_card["int8"]["weight_bits"] == 7
    g, inits, producers, consumers = _graph(model)
    softmax = next(n for n in g.node if n.op_type == "Softmax")
    head = producers[softmax.input[0]]
    assert head.op_type == "Conv"  # the logits are not rounded to INT8
    convs = [n for n in g.node if n.op_type == "Conv"]
    first = convs[0]
    for edge in (first, head):  # the image and logits convolutions stay float
        assert edge.input[1] in inits and inits[edge.input[1]].dtype == np.float32
    for n in g.node:
        if n.op_type in ("Conv", "ConvTranspose") and n is not first and n is not head:
            dq, q = _weight_q(n, inits, producers)
            assert q.dtype == np.int8 and 32 < np.abs(q.astype(int)).max() <= 64  # reduce_range
            # ONNX Runtime fuses DQ -> Conv -> Q into an integer QLinearConv (ReLU folded into the
            # uint8 zero point); ConvTranspose's output is quantized for the integer Concat after it
            assert [c.op_type for c in consumers[n.output[0]]] == ["QuantizeLinear"], n.name
    # activations: asymmetric uint8; only the float first convolution keeps a ReLU of its own
    zero_points = [inits[n.input[2]] for n in g.node if n.op_type == "QuantizeLinear"]
    assert zero_points and all(z.dtype == np.uint8 for z in zero_points)
    relus = [n for n in g.node if n.op_type == "Relu"]
    assert [producers[r.input[0]] for r in relus] == [first]
    assert {t.data_type for t in g.initializer} <= {onnx.TensorProto.FLOAT, onnx.TensorProto.INT8,
                                                    onnx.TensorProto.UINT8}
    problems = " ".join(check_tensorrt_qdq(model))
    assert "7 bits" in problems and "is quantized" in problems  # not for TensorRT


@pytest.mark.parametrize("flavour", ["int8", "int8_cpu"])
def test_int8_runs_on_onnxruntime_close_to_fp32(request, flavour, tiny_onnx):
    path = request.getfixturevalue(flavour)
    path = path[0] if isinstance(path, tuple) else path
    x = np.stack([im[:32, :32] for im in images(2, seed=5)])[:, None].astype(np.float32) / 255
    a = ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
    b = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
    assert b.shape == a.shape and b.dtype == np.float32 and np.isfinite(b).all()
    assert float(np.abs(a - b).max()) < 0.2


def test_tiny_weight_scales_stay_normal_float16(tiny_onnx, tmp_path):
    """Weight scales below float16's normal range are raised to it (the weights requantized)."""
    from edgeseg.calibration import quantize as Q
    from edgeseg.calibration.targets import FP16_MIN_SCALE, _clamp_weight_scales, flavour

    model = onnx.load(str(tiny_onnx))
    path = tmp_path / "tiny.onnx"
    # a middle convolution's weights (the first and last stay float in the onnxruntime flavour)
    w = [t for t in model.graph.initializer if onnx.numpy_helper.to_array(t).ndim == 4][1]
    arr = onnx.numpy_helper.to_array(w).copy()
    arr[0] *= 1e-4  # one output channel of tiny weights
    w.CopyFrom(onnx.numpy_helper.from_array(arr, w.name))
    onnx.save(model, str(path))
    ranges = {n: [0.0, 1.0] for n in _activation_names(model)}
    q = Q._quantize(path, ranges, flavour("onnxruntime"))  # float32 scales, nothing clamped yet
    before = [onnx.numpy_helper.to_array(t) for t in q.graph.initializer if t.name.endswith("_scale")]
    assert min(float(s.min()) for s in before) < FP16_MIN_SCALE
    assert _clamp_weight_scales(q) >= 1
    after = [onnx.numpy_helper.to_array(t) for t in q.graph.initializer if t.name.endswith("_scale")]
    assert min(float(s.min()) for s in after) >= FP16_MIN_SCALE


def _activation_names(model):
    from edgeseg.calibration.quantize import _CALIBRATED_OPS

    names = set()
    for n in model.graph.node:
        if n.op_type in _CALIBRATED_OPS:
            names.update([*n.input[:1 if n.op_type != "Concat" else None], n.output[0]])
    return names


def test_cache_is_reused_and_guarded(int8, tiny_onnx, caplog):
    path, d = int8
    cache = d / "ranges.json"
    data = json.loads(cache.read_text())
    assert data["format"] == "edgeseg-calibration-cache" and data["ranges"]
    with caplog.at_level(logging.INFO, logger="edgeseg.calibration"):
        calibrate(tiny_onnx, images(8), d / "again.onnx", target="tensorrt", method="minmax", num_images=8,
                  shape=32, cache=cache)
    assert "reusing" in caplog.text
    a, b = onnx.load(str(d / "again.onnx")), onnx.load(str(path))
    assert a.graph.SerializeToString() == b.graph.SerializeToString()  # same ranges, same Q/DQ
    with pytest.raises(InputError, match="method"):
        calibrate(tiny_onnx, images(8), d / "x.onnx", method="entropy", num_images=8, shape=32, cache=cache)


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_histogram_methods(tiny_onnx, tmp_path, method):
    out = calibrate(tiny_onnx, images(6), tmp_path / "m.onnx", target="tensorrt", method=method, num_images=6,
                    shape=32)
    assert check_tensorrt_qdq(onnx.load(str(out))) == []


@pytest.mark.parametrize("method", ["entropy", "percentile", "minmax"])
def test_onnxruntime_flavour_folds_every_relu_whatever_the_method(tiny_onnx, tmp_path, method):
    """With each calibration method, every ReLU after a quantized convolution folds into the
    uint8 zero point (ReLU outputs calibrate to a low end of 0): only the float first
    convolution keeps a ReLU op."""
    out = calibrate(tiny_onnx, images(6), tmp_path / "m.onnx", target="onnxruntime", method=method,
                    num_images=6, shape=32)
    g, inits, producers, _ = _graph(onnx.load(str(out)))
    first = next(n for n in g.node if n.op_type == "Conv")
    assert [producers[n.input[0]] for n in g.node if n.op_type == "Relu"] == [first]


def test_too_few_or_few_images(tiny_onnx, tmp_path, caplog):
    with pytest.raises(DataError, match="at least 4"):
        calibrate(tiny_onnx, images(3), tmp_path / "m.onnx", num_images=8, shape=32)
    with pytest.raises(DataError):
        calibrate(tiny_onnx, [], tmp_path / "m.onnx", shape=32)
    with caplog.at_level(logging.WARNING):
        calibrate(tiny_onnx, images(5), tmp_path / "m.onnx", method="minmax", shape=32)
    assert "only 5 images" in caplog.text


def test_bad_arguments(tiny_onnx, int8, tmp_path):
    with pytest.raises(InputError, match="method"):
        calibrate(tiny_onnx, images(5), tmp_path / "m.onnx", method="mse")
    with pytest.raises(InputError, match="'tensorrt' for TensorRT engines"):
        calibrate(tiny_onnx, images(5), tmp_path / "m.onnx", target="cpu", shape=32)
    with pytest.raises(InputError, match="multiple"):
        calibrate(tiny_onnx, images(5), tmp_path / "m.onnx", shape=30)
    with pytest.raises(InputError, match="fp32"):
        calibrate(int8[0], images(5), tmp_path / "m.onnx", shape=32)
    with pytest.raises(InputError, match="single array"):
        calibrate(tiny_onnx, images(1)[0], tmp_path / "m.onnx", shape=32)


def test_validation_images_are_left_out(tmp_path, tiny_pt):
    """Images the model card lists as validation never reach the calibrator."""
    from edgeseg.calibration.inputs import calibration_inputs
    from edgeseg.data import NormConfig

    paths = []
    for k, im in enumerate(images(6)):
        import cv2

        p = tmp_path / f"img{k}.png"
        cv2.imwrite(str(p), im)
        paths.append(p)
    ids, inputs = calibration_inputs(paths, NormConfig(), shape=32, multiple=4, num_images=10,
                                     exclude={"img0", "img3"})
    assert ids == ["img1", "img2", "img4", "img5"] and inputs[0].shape == (1, 1, 32, 32)

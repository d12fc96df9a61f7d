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
    d = tmp_path_factory.mktemp("int8")
    return calibrate(tiny_onnx, images(8), d / "tiny.int8.onnx", method="minmax", num_images=8, shape=32,
                     cache=d / "ranges.json"), d


def test_int8_model_follows_tensorrt_rules(int8):
    path, _ = int8
    model = onnx.load(str(path))
    assert check_tensorrt_qdq(model) == []
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv", "ConvTranspose"} <= ops
    info = onnx_info(path)
    assert info.precision == "int8" and info.model_card["calibration"]["method"] == "minmax"
    # weights: int8 initialisers, per channel (Conv axis 0, ConvTranspose axis 1)
    inits = {t.name: t for t in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    for n in model.graph.node:
        if n.op_type in ("Conv", "ConvTranspose"):
            dq = producers[n.input[1]]
            axis = next(a.i for a in dq.attribute if a.name == "axis")
            assert axis == (0 if n.op_type == "Conv" else 1)
            assert inits[dq.input[0]].data_type == onnx.TensorProto.INT8


def test_int8_runs_on_onnxruntime_close_to_fp32(int8, tiny_onnx):
    path, _ = int8
    x = np.stack([im[:32, :32] for im in images(2, seed=5)])[:, None].astype(np.float32) / 255
    a = ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
    b = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
    assert b.shape == a.shape and np.isfinite(b).all()
    assert float(np.abs(a - b).max()) < 0.2


def test_cache_is_reused_and_guarded(int8, tiny_onnx, caplog):
    path, d = int8
    cache = d / "ranges.json"
    data = json.loads(cache.read_text())
    assert data["format"] == "edgeseg-calibration-cache" and data["ranges"]
    with caplog.at_level(logging.INFO, logger="edgeseg.calibration"):
        calibrate(tiny_onnx, images(8), d / "again.onnx", method="minmax", num_images=8, shape=32, cache=cache)
    assert "reusing" in caplog.text
    a, b = onnx.load(str(d / "again.onnx")), onnx.load(str(path))
    assert a.graph.SerializeToString() == b.graph.SerializeToString()  # same ranges, same Q/DQ
    with pytest.raises(InputError, match="method"):
        calibrate(tiny_onnx, images(8), d / "x.onnx", method="entropy", num_images=8, shape=32, cache=cache)


@pytest.mark.parametrize("method", ["entropy", "percentile"])
def test_histogram_methods(tiny_onnx, tmp_path, method):
    out = calibrate(tiny_onnx, images(6), tmp_path / "m.onnx", method=method, num_images=6, shape=32)
    assert check_tensorrt_qdq(onnx.load(str(out))) == []


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

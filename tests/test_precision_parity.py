"""Accuracy parity of every precision against PyTorch fp32, on the shipped model and real val images.

Tier 1 (tensors): ONNX fp32 vs torch, max abs probability difference (test_default_model.py).
Tier 2 (instances): FP16 and INT8 ONNX on ONNX Runtime, Kaggle DSB score on the 67 validation
images within 0.003 (FP16) and 0.01 (INT8, calibrated on training images only) of torch fp32.
INT8 comes in both flavours (edgeseg.calibration.targets): the ONNX Runtime one (7-bit weights,
integer convolutions, so the same result on CPUs with and without VNNI) and the TensorRT one
(INT8 at convolution inputs, FP16 elsewhere), which ONNX Runtime runs in float convolutions on
dequantized values. Each result is printed with the CPU's INT8 instruction set.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxconverter_common")

from edgeseg import Segmenter  # noqa: E402
from edgeseg.calibration.targets import cpu_int8_isa  # noqa: E402
from edgeseg._resources import MODELS_DIR  # noqa: E402
from edgeseg.data import read_image_raw, read_labels  # noqa: E402
from edgeseg.metrics import dsb_score  # noqa: E402

CARD = json.loads((MODELS_DIR / "default" / "model_card.json").read_text())
VAL_IDS = sorted(CARD["val"]["per_image"])


@pytest.fixture(scope="module")
def val_set(stage1_train):
    return [(read_image_raw(stage1_train / "images" / f"{i}.png"),
             read_labels(stage1_train / "labels" / f"{i}.png")) for i in VAL_IDS]


@pytest.fixture(scope="module")
def models(tmp_path_factory, stage1_train):
    from edgeseg.calibration import calibrate
    from edgeseg.converters import convert_fp16, export_onnx

    d = tmp_path_factory.mktemp("precisions")
    fp32 = export_onnx("default", d / "model.onnx")
    # training images only: calibrate() leaves out the card's validation ids; one cache, two flavours
    cache = d / "ranges.json"
    return {
        "fp16": convert_fp16(fp32, d / "model.fp16.onnx"),
        "int8": calibrate(fp32, stage1_train, d / "model.int8.onnx", target="onnxruntime",
                          method="percentile", num_images=32, cache=cache),
        "int8-tensorrt": calibrate(fp32, stage1_train, d / "model.trt.int8.onnx", target="tensorrt",
                                   method="percentile", num_images=32, cache=cache),
    }


def scores(seg, val_set) -> np.ndarray:
    return np.array([dsb_score(gt, seg.segment(image).labels) for image, gt in val_set])


@pytest.fixture(scope="module")
def torch_scores(val_set):
    return scores(Segmenter("default", backend="torch", device="cpu", diameter=None), val_set)


@pytest.mark.slow
@pytest.mark.parametrize("model, tolerance", [("fp16", 0.003), ("int8", 0.01), ("int8-tensorrt", 0.01)])
def test_reduced_precision_matches_torch_fp32(models, val_set, torch_scores, model, tolerance):
    seg = Segmenter(models[model], device="cpu", diameter=None)
    assert seg.precision == model.split("-")[0]
    got = scores(seg, val_set)
    ref, cand = float(torch_scores.mean()), float(got.mean())
    worst = int(np.argmax(np.abs(got - torch_scores)))
    print(f"{model} on ONNX Runtime, CPU INT8 instructions {cpu_int8_isa()}: DSB {cand:.4f} vs torch fp32 "
          f"{ref:.4f} (difference {cand - ref:+.4f}) on {len(val_set)} val images; worst image "
          f"{VAL_IDS[worst][:12]} {got[worst]:.4f} vs {torch_scores[worst]:.4f}")
    assert abs(cand - ref) <= tolerance, (
        f"{model} DSB {cand:.4f} differs from torch fp32 {ref:.4f} by {abs(cand - ref):.4f} > {tolerance} "
        f"(CPU INT8 instructions: {cpu_int8_isa()})")


def test_int8_flavours_and_tensorrt_rules(models):
    import onnx

    from edgeseg.calibration import check_tensorrt_qdq
    from edgeseg.converters.onnx_export import onnx_info

    assert check_tensorrt_qdq(onnx.load(str(models["int8-tensorrt"]))) == []
    assert onnx_info(models["int8-tensorrt"]).model_card["int8"]["target"] == "tensorrt"
    cpu = onnx_info(models["int8"]).model_card["int8"]
    assert cpu["target"] == "onnxruntime" and cpu["weight_bits"] == 7

"""The bundled default model: its card's claims, a regression check, and runtime parity on real data."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")

from edgeseg import Segmenter  # noqa: E402
from edgeseg._resources import MODELS_DIR  # noqa: E402
from edgeseg.data import read_image_raw, read_labels  # noqa: E402
from edgeseg.metrics import dsb_score  # noqa: E402

CARD = json.loads((MODELS_DIR / "default" / "model_card.json").read_text())
VAL = CARD["val"]["per_image"]


def val_ids(n: int) -> list[str]:
    """n validation images spread over the sorted ids (deterministic)."""
    ids = sorted(VAL)
    return [ids[i] for i in np.linspace(0, len(ids) - 1, n).round().astype(int)]


def load(stage1_train, i):
    return read_image_raw(stage1_train / "images" / f"{i}.png"), read_labels(stage1_train / "labels" / f"{i}.png")


def test_model_card_claims():
    # val = the held-out acquisition groups of training/splits/dsb2018_groups.json (a new lab)
    assert CARD["val"]["dsb_score"] >= 0.45, CARD["val"]["dsb_score"]
    assert CARD["val"]["n_images"] == len(VAL) > 100
    split = json.loads((MODELS_DIR.parents[1] / "training" / "splits" / "dsb2018_groups.json")
                       .read_text()) if (MODELS_DIR.parents[1] / "training").is_dir() else None
    if split is not None:  # a checkout (the wheel has no training/ folder)
        assert set(VAL) == set(split["val"])
    assert CARD["nucleus_diameter"] > 5
    auto = CARD["validation"]["settings"]["auto"]
    assert auto["1"]["dsb_score"] >= CARD["validation"]["settings"]["none"]["1"]["dsb_score"]
    assert auto["2"]["ratio_to_1x"] >= 0.85 and auto["0.5"]["ratio_to_1x"] >= 0.7
    assert CARD["train_config"]["norm"]["colour"] == "hematoxylin"
    assert set(CARD["val"]["per_kind"]) == {"fluorescence", "stained", "brightfield"}
    # the edge budget: at most 2x the first bundled model's FLOPs (width 16: 96.5 GFLOP/1024^2)
    # and at most 16 MB of fp32 weights
    assert CARD["model"]["gflops_1024"] <= 2 * 96.51
    assert CARD["model"]["params"] * 4 <= 16e6
    assert (MODELS_DIR / "default" / "model.pt").stat().st_size <= 10 * 2**20
    for key in ("data", "hardware", "training", "postprocess", "sessions"):
        assert key in CARD


@pytest.fixture(scope="module")
def seg_torch():
    return Segmenter("default", device="cpu", diameter=None)  # the card scores are without size control


def test_regression_against_model_card(stage1_train, seg_torch):
    for i in val_ids(8):
        image, gt = load(stage1_train, i)
        got = dsb_score(gt, seg_torch.segment(image).labels)
        assert abs(got - VAL[i]) <= 0.02, f"{i}: DSB {got:.4f}, model card says {VAL[i]:.4f}"


@pytest.fixture(scope="module")
def default_onnx(tmp_path_factory):
    pytest.importorskip("onnxruntime")
    from edgeseg.converters.onnx_export import export_onnx

    return export_onnx("default", tmp_path_factory.mktemp("onnx") / "default.onnx")


def test_onnxruntime_fp32_matches_torch_on_real_val_images(stage1_train, seg_torch, default_onnx):
    seg_ort = Segmenter(default_onnx, device="cpu", diameter=None)
    worst = 0.0
    for i in val_ids(4):
        image, _ = load(stage1_train, i)
        a = seg_torch.segment(image, probabilities=True)
        b = seg_ort.segment(image, probabilities=True)
        err = float(np.abs(a.probabilities - b.probabilities).max())
        worst = max(worst, err)
        assert err <= 1e-4, f"{i}: max abs probability difference {err:.2e} > 1e-4"
        same = np.array_equal(a.labels, b.labels) or dsb_score(a.labels, b.labels) == 1.0
        assert same, f"{i}: instance labels differ (DSB between them {dsb_score(a.labels, b.labels):.4f})"
    print(f"ONNX Runtime fp32 vs torch on 4 real val images: max abs {worst:.2e}")


def test_tiled_matches_untiled_on_largest_val_images(stage1_train, manifest, default_onnx):
    sizes = {m["id"]: m["h"] * m["w"] for m in manifest}
    big = sorted((i for i in VAL if sizes[i] >= 1024 * 1024), key=lambda i: -sizes[i])[:2]
    assert big, "the val split holds no image of >= 1024 x 1024 px"
    whole = Segmenter(default_onnx, device="cpu", tile=1408, diameter=None)
    tiled = Segmenter(default_onnx, device="cpu", tile=512, overlap=128, diameter=None)
    for i in big:
        image, _ = load(stage1_train, i)
        a, b = whole.segment(image), tiled.segment(image)
        assert a.tiles == 1 and b.tiles > 1
        score = dsb_score(a.labels, b.labels)
        print(f"{i[:12]} {image.shape[:2]}: tiled ({b.tiles} tiles) vs whole DSB {score:.4f}")
        assert score >= 0.99, f"{i}: tiled vs untiled DSB {score:.4f} < 0.99"

"""Device-side labelling (edgeseg.postprocess_torch) against the CPU path, on CPU tensors.

The acceptance test of issue 11 item 2: on real validation images (the default model's
probabilities), the instances of the torch path match the CPU path's, >= 0.99 of them matched at
IoU > 0.5 both ways, and the same DSB score against the ground truth.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

torch = pytest.importorskip("torch")

from edgeseg.errors import InputError  # noqa: E402
from edgeseg.metrics import dsb_score  # noqa: E402
from edgeseg.postprocess import PostprocessConfig, instance_table, label_instances  # noqa: E402
from edgeseg.postprocess_torch import (components, instance_table_torch,  # noqa: E402
                                       label_instances_torch)

from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
VAL_IDS = json.loads((REPO / "training" / "splits" / "dsb2018_groups.json").read_text())["val"]


def matched_fraction(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of the instances of ``a`` that overlap one instance of ``b`` at IoU > 0.5."""
    ids = np.unique(a[a > 0])
    if not ids.size:
        return 1.0
    a64, b64 = a.ravel().astype(np.int64), b.ravel().astype(np.int64)
    nb = int(b64.max()) + 1
    pairs = np.bincount(a64 * nb + b64)
    area_a, area_b = np.bincount(a64), np.bincount(b64)
    hit = set()
    for code in np.flatnonzero(pairs):
        i, j = divmod(int(code), nb)
        c = pairs[code]
        if i and j and c / (area_a[i] + area_b[j] - c) > 0.5:
            hit.add(i)
    return len(hit) / ids.size


@pytest.fixture(scope="module")
def val_probs(stage1_train):
    from edgeseg import Segmenter
    from edgeseg.data import read_image_raw, read_labels

    seg = Segmenter("default", device="cpu", diameter=None)
    out = []
    for i in VAL_IDS:  # the first 20 val images up to 640 x 512 px (CI time: the torch path on CPU)
        image = read_image_raw(stage1_train / "images" / f"{i}.png")
        if image.shape[0] * image.shape[1] > 640 * 512:
            continue
        if len(out) == 20:
            break
        probs = seg.segment(image, probabilities=True).probabilities
        out.append((i, probs, read_labels(stage1_train / "labels" / f"{i}.png"), seg.postprocess))
    return out


def test_torch_labels_match_cpu_on_val_images(val_probs):
    agree, cpu_dsb, dev_dsb = [], [], []
    for i, probs, gt, cfg in val_probs:
        cpu = label_instances(probs, cfg)
        dev = label_instances_torch(torch.from_numpy(probs), cfg)
        assert dev.dtype == torch.int32 and tuple(dev.shape) == cpu.shape
        dev = dev.numpy()
        agree += [matched_fraction(cpu, dev), matched_fraction(dev, cpu)]
        cpu_dsb.append(dsb_score(gt, cpu))
        dev_dsb.append(dsb_score(gt, dev))
    print(f"torch vs CPU labelling on {len(val_probs)} val images: matched {min(agree):.4f} (worst), "
          f"DSB {np.mean(dev_dsb):.4f} vs {np.mean(cpu_dsb):.4f}")
    assert min(agree) >= 0.99
    assert abs(np.mean(dev_dsb) - np.mean(cpu_dsb)) <= 1e-3


def test_instance_table_torch_matches_cpu(val_probs):
    _, probs, _, cfg = val_probs[0]
    labels = label_instances(probs, cfg)
    image = np.random.default_rng(0).random(labels.shape).astype(np.float32)
    want = instance_table(labels, probs, image)
    got = instance_table_torch(torch.from_numpy(labels), torch.from_numpy(probs), torch.from_numpy(image))
    assert len(got) == len(want) > 0
    for col in ("id", "area", "bbox"):
        np.testing.assert_array_equal(getattr(got, col), getattr(want, col))
    for col in ("centroid", "score", "intensity"):
        np.testing.assert_allclose(getattr(got, col), getattr(want, col), rtol=1e-9, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), h=st.integers(1, 40), w=st.integers(1, 40),
       density=st.floats(0.05, 0.7))
@example(seed=0, h=1, w=1, density=0.5)
def test_components_number_like_opencv(seed, h, w, density):
    mask = np.random.default_rng(seed).random((h, w)) < density
    n, want = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8, ltype=cv2.CV_32S)
    from edgeseg.postprocess_torch import _number

    t = torch.from_numpy(mask)
    got, m = _number(components(t, 8), t, 1)
    assert m == n - 1
    np.testing.assert_array_equal(got.numpy(), want)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), h=st.integers(2, 48), w=st.integers(2, 48),
       fill=st.booleans(), min_size=st.integers(0, 6), max_grow=st.integers(0, 5))
def test_random_probabilities_match_cpu(seed, h, w, fill, min_size, max_grow):
    rng = np.random.default_rng(seed)
    logits = cv2.GaussianBlur(rng.normal(size=(h, w, 3)).astype(np.float32), (5, 5), 1.5) * 4
    e = np.exp(logits - logits.max(axis=2, keepdims=True))
    probs = np.ascontiguousarray((e / e.sum(axis=2, keepdims=True)).transpose(2, 0, 1))
    cfg = PostprocessConfig(fill_holes=fill, min_size=min_size, max_grow=max_grow)
    np.testing.assert_array_equal(label_instances_torch(torch.from_numpy(probs), cfg).numpy(),
                                  label_instances(probs, cfg))


@settings(max_examples=20, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**16), h=st.integers(2, 48), w=st.integers(2, 48),
       conf=st.sampled_from([0.4, 0.6, 0.8]), border_weight=st.sampled_from([1.0, 0.75, 0.0]))
def test_min_confidence_matches_cpu(seed, h, w, conf, border_weight):
    rng = np.random.default_rng(seed)
    logits = cv2.GaussianBlur(rng.normal(size=(h, w, 3)).astype(np.float32), (5, 5), 1.5) * 4
    e = np.exp(logits - logits.max(axis=2, keepdims=True))
    probs = np.ascontiguousarray((e / e.sum(axis=2, keepdims=True)).transpose(2, 0, 1))
    cfg = PostprocessConfig(min_size=1, min_confidence=conf, border_weight=border_weight)
    np.testing.assert_array_equal(label_instances_torch(torch.from_numpy(probs), cfg).numpy(),
                                  label_instances(probs, cfg))


def test_bad_input_is_one_clear_error():
    with pytest.raises(InputError, match="torch tensor"):
        label_instances_torch(np.zeros((3, 4, 4), np.float32))
    with pytest.raises(InputError, match="3 x H x W"):
        label_instances_torch(torch.zeros(2, 4, 4))
    with pytest.raises(InputError, match="float"):
        label_instances_torch(torch.zeros(3, 4, 4, dtype=torch.int32))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_labels_equal_cpu_tensor_labels(val_probs):
    for _, probs, _, cfg in val_probs[:5]:
        cpu = label_instances_torch(torch.from_numpy(probs), cfg)
        dev = label_instances_torch(torch.from_numpy(probs).cuda(), cfg)
        assert dev.is_cuda
        np.testing.assert_array_equal(dev.cpu().numpy(), cpu.numpy())

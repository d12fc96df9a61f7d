"""The fast paths of label_instances against a straightforward reference implementation.

The reference does every step the plain way (whole-frame numpy, one 3 x 3 maximum per growth
step, whole-frame connected components of the unseeded pieces, a bincount and a lookup table for
the renumbering), so a fast path that drifts from the definition fails here.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import edgeseg.postprocess as pp
from edgeseg.errors import InputError
from edgeseg.postprocess import PostprocessConfig, label_instances


def _flood_fill_holes(fg: np.ndarray) -> np.ndarray:
    h, w = fg.shape
    padded = np.zeros((h + 2, w + 2), np.uint8)
    padded[1:-1, 1:-1] = fg.astype(np.uint8)
    cv2.floodFill(padded, np.zeros((h + 4, w + 4), np.uint8), (0, 0), 1, flags=4)
    return fg | (padded[1:-1, 1:-1] == 0)


def _components(mask: np.ndarray) -> tuple[int, np.ndarray]:
    """Whole-frame 8-connected components (OpenCV's numbering), int64."""
    n, lab = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8, ltype=cv2.CV_32S)
    return n, lab.astype(np.int64)


def reference_label(probs: np.ndarray, cfg: PostprocessConfig) -> np.ndarray:
    fg = probs[0] < np.float32(1.0 - cfg.fg_threshold)
    if cfg.fill_holes:
        fg = _flood_fill_holes(fg)
    seeds = (probs[1] > np.float32(cfg.seed_threshold)) & fg
    n, lab = _components(seeds)
    todo = fg & ~seeds
    h, w = lab.shape
    for _ in range(cfg.max_grow):
        pad = np.pad(lab, 1)
        best = np.max([pad[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)], axis=0)
        take = todo & (best > 0)
        if not take.any():
            break
        lab[take] = best[take]
        todo &= ~take
    if todo.any():
        m, rest = _components(todo)
        lab[todo] = rest[todo] + n - 1
        n += m - 1
    areas = np.bincount(lab.ravel(), minlength=n)
    keep = areas >= max(cfg.min_size, 1)
    if cfg.min_confidence > 0:  # mean P(body) + w P(border); w = 1: mean 1 - P(background)
        def mean(c):
            return np.bincount(lab.ravel(), weights=probs[c].ravel().astype(np.float64),
                               minlength=n) / np.maximum(areas, 1)
        w = cfg.border_weight
        keep &= (1.0 - mean(0) if w == 1.0 else mean(1) + w * mean(2)) >= cfg.min_confidence
    keep[0] = False
    lut = np.zeros(n, np.int64)
    lut[keep] = np.arange(1, keep.sum() + 1)
    return lut[lab].astype(np.int32)


def _probs(seed: int, h: int, w: int, blur: float) -> np.ndarray:
    """Blob-like probabilities (blur > 0) or per-pixel noise (blur 0): every path is exercised,
    unseeded pieces, holes and instances under min_size included."""
    rng = np.random.default_rng(seed)
    x = rng.random((h, w), dtype=np.float32)
    if blur:
        x = cv2.GaussianBlur(x, (0, 0), blur)
        x = (x - x.min()) / max(float(x.max() - x.min()), 1e-6)
    fg = np.clip((x - 0.35) * 4, 0, 1)
    body = np.clip((x - 0.55) * 4, 0, 1) * fg * rng.uniform(0.5, 1.0)
    return np.stack([1 - fg, body, fg - body]).astype(np.float32)


@settings(max_examples=80, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**16), h=st.integers(1, 64), w=st.integers(1, 64),
       blur=st.sampled_from([0.0, 1.0, 2.5]), fill=st.booleans(), min_size=st.integers(0, 12),
       max_grow=st.sampled_from([0, 1, 3, 64]))
@example(seed=0, h=1, w=1, blur=0.0, fill=True, min_size=0, max_grow=64)
@example(seed=3, h=4, w=1, blur=0.0, fill=True, min_size=0, max_grow=64)
def test_label_instances_matches_reference(seed, h, w, blur, fill, min_size, max_grow):
    probs = _probs(seed, h, w, blur)
    cfg = PostprocessConfig(fill_holes=fill, min_size=min_size, max_grow=max_grow)
    np.testing.assert_array_equal(label_instances(probs, cfg), reference_label(probs, cfg))


@pytest.mark.parametrize("sparse", [0.0, 1.0])  # the dense and the sparse renumbering
@pytest.mark.parametrize("grow", [0.0, 1.0])  # all-sparse and all-dense growth
def test_every_path_matches_reference_on_a_larger_frame(monkeypatch, sparse, grow):
    monkeypatch.setattr(pp, "_SPARSE_RENUMBER", sparse)
    monkeypatch.setattr(pp, "_SPARSE_FRACTION", grow)
    for seed in range(3):
        probs = _probs(seed, 150, 203, 2.0)
        cfg = PostprocessConfig(min_size=6)
        want = reference_label(probs, cfg)
        assert want.max() > 20
        np.testing.assert_array_equal(label_instances(probs, cfg), want)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**16), h=st.integers(1, 70), w=st.integers(1, 70),
       density=st.floats(0.0, 0.6), n=st.integers(1, 300))
@example(seed=0, h=5, w=9, density=0.0, n=1)
@example(seed=1, h=70, w=70, density=0.02, n=65530)  # the ids outgrow 16 bits
def test_unseeded_pieces_number_like_the_whole_frame(seed, h, w, density, n):
    """The bounding-box labelling of the leftover pixels equals whole-frame
    connectedComponents shifted by n - 1 (odd box corners included)."""
    rng = np.random.default_rng(seed)
    todo = ((rng.random((h, w)) < density) * 255).astype(np.uint8)
    labels = rng.integers(0, n, (h, w)).astype(pp._label_dtype(n))
    labels[todo != 0] = 0
    want = labels.astype(np.int64)
    m, rest = _components(todo != 0)
    want[todo != 0] = rest[todo != 0] + n - 1
    got, count = pp._label_unseeded(labels.copy(), todo, n)
    assert count == n + max(m - 1, 0)
    np.testing.assert_array_equal(got.astype(np.int64), want)


def test_unseeded_piece_at_an_odd_corner():
    """The leftover pixels' box starts at row 1: labelled in that box as is, OpenCV's 2 x 2
    block scan would meet the piece at (2, 0) first; on the whole frame (and in the box moved to
    row 0) the piece at (1, 2) comes first."""
    todo = np.zeros((6, 6), np.uint8)
    todo[1, 2] = todo[2, 0] = 255
    m, rest = _components(todo != 0)
    assert m == 3 and rest[1, 2] == 1 and rest[2, 0] == 2  # block order, not raster order
    assert cv2.connectedComponents(todo[1:3, 0:3], connectivity=8)[1][1, 0] == 1  # the trap
    got, count = pp._label_unseeded(np.zeros(todo.shape, np.uint16), todo, 10)
    assert count == 12 and got[1, 2] == 10 and got[2, 0] == 11


@pytest.mark.parametrize("dtype", [np.uint16, np.float32])
@pytest.mark.parametrize("sparse", [0.0, 1.0])
def test_renumber_matches_a_lookup_table(monkeypatch, dtype, sparse):
    monkeypatch.setattr(pp, "_SPARSE_RENUMBER", sparse)
    rng = np.random.default_rng(7)
    for n, min_size, fg in ((1, 0, 0.5), (2, 1, 0.3), (50, 5, 0.1), (400, 3, 0.7), (3000, 2, 0.9)):
        lab = rng.integers(1, n, (97, 131)) if n > 1 else np.zeros((97, 131), np.int64)
        lab[rng.random(lab.shape) > fg] = 0
        areas = np.bincount(lab.ravel(), minlength=n)
        keep = areas >= max(min_size, 1)
        keep[0] = False
        lut = np.zeros(n, np.int64)
        lut[keep] = np.arange(1, keep.sum() + 1)
        got = pp._renumber(lab.astype(dtype), n, min_size)
        assert got.dtype == np.int32
        np.testing.assert_array_equal(got, lut[lab])


@settings(max_examples=40, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**16), h=st.integers(1, 48), w=st.integers(1, 48),
       blur=st.sampled_from([0.0, 1.0, 2.5]), min_size=st.integers(0, 6),
       conf=st.sampled_from([0.3, 0.5, 0.6, 0.7, 0.8, 0.9]),
       border_weight=st.sampled_from([1.0, 0.75, 0.3, 0.0]))
def test_min_confidence_matches_reference(seed, h, w, blur, min_size, conf, border_weight):
    probs = _probs(seed, h, w, blur)
    cfg = PostprocessConfig(min_size=min_size, min_confidence=conf, border_weight=border_weight)
    got = label_instances(probs, cfg)
    np.testing.assert_array_equal(got, reference_label(probs, cfg))
    # a subset of the instances without the rule: it only removes
    assert got.max() <= label_instances(probs, cfg.with_overrides(min_confidence=0.0)).max()


def test_min_confidence_drops_faint_blobs_only():
    probs = np.zeros((3, 40, 40), np.float32)
    probs[0] = 1.0
    for (y, x), p_fg in (((10, 10), 0.95), ((30, 30), 0.6)):  # a sure and a faint nucleus
        probs[0, y - 4:y + 5, x - 4:x + 5] = 1 - p_fg
        probs[1, y - 4:y + 5, x - 4:x + 5] = p_fg
    assert label_instances(probs, min_size=0).max() == 2
    kept = label_instances(probs, min_size=0, min_confidence=0.8)
    assert kept.max() == 1 and kept[10, 10] == 1 and kept[30, 30] == 0
    assert label_instances(probs, min_size=0, min_confidence=0.5).max() == 2


@pytest.mark.parametrize("bad", [-0.1, 1.0, 2, True, "0.8"])
def test_min_confidence_validation(bad):
    with pytest.raises(InputError, match="min_confidence"):
        PostprocessConfig(min_confidence=bad)


def test_border_weight_discounts_touching_zone_slivers():
    # two pieces with the same foreground probability 0.9: a nucleus (mostly body) and a
    # sliver of touching zone between nuclei (mostly border)
    probs = np.zeros((3, 40, 40), np.float32)
    probs[0] = 1.0
    for (y, x), body in (((10, 10), 0.85), ((30, 30), 0.55)):
        probs[:, y - 4:y + 5, x - 4:x + 5] = np.array([0.1, body, 0.9 - body])[:, None, None]
    kw = dict(min_size=0, seed_threshold=0.5, min_confidence=0.8)
    assert label_instances(probs, **kw).max() == 2  # border_weight 1: mean 1 - P(bg) = 0.9
    kept = label_instances(probs, border_weight=0.5, **kw)  # 0.85 + 0.025 vs 0.55 + 0.175
    assert kept.max() == 1 and kept[10, 10] == 1 and kept[30, 30] == 0
    # without min_confidence the weight changes nothing
    assert label_instances(probs, min_size=0, border_weight=0.0).max() == 2


@pytest.mark.parametrize("bad", [-0.1, 1.01, 2, True, "0.8", float("nan")])
def test_border_weight_validation(bad):
    with pytest.raises(InputError, match="border_weight"):
        PostprocessConfig(border_weight=bad)


def test_configs_written_before_min_confidence_keep_all_instances():
    old = {"seed_threshold": 0.5, "fg_threshold": 0.5, "min_size": 32, "fill_holes": True,
           "max_grow": 64}
    assert PostprocessConfig.from_dict(old).min_confidence == 0.0
    assert PostprocessConfig.from_dict(old).border_weight == 1.0

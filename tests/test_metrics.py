"""Tests of edgeseg.metrics: hand-computed cases, a brute-force reference and properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeseg import metrics
from edgeseg.errors import InputError
from edgeseg.metrics import (
    IOU_THRESHOLDS,
    DetectionStats,
    ImageScore,
    detection_stats,
    dsb_score,
    dsb_score_dataset,
    iou_matrix,
    match,
    score_image,
)

# ---------------------------------------------------------------- helpers


def brute_iou(gt: np.ndarray, pred: np.ndarray):
    """Per-object reference with boolean masks."""
    gt_ids = [int(i) for i in np.unique(gt) if i != 0]
    pred_ids = [int(i) for i in np.unique(pred) if i != 0]
    iou = np.zeros((len(gt_ids), len(pred_ids)))
    for a, gi in enumerate(gt_ids):
        gm = gt == gi
        for b, pj in enumerate(pred_ids):
            pm = pred == pj
            iou[a, b] = (gm & pm).sum() / (gm | pm).sum()
    return iou, np.array(gt_ids, dtype=np.int64), np.array(pred_ids, dtype=np.int64)


def score_by_hand(ap_per_threshold) -> float:
    return float(np.mean(ap_per_threshold))


@st.composite
def label_images(draw, shape=None):
    """Small label images painted from random rectangles (ids may be large/non-consecutive)."""
    if shape is None:
        shape = (draw(st.integers(1, 20)), draw(st.integers(1, 20)))
    h, w = shape
    img = np.zeros(shape, dtype=np.int64)
    n = draw(st.integers(0, 6))
    ids = draw(st.lists(st.integers(1, 2**31), min_size=n, max_size=n, unique=True))
    for obj in ids:
        y0, x0 = draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1))
        y1, x1 = draw(st.integers(y0 + 1, h)), draw(st.integers(x0 + 1, w))
        img[y0:y1, x0:x1] = obj
    return img


@st.composite
def label_pairs(draw):
    shape = (draw(st.integers(1, 20)), draw(st.integers(1, 20)))
    return draw(label_images(shape)), draw(label_images(shape))


def box(shape, *boxes):
    """Label image with object k+1 on boxes[k] = (y0, y1, x0, x1)."""
    img = np.zeros(shape, dtype=np.int32)
    for k, (y0, y1, x0, x1) in enumerate(boxes):
        img[y0:y1, x0:x1] = k + 1
    return img


# ---------------------------------------------------------------- constants


def test_thresholds_exact():
    assert IOU_THRESHOLDS.shape == (10,)
    assert IOU_THRESHOLDS.tolist() == [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]


# ---------------------------------------------------------------- hand-built cases


def test_empty_vs_empty_is_one():
    z = np.zeros((8, 8), np.int32)
    assert dsb_score(z, z) == 1.0
    s = detection_stats(z, z)
    assert (s.tp, s.fp, s.fn) == (0, 0, 0)
    assert s.precision == s.recall == s.f1 == s.ap == 1.0
    assert score_image(z, z) == ImageScore(1.0, 1.0, 1.0, 0, 0)


def test_empty_vs_some_is_zero_both_ways():
    z = np.zeros((8, 8), np.int32)
    a = box((8, 8), (0, 3, 0, 3))
    assert dsb_score(z, a) == 0.0
    assert dsb_score(a, z) == 0.0
    s = detection_stats(a, z)
    assert s == DetectionStats(tp=0, fp=0, fn=1, precision=0.0, recall=0.0, f1=0.0, ap=0.0)
    s = detection_stats(z, a)
    assert s == DetectionStats(tp=0, fp=1, fn=0, precision=0.0, recall=0.0, f1=0.0, ap=0.0)


def test_perfect_one_to_one():
    gt = box((20, 20), (0, 5, 0, 5), (10, 15, 10, 20), (6, 9, 0, 20))
    pred = np.where(gt > 0, 10 - gt, 0)  # same objects, other ids
    assert dsb_score(gt, pred) == 1.0
    assert score_image(gt, pred) == ImageScore(1.0, 1.0, 1.0, 3, 3)


def test_split():
    # gt 10x10 (100 px); pred halves of 60 and 40 px: IoU 0.6 and 0.4.
    gt = box((10, 10), (0, 10, 0, 10))
    pred = box((10, 10), (0, 10, 0, 6), (0, 10, 6, 10))
    iou, _, _ = iou_matrix(gt, pred)
    np.testing.assert_array_equal(iou, [[0.6, 0.4]])
    assert iou.dtype == np.float64
    # t = 0.50, 0.55: TP=1 FP=1 FN=0 -> 1/2; t >= 0.60: 0.6 is not > 0.6 -> TP=0 FP=2 FN=1.
    assert dsb_score(gt, pred) == pytest.approx(score_by_hand([0.5, 0.5] + [0.0] * 8))
    assert dsb_score(gt, pred) == pytest.approx(0.1)
    s = detection_stats(gt, pred, 0.5)
    assert (s.tp, s.fp, s.fn) == (1, 1, 0)
    assert (s.precision, s.recall, s.f1, s.ap) == pytest.approx((0.5, 1.0, 2 / 3, 0.5))


def test_merge():
    # two gt objects 70 + 30 px merged into one 100 px prediction: IoU 0.7 and 0.3.
    gt = box((10, 10), (0, 10, 0, 7), (0, 10, 7, 10))
    pred = box((10, 10), (0, 10, 0, 10))
    # 0.7 > t for t = 0.50..0.65 (4 thresholds): TP=1 FP=0 FN=1 -> 1/2; otherwise 0.
    assert dsb_score(gt, pred) == pytest.approx(score_by_hand([0.5] * 4 + [0.0] * 6))
    assert dsb_score(gt, pred) == pytest.approx(0.2)
    r = score_image(gt, pred)
    assert r.ap50 == pytest.approx(0.5)
    assert r.f1_50 == pytest.approx(2 / 3)
    assert (r.n_gt, r.n_pred) == (2, 1)


def test_iou_exactly_at_threshold_is_not_a_match():
    # gt 4x10 = 40 px, pred 3x10 = 30 px inside it: IoU exactly 0.75.
    gt = box((6, 12), (1, 5, 1, 11))
    pred = box((6, 12), (1, 4, 1, 11))
    iou, _, _ = iou_matrix(gt, pred)
    assert iou[0, 0] == 0.75
    assert detection_stats(gt, pred, 0.75).tp == 0
    assert detection_stats(gt, pred, 0.70).tp == 1
    assert match(iou, 0.75) == (0, 1, 1)
    # matched at 0.50, 0.55, 0.60, 0.65, 0.70 (score 1 each), not at 0.75..0.95.
    assert dsb_score(gt, pred) == 0.5


def test_shifted_object():
    # 10x10 square shifted 2 px: intersection 80, union 120, IoU 2/3.
    gt = box((12, 14), (1, 11, 1, 11))
    pred = box((12, 14), (1, 11, 3, 13))
    iou, _, _ = iou_matrix(gt, pred)
    assert iou[0, 0] == pytest.approx(2 / 3)
    assert dsb_score(gt, pred) == pytest.approx(0.4)  # matched at 0.50..0.65


@pytest.mark.parametrize("dtype", [np.int64, np.uint32, np.uint64])
def test_non_consecutive_and_large_ids(dtype):
    big = 2**31 if dtype != np.int64 else 2**30
    gt = np.zeros((10, 10), dtype)
    gt[:4, :4] = 7
    gt[6:, 6:] = big
    pred = np.zeros((10, 10), dtype)
    pred[:4, :4] = 5
    pred[6:, :3] = 3  # spurious
    iou, gt_ids, pred_ids = iou_matrix(gt, pred)
    assert gt_ids.tolist() == [7, big]
    assert pred_ids.tolist() == [3, 5]
    np.testing.assert_array_equal(iou, [[0.0, 1.0], [0.0, 0.0]])
    assert dsb_score(gt, pred) == pytest.approx(1 / 3)
    assert dsb_score(gt, gt) == 1.0


def test_huge_uint64_ids():
    gt = np.zeros((5, 5), np.uint64)
    gt[:2] = np.uint64(2**64 - 1)
    gt[3:] = np.uint64(2**63 + 5)
    iou, gt_ids, _ = iou_matrix(gt, gt)
    assert gt_ids.tolist() == [2**63 + 5, 2**64 - 1]
    np.testing.assert_array_equal(iou, np.eye(2))


def test_bool_input():
    gt = np.zeros((8, 8), bool)
    gt[2:6, 2:6] = True
    pred = gt.copy()
    assert dsb_score(gt, pred) == 1.0
    iou, gt_ids, pred_ids = iou_matrix(gt, np.zeros_like(gt))
    assert iou.shape == (1, 0) and gt_ids.tolist() == [1] and pred_ids.tolist() == []


def test_match_greedy_below_half():
    iou = np.array([[0.4, 0.3], [0.35, 0.0]])
    # greedy: (0,0)=0.4 taken; (1,0) and (0,1) blocked -> one match.
    assert match(iou, 0.2) == (1, 1, 1)
    assert match(iou, 0.32) == (1, 1, 1)
    assert match(iou, 0.45) == (0, 2, 2)
    assert match(np.zeros((0, 3)), 0.1) == (0, 3, 0)


def test_detection_stats_low_threshold():
    gt = box((10, 10), (0, 10, 0, 10))
    pred = box((10, 10), (0, 10, 0, 6), (0, 10, 6, 10))
    s = detection_stats(gt, pred, iou_threshold=0.3)
    assert (s.tp, s.fp, s.fn) == (1, 1, 0)  # one gt cannot match both halves


def test_dataset_mean_and_empty():
    z = np.zeros((4, 4), np.int32)
    a = box((4, 4), (0, 2, 0, 2))
    assert dsb_score_dataset([(z, z), (a, z), (a, a)]) == pytest.approx(2 / 3)
    assert dsb_score_dataset(iter([(a, a)])) == 1.0
    with pytest.raises(InputError, match="empty"):
        dsb_score_dataset([])
    with pytest.raises(InputError, match="pair 1.*float64"):
        dsb_score_dataset([(a, a), (a, a.astype(float))])
    with pytest.raises(InputError, match="pair 0 must be a"):
        dsb_score_dataset([a])


# ---------------------------------------------------------------- reference comparison


@pytest.mark.parametrize("seed", range(5))
def test_iou_matrix_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    shape = (40, 50)
    gt = rng.integers(0, 8, size=shape) * (rng.random(shape) < 0.7)
    pred = np.roll(gt, rng.integers(-3, 4), axis=1)
    pred[rng.random(shape) < 0.1] = rng.integers(0, 12)
    ids = rng.permutation(2**20)[:12] * 40**seed  # sparse ids; seed >= 1 exceeds _LUT_MAX
    ids[0] = 0
    pred = ids[pred]
    got = iou_matrix(gt, pred)
    want = brute_iou(gt, pred)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "dense_max, lut_max",
    [
        (1 << 22, 1 << 24),  # pred compacted with a lookup table, dense histogram
        (1 << 22, 1),  # pred compacted by binary search, dense histogram
        (1, 1 << 24),  # both compacted, sparse pair counting
        (1, 1),
    ],
)
def test_all_code_paths_agree(monkeypatch, dense_max, lut_max):
    rng = np.random.default_rng(1)
    gt = rng.integers(0, 30, size=(30, 30))
    pred = rng.integers(0, 30, size=(30, 30)) * 10**6 + (rng.random((30, 30)) < 0.5)
    want = brute_iou(gt, pred)
    monkeypatch.setattr(metrics, "_DENSE_BINS_MAX", dense_max)
    monkeypatch.setattr(metrics, "_LUT_MAX", lut_max)
    got = iou_matrix(gt, pred)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-12)


@settings(max_examples=100, deadline=None)
@given(label_pairs())
def test_iou_matrix_property_vs_brute_force(pair):
    gt, pred = pair
    got = iou_matrix(gt, pred)
    for g, w in zip(got, brute_iou(gt, pred)):
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-12)


# ---------------------------------------------------------------- properties


@settings(max_examples=100, deadline=None)
@given(label_pairs(), st.randoms(use_true_random=False))
def test_permuting_pred_ids_changes_nothing(pair, rnd):
    gt, pred = pair
    ids = np.unique(pred)
    ids = ids[ids > 0]
    new = np.array(rnd.sample(range(1, 10**6), ids.size), dtype=np.int64)
    permuted = np.zeros_like(pred)
    for old, nw in zip(ids, new):
        permuted[pred == old] = nw
    assert dsb_score(gt, permuted) == pytest.approx(dsb_score(gt, pred), abs=1e-12)
    assert dsb_score(pred, permuted) == 1.0


@settings(max_examples=100, deadline=None)
@given(label_pairs(), st.integers(0, 2**32))
def test_spurious_object_never_raises_score(pair, seed):
    gt, pred = pair
    free = (gt == 0) & (pred == 0)
    if not free.any():
        return
    rng = np.random.default_rng(seed)
    extra = free & (rng.random(free.shape) < 0.5)
    extra.flat[np.flatnonzero(free)[0]] = True
    worse = pred.copy()
    worse[extra] = pred.max() + 1
    assert dsb_score(gt, worse) <= dsb_score(gt, pred) + 1e-12


@settings(max_examples=100, deadline=None)
@given(label_pairs())
def test_symmetric_and_bounded(pair):
    gt, pred = pair
    s = dsb_score(gt, pred)
    assert 0.0 <= s <= 1.0
    assert s == pytest.approx(dsb_score(pred, gt), abs=1e-12)
    r = score_image(gt, pred)
    assert r.dsb_score == s
    stats = detection_stats(gt, pred)
    assert r.ap50 == stats.ap and r.f1_50 == stats.f1
    for v in (stats.precision, stats.recall, stats.f1, stats.ap):
        assert 0.0 <= v <= 1.0


@settings(max_examples=50, deadline=None)
@given(label_pairs(), st.sampled_from(IOU_THRESHOLDS.tolist()))
def test_matches_above_half_are_unique(pair, t):
    iou = iou_matrix(*pair)[0]
    gi, pj = np.nonzero(iou > t)
    assert len(set(gi.tolist())) == gi.size and len(set(pj.tolist())) == pj.size


# ---------------------------------------------------------------- bad input


GOOD = np.zeros((8, 8), np.int32)


@pytest.mark.parametrize(
    "gt, pred, pattern",
    [
        (GOOD.astype(np.float32), GOOD, r"gt labels must be an integer array, got float32.*astype"),
        (GOOD, GOOD.astype(np.float64), r"pred labels must be an integer array, got float64"),
        (np.zeros((1, 8, 8), np.int32), GOOD, r"gt must be a 2-D.*3-D.*\(1, 8, 8\)"),
        (GOOD, np.zeros((1, 1, 8, 8), np.int32), r"pred must be a 2-D.*4-D.*\(1, 1, 8, 8\)"),
        (GOOD, np.zeros((8, 9), np.int32), r"same shape.*\(8, 8\).*\(8, 9\)"),
        (GOOD - 1, GOOD, r"gt contains negative ids \(min -1\)"),
        (GOOD.tolist(), GOOD, r"gt must be a numpy array, got list.*np.asarray"),
        (GOOD, None, r"pred must be a numpy array, got NoneType"),
        (np.zeros((0, 8), np.int32), np.zeros((0, 8), np.int32), r"empty image.*\(0, 8\)"),
        (GOOD.astype(complex), GOOD, r"integer array, got complex128"),
    ],
)
def test_bad_input(gt, pred, pattern):
    for fn in (iou_matrix, dsb_score, detection_stats, score_image):
        with pytest.raises(InputError, match=pattern):
            fn(gt, pred)


def test_inputs_not_modified():
    gt = box((10, 10), (0, 5, 0, 5)).astype(np.uint16)
    pred = np.roll(gt, 1, axis=0)
    g0, p0 = gt.copy(), pred.copy()
    score_image(gt, pred)
    np.testing.assert_array_equal(gt, g0)
    np.testing.assert_array_equal(pred, p0)


def test_input_error_is_value_error():
    with pytest.raises(ValueError):
        dsb_score(GOOD.astype(np.float32), GOOD)


def test_match_rejects_bad_iou():
    with pytest.raises(InputError, match="2-D numpy array.*shape \\(3,\\)"):
        match(np.zeros(3), 0.5)

"""Instance segmentation metrics: IoU matrix, matching and the Kaggle DSB2018 score.

Label images are 2-D integer arrays: 0 is background, every positive value is one object.
Ids need not be consecutive and may be large (e.g. ``uint32`` ids up to ``2**31``).

All overlaps come from ONE joint label histogram (``np.bincount`` over paired pixel codes),
so the cost is a few passes over the pixels whatever the number of objects. A predicted and a
ground-truth object match at threshold ``t`` when their IoU is strictly greater than ``t``.

The DSB2018 score of one image is the mean over :data:`IOU_THRESHOLDS` (0.50, 0.55, ..., 0.95)
of ``TP / (TP + FP + FN)``. When both images are empty the score is 1.0; when exactly one is
empty it is 0.0.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterable, Tuple

import numpy as np

from .errors import InputError

__all__ = [
    "IOU_THRESHOLDS",
    "DetectionStats",
    "ImageScore",
    "iou_matrix",
    "match",
    "dsb_score",
    "dsb_score_dataset",
    "detection_stats",
    "score_image",
]

log = logging.getLogger(__name__)

#: The ten DSB2018 IoU thresholds 0.50, 0.55, ..., 0.95 (rounded so that 0.75 is exactly 0.75).
IOU_THRESHOLDS: np.ndarray = np.round(np.arange(0.5, 1.0, 0.05), 2)

# Largest joint histogram (n_gt_codes * n_pred_codes bins, also capped at 4 bins per pixel)
# built densely; bigger ones are counted sparsely with np.unique. Module-level so tests can
# force either path.
_DENSE_BINS_MAX = 1 << 22
# Ids up to this value are remapped with a lookup table; larger ones with a binary search.
_LUT_MAX = 1 << 24


@dataclass(frozen=True)
class DetectionStats:
    """Object-level detection counts and ratios at one IoU threshold.

    ``ap`` is the DSB2018 "average precision" ``TP / (TP + FP + FN)``. Ratios whose
    denominator is zero are 1.0 when both images are empty (nothing to find, nothing
    wrongly found) and 0.0 otherwise (e.g. precision with no predictions on an image with
    objects: a model that finds nothing gets no credit).
    """

    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    f1: float
    ap: float


@dataclass(frozen=True)
class ImageScore:
    """Scores of one image, all computed from a single IoU matrix (see :func:`score_image`)."""

    dsb_score: float
    ap50: float
    f1_50: float
    n_gt: int
    n_pred: int


def _check_one(name: str, a: object) -> np.ndarray:
    if not isinstance(a, np.ndarray):
        raise InputError(
            f"{name} must be a numpy array, got {type(a).__name__}; "
            f"convert it with np.asarray({name})"
        )
    if a.ndim != 2:
        raise InputError(
            f"{name} must be a 2-D label image (H, W), got a {a.ndim}-D array of shape "
            f"{a.shape}; pass one single-channel image, e.g. {name}[0] or {name}[..., 0]"
        )
    if a.size == 0:
        raise InputError(
            f"{name} is an empty image of shape {a.shape}; expected at least one pixel"
        )
    if a.dtype == np.bool_:
        return a.view(np.uint8)
    if not np.issubdtype(a.dtype, np.integer):
        raise InputError(
            f"{name} labels must be an integer array, got {a.dtype}; convert with "
            f"labels.astype(np.int32) if the values are whole numbers"
        )
    if np.issubdtype(a.dtype, np.signedinteger):
        lo = int(a.min())
        if lo < 0:
            raise InputError(
                f"{name} contains negative ids (min {lo}); expected 0 for background and "
                f"positive ids for objects; relabel, e.g. np.where({name} < 0, 0, {name})"
            )
    return a


def _check_pair(gt: object, pred: object) -> Tuple[np.ndarray, np.ndarray]:
    """Validate a (gt, pred) pair of label images; bool images are viewed as uint8."""
    g = _check_one("gt", gt)
    p = _check_one("pred", pred)
    if g.shape != p.shape:
        raise InputError(
            f"gt and pred must have the same shape, got gt {g.shape} and pred {p.shape}; "
            f"resize the prediction to the ground-truth size with nearest-neighbour "
            f"interpolation (cv2.INTER_NEAREST) so that ids are not blended"
        )
    return g, p


def _compact(flat: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Map the ids of ``flat`` to codes 0..k-1 (code 0 = background); return (codes, ids)."""
    # Distinct ids from the run starts only: label images have long runs, so this is tiny.
    starts = np.empty(flat.size, dtype=bool)
    starts[0] = True
    np.not_equal(flat[1:], flat[:-1], out=starts[1:])
    ids = np.unique(np.concatenate((np.zeros(1, flat.dtype), flat[starts])))
    top = int(ids[-1])
    if top <= _LUT_MAX:
        lut = np.zeros(top + 1, dtype=np.intp)
        lut[ids] = np.arange(ids.size)
        return lut[flat], ids
    return np.searchsorted(ids, flat).astype(np.intp, copy=False), ids


def _iou_from_pair(g: np.ndarray, p: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IoU matrix of two validated label images through one joint histogram."""
    gf, pf = g.ravel(), p.ravel()
    kg, kp = int(gf.max()) + 1, int(pf.max()) + 1
    gcodes: np.ndarray | None = None
    pcodes: np.ndarray | None = None
    gvals = pvals = None
    # Small images get a small histogram budget: compacting is cheaper than zeroing bins.
    limit = min(_DENSE_BINS_MAX, max(4 * gf.size, 1 << 16))
    # Compact ids to 0..n (larger id range first) only while the histogram would be too big.
    while kg * kp > limit and (gvals is None or pvals is None):
        if pvals is not None or (gvals is None and kg >= kp):
            gcodes, gvals = _compact(gf)
            kg = gvals.size
        else:
            pcodes, pvals = _compact(pf)
            kp = pvals.size
    joint = gf.astype(np.intp) if gcodes is None else gcodes  # our own array: safe in place
    joint *= kp
    np.add(joint, pf if pcodes is None else pcodes, out=joint, casting="unsafe")
    if kg * kp <= limit:
        hist = np.bincount(joint, minlength=kg * kp).reshape(kg, kp)
        area_g, area_p = hist.sum(axis=1), hist.sum(axis=0)
        rows, cols = np.flatnonzero(area_g[1:]) + 1, np.flatnonzero(area_p[1:]) + 1
        inter = hist[np.ix_(rows, cols)]
    else:  # very many objects on both sides: count only the pairs that occur
        log.debug("sparse joint histogram: %d x %d codes", kg, kp)
        pairs, counts = np.unique(joint, return_counts=True)
        pg, pp = np.divmod(pairs, kp)
        area_g = np.bincount(pg, weights=counts, minlength=kg).astype(np.int64)
        area_p = np.bincount(pp, weights=counts, minlength=kp).astype(np.int64)
        rows, cols = np.flatnonzero(area_g[1:]) + 1, np.flatnonzero(area_p[1:]) + 1
        keep = (pg > 0) & (pp > 0)
        inter = np.zeros((rows.size, cols.size), dtype=np.int64)
        inter[np.searchsorted(rows, pg[keep]), np.searchsorted(cols, pp[keep])] = counts[keep]
    union = area_g[rows][:, None] + area_p[cols][None, :] - inter
    iou = inter / np.maximum(union, 1)
    gt_ids = rows if gvals is None else gvals[rows]
    pred_ids = cols if pvals is None else pvals[cols]
    return iou, gt_ids, pred_ids


def iou_matrix(gt: np.ndarray, pred: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """IoU of every ground-truth object with every predicted object.

    Args:
        gt: ground-truth label image, (H, W) integer or bool, 0 = background.
        pred: predicted label image of the same shape.

    Returns:
        ``(iou, gt_ids, pred_ids)``: ``iou[i, j]`` (float64, shape ``[n_gt, n_pred]``) is the
        IoU of object ``gt_ids[i]`` with object ``pred_ids[j]``. The ids are sorted
        ascending (int64, or the input's dtype when ids beyond the dense range are present).

    Raises:
        InputError: if the arrays are not 2-D integer/bool label images of the same shape.
    """
    g, p = _check_pair(gt, pred)
    return _iou_from_pair(g, p)


def _check_iou(iou: object) -> np.ndarray:
    if not isinstance(iou, np.ndarray) or iou.ndim != 2:
        got = f"shape {iou.shape}" if isinstance(iou, np.ndarray) else type(iou).__name__
        raise InputError(
            f"iou must be a 2-D numpy array [n_gt, n_pred], got {got}; "
            f"compute it with iou_matrix(gt, pred)[0]"
        )
    return iou


def match(iou: np.ndarray, threshold: float) -> Tuple[int, int, int]:
    """Count one-to-one matches between objects with ``IoU > threshold`` (strictly).

    For ``threshold >= 0.5`` matches are unique: ``IoU(a, b) > 0.5`` implies that
    ``a & b`` covers more than half of ``a``, and two disjoint objects cannot both do that,
    so counting the pairs above the threshold is the exact one-to-one matching. Below 0.5 a pair is taken greedily by descending IoU (ties by
    row then column order), skipping objects already matched; this is the usual
    approximation of the optimal assignment.

    Returns:
        ``(tp, fp, fn)``: matched pairs, unmatched predictions, unmatched ground truths.
    """
    iou = _check_iou(iou)
    n_gt, n_pred = iou.shape
    if threshold >= 0.5:
        tp = int(np.count_nonzero(iou > threshold))
    else:
        gi, pj = np.nonzero(iou > threshold)
        order = np.argsort(-iou[gi, pj], kind="stable")
        used_g, used_p = np.zeros(n_gt, bool), np.zeros(n_pred, bool)
        tp = 0
        for i, j in zip(gi[order].tolist(), pj[order].tolist()):
            if not used_g[i] and not used_p[j]:
                used_g[i] = used_p[j] = True
                tp += 1
    return tp, n_pred - tp, n_gt - tp


def _ratio(num: float, den: float, both_empty: bool) -> float:
    if den == 0:
        return 1.0 if both_empty else 0.0
    return float(num) / float(den)


def _dsb_from_iou(iou: np.ndarray) -> float:
    n_gt, n_pred = iou.shape
    if n_gt == 0 and n_pred == 0:
        return 1.0
    above = iou[iou > IOU_THRESHOLDS[0]]  # unique matches: see match()
    tp = np.count_nonzero(above[:, None] > IOU_THRESHOLDS[None, :], axis=0)
    return float(np.mean(tp / (n_gt + n_pred - tp)))


def _stats_from_iou(iou: np.ndarray, threshold: float) -> DetectionStats:
    n_gt, n_pred = iou.shape
    tp, fp, fn = match(iou, threshold)
    empty = n_gt == 0 and n_pred == 0
    return DetectionStats(
        tp=tp,
        fp=fp,
        fn=fn,
        precision=_ratio(tp, tp + fp, empty),
        recall=_ratio(tp, tp + fn, empty),
        f1=_ratio(2 * tp, 2 * tp + fp + fn, empty),
        ap=_ratio(tp, tp + fp + fn, empty),
    )


def dsb_score(gt: np.ndarray, pred: np.ndarray) -> float:
    """Kaggle DSB2018 score of one image: mean over IOU_THRESHOLDS of TP / (TP + FP + FN).

    Both images empty gives 1.0; exactly one empty gives 0.0. The score is symmetric in
    ``(gt, pred)`` and lies in [0, 1].
    """
    return _dsb_from_iou(iou_matrix(gt, pred)[0])


def dsb_score_dataset(pairs: Iterable[Tuple[np.ndarray, np.ndarray]]) -> float:
    """Mean of :func:`dsb_score` over an iterable of ``(gt, pred)`` pairs.

    Raises:
        InputError: if ``pairs`` is empty or one pair is invalid (the message names its index).
    """
    scores = []
    for i, pair in enumerate(pairs):
        try:
            gt, pred = pair
        except (TypeError, ValueError) as e:
            raise InputError(
                f"pair {i} must be a (gt, pred) tuple, got {type(pair).__name__}; "
                f"pass an iterable of 2-tuples of label images"
            ) from e
        try:
            scores.append(dsb_score(gt, pred))
        except InputError as e:
            raise InputError(f"pair {i}: {e}") from e
    if not scores:
        raise InputError(
            "pairs is empty; expected at least one (gt, pred) pair of label images"
        )
    return float(np.mean(scores))


def detection_stats(
    gt: np.ndarray, pred: np.ndarray, iou_threshold: float = 0.5
) -> DetectionStats:
    """TP, FP, FN, precision, recall, F1 and DSB AP at one IoU threshold (see DetectionStats)."""
    return _stats_from_iou(iou_matrix(gt, pred)[0], iou_threshold)


def score_image(gt: np.ndarray, pred: np.ndarray) -> ImageScore:
    """DSB score, AP@0.5, F1@0.5 and object counts of one image from a single IoU matrix."""
    iou = iou_matrix(gt, pred)[0]
    at50 = _stats_from_iou(iou, 0.5)
    return ImageScore(
        dsb_score=_dsb_from_iou(iou),
        ap50=at50.ap,
        f1_50=at50.f1,
        n_gt=int(iou.shape[0]),
        n_pred=int(iou.shape[1]),
    )

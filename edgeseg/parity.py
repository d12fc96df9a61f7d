"""Parity of two models on real images: tensors, instances and the Kaggle score.

``compare(reference, candidate, samples)`` runs both Segmenters on every image and measures
(1) the class-probability error (max / mean / 99.9th percentile of |p_ref - p_cand|),
(2) the agreement of their instances (Kaggle DSB score of the candidate's labels against the
reference's), and (3) where labels exist, each model's Kaggle score against ground truth, whose
mean difference is what :data:`TOLERANCES` bounds per precision.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from .data import Sample
from .errors import DataError, InputError
from .metrics import dsb_score

__all__ = ["compare", "check_tolerance", "TOLERANCES", "side_by_side"]

log = logging.getLogger(__name__)

# Largest allowed drop of the mean DSB score vs the reference, by candidate precision.
TOLERANCES = {"fp32": 0.001, "fp16": 0.003, "int8": 0.01}


def check_tolerance(tolerance: Any, name: str = "tolerance") -> float:
    """``tolerance`` as a float: a finite number >= 0 (InputError otherwise)."""
    try:
        tol = float(tolerance)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number >= 0 (a DSB score difference), got {tolerance!r}") from None
    if isinstance(tolerance, bool) or not np.isfinite(tol) or tol < 0:
        raise InputError(f"{name} must be a finite number >= 0 (the largest allowed DSB score drop, e.g. "
                         f"0.01), got {tolerance!r}")
    return tol


def compare(reference: Any, candidate: Any, samples: Sequence[Sample], *,
            tolerance: float | None = None, progress: Callable[[Iterable], Iterable] | None = None
            ) -> dict[str, Any]:
    """Compare two Segmenters image by image; returns a report dict (see module docstring)."""
    if not samples:
        raise DataError("parity needs at least one image")
    tol = TOLERANCES.get(candidate.precision, 0.01) if tolerance is None else check_tolerance(tolerance)
    rows, worst = [], None
    for s in (progress(samples) if progress else samples):
        image = s.image()
        if image.dtype not in (np.uint8, np.uint16, np.float32):
            image = image.astype(np.float32)
        a = reference.segment(image, probabilities=True)
        b = candidate.segment(image, probabilities=True)
        diff = np.abs(a.probabilities - b.probabilities)
        row = {"id": s.id, "max_abs": float(diff.max()), "mean_abs": float(diff.mean()),
               "p999_abs": float(np.percentile(diff, 99.9)), "agreement_dsb": dsb_score(a.labels, b.labels),
               "n_reference": a.count, "n_candidate": b.count}
        if s.has_labels:
            gt = s.labels()
            row["reference_dsb"], row["candidate_dsb"] = dsb_score(gt, a.labels), dsb_score(gt, b.labels)
        rows.append(row)
        if worst is None or row["agreement_dsb"] < worst[0]["agreement_dsb"]:
            worst = (row, image, a.labels, b.labels)
    labelled = [r for r in rows if "reference_dsb" in r]
    report: dict[str, Any] = {
        "reference": {"backend": reference.backend, "precision": reference.precision, "model": reference.model},
        "candidate": {"backend": candidate.backend, "precision": candidate.precision, "model": candidate.model},
        "n_images": len(rows),
        "max_abs": max(r["max_abs"] for r in rows),
        "mean_abs": float(np.mean([r["mean_abs"] for r in rows])),
        "agreement_dsb": float(np.mean([r["agreement_dsb"] for r in rows])),
        "tolerance": tol,
        "images": rows,
        "worst_id": worst[0]["id"],
    }
    if labelled:
        ref = float(np.mean([r["reference_dsb"] for r in labelled]))
        cand = float(np.mean([r["candidate_dsb"] for r in labelled]))
        report.update(reference_dsb=ref, candidate_dsb=cand, dsb_difference=cand - ref,
                      passed=bool(ref - cand <= tol))
    else:  # no ground truth: judge by instance agreement
        report["passed"] = bool(report["agreement_dsb"] >= 1.0 - 10 * tol)
    report["_worst"] = worst
    return report


def side_by_side(image: np.ndarray, reference: np.ndarray, candidate: np.ndarray,
                 titles: tuple[str, str]) -> np.ndarray:
    """RGB picture: reference overlay | candidate overlay, with titles."""
    import cv2

    from .viz import overlay

    panels = []
    for labels, title in zip((reference, candidate), titles):
        p = overlay(image, labels, ids=False)
        p = cv2.copyMakeBorder(p, 28, 0, 0, 4, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        cv2.putText(p, title, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
        panels.append(p)
    return np.hstack(panels)

"""Evaluate a model on a labelled dataset: Kaggle DSB2018 score, AP@0.5, F1@0.5, per image and kind."""

from __future__ import annotations

import logging
import time
from typing import Any, Iterable, Sequence

import numpy as np

from .data import Sample, image_kind
from .errors import DataError
from .metrics import score_image

__all__ = ["evaluate", "subset_ids", "zoom_pair"]

log = logging.getLogger(__name__)


def subset_ids(model_card: dict, subset: str) -> list[str] | None:
    """Image ids of a model's validation (or training) split as its model card records them."""
    if subset == "all":
        return None
    if subset == "val":
        per_image = (model_card.get("val") or {}).get("per_image") or {}
        ids = model_card.get("val_ids") or sorted(per_image)
        if ids:
            return list(ids)
    raise DataError(f"the model card does not record its {subset} split; use --subset all, or "
                    "--ids FILE with a split.json of the training run")


def zoom_pair(image: np.ndarray, labels: np.ndarray, zoom: float) -> tuple[np.ndarray, np.ndarray]:
    """An image and its labels as another objective would show them: resized by ``zoom``
    (area interpolation down, linear up; labels nearest-neighbour)."""
    if zoom == 1.0:
        return image, labels
    import cv2

    from .sizing import resize_image

    small = resize_image(image, zoom)
    h, w = small.shape[:2]
    lab = cv2.resize(labels.astype(np.float32), (w, h), interpolation=cv2.INTER_NEAREST)
    return small, lab.astype(np.int32)


def evaluate(seg: Any, samples: Sequence[Sample], progress: Any = None,
             zoom: float = 1.0) -> dict[str, Any]:
    """Run ``seg`` on every labelled sample and score it; ``zoom != 1`` first resizes every
    image and its labels (:func:`zoom_pair`: the scale-shift check).

    Returns a dict with stable keys: ``dsb_score``, ``ap50``, ``f1_50`` (means over images),
    ``n_images``, ``per_kind`` ({kind: {dsb_score, n_images}}), ``images`` (per-image rows) and
    ``wall_s``.
    """
    labelled = [s for s in samples if s.has_labels]
    if not labelled:
        raise DataError("no labelled images to evaluate: the dataset holds images without labels")
    rows = []
    t0 = time.perf_counter()
    it: Iterable[Sample] = progress(labelled) if progress else labelled
    for s in it:
        raw, gt = s.image(), s.labels()
        if raw.shape[:2] != gt.shape:
            raise DataError(f"{s.id}: image shape {raw.shape[:2]} != label shape {gt.shape}")
        if raw.dtype not in (np.uint8, np.uint16, np.float32):
            raw = raw.astype(np.float32)
        kind = image_kind(raw)
        raw, gt = zoom_pair(raw, gt, zoom)
        result = seg.segment(raw)
        sc = score_image(gt, result.labels)
        rows.append({"id": s.id, "kind": kind, "height": gt.shape[0], "width": gt.shape[1],
                     "n_gt": sc.n_gt, "n_pred": sc.n_pred, "dsb_score": sc.dsb_score,
                     "ap50": sc.ap50, "f1_50": sc.f1_50, "ms": result.timings.get("total", 0.0),
                     "seg_zoom": getattr(result, "zoom", 1.0)})
    per_kind = {}
    for kind in sorted({r["kind"] for r in rows}):
        k = [r["dsb_score"] for r in rows if r["kind"] == kind]
        per_kind[kind] = {"dsb_score": float(np.mean(k)), "n_images": len(k)}
    return {
        "dsb_score": float(np.mean([r["dsb_score"] for r in rows])),
        "ap50": float(np.mean([r["ap50"] for r in rows])),
        "f1_50": float(np.mean([r["f1_50"] for r in rows])),
        "n_images": len(rows),
        "per_kind": per_kind,
        "images": rows,
        "zoom": zoom,
        "wall_s": time.perf_counter() - t0,
    }

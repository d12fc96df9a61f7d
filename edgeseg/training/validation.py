"""Validation during training: the val images at full size, the network's probabilities of them,
their scores through the real post-processing, and the threshold search on them."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..data import NormConfig, Sample, normalize
from ..metrics import score_image
from ..postprocess import PostprocessConfig, label_instances
from ..tiling import pad_to_multiple  # the runtime's padding: validation = deployment
from .data import _tqdm, size_zoom, zoom_normalised

__all__ = ["ValItem", "ValSet", "predict_probs", "score_probs", "tune_postprocess", "val_probs"]


@dataclass
class ValItem:
    id: str
    kind: str
    image: np.ndarray   # normalised float32 H x W
    labels: np.ndarray  # int32 H x W


class ValSet(list):
    """The validation images at full size (a list of :class:`ValItem`)."""

    @classmethod
    def load(cls, samples: Sequence[Sample], kinds: dict[str, str], norm: NormConfig,
             progress: bool = False, size_reference: float = 0.0) -> ValSet:
        """``size_reference`` > 0: each image and its labels zoomed as for training
        (:func:`size_zoom`), so validation scores the operating point the runtime will use."""
        out = cls()
        for s in _tqdm(samples, progress, desc="load val", unit="img"):
            image, _ = normalize(s.image(), norm)
            labels = s.labels()
            image, labels = zoom_normalised(image, labels, size_zoom(labels, size_reference))
            out.append(ValItem(s.id, kinds.get(s.id, "unknown"), image, labels))
        return out


@torch.no_grad()
def predict_probs(model: torch.nn.Module, image: np.ndarray, device: torch.device,
                  multiple: int, amp_dtype: torch.dtype | None = None) -> np.ndarray:
    """Softmax probabilities ``3 x H x W`` (float16) of one normalised image at full size:
    reflection-padded to multiples of ``multiple``, cropped back."""
    h, w = image.shape
    x = torch.from_numpy(np.ascontiguousarray(pad_to_multiple(image, multiple)))[None, None]
    x = x.to(device).contiguous(memory_format=torch.channels_last)
    with torch.autocast(device.type, dtype=amp_dtype or torch.float32,
                        enabled=amp_dtype is not None):
        logits = model(x)
    probs = torch.softmax(logits.float(), dim=1)[0, :, :h, :w]
    return probs.to(torch.float16).cpu().numpy()


def val_probs(model: torch.nn.Module, val: ValSet, device: torch.device, multiple: int,
              amp_dtype: torch.dtype | None = None, progress: bool = False) -> list[np.ndarray]:
    """:func:`predict_probs` of every val image (the model is put in eval mode and back)."""
    was_training = model.training
    model.eval()
    try:
        return [predict_probs(model, v.image, device, multiple, amp_dtype)
                for v in _tqdm(val, progress, desc="val", unit="img", leave=False)]
    finally:
        model.train(was_training)


def score_probs(probs: Sequence[np.ndarray], val: ValSet, pp: PostprocessConfig
                ) -> dict[str, Any]:
    """Mean DSB score, AP@0.5, F1@0.5 (overall and DSB per image kind) and per-image DSB scores
    of val probabilities through :func:`edgeseg.postprocess.label_instances`."""
    per_image: dict[str, float] = {}
    ap50, f1 = [], []
    by_kind: dict[str, list[float]] = {}
    for p, v in zip(probs, val):
        s = score_image(v.labels, label_instances(p.astype(np.float32), pp))
        per_image[v.id] = float(s.dsb_score)
        ap50.append(s.ap50)
        f1.append(s.f1_50)
        by_kind.setdefault(v.kind, []).append(float(s.dsb_score))
    return {
        "dsb_score": float(np.mean(list(per_image.values()))) if per_image else float("nan"),
        "ap50": float(np.mean(ap50)) if ap50 else float("nan"),
        "f1_50": float(np.mean(f1)) if f1 else float("nan"),
        "n_images": len(per_image),
        "per_kind": {k: {"dsb_score": float(np.mean(v)), "n_images": len(v)}
                     for k, v in sorted(by_kind.items())},
        "per_image": per_image,
    }


def tune_postprocess(probs: Sequence[np.ndarray], val: ValSet, base: PostprocessConfig,
                     seed_thresholds: Sequence[float], fg_thresholds: Sequence[float],
                     min_sizes: Sequence[int], progress: bool = False
                     ) -> tuple[PostprocessConfig, dict[str, Any], list[dict[str, Any]]]:
    """Grid search of seed_threshold x fg_threshold x min_size maximising the mean val DSB
    score. Ties keep the earlier grid point (grids are searched in the order given; the base
    config's values are tried first). Returns (best config, its scores, the whole table)."""
    grid = [(s, f, m) for s in seed_thresholds for f in fg_thresholds for m in min_sizes]
    first = (base.seed_threshold, base.fg_threshold, base.min_size)
    grid = [first] + [g for g in grid if g != first]
    best_cfg, best, table = base, None, []
    for s, f, m in _tqdm(grid, progress, desc="tune thresholds", leave=False):
        cfg = dataclasses.replace(base, seed_threshold=float(s), fg_threshold=float(f),
                                  min_size=int(m))
        res = score_probs(probs, val, cfg)
        table.append({"seed_threshold": s, "fg_threshold": f, "min_size": m,
                      "dsb_score": res["dsb_score"]})
        if best is None or res["dsb_score"] > best["dsb_score"]:
            best_cfg, best = cfg, res
    assert best is not None  # the grid always holds the base point
    return best_cfg, best, table

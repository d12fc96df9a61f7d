"""Acquisition groups and the group split: validation that plays the part of a new lab.

DSB2018 images cluster by experiment: one microscope, stain and cell line give images of one
size, kind, intensity and nucleus size. A random split puts images of every experiment on both
sides, so its score says how well the model knows *those* experiments. The group split holds out
whole groups instead, so its score says what a lab with a microscope the model never saw gets.

Grouping (:func:`acquisition_groups`): images are bucketed by kind and frame size (an
acquisition's camera and modality), then each bucket of 10 or more images is split by k-means
(``k = max(2, round(n / 30))``, deterministic farthest-point init) on standardised
``log(median nucleus area)``, ``log(mean intensity)``, ``log(intensity std)`` and, for colour
images, the mean R, G, B (stain hue). Selection (:func:`group_split`): within each kind, groups in
a seeded order go to val until the kind's val fraction is reached (a kind with one group stays in
training); a nucleus-size stratum (small < 200 px, typical, large > 900 px median area) that has
groups on both sides of that rule gets at least one val group.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ..data import Sample, image_kind, to_grey
from ..errors import DataError

__all__ = ["ImageFeatures", "acquisition_groups", "group_split", "image_features", "size_class"]

SMALL_AREA, LARGE_AREA = 200.0, 900.0


@dataclass(frozen=True)
class ImageFeatures:
    id: str
    kind: str
    h: int
    w: int
    mean: float
    std: float
    median_area: float
    n_nuclei: int
    rgb: tuple[float, float, float]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["rgb"] = [round(v, 2) for v in self.rgb]
        for k in ("mean", "std", "median_area"):
            d[k] = round(d[k], 3)
        return d


def image_features(samples: Sequence[Sample]) -> list[ImageFeatures]:
    """Size, kind, intensity and nucleus-size statistics of labelled samples (reads each once)."""
    out = []
    for s in samples:
        raw = s.image()
        grey = to_grey(raw)
        labels = s.labels()
        _, counts = np.unique(labels[labels > 0], return_counts=True)
        rgb = (tuple(float(v) for v in raw[..., :3].reshape(-1, 3).mean(0))
               if raw.ndim == 3 and raw.shape[2] >= 3 else (float(grey.mean()),) * 3)
        out.append(ImageFeatures(s.id, image_kind(raw), int(grey.shape[0]), int(grey.shape[1]),
                                 float(grey.mean()), float(grey.std()),
                                 float(np.median(counts)) if counts.size else 0.0,
                                 int(counts.size), rgb))
    return out


def size_class(median_area: float) -> str:
    return "small" if median_area < SMALL_AREA else "large" if median_area > LARGE_AREA \
        else "typical"


def _kmeans(x: np.ndarray, k: int, iters: int = 50) -> np.ndarray:
    """Deterministic k-means: farthest-point init from the point nearest the mean."""
    centres = [x[np.argmin(((x - x.mean(0)) ** 2).sum(1))]]
    while len(centres) < k:
        d = np.min([((x - c) ** 2).sum(1) for c in centres], axis=0)
        centres.append(x[int(np.argmax(d))])
    c = np.array(centres)
    lab = np.zeros(len(x), int)
    for _ in range(iters):
        lab = np.argmin(((x[:, None, :] - c[None]) ** 2).sum(2), axis=1)
        new = np.array([x[lab == j].mean(0) if np.any(lab == j) else c[j] for j in range(k)])
        if np.allclose(new, c):
            break
        c = new
    return lab


def acquisition_groups(features: Sequence[ImageFeatures]) -> dict[str, str]:
    """id -> group name (``kind-HxW-j``), see the module docstring."""
    buckets: dict[str, list[ImageFeatures]] = {}
    for f in features:
        buckets.setdefault(f"{f.kind}-{f.h}x{f.w}", []).append(f)
    groups: dict[str, str] = {}
    for name, members in sorted(buckets.items()):
        members = sorted(members, key=lambda f: f.id)
        n = len(members)
        if n < 10:
            groups.update({f.id: f"{name}-0" for f in members})
            continue
        cols = [[math.log(max(f.median_area, 1.0)), math.log1p(f.mean), math.log1p(f.std)]
                + (list(f.rgb) if f.kind == "stained" else []) for f in members]
        x = np.array(cols, np.float64)
        x = (x - x.mean(0)) / np.where(x.std(0) > 0, x.std(0), 1.0)
        lab = _kmeans(x, max(2, round(n / 30)))
        order = {j: i for i, j in enumerate(dict.fromkeys(lab.tolist()))}  # stable names
        groups.update({f.id: f"{name}-{order[int(j)]}" for f, j in zip(members, lab)})
    return groups


def _rank(seed: int, name: str) -> str:
    return hashlib.sha256(f"{seed}:{name}".encode()).hexdigest()


def group_split(features: Sequence[ImageFeatures], groups: dict[str, str], *,
                val_fraction: float = 0.15, seed: int = 0) -> tuple[list[str], list[str]]:
    """(train ids, val ids): whole groups held out per kind, see the module docstring."""
    by_id = {f.id: f for f in features}
    if set(by_id) != set(groups):
        raise DataError("group_split needs a group for every image and features for every group "
                        "member.")
    members: dict[str, list[str]] = {}
    for i, g in groups.items():
        members.setdefault(g, []).append(i)
    kind_of = {g: by_id[ids[0]].kind for g, ids in members.items()}
    size_of = {g: size_class(float(np.median([by_id[i].median_area for i in ids])))
               for g, ids in members.items()}
    val_groups: list[str] = []
    for kind in sorted(set(kind_of.values())):
        gs = sorted((g for g in members if kind_of[g] == kind), key=lambda g: _rank(seed, g))
        if len(gs) < 2:
            continue
        total = sum(len(members[g]) for g in gs)
        taken = 0
        for g in gs:
            if taken >= val_fraction * total:
                break
            if taken + len(members[g]) > 2.0 * val_fraction * total and taken > 0:
                continue  # skip a group that would overshoot; a later, smaller one may fit
            val_groups.append(g)
            taken += len(members[g])
        for size in ("small", "typical", "large"):  # every size stratum seen in val
            cands = [g for g in gs if size_of[g] == size]
            if len(cands) >= 2 and not any(g in val_groups for g in cands):
                val_groups.append(min(cands, key=lambda g: len(members[g])))
    val = sorted(i for g in val_groups for i in members[g])
    train = sorted(i for i in groups if i not in set(val))
    return train, val

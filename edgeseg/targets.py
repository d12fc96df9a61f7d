"""Instance labels -> 3-class semantic targets (background / nucleus body / border-touching zone).

The encoding follows the Data Science Bowl 2018 winners (topcoders): the network learns
where nuclei are *and* where they touch, so that post-processing can separate touching
nuclei by growing body seeds through the border zone (:mod:`edgeseg.postprocess`).

Classes (:data:`CLASS_NAMES`):

* ``0`` background
* ``1`` body: nucleus pixels that are neither on the nucleus outline nor in a touching zone
* ``2`` border: nucleus pixels within ``border_width`` px of the nucleus outline, or within
  ``touch_width`` px of a *different* nucleus (the touching zone that matters most)

Nuclei too small to keep any body pixel keep their non-touching pixels as body (or all of
their pixels when every pixel touches a neighbour), so every nucleus owns a seed: without
it, a tiny nucleus would vanish or merge with a neighbour.

Everything is whole-image OpenCV/numpy (min/max filters), no per-nucleus loops.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from ._config import ConfigMixin
from .errors import InputError

__all__ = [
    "NUM_CLASSES", "CLASS_NAMES", "BACKGROUND", "BODY", "BORDER", "TargetConfig", "encode", "one_hot",
]

log = logging.getLogger(__name__)

BACKGROUND, BODY, BORDER = 0, 1, 2
NUM_CLASSES = 3
CLASS_NAMES = ("background", "body", "border")


@dataclass(frozen=True)
class TargetConfig(ConfigMixin):
    """How labels are turned into classes.

    Attributes:
        border_width: width in px of the outline band of every nucleus marked as border (>= 0).
        touch_width: a nucleus pixel within this many px (Chebyshev distance) of another
            nucleus is marked as border; 0 disables the touching zone beyond the outline.
        keep_small: give nuclei that would lose every body pixel their pixels back as body.
        single_seed: keep one body component per nucleus (the largest); fragments cut off by
            a touching zone become border, so that every nucleus seeds exactly one instance.
    """

    border_width: int = 0
    touch_width: int = 2
    keep_small: bool = True
    single_seed: bool = True

    def __post_init__(self) -> None:
        for name in ("border_width", "touch_width"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value <= 16:
                raise InputError(
                    f"TargetConfig.{name} must be an integer between 0 and 16 (px), got {value!r}"
                )




def _check_labels(labels: Any) -> np.ndarray:
    if not isinstance(labels, np.ndarray):
        raise InputError(f"labels must be a numpy array, got {type(labels).__name__}")
    if labels.ndim != 2:
        raise InputError(
            f"labels must be a 2-D (H x W) array, got shape {labels.shape}; "
            "pass one label image at a time"
        )
    if labels.size == 0:
        raise InputError(f"labels is empty (shape {labels.shape}); expected H, W >= 1")
    if labels.dtype == bool:
        return labels.astype(np.int32)
    if not np.issubdtype(labels.dtype, np.integer):
        raise InputError(
            f"labels must be an integer array (0 = background, 1..N = nuclei), got {labels.dtype}; "
            "convert with labels.astype(np.int32) if the values are whole numbers"
        )
    if labels.min() < 0:
        raise InputError(f"labels must be >= 0, got a minimum of {labels.min()}")
    return labels


def _filterable(labels: np.ndarray) -> tuple[np.ndarray, float]:
    """labels in a dtype OpenCV's min/max filters take exactly, and the value for 'no label'."""
    top = int(labels.max())
    if top < np.iinfo(np.uint16).max:
        return labels.astype(np.uint16, copy=False), float(np.iinfo(np.uint16).max)
    if top < 2**24:
        return labels.astype(np.float32), float(2**24)
    return labels.astype(np.float64), float(2**53)


def _square(radius: int) -> np.ndarray:
    return np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)


def encode(labels: np.ndarray, cfg: TargetConfig | None = None) -> np.ndarray:
    """Encode an instance label image as a uint8 class map (0 background, 1 body, 2 border).

    Args:
        labels: H x W integer array, 0 = background, any positive ids for nuclei.
        cfg: encoding parameters (defaults: no outline band; a touching zone 2 px deep on each side of a contact, robust to the soft edges of a real network output).

    Returns:
        H x W uint8 array with values in {0, 1, 2}.
    """
    cfg = cfg or TargetConfig()
    labels = _check_labels(labels)
    fg = labels > 0
    classes = np.zeros(labels.shape, np.uint8)
    if not fg.any():
        return classes
    lab, none = _filterable(labels)
    border = np.zeros(labels.shape, bool)
    if cfg.border_width > 0:
        k = _square(cfg.border_width)
        # Outline: some pixel within border_width has another value (background included).
        # Beyond the image edge the image is taken to continue (replicated): a nucleus cut by
        # the edge gets no outline there, the same whether the image is a crop, a tile or whole.
        outer = cv2.dilate(lab, k, borderType=cv2.BORDER_REPLICATE)
        inner = cv2.erode(lab, k, borderType=cv2.BORDER_REPLICATE)
        border |= (outer != lab) | (inner != lab)
    touching = np.zeros(labels.shape, bool)
    if cfg.touch_width > 0:
        k = _square(cfg.touch_width)
        hi = cv2.dilate(lab, k, borderType=cv2.BORDER_REPLICATE)
        lo_in = lab.copy()
        lo_in[~fg] = none
        lo = cv2.erode(lo_in, k, borderType=cv2.BORDER_REPLICATE)
        # Two different nuclei inside the window: max and min over the nuclei differ.
        touching = (lo != none) & (hi != lo)
        border |= touching
    border &= fg
    classes[fg] = BODY
    classes[border] = BORDER
    if cfg.keep_small:
        _restore_small(labels, classes, touching)
    if cfg.single_seed:
        _single_body(labels, classes)
    return classes


def _single_body(labels: np.ndarray, classes: np.ndarray) -> None:
    """Keep one body component per nucleus (the largest); other fragments become border.

    A touching zone can cut a nucleus' body in pieces; each piece would seed an instance of its
    own. Body pixels of different nuclei are never 8-adjacent (the touching zone lies between),
    so every body component belongs to exactly one nucleus.
    """
    body = (classes == BODY).view(np.uint8)
    n, comp, stats, _ = cv2.connectedComponentsWithStats(body, connectivity=8, ltype=cv2.CV_32S)
    if n <= 2:
        return
    owner = np.zeros(n, np.int64)
    flat = comp.ravel()
    owner[flat] = labels.ravel()  # any pixel of a component names its nucleus
    area = stats[:, cv2.CC_STAT_AREA].astype(np.int64)
    comps = np.arange(1, n)
    # Sort components by (nucleus, area descending): the first of each nucleus is kept.
    order = comps[np.lexsort((-area[comps], owner[comps]))]
    first = np.ones(order.size, bool)
    first[1:] = owner[order[1:]] != owner[order[:-1]]
    drop = np.zeros(n, bool)
    drop[order[~first]] = True
    if drop.any():
        classes[drop[comp]] = BORDER
        log.debug("moved %d body fragments to the border class", int(drop.sum()))


def _restore_small(labels: np.ndarray, classes: np.ndarray, touching: np.ndarray) -> None:
    """Give nuclei without a single body pixel a body: their non-touching pixels, else all."""
    n = int(labels.max()) + 1
    flat = labels.ravel()
    present = np.bincount(flat, minlength=n) > 0
    has_body = np.bincount(flat[classes.ravel() == BODY], minlength=n) > 0
    missing = present & ~has_body
    missing[0] = False
    if not missing.any():
        return
    in_missing = missing[labels]
    classes[in_missing & ~touching] = BODY
    # Nuclei whose every pixel touches a neighbour: all of their pixels become body.
    still = missing & ~(np.bincount(flat[(classes == BODY).ravel()], minlength=n) > 0)
    still[0] = False
    if still.any():
        classes[still[labels]] = BODY
    log.debug("restored a body for %d small nuclei", int(missing.sum()))


def one_hot(classes: np.ndarray, smooth: float = 0.0) -> np.ndarray:
    """Class map (H x W uint8) -> C x H x W float32 probabilities.

    ``smooth`` > 0 blurs each class plane with a Gaussian of that sigma (px) and renormalises,
    imitating the soft edges of a network's output. Used for the encoding oracle (the ceiling
    the post-processing can reach) and for benchmarks on realistic probability maps.
    """
    if not isinstance(classes, np.ndarray) or classes.ndim != 2 or classes.dtype != np.uint8:
        got = f"{classes.dtype} array of shape {classes.shape}" if isinstance(classes, np.ndarray) else type(classes).__name__
        raise InputError(f"classes must be an H x W uint8 class map (from encode), got {got}")
    if classes.size and int(classes.max()) >= NUM_CLASSES:
        raise InputError(f"classes must be in 0..{NUM_CLASSES - 1}, got a maximum of {int(classes.max())}")
    probs = np.eye(NUM_CLASSES, dtype=np.float32)[classes].transpose(2, 0, 1)
    probs = np.ascontiguousarray(probs)
    if smooth > 0:
        for plane in probs:
            cv2.GaussianBlur(plane, (0, 0), smooth, dst=plane, borderType=cv2.BORDER_REFLECT)
        probs /= probs.sum(axis=0, keepdims=True)
    return probs

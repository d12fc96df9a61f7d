"""Drawing: instance contours and ids over the image, for overlays and the live view."""

from __future__ import annotations

import cv2
import numpy as np

from .errors import InputError
from .tiling import row_blocks

__all__ = ["to_display", "overlay", "colorize"]

_GOLDEN = 0.618033988749895


def to_display(image: np.ndarray) -> np.ndarray:
    """Any grey/colour image (uint8/uint16/float) -> uint8 RGB with 1-99.8 percentile contrast."""
    if not isinstance(image, np.ndarray) or image.ndim not in (2, 3) or image.size == 0:
        got = image.shape if isinstance(image, np.ndarray) else type(image).__name__
        raise InputError(f"image must be an H x W or H x W x C array, got {got}")
    img = image[..., :3] if image.ndim == 3 else image
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.dtype != np.uint8:
        # float32 values of the finite pixels (one copy, partitioned in place), then the
        # scaling a block of rows at a time: bounded temporaries on large frames
        finite = img.astype(np.float32) if img.dtype.kind in "biu" else \
            img[np.isfinite(img)].astype(np.float32, copy=False)
        lo, hi = (np.percentile(finite, (1, 99.8), overwrite_input=True) if finite.size
                  else (0.0, 1.0))
        del finite
        out = np.empty(img.shape, np.uint8)
        for rows in row_blocks(*img.shape[:2]):
            f = np.nan_to_num((img[rows].astype(np.float32) - lo) / max(hi - lo, 1e-12), nan=0.0,
                              posinf=1.0, neginf=0.0)
            out[rows] = (np.clip(f, 0, 1) * 255).astype(np.uint8)
        img = out
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    return np.ascontiguousarray(img)


def colorize(labels: np.ndarray) -> np.ndarray:
    """A distinct, stable colour per instance id (uint8 RGB, background black)."""
    out = np.empty((*labels.shape, 3), np.uint8)
    for rows in row_blocks(*labels.shape[:2]):  # float64 hues a block of rows at a time
        out[rows] = _colorize(labels[rows])
    return out


def _colorize(labels: np.ndarray) -> np.ndarray:
    ids = labels.astype(np.int64)
    hue = ((ids * _GOLDEN) % 1.0 * 179).astype(np.uint8)
    hsv = np.dstack([hue, np.full_like(hue, 200), np.where(ids > 0, 255, 0).astype(np.uint8)])
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def overlay(image: np.ndarray, labels: np.ndarray, ids: bool = True, alpha: float = 0.0) -> np.ndarray:
    """Instance outlines (one colour per id) and, optionally, id numbers drawn on the image.

    Returns an H x W x 3 uint8 RGB array. ``alpha`` > 0 also tints the instance interiors.
    Large frames are drawn a block of rows at a time (bounded temporaries).
    """
    rgb = to_display(image).copy()
    if labels.shape != rgb.shape[:2]:
        raise InputError(f"labels shape {labels.shape} does not match image shape {rgb.shape[:2]}")
    h = labels.shape[0]
    k3 = np.ones((3, 3), np.uint8)
    for rows in row_blocks(*labels.shape):
        top, bottom = max(rows.start - 1, 0), min(rows.stop + 1, h)  # one row of context
        lab = labels[top:bottom].astype(np.float32)
        edge = cv2.dilate(lab, k3) != cv2.erode(lab, k3)
        edge = edge[rows.start - top:rows.stop - top]
        block, out = labels[rows], rgb[rows]
        inside = block > 0
        edge &= inside
        colours = _colorize(block)
        if alpha > 0:
            out[inside] = ((1 - alpha) * out[inside] + alpha * colours[inside]).astype(np.uint8)
        out[edge] = colours[edge]
    if ids and labels.max() > 0:
        from .postprocess import instance_table

        table = instance_table(labels)
        scale = max(0.3, min(rgb.shape[:2]) / 1500)
        for k, (cy, cx) in zip(table.id, table.centroid):
            cv2.putText(rgb, str(int(k)), (int(cx) - 4, int(cy) + 4), cv2.FONT_HERSHEY_SIMPLEX,
                        scale, (255, 255, 255), 1, cv2.LINE_AA)
    return rgb

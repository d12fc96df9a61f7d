"""edgeseg.viz: overlays drawn a block of rows at a time equal the whole-frame drawing."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgeseg import tiling, viz

_GOLDEN = 0.618033988749895


def whole_frame_overlay(image, labels, alpha=0.0):
    """The overlay computed on the whole frame at once (the definition the blocks must match)."""
    img = image[..., :3] if image.ndim == 3 else image
    if img.dtype != np.uint8:
        f = img.astype(np.float32)
        finite = f[np.isfinite(f)]
        lo, hi = np.percentile(finite, (1, 99.8)) if finite.size else (0.0, 1.0)
        f = np.nan_to_num((f - lo) / max(hi - lo, 1e-12), nan=0.0, posinf=1.0, neginf=0.0)
        img = (np.clip(f, 0, 1) * 255).astype(np.uint8)
    rgb = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB) if img.ndim == 2 else img.copy()
    ids = labels.astype(np.int64)
    hue = ((ids * _GOLDEN) % 1.0 * 179).astype(np.uint8)
    hsv = np.dstack([hue, np.full_like(hue, 200), np.where(ids > 0, 255, 0).astype(np.uint8)])
    colours = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    if alpha > 0:
        inside = labels > 0
        rgb[inside] = ((1 - alpha) * rgb[inside] + alpha * colours[inside]).astype(np.uint8)
    lab = labels.astype(np.float32)
    k = np.ones((3, 3), np.uint8)
    edge = (cv2.dilate(lab, k) != cv2.erode(lab, k)) & (labels > 0)
    rgb[edge] = colours[edge]
    return rgb


@pytest.mark.parametrize("pixels", [1, 53, 1 << 20])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_blockwise_overlay_equals_whole_frame(monkeypatch, pixels, dtype):
    monkeypatch.setattr(viz, "row_blocks", lambda h, w: tiling.row_blocks(h, w, pixels))
    rng = np.random.default_rng(0)
    image = (rng.random((61, 47)) * 1000).astype(dtype)
    if dtype == np.float32:
        image[3, 4], image[5, 5] = np.nan, np.inf
    labels = cv2.resize(rng.integers(0, 9, (8, 6)).astype(np.uint8), (47, 61),
                        interpolation=cv2.INTER_NEAREST).astype(np.int32)
    for alpha in (0.0, 0.4):
        got = viz.overlay(image, labels, ids=False, alpha=alpha)
        np.testing.assert_array_equal(got, whole_frame_overlay(image, labels, alpha))
    rgb = np.dstack([image] * 3)
    np.testing.assert_array_equal(viz.overlay(rgb, labels, ids=False), whole_frame_overlay(rgb, labels))

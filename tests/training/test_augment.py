"""Scale augmentation: zoomed crops keep nuclei separate and re-encode targets at the new size."""

from __future__ import annotations

import numpy as np
import pytest

from edgeseg.errors import InputError
from edgeseg.targets import TargetConfig, encode
from edgeseg.training.augment import AugmentConfig, augment_labels, scaled_crop


def discs(h=120, w=150, r=8, step=24):
    yy, xx = np.mgrid[:h, :w]
    lab = np.zeros((h, w), np.int32)
    k = 0
    for cy in range(12, h - 8, step):
        for cx in range(12, w - 8, step):
            k += 1
            lab[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = k
    return (lab > 0).astype(np.float32), lab


@pytest.mark.parametrize("scale", [0.4, 1.0, 2.5])
def test_scaled_crop_scales_nuclei(scale):
    img, lab = discs()
    ci, cl = scaled_crop(img, lab, 64, scale, np.random.default_rng(0))
    assert ci.shape == cl.shape == (64, 64) and cl.dtype == np.int32
    ids, areas = np.unique(cl[cl > 0], return_counts=True)
    interior = [a for i, a in zip(ids, areas)]
    assert max(interior) == pytest.approx(np.pi * 64 * scale ** 2, rel=0.35)
    # image and labels stay aligned
    assert np.corrcoef(ci.ravel(), (cl > 0).ravel())[0, 1] > 0.8


def test_zoom_out_pads_with_background_not_mirrored_nuclei():
    img, lab = discs(40, 40, r=6, step=20)
    _, cl = scaled_crop(img, lab, 64, 0.4, np.random.default_rng(1))  # 160 px window of 40 px
    ids = np.unique(cl[cl > 0])
    assert len(ids) <= int(lab.max())  # no id appears twice as mirrored copies


def test_augment_labels_targets_match_encoding_of_zoomed_labels():
    img, lab = discs()
    cfg = AugmentConfig(scale_min=0.5, scale_max=2.0, flips=False, gamma=0, intensity_scale=0,
                        intensity_shift=0, blur_prob=0, noise_prob=0)
    calls = []

    def enc(x):
        calls.append(x.copy())
        return encode(x, TargetConfig())

    x, t = augment_labels(img, lab, 64, cfg, np.random.default_rng(3), enc)
    assert x.shape == t.shape == (64, 64) and t.dtype == np.uint8
    np.testing.assert_array_equal(t, encode(calls[0], TargetConfig()))


def test_scale_config_validation():
    assert not AugmentConfig().rescales and AugmentConfig(scale_min=0.4, scale_max=2.5).rescales
    with pytest.raises(InputError, match="scale_min"):
        AugmentConfig(scale_min=2.0, scale_max=1.0)
    with pytest.raises(InputError, match="scale_min"):
        AugmentConfig(scale_min=0.0)

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


def _stained_samples(tmp_path):
    """A synthetic H&E image and a grey fluorescence image, with labels, as training samples."""
    import cv2

    from edgeseg.data import load_dataset
    from edgeseg.stain import RGB_FROM_HED
    _, lab = discs(64, 80, r=6, step=20)
    od = np.zeros(lab.shape + (3,))
    od[:, 60:] += 0.5 * RGB_FROM_HED[1]
    od[lab > 0] += 0.8 * RGB_FROM_HED[0]
    rgb = (255 * 10 ** (-od)).round().clip(0, 255).astype(np.uint8)
    grey = np.where(lab > 0, 200, 10).astype(np.uint8)
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    for name, img in (("he", rgb), ("fl", grey)):
        cv2.imwrite(str(tmp_path / "images" / f"{name}.png"),
                    img[..., ::-1] if img.ndim == 3 else img)
        cv2.imwrite(str(tmp_path / "labels" / f"{name}.png"), lab.astype(np.uint16))
    return load_dataset(tmp_path)


def test_stain_jitter_reads_stained_images_with_other_stain_vectors(tmp_path):
    from edgeseg.data import NormConfig
    from edgeseg.training.augment import STAIN_VARIANTS, jitter_stains
    from edgeseg.training.data import TrainSet, make_batch
    samples = _stained_samples(tmp_path)
    norm = NormConfig(colour="hematoxylin")
    plain = TrainSet(samples, norm, TargetConfig())
    jit = TrainSet(samples, norm, TargetConfig(), stain_jitter=0.1, seed=3)
    by_id = dict(zip(jit.ids, jit.variants))
    assert len(by_id["he"]) == STAIN_VARIANTS and by_id["fl"] == []  # fluorescence: no stain
    assert all(not np.array_equal(v, jit.images[jit.ids.index("he")]) for v in by_id["he"])
    assert plain.variants == [[], []]
    again = TrainSet(samples, norm, TargetConfig(), stain_jitter=0.1, seed=3)
    for a, b in zip(jit.variants, again.variants):  # reproducible from the seed
        assert all(np.array_equal(x, y) for x, y in zip(a, b))
    # every reading is drawn over a run; without jitter the batches are what they always were
    rng = np.random.default_rng(0)
    i = jit.ids.index("he")
    seen = {id(jit.image(i, rng)) for _ in range(200)}
    assert len(seen) == STAIN_VARIANTS + 1
    kw = dict(batch_size=2, crop=32, augment=AugmentConfig())
    np.testing.assert_array_equal(make_batch(plain, seed=1, step=2, rank=0, **kw)[0],
                                  make_batch(plain, seed=1, step=2, rank=0, **kw)[0])
    m = jitter_stains(0.05, np.random.default_rng(1))
    assert m.shape == (3, 3) and (m >= 0.01).all()


def test_stain_jitter_validation():
    with pytest.raises(InputError, match="stain_jitter"):
        AugmentConfig(stain_jitter=0.9)
    assert AugmentConfig(stain_jitter=0.05).stain_jitter == 0.05

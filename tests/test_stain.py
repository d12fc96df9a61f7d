"""edgeseg.stain and NormConfig(colour="hematoxylin"): nuclei stand out from eosin, grey images
and old artifacts are unaffected."""

from __future__ import annotations

import numpy as np
import pytest

from edgeseg.data import NormConfig, normalize
from edgeseg.errors import InputError
from edgeseg.stain import RGB_FROM_HED, hematoxylin


def he_image(h=64, w=64):
    """Synthetic H&E: white background, an eosin (pink) band, haematoxylin (purple) discs."""
    od = np.zeros((h, w, 3))
    od[:, 3 * w // 4:] += 0.6 * RGB_FROM_HED[1]  # eosin on the right quarter
    yy, xx = np.mgrid[:h, :w]
    nuclei = ((yy - 20) ** 2 + (xx - 15) ** 2 < 64) | ((yy - 40) ** 2 + (xx - 48) ** 2 < 64)
    od[nuclei] += 0.8 * RGB_FROM_HED[0]
    rgb = (255 * 10 ** (-od)).round().clip(0, 255).astype(np.uint8)
    return rgb, nuclei


def test_hematoxylin_separates_nuclei_from_eosin():
    rgb, nuclei = he_image()
    h = hematoxylin(rgb)
    assert h.shape == nuclei.shape and h.dtype == np.float32 and (h >= 0).all()
    eosin = np.zeros_like(nuclei)
    eosin[:, 48:] = True
    assert h[nuclei].mean() > 0.25
    assert h[eosin & ~nuclei].mean() < 0.05  # pink cytoplasm carries no haematoxylin
    grey = rgb.astype(np.float32).mean(2)  # grey conversion cannot tell eosin from nuclei as well
    assert (255 - grey[eosin & ~nuclei]).mean() > 0.3 * (255 - grey[nuclei]).mean()


def test_hematoxylin_uint16_and_rgba():
    rgb, _ = he_image()
    h8 = hematoxylin(rgb)
    h16 = hematoxylin(rgb.astype(np.uint16) * 257)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    np.testing.assert_allclose(h8, h16, atol=0.02)
    np.testing.assert_array_equal(hematoxylin(rgba), h8)


def test_normalize_hematoxylin_mode():
    rgb, nuclei = he_image()
    x, info = normalize(rgb, NormConfig(colour="hematoxylin"))
    assert not info.inverted  # the haematoxylin channel already has bright nuclei
    assert x[nuclei].mean() > 0.8 and x[~nuclei].mean() < 0.2
    g, ginfo = normalize(rgb, NormConfig())
    assert ginfo.inverted  # grey mode: bright background inverted, as before


def test_grey_images_are_unaffected():
    img = (np.random.default_rng(0).random((40, 50)) * 4000).astype(np.uint16)
    a, _ = normalize(img, NormConfig())
    b, _ = normalize(img, NormConfig(colour="hematoxylin"))
    np.testing.assert_array_equal(a, b)
    rgb = np.repeat((img // 16).astype(np.uint8)[..., None], 3, axis=2)  # colour file, grey content
    np.testing.assert_array_equal(normalize(rgb, NormConfig())[0],
                                  normalize(rgb, NormConfig(colour="hematoxylin"))[0])


def test_old_artifacts_keep_grey_and_bad_values_rejected():
    assert NormConfig.from_dict({"p_low": 1.0, "p_high": 99.8, "invert": "auto"}).colour == "grey"
    with pytest.raises(InputError, match="colour"):
        NormConfig(colour="rgb")


def test_dense_tissue_still_uses_the_stain_and_dark_colour_does_not():
    """Nuclei covering most of the field (the case the grey bright-background rule inverts
    wrongly) still get the haematoxylin channel; colour fluorescence on black does not."""
    from edgeseg.stain import is_absorbing
    h, w = 64, 64
    od = np.zeros((h, w, 3))
    yy, xx = np.mgrid[:h, :w]
    nuclei = ((yy % 32 - 16) ** 2 + (xx % 32 - 16) ** 2) < 15 ** 2  # ~70% of the field
    od[nuclei] += 0.5 * RGB_FROM_HED[0]
    rgb = (255 * 10 ** (-od)).round().clip(0, 255).astype(np.uint8)
    assert nuclei.mean() > 0.5 and is_absorbing(rgb)
    x, info = normalize(rgb, NormConfig(colour="hematoxylin"))
    assert x[nuclei].mean() > x[~nuclei].mean() + 0.5 and not info.inverted
    dark = np.zeros((h, w, 3), np.uint8)
    dark[nuclei, 1] = 200  # green fluorescence
    assert not is_absorbing(dark)
    np.testing.assert_array_equal(normalize(dark, NormConfig(colour="hematoxylin"))[0],
                                  normalize(dark, NormConfig())[0])


def test_given_stain_vectors_default_equals_builtin_and_perturbed_ones_differ():
    from edgeseg.stain import h_projection
    rgb, nuclei = he_image()
    cfg = NormConfig(colour="hematoxylin")
    plain, info = normalize(rgb, cfg)
    same, info2 = normalize(rgb, cfg, stains=RGB_FROM_HED)
    np.testing.assert_allclose(same, plain, atol=1e-6)
    assert info2 == info
    # an eosin direction tilted toward haematoxylin: the eosin band now reads as haematoxylin
    tilted = RGB_FROM_HED.copy()
    tilted[0] = 0.7 * RGB_FROM_HED[0] + 0.3 * RGB_FROM_HED[1]
    h = hematoxylin(rgb, tilted)
    assert h[nuclei].mean() > 0.25 and not np.allclose(h, hematoxylin(rgb))
    np.testing.assert_allclose(h_projection(RGB_FROM_HED * 3.0), h_projection(RGB_FROM_HED),
                               rtol=1e-6)  # rows are directions: their length does not matter


@pytest.mark.parametrize("bad", [np.eye(2), np.ones((3, 3)), np.full((3, 3), np.nan)])
def test_bad_stain_vectors_one_clear_error(bad):
    from edgeseg.stain import h_projection
    with pytest.raises(InputError, match="stain vectors"):
        h_projection(bad)

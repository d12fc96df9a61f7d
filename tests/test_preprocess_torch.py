"""Device-side normalisation (edgeseg.preprocess_torch) against edgeseg.data.normalize."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgeseg.data import NormConfig, normalize, read_image_raw, to_grey  # noqa: E402
from edgeseg.errors import InputError  # noqa: E402
from edgeseg.preprocess_torch import normalize_torch  # noqa: E402


def _check(grey: np.ndarray, cfg: NormConfig | None = None) -> None:
    want, winfo = normalize(grey, cfg)
    got, ginfo = normalize_torch(torch.from_numpy(grey), cfg)
    assert ginfo.inverted == winfo.inverted
    np.testing.assert_allclose([ginfo.lo, ginfo.hi], [winfo.lo, winfo.hi], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got.numpy(), want, atol=1e-4)


def test_matches_cpu_on_real_images(stage1_train):
    for p in sorted((stage1_train / "images").glob("*.png"))[:6]:
        _check(to_grey(read_image_raw(p)))


@pytest.mark.parametrize("invert", ["auto", "never", "always"])
def test_matches_cpu_on_synthetic_frames(invert):
    rng = np.random.default_rng(1)
    bright = 200 - rng.gamma(2, 10, (300, 200)).astype(np.float32)  # bright background
    bright[5, 5] = np.nan
    for grey in (bright, 255 - bright, np.full((8, 8), 3.0, np.float32)):
        _check(grey, NormConfig(invert=invert))


def test_needs_a_2d_tensor():
    with pytest.raises(InputError, match="H x W torch tensor"):
        normalize_torch(torch.zeros(2, 3, 3))

from __future__ import annotations

import numpy as np
import pytest

from edgeseg.errors import InputError
from edgeseg.tiling import TileGrid, pad_to_multiple, run_tiled


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (16, 16), (17, 40), (100, 7)])
def test_pad_to_multiple(shape):
    a = np.random.default_rng(0).random(shape, dtype=np.float32)
    p = pad_to_multiple(a, 16)
    assert p.shape[0] % 16 == 0 and p.shape[1] % 16 == 0
    np.testing.assert_array_equal(p[: shape[0], : shape[1]], a)
    assert p.shape[0] - shape[0] < 16 and p.shape[1] - shape[1] < 16


def test_pad_min_size_and_reflection():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    p = pad_to_multiple(a, 4, min_size=8)
    assert p.shape == (8, 8)
    np.testing.assert_array_equal(p[2, :3], a[1])  # symmetric reflection repeats the edge row


def test_grid_covers_image_exactly():
    g = TileGrid(1000, 2500, 512, 64)
    boxes = list(g.boxes())
    assert len(boxes) == len(g)
    cover = np.zeros((1000, 2500), int)
    for y, x in boxes:
        cover[y:y + 512, x:x + 512] += 1
    assert cover.min() >= 1
    assert max(y for y, _ in boxes) + 512 == 1000 and max(x for _, x in boxes) + 512 == 2500


def test_grid_rejects_bad_overlap():
    with pytest.raises(InputError):
        TileGrid(100, 100, 64, 32)


def test_run_tiled_matches_a_pointwise_network():
    """A per-pixel network gives identical probabilities tiled or not: blending is exact."""
    img = np.random.default_rng(1).random((300, 700), dtype=np.float32)

    def infer(batch):
        x = batch[:, 0]
        return np.stack([x, 1 - x, np.zeros_like(x)], axis=1) / 1.0

    probs = run_tiled(img, infer, classes=3, multiple=16, tile=128, overlap=16, batch_size=3)
    assert probs.shape == (3, 300, 700)
    np.testing.assert_allclose(probs[0], img, atol=1e-6)


def test_run_tiled_checks_tile_multiple():
    with pytest.raises(InputError, match="multiple"):
        run_tiled(np.zeros((10, 10), np.float32), lambda b: b, classes=3, multiple=16, tile=100, overlap=8)

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


# ---------------------------------------------------------------- tiles follow the frame (issue 9, item 12)


def _reference_tiled(image, infer, *, classes, multiple, tile, overlap, min_size=0):
    """The blend written out plainly: pad the whole image, sum weighted tiles, divide."""
    from edgeseg.tiling import _window, tile_grid

    h, w = image.shape
    padded = pad_to_multiple(image, multiple, min_size=min_size)
    grid = tile_grid(h, w, multiple=multiple, tile=tile, overlap=overlap, min_size=min_size)
    th, tw = grid.tile_shape
    ys, xs = grid.starts()
    wy = _window(th, overlap) if len(ys) > 1 else np.ones(th, np.float32)
    wx = _window(tw, overlap) if len(xs) > 1 else np.ones(tw, np.float32)
    acc = np.zeros((classes, *padded.shape), np.float64)
    weight = np.zeros(padded.shape, np.float64)
    for y in ys:
        for x in xs:
            p = infer(padded[None, None, y:y + th, x:x + tw])[0]
            acc[:, y:y + th, x:x + tw] += p * np.outer(wy, wx)
            weight[y:y + th, x:x + tw] += np.outer(wy, wx)
    return (acc / weight)[:, :h, :w]


def _context_net(batch):
    """A 'network' whose output depends on the neighbourhood (a 5x5 box blur), so padding,
    tile positions and blending all show in the result."""
    import cv2

    blurred = np.stack([cv2.blur(t[0], (5, 5), borderType=cv2.BORDER_REFLECT) for t in batch])
    return np.stack([blurred, 1 - blurred, blurred ** 2], axis=1).astype(np.float32)


@pytest.mark.parametrize("shape, tile, overlap, min_size", [
    ((16, 5000), 1024, 128, 0), ((5000, 16), 1024, 128, 0), ((7, 300), 64, 8, 0),
    ((130, 141), 64, 8, 0), ((300, 70), 64, 16, 0), ((5, 9), 64, 8, 32), ((40, 200), 32, 4, 48),
    ((33, 47), 16, 4, 0),
])
def test_run_tiled_matches_whole_image_padding(shape, tile, overlap, min_size):
    img = np.random.default_rng(2).random(shape, dtype=np.float32)
    got = run_tiled(img, _context_net, classes=3, multiple=16, tile=tile, overlap=overlap,
                    batch_size=3, min_size=min_size)
    want = _reference_tiled(img, _context_net, classes=3, multiple=16, tile=tile,
                            overlap=overlap, min_size=min_size)
    assert got.shape == (3, *shape) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=2e-6)


def test_narrow_frames_get_narrow_tiles():
    """16 x 5000 goes through as 16 x 1024 tiles (~1.2x its pixels), not as 1024 x 1024 ones
    (~80x): the network sees at most twice the (padded) frame, whatever its shape."""
    from edgeseg.tiling import tile_grid

    seen = []

    def infer(batch):
        seen.append(batch.shape)
        return np.zeros((batch.shape[0], 3, *batch.shape[2:]), np.float32)

    for shape in [(16, 5000), (5000, 16), (16, 1040), (1000, 3000)]:
        seen.clear()
        run_tiled(np.zeros(shape, np.float32), infer, classes=3, multiple=16, tile=1024,
                  overlap=128, batch_size=4)
        grid = tile_grid(*shape, multiple=16, tile=1024, overlap=128)
        assert all(s[2:] == grid.tile_shape for s in seen)
        assert grid.tile_shape == tuple(min(1024, -(-d // 16) * 16) for d in shape)
        fed = sum(s[0] * s[2] * s[3] for s in seen)
        assert sum(s[0] for s in seen) == len(grid)
        assert fed <= 2 * grid.height * grid.width, (shape, fed)


def test_tile_grid_min_size_pads_short_sides():
    from edgeseg.tiling import tile_grid

    g = tile_grid(5, 3000, multiple=16, tile=512, overlap=64, min_size=64)
    assert (g.height, g.tile_shape) == (64, (64, 512))


def test_run_tiled_memory_is_the_result_plus_one_batch():
    """No weight map, no padded copy of the image, no copy of the result: the largest
    allocations are the C x H x W result and one batch of tiles."""
    import tracemalloc

    img = np.random.default_rng(3).random((1000, 1210), dtype=np.float32)  # not a multiple of 16
    tile, batch = 128, 4

    def infer(b):
        return np.repeat(b, 3, axis=1)

    tracemalloc.start()
    try:
        out = run_tiled(img, infer, classes=3, multiple=16, tile=tile, overlap=16,
                        batch_size=batch)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    per_batch = batch * tile * tile * 4 * (1 + 3) + 3 * tile * tile * 4 * 3  # tiles, probs, blend temps
    assert peak <= out.nbytes + per_batch + (1 << 20), (peak, out.nbytes)

from __future__ import annotations

import numpy as np
import pytest
from conftest import subset_ids

from edgeseg.data import read_labels
from edgeseg.errors import InputError
from edgeseg.metrics import dsb_score
from edgeseg.postprocess import PostprocessConfig, instance_table, label_instances
from edgeseg.targets import encode, one_hot


def disc_labels(h=64, w=64, centres=((20, 20, 8), (20, 36, 8), (45, 45, 6))) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    lab = np.zeros((h, w), np.int32)
    for i, (cy, cx, r) in enumerate(centres, 1):
        lab[((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r) & (lab == 0)] = i
    return lab


def test_recovers_touching_discs_from_one_hot():
    gt = disc_labels()
    pred = label_instances(one_hot(encode(gt)))
    assert pred.dtype == np.int32 and pred.shape == gt.shape
    assert pred.max() == 3
    assert dsb_score(gt, pred) == 1.0


def test_soft_probabilities_still_separate():
    gt = disc_labels()
    pred = label_instances(one_hot(encode(gt, None), smooth=1.0))
    assert pred.max() == 3 and dsb_score(gt, pred) > 0.6


def test_ids_are_consecutive_and_small_objects_removed():
    gt = disc_labels(centres=((10, 10, 5), (40, 40, 1)))  # a 5-px object
    p = one_hot(encode(gt))
    assert label_instances(p, min_size=0).max() == 2
    pred = label_instances(p, min_size=10)
    assert pred.max() == 1 and set(np.unique(pred)) == {0, 1}


def test_foreground_without_seed_becomes_its_own_instance():
    p = np.zeros((3, 20, 20), np.float32)
    p[0] = 1.0
    p[:, 5:12, 5:12] = np.array([0.2, 0.3, 0.5], np.float32)[:, None, None]  # fg, no body > 0.5
    pred = label_instances(p)
    assert pred.max() == 1 and (pred[5:12, 5:12] == 1).all()


@pytest.mark.parametrize("shape", [(4, 1), (1, 4), (2, 1), (3, 1), (1, 1), (4, 4), (5, 3), (1, 40)])
def test_unseeded_foreground_on_tiny_frames(shape):
    """Shapes OpenCV can mistake for a scalar (4 x 1 is a cv::Scalar to OpenCV 5's arithmetic)."""
    h, w = shape
    body, unseeded, bg = (0.0, 1.0, 0.0), (0.2, 0.3, 0.5), (1.0, 0.0, 0.0)
    p = np.empty((3, h, w), np.float32)
    p[:] = np.array(unseeded, np.float32)[:, None, None]
    assert (label_instances(p, min_size=0) == 1).all()  # all foreground, no seed: one instance
    if min(h, w) == 1 and h * w >= 3:  # a line: a seed, background, unseeded foreground
        flat = p.reshape(3, -1)
        flat[:, 0], flat[:, 1] = body, bg
        pred = label_instances(p, min_size=0).reshape(-1)
        assert pred[0] == 1 and pred[1] == 0 and (pred[2:] == 2).all() and pred.dtype == np.int32


def test_holes_are_filled_or_kept():
    gt = np.zeros((20, 20), np.int32)
    gt[3:15, 3:15] = 1
    p = one_hot(encode(gt))
    p[:, 8, 8] = [1.0, 0.0, 0.0]  # a one-pixel hole
    assert label_instances(p)[8, 8] == 1
    assert label_instances(p, fill_holes=False)[8, 8] == 0


def test_max_grow_limits_growth():
    p = np.zeros((3, 5, 40), np.float32)
    p[0] = 1.0
    p[:, :, 0:30] = np.array([0.0, 0.0, 1.0], np.float32)[:, None, None]
    p[:, :, 0:3] = np.array([0.0, 1.0, 0.0], np.float32)[:, None, None]
    assert (label_instances(p)[:, :30] == 1).all()
    short = label_instances(p, max_grow=5, min_size=0)
    assert short.max() == 2  # the unreached rest is split off


def test_dense_and_sparse_growth_agree(monkeypatch):
    from edgeseg import postprocess

    gt = disc_labels(128, 128, tuple((y, x, 9) for y in range(12, 128, 18) for x in range(12, 128, 18)))
    p = one_hot(encode(gt), smooth=1.5)
    sparse = label_instances(p)
    monkeypatch.setattr(postprocess, "_SPARSE_FRACTION", 0.0)
    dense = label_instances(p)
    monkeypatch.setattr(postprocess, "_SPARSE_FRACTION", 1.0)
    all_sparse = label_instances(p)
    np.testing.assert_array_equal(sparse, dense)
    np.testing.assert_array_equal(sparse, all_sparse)


def test_image_edges_and_odd_sizes():
    for h, w in [(1, 1), (1, 9), (7, 1), (13, 17)]:
        gt = np.zeros((h, w), np.int32)
        gt[: max(1, h // 2), : max(1, w // 2)] = 1
        pred = label_instances(one_hot(encode(gt)), min_size=0)
        assert dsb_score(gt, pred) == 1.0


def test_float16_and_float64_accepted():
    p = one_hot(encode(disc_labels()))
    for dt in (np.float16, np.float64):
        np.testing.assert_array_equal(label_instances(p.astype(dt)), label_instances(p))


def test_noncontiguous_input():
    p = one_hot(encode(disc_labels()))
    view = np.ascontiguousarray(p.transpose(0, 2, 1)).transpose(0, 2, 1)
    np.testing.assert_array_equal(label_instances(view), label_instances(p))


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.full((3, 4, 4), np.nan, np.float32), "NaN"),
        (np.full((3, 4, 4), np.inf, np.float32), "NaN or infinite"),
        (np.zeros((1, 3, 4, 4), np.float32), "one image"),
        (np.zeros((2, 4, 4), np.float32), "3 classes"),
        (np.zeros((4, 4, 3), np.float32), "transpose"),
        (np.zeros((3, 0, 4), np.float32), "empty"),
        (np.zeros((3, 4, 4), np.int32), "float"),
        (np.full((3, 4, 4), 5.0, np.float32), "softmax"),
        ([[0.5]], "numpy array"),
    ],
)
def test_bad_probabilities(bad, match):
    with pytest.raises(InputError, match=match):
        label_instances(bad)


def test_bad_overrides_and_config():
    p = one_hot(encode(disc_labels()))
    with pytest.raises(InputError, match="valid ones"):
        label_instances(p, seed_treshold=0.3)
    with pytest.raises(InputError, match="seed_threshold"):
        PostprocessConfig(seed_threshold=1.5)
    cfg = PostprocessConfig(seed_threshold=0.7, min_size=10)
    assert PostprocessConfig.from_dict(cfg.to_dict()) == cfg


def test_encoding_oracle_on_real_subset(stage1_train, manifest):
    """GT -> encode -> one-hot -> label_instances recovers the nuclei (the model's ceiling)."""
    scores = []
    for i in subset_ids(manifest, 40, seed=1):
        gt = read_labels(stage1_train / "labels" / f"{i}.png")
        scores.append(dsb_score(gt, label_instances(one_hot(encode(gt)))))
    mean, p10 = float(np.mean(scores)), float(np.percentile(scores, 10))
    print(f"oracle on 40 real images: mean {mean:.4f}, p10 {p10:.4f}")
    assert mean >= 0.98, f"encoding oracle mean {mean:.4f} < 0.98 (p10 {p10:.4f})"
    assert p10 >= 0.95, f"encoding oracle 10th percentile {p10:.4f} < 0.95"


def _flood_fill_holes(fg: np.ndarray) -> np.ndarray:
    """Reference definition: background not 4-connected to the outside is a hole."""
    import cv2

    h, w = fg.shape
    padded = np.zeros((h + 2, w + 2), np.uint8)
    padded[1:-1, 1:-1] = fg
    cv2.floodFill(padded, np.zeros((h + 4, w + 4), np.uint8), (0, 0), 255, flags=4)
    return np.where(padded[1:-1, 1:-1] == 0, 255, fg).astype(np.uint8)


def test_hole_filling_matches_flood_fill_definition():
    import cv2

    from edgeseg.postprocess import _fill_holes

    rng = np.random.default_rng(0)
    for _ in range(500):
        h, w = rng.integers(1, 40, 2)
        m = (rng.random((h, w)) < rng.uniform(0.2, 0.8)).astype(np.uint8) * 255
        if rng.random() < 0.5:
            m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
        np.testing.assert_array_equal(_fill_holes(m), _flood_fill_holes(m))


# ---------------------------------------------------------------- bounded memory on large frames (issue 9, item 7)


def _blocks_of(pixels):
    from edgeseg import tiling

    return lambda h, w, **_: tiling.row_blocks(h, w, pixels)  # whatever block size was asked


def _random_probs(h, w, seed=0):
    import cv2

    rng = np.random.default_rng(seed)
    x = cv2.GaussianBlur(rng.random((h, w), dtype=np.float32), (0, 0), 3)
    x = (x - x.min()) / (x.max() - x.min())
    fg = np.clip((x - 0.4) * 4, 0, 1)
    body = np.clip((x - 0.55) * 4, 0, 1) * fg
    return np.stack([1 - fg, body, fg - body]).astype(np.float32)


@pytest.mark.parametrize("pixels", [1, 97, 4096])
def test_blockwise_table_and_renumbering_equal_the_whole_frame(monkeypatch, pixels):
    import edgeseg.measure as measure
    import edgeseg.postprocess as pp

    probs = _random_probs(150, 170)
    image = np.random.default_rng(1).random((150, 170)).astype(np.float32)
    whole = label_instances(probs, min_size=5)
    table = instance_table(whole, probs, image)
    assert whole.max() > 20 and len(table) == whole.max()
    monkeypatch.setattr(pp, "row_blocks", _blocks_of(pixels))
    monkeypatch.setattr(measure, "row_blocks", _blocks_of(pixels))
    np.testing.assert_array_equal(label_instances(probs, min_size=5), whole)
    blocks = instance_table(whole, probs, image)
    for col in ("id", "area", "bbox"):
        np.testing.assert_array_equal(getattr(blocks, col), getattr(table, col))
    for col in ("centroid", "score", "intensity"):
        np.testing.assert_allclose(getattr(blocks, col), getattr(table, col), rtol=1e-12)
    sparse = np.zeros((40, 50), np.int64)  # ids far apart, one of them in two blocks
    sparse[3:20, 5:9], sparse[30:33, 40:50] = 2**40, 7
    t = instance_table(sparse)
    assert list(t.id) == [7, 2**40] and list(t.area) == [30, 68]
    assert [list(b) for b in t.bbox] == [[30, 40, 33, 50], [3, 5, 20, 9]]


def test_more_seeds_than_16_bits(monkeypatch):
    """Over 65535 seeds the 16-bit labelling overflows and the 32-bit one takes over."""
    probs = np.zeros((3, 600, 600), np.float32)
    probs[0] = 1.0
    probs[0, ::2, ::2], probs[1, ::2, ::2] = 0.0, 1.0  # 90000 isolated one-pixel nuclei
    labels = label_instances(probs, min_size=0, fill_holes=False)
    assert labels.max() == 90000
    assert np.array_equal(np.sort(labels[::2, ::2].ravel()), np.arange(1, 90001))


def test_renumbering_memory_is_bounded_by_the_block(monkeypatch):
    """Renumbering with the confidence filter looks the labelled pixels up a row block at a
    time: its temporaries scale with the block (here 16k pixels), not with the frame."""
    import tracemalloc

    import edgeseg.postprocess as pp

    monkeypatch.setattr(pp, "row_blocks", _blocks_of(1 << 14))
    lab = np.zeros((1500, 1500), np.uint16)
    lab[:, :1000] = np.arange(1, 1501, dtype=np.uint16)[:, None]  # 2/3 foreground, 1500 ids
    lab[::2, 500:1000] = 0  # odd rows: 1000 px, even rows: 500 px (removed by min_size)
    probs = np.zeros((3, *lab.shape), np.float32)
    probs[1] = 1.0
    tracemalloc.start()
    try:
        out = pp._renumber(lab, 1501, 600, probs, 0.5, 0.75)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out.max() == 750 and np.array_equal(out[1::2, 0], np.arange(1, 751))
    # the int32 output, plus per-block temporaries; whole-frame indices would add >= 9 MB
    assert peak < out.nbytes * 1.4, peak

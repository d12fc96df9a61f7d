"""edgeseg.evaluate: label resizing for the scale-shift check (alignment, ties, sizes)."""

import cv2
import numpy as np
import pytest

from edgeseg.errors import InputError
from edgeseg.evaluate import resize_labels, zoom_pair
from edgeseg.metrics import dsb_score


def _disks(shape, centres, r):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    lab = np.zeros(shape, np.int32)
    for i, (cy, cx) in enumerate(centres, start=1):
        lab[(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = i
    return lab


def _centroid(mask):
    ys, xs = np.nonzero(mask)
    return ys.mean(), xs.mean()


@pytest.mark.parametrize("zoom", [0.5, 0.25, 0.7])
def test_centred_labels_stay_on_the_image_grid(zoom):
    """A nucleus shrunk with the image keeps its centre: pixel-centre coordinates map as
    (y + 0.5) * zoom - 0.5, like the area-resized image. OpenCV's nearest does not at 0.5x."""
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(np.arange(5), np.arange(5)), -1).reshape(-1, 2)
    centres = 20 + 40 * grid + rng.uniform(-3, 3, size=grid.shape)  # 25 disjoint nuclei
    lab = _disks((200, 200), centres, 9.0)
    size = (round(200 * zoom), round(200 * zoom))
    small = resize_labels(lab, size)
    shifts = []
    for i in range(1, 26):
        want = (np.array(_centroid(lab == i)) + 0.5) * zoom - 0.5
        shifts.append(np.subtract(_centroid(small == i), want))
    shifts = np.array(shifts)
    assert np.abs(shifts.mean(axis=0)).max() < 0.05 and np.abs(shifts).max() < 0.3
    img = cv2.resize((lab > 0).astype(np.float32), size[::-1], interpolation=cv2.INTER_AREA)
    assert abs((small > 0).sum() - img.sum()) / img.sum() < 0.03  # areas kept
    if zoom == 0.5:  # the quarter-pixel offset this function avoids
        near = resize_labels(lab, size, "nearest")
        off = [np.subtract(_centroid(near == i), (np.array(_centroid(lab == i)) + 0.5) * zoom
                           - 0.5) for i in range(1, 26)]
        assert np.mean(off) > 0.2  # content a quarter pixel down-right


def test_centred_beats_nearest_as_a_reference_for_a_perfect_prediction():
    """Shrinking the truth 0.5x: a prediction aligned with the image (the truth shrunk by area
    coverage) scores ~1 against the centred labels but not against OpenCV's nearest."""
    rng = np.random.default_rng(1)
    lab = _disks((256, 256), rng.uniform(12, 244, size=(30, 2)), 7.0)
    small = (128, 128)
    aligned = resize_labels(lab, small)
    assert dsb_score(aligned, aligned) == 1.0
    assert dsb_score(resize_labels(lab, small, "nearest"), aligned) < 0.95


def test_ties_split_by_checkerboard_and_enlarging_is_nearest():
    lab = np.zeros((4, 4), np.int32)
    lab[0:2, 1:3] = 5  # every 2x2 block of the top row is half instance, half background
    out = resize_labels(lab, (2, 2))
    assert out[0].tolist() == [0, 5]  # checkerboard: ties go to the instance where y + x is odd
    assert out[1].tolist() == [0, 0]
    big = resize_labels(lab, (8, 8))
    assert np.array_equal(big, np.kron(lab, np.ones((2, 2), np.int32)))


def test_empty_labels_and_bad_method():
    assert not resize_labels(np.zeros((10, 10), np.int32), (5, 5)).any()
    with pytest.raises(InputError, match="centred"):
        resize_labels(np.zeros((4, 4), np.int32), (2, 2), "bilinear")


def test_zoom_pair_shapes_match():
    img = np.random.default_rng(2).integers(0, 255, (101, 77), dtype=np.uint8)
    lab = _disks((101, 77), [(50, 38)], 10)
    for z in (0.5, 1.0, 2.0):
        a, b = zoom_pair(img, lab, z)
        assert a.shape == b.shape and b.dtype == np.int32

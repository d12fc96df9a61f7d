from __future__ import annotations

import numpy as np
import pytest

from edgeseg.errors import InputError
from edgeseg.targets import BODY, BORDER, TargetConfig, encode, one_hot


def two_touching() -> np.ndarray:
    lab = np.zeros((12, 20), np.int32)
    lab[2:10, 2:10] = 1
    lab[2:10, 10:18] = 2
    return lab


def test_isolated_nucleus_is_all_body_by_default():
    lab = np.zeros((10, 10), np.int32)
    lab[2:8, 2:8] = 5
    c = encode(lab)
    assert set(np.unique(c[lab > 0])) == {BODY}
    assert (c[lab == 0] == 0).all()


def test_touching_zone_separates_two_nuclei():
    lab = two_touching()
    c = encode(lab, TargetConfig(border_width=0, touch_width=1))
    # the columns on both sides of the contact are border, the rest body
    assert (c[2:10, 9] == BORDER).all() and (c[2:10, 10] == BORDER).all()
    assert (c[2:10, 3:9] == BODY).all() and (c[2:10, 11:17] == BODY).all()
    c2 = encode(lab, TargetConfig(border_width=0, touch_width=2))
    assert (c2[2:10, 8:12] == BORDER).all()


def test_outline_band():
    lab = np.zeros((12, 12), np.int32)
    lab[2:10, 2:10] = 1
    c = encode(lab, TargetConfig(border_width=1, touch_width=0))
    assert (c[2, 2:10] == BORDER).all() and (c[3:9, 3:9] == BODY).all()


def test_nucleus_cut_by_image_edge_has_no_outline_there():
    lab = np.zeros((8, 8), np.int32)
    lab[:, :4] = 1
    c = encode(lab, TargetConfig(border_width=1, touch_width=0))
    assert (c[3, 0] == BODY) and (c[3, 3] == BORDER)


def test_small_nucleus_keeps_a_body():
    lab = np.zeros((10, 10), np.int32)
    lab[4:6, 2:4] = 1  # 2x2, touching the big one
    lab[2:8, 4:9] = 2
    c = encode(lab, TargetConfig(border_width=1, touch_width=2))
    assert (c[lab == 1] == BODY).any()
    c_off = encode(lab, TargetConfig(border_width=1, touch_width=2, keep_small=False))
    assert not (c_off[lab == 1] == BODY).any()


def test_one_body_component_per_nucleus():
    # A dumbbell whose neck lies along another nucleus: the touching zone cuts its body in two.
    lab = np.zeros((12, 24), np.int32)
    lab[1:6, 1:7] = 1
    lab[1:6, 17:23] = 1
    lab[4:6, 7:17] = 1
    lab[6:11, 1:23] = 2
    import cv2

    def body_parts(c):
        return cv2.connectedComponents(((c == BODY) & (lab == 1)).astype(np.uint8), connectivity=8)[0] - 1

    assert body_parts(encode(lab, TargetConfig(touch_width=2, single_seed=False))) == 2
    assert body_parts(encode(lab, TargetConfig(touch_width=2))) == 1


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.int32, np.int64, np.uint32])
def test_label_dtypes(dtype):
    lab = two_touching().astype(dtype)
    np.testing.assert_array_equal(encode(lab), encode(two_touching()))


def test_many_labels_beyond_uint16():
    lab = two_touching().astype(np.int64)
    lab[lab == 2] = 70000
    lab[lab == 1] = 3
    np.testing.assert_array_equal(encode(lab), encode(two_touching()))


def test_empty_labels_give_background():
    assert (encode(np.zeros((5, 7), np.uint16)) == 0).all()


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((4, 4), np.float32), "integer"),
        (np.zeros((2, 4, 4), np.int32), "2-D"),
        (np.zeros((0, 4), np.int32), "empty"),
        (-np.ones((3, 3), np.int32), ">= 0"),
        ([[0, 1]], "numpy array"),
    ],
)
def test_bad_labels(bad, match):
    with pytest.raises(InputError, match=match):
        encode(bad)


def test_config_validation_and_round_trip():
    cfg = TargetConfig(border_width=2, touch_width=3)
    assert TargetConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(InputError, match="touch_width"):
        TargetConfig(touch_width=-1)
    with pytest.raises(InputError, match="valid keys"):
        TargetConfig.from_dict({"bogus": 1})


def test_one_hot():
    c = encode(two_touching())
    p = one_hot(c)
    assert p.shape == (3, *c.shape) and p.dtype == np.float32
    np.testing.assert_array_equal(p.argmax(0), c)
    ps = one_hot(c, smooth=1.0)
    np.testing.assert_allclose(ps.sum(0), 1.0, atol=1e-5)
    with pytest.raises(InputError):
        one_hot(c.astype(np.int32))

"""edgeseg.units: pixel sizes and lengths with units (issue 12, item 3)."""

from __future__ import annotations

import math

import pytest

from edgeseg.errors import InputError
from edgeseg.units import PixelSize, as_pixel_size, is_length, parse_length_um, to_um


@pytest.mark.parametrize("text, um", [("7um", 7.0), ("7 µm", 7.0), ("7\u03bcm", 7.0), ("7micron", 7.0),
                                      ("7000nm", 7.0), ("0.007mm", 7.0), ("1.5e1um", 15.0), (" 12 UM ", 12.0)])
def test_lengths_in_µm(text, um):
    assert is_length(text)
    assert parse_length_um(text) == pytest.approx(um)


@pytest.mark.parametrize("text", ["7", "7px", "um", "-7um", "0um", "7 parsecs", "", "7 u m"])
def test_not_lengths(text):
    assert is_length(text) == (text == "0um")  # a length in form, refused for its value
    with pytest.raises(InputError, match="not a length.*number > 0.*e.g. '7um'"):
        parse_length_um(text, "diameter")


def test_ome_units_to_µm():
    assert to_um(500, "nm") == pytest.approx(0.5)
    assert to_um(0.5, None) == 0.5 and to_um(0.5, "") == 0.5  # OME-XML's default unit is µm
    assert to_um(5000, "\u00c5") == pytest.approx(0.5)
    assert to_um(1, "pixel") is None and to_um(0, "µm") is None and to_um("x", "µm") is None


def test_pixel_size_area_and_length():
    px = PixelSize(x=0.5, y=0.2)
    assert px.area == pytest.approx(0.1) and px.length == pytest.approx(math.sqrt(0.1))
    assert str(PixelSize(0.65, 0.65)) == "0.65 µm"
    assert as_pixel_size((0.2, 0.5)) == px  # (y, x): numpy's axis order
    assert as_pixel_size("0.65") == as_pixel_size("650nm") == as_pixel_size(0.65) == PixelSize(0.65, 0.65)
    assert as_pixel_size(None) is None and as_pixel_size(px) is px


@pytest.mark.parametrize("bad", [0, -1, float("nan"), True, "abc", (0.1, 0), [1, 2, 3], object()])
def test_bad_pixel_sizes_are_one_clear_error(bad):
    with pytest.raises(InputError, match="pixel_size|pixel size|not a length"):
        as_pixel_size(bad)

"""Physical units: the pixel size of an image and lengths such as ``"7um"``.

A :class:`PixelSize` is the width and height of one pixel in micrometres (µm). Where it is known
(an OME-TIFF or ImageJ TIFF that records it, :func:`edgeseg.imageio.read_image_meta`, or given by
the user), areas and diameters can be reported in µm² / µm and a nucleus diameter can be given in
µm (``Segmenter(diameter="7um", pixel_size=0.65)``, ``edgeseg predict --diameter 7um``).

Anisotropic pixels (x != y) are kept as they are: an area in µm² is ``px * x * y``; a length
that has no direction (a diameter) uses the geometric mean ``sqrt(x * y)`` of the two sides.
This module imports nothing heavy.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Union

from .errors import InputError

__all__ = ["PixelSize", "as_pixel_size", "parse_length_um", "is_length", "to_um", "UM"]

UM = "\u00b5m"  # µm with the micro sign, as OME-XML writes it

# factors to µm of the length units OME-XML and ImageJ write (both micro signs, ASCII spellings)
_TO_UM = {
    "pm": 1e-6, "\u00c5": 1e-4, "a": 1e-4, "angstrom": 1e-4, "nm": 1e-3, "nanometer": 1e-3,
    "\u00b5m": 1.0, "\u03bcm": 1.0, "um": 1.0, "micron": 1.0, "microns": 1.0, "micrometer": 1.0,
    "micrometre": 1.0, "\\u00b5m": 1.0, "mm": 1e3, "millimeter": 1e3, "cm": 1e4, "centimeter": 1e4,
    "m": 1e6, "meter": 1e6, "in": 25400.0, "inch": 25400.0,
}
_LENGTH = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([^\d\s.][^\s]*)\s*$")


def to_um(value: float, unit: str | None) -> float | None:
    """``value`` in ``unit`` as µm (None for an unknown unit, 'pixel' or a non-positive value).
    A missing unit (None or "") is µm, the OME-XML default."""
    key = (unit or "").strip()
    factor = 1.0 if not key else _TO_UM.get(key, _TO_UM.get(key.lower()))
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    if factor is None or not math.isfinite(v) or v <= 0:
        return None
    return v * factor


def is_length(value: Any) -> bool:
    """Whether ``value`` is a string of a number with a length unit, e.g. ``"7um"``, ``"7 µm"``."""
    if not isinstance(value, str):
        return False
    m = _LENGTH.match(value)
    return bool(m) and to_um(1.0, m.group(2)) is not None


def parse_length_um(text: str, what: str = "length") -> float:
    """``"7um"``, ``"7 µm"``, ``"0.007mm"``, ``"7000nm"`` -> 7.0 (µm). InputError otherwise."""
    m = _LENGTH.match(text) if isinstance(text, str) else None
    um = to_um(float(m.group(1)), m.group(2)) if m else None
    if um is None:
        raise InputError(f"{what} {text!r} is not a length; expected a number > 0 followed by a "
                         "unit: um (or µm, micron), nm or mm, e.g. '7um'.")
    return um


@dataclass(frozen=True)
class PixelSize:
    """The size of one pixel in µm: ``x`` (width, along columns) and ``y`` (height, along rows)."""

    x: float
    y: float

    def __post_init__(self) -> None:
        for name in ("x", "y"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise InputError(f"pixel size {name} must be a number of µm > 0, got {v!r}; e.g. "
                                 "pixel_size=0.65 (µm per pixel).")
            object.__setattr__(self, name, float(v))

    @property
    def area(self) -> float:
        """The area of one pixel in µm²."""
        return self.x * self.y

    @property
    def length(self) -> float:
        """The µm of one pixel for a length without direction (geometric mean of x and y)."""
        return math.sqrt(self.x * self.y)

    def __str__(self) -> str:
        return f"{self.x:g} {UM}" if self.x == self.y else f"x {self.x:g} {UM}, y {self.y:g} {UM}"


PixelSizeLike = Union[PixelSize, float, int, str, "tuple[float, float]", None]


def as_pixel_size(value: Any, what: str = "pixel_size") -> PixelSize | None:
    """None, a PixelSize, a number of µm (square pixels), a length string (``"0.65um"``) or a
    ``(y, x)`` pair of µm (numpy's axis order) as a :class:`PixelSize`."""
    if value is None or isinstance(value, PixelSize):
        return value
    if isinstance(value, str):
        try:
            um = float(value)
        except ValueError:
            um = parse_length_um(value, what)
        return PixelSize(um, um)
    if isinstance(value, (tuple, list)) and len(value) == 2:
        y, x = (_number(v, what) for v in value)
        return PixelSize(x=x, y=y)
    v = _number(value, what)
    return PixelSize(v, v)


def _number(v: Any, what: str) -> float:
    try:
        out = float(v)
    except (TypeError, ValueError):
        out = float("nan")
    if isinstance(v, bool) or not math.isfinite(out) or out <= 0:
        raise InputError(f"{what} must be µm per pixel (a number > 0, or a (y, x) pair), got {v!r}; "
                         "e.g. 0.65.")
    return out

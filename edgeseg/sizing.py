"""Size control: bring nuclei to the size the network was trained at, and back.

A model sees nuclei best at about the diameter it was trained on (``ModelInfo.diameter``, from
the model card; 17.8 px for the DSB2018-trained models). A microscope with another objective
gives nuclei 2-4x larger or smaller; :class:`~edgeseg.segmenter.Segmenter` then rescales the
frame by ``model diameter / nucleus diameter`` before the network, resizes the probabilities back
and post-processes at the original resolution (``min_size`` and ``max_grow`` scaled to match), so
labels come back at the frame's own size.

``diameter="auto"`` estimates the nucleus diameter by consensus across scales, as Cellpose's size
model refines its estimate from segmentations. The frame is segmented at zoom 1 first. When its
nuclei are within :data:`TRUST_BAND` of the training diameter (1/1.3x to 1.15x: a model trained with
scale augmentation under-reads large nuclei a little, so the band is narrower above), that estimate
is final: in-range frames pay one pass, and clumps of normal nuclei that merge at zoom 1/4 into
training-sized blobs cannot outvote it (on bright-field images that took the estimate from 18 px to
77 px and the score from 0.33 to 0.01). Nuclei outside the band are also segmented at zooms
1/2 and 1/4 (1/4 and 1/16 of a pass): huge nuclei are over-split at zoom 1 and look smaller than they
are, so the estimate comes from the zoom whose nuclei, *in network pixels*, are closest to the
training diameter (nuclei a little smaller than the band are read the same way). Nuclei small
enough that the frame will be enlarged (below :data:`KEEP_RANGE`), or too few to read (nuclei of
4-6 px fall under ``min_size``), send the frame the other way: it is enlarged 2x, then 4x, until its nuclei reach the
band (:data:`UP_ZOOMS`; a large frame is cropped to a centred :data:`MAX_ESTIMATE_PIXELS` window
for these). Shrinking such a frame instead read clumps of tiny nuclei as training-sized nuclei: on
the group split at 0.5x (nuclei of 4-9 px) this took the frames with a wrong zoom (off by > 1.6x)
from 17 of 126 to 5.
Estimates within :data:`KEEP_RANGE` of the training size leave the frame unscaled, so
in-range images are segmented exactly as without size control.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from typing import Any, Callable

import cv2
import numpy as np

from .errors import InputError
from .postprocess import PostprocessConfig

__all__ = ["DEFAULT_DIAMETER", "ENLARGE_AIM", "KEEP_RANGE", "TRUST_BAND", "SizeEstimate", "check_diameter", "estimate_diameter",
           "estimate_window",
           "instance_diameters", "resize_image", "resize_probabilities", "scaled_postprocess"]

log = logging.getLogger(__name__)

DEFAULT_DIAMETER = 17.8  # median nucleus diameter (px) of DSB2018 stage1_train: models without a card entry
KEEP_RANGE = (0.67, 1.5)  # zoom factors this close to 1 are not applied: the model covers them
ZOOMS = (1.0, 0.5, 0.25)
UP_ZOOMS = (2.0, 4.0)  # tried when zoom 1's nuclei are too small for KEEP_RANGE, or too few
MIN_INSTANCES = 3
# zoom 1's estimate (as a fraction of the training diameter) inside this band is final
TRUST_BAND = (1 / 1.3, 1.15)
MAX_ZOOM, MIN_ZOOM = 4.0, 1.0 / 16
# enlarged frames aim their nuclei at this fraction of the training diameter (chosen on the group
# split at 0.5x: benchmarks/enlarge_aim.py)
ENLARGE_AIM = 0.8
MAX_ESTIMATE_PIXELS = 2048 * 2048  # enlarged for the estimate, a frame is cropped to this


def check_diameter(diameter: Any) -> float | str | None:
    """None (no size control), "auto", or a diameter in px > 0 (returned as float)."""
    if diameter is None or diameter == "auto":
        return diameter
    if isinstance(diameter, str):
        try:
            diameter = float(diameter)
        except ValueError:
            raise InputError(f"diameter must be 'auto', a number of pixels > 0 or None, got "
                             f"{diameter!r}; e.g. diameter='auto' or diameter=30.") from None
    if isinstance(diameter, bool) or not isinstance(diameter, (int, float, np.integer,
                                                                np.floating)) \
            or not math.isfinite(diameter) or diameter <= 0:
        raise InputError(f"diameter must be 'auto', a number of pixels > 0 or None, got "
                         f"{diameter!r}; e.g. diameter='auto' or diameter=30.")
    return float(diameter)


def zoom_for(model_diameter: float, diameter: float, enlarge_aim: float | None = None) -> float:
    """The zoom applied to a frame whose nuclei are ``diameter`` px (1.0 inside KEEP_RANGE).

    Shrinking brings nuclei to the training diameter; enlarging brings them to
    :data:`ENLARGE_AIM` of it (interpolation blurs what it enlarges; a model trained with scale
    augmentation reads sharper, smaller nuclei better), and enlargements that this leaves
    inside KEEP_RANGE are not applied (``enlarge_aim``: another aim, for benchmarks)."""
    z = model_diameter / diameter
    if z > KEEP_RANGE[1]:
        z *= ENLARGE_AIM if enlarge_aim is None else enlarge_aim
    if KEEP_RANGE[0] <= z <= KEEP_RANGE[1]:
        return 1.0
    return float(min(max(z, MIN_ZOOM), MAX_ZOOM))


def resize_image(image: np.ndarray, zoom: float, up: int = cv2.INTER_CUBIC) -> np.ndarray:
    """The frame zoomed (area interpolation down, bicubic up), any channels and dtype cv2 takes.

    Bicubic keeps the edges of enlarged small nuclei sharper than linear interpolation: on the
    group split at 0.5x (nuclei of 3-9 px, enlarged 2-4x) the two small-nuclei fluorescence
    groups score 0.576 instead of 0.564 (v5; Lanczos 0.575). ``up``: another OpenCV interpolation
    for enlarging (the scale-shift check simulates another objective with linear)."""
    h, w = image.shape[:2]
    size = (max(int(round(w * zoom)), 1), max(int(round(h * zoom)), 1))
    interp = cv2.INTER_AREA if zoom < 1 else up
    arr = np.ascontiguousarray(image)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    return cv2.resize(arr, size, interpolation=interp)


def estimate_window(image: np.ndarray, zoom: float) -> np.ndarray:
    """The part of the frame the size estimate looks at when zooming by ``zoom``: all of it,
    unless enlarged it would pass :data:`MAX_ESTIMATE_PIXELS`; then a centred window that fits."""
    h, w = image.shape[:2]
    if h * w * zoom * zoom <= MAX_ESTIMATE_PIXELS:
        return image
    side = max(int(math.sqrt(MAX_ESTIMATE_PIXELS) / zoom), 16)
    ch, cw = min(h, side), min(w, max(side * side // max(min(h, side), 1), 16))
    y, x = (h - ch) // 2, (w - cw) // 2
    return image[y:y + ch, x:x + cw]


def resize_probabilities(probs: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """C x h x w probabilities resized (linear) to C x H x W; linear weights keep sums at 1."""
    h, w = shape
    out = np.empty((probs.shape[0], h, w), np.float32)
    for c in range(probs.shape[0]):
        out[c] = cv2.resize(np.ascontiguousarray(probs[c], np.float32), (w, h),
                            interpolation=cv2.INTER_LINEAR)
    return out


def scaled_postprocess(pp: PostprocessConfig, zoom: float) -> PostprocessConfig:
    """Post-processing sizes (px at network scale) for labelling at the original resolution."""
    if zoom == 1.0:
        return pp
    return replace(pp, min_size=int(round(pp.min_size / zoom ** 2)),
                   max_grow=max(int(round(pp.max_grow / zoom)), 1))


def instance_diameters(labels: np.ndarray) -> np.ndarray:
    """Equivalent diameters ``2 sqrt(area / pi)`` of the instances of a label image."""
    counts = np.bincount(labels.ravel())[1:]
    counts = counts[counts > 0]
    return 2.0 * np.sqrt(counts / np.pi)


@dataclass(frozen=True)
class SizeEstimate:
    """The estimated nucleus diameter (px, original scale), the zoom it was read at, and what
    each zoom saw: ``{zoom: (instances, median diameter in original px)}``."""

    diameter: float | None
    zoom: float | None
    per_zoom: dict

    def to_dict(self) -> dict[str, Any]:
        return {"diameter": self.diameter, "zoom": self.zoom,
                "per_zoom": {str(z): list(v) for z, v in self.per_zoom.items()}}


def estimate_diameter(labels_at: Callable[[float], np.ndarray], model_diameter: float,
                      zooms: tuple[float, ...] = ZOOMS,
                      up_zooms: tuple[float, ...] = UP_ZOOMS) -> SizeEstimate:
    """Consensus estimate (see the module docstring). ``labels_at(zoom)`` segments the frame at
    that zoom and returns its labels (at that zoom). ``diameter`` is None when no zoom found
    at least :data:`MIN_INSTANCES` nuclei. Zoom 1 comes first: inside :data:`TRUST_BAND` it is
    final; finding nuclei too small for :data:`KEEP_RANGE` (the frame will be enlarged), or too
    few, the frame is enlarged (``up_zooms`` in turn, until the nuclei reach the band); otherwise
    it is shrunk (the other ``zooms``; both ways when zoom 1 found too few). The
    estimate comes from the zoom whose nuclei, in network pixels, are closest to the training
    diameter."""
    per_zoom: dict[float, tuple[int, float]] = {}
    found: list[tuple[float, float, float]] = []  # (distance, zoom, diameter in original px)

    def read(z: float) -> float | None:
        """Nuclei diameter at zoom z, in network px relative to the training diameter."""
        d = instance_diameters(labels_at(z))
        if d.size < MIN_INSTANCES:
            per_zoom[z] = (int(d.size), float("nan"))
            return None
        d_net = float(np.median(d))
        per_zoom[z] = (int(d.size), d_net / z)
        found.append((abs(math.log(d_net / model_diameter)), z, d_net / z))
        return d_net / model_diameter

    r1 = read(1.0)
    if r1 is None or r1 < 1.0 / KEEP_RANGE[1]:
        for z in up_zooms:  # small (or too small to be found): enlarge until in band
            r = read(z)
            if r is not None and r >= TRUST_BAND[0]:
                break
    if r1 is None or (r1 >= 1.0 / KEEP_RANGE[1] and not TRUST_BAND[0] <= r1 <= TRUST_BAND[1]):
        for z in zooms:  # too few at zoom 1 may also be huge nuclei: read both ways
            if z != 1.0:
                read(z)
    if not found:
        log.debug("size estimate: no zoom found >= %d nuclei (%s)", MIN_INSTANCES, per_zoom)
        return SizeEstimate(None, None, per_zoom)
    _, zoom, diameter = min(found)
    log.debug("size estimate: %.1f px (read at zoom %s; %s)", diameter, zoom, per_zoom)
    return SizeEstimate(diameter, zoom, per_zoom)

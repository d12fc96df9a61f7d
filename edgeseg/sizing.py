"""Size control: bring nuclei to the size the network was trained at, and back.

A model sees nuclei best at about the diameter it was trained on (``ModelInfo.diameter``, from
the model card; 17.8 px for the DSB2018-trained models). A microscope with another objective
gives nuclei 2-4x larger or smaller; :class:`~edgeseg.segmenter.Segmenter` then rescales the
frame by ``model diameter / nucleus diameter`` before the network, resizes the probabilities back
and post-processes at the original resolution (``min_size`` and ``max_grow`` scaled to match), so
labels come back at the frame's own size.

``diameter="auto"`` estimates the nucleus diameter by consensus across scales, as Cellpose's size
model refines its estimate from segmentations: the frame is segmented at zooms 1, 1/2 and 1/4
(the smaller ones cost 1/4 and 1/16 of a pass); each zoom gives the median equivalent diameter of
its instances. Nuclei far larger than the training size are over-split at zoom 1 and look small
there, so the estimate is not taken from zoom 1 alone: it comes from the zoom whose nuclei, *in
network pixels*, are closest to the training diameter (the zoom at which the network is most
reliable). Zoom 1 is trusted outright when its nuclei are within :data:`TRUST_BAND` of the
training diameter (1/1.3x to 1.15x: a model trained with scale augmentation under-reads large
nuclei a little, so the band is narrower above): the smaller zooms are then not computed (in-range frames pay one pass), and
clumps of normal nuclei that merge at zoom 1/4 into training-sized blobs cannot outvote it (on
bright-field images that took the estimate from 18 px to 77 px and the score from 0.33 to 0.01).
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

__all__ = ["DEFAULT_DIAMETER", "KEEP_RANGE", "TRUST_BAND", "SizeEstimate", "check_diameter", "estimate_diameter",
           "instance_diameters", "resize_image", "resize_probabilities", "scaled_postprocess"]

log = logging.getLogger(__name__)

DEFAULT_DIAMETER = 17.8  # median nucleus diameter (px) of DSB2018 stage1_train: models without a card entry
KEEP_RANGE = (0.67, 1.5)  # zoom factors this close to 1 are not applied: the model covers them
ZOOMS = (1.0, 0.5, 0.25)
MIN_INSTANCES = 3
# zoom 1's estimate (as a fraction of the training diameter) inside this band is final
TRUST_BAND = (1 / 1.3, 1.15)
MAX_ZOOM, MIN_ZOOM = 4.0, 1.0 / 16


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


def zoom_for(model_diameter: float, diameter: float) -> float:
    """The zoom applied to a frame whose nuclei are ``diameter`` px (1.0 inside KEEP_RANGE)."""
    z = model_diameter / diameter
    if KEEP_RANGE[0] <= z <= KEEP_RANGE[1]:
        return 1.0
    return float(min(max(z, MIN_ZOOM), MAX_ZOOM))


def resize_image(image: np.ndarray, zoom: float) -> np.ndarray:
    """The frame zoomed (area interpolation down, linear up), any channels and dtype cv2 takes."""
    h, w = image.shape[:2]
    size = (max(int(round(w * zoom)), 1), max(int(round(h * zoom)), 1))
    interp = cv2.INTER_AREA if zoom < 1 else cv2.INTER_LINEAR
    arr = np.ascontiguousarray(image)
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    return cv2.resize(arr, size, interpolation=interp)


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
                      zooms: tuple[float, ...] = ZOOMS) -> SizeEstimate:
    """Consensus estimate (see the module docstring). ``labels_at(zoom)`` segments the frame at
    that zoom and returns its labels (at that zoom). ``diameter`` is None when no zoom found
    at least :data:`MIN_INSTANCES` nuclei."""
    per_zoom: dict[float, tuple[int, float]] = {}
    best: tuple[float, float, float] | None = None
    for z in zooms:
        d = instance_diameters(labels_at(z))
        if d.size < MIN_INSTANCES:
            per_zoom[z] = (int(d.size), float("nan"))
            continue
        d_net = float(np.median(d))
        per_zoom[z] = (int(d.size), d_net / z)
        dist = abs(math.log(d_net / model_diameter))
        if best is None or dist < best[0]:
            best = (dist, z, d_net / z)
        if z == 1.0 and TRUST_BAND[0] <= d_net / model_diameter <= TRUST_BAND[1]:
            break  # in range at the network's own scale: final (see the module docstring)
    if best is None:
        log.debug("size estimate: no zoom found >= %d nuclei (%s)", MIN_INSTANCES, per_zoom)
        return SizeEstimate(None, None, per_zoom)
    log.debug("size estimate: %.1f px (read at zoom %s; %s)", best[2], best[1], per_zoom)
    return SizeEstimate(best[2], best[1], per_zoom)

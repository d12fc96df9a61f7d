"""Colour deconvolution: the haematoxylin (nuclear stain) channel of bright-field stained images.

H&E-like stains put nuclei in haematoxylin (blue-purple) and cytoplasm in eosin (pink). Grey
conversion mixes the two; the optical density projected on the haematoxylin stain vector keeps
only the nuclear stain (Ruifrok & Johnston, Anal Quant Cytol Histol 23, 2001; the stain vectors of
``skimage.color.rgb2hed``). The result has bright nuclei on a dark background, like fluorescence.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError

__all__ = ["ABSORBING_MEDIAN", "RGB_FROM_HED", "h_projection", "hematoxylin", "is_absorbing"]

# Rows: the RGB optical-density vectors of haematoxylin, eosin and DAB (skimage's rgb_from_hed).
RGB_FROM_HED = np.array([[0.65, 0.70, 0.29],
                         [0.07, 0.99, 0.11],
                         [0.27, 0.57, 0.78]], dtype=np.float64)
RGB_FROM_HED /= np.linalg.norm(RGB_FROM_HED, axis=1, keepdims=True)


def h_projection(rgb_from_hed: np.ndarray) -> np.ndarray:
    """The float32 3-vector that projects optical density (R, G, B) on haematoxylin for the
    stain vectors ``rgb_from_hed`` (rows H, E, DAB; each row is normalised here)."""
    m = np.asarray(rgb_from_hed, dtype=np.float64)
    if m.shape != (3, 3) or not np.isfinite(m).all():
        raise InputError(f"stain vectors must be a finite 3 x 3 matrix (rows H, E, DAB), got "
                         f"shape {m.shape}.")
    m = m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)
    try:
        return np.linalg.inv(m)[:, 0].astype(np.float32)
    except np.linalg.LinAlgError:
        raise InputError("stain vectors are linearly dependent (singular 3 x 3 matrix); give "
                         "three distinct stain directions.") from None


_H_FROM_RGB = h_projection(RGB_FROM_HED)  # OD (R, G, B) -> H


def _white_level(rgb: np.ndarray) -> float:
    """The intensity of unstained background: 255 for uint8, 65535 for uint16, else the max."""
    if rgb.dtype == np.uint8:
        return 255.0
    if rgb.dtype == np.uint16:
        return 65535.0
    finite = rgb[np.isfinite(rgb)]
    return float(finite.max()) if finite.size and finite.max() > 0 else 1.0


ABSORBING_MEDIAN = 0.3  # median brightness (fraction of white) above which colour is a stain


def is_absorbing(image: np.ndarray) -> bool:
    """Whether a colour image shows an absorbing stain on a light field (bright-field H&E and
    the like) rather than coloured fluorescence on a dark one: its median pixel is brighter than
    :data:`ABSORBING_MEDIAN` of white. Unlike the bright-background rule of grey images this
    holds when nuclei cover most of the field (dense tissue)."""
    arr = np.asarray(image)
    rgb = arr[::4, ::4, :3] if arr.shape[0] * arr.shape[1] > 1 << 18 else arr[..., :3]
    white = _white_level(arr[..., :3])
    vals = rgb.astype(np.float32).mean(axis=2)
    vals = vals[np.isfinite(vals)]
    return bool(vals.size) and float(np.median(vals)) >= ABSORBING_MEDIAN * white


def hematoxylin(image: np.ndarray, rgb_from_hed: np.ndarray | None = None) -> np.ndarray:
    """Haematoxylin optical density (float32 H x W, >= 0) of an RGB(A) bright-field image.

    ``OD = -log10(I / white)`` per channel (I clipped to >= 1/255 of white), projected on the
    haematoxylin column of the inverse stain matrix; negative values (no haematoxylin) become 0.
    ``rgb_from_hed``: other stain vectors (3 x 3, rows H, E, DAB), e.g. the perturbed ones of
    training's stain augmentation; default :data:`RGB_FROM_HED`.
    """
    arr = np.asarray(image)
    white = _white_level(arr[..., :3])
    rgb = arr[..., :3].astype(np.float32) / np.float32(white)
    np.clip(rgb, 1.0 / 255.0, 1.0, out=rgb)
    od = -np.log10(rgb, out=rgb)
    h = od @ (_H_FROM_RGB if rgb_from_hed is None else h_projection(rgb_from_hed))
    np.maximum(h, 0.0, out=h)
    h[~np.isfinite(h)] = 0.0
    return np.ascontiguousarray(h, dtype=np.float32)

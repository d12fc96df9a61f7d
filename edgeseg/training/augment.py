"""Training augmentation: random crops, dihedral flips/rotations, intensity, gamma, blur, noise.

Pure numpy/OpenCV, driven by an explicit ``numpy.random.Generator`` so every batch is a function
of ``(seed, step, rank)`` only (:mod:`edgeseg.training.data`); no global random state is touched.
Images are normalised float32 ``H x W`` (the output of ``edgeseg.data.normalize``); targets are
uint8 class maps (``edgeseg.targets.encode``) and only see the geometric transforms.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import cv2
import numpy as np

from .._config import ConfigMixin
from ..errors import InputError

__all__ = ["AugmentConfig", "augment_pair", "dihedral", "random_crop"]


@dataclass(frozen=True)
class AugmentConfig(ConfigMixin):
    """Strengths of the random augmentation (0 disables a term).

    Attributes:
        flips: random flips and 90-degree rotations (the 8 dihedral transforms).
        intensity_scale: multiply by ``U(1 - s, 1 + s)``.
        intensity_shift: add ``U(-s, s)``.
        gamma: ``x ** g`` with ``log g ~ U(-log(1 + gamma), log(1 + gamma))`` (on [0, 1]).
        blur_prob: probability of a Gaussian blur with sigma ``U(0.3, blur_sigma)``.
        blur_sigma: largest blur sigma in px.
        noise_prob: probability of additive Gaussian noise with std ``U(0, noise_std)``.
        noise_std: largest noise std (in normalised units).
    """

    flips: bool = True
    intensity_scale: float = 0.2
    intensity_shift: float = 0.1
    gamma: float = 0.5
    blur_prob: float = 0.2
    blur_sigma: float = 1.5
    noise_prob: float = 0.3
    noise_std: float = 0.05

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name == "flips":
                if not isinstance(v, bool):
                    raise InputError(f"AugmentConfig.flips must be true/false, got {v!r}")
                continue
            hi = 1.0 if f.name.endswith("prob") or f.name == "intensity_scale" else 10.0
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= hi:
                raise InputError(f"AugmentConfig.{f.name} must be a number in [0, {hi}], got {v!r}")




def random_crop(image: np.ndarray, target: np.ndarray, size: int,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A ``size x size`` crop at a uniform position. An image smaller than ``size`` is first
    reflection-padded (split at random between the two sides, so the padding moves around)."""
    h, w = image.shape
    ph, pw = max(size - h, 0), max(size - w, 0)
    if ph or pw:
        top, left = int(rng.integers(ph + 1)), int(rng.integers(pw + 1))
        pads = (top, ph - top, left, pw - left)
        image = cv2.copyMakeBorder(np.asarray(image, np.float32), *pads, cv2.BORDER_REFLECT_101)
        target = cv2.copyMakeBorder(np.ascontiguousarray(target, np.uint8), *pads,
                                    cv2.BORDER_REFLECT_101)
        h, w = image.shape
    y = int(rng.integers(h - size + 1))
    x = int(rng.integers(w - size + 1))
    return image[y:y + size, x:x + size], target[y:y + size, x:x + size]


def dihedral(a: np.ndarray, k: int) -> np.ndarray:
    """One of the 8 dihedral transforms of a 2-D array (k in 0..7): rot90 ``k % 4``, then a
    horizontal flip when ``k >= 4``."""
    a = np.rot90(a, k % 4)
    return a[:, ::-1] if k >= 4 else a


def augment_pair(image: np.ndarray, target: np.ndarray, crop: int, cfg: AugmentConfig,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Crop + augment one (image float HxW, target uint8 HxW) pair -> (float32 crop x crop,
    uint8 crop x crop). The sequence of random draws is fixed, so results depend only on
    ``rng``'s state."""
    img, tgt = random_crop(image, target, crop, rng)
    k = int(rng.integers(8))
    if cfg.flips:
        img, tgt = dihedral(img, k), dihedral(tgt, k)
    img = np.array(img, dtype=np.float32)  # contiguous float32 copy
    tgt = np.ascontiguousarray(tgt, dtype=np.uint8)
    u = rng.random(7)  # always draw the same number of values
    if cfg.gamma > 0:
        g = math.exp((2 * u[0] - 1) * math.log1p(cfg.gamma))
        np.clip(img, 0.0, 1.0, out=img)
        np.power(img, g, out=img)
    scale = 1.0 + (2 * u[1] - 1) * cfg.intensity_scale
    shift = (2 * u[2] - 1) * cfg.intensity_shift
    img *= scale
    img += shift
    if cfg.blur_prob > 0 and u[3] < cfg.blur_prob:
        sigma = 0.3 + u[4] * max(cfg.blur_sigma - 0.3, 0.0)
        img = cv2.GaussianBlur(img, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT_101)
    if cfg.noise_prob > 0 and u[5] < cfg.noise_prob:
        std = u[6] * cfg.noise_std
        noise_rng = np.random.default_rng(rng.integers(2**63))
        img += noise_rng.standard_normal(img.shape, dtype=np.float32) * np.float32(std)
    return img, tgt

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
from ..stain import RGB_FROM_HED

__all__ = ["STAIN_VARIANTS", "AugmentConfig", "augment_labels", "augment_pair", "dihedral",
           "jitter_stains", "random_crop", "scaled_crop"]


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
        scale_min, scale_max: zoom factor ``exp(U(log scale_min, log scale_max))`` applied to
            image and labels before the crop (nuclei appear that many times larger); the
            3-class targets are re-encoded at the new scale. 1.0 / 1.0 disables it.
        stain_jitter: stained images are also read with perturbed stain vectors (each
            component of the H, E and DAB optical-density directions plus ``N(0, s)``, then
            renormalised), so the haematoxylin channel carries another lab's eosin cross-talk;
            :data:`STAIN_VARIANTS` readings per image are drawn from (0: off).
    """

    flips: bool = True
    intensity_scale: float = 0.2
    intensity_shift: float = 0.1
    gamma: float = 0.5
    blur_prob: float = 0.2
    blur_sigma: float = 1.5
    noise_prob: float = 0.3
    noise_std: float = 0.05
    scale_min: float = 1.0
    scale_max: float = 1.0
    stain_jitter: float = 0.0

    @property
    def rescales(self) -> bool:
        return (self.scale_min, self.scale_max) != (1.0, 1.0)

    def __post_init__(self) -> None:
        if not (isinstance(self.scale_min, (int, float)) and isinstance(self.scale_max, (int, float))
                and 0.1 <= self.scale_min <= self.scale_max <= 10.0):
            raise InputError(f"AugmentConfig needs 0.1 <= scale_min <= scale_max <= 10, got "
                             f"scale_min={self.scale_min!r}, scale_max={self.scale_max!r}; e.g. "
                             "0.4 and 2.5 (1.0 and 1.0: off).")
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name.startswith("scale_"):
                continue
            if f.name == "flips":
                if not isinstance(v, bool):
                    raise InputError(f"AugmentConfig.flips must be true/false, got {v!r}")
                continue
            hi = (1.0 if f.name.endswith("prob") or f.name == "intensity_scale" else
                  0.5 if f.name == "stain_jitter" else 10.0)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= hi:
                raise InputError(f"AugmentConfig.{f.name} must be a number in [0, {hi}], got {v!r}")




STAIN_VARIANTS = 4  # perturbed stain readings kept per stained training image (besides the plain one)


def jitter_stains(sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Stain vectors (3 x 3, rows H, E, DAB) near :data:`edgeseg.stain.RGB_FROM_HED`: each
    component plus ``N(0, sigma)``, kept >= 0.01 (optical density is never negative)."""
    m = RGB_FROM_HED + rng.normal(0.0, sigma, size=(3, 3))
    return np.maximum(m, 0.01)


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
    return _photometric(img, cfg, rng), tgt


def _photometric(img: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """Gamma, intensity scale/shift, blur and noise (in place on a float32 copy)."""
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
    return img


def scaled_crop(image: np.ndarray, labels: np.ndarray, size: int, scale: float,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A ``size x size`` crop of the image zoomed by ``scale`` (area / linear interpolation for
    the image, nearest for the labels). The source window is ``size / scale`` px at a uniform
    position; where the image is smaller, it is zero-padded (not reflected: mirrored nuclei
    would share an id)."""
    h, w = image.shape
    win = max(int(round(size / scale)), 2)
    ph, pw = max(win - h, 0), max(win - w, 0)
    if ph or pw:
        top, left = int(rng.integers(ph + 1)), int(rng.integers(pw + 1))
        pads = (top, ph - top, left, pw - left)
        image = cv2.copyMakeBorder(np.asarray(image, np.float32), *pads, cv2.BORDER_CONSTANT,
                                   value=0)
        labels = cv2.copyMakeBorder(np.asarray(labels, np.int32), *pads, cv2.BORDER_CONSTANT,
                                    value=0)
        h, w = image.shape
    y = int(rng.integers(h - win + 1))
    x = int(rng.integers(w - win + 1))
    img = np.asarray(image[y:y + win, x:x + win], np.float32)
    lab = np.ascontiguousarray(labels[y:y + win, x:x + win], np.int32)
    interp = cv2.INTER_AREA if win > size else cv2.INTER_LINEAR
    img = cv2.resize(img, (size, size), interpolation=interp)
    lab = cv2.resize(lab.astype(np.float32), (size, size), interpolation=cv2.INTER_NEAREST)
    return img, lab.astype(np.int32)


def augment_labels(image: np.ndarray, labels: np.ndarray, crop: int, cfg: AugmentConfig,
                   rng: np.random.Generator, encode_fn) -> tuple[np.ndarray, np.ndarray]:
    """Like :func:`augment_pair` with scale augmentation: zoom + crop the image and its instance
    labels, then ``encode_fn(labels)`` gives the 3-class target at the new scale."""
    s = math.exp(rng.uniform(math.log(cfg.scale_min), math.log(cfg.scale_max)))
    img, lab = scaled_crop(image, labels, crop, s, rng)
    k = int(rng.integers(8))
    if cfg.flips:
        img, lab = dihedral(img, k), dihedral(lab, k)
    img = np.array(img, dtype=np.float32)
    tgt = np.ascontiguousarray(encode_fn(np.ascontiguousarray(lab)), dtype=np.uint8)
    return _photometric(img, cfg, rng), tgt

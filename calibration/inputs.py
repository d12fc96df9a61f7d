"""Calibration inputs: training images made into network inputs by the runtime's own preprocessing.

Each calibration input is one image, converted to grey, normalised with the model's
:class:`~edgeseg.data.NormConfig` (exactly as :class:`~edgeseg.Segmenter` does), reflected up to
at least the calibration shape and centre-cropped to it, so every batch has one fixed shape.
Validation images of the model (as its model card lists them) are never used.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any, Iterable, Sequence, Union

import numpy as np

from edgeseg.data import NormConfig, Sample, load_dataset, normalize, to_grey
from edgeseg.errors import DataError, InputError
from edgeseg.tiling import pad_to_multiple

__all__ = ["calibration_inputs", "MIN_IMAGES", "WARN_IMAGES"]

log = logging.getLogger(__name__)

MIN_IMAGES = 4  # fewer is an error: the ranges would describe a handful of pixels
WARN_IMAGES = 32  # fewer is allowed, with a warning

ImagesLike = Union[str, Path, Sequence[Union[str, Path, np.ndarray, Sample]]]


def _select(images: ImagesLike, exclude: set[str], num_images: int, seed: int) -> list[tuple[str, Any]]:
    """(id, loader) pairs: a dataset folder, a list of paths, of Samples or of arrays."""
    if isinstance(images, (str, Path)):
        samples = load_dataset(images)
        items = [(s.id, s) for s in samples]
    elif isinstance(images, np.ndarray):
        raise InputError("images must be a dataset folder or a list of images, got a single array; "
                         "wrap it in a list")
    else:
        items = []
        for k, im in enumerate(images):
            if isinstance(im, Sample):
                items.append((im.id, im))
            elif isinstance(im, (str, Path)):
                items.append((Path(im).stem, Path(im)))
            elif isinstance(im, np.ndarray):
                items.append((f"array{k}", im))
            else:
                raise InputError(f"calibration image {k} is a {type(im).__name__}; expected a path, a "
                                 "numpy array or an edgeseg.data.Sample")
    held_out = [i for i, _ in items if i in exclude]
    if held_out:
        log.info("calibration: leaving out %d validation images of the model", len(held_out))
    items = [(i, x) for i, x in items if i not in exclude]
    if len(items) > num_images:
        # a seeded, order-independent choice: rank by a hash of (seed, id)
        items.sort(key=lambda t: hashlib.sha256(f"{seed}:{t[0]}".encode()).hexdigest())
        items = sorted(items[:num_images], key=lambda t: t[0])
    return items


def _load(x: Any) -> np.ndarray:
    from edgeseg.imageio import read_image_raw

    if isinstance(x, Sample):
        return x.image()
    if isinstance(x, Path):
        return read_image_raw(x)
    return x


def calibration_inputs(images: ImagesLike, norm: NormConfig, *, shape: int, multiple: int,
                       num_images: int, exclude: Iterable[str] = (), seed: int = 0
                       ) -> tuple[list[str], list[np.ndarray]]:
    """(ids, inputs): up to ``num_images`` network inputs of shape 1 x 1 x shape x shape.

    Raises:
        DataError: no usable image, or fewer than :data:`MIN_IMAGES`.
    """
    if shape % multiple:
        raise InputError(f"calibration shape {shape} must be a multiple of the network multiple {multiple}")
    if num_images < 1:
        raise InputError(f"num_images must be >= 1, got {num_images}")
    items = _select(images, set(exclude), num_images, seed)
    if len(items) < MIN_IMAGES:
        raise DataError(f"calibration needs at least {MIN_IMAGES} training images, got {len(items)} "
                        "(after leaving out the model's validation images); pass a folder of training "
                        "images with --calib-data")
    if len(items) < WARN_IMAGES:
        log.warning("calibrating on only %d images: INT8 ranges may not cover your data; %d or more "
                    "is recommended", len(items), WARN_IMAGES)
    ids, inputs = [], []
    for i, x in items:
        x, _ = normalize(to_grey(_load(x)), norm)
        x = pad_to_multiple(x, multiple, min_size=shape)
        h, w = x.shape
        y0, x0 = (h - shape) // 2, (w - shape) // 2
        inputs.append(np.ascontiguousarray(x[y0:y0 + shape, x0:x0 + shape])[None, None])
        ids.append(i)
    return ids, inputs

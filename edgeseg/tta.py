"""Test-time augmentation: class probabilities averaged over the 8 dihedral transforms.

Each flip / 90-degree rotation of the normalised frame goes through the network, its
probabilities are transformed back and the 8 are averaged. The usual DSB2018 gain is +0.01-0.03
for 8x the network time: an option for offline analysis (``Segmenter(tta=True)``, ``--tta``),
off by default and not meant for live use.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = ["average_dihedral", "dihedral", "undo_dihedral"]


def dihedral(a: np.ndarray, k: int) -> np.ndarray:
    """Transform ``k`` (0..7) of the last two axes: rot90 ``k % 4``, then a flip if ``k >= 4``."""
    a = np.rot90(a, k % 4, axes=(-2, -1))
    return a[..., ::-1] if k >= 4 else a


def undo_dihedral(a: np.ndarray, k: int) -> np.ndarray:
    """The inverse of :func:`dihedral` ``k``."""
    if k >= 4:
        a = a[..., ::-1]
    return np.rot90(a, -(k % 4), axes=(-2, -1))


def average_dihedral(image: np.ndarray,
                     probabilities: Callable[[np.ndarray], tuple[np.ndarray, int]]
                     ) -> tuple[np.ndarray, int]:
    """Mean of ``undo(probabilities(dihedral(image, k)))`` over k = 0..7, and the tile count of
    one pass. ``probabilities`` maps an H x W frame to (C x H x W, tiles)."""
    total, tiles = probabilities(np.ascontiguousarray(image))
    total = total.astype(np.float32, copy=True)
    for k in range(1, 8):
        p, _ = probabilities(np.ascontiguousarray(dihedral(image, k)))
        total += undo_dihedral(p, k)
    total /= 8.0
    return np.ascontiguousarray(total), tiles

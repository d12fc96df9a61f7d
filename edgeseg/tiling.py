"""Padding to the network multiple, and overlapping tiles blended without seams.

Large frames go through the network as overlapping tiles, in batches. Each tile's
probabilities are weighted by a window that is ~0 over the outer half of the overlap and ramps
to 1 over the inner half, normalised so that the weights of the tiles covering a pixel sum to 1:
every pixel is a smooth blend of the tiles that saw it with enough context, and no tile edge
shows. Tiles follow the frame: a side shorter than the tile size is padded to the network
multiple only (a 16 x 5000 strip goes through as 16 x 1024 tiles, not 1024 x 1024 ones).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import cv2
import numpy as np

from .errors import InputError

__all__ = ["pad_to_multiple", "TileGrid", "tile_grid", "run_tiled", "row_blocks"]


def pad_to_multiple(image: np.ndarray, multiple: int, min_size: int = 0) -> np.ndarray:
    """Pad an H x W float32 image at the bottom/right by reflection to multiples of ``multiple``."""
    h, w = image.shape
    ph = max(-(-h // multiple) * multiple, min_size) - h
    pw = max(-(-w // multiple) * multiple, min_size) - w
    if ph == 0 and pw == 0:
        return image
    if ph >= h or pw >= w:
        # OpenCV reflects only pads shorter than the image; numpy repeats the reflection
        return np.pad(image, ((0, ph), (0, pw)), mode="symmetric")
    return cv2.copyMakeBorder(image, 0, ph, 0, pw, cv2.BORDER_REFLECT)


def row_blocks(height: int, width: int, pixels: int = 1 << 20) -> Iterator[slice]:
    """Row slices of about ``pixels`` pixels covering an H x W image: whole-frame numpy steps
    that make large temporaries (int64 indices, float64 values) run a block at a time."""
    step = max(1, pixels // max(width, 1))
    for y in range(0, height, step):
        yield slice(y, min(y + step, height))


def _window(size: int, overlap: int) -> np.ndarray:
    """1-D blending weights of a tile.

    Near the tile edge the network lacks context (its receptive field reaches past the tile), so
    the outer half of the overlap gets (almost) no weight and the inner half ramps linearly up to
    1. With overlap >= the distance over which edge effects reach, tiled probabilities match the
    whole-frame ones (tests: DSB 1.0 between them on the largest DSB2018 images, overlap 128).
    A floor of 1e-3 keeps pixels that only one tile sees (at the frame border) well defined.
    """
    if overlap <= 0:
        return np.ones(size, np.float32)
    x = np.arange(size, dtype=np.float32) + 0.5
    edge = np.minimum(x, size - x)
    margin = overlap / 2
    ramp = np.clip((edge - margin) / (overlap - margin), 0.0, 1.0)
    return np.maximum(ramp, 1e-3).astype(np.float32)


@dataclass(frozen=True)
class TileGrid:
    """Tiles with at least ``overlap`` px overlap covering an H x W image.

    Tiles are ``tile`` px along a side longer than ``tile``; a side of ``tile`` px or less is
    covered by one tile of its own length (:attr:`tile_shape`), so a narrow frame is not
    reflected up to a full square tile.
    """

    height: int
    width: int
    tile: int
    overlap: int

    def __post_init__(self) -> None:
        if self.tile <= 0 or self.overlap < 0 or self.overlap * 2 >= self.tile:
            raise InputError(f"tiling needs tile > 2 * overlap >= 0, got tile={self.tile}, "
                             f"overlap={self.overlap}")

    @property
    def tile_shape(self) -> tuple[int, int]:
        """(tile height, tile width): ``tile``, or the image side where that is shorter."""
        return min(self.tile, self.height), min(self.tile, self.width)

    @staticmethod
    def _starts(length: int, tile: int, overlap: int) -> list[int]:
        if length <= tile:
            return [0]
        stride = tile - overlap
        n = -(-(length - tile) // stride) + 1
        # spread the tiles evenly so the last one ends exactly at the image edge
        return [round(i * (length - tile) / (n - 1)) for i in range(n)]

    def starts(self) -> tuple[list[int], list[int]]:
        """Top rows and left columns of the tiles (every combination is one tile)."""
        return (self._starts(self.height, self.tile, self.overlap),
                self._starts(self.width, self.tile, self.overlap))

    def boxes(self) -> Iterator[tuple[int, int]]:
        ys, xs = self.starts()
        for y in ys:
            for x in xs:
                yield y, x

    def __len__(self) -> int:
        ys, xs = self.starts()
        return len(ys) * len(xs)


def _padded(length: int, multiple: int, min_size: int) -> int:
    return max(-(-length // multiple) * multiple, min_size)


def tile_grid(height: int, width: int, *, multiple: int, tile: int, overlap: int,
              min_size: int = 0) -> TileGrid:
    """The tiles :func:`run_tiled` uses for an H x W image: the image padded to the network
    multiple (and to ``min_size``, e.g. a TensorRT profile's smallest side), not to ``tile``."""
    return TileGrid(_padded(height, multiple, min_size), _padded(width, multiple, min_size),
                    tile, overlap)


def _axis_weights(starts: list[int], size: int, length: int, overlap: int) -> np.ndarray:
    """Per-tile 1-D blending weights along one axis, divided by their sum over the tiles.

    Row ``i`` holds the weights of the tile starting at ``starts[i]``. The 2-D weight of a tile
    is the outer product of its row and column weights, and the tiles form a product grid, so
    the 2-D weights of all tiles at a pixel sum to 1: no weight map, no division afterwards.
    One tile along the axis gets weight 1 (nothing to blend).
    """
    if len(starts) == 1:
        return np.ones((1, size), np.float32)
    win = _window(size, overlap)
    total = np.zeros(length, np.float32)
    for s in starts:
        total[s:s + size] += win
    return np.stack([win / total[s:s + size] for s in starts]).astype(np.float32)


def _reflect_index(start: int, size: int, length: int) -> np.ndarray:
    """Indices ``start .. start+size-1`` of an axis of ``length`` px, mirrored past the end the
    way :func:`pad_to_multiple` pads (symmetric, repeating for pads longer than the axis)."""
    i = np.arange(start, start + size) % (2 * length)
    return np.where(i < length, i, 2 * length - 1 - i)


def _crop(image: np.ndarray, y: int, x: int, th: int, tw: int) -> np.ndarray:
    """The ``th`` x ``tw`` tile at (y, x) of ``image`` padded as :func:`pad_to_multiple` pads it,
    without padding (copying) the whole image."""
    h, w = image.shape
    if y + th <= h and x + tw <= w:
        return image[y:y + th, x:x + tw]
    return image[np.ix_(_reflect_index(y, th, h), _reflect_index(x, tw, w))]


def run_tiled(
    image: np.ndarray,
    infer: Callable[[np.ndarray], np.ndarray],
    *,
    classes: int,
    multiple: int,
    tile: int,
    overlap: int,
    batch_size: int = 4,
    min_size: int = 0,
) -> np.ndarray:
    """Probabilities (C x H x W float32) of a normalised H x W image, through overlapping tiles.

    ``tile`` must be a multiple of ``multiple``. A side longer than ``tile`` is cut into
    ``tile``-px tiles; a shorter side is padded (by reflection) to the network multiple and to
    ``min_size`` only, so all tiles share one shape (one network shape, one batch) and a narrow
    frame costs what its pixels cost.

    Memory: besides the image and the C x H x W result, only one batch of tiles. The blended
    probabilities are accumulated straight into the result (pre-normalised separable weights,
    see :func:`_axis_weights`); edge tiles are padded one by one, the image never as a whole.
    """
    if tile % multiple:
        raise InputError(f"tile size {tile} must be a multiple of the network multiple {multiple}")
    h, w = image.shape
    grid = tile_grid(h, w, multiple=multiple, tile=tile, overlap=overlap, min_size=min_size)
    th, tw = grid.tile_shape
    ys, xs = grid.starts()
    wy = _axis_weights(ys, th, grid.height, overlap)
    wx = _axis_weights(xs, tw, grid.width, overlap)
    out = np.zeros((classes, h, w), np.float32)
    boxes = [(i, j) for i in range(len(ys)) for j in range(len(xs))]
    for k in range(0, len(boxes), batch_size):
        chunk = boxes[k:k + batch_size]
        batch = np.stack([_crop(image, ys[i], xs[j], th, tw) for i, j in chunk])[:, None]
        probs = infer(batch)
        for (i, j), p in zip(chunk, probs):
            y, x = ys[i], xs[j]
            hh, ww = min(th, h - y), min(tw, w - x)  # the part of the tile inside the image
            if hh <= 0 or ww <= 0:
                continue
            weight = wy[i, :hh, None] * wx[j, None, :ww]
            view = out[:, y:y + hh, x:x + ww]
            view += p[:, :hh, :ww] * weight
    return out

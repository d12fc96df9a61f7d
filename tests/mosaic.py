"""A mosaic of real DSB2018 fluorescence images (the Dask tests' large array)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def fluorescence_mosaic(root: Path, side: int, offset: int = 128) -> np.ndarray:
    """``side`` x ``side`` uint8 mosaic of real 256 x 256 grey DSB2018 images (sorted ids,
    dark-background ones only, repeated if the side needs more), cropped at ``offset`` px so that
    chunk seams at multiples of 256 fall inside images, through their nuclei."""
    from edgeseg.data import image_kind, read_image_raw, to_grey

    manifest = json.loads((root / "manifest.json").read_text())
    ids = sorted(m["id"] for m in manifest if (m["h"], m["w"]) == (256, 256) and m["grey"])
    tiles = []
    for i in ids:
        raw = read_image_raw(root / "images" / f"{i}.png")
        if image_kind(raw) == "fluorescence":
            tiles.append(to_grey(raw).astype(np.uint8))
        if len(tiles) == 64:
            break
    n = -(-(side + offset) // 256)
    grid = [[tiles[(r * n + c) % len(tiles)] for c in range(n)] for r in range(n)]
    return np.ascontiguousarray(np.block(grid)[offset:offset + side, offset:offset + side])

#!/usr/bin/env python3
"""Pack a labelled dataset small enough to travel to the GPU machine (64 MiB in all there).

    .venv/bin/python scripts/pack_data.py ../shared/data/dsb2018/stage1_train .gpu/dsb2018

Writes DST/images/<id>.png and DST/labels/<id>.png (layout A, which ``edgeseg.data.load_dataset``
reads): alpha channels dropped, grey images stored as one channel (only when R = G = B exactly,
so nothing changes), PNG compression 9; labels copied as they are. Every packed image is read
back and checked against the original (same pixels after the alpha and grey reduction, same image
kind). DSB2018 stage1_train: 68 MB -> 49 MB. DST must not exist (nothing is written over);
the pack is written to DST.partial and renamed at the end.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def reduce(image):
    """The image without its alpha channel, one channel when it is exactly grey."""
    import numpy as np

    if image.ndim == 3 and image.shape[2] == 4:
        image = image[..., :3]
    if image.ndim == 3 and np.array_equal(image[..., 0], image[..., 1]) \
            and np.array_equal(image[..., 1], image[..., 2]):
        image = np.ascontiguousarray(image[..., 0])
    return image


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path, help="dataset folder (any layout load_dataset reads)")
    ap.add_argument("dst", type=Path, help="new folder for the pack")
    args = ap.parse_args(argv)

    import cv2
    import numpy as np

    from edgeseg.data import image_kind, load_dataset
    from edgeseg.imageio import read_image_raw, read_labels

    if args.dst.exists():
        print(f"pack_data: {args.dst} exists; name a new folder (nothing is written over)",
              file=sys.stderr)
        return 1
    samples = [s for s in load_dataset(args.src) if s.has_labels]
    if not samples:
        print(f"pack_data: no labelled images in {args.src}", file=sys.stderr)
        return 1
    tmp = args.dst.with_name(args.dst.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "images").mkdir(parents=True)
    (tmp / "labels").mkdir()
    for s in samples:
        image = s.image()
        packed = reduce(image)
        path = tmp / "images" / f"{s.id}.png"
        if not cv2.imwrite(str(path), packed[..., ::-1] if packed.ndim == 3 else packed,
                           [cv2.IMWRITE_PNG_COMPRESSION, 9]):
            raise SystemExit(f"pack_data: could not write {path}")
        back = read_image_raw(path)  # as every edgeseg reader sees it
        if not np.array_equal(back, packed) or image_kind(back) != image_kind(image):
            raise SystemExit(f"pack_data: {s.id} does not read back as it was packed")
        labels = s.labels()
        if labels.max() > np.iinfo(np.uint16).max:
            raise SystemExit(f"pack_data: {s.id} has more than 65535 nuclei (16-bit PNG labels)")
        cv2.imwrite(str(tmp / "labels" / f"{s.id}.png"), labels.astype(np.uint16),
                    [cv2.IMWRITE_PNG_COMPRESSION, 9])
        if not np.array_equal(read_labels(tmp / "labels" / f"{s.id}.png"), labels):
            raise SystemExit(f"pack_data: the labels of {s.id} do not read back as they were")
    tmp.rename(args.dst)
    size = sum(p.stat().st_size for p in args.dst.rglob("*") if p.is_file())
    print(f"packed {len(samples)} images into {args.dst} ({size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

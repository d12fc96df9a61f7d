"""``edgeseg predict``: label TIFF, overlay PNG and instance CSV for each image."""

from __future__ import annotations

import argparse
import csv
import io
import time
from pathlib import Path

from ._common import add_model_options, expand_images, make_segmenter, progress

DESCRIPTION = "segment images: a 16-bit label TIFF, an overlay PNG and an instance CSV per image"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help=DESCRIPTION, description=DESCRIPTION)
    p.add_argument("images", nargs="+", help="image files or folders of images")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--no-overlay", action="store_true", help="skip the overlay PNGs")
    add_model_options(p)
    p.set_defaults(run=run)


def write_outputs(out: Path, stem: str, raw, result, overlay: bool = True) -> None:
    """Write ``<stem>_labels.tif``, ``<stem>_instances.csv`` and ``<stem>_overlay.png`` atomically."""
    import cv2
    import numpy as np

    from .._atomic import atomic_write_bytes, atomic_write_text
    from ..errors import EdgesegError
    from ..viz import overlay as draw

    labels = result.labels
    if labels.max() <= np.iinfo(np.uint16).max:
        ok, tif = cv2.imencode(".tif", labels.astype(np.uint16))
        if not ok:
            raise EdgesegError(f"OpenCV could not encode the label TIFF for {stem}")
        atomic_write_bytes(out / f"{stem}_labels.tif", tif.tobytes())
    else:  # more ids than 16 bits hold: 32-bit TIFF through tifffile
        try:
            import tifffile
        except ImportError:
            raise EdgesegError(f"{stem} has {labels.max()} instances, more than a 16-bit TIFF holds; "
                               "install tifffile to write 32-bit label TIFFs") from None
        buf = io.BytesIO()
        tifffile.imwrite(buf, labels.astype(np.uint32))
        atomic_write_bytes(out / f"{stem}_labels.tif", buf.getvalue())
    rows = result.instances.rows()
    text = io.StringIO()
    cols = ["id", "area", "centroid_y", "centroid_x", "y0", "x0", "y1", "x1", "intensity", "score"]
    writer = csv.DictWriter(text, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()})
    atomic_write_text(out / f"{stem}_instances.csv", text.getvalue())
    if overlay:
        ok, png = cv2.imencode(".png", cv2.cvtColor(draw(raw, labels), cv2.COLOR_RGB2BGR))
        atomic_write_bytes(out / f"{stem}_overlay.png", png.tobytes())


def run(args: argparse.Namespace) -> int:
    from ..segmenter import segment_files
    from ._paths import check_writable

    out = check_writable(args.out, folder=True, option="-o/--out")
    paths = expand_images(args.images)
    seg = make_segmenter(args)
    out.mkdir(parents=True, exist_ok=True)
    total, t0 = 0, time.perf_counter()
    stems: dict[str, int] = {}
    for path, raw, result in progress(segment_files(seg, paths), args.progress, total=len(paths),
                                      unit="image", desc="predict"):
        stem = path.stem if path.stem not in stems else f"{path.stem}_{stems[path.stem]}"
        stems[path.stem] = stems.get(path.stem, 0) + 1
        write_outputs(out, stem, raw, result, overlay=not args.no_overlay)
        total += result.count
    wall = time.perf_counter() - t0
    print(f"edgeseg predict: {len(paths)} images, {total} nuclei, {wall:.1f} s "
          f"({len(paths) / wall:.2f} images/s) with {seg.backend}/{seg.device}/{seg.precision}; wrote {out}/")
    return 0

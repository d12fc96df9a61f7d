"""``edgeseg predict``: label TIFF, overlay PNG and instance CSV for each image.

Output names keep the input's full file name, extension included: ``OUT/a.png`` gives
``OUT/a.png.labels.tif``, ``OUT/a.png.instances.csv`` and ``OUT/a.png.overlay.png``. Files of one
folder have distinct names, so their outputs cannot collide, and a name depends on nothing but
the input's name (stable across runs). Inputs from different folders that share a file name, or
outputs that would land on an input, are refused before any work.

A file that cannot be read or segmented is reported and skipped; the others are still written and
the exit status is 1 with the list of failures (``--fail-fast``: stop at the first one). Images
whose outputs all exist already (each is written atomically) are skipped unless ``--overwrite``.

The label image is an OME-TIFF (tiled, zlib-compressed, :mod:`edgeseg.ometiff`) that carries the
pixel size in µm: the one the input records (OME-TIFF, ImageJ TIFF), else ``--pixel-size``. With a
pixel size the CSV gains ``area_um2`` and ``diameter_um`` (of the circle of the same area).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import sys
import time
from pathlib import Path

from ._common import add_model_options, expand_images, make_segmenter, progress

DESCRIPTION = "segment images: a 16-bit label OME-TIFF, an overlay PNG and an instance CSV per image"
EPILOG = """outputs: OUT/<image file name>.labels.tif, .instances.csv, .overlay.png (a.png -> a.png.labels.tif).
A bad image is reported and skipped (exit status 1 at the end); images with all outputs present
are skipped unless --overwrite. The label OME-TIFF carries the pixel size (µm) the input records,
else --pixel-size; with one, the CSV has area_um2 and diameter_um and --diameter may be in µm (7um).
"""
OUTPUT_KINDS = ("labels.tif", "instances.csv", "overlay.png")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help=DESCRIPTION, description=DESCRIPTION, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="+", help="image files or folders of images")
    p.add_argument("-o", "--out", required=True, help="output folder")
    p.add_argument("--no-overlay", action="store_true", help="skip the overlay PNGs")
    p.add_argument("--overwrite", action="store_true",
                   help="segment images again even when all their outputs exist (default: skip them)")
    p.add_argument("--fail-fast", action="store_true",
                   help="stop at the first image that cannot be read or segmented (default: report it, go on)")
    add_model_options(p)
    p.add_argument("--max-pixels", type=_max_pixels, default=None, metavar="N",
                   help="refuse images over N pixels before decoding them (default 2**28 = "
                        "268435456, about 6 GB of memory to segment; 0: no limit)")
    p.add_argument("--pixel-size", type=_pixel_size, default=None, metavar="UM",
                   help="µm per pixel of images whose file records none (OME-TIFF and ImageJ TIFF "
                        "sizes are used as recorded): written to the label OME-TIFF, gives the CSV "
                        "area_um2/diameter_um and lets --diameter be in µm")
    _add_dask_options(p)
    p.set_defaults(run=run)


def _add_dask_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("Dask (pip install 'edgeseg[dask]'; see edgeseg/commands/_predict_dask.py)")
    g.add_argument("--dask", metavar="SCHEDULER", default=None,
                   help="run on Dask: local:N (a local cluster of N workers) or a scheduler address "
                        "(tcp://host:8786); .zarr folders and large TIFFs become OME-Zarr labels")
    g.add_argument("--chunk", type=int, default=1024, metavar="PX",
                   help="with --dask: chunk side for arrays segmented chunk by chunk (default %(default)s)")
    g.add_argument("--large-pixels", type=_max_pixels, default=None, metavar="N",
                   help="with --dask: TIFFs over N pixels are segmented chunk by chunk into OME-Zarr "
                        "(default 2**26 = 8192 x 8192)")


def _pixel_size(text: str):
    from ..errors import InputError
    from ..units import as_pixel_size

    try:
        return as_pixel_size(text, "--pixel-size")
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _max_pixels(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a pixel count >= 0 (0: no limit), got {text!r}")
    return value


def output_paths(out: Path, image: Path, overlay: bool = True) -> dict[str, Path]:
    """``{kind: path}`` of the outputs of ``image``: ``out / f"{image.name}.{kind}"``."""
    kinds = OUTPUT_KINDS if overlay else OUTPUT_KINDS[:2]
    return {kind: out / f"{image.name}.{kind}" for kind in kinds}


def plan_outputs(paths: list[Path], out: Path, overlay: bool = True) -> list[tuple[Path, dict[str, Path]]]:
    """Each distinct input with its output paths; DataError on a name clash or an output on an input."""
    from ..errors import DataError

    seen: dict[Path, Path] = {}
    by_name: dict[str, Path] = {}
    plan = []
    for p in paths:
        key = p.resolve()
        if key in seen:  # the same file given twice (a folder and a file in it): once is enough
            continue
        seen[key] = p
        if p.name in by_name:
            raise DataError(f"{by_name[p.name]} and {p} share the file name {p.name!r}, so their outputs "
                            f"would share names in {out}; run them with separate -o folders (or rename one)")
        by_name[p.name] = p
        plan.append((p, output_paths(out, p, overlay)))
    for p, outs in plan:
        for q in outs.values():
            if q.resolve() in seen:
                raise DataError(f"the output {q} of {p} would overwrite the input {seen[q.resolve()]}; "
                                "choose another -o folder")
    return plan


def write_outputs(outs: dict[str, Path], raw, result) -> None:
    """Write the outputs named in ``outs`` (see :func:`output_paths`), each atomically."""
    import math

    import cv2

    from .._atomic import atomic_write_bytes, atomic_write_text
    from ..errors import EdgesegError
    from ..ometiff import encode_labels
    from ..viz import overlay as draw

    labels, px = result.labels, result.pixel_size
    name = outs["labels.tif"].name[:-len(".labels.tif")]
    atomic_write_bytes(outs["labels.tif"], encode_labels(labels, px, name=name))
    rows = result.instances.rows()
    text = io.StringIO()
    cols = ["id", "area", "centroid_y", "centroid_x", "y0", "x0", "y1", "x1", "intensity", "score"]
    if px is not None:  # µm² of the pixels; µm of the diameter of the circle of that area
        cols += ["area_um2", "diameter_um"]
        for r in rows:
            r["area_um2"] = r["area"] * px.area
            r["diameter_um"] = math.sqrt(4.0 * r["area"] / math.pi) * px.length
    writer = csv.DictWriter(text, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()})
    atomic_write_text(outs["instances.csv"], text.getvalue())
    if "overlay.png" in outs:
        ok, png = cv2.imencode(".png", cv2.cvtColor(draw(raw, labels), cv2.COLOR_RGB2BGR))
        if not ok:
            raise EdgesegError(f"OpenCV could not encode the overlay PNG {outs['overlay.png']}")
        atomic_write_bytes(outs["overlay.png"], png.tobytes())


def _loader(path: Path, max_pixels: int | None):
    """A callable reading ``path`` as :func:`edgeseg.segmenter.segment_files` does (in the stream)."""
    def load():
        import numpy as np

        from ..imageio import DEFAULT_MAX_PIXELS, read_image_raw
        from ..segmenter import _DTYPES

        raw = read_image_raw(path, DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels)
        return raw if raw.dtype in _DTYPES else raw.astype(np.float32)
    return load


def _streamed(seg, todo, args):
    """(raw, result or the exception) per file, in order: reading, inference and post-processing
    overlap (Segmenter.stream); one image per queue keeps a few images in flight at most. The
    pixel size a file records (else --pixel-size) is attached for the OME-TIFF and the CSV."""
    from dataclasses import replace

    from ..imageio import read_pixel_size
    from ..segmenter import choose_pixel_size
    from ..units import as_pixel_size

    fallback = as_pixel_size(args.pixel_size)
    frames = seg.stream((_loader(p, args.max_pixels) for p, _ in todo), queue_size=1,
                        keep_errors=True, with_frames=True)
    with frames:
        for (path, _), (raw, result) in zip(todo, frames):
            px = None if isinstance(result, BaseException) else \
                choose_pixel_size(path, read_pixel_size(path), fallback)
            yield raw, (result if px is None else replace(result, pixel_size=px))


def _serial(seg, todo, args):
    """As :func:`_streamed`, one file after the other (diameters in µm need each file's pixel size
    before its network pass)."""
    from ..errors import EdgesegError
    from ..segmenter import segment_files

    for path, _ in todo:
        try:
            _, raw, result = next(iter(segment_files(seg, [path], max_pixels=args.max_pixels,
                                                     pixel_size=args.pixel_size)))
        except (EdgesegError, OSError) as exc:
            raw, result = None, exc
        yield raw, result


def run(args: argparse.Namespace) -> int:
    if getattr(args, "dask", None):
        from ._predict_dask import run_dask
        return run_dask(args)
    from ._paths import check_writable

    out = check_writable(args.out, folder=True, option="-o/--out")
    plan = plan_outputs(expand_images(args.images), out, overlay=not args.no_overlay)
    todo = plan if args.overwrite else [(p, o) for p, o in plan if not all(q.is_file() for q in o.values())]
    skipped = len(plan) - len(todo)
    if not todo:
        print(f"edgeseg predict: nothing to do, all {len(plan)} images have their outputs in {out}/ "
              "(--overwrite to segment them again)")
        return 0
    seg = make_segmenter(args)
    out.mkdir(parents=True, exist_ok=True)
    total, done, failed, t0 = 0, 0, [], time.perf_counter()
    bar = progress(todo, args.progress, total=len(todo), unit="image", desc="predict")
    say = getattr(bar, "write", None) or print  # tqdm.write keeps the progress bar intact
    if seg.diameter_um is not None:  # µm: each file's own pixel size turns it into px
        results = _serial(seg, todo, args)
    else:
        results = _streamed(seg, todo, args)
    with contextlib.closing(results):
        for (path, outs), (raw, result) in zip(bar, results):  # the bar counts finished images
            if isinstance(result, BaseException):
                if args.fail_fast:
                    raise result
                failed.append(path)
                say(f"edgeseg predict: {path} failed (going on with the others): {result}", file=sys.stderr)
                continue
            write_outputs(outs, raw, result)
            total += result.count
            done += 1
    wall = time.perf_counter() - t0
    rate = f" ({done / wall:.2f} images/s)" if done and wall > 0 else ""
    return report(f"{done} of {len(plan)} images segmented", len(plan), skipped, failed,
                  f"{total} nuclei, {wall:.1f} s{rate} with {seg.backend}/{seg.device}/{seg.precision}; wrote {out}/")


def report(head: str, total: int, skipped: int, failed: list, tail: str) -> int:
    """The closing line of a predict run; DataError (exit 1) naming the failed images, if any."""
    from ..errors import DataError

    notes = [f"{skipped} skipped (all outputs exist; --overwrite to redo them)"] if skipped else []
    notes += [f"{len(failed)} failed"] if failed else []
    print(f"edgeseg predict: {head}{', ' if notes else ''}{', '.join(notes)}; {tail}")
    if failed:
        raise DataError(f"{len(failed)} of {total} images could not be segmented: "
                        f"{', '.join(str(p) for p in failed)} (reasons above; the other images have their outputs)")
    return 0

"""``edgeseg predict``: label TIFF, overlay PNG and instance CSV for each image.

Output names keep the input's full file name, extension included: ``OUT/a.png`` gives
``OUT/a.png.labels.tif``, ``OUT/a.png.instances.csv`` and ``OUT/a.png.overlay.png``. Files of one
folder have distinct names, so their outputs cannot collide, and a name depends on nothing but
the input's name (stable across runs). Inputs from different folders that share a file name, or
outputs that would land on an input, are refused before any work.

A file that cannot be read or segmented is reported and skipped; the others are still written and
the exit status is 1 with the list of failures (``--fail-fast``: stop at the first one). Images
whose outputs all exist already (each is written atomically) are skipped unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import time
from pathlib import Path

from ._common import add_model_options, expand_images, make_segmenter, progress

DESCRIPTION = "segment images: a 16-bit label TIFF, an overlay PNG and an instance CSV per image"
EPILOG = """outputs: OUT/<image file name>.labels.tif, .instances.csv, .overlay.png (a.png -> a.png.labels.tif).
A bad image is reported and skipped (exit status 1 at the end); images with all outputs present
are skipped unless --overwrite.
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
    import cv2
    import numpy as np

    from .._atomic import atomic_write_bytes, atomic_write_text
    from ..errors import EdgesegError
    from ..viz import overlay as draw

    labels = result.labels
    if labels.max() <= np.iinfo(np.uint16).max:
        ok, tif = cv2.imencode(".tif", labels.astype(np.uint16))
        if not ok:
            raise EdgesegError(f"OpenCV could not encode the label TIFF {outs['labels.tif']}")
        atomic_write_bytes(outs["labels.tif"], tif.tobytes())
    else:  # more ids than 16 bits hold: 32-bit TIFF through tifffile
        try:
            import tifffile
        except ImportError:
            raise EdgesegError(f"{outs['labels.tif']}: {labels.max()} instances, more than a 16-bit TIFF holds; "
                               "install tifffile to write 32-bit label TIFFs") from None
        buf = io.BytesIO()
        tifffile.imwrite(buf, labels.astype(np.uint32))
        atomic_write_bytes(outs["labels.tif"], buf.getvalue())
    rows = result.instances.rows()
    text = io.StringIO()
    cols = ["id", "area", "centroid_y", "centroid_x", "y0", "x0", "y1", "x1", "intensity", "score"]
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


def run(args: argparse.Namespace) -> int:
    if getattr(args, "dask", None):
        from ._predict_dask import run_dask
        return run_dask(args)
    from ..errors import DataError
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
    # reading, inference and post-processing overlap (Segmenter.stream); a file that fails is
    # handed back in its place (keep_errors) and the others go on. One image per queue: a few
    # images in flight at most (large ones cost memory), enough to keep every stage busy.
    frames = seg.stream((_loader(p, args.max_pixels) for p, _ in todo), queue_size=1, keep_errors=True,
                        with_frames=True)
    with frames:
        for (raw, result), (path, outs) in zip(frames, bar):  # the bar counts finished images
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
    notes = [f"{skipped} skipped (all outputs exist; --overwrite to redo them)"] if skipped else []
    notes += [f"{len(failed)} failed"] if failed else []
    print(f"edgeseg predict: {done} of {len(plan)} images segmented{', ' if notes else ''}{', '.join(notes)}; "
          f"{total} nuclei, {wall:.1f} s{rate} with {seg.backend}/{seg.device}/{seg.precision}; wrote {out}/")
    if failed:
        raise DataError(f"{len(failed)} of {len(plan)} images could not be segmented: "
                        f"{', '.join(str(p) for p in failed)} (reasons above; the other images have their outputs)")
    return 0

"""Helpers shared by the CLI commands (no heavy imports)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Iterable, Sequence


def add_model_options(p: argparse.ArgumentParser, default: str | None = "default") -> None:
    p.add_argument("--model", default=default,
                   help="'default' (bundled), a .pt checkpoint, an .onnx model, a bioimage.io package .zip (its "
                        "ONNX weights) or an .engine (default: %(default)s)")
    p.add_argument("--backend", choices=("torch", "onnxruntime", "tensorrt"), default=None,
                   help="default: follows from the model file")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="never silently replaced: an unavailable device is an error (default: %(default)s)")
    p.add_argument("--tile", type=int, default=None,
                   help="tile frames larger than this (px; default 1024, or the engine profile's maximum)")
    p.add_argument("--diameter", default="auto", metavar="PX|auto|none",
                   help="nucleus diameter in px, or in µm where the pixel size is known (predict: "
                        "e.g. 7um; frames are rescaled to the model's training "
                        "size), 'auto' (estimated per image; live and bench: once per stream), "
                        "or 'none' (frames as they are, fastest; default: %(default)s)")
    p.add_argument("--tta", action="store_true",
                   help="test-time augmentation: average 8 flips/rotations (8x network time)")
    p.add_argument("--seed-threshold", type=float, default=None, help="override the model's seed threshold")
    p.add_argument("--fg-threshold", type=float, default=None, help="override the model's foreground threshold")
    p.add_argument("--min-size", type=int, default=None, help="override the model's minimum instance size (px)")
    p.add_argument("--min-confidence", type=float, default=None,
                   help="override the model's minimum confidence of an instance: the mean of "
                        "P(body) + border weight x P(border) over its pixels (0 keeps all)")
    p.add_argument("--border-weight", type=float, default=None,
                   help="override how much P(border), the touching zone, counts in that confidence "
                        "(0-1; 1: the mean foreground probability)")
    p.add_argument("--precision", choices=("auto",), default=None,
                   help="'auto': time and score the precisions this backend/device runs, use the fastest "
                        "within --max-drop DSB of fp32 (the decision is printed); default: the model's own")
    p.add_argument("--max-drop", type=float, default=0.01,
                   help="with --precision auto: DSB a precision may lose against fp32 (default: %(default)s)")
    add_allocator_option(p, "tuned")


def add_allocator_option(p: argparse.ArgumentParser, default: str) -> None:
    p.add_argument("--allocator", choices=("tuned", "default"), default=default,
                   help="tuned: this process keeps freed memory for reuse (glibc malloc; PyTorch's large "
                        "CPU tensors otherwise page-fault every frame: edgeseg.allocator); default: leave "
                        "malloc as it is (default: %(default)s)")


def apply_allocator(args: argparse.Namespace) -> None:
    """``--allocator tuned``: :func:`edgeseg.allocator.tune_allocator` (logged)."""
    if getattr(args, "allocator", "default") == "tuned":
        from ..allocator import tune_allocator

        tune_allocator()


def make_segmenter(args: argparse.Namespace) -> Any:
    from ..errors import InputError
    from ..segmenter import Segmenter
    from ..units import is_length

    overrides = {k: v for k, v in (("seed_threshold", args.seed_threshold), ("fg_threshold", args.fg_threshold),
                                   ("min_size", args.min_size),
                                   ("min_confidence", getattr(args, "min_confidence", None)),
                                   ("border_weight", getattr(args, "border_weight", None)))
                 if v is not None}
    diameter = getattr(args, "diameter", None)
    diameter = None if diameter in (None, "none") else diameter
    if not hasattr(args, "pixel_size") and is_length(diameter):
        raise InputError(f"--diameter {diameter}: this command takes the diameter in px (µm need the "
                         "pixel size, which `edgeseg predict --pixel-size` has); give it in px")
    apply_allocator(args)
    seg = Segmenter(args.model, backend=args.backend, device=args.device, tile=args.tile,
                    diameter=diameter, tta=bool(getattr(args, "tta", False)),
                    pixel_size=getattr(args, "pixel_size", None),
                    precision=getattr(args, "precision", None),
                    max_drop=getattr(args, "max_drop", 0.01), **overrides)
    if seg.precision_decision is not None:  # precision auto: never a silent choice
        import sys

        print(f"edgeseg: {seg.precision_decision.summary()}", file=sys.stderr)
    return seg


def expand_images(items: Sequence[str]) -> list[Path]:
    """Files as given; folders expanded to the images they hold (sorted)."""
    from ..data import IMAGE_EXTS
    from ..errors import DataError

    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_EXTS and not f.name.startswith("."))
            if not found:
                raise DataError(f"{p} holds no images; expected files ending in {', '.join(IMAGE_EXTS)}")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise DataError(f"image not found: {p}; pass image files or folders of images")
    return out


def progress(iterable: Iterable[Any], enabled: bool, **kw: Any) -> Iterable[Any]:
    if not enabled:
        return iterable
    try:
        from tqdm import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, **kw)

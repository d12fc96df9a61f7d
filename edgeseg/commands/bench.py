"""``edgeseg bench``: frames/s and per-stage milliseconds of a model on this machine."""

from __future__ import annotations

import argparse

from ._common import add_model_options

DESCRIPTION = "measure frames/s and per-stage ms of a model here, on real images at several sizes"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help=DESCRIPTION, description=DESCRIPTION)
    p.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024], help="square frame sizes")
    p.add_argument("--repeat", type=int, default=5, help="timed frames per size (after one warm-up)")
    p.add_argument("--json", default=None, help="write the results here")
    add_model_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from .._atomic import atomic_write_json
    from .._resources import demo_dir
    from ..data import load_dataset
    from ..errors import InputError
    from ._common import make_segmenter
    from ._paths import check_writable

    if any(s < 16 for s in args.sizes) or args.repeat < 1:
        raise InputError(f"sizes must be >= 16 px and repeat >= 1, got {args.sizes} / {args.repeat}")
    if args.json:
        check_writable(args.json, option="--json")
    seg = make_segmenter(args)
    # a real fluorescence image, mirrored to fill each size (real content at every size)
    tile = next(s.image() for s in load_dataset(demo_dir()) if s.image().ndim == 2)
    rows = []
    for size in args.sizes:
        reps = (-(-size // tile.shape[0]), -(-size // tile.shape[1]))
        frame = np.ascontiguousarray(np.tile(tile, reps)[:size, :size])
        seg.segment(frame)  # warm-up
        timings = [seg.segment(frame).timings for _ in range(args.repeat)]
        med = {k: float(np.median([t[k] for t in timings])) for k in timings[0]}
        rows.append({"size": size, **med, "frames_per_s": 1000.0 / med["total"]})
        print(f"  {size:5d}^2  {med['total']:8.1f} ms  ({1000 / med['total']:6.2f} frames/s)  "
              f"preprocess {med['preprocess']:.1f}  infer {med['infer']:.1f}  postprocess {med['postprocess']:.1f} ms")
    print(f"edgeseg bench: {seg.backend}/{seg.device}/{seg.precision}, model {args.model}, median of {args.repeat}")
    if args.json:
        atomic_write_json(args.json, {"model": args.model, "backend": seg.backend, "device": seg.device,
                                      "precision": seg.precision, "rows": rows})
    return 0

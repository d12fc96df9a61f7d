"""``edgeseg parity``: does CANDIDATE segment like REFERENCE? Tensors, instances, Kaggle score."""

from __future__ import annotations

import argparse

DESCRIPTION = "compare two models on real images: probability error, instance agreement, DSB score"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("parity", help=DESCRIPTION, description=DESCRIPTION)
    p.add_argument("reference", help="reference model ('default', .pt, .onnx, .engine)")
    p.add_argument("candidate", help="candidate model (e.g. model.int8.onnx or model.int8.engine)")
    p.add_argument("--data", required=True, help="labelled images (either dataset layout)")
    p.add_argument("--subset", choices=("all", "val"), default="val",
                   help="'val': the reference model's validation images (default), 'all': every image")
    p.add_argument("--limit", type=int, default=None, help="first N images only (N >= 1; default: all)")
    p.add_argument("--tolerance", type=float, default=None,
                   help="largest allowed DSB drop (default by precision: fp32 0.001, fp16 0.003, int8 0.01)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--png", default=None, help="write the worst image side by side here")
    p.add_argument("--json", default=None, help="write the report here")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import cv2

    from .._atomic import atomic_write_bytes, atomic_write_json
    from ..data import load_dataset
    from ..errors import InputError
    from ..evaluate import subset_ids
    from ..parity import check_tolerance, compare, side_by_side
    from ..segmenter import Segmenter
    from ._common import progress
    from ._paths import check_writable

    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit must be >= 1 (the number of images to compare), got {args.limit}; "
                         "leave it out to compare every image")
    if args.tolerance is not None:
        check_tolerance(args.tolerance, "--tolerance")
    models = (args.reference, args.candidate)
    for option, path in (("--png", args.png), ("--json", args.json)):
        if path:
            check_writable(path, option=option, inputs=models)

    def open_model(m: str) -> Segmenter:
        dev = "cuda" if m.endswith(".engine") else ("cpu" if args.device == "auto" else args.device)
        return Segmenter(m, device=dev)

    ref, cand = open_model(args.reference), open_model(args.candidate)
    samples = load_dataset(args.data)
    ids = subset_ids(ref.info.model_card, args.subset)
    if ids is not None:
        wanted = set(ids)
        samples = [s for s in samples if s.id in wanted]
    samples = samples[: args.limit] if args.limit is not None else samples
    rep = compare(ref, cand, samples, tolerance=args.tolerance,
                  progress=lambda xs: progress(xs, args.progress, unit="image", desc="parity"))
    row, image, a, b = rep.pop("_worst")
    if args.png:
        pic = side_by_side(image, a, b, (f"reference {ref.backend}/{ref.precision}",
                                         f"candidate {cand.backend}/{cand.precision}: "
                                         f"agreement {row['agreement_dsb']:.3f}"))
        ok, png = cv2.imencode(".png", cv2.cvtColor(pic, cv2.COLOR_RGB2BGR))
        atomic_write_bytes(args.png, png.tobytes())
    if args.json:
        atomic_write_json(args.json, rep)
    verdict = "PASS" if rep["passed"] else "FAIL"
    score = (f"DSB {rep['candidate_dsb']:.4f} vs {rep['reference_dsb']:.4f} "
             f"({rep['dsb_difference']:+.4f}, tolerance {rep['tolerance']})") if "reference_dsb" in rep else \
        "no labels: judged by instance agreement"
    print(f"edgeseg parity: {verdict} on {rep['n_images']} images: {score}; probabilities max abs "
          f"{rep['max_abs']:.3g}, mean abs {rep['mean_abs']:.3g}; instance agreement DSB "
          f"{rep['agreement_dsb']:.4f} (worst {rep['worst_id'][:12]})")
    return 0 if rep["passed"] else 2

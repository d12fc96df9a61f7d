"""``edgeseg demo``: the bundled default model on real nuclei images shipped with the package.

Segments four CC0 DSB2018 validation images (fluorescence, stained tissue, bright-field) that
the model never saw in training, writes overlays, and prints the Kaggle score against their
labels and the end-to-end frame rate. ``--oracle`` instead feeds the post-processing class
probabilities derived from the labels (the encoding's ceiling, no network involved).

``--data`` on a folder without labels runs a labels-free demo (nuclei found and frames/s, no
score) and says so; with some labelled images the score is over those only.
"""

from __future__ import annotations

import argparse
import time

from ._common import add_model_options

DESCRIPTION = "segment the bundled real images with the default model: overlays, score, frames/s"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help=DESCRIPTION, description=DESCRIPTION)
    p.add_argument("-o", "--out", default="edgeseg-demo", help="folder for the overlays (default: %(default)s)")
    p.add_argument("--data", default=None, help="a labelled dataset to use instead of the bundled images")
    p.add_argument("--oracle", action="store_true",
                   help="no network: probabilities from the labels (the post-processing's ceiling)")
    add_model_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import cv2
    import numpy as np

    from .._atomic import atomic_write_bytes
    from .._resources import demo_dir
    from ..data import load_dataset
    from ..metrics import score_image
    from ..postprocess import label_instances
    from ..targets import encode, one_hot
    from ..viz import overlay
    from ._paths import check_writable

    from ..errors import DataError

    out = check_writable(args.out, folder=True, option="-o/--out")  # before any work
    data = args.data or demo_dir()
    samples = load_dataset(data)
    labelled = sum(s.has_labels for s in samples)
    if args.oracle:
        if not labelled:
            raise DataError(f"--oracle derives the class probabilities from labels, and {data} has none; "
                            "expected a labelled dataset (images/ + labels/, or the Kaggle layout), or drop --oracle")
        samples = [s for s in samples if s.has_labels]
    elif not labelled:
        print(f"edgeseg demo: {data} has no labels, so no score: nuclei found and frames/s only")
    elif labelled < len(samples):
        print(f"edgeseg demo: {labelled} of {len(samples)} images in {data} have labels; the score is over those")
    seg = None
    if args.oracle:
        print("edgeseg demo --oracle: class probabilities derived from the labels (encode -> blurred "
              "one-hot), no network: this is the post-processing's ceiling, not a model's accuracy")
    else:
        from ._common import make_segmenter

        seg = make_segmenter(args)
        print(f"edgeseg demo: model {args.model} ({seg.backend}/{seg.device}/{seg.precision}, "
              f"{seg.info.model_card.get('name', 'edgeseg U-Net')})")
        seg.segment(np.zeros((64, 64), np.uint8))  # warm-up: first-call costs are not frame costs
    # Short names when the first 12 characters tell the images apart (the bundled hash ids).
    short = len({s.id[:12] for s in samples}) == len(samples)
    scores, elapsed = [], 0.0
    for s in samples:
        name = s.id[:12] if short else s.id
        image = s.image()
        gt = s.labels() if s.has_labels else None
        t = time.perf_counter()
        if seg is None:
            pred = label_instances(one_hot(encode(gt), smooth=1.0))
        else:
            pred = seg.segment(image).labels
        elapsed += time.perf_counter() - t
        ok, png = cv2.imencode(".png", cv2.cvtColor(overlay(image, pred), cv2.COLOR_RGB2BGR))
        atomic_write_bytes(out / f"{name}_overlay.png", png.tobytes())
        h, w = image.shape[:2]
        if gt is None:
            print(f"  {name}  {h:4d}x{w:<4d}  found {np.unique(pred[pred > 0]).size:4d}  (no labels)")
            continue
        sc = score_image(gt, pred)
        scores.append(sc.dsb_score)
        print(f"  {name}  {h:4d}x{w:<4d}  nuclei {sc.n_gt:4d}  found {sc.n_pred:4d}  "
              f"DSB score {sc.dsb_score:.3f}")
    what = "post-processing" if seg is None else "end to end"
    rate = f"{len(samples) / elapsed:.1f} frames/s {what}" if elapsed > 0 else f"too fast to time {what}"
    if scores:
        score = f"mean Kaggle DSB2018 score {float(np.mean(scores)):.3f}"
        if len(scores) < len(samples):
            score += f" over the {len(scores)} labelled"
    else:
        score = "no labels, no score"
    print(f"edgeseg demo: {len(samples)} images, {score}, {rate}, overlays in {out}/")
    return 0

"""``edgeseg demo``: the bundled default model on real nuclei images shipped with the package.

Segments four CC0 DSB2018 validation images (fluorescence, stained tissue, bright-field) that
the model never saw in training, writes overlays, and prints the Kaggle score against their
labels and the end-to-end frame rate. ``--oracle`` instead feeds the post-processing class
probabilities derived from the labels (the encoding's ceiling, no network involved).
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

    out = check_writable(args.out, folder=True, option="-o/--out")
    samples = [s for s in load_dataset(args.data or demo_dir()) if s.has_labels]
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
    scores, elapsed = [], 0.0
    for s in samples:
        image, gt = s.image(), s.labels()
        t = time.perf_counter()
        if seg is None:
            pred = label_instances(one_hot(encode(gt), smooth=1.0))
        else:
            pred = seg.segment(image).labels
        elapsed += time.perf_counter() - t
        sc = score_image(gt, pred)
        scores.append(sc.dsb_score)
        ok, png = cv2.imencode(".png", cv2.cvtColor(overlay(image, pred), cv2.COLOR_RGB2BGR))
        atomic_write_bytes(out / f"{s.id[:12]}_overlay.png", png.tobytes())
        print(f"  {s.id[:12]}  {gt.shape[0]:4d}x{gt.shape[1]:<4d}  nuclei {sc.n_gt:4d}  found {sc.n_pred:4d}  "
              f"DSB score {sc.dsb_score:.3f}")
    fps = len(samples) / elapsed if elapsed > 0 else float("inf")
    what = "post-processing" if seg is None else "end to end"
    print(f"edgeseg demo: {len(samples)} images, mean Kaggle DSB2018 score {np.mean(scores):.3f}, "
          f"{fps:.1f} frames/s {what}, overlays in {out}/")
    return 0

"""``edgeseg demo``: the whole pipeline on real nuclei images shipped with the package.

Until a trained model is bundled, the class probabilities come from the ground truth
(labels -> 3-class encoding -> blurred one-hot maps, imitating a network's soft edges): the demo
then shows the post-processing and scoring on real data, and says so in its output.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

DESCRIPTION = "run the pipeline on the bundled real images, write overlays, print score and speed"


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help=DESCRIPTION, description=DESCRIPTION)
    p.add_argument("-o", "--out", default="edgeseg-demo", help="folder for the overlays (default: %(default)s)")
    p.add_argument("--data", default=None, help="a labelled dataset to use instead of the bundled images")
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

    samples = [s for s in load_dataset(args.data or demo_dir()) if s.has_labels]
    out = Path(args.out)
    print("edgeseg demo: no trained model is bundled yet; class probabilities are derived from the "
          "ground-truth labels (encode -> blurred one-hot), so this shows post-processing and scoring "
          "on real images, not a network's accuracy")
    scores, post_s = [], 0.0
    for s in samples:
        image, gt = s.image(), s.labels()
        probs = one_hot(encode(gt), smooth=1.0)
        t = time.perf_counter()
        pred = label_instances(probs)
        post_s += time.perf_counter() - t
        sc = score_image(gt, pred)
        scores.append(sc.dsb_score)
        ok, png = cv2.imencode(".png", cv2.cvtColor(overlay(image, pred), cv2.COLOR_RGB2BGR))
        atomic_write_bytes(out / f"{s.id[:12]}_overlay.png", png.tobytes())
        print(f"  {s.id[:12]}  {gt.shape[0]}x{gt.shape[1]}  nuclei {sc.n_gt:4d}  found {sc.n_pred:4d}  "
              f"score {sc.dsb_score:.3f}")
    fps = len(samples) / post_s if post_s > 0 else float("inf")
    print(f"edgeseg demo: {len(samples)} images, mean Kaggle DSB2018 score {np.mean(scores):.3f}, "
          f"post-processing {fps:.0f} frames/s, overlays in {out}/")
    return 0

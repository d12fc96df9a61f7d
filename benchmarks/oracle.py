"""Encoding oracle: the ceiling any model can reach through edgeseg's encoding.

For every image of a labelled dataset: ground-truth labels -> ``encode`` (3 classes) -> one-hot
probabilities -> ``label_instances`` -> Kaggle DSB2018 score against the same ground truth.
A perfect network would score exactly this. Prints the mean, the 10th percentile, the worst
images and the score per image kind; ``--json`` writes everything.

    python benchmarks/oracle.py [--data DIR] [--limit N] [--json out.json]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from _common import STAGE1_TRAIN, machine, require_data, table, write_json

from edgeseg.data import image_kind, load_dataset
from edgeseg.metrics import score_image
from edgeseg.postprocess import PostprocessConfig, label_instances
from edgeseg.targets import TargetConfig, encode, one_hot


def oracle_scores(samples, target_cfg=None, post_cfg=None, smooth=0.0, kinds=True):
    """Yield one row per sample: id, kind, n_gt, n_pred, dsb_score, ap50, f1_50."""
    for s in samples:
        gt = s.labels()
        pred = label_instances(one_hot(encode(gt, target_cfg), smooth=smooth), post_cfg)
        sc = score_image(gt, pred)
        yield {"id": s.id, "kind": image_kind(s.image()) if kinds else "", "n_gt": sc.n_gt,
               "n_pred": sc.n_pred, "dsb_score": sc.dsb_score, "ap50": sc.ap50, "f1_50": sc.f1_50}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(STAGE1_TRAIN))
    ap.add_argument("--limit", type=int, default=0, help="first N images only (0 = all)")
    ap.add_argument("--smooth", type=float, default=0.0, help="blur the one-hot maps (sigma, px)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    samples = load_dataset(require_data(Path(args.data)))
    samples = samples[: args.limit] if args.limit else samples
    t0 = time.perf_counter()
    rows = list(oracle_scores(samples, smooth=args.smooth))
    wall = time.perf_counter() - t0
    scores = np.array([r["dsb_score"] for r in rows])
    by_kind = []
    for kind in sorted({r["kind"] for r in rows}):
        k = np.array([r["dsb_score"] for r in rows if r["kind"] == kind])
        by_kind.append({"kind": kind, "images": len(k), "mean": float(k.mean()),
                        "p10": float(np.percentile(k, 10))})
    summary = {"images": len(rows), "nuclei": int(sum(r["n_gt"] for r in rows)),
               "mean": float(scores.mean()), "p10": float(np.percentile(scores, 10)),
               "min": float(scores.min()), "wall_s": wall}
    worst = sorted(rows, key=lambda r: r["dsb_score"])[:8]
    print(table(by_kind, ["kind", "images", "mean", "p10"]))
    print("\nworst images:")
    print(table(worst, ["id", "kind", "n_gt", "n_pred", "dsb_score"]))
    print(f"\nencoding oracle on {summary['images']} images ({summary['nuclei']} nuclei): "
          f"mean {summary['mean']:.4f}, 10th percentile {summary['p10']:.4f}, min {summary['min']:.4f} "
          f"({wall:.1f} s)")
    write_json(args.json, {"benchmark": "oracle", "target_config": TargetConfig().to_dict(),
                           "postprocess_config": PostprocessConfig().to_dict(), "smooth": args.smooth,
                           "machine": machine(), "summary": summary, "by_kind": by_kind, "rows": rows})


if __name__ == "__main__":
    main()

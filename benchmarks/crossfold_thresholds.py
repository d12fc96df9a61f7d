#!/usr/bin/env python3
"""Honest threshold tuning on the group split: tune on half of the held-out groups, score on the
other half, and the other way round.

    .venv/bin/python benchmarks/crossfold_thresholds.py --model RUN/best.pt --json out.json

Thresholds tuned and scored on the same images overstate the score; this reports, beside the
model's own thresholds and the thresholds tuned on all held-out groups, the 2-fold estimate
(the val groups split into two folds of similar size, alternating by size).
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from _common import group_split_parser, machine  # noqa: E402


def main() -> int:
    ap = group_split_parser(__doc__)
    args = ap.parse_args()

    import json

    import numpy as np

    from edgeseg._atomic import atomic_write_json
    from edgeseg.data import load_dataset
    from edgeseg.segmenter import Segmenter
    from edgeseg.training.config import TrainConfig
    from edgeseg.training.validation import ValItem, ValSet, score_probs, tune_postprocess

    split = json.loads(Path(args.split).read_text())
    by_id = {s.id: s for s in load_dataset(args.data)}
    seg = Segmenter(args.model, device="cpu", diameter=None)  # thresholds live at network scale
    items, probs = ValSet(), []
    for i in split["val"]:
        s = by_id[i]
        r = seg.segment(s.image(), probabilities=True)
        items.append(ValItem(i, split["kinds"][i], np.zeros(1), s.labels()))
        probs.append(r.probabilities.astype(np.float16))
    groups = sorted({split["groups"][i] for i in split["val"]},
                    key=lambda g: -sum(split["groups"][i] == g for i in split["val"]))
    fold_of = {g: k % 2 for k, g in enumerate(groups)}
    cfg = TrainConfig()
    grids = (cfg.tune_seed_thresholds, cfg.tune_fg_thresholds, cfg.tune_min_sizes)

    def subset(k):
        idx = [n for n, it in enumerate(items) if fold_of[split["groups"][it.id]] == k]
        return [probs[n] for n in idx], ValSet(items[n] for n in idx)

    own = score_probs(probs, items, seg.postprocess)
    folds = []
    for k in (0, 1):
        (ptune, vtune), (ptest, vtest) = subset(k), subset(1 - k)
        best, _, _ = tune_postprocess(ptune, vtune, seg.postprocess, *grids)
        res = score_probs(ptest, vtest, best)
        folds.append({"tuned_on": [g for g in groups if fold_of[g] == k],
                      "thresholds": {"seed_threshold": best.seed_threshold,
                                     "fg_threshold": best.fg_threshold,
                                     "min_size": best.min_size},
                      "held_out_dsb": res["dsb_score"], "n_held_out": res["n_images"]})
    n = sum(f["n_held_out"] for f in folds)
    cross = sum(f["held_out_dsb"] * f["n_held_out"] for f in folds) / n
    all_best, all_res, _ = tune_postprocess(probs, items, seg.postprocess, *grids)
    out = {"machine": machine(), "model": args.model, "n_images": len(items),
           "own_thresholds": seg.postprocess.to_dict(), "own_dsb": own["dsb_score"],
           "own_per_kind": own["per_kind"], "crossfold_dsb": cross, "folds": folds,
           "tuned_on_all": all_best.to_dict(), "tuned_on_all_dsb": all_res["dsb_score"]}
    atomic_write_json(args.json, out)
    print(f"{args.model}: group-val DSB {own['dsb_score']:.4f} with its thresholds; 2-fold "
          f"cross-tuned {cross:.4f}; tuned on all (optimistic) {all_res['dsb_score']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

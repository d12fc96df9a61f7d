#!/usr/bin/env python3
"""Choosing ``PostprocessConfig.min_confidence`` and ``border_weight`` honestly: leave one
acquisition group out.

    .venv/bin/python benchmarks/confidence_logo.py --model default --json out/conf.json \\
        [--diameter auto] [--grid 0,0.6,0.65,0.7,0.75,0.78,0.8,0.82,0.85] [--border-weights 1]

Segments the held-out groups of ``training/splits/dsb2018_groups.json`` once with the model's own
settings but ``min_confidence=0`` (size control as ``--diameter``), then, for every pair of a
border weight w and a value of the grid, removes the instances whose confidence, the mean of
``P(body) + w * P(border)`` (w = 1: the mean foreground probability ``1 - P(background)``), is
below it and scores each image. For each group the pair is chosen on the other groups and scored
on that one (leave-one-group-out): the estimate of what a new lab gets from the rule. The filter is applied to
the final labels; the size estimate of ``auto`` reads unfiltered instances here (the runtime filters
those too: `benchmarks/generalization.py` scores the shipped pipeline end to end). Prints a table;
writes JSON with the per-image scores, the CPU flags and versions.
"""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from _common import group_split_parser, machine, table, write_json  # noqa: E402


def key(w: float, tau: float) -> str:
    """The per-image score key of a (border weight, threshold) pair; w = 1 keeps the old keys."""
    return str(tau) if w == 1.0 else f"w{w:g}:{tau:g}"


def main() -> int:
    ap = group_split_parser(__doc__)
    ap.add_argument("--diameter", default="auto")
    ap.add_argument("--grid", default="0,0.6,0.65,0.7,0.75,0.78,0.8,0.82,0.85")
    ap.add_argument("--border-weights", default="1", help="comma-separated weights of P(border)")
    args = ap.parse_args()
    grid = [float(x) for x in args.grid.split(",")]
    weights = [float(x) for x in args.border_weights.split(",")]
    pairs = [(w, tau) for w in weights for tau in grid]

    import json

    import numpy as np

    from edgeseg.data import image_kind, load_dataset, load_split
    from edgeseg.metrics import score_image
    from edgeseg.postprocess import instance_confidence
    from edgeseg.segmenter import Segmenter

    split = load_split(args.split)
    groups = json.loads(Path(args.split).read_text()).get("groups", {})
    by_id = {s.id: s for s in load_dataset(args.data)}
    seg = Segmenter(args.model, backend="torch", device="cpu",
                    diameter=None if args.diameter == "none" else args.diameter, min_confidence=0.0,
                    border_weight=1.0)
    t0 = time.perf_counter()
    per_image: dict[str, dict] = {}
    for i in split["val"]:
        s = by_id[i]
        image, gt = s.image(), s.labels()
        r = seg.segment(image, probabilities=True)
        lab = r.labels
        n = int(lab.max()) + 1
        scores = {}
        for w in weights:
            conf = instance_confidence(lab, r.probabilities, n, border_weight=w)
            for tau in grid:
                keep = np.where(conf >= tau, np.arange(n), 0) if tau > 0 else np.arange(n)
                keep[0] = 0
                scores[key(w, tau)] = score_image(gt, keep[lab]).dsb_score
        per_image[i] = {"group": groups.get(i, "?"), "kind": image_kind(image), "scores": scores}
    wall = time.perf_counter() - t0

    def mean(ids, pair):
        return float(np.mean([per_image[i]["scores"][key(*pair)] for i in ids]))

    ids = list(per_image)
    rows = [{"border_weight": w, "min_confidence": tau, "dsb_all": mean(ids, (w, tau)),
             **{f"dsb_{k}": mean([i for i in ids if per_image[i]["kind"] == k], (w, tau))
                for k in sorted({v["kind"] for v in per_image.values()})}} for w, tau in pairs]
    chosen, logo = {}, {}
    for g in sorted({v["group"] for v in per_image.values()}):
        others = [i for i in ids if per_image[i]["group"] != g]
        chosen[g] = max(pairs, key=lambda pair: mean(others, pair))
        for i in ids:
            if per_image[i]["group"] == g:
                logo[i] = per_image[i]["scores"][key(*chosen[g])]
    by_kind = defaultdict(list)
    for i, v in logo.items():
        by_kind[per_image[i]["kind"]].append(v)
    result = {"machine": machine(), "model": str(args.model), "diameter": args.diameter,
              "grid": grid, "border_weights": weights, "rows": rows,
              "logo_choice": {g: {"border_weight": w, "min_confidence": tau}
                              for g, (w, tau) in chosen.items()},
              "logo_dsb": float(np.mean(list(logo.values()))),
              "logo_per_kind": {k: float(np.mean(v)) for k, v in sorted(by_kind.items())},
              "no_filter_dsb": mean(ids, (weights[0], 0.0)) if 0.0 in grid else None,
              "per_image": per_image, "wall_s": round(wall, 1)}
    print(table(rows, list(rows[0])))
    print(f"\nleave-one-group-out: {result['logo_dsb']:.4f} "
          f"({', '.join(f'{k} {v:.4f}' for k, v in result['logo_per_kind'].items())}); "
          f"chosen per held-out group: {chosen}")
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

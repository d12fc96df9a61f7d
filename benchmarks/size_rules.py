#!/usr/bin/env python3
"""Which size-control rules should ``diameter="auto"`` use? A sweep of TRUST_BAND x KEEP_RANGE.

    .venv/bin/python benchmarks/size_rules.py --model default --json out/size_rules.json

For each held-out image of the group split at data zooms 0.5, 1 and 2 (images and labels resized:
another objective) the consensus estimate is computed at every zoom (1, 1/2, 1/4). Each rule --
a trust band (zoom 1's estimate inside it is final) and a keep range (zooms inside it are not
applied) -- then picks a zoom per image; every distinct (image, zoom) is segmented and scored
once. Reports per rule: the mean score at each data zoom, per kind at 1x, the shifted/unshifted
ratios and the worst per-image change against no size control at 1x. This is how
``edgeseg.sizing.TRUST_BAND`` and ``KEEP_RANGE`` were chosen (JSON in benchmarks/results/).
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from _common import group_split_parser, labels_at_zoom, machine  # noqa: E402

BANDS = [(1.0, 1.0), (1.5, 1.5), (1.5, 1.25), (1.5, 1.15), (1.3, 1.15), (2.0, 1.25)]
KEEPS = [(0.5, 2.0), (0.67, 1.5), (0.75, 1.33), (0.8, 1.25)]
SCALES = (0.5, 1.0, 2.0)


def main() -> int:
    ap = group_split_parser(__doc__)
    args = ap.parse_args()

    import numpy as np

    import edgeseg.sizing as sizing
    from edgeseg._atomic import atomic_write_json
    from edgeseg.data import load_dataset
    from edgeseg.evaluate import zoom_pair
    from edgeseg.metrics import dsb_score
    from edgeseg.segmenter import Segmenter

    split = json.loads(Path(args.split).read_text())
    by_id = {s.id: s for s in load_dataset(args.data)}
    seg = Segmenter(args.model, device="cpu", diameter=None)
    md = seg.info.diameter
    t0 = time.perf_counter()
    sizing.TRUST_BAND = (1.0, 1.0)  # estimate at every zoom; the rules are applied below
    items = []
    for scale in SCALES:
        for i in split["val"]:
            img, gt = zoom_pair(by_id[i].image(), by_id[i].labels(), scale)
            est = seg.estimate_size(img)
            items.append({"id": i, "kind": split["kinds"][i], "scale": scale,
                          "per_zoom": {float(z): v for z, v in est.per_zoom.items()}})
    log_t = time.perf_counter() - t0

    def diameter(pz: dict, lo: float, hi: float) -> float | None:
        best = None
        for z in sorted(pz, reverse=True):
            n, d = pz[z]
            if n < sizing.MIN_INSTANCES or not math.isfinite(d):
                continue
            dist = abs(math.log(d * z / md))
            if best is None or dist < best[0]:
                best = (dist, d)
            if z == 1.0 and md / lo <= d <= md * hi:
                return d
        return None if best is None else best[1]

    def zoom(d: float | None, keep: tuple[float, float]) -> float:
        if d is None:
            return 1.0
        z = md / d
        if keep[0] <= z <= keep[1]:
            return 1.0
        return round(float(min(max(z, sizing.MIN_ZOOM), sizing.MAX_ZOOM)), 6)

    chosen = {(b, k): [zoom(diameter(it["per_zoom"], *b), k) for it in items]
              for b in BANDS for k in KEEPS}
    scores: dict[tuple[int, float], float] = {}
    for n, it in enumerate(items):
        zooms = {1.0} | {zs[n] for zs in chosen.values()}
        img, gt = zoom_pair(by_id[it["id"]].image(), by_id[it["id"]].labels(), it["scale"])
        for z in zooms:
            scores[(n, z)] = dsb_score(gt, labels_at_zoom(seg, img, z))

    rows = []
    for (band, keep), zs in chosen.items():
        row: dict = {"trust_band": band, "keep_range": keep}
        for scale in SCALES:
            idx = [n for n, it in enumerate(items) if it["scale"] == scale]
            row[str(scale)] = float(np.mean([scores[(n, zs[n])] for n in idx]))
            if scale == 1.0:
                for kind in sorted({items[n]["kind"] for n in idx}):
                    row[f"1.0_{kind}"] = float(np.mean([scores[(n, zs[n])] for n in idx
                                                        if items[n]["kind"] == kind]))
                row["worst_vs_none_1x"] = float(min(scores[(n, zs[n])] - scores[(n, 1.0)]
                                                    for n in idx))
        row["ratio_0.5"] = row["0.5"] / row["1.0"]
        row["ratio_2.0"] = row["2.0"] / row["1.0"]
        rows.append(row)
        print(f"band 1/{band[0]}..{band[1]} keep {keep}: 0.5x {row['0.5']:.4f} 1x {row['1.0']:.4f} "
              f"2x {row['2.0']:.4f} ratios {row['ratio_0.5']:.3f} / {row['ratio_2.0']:.3f} "
              f"worst {row['worst_vs_none_1x']:+.3f}", flush=True)
    atomic_write_json(args.json, {"machine": machine(), "model": args.model, "model_diameter": md,
                                  "rows": rows, "estimate_s": log_t,
                                  "wall_s": time.perf_counter() - t0})
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""How far should size control enlarge frames of small nuclei? A sweep of ``ENLARGE_AIM``.

    .venv/bin/python benchmarks/enlarge_aim.py --model default --json out/enlarge_aim.json

For each held-out image of the group split at data zooms 0.5 and 1 (``--scales``; images and
labels resized: another objective) ``diameter="auto"`` estimates the nucleus size as shipped;
each aim then turns the estimate into a zoom (``edgeseg.sizing.zoom_for``: enlarged frames aim
their nuclei at that fraction of the training diameter; 1.0 = the training diameter itself) and
every distinct (image, zoom) is segmented and scored once. Reports per aim the mean score at each
data zoom, per group, and the worst per-image change against aim 1.0. This is how
``edgeseg.sizing.ENLARGE_AIM`` was chosen (JSON in benchmarks/results/).
"""

from __future__ import annotations

import collections
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from _common import group_split_parser, labels_at_zoom, machine  # noqa: E402

AIMS = (1.0, 0.9, 0.8, 0.7)


def main() -> int:
    ap = group_split_parser(__doc__)
    ap.add_argument("--scales", default="0.5,1")
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
    scales = [float(z) for z in args.scales.split(",")]
    t0 = time.perf_counter()
    items = []
    for scale in scales:
        for i in split["val"]:
            img, gt = zoom_pair(by_id[i].image(), by_id[i].labels(), scale)
            est = seg.estimate_size(img)
            zooms = {a: 1.0 if est.diameter is None else sizing.zoom_for(md, est.diameter, a)
                     for a in AIMS}
            scores = {}
            for z in sorted(set(zooms.values())):
                scores[z] = dsb_score(gt, labels_at_zoom(seg, img, z))
            items.append({"id": i, "group": split["groups"][i], "kind": split["kinds"][i],
                          "scale": scale, "diameter": est.diameter,
                          "zoom": {str(a): z for a, z in zooms.items()},
                          "score": {str(a): scores[z] for a, z in zooms.items()}})
        print(f"scale {scale:g}: {len(split['val'])} images estimated and scored "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    rows = []
    for a in AIMS:
        row: dict = {"aim": a}
        for scale in scales:
            its = [it for it in items if it["scale"] == scale]
            row[f"{scale:g}"] = float(np.mean([it["score"][str(a)] for it in its]))
            row[f"{scale:g}_worst_vs_aim1"] = float(min(it["score"][str(a)] - it["score"]["1.0"]
                                                        for it in its))
            groups = collections.defaultdict(list)
            for it in its:
                groups[it["group"]].append(it["score"][str(a)])
            row[f"{scale:g}_per_group"] = {g: float(np.mean(v)) for g, v in sorted(groups.items())}
        rows.append(row)
        print(f"aim {a:.1f}: " + "  ".join(
            f"{s:g}x {row[f'{s:g}']:.4f} (worst {row[f'{s:g}_worst_vs_aim1']:+.3f})"
            for s in scales), flush=True)
    atomic_write_json(args.json, {"machine": machine(), "model": args.model, "model_diameter": md,
                                  "shipped_aim": sizing.ENLARGE_AIM, "rows": rows,
                                  "items": items, "wall_s": time.perf_counter() - t0})
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Which estimated zooms should size control apply? A sweep of ``sizing.KEEP_RANGE``.

    .venv/bin/python benchmarks/keep_range.py --model default --json out/keep_range.json

For every held-out image of the group split, at the data zooms of ``--scales`` (images and labels
resized: another objective), the frame's nucleus size is estimated once (``diameter="auto"``'s
consensus), and the frame is scored both unscaled and at the estimated zoom. A keep range
``(lo, hi)`` applies the estimated zoom only outside it, so every candidate range is scored from
these two numbers per image, with no further network pass. Reports, per range, the mean score per
data zoom, the shifted/unshifted ratios and the worst per-image loss against no size control at
zoom 1 (the in-range guarantee). Prints a table; writes JSON with the CPU and versions.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from _common import machine  # noqa: E402

RANGES = [(0.5, 2.0), (0.6, 1.67), (0.67, 1.5), (0.75, 1.33), (0.8, 1.25), (0.9, 1.1),
          (0.5, 1.5), (0.5, 1.33), (0.67, 2.0), (1.0, 1.0)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--data", default=str(REPO.parent / "shared/data/dsb2018/stage1_train"))
    ap.add_argument("--split", default=str(REPO / "training/splits/dsb2018_groups.json"))
    ap.add_argument("--scales", default="0.5,1,2")
    ap.add_argument("--json", required=True)
    args = ap.parse_args()

    import numpy as np

    from edgeseg._atomic import atomic_write_json
    from edgeseg.data import load_dataset
    from edgeseg.evaluate import zoom_pair
    from edgeseg.metrics import dsb_score
    from edgeseg.postprocess import label_instances
    from edgeseg.segmenter import Segmenter
    from edgeseg.sizing import MAX_ZOOM, MIN_ZOOM, resize_probabilities, scaled_postprocess

    split = json.loads(Path(args.split).read_text())
    by_id = {s.id: s for s in load_dataset(args.data)}
    seg = Segmenter(args.model, device="cpu", diameter=None)
    model_d = seg.info.diameter
    scales = [float(z) for z in args.scales.split(",")]
    rows: dict[str, list[dict]] = {}
    t0 = time.perf_counter()
    for s in scales:
        out = rows.setdefault(str(s), [])
        for i in split["val"]:
            img, gt = zoom_pair(by_id[i].image(), by_id[i].labels(), s)
            est = seg.estimate_size(img)
            base = dsb_score(gt, seg.segment(img).labels)
            z = 1.0 if est.diameter is None else model_d / est.diameter
            z = float(min(max(z, MIN_ZOOM), MAX_ZOOM))
            scored = base
            if z != 1.0:
                probs, *_ = seg._zoomed(img, z)
                probs = resize_probabilities(probs, img.shape[:2])
                lab = label_instances(probs, scaled_postprocess(seg.postprocess, z))
                scored = dsb_score(gt, lab)
            out.append({"id": i, "kind": split["kinds"][i], "zoom": z, "none": base,
                        "zoomed": scored})
        print(f"scale {s}: {len(out)} images, {time.perf_counter() - t0:.0f} s", flush=True)

    def pick(r: dict, lo: float, hi: float) -> float:
        return r["none"] if lo <= r["zoom"] <= hi else r["zoomed"]

    table = []
    for lo, hi in RANGES:
        entry: dict = {"keep_range": [lo, hi]}
        for s, rs in rows.items():
            entry[s] = float(np.mean([pick(r, lo, hi) for r in rs]))
            for kind in sorted({r["kind"] for r in rs}):
                entry[f"{s}_{kind}"] = float(np.mean([pick(r, lo, hi) for r in rs
                                                       if r["kind"] == kind]))
        ones = rows.get("1.0") or []
        entry["worst_vs_none_1x"] = float(min((pick(r, lo, hi) - r["none"] for r in ones),
                                              default=0.0))
        if "1.0" in entry:
            for s in rows:
                if s != "1.0":
                    entry[f"ratio_{s}"] = entry[s] / entry["1.0"] if entry["1.0"] else math.nan
        table.append(entry)
    head = ["keep_range"] + list(rows) + [f"ratio_{s}" for s in rows if s != "1.0"] \
        + ["worst_vs_none_1x"]
    print(" | ".join(head))
    for e in table:
        print(" | ".join(str(e["keep_range"]) if h == "keep_range" else f"{e.get(h, math.nan):.4f}"
                         for h in head))
    atomic_write_json(args.json, {"machine": machine(), "model": args.model,
                                  "model_diameter": model_d, "ranges": table, "rows": rows,
                                  "wall_s": time.perf_counter() - t0})
    return 0


if __name__ == "__main__":
    sys.exit(main())

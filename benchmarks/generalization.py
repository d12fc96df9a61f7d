#!/usr/bin/env python3
"""Generalization report of a model: group split, per kind, scale-shifted, random split.

    .venv/bin/python benchmarks/generalization.py --model default --json out/generalization.json
        [--diameters none,auto] [--scales 0.5,1,2] [--tta]

For each size setting (``--diameters``) it scores the held-out acquisition groups of
``training/splits/dsb2018_groups.json`` (the part of a new lab) at the original size and at the
zooms of ``--scales`` (images and labels resized: another objective), per image kind, and the
model card's own random val split when the card records one (in-distribution). The per-image
worst case of each setting against ``none`` is reported too (size control must never make an
in-range image worse). Prints a table; writes JSON with the CPU and versions.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from _common import group_split_parser, machine  # noqa: E402


def main() -> int:
    ap = group_split_parser(__doc__)
    ap.add_argument("--diameters", default="none,auto")
    ap.add_argument("--scales", default="0.5,1,2")
    ap.add_argument("--tta", action="store_true")
    ap.add_argument("--with", dest="merge", action="append", default=[], metavar="JSON",
                    help="add the settings of another run of this script on the same model (read "
                         "when this one ends; e.g. 'none' run in a parallel process); repeatable; "
                         "with --diameters '' only merges")
    ap.add_argument("--random-split", action="store_true",
                    help="also score the model card's random val split")
    args = ap.parse_args()

    from edgeseg._atomic import atomic_write_json
    from edgeseg.data import load_dataset, load_split
    from edgeseg.evaluate import evaluate, subset_ids
    from edgeseg.segmenter import Segmenter

    by_id = {s.id: s for s in load_dataset(args.data)}
    group_val = [by_id[i] for i in load_split(args.split)["val"]]
    zooms = [float(z) for z in args.scales.split(",")]
    out = {"machine": machine(), "model": args.model, "split": args.split,
           "n_group_val": len(group_val), "settings": {}}
    for d in [d for d in args.diameters.split(",") if d]:  # "" with --with: merge only
        seg = Segmenter(args.model, device="cpu", diameter=None if d == "none" else d,
                        tta=args.tta)
        res = {}
        for z in zooms:
            t = time.perf_counter()
            r = evaluate(seg, group_val, zoom=z)
            res[f"{z:g}"] = {"dsb_score": r["dsb_score"], "ap50": r["ap50"],
                             **{k: r[k] for k in ("dsb_score_nearest", "nearest_ceiling")
                                if k in r},
                             "per_kind": r["per_kind"], "wall_s": time.perf_counter() - t,
                             "per_image": {row["id"]: [row["dsb_score"], row["seg_zoom"]]
                                           for row in r["images"]}}
            print(f"{args.model} diameter={d} zoom={z:g}: group-val DSB {r['dsb_score']:.4f} "
                  + ", ".join(f"{k} {v['dsb_score']:.3f}" for k, v in r["per_kind"].items())
                  + (f"; vs nearest-shrunk truth {r['dsb_score_nearest']:.4f} (ceiling "
                     f"{r['nearest_ceiling']:.3f})" if "nearest_ceiling" in r else "")
                  + f" ({time.perf_counter() - t:.0f} s)", flush=True)
        base = res.get("1", {}).get("dsb_score")
        for z, v in res.items():
            v["ratio_to_1x"] = v["dsb_score"] / base if base else None
        if args.random_split:
            try:
                ids = subset_ids(seg.info.model_card, "val")
                r = evaluate(seg, [by_id[i] for i in ids])
                res["random_val"] = {"dsb_score": r["dsb_score"], "per_kind": r["per_kind"],
                                     "n_images": r["n_images"]}
                print(f"{args.model} diameter={d}: random-split val DSB {r['dsb_score']:.4f}")
            except Exception as exc:  # the card may not record one
                res["random_val"] = {"error": str(exc)}
        out["settings"][d] = res
    for path in args.merge:
        other = json.loads(Path(path).read_text())
        if other.get("model") != args.model:
            raise SystemExit(f"--with {path}: model {other.get('model')!r}, not {args.model!r}")
        for d, res in other["settings"].items():
            out["settings"].setdefault(d, res)
    if "none" in out["settings"]:
        ref = out["settings"]["none"]
        for d, res in out["settings"].items():
            for z, v in res.items():
                if z in ref and "per_image" in v:
                    diffs = [v["per_image"][i][0] - ref[z]["per_image"][i][0] for i in v["per_image"]]
                    v["worst_vs_none"] = min(diffs)
                    v["in_range_worst_vs_none"] = min(
                        [df for df, i in zip(diffs, v["per_image"]) if v["per_image"][i][1] == 1.0],
                        default=0.0)
    out["python"] = platform.python_version()
    atomic_write_json(args.json, out)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

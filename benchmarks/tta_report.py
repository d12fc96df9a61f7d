#!/usr/bin/env python3
"""Test-time augmentation: its gain on the group split and its cost per frame, in one run.

    .venv/bin/python benchmarks/tta_report.py --model default --json out/tta.json [--diameter auto]

Gain: the held-out acquisition groups of ``training/splits/dsb2018_groups.json`` (126 images)
scored with ``tta=False`` and ``tta=True`` (8 flips / 90-degree rotations, probabilities averaged),
overall and per image kind, with the size setting of ``--diameter`` (the default's ``auto``).
Cost: the median time of ``Segmenter.segment`` on the 512^2 and 1024^2 frames of
``bench_segmenter.py`` (a mosaic of real fluorescence images), both settings timed in the same run
on the same backend, so the ratio holds on a loaded machine too. Prints a table; writes JSON with
the CPU flags and versions.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from _common import group_split_parser, machine, table, time_ms, write_json  # noqa: E402


def main() -> int:
    ap = group_split_parser(__doc__)
    ap.add_argument("--diameter", default="auto", help="size setting for the scores ('none', "
                    "'auto' or px); the frames are timed at their own size")
    ap.add_argument("--backend", default="torch", help="backend timed (and scored)")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per frame and setting")
    args = ap.parse_args()

    from bench_segmenter import frames

    from edgeseg.data import load_dataset, load_split
    from edgeseg.evaluate import evaluate
    from edgeseg.segmenter import Segmenter

    by_id = {s.id: s for s in load_dataset(args.data)}
    group_val = [by_id[i] for i in load_split(args.split)["val"]]
    shots = frames(Path(args.data))
    diameter = None if args.diameter == "none" else args.diameter
    rows = []
    for tta in (False, True):
        seg = Segmenter(args.model, backend=args.backend, device="cpu", diameter=diameter, tta=tta)
        t = time.perf_counter()
        r = evaluate(seg, group_val)
        row = {"tta": tta, "dsb_score": r["dsb_score"], "ap50": r["ap50"],
               **{f"dsb_{k}": v["dsb_score"] for k, v in r["per_kind"].items()},
               "eval_wall_s": round(time.perf_counter() - t, 1)}
        plain = Segmenter(args.model, backend=args.backend, device="cpu", diameter=None, tta=tta)
        for size, frame in sorted(shots.items()):
            row[f"ms_{size}"] = time_ms(lambda f=frame: plain.segment(f), repeat=args.repeat,
                                        warmup=1)
        rows.append(row)
        print(f"tta={tta}: group-val DSB {row['dsb_score']:.4f} ({row['eval_wall_s']:.0f} s)",
              flush=True)
    off, on = rows
    gain = {k: on[k] - off[k] for k in on if k.startswith("dsb")}
    cost = {k: on[k] / off[k] for k in on if k.startswith("ms_")}
    print(table(rows, list(rows[0])))
    print("gain: " + ", ".join(f"{k} {v:+.4f}" for k, v in gain.items()))
    print("cost: " + ", ".join(f"{k} x{v:.2f}" for k, v in cost.items()))
    write_json(args.json, {"machine": machine(), "model": args.model, "backend": args.backend,
                           "diameter": args.diameter, "n_group_val": len(group_val),
                           "rows": rows, "gain": gain, "cost_ratio": cost})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

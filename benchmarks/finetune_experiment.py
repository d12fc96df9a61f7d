#!/usr/bin/env python3
""""Adapt to your microscope", measured as a user would: fine-tune on 8 images of one held-out
acquisition group and score the rest of that group before and after.

    .venv/bin/python benchmarks/finetune_experiment.py --model default \
        --group stained-256x320-2 --json out/finetune.json [--images 8] [--steps 600]

The 8 images (seeded choice) are linked into a temporary dataset folder, ``edgeseg train --init
MODEL --data DIR`` runs the fine-tuning recipe (edgeseg.training.config.finetune_config) on this
CPU, and ``edgeseg eval`` scores the group's other images with both models (default settings).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from _common import machine  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--group", required=True, help="an acquisition group of the group split")
    ap.add_argument("--data", default=str(REPO.parent / "shared/data/dsb2018/stage1_train"))
    ap.add_argument("--split", default=str(REPO / "training/splits/dsb2018_groups.json"))
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--steps", type=int, default=None, help="default: the recipe's")
    ap.add_argument("--lr", type=float, default=None, help="default: the recipe's")
    ap.add_argument("--out", default=None, help="keep the fine-tuning run here")
    ap.add_argument("--json", required=True)
    args = ap.parse_args()

    import numpy as np

    from edgeseg._atomic import atomic_write_json
    from edgeseg.cli import main as cli
    from edgeseg.data import load_dataset
    from edgeseg.evaluate import evaluate
    from edgeseg.segmenter import Segmenter

    groups = json.loads(Path(args.split).read_text())["groups"]
    members = sorted(i for i, g in groups.items() if g == args.group)
    if len(members) <= args.images:
        raise SystemExit(f"group {args.group!r} has {len(members)} images; need more than "
                         f"{args.images}")
    pick = sorted(np.random.default_rng(0).choice(len(members), args.images, replace=False))
    tune_ids = [members[i] for i in pick]
    test_ids = [i for i in members if i not in set(tune_ids)]
    data = Path(args.data)
    by_id = {s.id: s for s in load_dataset(data)}
    work = Path(tempfile.mkdtemp(prefix="edgeseg-finetune-"))
    for sub in ("images", "labels"):
        (work / "lab" / sub).mkdir(parents=True)
        for i in tune_ids:
            os.symlink(data / sub / f"{i}.png", work / "lab" / sub / f"{i}.png")
    run = Path(args.out) if args.out else work / "run"
    t = time.perf_counter()
    argv = ["train", "--init", args.model, "--data", str(work / "lab"), "--out", str(run),
            "--device", "cpu"] + (["--steps", str(args.steps)] if args.steps else []) \
        + (["--lr", str(args.lr)] if args.lr else [])
    rc = cli(argv)
    minutes = (time.perf_counter() - t) / 60
    if rc != 0:
        raise SystemExit(f"fine-tuning failed (exit {rc})")
    test = [by_id[i] for i in test_ids]
    before = evaluate(Segmenter(args.model, device="cpu"), test)
    after = evaluate(Segmenter(str(run / "best.pt"), device="cpu"), test)
    out = {"machine": machine(), "model": args.model, "group": args.group,
           "tune_ids": tune_ids, "n_test": len(test_ids), "minutes": minutes,
           "command": "edgeseg " + " ".join(argv),
           "before": before["dsb_score"], "after": after["dsb_score"],
           "per_image": {r["id"]: [r["dsb_score"], a["dsb_score"]]
                         for r, a in zip(before["images"], after["images"])}}
    atomic_write_json(args.json, out)
    print(f"{args.group}: {len(test_ids)} held-out images, DSB {out['before']:.4f} -> "
          f"{out['after']:.4f} after fine-tuning on {args.images} images for {minutes:.1f} min "
          f"(CPU); wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python3
"""Ship a training run's best model as the bundled default, with its validation on the card.

    .venv/bin/python scripts/ship_default.py RUN_DIR --generalization G.json [--crossfold X.json]

Writes edgeseg/models/default/{model.pt,model_card.json,config.json} (fp32 weights) through
edgeseg.checkpoint.export_default, then adds to the model card: the training data's nucleus
diameter (what size control rescales to), the group-split / scale-shift / per-kind report of
benchmarks/generalization.py and the 2-fold threshold estimate of
benchmarks/crossfold_thresholds.py, so the numbers travel with the model.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--generalization", type=Path, default=None,
                    help="benchmarks/generalization.py JSON of these weights (required but with "
                         "--half-only)")
    ap.add_argument("--crossfold", type=Path, default=None)
    ap.add_argument("--half", action="store_true",
                    help="store the weights as float16 (half the file; loaded back as float32): "
                         "for models over ~2.5 M parameters, whose fp32 file would pass 10 MiB. "
                         "Score the weights as shipped: --model build/ship_default_half.pt "
                         "(written by --half-only) in benchmarks/generalization.py")
    ap.add_argument("--half-only", action="store_true",
                    help="with --half: only write build/ship_default_half.pt (the weights as "
                         "they will ship, for scoring) and stop")
    ap.add_argument("--data", type=Path,
                    default=REPO.parent / "shared" / "data" / "dsb2018" / "stage1_train")
    args = ap.parse_args()
    if args.generalization is None and not args.half_only:
        ap.error("--generalization G.json is required (the report goes on the model card)")
    if args.half_only and not args.half:
        ap.error("--half-only needs --half")

    import numpy as np

    from edgeseg.checkpoint import export_default, load_checkpoint, save_checkpoint
    from edgeseg.data import load_dataset, load_split

    src = args.run / "best.pt" if args.run.is_dir() else args.run
    ckpt = load_checkpoint(src)
    card = dict(ckpt.model_card)
    if "nucleus_diameter" not in card:  # runs started before the card recorded it
        split = load_split(args.run / "split.json")
        by_id = {s.id: s for s in load_dataset(args.data)}
        ds = []
        for i in split["train"]:
            lab = by_id[i].labels()
            _, areas = np.unique(lab[lab > 0], return_counts=True)
            if areas.size:
                ds.append(float(np.median(2 * np.sqrt(areas / np.pi))))
        card["nucleus_diameter"] = round(float(np.median(ds)), 2)
    gen = json.loads(args.generalization.read_text()) if args.generalization else {"settings": {}}
    card["validation"] = {
        "split": "training/splits/dsb2018_groups.json (held-out acquisition groups)",
        "settings": {d: {z: {k: v[k] for k in ("dsb_score", "per_kind", "ratio_to_1x",
                                               "worst_vs_none", "in_range_worst_vs_none")
                             if k in v}
                         for z, v in res.items()} for d, res in gen["settings"].items()},
        "machine": gen.get("machine"),
    }
    if args.crossfold:
        x = json.loads(args.crossfold.read_text())
        card["validation"]["thresholds_2fold_dsb"] = x["crossfold_dsb"]
        card["validation"]["thresholds_tuned_on_all_dsb"] = x["tuned_on_all_dsb"]
    card["source_checkpoint"] = str(src)
    fixed = REPO / "build" / "ship_default.pt"
    fixed.parent.mkdir(exist_ok=True)
    save_checkpoint(fixed, ckpt.build_model(), norm_config=ckpt.norm_config,
                    target_config=ckpt.target_config, postprocess_config=ckpt.postprocess_config,
                    model_card=card)
    if args.half:
        half = REPO / "build" / "ship_default_half.pt"
        save_checkpoint(half, ckpt.build_model(), norm_config=ckpt.norm_config,
                        target_config=ckpt.target_config,
                        postprocess_config=ckpt.postprocess_config, model_card=card, half=True)
        if args.half_only:
            print(f"wrote {half} (float16 weights of {src})")
            return 0
    dest = export_default(fixed, half=args.half)
    print(f"shipped {src} -> {dest} (nucleus diameter {card['nucleus_diameter']} px)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

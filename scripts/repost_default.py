#!/usr/bin/env python3
"""Change a model's post-processing thresholds and re-score its card's validation with them.

    .venv/bin/python scripts/repost_default.py MODEL OUT.pt --set min_confidence=0.8 \\
        [--split training/splits/dsb2018_groups.json] [--data DIR] [--why "..."]

Loads MODEL (``default``, a checkpoint or a run folder), replaces the given
``PostprocessConfig`` fields, scores the split's val images as training validates them (no size
control) and writes OUT.pt: the same weights, the new post-processing, ``card["val"]`` re-scored,
and a ``card["postprocess_revisions"]`` entry (old and new values, old and new val score, why).
Ship it with ``scripts/ship_default.py OUT.pt --generalization G.json`` after scoring OUT.pt with
``benchmarks/generalization.py`` (choose the value on other data than you report it on, e.g. by
leaving one acquisition group out).
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _value(text: str) -> object:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("out", type=Path)
    ap.add_argument("--set", dest="changes", action="append", required=True, metavar="FIELD=VALUE")
    ap.add_argument("--split", type=Path, default=REPO / "training" / "splits" / "dsb2018_groups.json")
    ap.add_argument("--data", type=Path, default=None, help="default: the split file's data folder")
    ap.add_argument("--why", default="")
    args = ap.parse_args()
    changes = {}
    for item in args.changes:
        if "=" not in item:
            ap.error(f"--set {item!r}: expected FIELD=VALUE, e.g. min_confidence=0.8")
        k, v = item.split("=", 1)
        changes[k.strip()] = _value(v.strip())
    if args.out.exists():
        ap.error(f"{args.out} exists; name a new file")

    import torch

    from edgeseg.checkpoint import load_checkpoint, resolve_model, save_checkpoint
    from edgeseg.postprocess import PostprocessConfig
    from edgeseg.data import NormConfig
    from edgeseg.training.data import load_run_split
    from edgeseg.training.validation import ValSet, score_probs, val_probs

    ckpt = load_checkpoint(resolve_model(args.model))
    old = PostprocessConfig.from_dict(ckpt.postprocess_config)
    new = old.with_overrides(**changes)
    _, val_s, kinds, _ = load_run_split(args.split, args.data)
    val = ValSet.load(val_s, kinds, NormConfig.from_dict(ckpt.norm_config))
    net = ckpt.build_model()
    probs = val_probs(net, val, torch.device("cpu"), net.config.multiple)
    before = score_probs(probs, val, old)
    after = score_probs(probs, val, new)
    card = dict(ckpt.model_card)
    card["val"] = after
    card["postprocess"] = new.to_dict()
    card.setdefault("postprocess_revisions", []).append({
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "changed": {k: [getattr(old, k), getattr(new, k)] for k in changes},
        "split": str(args.split), "val_dsb_before": before["dsb_score"],
        "val_dsb_after": after["dsb_score"], "why": args.why})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(args.out, net, norm_config=ckpt.norm_config, target_config=ckpt.target_config,
                    postprocess_config=new, model_card=card)
    kinds_txt = ", ".join(f"{k}: {v['dsb_score']:.4f}" for k, v in after["per_kind"].items())
    print(f"{args.out}: {changes}; val DSB {before['dsb_score']:.4f} -> {after['dsb_score']:.4f} "
          f"(per kind {kinds_txt})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python3
"""Build the DSB2018 acquisition groups and the group split (training/splits/dsb2018_groups.json).

    .venv/bin/python scripts/make_group_split.py [--data DIR] [--out FILE] [--val-fraction 0.15]

The file is in the format of a run's split.json (train / val ids, kinds) plus the groups, the
per-image features they were built from and the method (edgeseg.training.groups), so
``edgeseg train --split FILE`` and ``edgeseg eval --ids FILE`` use it as it is.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgeseg.data import load_dataset, save_split  # noqa: E402
from edgeseg.training import groups as G  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path,
                    default=REPO.parent / "shared" / "data" / "dsb2018" / "stage1_train")
    ap.add_argument("--out", type=Path, default=REPO / "training" / "splits" / "dsb2018_groups.json")
    ap.add_argument("--val-fraction", type=float, default=0.15)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    samples = [s for s in load_dataset(args.data) if s.has_labels]
    feats = G.image_features(samples)
    groups = G.acquisition_groups(feats)
    train, val = G.group_split(feats, groups, val_fraction=args.val_fraction, seed=args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    val_groups = sorted({groups[i] for i in val})
    data = os.path.relpath(args.data.resolve(), REPO)  # portable: relative to the checkout
    save_split(args.out, train, val, data=data, seed=args.seed,
               val_fraction=args.val_fraction, max_images=0, method="group",
               how=G.__doc__.split("\n\n", 2)[2].replace("\n", " "),
               kinds={f.id: f.kind for f in feats}, groups=groups, val_groups=val_groups,
               features={f.id: f.to_dict() for f in feats})
    kinds = collections.Counter(f.kind for f in feats if f.id in set(val))
    print(f"{len(set(groups.values()))} groups; {len(train)} train / {len(val)} val images "
          f"({dict(kinds)}); val groups: {', '.join(val_groups)}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``edgeseg train``: train a U-Net on a labelled dataset, or resume a run exactly.

Imports nothing heavy at module level: torch is imported inside :func:`run`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

# CLI option -> TrainConfig field ("model__width": nested UNetConfig field).
_OVERRIDES = {
    "steps": "steps", "batch_size": "batch_size", "crop": "crop", "width": "model__width",
    "depth": "model__depth", "lr": "lr", "warmup_steps": "warmup_steps", "val_every": "val_every", "ckpt_every": "ckpt_every",
    "log_every": "log_every", "seed": "seed", "val_fraction": "val_fraction",
    "max_images": "max_images", "split": "split_file", "init": "init",
    "scale_min": "augment__scale_min", "scale_max": "augment__scale_max",
    "stain_jitter": "augment__stain_jitter", "freeze_bn": "freeze_bn",
    "kind_balance": "kind_balance", "size_reference": "size_reference",
}

_EPILOG = """\
examples:
  edgeseg train --data ../shared/data/dsb2018/stage1_train --out runs/r1 --steps 20000
  edgeseg train --resume runs/r1                 # continue exactly where it stopped
  edgeseg train --init default --data MY_DIR --out runs/mine   # adapt to your microscope
  torchrun --nproc_per_node=4 $(which edgeseg) train --data DIR --out runs/r2 --device cuda

Hyper-parameters not given take the TrainConfig defaults (new run) or the run's config.json
(--resume; only --val-every, --ckpt-every, --log-every may change then).
"""


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train", help="train a segmentation model (or resume a run)",
        description="Train the U-Net on a labelled dataset; writes config.json, split.json, "
                    "last.pt, best.pt, log.csv and curves.png to the run folder.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, metavar="DIR",
                   help="dataset folder (images/ + labels/, or DSB2018 Kaggle layout); on "
                        "--resume defaults to the run's")
    p.add_argument("--out", type=Path, metavar="RUN_DIR", help="new run folder")
    p.add_argument("--resume", type=Path, metavar="RUN_DIR",
                   help="continue this run from its last.pt (same config)")
    p.add_argument("--finalize", type=Path, metavar="RUN_DIR",
                   help="tune thresholds for the run's best.pt so far (the run may still be "
                        "training) and write RUN_DIR/final.pt with the full model card")
    p.add_argument("--steps", type=int, help="total optimisation steps (fixes the LR schedule)")
    p.add_argument("--batch-size", type=int, help="images per step (per GPU under torchrun)")
    p.add_argument("--crop", type=int, help="training crop size in px (multiple of 2**depth)")
    p.add_argument("--width", type=int, help="U-Net channels at full resolution")
    p.add_argument("--depth", type=int, help="U-Net down-samplings")
    p.add_argument("--lr", type=float, help="peak learning rate (AdamW, warm-up + cosine)")
    p.add_argument("--warmup-steps", type=int, help="linear LR warm-up steps")
    p.add_argument("--val-every", type=int, help="validate every N steps")
    p.add_argument("--ckpt-every", type=int, help="write last.pt every N steps")
    p.add_argument("--log-every", type=int, help="log.csv row every N steps")
    p.add_argument("--seed", type=int, help="seed of init, split and batches")
    p.add_argument("--val-fraction", type=float, help="fraction of images held out (per kind)")
    p.add_argument("--max-images", type=int, help="use a random subset of N images (0: all)")
    p.add_argument("--split", metavar="FILE",
                   help="train/val ids from this split file (e.g. training/splits/"
                        "dsb2018_groups.json, the acquisition-group split) instead of a seeded one")
    p.add_argument("--init", metavar="MODEL",
                   help="start from these weights: 'default', a checkpoint or a run folder "
                        "(fine-tuning; the width/depth must match)")
    p.add_argument("--kind-balance", type=float,
                   help="0: draw training images uniformly; 1: each image kind (fluorescence, "
                        "stained, bright-field) equally often; 0.5: rare kinds lifted by sqrt")
    p.add_argument("--scale-min", type=float, help="smallest zoom of scale augmentation")
    p.add_argument("--scale-max", type=float, help="largest zoom of scale augmentation")
    p.add_argument("--stain-jitter", type=float,
                   help="stain augmentation: also read stained images with stain vectors "
                        "perturbed by N(0, S) per component (e.g. 0.05; 0: off)")
    p.add_argument("--size-reference", type=float, metavar="PX",
                   help="bring every image to the size the runtime's size control gives a model "
                        "of this nucleus diameter before augmenting (default: the base model's "
                        "diameter with --init, else 0: images as they are)")
    p.add_argument("--freeze-bn", action=argparse.BooleanOptionalAction, default=None,
                   help="keep BatchNorm statistics as initialised (default: on with --init, "
                        "the fine-tuning recipe; off otherwise)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="default: cuda if available")
    p.add_argument("--workers", type=int, default=0,
                   help="batch-building processes (0: in the training process)")
    p.set_defaults(run=run)
    return p


def run(args: argparse.Namespace) -> int:
    from ._paths import check_writable

    for option, folder in (("--out", args.out), ("--resume", args.resume), ("--finalize", args.finalize)):
        if folder is not None:  # before torch is imported and the data is read
            check_writable(folder, folder=True, option=option)
    from ..errors import InputError
    from ..training.train import TrainConfig, load_run_config, train
    from ..training.data import default_data_dir

    overrides = {field: getattr(args, opt) for opt, field in _OVERRIDES.items()
                 if getattr(args, opt) is not None}
    if args.finalize is not None:
        if args.resume is not None or args.out is not None or overrides:
            raise InputError("--finalize takes only the run folder (and --device)")
        from ..training.train import finalize

        card = finalize(args.finalize, device="cpu" if args.device == "auto" else args.device,
                        progress=args.progress)
        v, pp = card["val"], card["postprocess"]
        print(f"finalized {args.finalize / 'best.pt'} (step {card['training']['steps']}): val DSB "
              f"{v['dsb_score']:.4f}, AP@0.5 {v['ap50']:.4f}, F1@0.5 {v['f1_50']:.4f} with seed="
              f"{pp['seed_threshold']} fg={pp['fg_threshold']} min_size={pp['min_size']}; wrote "
              f"{args.finalize / 'final.pt'}")
        return 0
    if args.resume is not None:
        if args.out is not None and args.out.resolve() != args.resume.resolve():
            raise InputError(f"--out {args.out} and --resume {args.resume} name different "
                             "folders; a resumed run continues in its own folder: drop --out.")
        run_dir = args.resume
        cfg = load_run_config(run_dir).replace(**overrides)
        data = args.data
    else:
        if args.out is None:
            raise InputError("edgeseg train needs --out RUN_DIR (a new run folder) or "
                             "--resume RUN_DIR (an existing one).")
        run_dir = args.out
        if args.init:  # fine-tuning: the base model's architecture and preprocessing
            from ..checkpoint import load_checkpoint
            from ..training.config import finetune_config

            cfg = finetune_config(load_checkpoint(args.init), **overrides)
        else:
            cfg = TrainConfig().replace(**overrides)
        data = args.data
        if data is None:
            data = default_data_dir()
            if not data.is_dir():
                raise InputError(f"no --data given and the default dataset {data} does not "
                                 "exist; pass --data DIR.")
    if args.workers < 0:
        raise InputError(f"--workers must be >= 0, got {args.workers}.")
    result = train(cfg, data, run_dir, resume=args.resume is not None, device=args.device,
                   workers=args.workers, progress=args.progress, handle_signals=True)
    if not result.is_main:  # other torchrun ranks: rank 0 reports
        return 0 if result.completed else 143
    if not result.completed:
        print(f"stopped at step {result.step}/{cfg.steps}; continue with: "
              f"edgeseg train --resume {run_dir}")
        return 143
    pp = result.postprocess or {}
    print(f"done: {result.step} steps in {result.wall_s / 60:.1f} min; best val DSB "
          f"{result.best_score:.4f} at step {result.best_step}, {result.tuned_score:.4f} with "
          f"final thresholds seed={pp.get('seed_threshold')} fg={pp.get('fg_threshold')} "
          f"min_size={pp.get('min_size')}; model: {run_dir / 'best.pt'}")
    return 0

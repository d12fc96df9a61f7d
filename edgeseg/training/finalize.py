"""Making a shippable model of a run: threshold tuning on the val split and the model card."""

from __future__ import annotations

import datetime
import logging
import os
from pathlib import Path
from typing import Any

import torch

from .._atomic import atomic_write_json
from .._version import __version__
from ..checkpoint import load_checkpoint, save_checkpoint
from ..model import count_params, gflops
from ..postprocess import PostprocessConfig
from .config import TrainConfig, load_run_config
from .data import load_run_split
from .validation import ValSet, score_probs, tune_postprocess, val_probs

log = logging.getLogger(__name__)

__all__ = ["final_card", "finalize", "tune_thresholds"]


def final_card(cfg: TrainConfig, base: dict, net: torch.nn.Module, res: dict, training_score: float,
               tuned: PostprocessConfig, table: list, *, steps: int, best_step: int, wall_s: float,
               hardware: dict, world: int = 1) -> dict:
    """The model card of a shipped model: provenance, architecture, training, val scores."""
    log.info("tuned post-processing: %s -> val DSB %.4f (%.4f with the training thresholds)",
             {k: getattr(tuned, k) for k in ("seed_threshold", "fg_threshold", "min_size")},
             res["dsb_score"], training_score)
    return {
        "name": "edgeseg U-Net nuclei segmenter",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "edgeseg_version": __version__,
        "task": "nuclei instance segmentation: 3-class semantic segmentation (background, "
                "body, border) + seeded-growth post-processing (edgeseg.postprocess)",
        **{k: v for k, v in base.items() if k not in ("step", "val")},
        "model": {"config": cfg.model.to_dict(), "params": count_params(net),
                  "gflops_256": gflops(cfg.model, 256, 256),
                  "gflops_1024": gflops(cfg.model, 1024, 1024)},
        "training": {"steps": steps, "planned_steps": cfg.steps, "best_step": best_step,
                     "images_seen": steps * cfg.batch_size * world, "wall_s": round(wall_s, 1)},
        "hardware": hardware,
        "val": res,
        "val_training_thresholds": {"postprocess": cfg.postprocess.to_dict(), "dsb_score": training_score},
        "postprocess": tuned.to_dict(),
        "tuning": table,
    }


def finalize(run_dir: str | os.PathLike, checkpoint: str = "best.pt", out: str = "final.pt",
             device: str = "cpu", progress: bool = False) -> dict:
    """Make a shippable model from a run's checkpoint, also while the run still trains.

    Tunes the post-processing on the run's val split with ``checkpoint``'s weights and writes
    ``RUN_DIR/<out>`` (tuned thresholds, full model card) and ``<out stem>_model_card.json``;
    ``edgeseg.checkpoint.export_default(RUN_DIR/<out>)`` then bundles it. Returns the card.
    """
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    ckpt = load_checkpoint(run_dir / checkpoint)
    _, val_s, kinds, _ = load_run_split(run_dir / "split.json", None)
    val = ValSet.load(val_s, kinds, cfg.norm, progress=progress, size_reference=cfg.size_reference)
    dev = torch.device(device)
    net = ckpt.build_model().to(dev)
    probs = val_probs(net, val, dev, cfg.model.multiple, progress=progress)
    training_score = score_probs(probs, val, cfg.postprocess)["dsb_score"]
    tuned, res, table = tune_thresholds(probs, val, cfg, progress=progress)
    base = dict(ckpt.model_card)
    sessions = base.get("sessions", [])
    step = int(base.get("step", sessions[-1]["end_step"] if sessions else cfg.steps))
    card = final_card(cfg, base, net, res, training_score, tuned, table, steps=step, best_step=step,
                      wall_s=sum(float(x.get("wall_s", 0.0)) for x in sessions),
                      hardware=sessions[-1] if sessions else {}, world=1)
    card["finalized_from"] = checkpoint
    save_checkpoint(run_dir / out, net.cpu(), norm_config=cfg.norm, target_config=cfg.targets,
                    postprocess_config=tuned, model_card=card)
    atomic_write_json(run_dir / f"{Path(out).stem}_model_card.json", card)
    return card


def tune_thresholds(probs: Any, val: ValSet, cfg: TrainConfig, progress: bool = False
                    ) -> tuple[PostprocessConfig, dict[str, Any], list[dict[str, Any]]]:
    """Grid-search seed_threshold x fg_threshold x min_size (the ``cfg.tune_*`` grids, starting
    from ``cfg.postprocess``) on val probabilities; returns (config, scores, table).

    With fewer than ``cfg.tune_min_images`` val images the thresholds stay ``cfg.postprocess``
    (for fine-tuning: the base model's) and the table is empty: a 3-parameter grid fitted to a
    couple of images fits those images (measured: stained-256x320-2 fine-tuned on 8 images, 2 for
    validation, scored 0.339 on the group's 22 others with the base thresholds, 0.280 with the
    tuned ones)."""
    if len(val) < cfg.tune_min_images:
        log.warning("threshold tuning skipped: %d val images, fewer than %d; keeping %s",
                    len(val), cfg.tune_min_images,
                    {k: getattr(cfg.postprocess, k)
                     for k in ("seed_threshold", "fg_threshold", "min_size")})
        return cfg.postprocess, score_probs(probs, val, cfg.postprocess), []
    return tune_postprocess(probs, val, cfg.postprocess, cfg.tune_seed_thresholds,
                            cfg.tune_fg_thresholds, cfg.tune_min_sizes, progress=progress)

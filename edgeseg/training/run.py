"""One training process's state: model, optimizer, schedule, step loop, validation, checkpoints.

:func:`edgeseg.training.train.train` sets a run up and drives it; rank 0 validates and writes the
run files (see that module for the run folder's layout).
"""

from __future__ import annotations

import logging
import math
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from .._atomic import atomic_write_json
from ..checkpoint import load_checkpoint, save_checkpoint
from ..errors import InputError, ModelError
from ..model import UNet
from .config import TrainConfig
from .data import TrainSet, iter_batches
from .runlog import RunLog
from .widen import can_widen, widen
from .validation import ValSet, score_probs, val_probs
from .finalize import final_card, tune_thresholds
from .losses import WarmupCosine, seg_loss

log = logging.getLogger(__name__)

__all__ = ["Dist", "TrainingRun", "hardware"]


@dataclass
@dataclass
class Dist:
    """Rank, world size and local rank of this process (torchrun's environment)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def any(self, flag: bool, dev: torch.device) -> bool:
        """True on every rank if ``flag`` is True on any rank."""
        if self.world == 1:
            return flag
        t = torch.tensor(float(flag), device=dev)
        dist.all_reduce(t)
        return bool(t.item())


def hardware(dev: torch.device, d: Dist) -> dict[str, Any]:
    """What the run ran on (recorded in the model card's sessions)."""
    hw = {"device": dev.type, "world_size": d.world, "torch": str(torch.__version__),
          "threads": torch.get_num_threads(), "platform": platform.platform(),
          "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count()}
    if dev.type == "cuda":
        hw["gpu"] = torch.cuda.get_device_name(dev)
    return hw


class TrainingRun:
    """The state of one training process; rank 0 validates and writes the run files."""

    def __init__(self, cfg: TrainConfig, run_dir: Path, dev: torch.device, d: Dist,
                 data: TrainSet, val: ValSet | None, card: dict, progress: bool) -> None:
        self.cfg, self.run_dir, self.dev, self.d = cfg, run_dir, dev, d
        self.data, self.val, self.card, self.progress = data, val, card, progress
        torch.manual_seed(cfg.seed)
        # channels-last on every device: 1.35x faster training steps on a 2-core CPU (oneDNN),
        # and the layout cuDNN prefers.
        self.model = UNet(cfg.model).to(dev).to(memory_format=torch.channels_last)
        params = list(self.model.parameters())
        self.opt = torch.optim.AdamW(
            [{"params": [p for p in params if p.ndim > 1], "weight_decay": cfg.weight_decay},
             {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0}], lr=cfg.lr)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, WarmupCosine(cfg.steps, cfg.warmup_steps, cfg.min_lr_ratio))
        self.amp_dtype = None
        if dev.type == "cuda" and cfg.amp:
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.step, self.best, self.best_step, self.wall0 = 0, -1.0, 0, 0.0
        self.sessions: list = []
        self.best_probs: list | None = None
        self.t0 = time.perf_counter()
        self.session = {"start_step": 0, **hardware(dev, d)}
        self.runlog = RunLog(run_dir / "log.csv")

    def restore(self, ckpt: Any) -> None:
        """Continue from a ``last.pt``: weights, optimizer, scheduler, scaler, RNG, step."""
        ts = ckpt.train_state or {}
        if ts.get("total_steps") != self.cfg.steps:
            raise ModelError(f"{ckpt.path} holds no training state of a {self.cfg.steps}-step "
                             f"run (found {ts.get('total_steps')!r}); it cannot be resumed.")
        self.model.load_state_dict(ckpt.state_dict)
        self.opt.load_state_dict(ts["optimizer"])
        self.sched.load_state_dict(ts["scheduler"])
        if ts["scaler"] and self.scaler.is_enabled():  # empty when saved without fp16 AMP
            self.scaler.load_state_dict(ts["scaler"])
        torch.set_rng_state(ts["torch_rng"])
        if self.dev.type == "cuda" and ts.get("cuda_rng"):
            torch.cuda.set_rng_state_all(ts["cuda_rng"])
        self.step, self.best, self.best_step = ts["step"], ts["best_score"], ts["best_step"]
        self.wall0, self.sessions = ts["wall_s"], list(ts["sessions"])
        self.session["start_step"] = self.step
        self.runlog.load(upto=self.step)
        log.info("resuming %s at step %d/%d (best val DSB %.4f at step %d)", self.run_dir,
                 self.step, self.cfg.steps, self.best, self.best_step)

    def init_from(self, ckpt: Any) -> None:
        """Start from another model's weights (fine-tuning). The architecture must match, or
        differ only by a larger width: then the weights are widened function-preservingly
        (:mod:`edgeseg.training.widen`)."""
        self.card["init"] = {"model": str(self.cfg.init), "path": str(ckpt.path)}
        if ckpt.model_config != self.cfg.model:
            if not can_widen(ckpt.model_config, self.cfg.model):
                raise InputError(f"--init {ckpt.path} is a {ckpt.model_config.to_dict()} U-Net "
                                 f"but this run trains {self.cfg.model.to_dict()}; pass the same "
                                 "--width/--depth (or only a larger --width) or another --init "
                                 "model.")
            self.model.load_state_dict(widen(ckpt.build_model(), self.cfg.model).state_dict())
            self.card["init"]["widened_from"] = ckpt.model_config.width
        else:
            self.model.load_state_dict(ckpt.state_dict)
        log.info("initialised from %s", ckpt.path)

    def wall_s(self) -> float:
        return self.wall0 + time.perf_counter() - self.t0

    def save(self, name: str, card: dict, postprocess: Any = None, state: bool = False) -> dict:
        """Write ``name`` (atomically) with ``card`` + sessions; returns the card written."""
        sessions = self.sessions + [dict(self.session, end_step=self.step,
                                         wall_s=round(time.perf_counter() - self.t0, 1))]
        ts = None
        if state:
            ts = {"step": self.step, "total_steps": self.cfg.steps,
                  "optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
                  "scaler": self.scaler.state_dict(), "torch_rng": torch.get_rng_state(),
                  "cuda_rng": torch.cuda.get_rng_state_all() if self.dev.type == "cuda" else [],
                  "best_score": self.best, "best_step": self.best_step,
                  "wall_s": self.wall_s(), "sessions": sessions}
        card = {**card, "sessions": sessions}
        save_checkpoint(self.run_dir / name, self.model, norm_config=self.cfg.norm,
                        target_config=self.cfg.targets,
                        postprocess_config=postprocess or self.cfg.postprocess,
                        model_card=card, train_state=ts)
        return card

    def validate(self) -> None:
        assert self.val is not None  # rank 0 only (internal invariant)
        probs = val_probs(self.model, self.val, self.dev, self.cfg.model.multiple, self.amp_dtype)
        res = score_probs(probs, self.val, self.cfg.postprocess)
        kinds = {k: v["dsb_score"] for k, v in res["per_kind"].items()}
        self.runlog.add(self.step, val_dsb=res["dsb_score"], val_ap50=res["ap50"],
                        val_f1_50=res["f1_50"], **{f"val_dsb_{k}": v for k, v in kinds.items()})
        log.info("step %d: val DSB %.4f AP50 %.4f F1 %.4f per kind %s", self.step,
                 res["dsb_score"], res["ap50"], res["f1_50"],
                 {k: round(v, 4) for k, v in kinds.items()})
        if res["dsb_score"] > self.best:
            self.best, self.best_step, self.best_probs = res["dsb_score"], self.step, probs
            self.save("best.pt", {**self.card, "step": self.step, "val": res})
        self.runlog.write()
        self.runlog.plot(self.run_dir / "curves.png")

    def train_mode(self) -> None:
        """Training mode; with ``freeze_bn`` the BatchNorm layers keep their running statistics
        (eval mode) while their scale and shift still learn: a few images of one lab cannot
        stand for the statistics the model was trained with."""
        self.model.train()
        if self.cfg.freeze_bn:
            for m in self.model.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.eval()

    def fit(self, workers: int, stop: list) -> None:
        cfg, dev, d = self.cfg, self.dev, self.d
        net = DDP(self.model, device_ids=[dev.index] if dev.type == "cuda" else None) \
            if d.world > 1 else self.model
        weights = torch.tensor(cfg.class_weights, dtype=torch.float32, device=dev)
        sleep = float(os.environ.get("EDGESEG_TEST_STEP_SLEEP") or 0)  # test hook
        acc, n_acc, t_acc = np.zeros(3), 0, 0.0
        pbar = None
        if self.progress and d.main:
            from tqdm.auto import tqdm
            pbar = tqdm(total=cfg.steps, initial=self.step, desc="train", unit="step")
        if self.step == 0 and cfg.init and d.main:
            self.validate()  # the starting weights are a candidate: best.pt is never worse on val
        d.barrier()
        self.train_mode()
        batches = iter_batches(self.data, self.step, cfg.steps, d.rank, workers, seed=cfg.seed,
                               batch_size=cfg.batch_size, crop=cfg.crop, augment=cfg.augment)
        t = time.perf_counter()
        try:
            for x, y in batches:
                x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
                x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast(dev.type, dtype=self.amp_dtype or torch.float32,
                                    enabled=self.amp_dtype is not None):
                    logits = net(x)
                loss, ce, dice = seg_loss(logits, y, weights, cfg.dice_weight)
                self.opt.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                self.scaler.step(self.opt)
                self.scaler.update()
                lr = self.opt.param_groups[0]["lr"]
                self.sched.step()
                self.step += 1
                parts = (loss.item(), ce.item(), dice.item())
                if not math.isfinite(parts[0]):
                    raise ModelError(f"training diverged at step {self.step} (loss {parts[0]});"
                                     " start a new run with a lower --lr.")
                acc += parts
                n_acc += 1
                if sleep:
                    time.sleep(sleep)
                t_acc += time.perf_counter() - t
                if pbar is not None:
                    pbar.update(1)
                    pbar.set_postfix(loss=f"{parts[0]:.3f}", best=f"{self.best:.3f}")
                end = self.step == cfg.steps
                if d.main and (self.step % cfg.log_every == 0 or end):
                    m = acc / n_acc
                    self.runlog.add(self.step, loss=m[0], ce=m[1], dice=m[2], lr=lr,
                                    images_per_s=n_acc * cfg.batch_size * d.world / t_acc,
                                    wall_s=self.wall_s())
                    acc, n_acc, t_acc = np.zeros(3), 0, 0.0
                if self.step % cfg.val_every == 0 or end:
                    if d.main:
                        self.validate()
                        self.train_mode()
                    d.barrier()
                stop[0] = d.any(stop[0], dev)
                if d.main and (self.step % cfg.ckpt_every == 0 or end or stop[0]):
                    self.save("last.pt", self.card, state=True)
                    self.runlog.write()
                if stop[0]:
                    break
                t = time.perf_counter()
        finally:
            if pbar is not None:
                pbar.close()

    def finish(self) -> tuple[dict, float]:
        """Tune the post-processing on the best model's val probabilities; rewrite ``best.pt``
        with the tuned thresholds and the full model card; write ``model_card.json``."""
        assert self.val is not None  # rank 0 only (internal invariant)
        cfg = self.cfg
        best = load_checkpoint(self.run_dir / "best.pt")
        net = best.build_model().to(self.dev)
        probs = self.best_probs
        if probs is None:  # the best step was reached in an earlier session: recompute
            probs = val_probs(net, self.val, self.dev, cfg.model.multiple, self.amp_dtype)
        tuned, res, table = tune_thresholds(probs, self.val, cfg, progress=self.progress)
        card = final_card(cfg, self.card, net, res, self.best, tuned, table, steps=cfg.steps,
                          best_step=self.best_step, wall_s=self.wall_s(),
                          hardware=hardware(self.dev, self.d), world=self.d.world)
        self.model.load_state_dict(best.state_dict)  # save() writes self.model: the best weights
        card = self.save("best.pt", card, postprocess=tuned)
        atomic_write_json(self.run_dir / "model_card.json", card)
        self.runlog.write()
        self.runlog.plot(self.run_dir / "curves.png")
        return tuned.to_dict(), res["dsb_score"]

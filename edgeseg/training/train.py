"""Training: U-Net on 3-class targets, validated through the real post-processing.

Run it with ``edgeseg train --data DIR --out RUN_DIR`` (see ``edgeseg train --help``) or call
:func:`train`. A run folder holds::

    config.json   TrainConfig (every hyper-parameter, incl. model/norm/target configs)
    split.json    train/val ids (stratified by image kind); training reads train ids only
    last.pt       training checkpoint (model, optimizer, scheduler, RNG, step), every ckpt_every
    best.pt       best model by val DSB score; at the end carries the tuned post-processing
    log.csv       step, loss parts, lr, images/s, wall time, val metrics
    curves.png    loss and val score curves
    model_card.json  written at the end (data, split, steps, hardware, wall time, val scores)

Resume exactly where a run stopped (even after SIGKILL) with ``edgeseg train --resume RUN_DIR``:
model, optimizer, scheduler, RNG and step come from ``last.pt``, and every step's batch is a
function of ``(seed, step, rank)`` (:mod:`edgeseg.training.data`), so the resumed run computes the
same weights as an uninterrupted one (bit-exact on the same device type and thread count; on
another device it continues correctly but rounds differently). SIGTERM/SIGINT under the CLI
checkpoint and stop cleanly (a second signal stops at once).

Defaults (:class:`~edgeseg.training.config.TrainConfig`) are the recipe of the shipped model, chosen
for a 2-core CPU: width 16, depth 4, 256^2 crops, batch 4 (~0.5 s/step), AdamW lr 1e-3 with 500
warm-up steps and cosine decay over 16000 steps (about 2.5 h).

Multi-GPU (DistributedDataParallel; one process per GPU, rank 0 writes all files)::

    torchrun --nproc_per_node=4 -m edgeseg.training.train --data DIR --out RUN_DIR --device cuda
    torchrun --nproc_per_node=4 $(which edgeseg) train --data DIR --out RUN_DIR --device cuda

``WORLD_SIZE``/``RANK``/``LOCAL_RANK`` come from torchrun; each rank draws its own batches
(rank in the seed), so the effective batch is ``batch_size * WORLD_SIZE``.

Threads: torch follows ``OMP_NUM_THREADS``; ``EDGESEG_NUM_THREADS`` overrides it
(``torch.set_num_threads``). Test hook: ``EDGESEG_TEST_STEP_SLEEP=<seconds>`` sleeps after every
step (used only by the SIGKILL-resume test to make steps slow enough to interrupt).
"""

from __future__ import annotations

import datetime
import logging
import math
import os
import platform
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

from .._atomic import atomic_write_json
from .._version import __version__
from ..checkpoint import load_checkpoint, save_checkpoint
from ..errors import BackendUnavailableError, InputError, ModelError
from ..model import UNet, count_params, gflops
from ..postprocess import PostprocessConfig
from .losses import WarmupCosine, seg_loss
from .config import RESUME_MUTABLE, TrainConfig, check_resume, load_run_config
from .data import (
    RunLog,
    TrainSet,
    ValSet,
    iter_batches,
    load_run_split,
    copy_split,
    make_split,
    score_probs,
    tune_postprocess,
    val_probs,
)

log = logging.getLogger(__name__)

__all__ = [
    "RESUME_MUTABLE",
    "TrainConfig",
    "TrainResult",
    "WarmupCosine",
    "load_run_config",
    "main",
    "seg_loss",
    "train",
    "tune_thresholds",
    "finalize",
]


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` did. ``completed``: the step budget was reached (else stopped by a
    signal); ``best_score``: best val DSB with the training thresholds; ``tuned_score`` and
    ``postprocess``: after threshold tuning (completed runs, rank 0 only)."""

    run_dir: Path
    step: int
    completed: bool
    best_score: float
    best_step: int
    tuned_score: float | None
    postprocess: dict | None
    wall_s: float
    is_main: bool = True


@dataclass
class _Dist:
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


def _setup(device: str) -> tuple[torch.device, _Dist]:
    threads = os.environ.get("EDGESEG_NUM_THREADS")
    if threads:
        torch.set_num_threads(int(threads))
    d = _Dist(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
              int(os.environ.get("LOCAL_RANK", "0")))
    if device not in ("auto", "cpu", "cuda"):
        raise InputError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}.")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailableError("--device cuda was asked for but torch sees no CUDA GPU "
                                      f"(torch {torch.__version__}); use --device cpu.")
    dev = torch.device("cuda", d.local_rank) if device == "cuda" else torch.device("cpu")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if d.world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return dev, d


def _hardware(dev: torch.device, d: _Dist) -> dict[str, Any]:
    hw = {"device": dev.type, "world_size": d.world, "torch": str(torch.__version__),
          "threads": torch.get_num_threads(), "platform": platform.platform(),
          "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count()}
    if dev.type == "cuda":
        hw["gpu"] = torch.cuda.get_device_name(dev)
    return hw


def train(cfg: TrainConfig | None, data_dir: str | os.PathLike | None,
          run_dir: str | os.PathLike, *, resume: bool = False, device: str = "auto",
          workers: int = 0, progress: bool = False, handle_signals: bool = False) -> TrainResult:
    """Train a new run in ``run_dir``, or continue it exactly (``resume=True``).

    Args:
        cfg: hyper-parameters; on resume ``None`` means the run's own ``config.json``, and a
            config differing in anything but :data:`RESUME_MUTABLE` raises :class:`InputError`.
        data_dir: dataset folder (any layout :func:`edgeseg.data.load_dataset` reads); on
            resume ``None`` means the folder recorded in ``split.json``.
        device: "auto", "cpu" or "cuda" (AMP on CUDA only; channels-last everywhere).
        workers: processes building batches (0: in this process); results do not depend on it.
        progress: show tqdm bars.
        handle_signals: on SIGTERM/SIGINT checkpoint and return ``completed=False`` instead of
            dying (the CLI turns this on; needs the main thread).
    """
    run_dir = Path(run_dir)
    dev, d = _setup(device)
    if resume:
        stored = load_run_config(run_dir)
        cfg = stored if cfg is None else cfg
        check_resume(stored, cfg, run_dir)
    else:
        cfg = TrainConfig() if cfg is None else cfg
        if (run_dir / "config.json").exists():
            raise InputError(f"{run_dir} already holds a run (config.json); continue it with "
                             f"--resume {run_dir}, or pass a new --out folder.")
    split_path = run_dir / "split.json"
    if d.main:
        for stale in run_dir.glob(".*.tmp"):  # left by a process killed mid-write
            stale.unlink()
        if not resume or not split_path.is_file():  # a new run's split.json: left by a failed start
            if data_dir is None:
                raise InputError("no dataset given: pass --data DIR (images + labels).")
            if cfg.split_file:
                copy_split(Path(cfg.split_file), split_path)
            else:
                make_split(Path(data_dir).resolve(), split_path, val_fraction=cfg.val_fraction,
                           seed=cfg.seed, max_images=cfg.max_images)
    d.barrier()
    train_s, val_s, kinds, data_dir = load_run_split(split_path, data_dir)
    t = time.perf_counter()
    data = TrainSet(train_s, cfg.norm, cfg.targets, progress=progress and d.main,
                    keep_labels=cfg.augment.rescales, kinds=kinds,
                    kind_balance=cfg.kind_balance, stain_jitter=cfg.augment.stain_jitter,
                    seed=cfg.seed)
    val = ValSet.load(val_s, kinds, cfg.norm, progress=progress and d.main) if d.main else None
    log.info("loaded %d train images (%.0f MB) and %d val images in %.1f s", len(data),
             data.nbytes / 2**20, len(val_s), time.perf_counter() - t)
    card = {"data": {"root": str(data_dir), "n_train": len(train_s), "n_val": len(val_s),
                     "split": "split.json", "val_fraction": cfg.val_fraction, "seed": cfg.seed,
                     "max_images": cfg.max_images,
                     "val_kinds": {k: sum(kinds.get(s.id) == k for s in val_s)
                                   for k in sorted({kinds.get(s.id) for s in val_s})}},
            "train_config": cfg.to_dict(),
            # the size Segmenter(diameter=...) rescales nuclei to (scale augmentation around it)
            "nucleus_diameter": round(data.nucleus_diameter, 2)}
    run = _Run(cfg, run_dir, dev, d, data, val, card, progress)
    if resume and (run_dir / "last.pt").is_file():
        run.restore(load_checkpoint(run_dir / "last.pt"))
    elif cfg.init:
        run.init_from(load_checkpoint(cfg.init))
    if d.main:  # only now that the data is read: a failed start must not block the same command
        atomic_write_json(run_dir / "config.json", cfg.to_dict())
    stop = [False]
    old: dict = {}
    if handle_signals and threading.current_thread() is threading.main_thread():
        def on_signal(signum: int, frame: Any) -> None:
            if stop[0]:  # a second signal: stop now, without checkpoint
                raise KeyboardInterrupt
            log.warning("signal %d: checkpointing and stopping after this step (send it again "
                        "to stop at once)", signum)
            stop[0] = True
        old = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        run.fit(workers, stop)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    completed = run.step >= cfg.steps
    tuned = None
    if completed and d.main:
        tuned = run.finish()
    elif not completed:
        log.warning("stopped at step %d/%d; continue with --resume %s", run.step, cfg.steps,
                    run_dir)
    d.barrier()
    return TrainResult(run_dir, run.step, completed, run.best, run.best_step,
                       tuned[1] if tuned else None, tuned[0] if tuned else None,
                       run.wall_s(), d.main)


class _Run:
    """The state of one training process; rank 0 validates and writes the run files."""

    def __init__(self, cfg: TrainConfig, run_dir: Path, dev: torch.device, d: _Dist,
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
        self.session = {"start_step": 0, **_hardware(dev, d)}
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
        """Start from another model's weights (fine-tuning); the architecture must match."""
        if ckpt.model_config != self.cfg.model:
            raise InputError(f"--init {ckpt.path} is a {ckpt.model_config.to_dict()} U-Net but "
                             f"this run trains {self.cfg.model.to_dict()}; pass the same --width/"
                             "--depth or another --init model.")
        self.model.load_state_dict(ckpt.state_dict)
        self.card["init"] = {"model": str(self.cfg.init), "path": str(ckpt.path)}
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
                          hardware=_hardware(self.dev, self.d), world=self.d.world)
        self.model.load_state_dict(best.state_dict)  # save() writes self.model: the best weights
        card = self.save("best.pt", card, postprocess=tuned)
        atomic_write_json(self.run_dir / "model_card.json", card)
        self.runlog.write()
        self.runlog.plot(self.run_dir / "curves.png")
        return tuned.to_dict(), res["dsb_score"]


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
    val = ValSet.load(val_s, kinds, cfg.norm, progress=progress)
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
    from ``cfg.postprocess``) on val probabilities; returns (config, scores, table)."""
    return tune_postprocess(probs, val, cfg.postprocess, cfg.tune_seed_thresholds,
                            cfg.tune_fg_thresholds, cfg.tune_min_sizes, progress=progress)


def main(argv: list[str] | None = None) -> int:
    """``python -m edgeseg.training.train ARGS`` == ``edgeseg train ARGS`` (for torchrun)."""
    from ..cli import main as cli_main
    return cli_main(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

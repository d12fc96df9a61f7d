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

import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from .._atomic import atomic_write_json
from ..checkpoint import load_checkpoint
from ..errors import BackendUnavailableError, InputError
from .config import RESUME_MUTABLE, TrainConfig, check_resume, load_run_config
from .data import TrainSet, copy_split, load_run_split, make_split
from .validation import ValSet
from .finalize import finalize, tune_thresholds
from .losses import WarmupCosine, seg_loss
from .run import Dist, TrainingRun

log = logging.getLogger(__name__)

__all__ = [
    "RESUME_MUTABLE",
    "TrainConfig",
    "TrainResult",
    "WarmupCosine",
    "finalize",
    "load_run_config",
    "main",
    "seg_loss",
    "train",
    "tune_thresholds",
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


def _setup(device: str) -> tuple[torch.device, Dist]:
    threads = os.environ.get("EDGESEG_NUM_THREADS")
    if threads:
        torch.set_num_threads(int(threads))
    d = Dist(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
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
                    seed=cfg.seed, size_reference=cfg.size_reference)
    val = ValSet.load(val_s, kinds, cfg.norm, progress=progress and d.main,
                      size_reference=cfg.size_reference) if d.main else None
    log.info("loaded %d train images (%.0f MB) and %d val images in %.1f s", len(data),
             data.nbytes / 2**20, len(val_s), time.perf_counter() - t)
    card = {"data": {"root": str(data_dir), "n_train": len(train_s), "n_val": len(val_s),
                     "split": "split.json", "val_fraction": cfg.val_fraction, "seed": cfg.seed,
                     "max_images": cfg.max_images,
                     "val_kinds": {k: sum(kinds.get(s.id) == k for s in val_s)
                                   for k in sorted({kinds.get(s.id) for s in val_s})}},
            "train_config": cfg.to_dict(),
            # the size Segmenter(diameter=...) rescales nuclei to (scale augmentation around it)
            # (the size_reference the images were brought to, when one was set)
            "nucleus_diameter": round(cfg.size_reference or data.nucleus_diameter, 2)}
    run = TrainingRun(cfg, run_dir, dev, d, data, val, card, progress)
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


def main(argv: list[str] | None = None) -> int:
    """``python -m edgeseg.training.train ARGS`` == ``edgeseg train ARGS`` (for torchrun)."""
    from ..cli import main as cli_main
    return cli_main(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

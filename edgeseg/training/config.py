"""``TrainConfig``: every hyper-parameter of a training run, saved as ``RUN_DIR/config.json``.

The defaults are the recipe of the shipped model, chosen for a 2-core CPU: U-Net width 16,
depth 4 (1.9 M params, 96 GFLOP per 1024^2 frame), 256^2 crops, batch 4 (~0.5 s/step with
channels-last), AdamW lr 1e-3, 500 warm-up steps then cosine decay over 16000 steps.
"""

from __future__ import annotations

import dataclasses
import math
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .augment import AugmentConfig
from ..data import NormConfig
from ..errors import DataError, InputError
from ..model import UNetConfig
from ..postprocess import PostprocessConfig
from ..targets import NUM_CLASSES, TargetConfig

__all__ = ["RESUME_MUTABLE", "TrainConfig", "load_run_config", "check_resume",
           "finetune_config"]

# Fields that may differ on --resume: they change what is logged/saved, not the weights.
RESUME_MUTABLE = frozenset({"val_every", "ckpt_every", "log_every"})

_NESTED = {"model": UNetConfig, "norm": NormConfig, "targets": TargetConfig,
           "postprocess": PostprocessConfig, "augment": AugmentConfig}


@dataclass(frozen=True)
class TrainConfig:
    """Every hyper-parameter of a training run (saved as ``RUN_DIR/config.json``).

    The schedule (linear warm-up then cosine decay to ``lr * min_lr_ratio``) spans ``steps``,
    which therefore cannot change on resume. ``postprocess`` is used for validation during
    training; the tuned thresholds are searched over the ``tune_*`` grids at the end.
    """

    model: UNetConfig = field(default_factory=UNetConfig)
    # the recipe: stained images as their haematoxylin channel, scale augmentation 0.4x-2.5x
    norm: NormConfig = field(default_factory=lambda: NormConfig(colour="hematoxylin"))
    targets: TargetConfig = field(default_factory=TargetConfig)
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    augment: AugmentConfig = field(
        default_factory=lambda: AugmentConfig(scale_min=0.4, scale_max=2.5))
    steps: int = 16000
    batch_size: int = 4
    crop: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-2
    warmup_steps: int = 500
    min_lr_ratio: float = 0.01
    class_weights: tuple = (1.0, 1.0, 3.0)
    dice_weight: float = 1.0
    amp: bool = True
    seed: int = 0
    val_fraction: float = 0.1
    kind_balance: float = 0.0  # 0: images drawn uniformly; 1: each kind (fluorescence, ...) equally
    freeze_bn: bool = False  # BatchNorm running statistics stay as initialised (fine-tuning)
    max_images: int = 0
    val_every: int = 1000
    ckpt_every: int = 200
    log_every: int = 50
    tune_seed_thresholds: tuple = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
    tune_fg_thresholds: tuple = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
    tune_min_sizes: tuple = (0, 8, 16, 32, 48, 64)
    tune_min_images: int = 10  # fewer val images: the thresholds are kept, not tuned
    split_file: str = ""  # train/val ids from this split file (e.g. the group split); "" = seeded
    init: str = ""  # start from these weights ("default", a checkpoint or run folder); "" = random
    # > 0: every training and val image is first zoomed as the runtime's size control zooms a
    # frame for a model of this nucleus diameter (px), then augmented; 0: images as they are.
    # Fine-tuning sets the base model's diameter: the lab's images are learnt at the size the
    # base model (and `diameter="auto"`) will show them.
    size_reference: float = 0.0

    def __post_init__(self) -> None:
        for name, cls in _NESTED.items():
            if not isinstance(getattr(self, name), cls):
                raise InputError(f"TrainConfig.{name} must be a {cls.__name__}, got "
                                 f"{type(getattr(self, name)).__name__}.")
        for name in ("class_weights", "tune_seed_thresholds", "tune_fg_thresholds",
                     "tune_min_sizes"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        ints = {"steps": 1, "batch_size": 1, "crop": 8, "warmup_steps": 0, "seed": 0,
                "tune_min_images": 1,
                "max_images": 0, "val_every": 1, "ckpt_every": 1, "log_every": 1}
        for name, lo in ints.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise InputError(f"TrainConfig.{name} must be an integer >= {lo}, got {v!r}.")
        for name in ("lr", "weight_decay", "min_lr_ratio", "dice_weight", "val_fraction"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                    or v < 0:
                raise InputError(f"TrainConfig.{name} must be a finite number >= 0, got {v!r}.")
        if isinstance(self.size_reference, bool) or not isinstance(self.size_reference, (int, float)) \
                or not math.isfinite(self.size_reference) or self.size_reference < 0:
            raise InputError(f"TrainConfig.size_reference must be a diameter in px >= 0 (0: off), "
                             f"got {self.size_reference!r}.")
        if not self.lr > 0:
            raise InputError(f"TrainConfig.lr must be > 0, got {self.lr!r}; e.g. 2e-3.")
        if not isinstance(self.freeze_bn, bool):
            raise InputError(f"TrainConfig.freeze_bn must be true or false, got "
                             f"{self.freeze_bn!r}.")
        if isinstance(self.kind_balance, bool) or not isinstance(self.kind_balance, (int, float)) \
                or not 0.0 <= self.kind_balance <= 1.0:
            raise InputError(f"TrainConfig.kind_balance must be a number in [0, 1], got "
                             f"{self.kind_balance!r}; e.g. 0.5 (0: uniform over images).")
        if not 0 < self.val_fraction < 1:
            raise InputError(f"TrainConfig.val_fraction must be in (0, 1), got "
                             f"{self.val_fraction!r}; e.g. 0.1.")
        m = self.model.multiple
        if self.crop % m:
            raise InputError(f"crop {self.crop} is not a multiple of 2**depth = {m}; use e.g. "
                             f"{max(m, self.crop - self.crop % m)}.")
        if len(self.class_weights) != NUM_CLASSES or any(w < 0 for w in self.class_weights):
            raise InputError(f"class_weights needs {NUM_CLASSES} numbers >= 0 (background, "
                             f"body, border), got {self.class_weights!r}.")
        if not (self.tune_seed_thresholds and self.tune_fg_thresholds and self.tune_min_sizes):
            raise InputError("the tune_* grids must each hold at least one value.")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            d[f.name] = v.to_dict() if f.name in _NESTED else (list(v) if isinstance(v, tuple)
                                                               else v)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise InputError(f"TrainConfig got unknown keys {unknown}; valid: {sorted(known)}.")
        kw = dict(d)
        for name, sub in _NESTED.items():
            if name in kw and not isinstance(kw[name], sub):
                kw[name] = sub.from_dict(kw[name])
        return cls(**kw)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with fields replaced; ``model__width=32``-style keys replace nested fields."""
        nested: dict[str, dict[str, Any]] = {}
        flat: dict[str, Any] = {}
        for k, v in changes.items():
            if "__" in k:
                outer, inner = k.split("__", 1)
                nested.setdefault(outer, {})[inner] = v
            else:
                flat[k] = v
        for outer, inner in nested.items():
            if outer not in _NESTED:
                raise InputError(f"TrainConfig has no nested config {outer!r}.")
            flat[outer] = dataclasses.replace(flat.get(outer, getattr(self, outer)), **inner)
        return dataclasses.replace(self, **flat)

    def diff(self, other: TrainConfig) -> dict[str, tuple[Any, Any]]:
        """``{field: (self value, other value)}`` of fields that differ (nested as 'a.b')."""
        a, b = self.to_dict(), other.to_dict()
        out: dict[str, tuple[Any, Any]] = {}
        for k in a:
            if isinstance(a[k], dict):
                for kk in sorted(set(a[k]) | set(b[k])):
                    if a[k].get(kk) != b[k].get(kk):
                        out[f"{k}.{kk}"] = (a[k].get(kk), b[k].get(kk))
            elif a[k] != b[k]:
                out[k] = (a[k], b[k])
        return out


def load_run_config(run_dir: str | os.PathLike) -> TrainConfig:
    """The :class:`TrainConfig` of an existing run folder (``config.json``)."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise InputError(f"{run_dir} is not a run folder (no config.json); pass the --out folder "
                         "of an earlier 'edgeseg train', or start a new run with --out.")
    try:
        return TrainConfig.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError) as exc:
        raise DataError(f"{path} is not a valid training config ({exc}).") from exc


def check_resume(stored: TrainConfig, asked: TrainConfig, run_dir: Path) -> None:
    diff = {k: v for k, v in stored.diff(asked).items() if k not in RESUME_MUTABLE}
    if diff:
        lines = "; ".join(f"{k}: run has {a!r}, asked {b!r}" for k, (a, b) in sorted(diff.items()))
        raise InputError(
            f"cannot resume {run_dir} with a different configuration ({lines}). Resuming must "
            "reproduce the same run: the LR schedule spans 'steps' and the batches derive from "
            f"the seed, so only {', '.join(sorted(RESUME_MUTABLE))} may change. Drop the other "
            "options, or start a new run with --out.")


def finetune_config(base: Any, init: str, **overrides: Any) -> TrainConfig:
    """The fine-tuning recipe ("adapt to your microscope"): start from ``init`` (a loaded
    :class:`~edgeseg.checkpoint.Checkpoint` ``base``) with its architecture, preprocessing and
    class encoding; a short schedule (600 steps) at a low learning rate (2e-4, 30 warm-up steps),
    strong augmentation (scale 0.5x-2x, stronger intensity/blur/noise), BatchNorm statistics
    frozen (a few images cannot stand for them), a quarter of the images for validation, every
    100 steps and before the first (the base itself is a candidate for ``best.pt``), and the
    lab's images learnt and validated at the size the base model's size control will show them
    (``size_reference``: the base's nucleus diameter), so that the fine-tuned model keeps the
    base's diameter and its operating point. ``overrides`` are ``TrainConfig.replace`` keys."""
    from ..sizing import DEFAULT_DIAMETER

    diameter = (base.model_card or {}).get("nucleus_diameter")
    if not (isinstance(diameter, (int, float)) and diameter > 0):
        diameter = DEFAULT_DIAMETER  # what ModelInfo.diameter assumes for such a model
    recipe = TrainConfig(
        model=base.model_config, norm=NormConfig.from_dict(base.norm_config),
        targets=TargetConfig.from_dict(base.target_config),
        postprocess=PostprocessConfig.from_dict(base.postprocess_config),
        augment=AugmentConfig(intensity_scale=0.3, intensity_shift=0.15, gamma=0.7,
                              blur_prob=0.3, noise_prob=0.4, scale_min=0.5, scale_max=2.0),
        steps=600, lr=2e-4, warmup_steps=30, val_fraction=0.25, val_every=100, ckpt_every=50,
        log_every=10, init=init, freeze_bn=True, size_reference=float(diameter))
    return recipe.replace(**overrides)

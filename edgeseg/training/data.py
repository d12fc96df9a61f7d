"""Training data: the run's split, images preloaded in memory, and deterministic batches.

* :func:`make_split` / :func:`load_run_split`: choose (or reload) the train/val ids of a run
  (``RUN_DIR/split.json``), stratified by image kind.
* :class:`TrainSet`: the train images normalised with the run's ``NormConfig`` (the same
  :func:`edgeseg.data.normalize` the runtime uses, stored as float16) and their 3-class targets
  (:func:`edgeseg.targets.encode`, uint8), loaded once.
* :func:`make_batch`: the batch of one training step, a pure function of
  ``(seed, step, rank)``: batch composition and augmentation come from
  ``np.random.default_rng([seed, step, rank])``, so a resumed run sees exactly the batches an
  uninterrupted run would, whatever the number of loader workers.
* :class:`ValSet`: normalised val images at full size with their instance labels and kinds.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import signal
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from .._atomic import atomic_open, atomic_write_text
from .augment import STAIN_VARIANTS, AugmentConfig, augment_labels, augment_pair, jitter_stains
from ..data import (
    IMAGE_KINDS,
    NormConfig,
    Sample,
    load_dataset,
    load_split,
    normalize,
    sample_kinds,
    save_split,
    split_dataset,
    uses_stain,
)
from ..errors import DataError
from ..evaluate import resize_labels
from ..metrics import score_image
from ..postprocess import PostprocessConfig, label_instances
from ..sizing import instance_diameters, resize_image, zoom_for
from ..targets import TargetConfig, encode
from ..tiling import pad_to_multiple  # the runtime's padding: validation = deployment

log = logging.getLogger(__name__)

__all__ = [
    "RunLog",
    "StepBatches",
    "TrainSet",
    "ValSet",
    "default_data_dir",
    "iter_batches",
    "copy_split",
    "load_run_split",
    "make_batch",
    "make_split",
    "sampling_probs",
    "predict_probs",
    "score_probs",
    "tune_postprocess",
    "val_probs",
]


def default_data_dir() -> Path:
    """Where the DSB2018 training data lives beside a checkout: ``<repo>/../shared/data/...``."""
    return Path(__file__).resolve().parents[2] / "shared" / "data" / "dsb2018" / "stage1_train"


def _tqdm(it: Any, progress: bool, **kw: Any) -> Any:
    if not progress:
        return it
    from tqdm.auto import tqdm
    return tqdm(it, **kw)


def make_split(data_dir: Path, split_path: Path, *, val_fraction: float, seed: int,
               max_images: int = 0) -> tuple[list[Sample], list[Sample], dict[str, str]]:
    """Choose train/val samples of ``data_dir`` (stratified by image kind) and write them to
    ``split_path``. ``max_images > 0`` first keeps a seeded random subset of that many images.
    Returns (train, val, kinds)."""
    samples = [s for s in load_dataset(data_dir) if s.has_labels]
    if not samples:
        raise DataError(f"no labelled images under {data_dir}; training needs labels "
                        "(root/labels/<id>.png or root/<id>/masks/*.png).")
    if max_images and max_images < len(samples):
        pick = np.random.default_rng([seed, 0x5EED]).permutation(len(samples))[:max_images]
        samples = [samples[i] for i in sorted(pick)]
    kinds = sample_kinds(samples)
    train, val = split_dataset(samples, val_fraction=val_fraction, seed=seed, kinds=kinds)
    if not train or not val:
        raise DataError(f"{len(samples)} labelled images in {data_dir} give {len(train)} train and "
                        f"{len(val)} val images; training needs at least one of each. Use more "
                        "images (--max-images) or another --val-fraction.")
    save_split(split_path, train, val, data=str(data_dir), seed=seed, val_fraction=val_fraction,
               max_images=max_images, kinds={s.id: kinds[s.id] for s in samples})
    log.info("split: %d train, %d val images from %s", len(train), len(val), data_dir)
    return train, val, kinds


def copy_split(source: Path, split_path: Path) -> None:
    """Use a prepared split file (e.g. the group split of :mod:`edgeseg.training.groups`) as the
    run's ``split.json`` (validated with :func:`edgeseg.data.load_split`)."""
    obj = load_split(source)
    obj["source"] = str(source)
    save_split(split_path, obj.pop("train"), obj.pop("val"), **obj)
    log.info("split: %d train, %d val images from %s", len(load_split(split_path)["train"]),
             len(load_split(split_path)["val"]), source)


def load_run_split(split_path: Path, data_dir: Path | None) -> tuple[list[Sample], list[Sample],
                                                                    dict[str, str], Path]:
    """Reload a run's split; the data folder defaults to the one recorded in the split file.
    Returns (train, val, kinds, data_dir)."""
    split = load_split(split_path)
    data_dir = Path(data_dir if data_dir is not None else split.get("data", ""))
    by_id = {s.id: s for s in load_dataset(data_dir)}
    missing = [i for i in split["train"] + split["val"] if i not in by_id]
    if missing:
        raise DataError(f"{len(missing)} images of the run's split {split_path} are not in "
                        f"{data_dir} (e.g. {missing[:3]}); pass the --data folder the run was "
                        "started with.")
    kinds = dict(split.get("kinds") or {})
    train = [by_id[i] for i in split["train"]]
    val = [by_id[i] for i in split["val"]]
    if any(s.id not in kinds for s in train + val):
        kinds.update(sample_kinds([s for s in train + val if s.id not in kinds]))
    return train, val, kinds, data_dir


class TrainSet:
    """Normalised training images (float16) and encoded targets (uint8), held in memory."""

    def __init__(self, samples: Sequence[Sample], norm: NormConfig, targets: TargetConfig,
                 progress: bool = False, keep_labels: bool = False,
                 kinds: dict[str, str] | None = None, kind_balance: float = 0.0,
                 stain_jitter: float = 0.0, seed: int = 0, size_reference: float = 0.0) -> None:
        self.ids: list[str] = []
        self.images: list[np.ndarray] = []
        # per image: other readings of a stained image (perturbed stain vectors), or []
        self.variants: list[list[np.ndarray]] = []
        stain_rng = np.random.default_rng([seed, 0x57A1])
        self.targets: list[np.ndarray] = []
        self.labels: list[np.ndarray] = []  # instance labels, kept for scale augmentation
        self.target_cfg = targets
        self.diameters: list[float] = []  # median nucleus diameter (px) of each image
        self.zooms: list[float] = []  # per image: the size_reference zoom applied at load
        for s in _tqdm(samples, progress, desc="load train", unit="img"):
            raw = s.image()
            image, _ = normalize(raw, norm)
            variants = ([normalize(raw, norm, stains=jitter_stains(stain_jitter, stain_rng))[0]
                         for _ in range(STAIN_VARIANTS)]
                        if stain_jitter > 0 and uses_stain(raw, norm) else [])
            labels = s.labels()
            if labels.shape != image.shape:
                raise DataError(f"sample {s.id}: labels {labels.shape} and image {image.shape} "
                                "differ in size; fix the label file.")
            zoom = size_zoom(labels, size_reference)
            if zoom != 1.0:
                image, labels = zoom_normalised(image, labels, zoom)
                variants = [zoom_normalised(v, None, zoom)[0] for v in variants]
            self.zooms.append(zoom)
            self.variants.append([v.astype(np.float16) for v in variants])
            self.ids.append(s.id)
            self.images.append(image.astype(np.float16))
            _, areas = np.unique(labels[labels > 0], return_counts=True)
            if areas.size:
                self.diameters.append(float(np.median(2.0 * np.sqrt(areas / np.pi))))
            if keep_labels:  # targets are encoded per crop, after zooming
                self.labels.append(labels.astype(np.uint16 if labels.max() < 65536 else np.int32))
            else:
                self.targets.append(encode(labels, targets))
        if not self.ids:
            raise DataError("no training images; check the dataset folder and the split.")
        self.probs = sampling_probs([(kinds or {}).get(i, "") for i in self.ids], kind_balance)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def nucleus_diameter(self) -> float:
        """Median over images of the median nucleus diameter: the size the model learns."""
        return float(np.median(self.diameters)) if self.diameters else 0.0

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.images + self.targets + self.labels
                   + [v for vs in self.variants for v in vs])

    def image(self, i: int, rng: np.random.Generator) -> np.ndarray:
        """Image ``i`` as training reads it: a stained image with stain augmentation is one of
        its readings (the plain one or a perturbed one) drawn with ``rng``; others draw nothing,
        so runs without stain augmentation see the batches they always did."""
        vs = self.variants[i]
        if not vs:
            return self.images[i]
        k = int(rng.integers(len(vs) + 1))
        return self.images[i] if k == 0 else vs[k - 1]


def sampling_probs(kinds: Sequence[str], balance: float) -> np.ndarray | None:
    """Per-image draw probabilities ``∝ n_kind ** -balance`` (``None``: uniform over images).

    ``balance`` 0 draws images uniformly (kinds as common as in the data); 1 gives every kind
    the same share of batches; 0.5 lifts rare kinds (bright-field, stained) by the square root.
    """
    if balance <= 0 or len(set(kinds)) < 2:
        return None
    names, inverse, counts = np.unique(np.asarray(kinds), return_inverse=True, return_counts=True)
    w = counts[inverse].astype(np.float64) ** -float(balance)
    return w / w.sum()


def make_batch(data: TrainSet, *, seed: int, step: int, rank: int, batch_size: int, crop: int,
               augment: AugmentConfig) -> tuple[np.ndarray, np.ndarray]:
    """Images ``B x 1 x crop x crop`` float32 and targets ``B x crop x crop`` int64 of one step.

    Deterministic: a function of ``(seed, step, rank)`` and the data only.
    """
    rng = np.random.default_rng([seed, step, rank])
    probs = getattr(data, "probs", None)
    idx = (rng.integers(len(data), size=batch_size) if probs is None
           else rng.choice(len(data), size=batch_size, p=probs))
    x = np.empty((batch_size, 1, crop, crop), np.float32)
    y = np.empty((batch_size, crop, crop), np.int64)
    for b, i in enumerate(idx):
        image = data.image(i, rng)
        if augment.rescales:
            x[b, 0], y[b] = augment_labels(image, data.labels[i], crop, augment, rng,
                                           lambda lab: encode(lab, data.target_cfg))
        else:
            x[b, 0], y[b] = augment_pair(image, data.targets[i], crop, augment, rng)
    return x, y


class StepBatches(torch.utils.data.Dataset):
    """Map-style dataset whose item ``k`` is the batch of step ``start + k`` (for DataLoader
    workers: each worker builds whole batches; order and content do not depend on workers)."""

    def __init__(self, data: TrainSet, start: int, stop: int, rank: int, **batch_kw: Any) -> None:
        self.data, self.start, self.stop, self.rank, self.kw = data, start, stop, rank, batch_kw

    def __len__(self) -> int:
        return max(self.stop - self.start, 0)

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = make_batch(self.data, step=self.start + k, rank=self.rank, **self.kw)
        return torch.from_numpy(x), torch.from_numpy(y)


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    # Ctrl-C and `timeout` signal the whole process group: the training process checkpoints and
    # shuts the workers down itself; a worker dying of the signal would crash that instead.
    # (A worker whose parent is gone exits by itself: torch's worker watchdog.)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def iter_batches(data: TrainSet, start: int, stop: int, rank: int, workers: int,
                 **batch_kw: Any) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of steps ``start .. stop-1`` in order, built in ``workers`` processes (0: here)."""
    ds = StepBatches(data, start, stop, rank, **batch_kw)
    if workers <= 0:
        return (ds[k] for k in range(len(ds)))
    return iter(torch.utils.data.DataLoader(ds, batch_size=None, shuffle=False,
                                            num_workers=workers, worker_init_fn=_worker_init,
                                            prefetch_factor=4, persistent_workers=False))


@dataclass
class ValItem:
    id: str
    kind: str
    image: np.ndarray   # normalised float32 H x W
    labels: np.ndarray  # int32 H x W


class ValSet(list):
    """The validation images at full size (a list of :class:`ValItem`)."""

    @classmethod
    def load(cls, samples: Sequence[Sample], kinds: dict[str, str], norm: NormConfig,
             progress: bool = False, size_reference: float = 0.0) -> ValSet:
        """``size_reference`` > 0: each image and its labels zoomed as for training
        (:func:`size_zoom`), so validation scores the operating point the runtime will use."""
        out = cls()
        for s in _tqdm(samples, progress, desc="load val", unit="img"):
            image, _ = normalize(s.image(), norm)
            labels = s.labels()
            image, labels = zoom_normalised(image, labels, size_zoom(labels, size_reference))
            out.append(ValItem(s.id, kinds.get(s.id, "unknown"), image, labels))
        return out


def size_zoom(labels: np.ndarray, size_reference: float) -> float:
    """The zoom the runtime's size control applies to a frame of these nuclei for a model
    trained at ``size_reference`` px (:func:`edgeseg.sizing.zoom_for` of their median diameter);
    1.0 when ``size_reference`` is 0 or there are no nuclei."""
    if size_reference <= 0:
        return 1.0
    diameters = instance_diameters(labels)
    return zoom_for(size_reference, float(np.median(diameters))) if diameters.size else 1.0


def zoom_normalised(image: np.ndarray, labels: np.ndarray | None, zoom: float
              ) -> tuple[np.ndarray, np.ndarray | None]:
    """A normalised image resized by ``zoom`` as the runtime resizes frames
    (:func:`edgeseg.sizing.resize_image`), and its labels aligned with it (centred)."""
    if zoom == 1.0:
        return image, labels
    image = resize_image(np.asarray(image, np.float32), zoom)
    return image, None if labels is None else resize_labels(labels, image.shape)


# ----------------------------------------------------------------------------- validation


@torch.no_grad()
def predict_probs(model: torch.nn.Module, image: np.ndarray, device: torch.device,
                  multiple: int, amp_dtype: torch.dtype | None = None) -> np.ndarray:
    """Softmax probabilities ``3 x H x W`` (float16) of one normalised image at full size:
    reflection-padded to multiples of ``multiple``, cropped back."""
    h, w = image.shape
    x = torch.from_numpy(np.ascontiguousarray(pad_to_multiple(image, multiple)))[None, None]
    x = x.to(device).contiguous(memory_format=torch.channels_last)
    with torch.autocast(device.type, dtype=amp_dtype or torch.float32,
                        enabled=amp_dtype is not None):
        logits = model(x)
    probs = torch.softmax(logits.float(), dim=1)[0, :, :h, :w]
    return probs.to(torch.float16).cpu().numpy()


def val_probs(model: torch.nn.Module, val: ValSet, device: torch.device, multiple: int,
              amp_dtype: torch.dtype | None = None, progress: bool = False) -> list[np.ndarray]:
    """:func:`predict_probs` of every val image (the model is put in eval mode and back)."""
    was_training = model.training
    model.eval()
    try:
        return [predict_probs(model, v.image, device, multiple, amp_dtype)
                for v in _tqdm(val, progress, desc="val", unit="img", leave=False)]
    finally:
        model.train(was_training)


def score_probs(probs: Sequence[np.ndarray], val: ValSet, pp: PostprocessConfig
                ) -> dict[str, Any]:
    """Mean DSB score, AP@0.5, F1@0.5 (overall and DSB per image kind) and per-image DSB scores
    of val probabilities through :func:`edgeseg.postprocess.label_instances`."""
    per_image: dict[str, float] = {}
    ap50, f1 = [], []
    by_kind: dict[str, list[float]] = {}
    for p, v in zip(probs, val):
        s = score_image(v.labels, label_instances(p.astype(np.float32), pp))
        per_image[v.id] = float(s.dsb_score)
        ap50.append(s.ap50)
        f1.append(s.f1_50)
        by_kind.setdefault(v.kind, []).append(float(s.dsb_score))
    return {
        "dsb_score": float(np.mean(list(per_image.values()))) if per_image else float("nan"),
        "ap50": float(np.mean(ap50)) if ap50 else float("nan"),
        "f1_50": float(np.mean(f1)) if f1 else float("nan"),
        "n_images": len(per_image),
        "per_kind": {k: {"dsb_score": float(np.mean(v)), "n_images": len(v)}
                     for k, v in sorted(by_kind.items())},
        "per_image": per_image,
    }


def tune_postprocess(probs: Sequence[np.ndarray], val: ValSet, base: PostprocessConfig,
                     seed_thresholds: Sequence[float], fg_thresholds: Sequence[float],
                     min_sizes: Sequence[int], progress: bool = False
                     ) -> tuple[PostprocessConfig, dict[str, Any], list[dict[str, Any]]]:
    """Grid search of seed_threshold x fg_threshold x min_size maximising the mean val DSB
    score. Ties keep the earlier grid point (grids are searched in the order given; the base
    config's values are tried first). Returns (best config, its scores, the whole table)."""
    grid = [(s, f, m) for s in seed_thresholds for f in fg_thresholds for m in min_sizes]
    first = (base.seed_threshold, base.fg_threshold, base.min_size)
    grid = [first] + [g for g in grid if g != first]
    best_cfg, best, table = base, None, []
    for s, f, m in _tqdm(grid, progress, desc="tune thresholds", leave=False):
        cfg = dataclasses.replace(base, seed_threshold=float(s), fg_threshold=float(f),
                                  min_size=int(m))
        res = score_probs(probs, val, cfg)
        table.append({"seed_threshold": s, "fg_threshold": f, "min_size": m,
                      "dsb_score": res["dsb_score"]})
        if best is None or res["dsb_score"] > best["dsb_score"]:
            best_cfg, best = cfg, res
    assert best is not None  # the grid always holds the base point
    return best_cfg, best, table


# ----------------------------------------------------------------------------- run log


class RunLog:
    """Rows of ``log.csv`` (one per logged step; train and val values of a step merged)."""

    COLUMNS = ("step", "loss", "ce", "dice", "lr", "images_per_s", "wall_s", "val_dsb",
               "val_ap50", "val_f1_50") + tuple(f"val_dsb_{k}" for k in IMAGE_KINDS)

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: dict[int, dict[str, Any]] = {}
        self._warned_plot = False

    def load(self, upto: int) -> None:
        """Read an existing log, keeping rows of steps <= ``upto`` (later ones are redone)."""
        if not self.path.is_file():
            return
        with open(self.path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                try:
                    step = int(row["step"])
                except (KeyError, ValueError):
                    continue
                if step <= upto:
                    self.rows[step] = {k: v for k, v in row.items() if v not in ("", None)}

    def add(self, step: int, **values: Any) -> None:
        self.rows.setdefault(step, {"step": step}).update(values)

    def write(self) -> None:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=self.COLUMNS, extrasaction="ignore")
        w.writeheader()
        for step in sorted(self.rows):
            w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v)
                        for k, v in self.rows[step].items()})
        atomic_write_text(self.path, buf.getvalue())

    def series(self, column: str) -> tuple[list[int], list[float]]:
        xs, ys = [], []
        for step in sorted(self.rows):
            v = self.rows[step].get(column)
            if v not in (None, ""):
                xs.append(step)
                ys.append(float(v))
        return xs, ys

    def plot(self, path: Path) -> None:
        """Loss (log scale) and val DSB score vs step, as a PNG (matplotlib Agg); skipped with
        a warning where matplotlib is not installed (log.csv holds the same numbers)."""
        try:
            from matplotlib.figure import Figure  # no pyplot: no global backend state
        except ImportError:
            if not self._warned_plot:
                log.warning("matplotlib is not installed: %s is not drawn (log.csv holds the "
                            "curves; pip install matplotlib)", path.name)
                self._warned_plot = True
            return
        fig = Figure(figsize=(10, 4), dpi=100)
        ax1, ax2 = fig.subplots(1, 2)
        for col in ("loss", "ce", "dice"):
            xs, ys = self.series(col)
            if xs:
                ax1.plot(xs, ys, label=col, lw=1)
        ax1.set_xlabel("step")
        ax1.set_yscale("log")
        ax1.set_title("training loss")
        if ax1.lines:
            ax1.legend()
        for col in ("val_dsb", "val_ap50", "val_f1_50") + tuple(f"val_dsb_{k}"
                                                                  for k in IMAGE_KINDS):
            xs, ys = self.series(col)
            if xs:
                ax2.plot(xs, ys, label=col[4:], marker="." if len(xs) < 50 else None,
                         lw=2 if col == "val_dsb" else 0.8)
        ax2.set_xlabel("step")
        ax2.set_title("validation")
        ax2.grid(alpha=0.3)
        if ax2.lines:
            ax2.legend(fontsize=7)
        fig.tight_layout()
        with atomic_open(path, "wb") as f:
            fig.savefig(f, format="png")

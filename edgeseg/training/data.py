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
* :func:`size_zoom` / :func:`zoom_normalised`: images brought to a reference nucleus size
  (``TrainConfig.size_reference``, the fine-tuning recipe), as the runtime's size control would.

Validation lives in :mod:`edgeseg.training.validation`, the run log in
:mod:`edgeseg.training.runlog`.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from ..data import (
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
from ..sizing import instance_diameters, resize_image, zoom_for
from ..targets import TargetConfig, encode
from .augment import STAIN_VARIANTS, AugmentConfig, augment_labels, augment_pair, jitter_stains

log = logging.getLogger(__name__)

__all__ = [
    "StepBatches",
    "TrainSet",
    "copy_split",
    "default_data_dir",
    "iter_batches",
    "load_run_split",
    "make_batch",
    "make_split",
    "sampling_probs",
    "size_zoom",
    "zoom_normalised",
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
            diameters = instance_diameters(labels)
            if diameters.size:
                self.diameters.append(float(np.median(diameters)))
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

"""Reading microscopy images and labels, image kinds, normalisation and dataset splits.

Reading files lives in :mod:`edgeseg.imageio` (re-exported here). Two dataset layouts are read:

* layout A, "label images": ``root/images/<id>.<png|tif|tiff|jpg|jpeg>`` and optionally
  ``root/labels/<id>.<png|tif|tiff>`` (integer label image, 0 = background);
* layout B, "Kaggle" (DSB2018): ``root/<id>/images/<id>.png`` and ``root/<id>/masks/*.png``
  (one binary image per nucleus).

A plain folder of images is read as unlabelled samples.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ._atomic import atomic_write_json
from ._config import ConfigMixin
from .errors import DataError, InputError
from .imageio import PathLike, read_image, read_image_raw, read_labels, to_grey

__all__ = [
    "IMAGE_KINDS", "read_image_raw", "to_grey", "read_image", "read_labels", "image_kind",
    "NormConfig", "NormInfo", "apply_norm", "normalize", "uses_stain", "Sample", "load_dataset", "sample_kinds",
    "split_dataset", "save_split", "load_split",
]

log = logging.getLogger(__name__)

IMAGE_KINDS = ("fluorescence", "brightfield", "stained")
IMAGE_EXTS = (".png", ".tif", ".tiff", ".jpg", ".jpeg")
LABEL_EXTS = (".png", ".tif", ".tiff")
_LAYOUTS = (
    "expected either layout A 'label images' (ROOT/images/<id>.png|tif|tiff|jpg with optional "
    "ROOT/labels/<id>.png|tif|tiff), layout B 'Kaggle' (ROOT/<id>/images/<id>.png with "
    "ROOT/<id>/masks/*.png), or a plain folder of images"
)
_COLOUR_THRESHOLD = 0.02  # mean abs channel difference, as a fraction of the data range
_KIND_Q = (1.0, 50.0, 99.8)  # percentiles of the background decision (low, median, high)
_SUBSAMPLE_TARGET = 1 << 16  # about this many pixels are used for percentiles


# ----------------------------------------------------------------------------- kinds


def _subsample(arr: np.ndarray) -> np.ndarray:
    """Every s-th pixel in each direction, s chosen to keep about 65k pixels."""
    step = max(1, math.ceil(math.sqrt(arr.shape[0] * arr.shape[1] / _SUBSAMPLE_TARGET)))
    return arr[::step, ::step]


def _finite_values(grey: np.ndarray) -> np.ndarray:
    """Finite values of a subsample of ``grey`` (of all of it if the subsample has none)."""
    sub = _subsample(grey).ravel()
    sub = sub[np.isfinite(sub)]
    return sub if sub.size else grey[np.isfinite(grey)]


def _bright_background(lo: float, med: float, hi: float) -> bool:
    """The background decision: the median is closer to the high percentile than the low."""
    return (hi - med) < (med - lo)


def image_kind(raw: np.ndarray) -> str:
    """Classify an image as ``"fluorescence"``, ``"brightfield"`` or ``"stained"``.

    Colour ("stained") when the mean absolute difference between the R, G, B channels exceeds
    2% of the data range; otherwise grey, "brightfield" when the background is bright (median
    closer to the 99.8th than to the 1st percentile), else "fluorescence".
    """
    raw = np.asarray(raw)
    if raw.ndim == 3 and raw.shape[2] >= 3 and raw.dtype.kind in "buif":
        rgb = _subsample(raw)[..., :3].astype(np.float32).reshape(-1, 3)
        rgb = rgb[np.isfinite(rgb).all(axis=1)]
        if rgb.size:
            span = float(rgb.max() - rgb.min())
            diff = (np.abs(rgb[:, 0] - rgb[:, 1]) + np.abs(rgb[:, 1] - rgb[:, 2])
                    + np.abs(rgb[:, 0] - rgb[:, 2])).mean() / 3.0
            if span > 0 and diff > _COLOUR_THRESHOLD * span:
                return "stained"
    vals = _finite_values(to_grey(raw))
    if vals.size == 0:
        return "fluorescence"
    lo, med, hi = (float(v) for v in np.percentile(vals, _KIND_Q))
    return "brightfield" if _bright_background(lo, med, hi) else "fluorescence"


# ----------------------------------------------------------------------------- normalisation


def _is_real(x: Any) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


@dataclass(frozen=True)
class NormConfig(ConfigMixin):
    """How :func:`normalize` scales an image.

    Attributes:
        p_low, p_high: percentiles (0..100) of the finite pixels mapped to 0 and 1.
        invert: "auto" (invert bright-background images), "never" or "always".
        colour: "grey" (colour images become luminance, then the invert rule) or "hematoxylin"
            (colour bright-background images -- H&E-like stains -- become their haematoxylin
            optical density, :func:`edgeseg.stain.hematoxylin`: bright nuclei, never inverted;
            grey images are unaffected). Artifacts without the key keep "grey".
    """

    p_low: float = 1.0
    p_high: float = 99.8
    invert: str = "auto"
    colour: str = "grey"

    def __post_init__(self) -> None:
        for name in ("p_low", "p_high"):
            v = getattr(self, name)
            if not _is_real(v) or not math.isfinite(v):
                raise InputError(f"NormConfig.{name} must be a number in [0, 100], got {v!r}.")
            object.__setattr__(self, name, float(v))
        if not 0.0 <= self.p_low < self.p_high <= 100.0:
            raise InputError(f"NormConfig needs 0 <= p_low < p_high <= 100, got p_low="
                             f"{self.p_low}, p_high={self.p_high}; e.g. p_low=1, p_high=99.8.")
        if self.invert not in ("auto", "never", "always"):
            raise InputError(f"NormConfig.invert must be 'auto', 'never' or 'always', got "
                             f"{self.invert!r}.")
        if self.colour not in ("grey", "hematoxylin"):
            raise InputError(f"NormConfig.colour must be 'grey' or 'hematoxylin', got "
                             f"{self.colour!r}.")




@dataclass(frozen=True)
class NormInfo:
    """What :func:`normalize` did: ``x = clip((raw - lo) / (hi - lo), 0, 1)``, then ``1 - x``
    if ``inverted``."""

    lo: float
    hi: float
    inverted: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NormInfo:
        try:
            return cls(lo=float(d["lo"]), hi=float(d["hi"]), inverted=bool(d["inverted"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"NormInfo.from_dict expects keys 'lo', 'hi', 'inverted', got "
                             f"{d!r} ({exc}).") from None


def uses_stain(image: np.ndarray, cfg: NormConfig) -> bool:
    """Whether :func:`normalize` reads ``image`` as the haematoxylin channel of a stain:
    ``cfg.colour == "hematoxylin"`` and a colour image of an absorbing stain
    (:func:`edgeseg.stain.is_absorbing`), not coloured fluorescence on a dark field."""
    arr = np.asarray(image)
    if cfg.colour != "hematoxylin" or arr.ndim != 3 or arr.shape[2] < 3 \
            or image_kind(arr) != "stained":
        return False
    from .stain import is_absorbing
    return is_absorbing(arr)


def _intensity(image: np.ndarray, cfg: NormConfig,
               stains: np.ndarray | None = None) -> tuple[np.ndarray, bool]:
    """The float32 H x W intensity that :func:`normalize` scales, and whether it is the
    haematoxylin channel of a stained image (:func:`uses_stain`)."""
    if not uses_stain(image, cfg):
        return to_grey(image), False
    from .stain import hematoxylin
    return hematoxylin(np.asarray(image), stains), True


def normalize(image: np.ndarray, cfg: NormConfig | None = None, *,
              stains: np.ndarray | None = None) -> tuple[np.ndarray, NormInfo]:
    """Scale an image to float32 [0, 1] grey with bright nuclei.

    ``x = (grey - lo) / (hi - lo)`` where lo/hi are the ``p_low``/``p_high`` percentiles of
    the finite pixels, then **clipped to [0, 1]** (outliers saturate; a constant image, hi ==
    lo, gives all zeros without a division).
    Colour input is converted with :func:`to_grey`. With ``invert="auto"`` a bright-background
    image (median closer to the 99.8th than to the 1st percentile, the rule of
    :func:`image_kind`, also applied to colour images such as H&E) becomes ``1 - x``.
    NaN/inf pixels are excluded from the percentiles and set to 0 in the output.
    ``stains``: the stain vectors of the haematoxylin channel (3 x 3, rows H, E, DAB; training's
    stain augmentation); default :data:`edgeseg.stain.RGB_FROM_HED`.

    Speed: percentiles are taken on a strided subsample (every s-th pixel in each direction,
    about 65k pixels, e.g. s = 4 for 1024x1024), so a 1024x1024 image takes ~2-4 ms.

    Returns:
        (C-contiguous float32 HxW array, :class:`NormInfo`).
    """
    cfg = NormConfig() if cfg is None else cfg
    if not isinstance(cfg, NormConfig):
        raise InputError(f"cfg must be a NormConfig or None, got {type(cfg).__name__}.")
    grey, stained = _intensity(image, cfg, stains)
    vals = _finite_values(grey)
    if vals.size:
        q = np.percentile(vals, (cfg.p_low, cfg.p_high) + _KIND_Q)
        lo, hi = float(q[0]), float(q[1])
        bright = _bright_background(float(q[2]), float(q[3]), float(q[4]))
    else:
        lo = hi = 0.0
        bright = False
    inverted = cfg.invert == "always" or (cfg.invert == "auto" and bright and not stained)
    # in float32 so that a pixel equal to hi maps to exactly 1
    info = NormInfo(lo=float(np.float32(lo)), hi=float(np.float32(hi)), inverted=bool(inverted))
    return _scale(grey, info, np.asarray(image).dtype.kind == "f"), info


def apply_norm(image: np.ndarray, cfg: NormConfig, info: NormInfo) -> np.ndarray:
    """:func:`normalize` with its scale given (``info``, e.g. measured once on a whole slide)
    instead of measured on this frame: chunks of one image are scaled alike."""
    grey, _ = _intensity(image, cfg)
    return _scale(grey, info, np.asarray(image).dtype.kind == "f")


def _scale(grey: np.ndarray, info: NormInfo, may_be_nan: bool) -> np.ndarray:
    """``(grey - lo) / (hi - lo)`` clipped to [0, 1] (inverted if asked), NaN/inf -> 0."""
    lo32, hi32 = np.float32(info.lo), np.float32(info.hi)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        span = hi32 - lo32
        if span > 0 and np.isfinite(span):
            out = grey - lo32
            out /= span
            np.clip(out, 0.0, 1.0, out=out)
        else:
            out = np.zeros(grey.shape, np.float32)
        if info.inverted:
            np.subtract(np.float32(1.0), out, out=out)
        if may_be_nan:  # integer images have no NaN/inf
            bad = ~np.isfinite(grey)
            if bad.any():
                out[bad] = 0.0
    return out


# ----------------------------------------------------------------------------- datasets


@dataclass(frozen=True)
class Sample:
    """One image of a dataset and where its labels are (a label image or per-object masks)."""

    id: str
    image_path: Path
    label_path: Path | None = None
    mask_paths: tuple[Path, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "image_path", Path(self.image_path))
        if self.label_path is not None:
            object.__setattr__(self, "label_path", Path(self.label_path))
        object.__setattr__(self, "mask_paths", tuple(Path(p) for p in self.mask_paths))

    @property
    def has_labels(self) -> bool:
        return self.label_path is not None or bool(self.mask_paths)

    def image(self) -> np.ndarray:
        """The image as stored (see :func:`read_image_raw`)."""
        return read_image_raw(self.image_path)

    def labels(self) -> np.ndarray:
        """int32 HxW labels: the label image, or the masks merged (mask k in sorted filename
        order gets id k; where masks overlap the later mask wins)."""
        if self.label_path is not None:
            return read_labels(self.label_path)
        if not self.mask_paths:
            raise DataError(f"sample {self.id!r} ({self.image_path}) has no labels; expected a "
                            "label image or mask files. Use Sample.has_labels to filter.")
        labels = np.zeros((0, 0), np.int32)
        overlap = 0
        for k, p in enumerate(sorted(self.mask_paths, key=lambda q: q.name), start=1):
            m = read_image_raw(p)
            fg = (m != 0) if m.ndim == 2 else (m != 0).any(axis=2)
            if k == 1:
                labels = np.zeros(fg.shape, np.int32)
            elif fg.shape != labels.shape:
                raise DataError(f"mask {p} has shape {fg.shape} but the other masks of sample "
                                f"{self.id!r} have {labels.shape}; all masks must match the "
                                "image size.")
            overlap += int(np.count_nonzero(labels[fg]))
            labels[fg] = k
        if overlap:
            log.debug("sample %s: %d mask pixels overlap (later mask wins)", self.id, overlap)
        return labels


def _files(folder: Path, exts: Sequence[str]) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in exts)


def _by_stem(files: Iterable[Path]) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in files:
        if p.stem in out:
            raise DataError(f"two files share the id {p.stem!r}: {out[p.stem]} and {p}; expected "
                            "one file per id. Remove or rename one of them.")
        out[p.stem] = p
    return out


def _kaggle_sample(d: Path) -> Sample | None:
    images = _files(d / "images", IMAGE_EXTS)
    named = [p for p in images if p.stem == d.name]
    if named or len(images) == 1:
        masks = tuple(_files(d / "masks", LABEL_EXTS))
        return Sample(d.name, (named or images)[0], None, masks)
    log.warning("skipping %s: expected %s/images/%s.png, found %d image files",
                d, d.name, d.name, len(images))
    return None


def load_dataset(root: PathLike) -> list[Sample]:
    """Find the samples of a dataset folder (layout A, layout B or plain images), sorted by id.

    Raises:
        DataError: root missing, or no images found.
    """
    root = Path(root)
    if not root.is_dir():
        what = "does not exist" if not root.exists() else "is a file, not a folder"
        raise DataError(f"dataset root {root} {what}; {_LAYOUTS}.")
    samples: list[Sample] = []
    if (root / "images").is_dir():
        images = _by_stem(_files(root / "images", IMAGE_EXTS))
        labels = _by_stem(_files(root / "labels", LABEL_EXTS))
        for orphan in sorted(set(labels) - set(images)):
            log.warning("skipping label %s: no image %s/images/%s.*", labels[orphan], root, orphan)
        samples = [Sample(i, p, labels.get(i)) for i, p in images.items()]
        layout = "A (label images)"
    else:
        subdirs = [d for d in sorted(root.iterdir()) if d.is_dir() and (d / "images").is_dir()]
        if subdirs:
            samples = [s for s in map(_kaggle_sample, subdirs) if s is not None]
            layout = "B (Kaggle)"
        else:
            samples = [Sample(i, p) for i, p in _by_stem(_files(root, IMAGE_EXTS)).items()]
            layout = "plain folder"
    if not samples:
        raise DataError(f"no images found under {root}; {_LAYOUTS}.")
    samples.sort(key=lambda s: s.id)
    log.debug("%s: layout %s, %d samples, %d labelled", root, layout, len(samples),
              sum(s.has_labels for s in samples))
    return samples


def sample_kinds(samples: Iterable[Sample]) -> dict[str, str]:
    """``{sample id: image_kind(sample.image())}`` (reads every image once)."""
    return {s.id: image_kind(s.image()) for s in samples}


def _rank(seed: int, sample_id: str) -> str:
    return hashlib.sha256(f"{seed}:{sample_id}".encode()).hexdigest()


def split_dataset(samples: Sequence[Sample], val_fraction: float = 0.1, seed: int = 0,
                  kinds: Mapping[str, str] | None = None) -> tuple[list[Sample], list[Sample]]:
    """Deterministic train/val split, stratified by image kind.

    Within each kind the samples are ordered by ``sha256(f"{seed}:{id}")`` and the first
    ``round(val_fraction * n)`` go to val (at least 1 when the kind has >= 2 samples, at least
    1 always stays in train). The result depends only on the ids, kinds and seed, not on the
    order of ``samples``. ``kinds`` maps id -> any stratum name; by default it is computed with
    :func:`sample_kinds` (reads every image). Both lists are sorted by id.
    """
    if not _is_real(val_fraction) or not 0.0 < float(val_fraction) < 1.0:
        raise InputError(f"val_fraction must be a number strictly between 0 and 1, got "
                         f"{val_fraction!r}; e.g. 0.1 for 10% validation images.")
    samples = list(samples)
    ids = [s.id for s in samples]
    dup = sorted(i for i, n in collections.Counter(ids).items() if n > 1)
    if dup:
        raise InputError(f"sample ids must be unique, got duplicates {dup[:5]}.")
    kinds = sample_kinds(samples) if kinds is None else kinds
    missing = [i for i in ids if i not in kinds]
    if missing:
        raise InputError(f"kinds has no entry for {len(missing)} sample ids (e.g. {missing[:3]}); "
                         "expected a kind for every sample (see sample_kinds).")
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        groups.setdefault(str(kinds[s.id]), []).append(s)
    train: list[Sample] = []
    val: list[Sample] = []
    for kind in sorted(groups):
        group = sorted(groups[kind], key=lambda s: _rank(seed, s.id))
        n = len(group)
        n_val = 0 if n < 2 else min(n - 1, max(1, math.floor(val_fraction * n + 0.5)))
        val += group[:n_val]
        train += group[n_val:]
        log.debug("split: kind %s: %d train, %d val", kind, n - n_val, n_val)
    return sorted(train, key=lambda s: s.id), sorted(val, key=lambda s: s.id)


def _ids(items: Iterable[Sample | str]) -> list[str]:
    return [s.id if isinstance(s, Sample) else str(s) for s in items]


def save_split(path: PathLike, train: Iterable[Sample | str], val: Iterable[Sample | str],
               **meta: Any) -> None:
    """Write ``{"train": [ids], "val": [ids], **meta}`` as JSON (atomically)."""
    obj = {"train": _ids(train), "val": _ids(val), **meta}
    try:
        json.dumps(obj)
    except (TypeError, ValueError) as exc:
        raise InputError(f"split metadata must be JSON-serialisable, got {meta!r} ({exc}); "
                         "pass numbers, strings, lists or dicts.") from None
    atomic_write_json(path, obj)


def load_split(path: PathLike) -> dict[str, Any]:
    """Read a file written by :func:`save_split`: a dict with "train" and "val" id lists."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"split file not found: {path}; expected a JSON file written by "
                        "save_split. Check the path or create the split again.") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read the split file {path} ({exc}); expected JSON written by "
                        "save_split. Delete it and create the split again.") from None
    ok = isinstance(obj, dict) and all(
        isinstance(obj.get(k), list) and all(isinstance(i, str) for i in obj[k])
        for k in ("train", "val"))
    if not ok:
        raise DataError(f"{path} is not a split file; expected a JSON object with 'train' and "
                        "'val' lists of sample ids. Create the split again with save_split.")
    both = sorted(set(obj["train"]) & set(obj["val"]))
    if both:
        raise DataError(f"{path} lists {len(both)} ids in both train and val (e.g. {both[:3]}); "
                        "expected disjoint lists. Create the split again.")
    return obj

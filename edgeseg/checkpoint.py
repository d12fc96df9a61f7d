"""One self-describing checkpoint format for trained models.

A checkpoint is a ``.pt`` file (``torch.save`` of a plain dict, loadable with
``torch.load(weights_only=True)``) holding::

    format             "edgeseg-checkpoint"
    format_version     int (this module reads versions <= FORMAT_VERSION)
    edgeseg_version    version of edgeseg that wrote it
    model_config       UNetConfig.to_dict()
    norm_config        edgeseg.data.NormConfig.to_dict()       (preprocessing)
    target_config      edgeseg.targets.TargetConfig.to_dict()  (what the classes mean)
    postprocess_config edgeseg.postprocess.PostprocessConfig.to_dict() (tuned thresholds)
    state_dict         model weights (float32, or float16 in the bundled model: upcast on load)
    state_dict_dtype   "float32" | "float16"
    model_card         free-form dict: data, split, steps, hardware, wall time, val scores, ...
    train_state        (training checkpoints only) optimizer, scheduler, RNG states, step, best

The configs are stored as plain dicts so nothing but tensors, strings and numbers is pickled.
``load_checkpoint("default")`` loads the model bundled in ``edgeseg/models/default/``.

Example::

    from edgeseg.checkpoint import load_checkpoint
    ckpt = load_checkpoint("runs/default/best.pt")     # or "default"
    net = ckpt.build_model()                          # eval-mode UNet on CPU
"""

from __future__ import annotations

import logging
import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch

from ._atomic import atomic_open, atomic_write_json
from ._version import __version__
from .errors import EdgesegError, ModelError
from .model import UNet, UNetConfig

log = logging.getLogger(__name__)

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MODELS_DIR",
    "Checkpoint",
    "bundled_models",
    "export_default",
    "load_checkpoint",
    "resolve_model",
    "save_checkpoint",
]

FORMAT = "edgeseg-checkpoint"
FORMAT_VERSION = 1
MODELS_DIR = Path(__file__).resolve().parent / "models"
MAX_BUNDLED_BYTES = 10 * 1024 * 1024

PathLike = Union[str, "os.PathLike[str]"]


def _config_dict(cfg: Any, what: str) -> dict[str, Any]:
    if cfg is None:
        return {}
    if isinstance(cfg, Mapping):
        return dict(cfg)
    if hasattr(cfg, "to_dict"):
        return dict(cfg.to_dict())
    raise ModelError(f"save_checkpoint: {what} must be a config object with to_dict() or a dict, "
                     f"got {type(cfg).__name__}.")


def _plain(obj: Any, where: str) -> Any:
    """``obj`` with values made plain (dict, list, str, int, float, bool, None, tensors), so that
    ``torch.load(weights_only=True)`` accepts it: tuples -> lists, numpy scalars and arrays ->
    Python numbers and lists, str subclasses (e.g. ``torch.__version__``) -> str. Keys are kept."""
    if obj is None or type(obj) in (bool, int, float, str) or isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, Mapping):
        return {k: _plain(v, where) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v, where) for v in obj]
    if isinstance(obj, str):
        return str(obj)
    if isinstance(obj, (np.generic, np.ndarray)):
        return obj.tolist()
    for base in (bool, int, float):  # subclasses such as IntEnum
        if isinstance(obj, base):
            return base(obj)
    raise ModelError(f"save_checkpoint: {where} holds a {type(obj).__name__} ({obj!r:.80}); only "
                     "dicts, lists, strings, numbers, booleans, None and tensors can be stored.")


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint. The configs are plain dicts (see :meth:`norm`, :meth:`targets`,
    :meth:`postprocess` for the config objects); ``state_dict`` is float32."""

    path: Path
    format_version: int
    edgeseg_version: str
    model_config: UNetConfig
    norm_config: dict
    target_config: dict
    postprocess_config: dict
    state_dict: dict
    model_card: dict
    train_state: dict | None = None

    def build_model(self) -> UNet:
        """The network with these weights, in eval mode, on CPU."""
        model = UNet(self.model_config)
        try:
            model.load_state_dict({k: v.cpu() for k, v in self.state_dict.items()})
        except RuntimeError as exc:
            raise ModelError(f"{self.path}: the weights do not fit the stored model config "
                             f"{self.model_config.to_dict()}: {str(exc).splitlines()[0]}") from exc
        return model.eval()

    def norm(self) -> Any:
        """The preprocessing as an ``edgeseg.data.NormConfig``."""
        from .data import NormConfig
        return self._typed(NormConfig, self.norm_config, "norm_config")

    def targets(self) -> Any:
        """The class encoding as an ``edgeseg.targets.TargetConfig``."""
        from .targets import TargetConfig
        return self._typed(TargetConfig, self.target_config, "target_config")

    def postprocess(self) -> Any:
        """The tuned post-processing as an ``edgeseg.postprocess.PostprocessConfig``."""
        from .postprocess import PostprocessConfig
        return self._typed(PostprocessConfig, self.postprocess_config, "postprocess_config")

    def _typed(self, cls: Any, d: dict, what: str) -> Any:
        try:
            return cls.from_dict(d)
        except (EdgesegError, TypeError, ValueError) as exc:
            raise ModelError(f"{self.path}: stored {what} {d} is not valid for this edgeseg "
                             f"{__version__}: {exc}") from exc


def save_checkpoint(
    path: PathLike,
    model: torch.nn.Module,
    *,
    norm_config: Any = None,
    target_config: Any = None,
    postprocess_config: Any = None,
    model_card: Mapping[str, Any] | None = None,
    train_state: Mapping[str, Any] | None = None,
    half: bool = False,
) -> Path:
    """Write ``model`` (a :class:`UNet`, possibly wrapped in DDP) and its configs atomically.

    ``half=True`` stores floating weights as float16 (half the size; loaded back as float32).
    Configs may be config objects (with ``to_dict``) or dicts. Returns the path written.
    """
    net = getattr(model, "module", model)  # unwrap DistributedDataParallel
    if not isinstance(net, UNet):
        raise ModelError(f"save_checkpoint expects an edgeseg UNet, got {type(net).__name__}.")
    if getattr(net, "bn_folded", False):
        raise ModelError("save_checkpoint got a BN-folded model; save the original model "
                         "(folding is for export only).")
    dtype = torch.float16 if half else torch.float32
    state = {k: (v.detach().to("cpu", dtype) if v.is_floating_point() else v.detach().cpu())
             for k, v in net.state_dict().items()}
    obj: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "edgeseg_version": __version__,
        "model_config": net.config.to_dict(),
        "norm_config": _plain(_config_dict(norm_config, "norm_config"), "norm_config"),
        "target_config": _plain(_config_dict(target_config, "target_config"), "target_config"),
        "postprocess_config": _plain(_config_dict(postprocess_config, "postprocess_config"),
                                     "postprocess_config"),
        "state_dict": state,
        "state_dict_dtype": "float16" if half else "float32",
        "model_card": _plain(dict(model_card or {}), "model_card"),
    }
    if train_state is not None:
        obj["train_state"] = _plain(dict(train_state), "train_state")
    path = Path(path)
    with atomic_open(path, "wb") as f:
        torch.save(obj, f)
    log.debug("wrote checkpoint %s", path)
    return path


def bundled_models() -> list[str]:
    """Names of the models bundled inside the package (``edgeseg/models/<name>/model.pt``)."""
    if not MODELS_DIR.is_dir():
        return []
    return sorted(p.name for p in MODELS_DIR.iterdir() if (p / "model.pt").is_file())


def resolve_model(name_or_path: PathLike) -> Path:
    """Path of the checkpoint file meant by ``name_or_path``.

    Accepts a ``.pt`` file, a folder holding ``model.pt`` (an exported model), ``best.pt`` or
    ``last.pt`` (a run folder), or the name of a bundled model such as ``"default"``.
    """
    p = Path(name_or_path)
    if p.is_file():
        return p
    if p.is_dir():
        for name in ("model.pt", "best.pt", "last.pt"):
            if (p / name).is_file():
                return p / name
        raise ModelError(f"folder {p} holds no model.pt, best.pt or last.pt; pass a checkpoint "
                         "file or a run folder that has finished at least one checkpoint.")
    name = str(name_or_path)
    if os.sep not in name and "/" not in name and not name.endswith(".pt"):
        if (MODELS_DIR / name / "model.pt").is_file():
            return MODELS_DIR / name / "model.pt"
        names = bundled_models()
        raise ModelError(
            f"unknown model {name!r}: not a file or folder, and not a bundled model; bundled "
            f"models in {MODELS_DIR}: {', '.join(names) if names else '(none installed)'}. "
            "Pass a checkpoint path (e.g. runs/default/best.pt) or one of the bundled names.")
    raise ModelError(f"checkpoint not found: {p} (no such file or folder); check the path, or "
                     "pass a bundled model name such as 'default'.")


def _read(path: Path, map_location: Any) -> Any:
    try:
        with open(path, "rb") as f:
            return torch.load(f, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        if not found:  # not a refused class but bytes that are no pickle: a damaged file
            raise _corrupt(path, exc) from exc
        raise ModelError(
            f"{path} is not an edgeseg checkpoint: it holds Python objects such as "
            f"{found.group(1)} that cannot be "
            "loaded safely (torch.load weights_only=True). Re-save the model with "
            "edgeseg.checkpoint.save_checkpoint.") from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError, KeyError,
            IndexError, TypeError) as exc:
        raise _corrupt(path, exc) from exc


def _corrupt(path: Path, exc: BaseException) -> ModelError:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()] or [""]
    # torch's unpickler puts the reason (e.g. "Unsupported operand 45") last, after advice
    reason = lines[-1] if isinstance(exc, pickle.UnpicklingError) else lines[0]
    return ModelError(
        f"{path} is truncated or corrupted and cannot be read "
        f"({type(exc).__name__}: {reason[:200]}); "
        "re-copy it, or use another checkpoint (e.g. last.pt instead of best.pt).")


def load_checkpoint(path_or_name: PathLike, map_location: Any = "cpu") -> Checkpoint:
    """Load and validate a checkpoint (file, run folder, exported folder or bundled name).

    Raises :class:`ModelError` naming the file when it is missing, truncated or corrupted, not
    an edgeseg checkpoint, or written by a newer format version.
    """
    path = resolve_model(path_or_name)
    obj = _read(path, map_location)
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        hint = ""
        if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            hint = " It looks like a bare state_dict;"
        raise ModelError(
            f"{path} is not an edgeseg checkpoint (expected a dict with format={FORMAT!r}, got "
            f"{type(obj).__name__}{' with keys ' + str(sorted(obj)[:6]) if isinstance(obj, dict) else ''})."
            f"{hint} Save models with edgeseg.checkpoint.save_checkpoint.")
    version = obj.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise ModelError(f"{path}: invalid format_version {version!r}; the file is damaged.")
    if version > FORMAT_VERSION:
        raise ModelError(
            f"{path} was written by a newer edgeseg ({obj.get('edgeseg_version', '?')}, checkpoint "
            f"format_version {version}); this edgeseg {__version__} reads format_version <= "
            f"{FORMAT_VERSION}. Upgrade edgeseg to load it.")
    missing = [k for k in ("model_config", "state_dict") if k not in obj]
    if missing:
        raise ModelError(f"{path}: checkpoint lacks {missing}; the file is damaged or incomplete.")
    try:
        model_config = UNetConfig.from_dict(obj["model_config"])
    except (EdgesegError, TypeError) as exc:
        raise ModelError(f"{path}: invalid model_config {obj['model_config']!r}: {exc}") from exc
    weights = obj["state_dict"]
    if not isinstance(weights, Mapping) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in weights.items()):
        got = type(weights).__name__ if not isinstance(weights, Mapping) else \
            "a dict holding non-tensor values or non-string keys"
        raise ModelError(f"{path}: state_dict is {got}; expected a dict of parameter names to "
                         "tensors. The file is damaged or was not written by save_checkpoint.")
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in weights.items()}
    return Checkpoint(
        path=path,
        format_version=version,
        edgeseg_version=str(obj.get("edgeseg_version", "?")),
        model_config=model_config,
        norm_config=dict(obj.get("norm_config") or {}),
        target_config=dict(obj.get("target_config") or {}),
        postprocess_config=dict(obj.get("postprocess_config") or {}),
        state_dict=state,
        model_card=dict(obj.get("model_card") or {}),
        train_state=obj.get("train_state"),
    )


def export_default(run_dir_or_ckpt: PathLike, dest_dir: PathLike | None = None,
                   half: bool = True) -> Path:
    """Write a bundled-model folder from a run (its ``best.pt``) or a checkpoint file.

    ``dest_dir`` (default: the package's ``models/default``) receives ``model.pt`` (weights-only
    checkpoint, float16 weights unless ``half=False``, no train_state), ``model_card.json`` and
    ``config.json`` (all configs), each written atomically. Returns ``dest_dir``.
    """
    src = Path(run_dir_or_ckpt)
    if src.is_dir() and (src / "best.pt").is_file():
        src = src / "best.pt"
    ckpt = load_checkpoint(src)
    dest = Path(dest_dir) if dest_dir is not None else MODELS_DIR / "default"
    model = ckpt.build_model()
    card = dict(ckpt.model_card)
    card.setdefault("source_checkpoint", str(ckpt.path))
    card["weights_dtype"] = "float16" if half else "float32"
    save_checkpoint(dest / "model.pt", model, norm_config=ckpt.norm_config,
                    target_config=ckpt.target_config,
                    postprocess_config=ckpt.postprocess_config, model_card=card, half=half)
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "edgeseg_version": __version__,
        "model_config": ckpt.model_config.to_dict(),
        "norm_config": ckpt.norm_config,
        "target_config": ckpt.target_config,
        "postprocess_config": ckpt.postprocess_config,
    }
    atomic_write_json(dest / "config.json", config)
    atomic_write_json(dest / "model_card.json", card)
    size = (dest / "model.pt").stat().st_size
    if size > MAX_BUNDLED_BYTES:
        log.warning("bundled model %s is %.1f MB, over the %.0f MB budget",
                    dest / "model.pt", size / 2**20, MAX_BUNDLED_BYTES / 2**20)
    return dest


"""What travels with every model artifact: preprocessing, classes, thresholds, provenance.

A :class:`ModelInfo` is read from a checkpoint (``.pt``), from an ONNX file's ``metadata_props``
(key ``"edgeseg"``, JSON) or from an engine's ``*.engine.json`` sidecar, so that
``Segmenter(path)`` reproduces training-time preprocessing and thresholds with nothing else.
This module imports neither torch nor onnx.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping

from ._version import __version__
from .data import NormConfig
from .errors import ModelError
from .postprocess import PostprocessConfig
from .targets import CLASS_NAMES, TargetConfig

__all__ = ["ModelInfo", "PRECISIONS", "file_sha256", "METADATA_KEY"]

PRECISIONS = ("fp32", "fp16", "int8")
METADATA_KEY = "edgeseg"
INFO_VERSION = 1


@dataclass(frozen=True)
class ModelInfo:
    """Self-description of a model artifact.

    Attributes:
        model_config: the ``UNetConfig`` as a dict (width, depth, ...).
        norm: preprocessing (percentile scaling, inversion rule) used in training.
        postprocess: tuned instance thresholds.
        targets: the class encoding the network was trained on.
        classes: class names in output-channel order.
        multiple: input height and width must be multiples of this (2**depth); the runtime pads.
        precision: ``fp32`` | ``fp16`` | ``int8`` (of the ONNX graph or engine).
        source_sha256: checksum of the artifact this one was made from (checkpoint or ONNX).
        edgeseg_version: version of edgeseg that wrote the artifact.
        model_card: free-form provenance and scores (data, split, steps, val scores, ...).
    """

    model_config: dict
    norm: NormConfig = field(default_factory=NormConfig)
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    targets: TargetConfig = field(default_factory=TargetConfig)
    classes: tuple[str, ...] = CLASS_NAMES
    multiple: int = 16
    precision: str = "fp32"
    source_sha256: str = ""
    edgeseg_version: str = __version__
    model_card: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ModelError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if not isinstance(self.multiple, int) or self.multiple < 1:
            raise ModelError(f"multiple must be a positive integer, got {self.multiple!r}")

    @property
    def diameter(self) -> float:
        """The median nucleus diameter (px) of the training data, which ``Segmenter(diameter=)``
        rescales frames to (model card ``nucleus_diameter``; 17.8 px, DSB2018's, when absent)."""
        from .sizing import DEFAULT_DIAMETER

        d = self.model_card.get("nucleus_diameter")
        return float(d) if isinstance(d, (int, float)) and d > 0 else DEFAULT_DIAMETER

    def replace(self, **changes: Any) -> "ModelInfo":
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {
            "info_version": INFO_VERSION,
            "model_config": dict(self.model_config),
            "norm_config": self.norm.to_dict(),
            "postprocess_config": self.postprocess.to_dict(),
            "target_config": self.targets.to_dict(),
            "classes": list(self.classes),
            "multiple": self.multiple,
            "precision": self.precision,
            "source_sha256": self.source_sha256,
            "edgeseg_version": self.edgeseg_version,
            "model_card": self.model_card,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "model metadata") -> "ModelInfo":
        try:
            version = int(d.get("info_version", 1))
            if version > INFO_VERSION:
                raise ModelError(
                    f"{where} was written by a newer edgeseg ({d.get('edgeseg_version')}, metadata "
                    f"version {version}); this is edgeseg {__version__}: upgrade edgeseg to read it"
                )
            return cls(
                model_config=dict(d["model_config"]),
                norm=NormConfig.from_dict(d.get("norm_config", {})),
                postprocess=PostprocessConfig.from_dict(d.get("postprocess_config", {})),
                targets=TargetConfig.from_dict(d.get("target_config", {})),
                classes=tuple(d.get("classes", CLASS_NAMES)),
                multiple=int(d.get("multiple", 2 ** int(d["model_config"].get("depth", 4)))),
                precision=str(d.get("precision", "fp32")),
                source_sha256=str(d.get("source_sha256", "")),
                edgeseg_version=str(d.get("edgeseg_version", "unknown")),
                model_card=dict(d.get("model_card", {})),
            )
        except ModelError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelError(f"{where} is incomplete or invalid ({type(exc).__name__}: {exc}); "
                             "re-export the model with this edgeseg version") from exc

    @classmethod
    def from_json(cls, text: str, where: str = "model metadata") -> "ModelInfo":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelError(f"{where} is not valid JSON ({exc}); re-export the model") from exc
        if not isinstance(d, dict):
            raise ModelError(f"{where} must be a JSON object, got {type(d).__name__}")
        return cls.from_dict(d, where)

    @classmethod
    def from_checkpoint(cls, ckpt: Any) -> "ModelInfo":
        """From an ``edgeseg.checkpoint.Checkpoint`` (needs torch only to have loaded it)."""
        cfg = ckpt.model_config.to_dict()
        return cls(
            model_config=cfg,
            norm=ckpt.norm(),
            postprocess=ckpt.postprocess(),
            targets=ckpt.targets(),
            multiple=2 ** int(cfg["depth"]),
            source_sha256=file_sha256(ckpt.path) if Path(ckpt.path).is_file() else "",
            model_card=dict(ckpt.model_card),
        )


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()

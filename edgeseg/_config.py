"""``ConfigMixin``: dict/JSON round-trips for the frozen configuration dataclasses.

Every configuration (``NormConfig``, ``TargetConfig``, ``PostprocessConfig``, ``UNetConfig``,
``AugmentConfig``) is saved as JSON beside the artifact that used it; ``from_dict`` takes such a
dict back, with missing keys at their defaults and unknown keys an error that lists valid ones.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, TypeVar

from .errors import InputError

T = TypeVar("T", bound="ConfigMixin")


class ConfigMixin:
    """Mixed into frozen dataclasses: ``to_dict()`` and ``from_dict(d)``."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[T], d: Mapping[str, Any]) -> T:
        if not isinstance(d, Mapping):
            raise InputError(f"{cls.__name__}.from_dict expects a dict, got {type(d).__name__}")
        valid = sorted(f.name for f in dataclasses.fields(cls))  # type: ignore[arg-type]
        unknown = sorted(set(d) - set(valid))
        if unknown:
            raise InputError(f"{cls.__name__} got unknown keys {unknown}; valid keys are {valid} "
                             "(was it written by a newer edgeseg?)")
        return cls(**dict(d))

"""What the widget's controls ask for, as a frozen dataclass, and the Segmenter built from it.

No Qt here: the widget reads its controls into a :class:`SegmentOptions`, and a
:class:`SegmenterCache` keeps the one :class:`~edgeseg.Segmenter` those options describe, so a
stack, a second click or a live stream reuse the loaded model until an option changes.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import asdict, dataclass
from typing import Any

from ..errors import InputError
from ..sizing import check_diameter

__all__ = ["SegmentOptions", "SegmenterCache", "BACKENDS", "DEVICES", "DIAMETER_MODES"]

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnxruntime", "tensorrt")  # auto: follows from the model file
DEVICES = ("auto", "cpu", "cuda")
DIAMETER_MODES = ("auto", "px", "none")
MODEL_SUFFIXES = (".pt", ".onnx", ".engine")


@dataclass(frozen=True)
class SegmentOptions:
    """Arguments of :class:`edgeseg.Segmenter`, as the widget's controls give them.

    Attributes:
        model: "default" (the bundled model) or the path of a .pt, .onnx or .engine file.
        backend: "auto" (follows from the model file) or a backend name.
        device: "auto", "cpu" or "cuda" (never replaced by another: an unavailable one is an error).
        diameter: "auto", a nucleus diameter in px, or None (frames as they are).
        seed_threshold, fg_threshold, min_size: overrides of the model's thresholds (None: the
            model's own).
    """

    model: str = "default"
    backend: str = "auto"
    device: str = "auto"
    diameter: float | str | None = "auto"
    seed_threshold: float | None = None
    fg_threshold: float | None = None
    min_size: int | None = None

    def __post_init__(self) -> None:
        model = str(self.model).strip()
        if not model:
            raise InputError("model is empty; choose 'default' (the bundled model) or a "
                             f"{', '.join(MODEL_SUFFIXES)} file")
        object.__setattr__(self, "model", model)
        for name, value, allowed in (("backend", self.backend, BACKENDS),
                                     ("device", self.device, DEVICES)):
            if value not in allowed:
                raise InputError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        object.__setattr__(self, "diameter", check_diameter(self.diameter))

    @classmethod
    def from_controls(cls, *, diameter_mode: str, diameter_px: float, **kw: Any) -> "SegmentOptions":
        """Options from the widget's values; ``diameter_mode`` is one of :data:`DIAMETER_MODES`."""
        if diameter_mode not in DIAMETER_MODES:
            raise InputError(f"diameter mode must be one of {', '.join(DIAMETER_MODES)}, got "
                             f"{diameter_mode!r}")
        diameter = {"auto": "auto", "none": None}.get(diameter_mode, diameter_px)
        return cls(diameter=diameter, **kw)

    def segmenter_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :class:`edgeseg.Segmenter` (thresholds left out stay the model's)."""
        kw = asdict(self)
        kw["backend"] = None if self.backend == "auto" else self.backend
        for name in ("seed_threshold", "fg_threshold", "min_size"):
            if kw[name] is None:
                del kw[name]
        return kw


class SegmenterCache:
    """The Segmenter of the latest options, built on first use and shared across threads.

    :meth:`get` builds a new Segmenter only when the options changed; a Segmenter is thread-safe,
    so a stack being segmented and a live stream may share one. A replaced Segmenter is not closed
    here (a worker may still be using it): it is freed when the last worker holding it finishes.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._options: SegmentOptions | None = None
        self._segmenter: Any = None

    def get(self, options: SegmentOptions) -> Any:
        from ..segmenter import Segmenter

        with self._lock:
            if self._segmenter is None or options != self._options:
                self._segmenter, self._options = None, None
                self._segmenter = Segmenter(**options.segmenter_kwargs())
                self._options = options
                log.info("napari: %r", self._segmenter)
            return self._segmenter

    def clear(self) -> None:
        """Forget the Segmenter (freed once no worker holds it any more)."""
        with self._lock:
            self._segmenter, self._options = None, None

"""``precision="auto"``: measure the precisions available here, pick the fastest that keeps accuracy.

Each candidate (fp32 / fp16 / int8, whichever this backend and device can run) is timed on this
device (median ms per frame of ``Segmenter.segment`` over the scoring images, after a warm-up)
and scored on labelled real images (mean Kaggle DSB score against the ground truth; by default
the bundled images, :func:`edgeseg._resources.demo_dir`). The choice is the fastest candidate
whose score is at most ``max_drop`` below fp32's; fp32 when none is. The decision -- every
measurement, and why -- is a :class:`PrecisionDecision`: logged, returned, kept on the
Segmenter (``segmenter.precision_decision``) and, for ``edgeseg convert --precision auto``,
written into the artifact's metadata. Nothing is chosen silently.

Candidates: torch: fp32, and fp16 on CUDA. ONNX Runtime with an fp32 model: fp32, fp16 (the
model converted, :func:`edgeseg.converters.convert_fp16`), and int8 (the ONNX Runtime flavour,
:func:`edgeseg.calibration.calibrate`) when calibration images are given. A model already in
fp16/int8 or a TensorRT engine has only its own precision here (convert the fp32 model instead).
"""

from __future__ import annotations

import logging
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .errors import InputError

__all__ = ["Measurement", "PrecisionDecision", "decide", "measure", "scoring_set", "check_max_drop"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Measurement:
    """One candidate: median ms per frame here, and mean DSB score on the scoring images."""

    precision: str
    ms: float | None
    score: float | None
    note: str = ""  # why it could not be measured (then ms and score are None)


@dataclass(frozen=True)
class PrecisionDecision:
    """What ``precision="auto"`` chose, and the measurements and reason behind it."""

    chosen: str
    reason: str
    max_drop: float
    backend: str
    device: str
    images: int
    candidates: tuple[Measurement, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["candidates"] = [asdict(m) for m in self.candidates]
        return d

    def summary(self) -> str:
        parts = [f"{m.precision}: " + (f"{m.ms:.1f} ms, DSB {m.score:.4f}" if m.ms is not None
                                       else f"not measured ({m.note})") for m in self.candidates]
        return (f"precision auto on {self.backend}/{self.device}: chose {self.chosen} ({self.reason}); "
                + "; ".join(parts))


def check_max_drop(max_drop: Any) -> float:
    if isinstance(max_drop, bool) or not isinstance(max_drop, (int, float)) or not 0.0 <= max_drop < 1.0:
        raise InputError(f"max_drop must be a number in [0, 1) (the DSB score a precision may lose "
                         f"against fp32), got {max_drop!r}; e.g. 0.01")
    return float(max_drop)


def decide(measurements: Sequence[Measurement], max_drop: float, backend: str, device: str,
           images: int) -> PrecisionDecision:
    """The fastest measured candidate whose score is within ``max_drop`` of fp32's."""
    max_drop = check_max_drop(max_drop)
    by = {m.precision: m for m in measurements}
    ref = by.get("fp32")
    if ref is None or ref.ms is None or ref.score is None:
        raise InputError("precision auto needs the fp32 candidate as its reference, and it could "
                         f"not be measured ({ref.note if ref else 'not a candidate'})")
    ok = [m for m in measurements if m.ms is not None and m.score is not None
          and ref.score - m.score <= max_drop + 1e-12]
    best = min(ok, key=lambda m: (m.ms, m.precision != "fp32"))
    if best.precision == "fp32":
        faster = [m for m in measurements if m.ms is not None and m.ms < ref.ms and m is not ref]
        if faster:
            why = (f"{', '.join(m.precision for m in faster)} faster but lost more than {max_drop} DSB "
                   "against fp32")
        elif len(measurements) > 1:
            why = "no other precision was faster here"
        else:
            why = "the only precision available here"
    else:
        why = (f"{ref.ms / best.ms:.2f}x faster than fp32 ({best.ms:.1f} vs {ref.ms:.1f} ms) and DSB "
               f"{best.score:.4f} vs fp32 {ref.score:.4f} (drop {ref.score - best.score:+.4f} <= {max_drop})")
    decision = PrecisionDecision(chosen=best.precision, reason=why, max_drop=max_drop, backend=backend,
                                 device=device, images=images, candidates=tuple(measurements))
    log.info("%s", decision.summary())
    return decision


def scoring_set(images: Any = None, limit: int = 4) -> list[tuple[np.ndarray, np.ndarray]]:
    """Labelled (image, labels) pairs: a dataset folder, or by default the bundled real images."""
    from ._resources import demo_dir
    from .data import load_dataset

    samples = [s for s in load_dataset(demo_dir() if images is None else images) if s.has_labels]
    if not samples:
        raise InputError(f"precision auto scores candidates on labelled images, and {images} has none; "
                         "pass a dataset folder with labels (layout A or B)")
    return [(s.image(), s.labels()) for s in samples[:limit]]


def measure(open_segmenter: Callable[[], Any], data: Sequence[tuple[np.ndarray, np.ndarray]],
            precision: str, repeat: int = 2) -> Measurement:
    """Time and score one candidate (``open_segmenter()`` builds it; closed afterwards)."""
    from .metrics import dsb_score

    seg = open_segmenter()
    try:
        scores = [dsb_score(gt, seg.segment(image).labels) for image, gt in data]  # also warms up
        times = []
        for _ in range(repeat):
            for image, _ in data:
                t0 = time.perf_counter()
                seg.segment(image)
                times.append((time.perf_counter() - t0) * 1e3)
    finally:
        seg.close()
    return Measurement(precision=precision, ms=float(statistics.median(times)),
                       score=float(np.mean(scores)))


def candidates_for(model: Any, backend: str, device: str) -> list[str]:
    """The precisions ``precision="auto"`` tries for this model, backend and device."""
    if backend == "torch":
        return ["fp32", "fp16"] if device == "cuda" else ["fp32"]
    if backend == "onnxruntime":
        from .converters.onnx_export import onnx_info

        own = onnx_info(Path(str(model))).precision
        return ["fp32", "fp16", "int8"] if own == "fp32" else [own]
    return []


def _candidate_models(model: Any, backend: str, precisions: list[str], tmp: Path,
                      calib_data: Any) -> dict[str, tuple[Any, dict[str, Any], str]]:
    """precision -> (model, backend options, note: why it cannot run, "" when it can)."""
    out: dict[str, tuple[Any, dict[str, Any], str]] = {}
    for p in precisions:
        if backend == "torch":
            out[p] = (model, {"precision": p}, "")
        elif p == "fp32" or len(precisions) == 1:
            out[p] = (model, {}, "")
        elif p == "fp16":
            from .converters.fp16 import convert_fp16

            out[p] = (convert_fp16(model, tmp / "model.fp16.onnx"), {}, "")
        elif calib_data is None:
            out[p] = (None, {}, "no calibration images (pass calib_data / --calib-data)")
        else:
            from .calibration import calibrate

            out[p] = (calibrate(model, calib_data, tmp / "model.int8.onnx", target="onnxruntime",
                                num_images=16), {}, "")
    return out


def open_auto(model: Any, backend: str | None, device: str, backend_options: dict[str, Any] | None,
              max_drop: float = 0.01, calib_data: Any = None, images: Any = None) -> tuple[Any, PrecisionDecision]:
    """Measure the candidates, open the chosen one: ``(backend object, decision)``."""
    import tempfile

    from .backends import backend_for, open_backend
    from .segmenter import Segmenter

    max_drop = check_max_drop(max_drop)
    backend = backend or backend_for(model)
    options = dict(backend_options or {})
    if "precision" in options:
        raise InputError(f"precision='auto' chooses the precision itself; drop backend_options"
                         f"['precision']={options['precision']!r}, or pass that precision instead of 'auto'")
    probe = open_backend(model, backend, device, **options)  # the device actually used; raises as usual
    device = probe.device
    probe.close()
    precisions = candidates_for(model, backend, device)
    if not precisions:
        raise InputError(f"precision='auto' is not available for the {backend} backend ({model}); a "
                         "TensorRT engine has one precision: build one per precision with edgeseg convert "
                         "--precision auto")
    data = scoring_set(images)
    with tempfile.TemporaryDirectory(prefix="edgeseg-auto-") as tmp:
        models = _candidate_models(model, backend, precisions, Path(tmp), calib_data)
        results = []
        for p, (m, opts, note) in models.items():
            if note:
                results.append(Measurement(p, None, None, note))
                continue
            results.append(measure(lambda: Segmenter(m, backend, device, diameter=None,
                                                     backend_options={**options, **opts}), data, p))
        decision = decide(results, max_drop, backend, device, len(data))
        m, opts, _ = models[decision.chosen]
        chosen = open_backend(m, backend, device, **{**options, **opts})  # loaded before tmp goes
    return chosen, decision

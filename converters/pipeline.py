"""``convert``: one call from a trained model to the artifact a device runs.

    MODEL ("default", .pt, or an fp32 .onnx)
      -> fp32 ONNX (export_onnx)           -> model.onnx
      -> FP16 ONNX (convert_fp16)          -> model.fp16.onnx
      -> INT8 Q/DQ ONNX (calibrate)        -> model.int8.onnx
      -> TensorRT engine (build_engine)    -> model.<precision>.engine + .engine.json
    an FP16 / INT8 .onnx                   -> its engine (the model's own precision)

The target follows from the output suffix (``.onnx`` or ``.engine``); one ``precision`` says what
the network computes in. For an engine, the ONNX it was built from is kept beside it (same stem,
``.onnx``). Each result is checked at the level users care about: the instances it finds on the
bundled real images are compared with the fp32 model's (Kaggle DSB score between the two), or,
for an engine built from an FP16/INT8 .onnx, with that model's.

INT8 comes in two flavours (:mod:`edgeseg.calibration.targets`), one per runtime: ``int8_target``
``"tensorrt"`` (full-range INT8 at convolution inputs, FP16 elsewhere) or ``"onnxruntime"`` (7-bit
weights, integer convolutions on CPUs). Left out, it follows the output: an ``.engine`` is built
from the TensorRT flavour, an ``.onnx`` is the ONNX Runtime flavour; an ``.engine`` with
``"onnxruntime"`` is refused, as is ``int8_target`` with another precision.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Union

from edgeseg.errors import InputError

__all__ = ["convert", "ConvertReport", "PRECISIONS", "INT8_TARGETS"]

log = logging.getLogger(__name__)
PathLike = Union[str, Path]
PRECISIONS = ("fp32", "fp16", "int8")
INT8_TARGETS = ("onnxruntime", "tensorrt")


@dataclass(frozen=True)
class ConvertReport:
    output: Path
    precision: str
    size_bytes: int
    seconds: float
    onnx: Path  # the ONNX model of that precision (the output itself, or the one beside the engine)
    parity_dsb: float | None = None  # mean DSB between this model's and the fp32 model's instances
    steps: list[str] = field(default_factory=list)


def _stage(steps: list[str], report: Callable[[str], None] | None, text: str) -> None:
    steps.append(text)
    log.info(text)
    if report:
        report(text)


def convert(model: PathLike, out: PathLike, *, precision: str | None = "fp32", calib_data: Any = None,
            calib_method: str = "percentile", calib_images: int = 64, calib_cache: PathLike | None = None,
            int8_target: str | None = None, profile: Any = None, workspace_gib: float = 2.0,
            timing_cache: PathLike | None = None, parity: bool = True,
            on_stage: Callable[[str], None] | None = None) -> ConvertReport:
    """Convert ``model`` to ``out`` (``.onnx`` or ``.engine``) in ``precision``.

    ``calib_data`` (a training-image folder or list of images) is required for ``int8``;
    ``int8_target`` picks the INT8 flavour (default: from the output suffix, see above).
    ``precision=None`` means the model's own (fp32 for checkpoints); an FP16/INT8 ``.onnx`` is
    only turned into an engine, in its own precision.
    ``on_stage`` is called with a short text as each stage starts (the CLI's progress bar).
    """
    from .fp16 import convert_fp16
    from .onnx_export import export_onnx, onnx_info

    out = Path(out)
    if precision is not None and precision not in PRECISIONS:
        raise InputError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if out.suffix not in (".onnx", ".engine"):
        raise InputError(f"cannot tell the conversion target from {out}: expected an output ending in "
                         ".onnx (ONNX model) or .engine (TensorRT engine)")
    src = Path(str(model))
    if src.suffix == ".onnx" and out.suffix == ".engine" and src.is_file():
        reduced = onnx_info(src).precision
        if reduced != "fp32":
            return _engine_from_reduced(src, out, reduced, precision=precision, calib_data=calib_data,
                                        int8_target=int8_target, profile=profile, workspace_gib=workspace_gib,
                                        timing_cache=timing_cache, parity=parity, on_stage=on_stage)
    precision = precision or "fp32"
    if int8_target is not None and precision != "int8":
        raise InputError(f"--int8-target only applies to --precision int8, not {precision}")
    if int8_target is not None and int8_target not in INT8_TARGETS:
        raise InputError(f"--int8-target must be one of {INT8_TARGETS}, got {int8_target!r}")
    if out.suffix == ".engine" and int8_target == "onnxruntime":
        raise InputError(f"{out} is a TensorRT engine, which is built from the 'tensorrt' INT8 flavour; "
                         "drop --int8-target onnxruntime, or write a .onnx for ONNX Runtime")
    target = int8_target or ("tensorrt" if out.suffix == ".engine" else "onnxruntime")
    if precision == "int8" and calib_data is None:
        raise InputError("INT8 needs calibration images: pass --calib-data DIR (training images; the "
                         "model's validation images are left out automatically)")
    if precision != "int8" and calib_data is not None:
        raise InputError(f"--calib-data only applies to --precision int8, not {precision}")
    t0 = time.perf_counter()
    steps: list[str] = []
    onnx_out = out if out.suffix == ".onnx" else out.with_suffix(".onnx")
    with tempfile.TemporaryDirectory(prefix="edgeseg-convert-") as tmp:
        if src.suffix == ".onnx":
            if onnx_info(src).precision != "fp32":
                raise InputError(f"{src} is already {onnx_info(src).precision}; convert from the fp32 "
                                 "model or the checkpoint")
            fp32 = src
        else:
            _stage(steps, on_stage, "export fp32 ONNX")
            fp32 = export_onnx(model, onnx_out if precision == "fp32" else Path(tmp) / "model.onnx")
        if precision == "fp32":
            if fp32.resolve() != onnx_out.resolve():
                from edgeseg._atomic import atomic_write_bytes

                atomic_write_bytes(onnx_out, fp32.read_bytes())
            result = onnx_out
        elif precision == "fp16":
            _stage(steps, on_stage, "convert to FP16")
            result = convert_fp16(fp32, onnx_out)
        else:
            from edgeseg.calibration import calibrate

            _stage(steps, on_stage, f"calibrate INT8 for {target} ({calib_method}, up to {calib_images} images)")
            result = calibrate(fp32, calib_data, onnx_out, target=target, method=calib_method,
                               num_images=calib_images, cache=calib_cache)
        final = result
        if out.suffix == ".engine":
            from .tensorrt_build import build_engine

            _stage(steps, on_stage, "build TensorRT engine")
            final = build_engine(result, out, profile=profile, workspace_gib=workspace_gib,
                                 timing_cache=timing_cache)
        agreement = None
        if parity:
            _stage(steps, on_stage, "check instances against fp32")
            agreement = _parity(fp32, final)
    return ConvertReport(output=final, precision=precision, size_bytes=final.stat().st_size,
                         seconds=time.perf_counter() - t0, onnx=Path(result), parity_dsb=agreement,
                         steps=steps)


def _engine_from_reduced(src: Path, out: Path, reduced: str, *, precision: str | None, calib_data: Any,
                         int8_target: str | None, profile: Any, workspace_gib: float, timing_cache: Any,
                         parity: bool, on_stage: Callable[[str], None] | None) -> ConvertReport:
    """An engine from an FP16 / INT8 .onnx: built as it is (its precision, its INT8 flavour)."""
    from .tensorrt_build import build_engine

    if precision not in (None, reduced):
        raise InputError(f"{src} is {reduced}; an engine keeps the ONNX model's precision, so --precision "
                         f"{precision} conflicts with it: leave --precision out, or convert the fp32 model")
    if calib_data is not None or int8_target is not None:
        raise InputError(f"{src} is already {reduced}: --calib-data and --int8-target apply when calibrating "
                         "an fp32 model")
    t0 = time.perf_counter()
    steps: list[str] = []
    _stage(steps, on_stage, "build TensorRT engine")
    final = build_engine(src, out, profile=profile, workspace_gib=workspace_gib, timing_cache=timing_cache)
    agreement = None
    if parity:
        _stage(steps, on_stage, f"check instances against {src.name}")
        agreement = _parity(src, final)
    return ConvertReport(output=final, precision=reduced, size_bytes=final.stat().st_size,
                         seconds=time.perf_counter() - t0, onnx=src, parity_dsb=agreement, steps=steps)


def _parity(reference: Path, candidate: Path) -> float:
    """Mean DSB score between the instances of two models on the bundled real images."""
    import numpy as np

    from edgeseg._resources import demo_dir
    from edgeseg.data import load_dataset
    from edgeseg.metrics import dsb_score
    from edgeseg.segmenter import Segmenter

    ref = Segmenter(reference, device="cpu")
    cand = Segmenter(candidate, device="cuda" if candidate.suffix == ".engine" else "cpu")
    scores = []
    for s in load_dataset(demo_dir()):
        image = s.image()
        scores.append(dsb_score(ref.segment(image).labels, cand.segment(image).labels))
    return float(np.mean(scores))

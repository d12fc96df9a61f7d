"""``convert``: one call from a trained model to the artifact a device runs.

    MODEL ("default", .pt, or an .onnx of any precision)
      -> fp32 ONNX (export_onnx)           -> model.onnx
      -> FP16 ONNX (convert_fp16)          -> model.fp16.onnx
      -> INT8 Q/DQ ONNX (calibrate)        -> model.int8.onnx
      -> TensorRT engine (build_engine)    -> model.<precision>.engine + .engine.json

The target follows from the output suffix (``.onnx`` or ``.engine``); one ``precision`` says what
the network computes in. It defaults to the source's own: fp32 for a checkpoint, the precision
recorded in an ONNX model's metadata otherwise, so that ``convert("model.int8.onnx",
"model.int8.engine")`` builds the INT8 graph into an engine as it is. A source already in fp16 or
int8 is never converted to another precision (that needs the fp32 model).

Only the output (and an engine's ``<output>.json`` sidecar) is written; intermediates (the fp32
export on the way to fp16/int8, the ONNX an engine is built from) live in a temporary folder. An
output that names one of the inputs is refused before anything runs. Each result is checked at
the level users care about: the instances it finds on the bundled real images are compared with
the reference's (Kaggle DSB score between the two): the fp32 ONNX model, the checkpoint for an
fp32 export, or the source ONNX an engine was built from unchanged.

INT8 comes in two flavours (:mod:`edgeseg.calibration.targets`), one per runtime: ``int8_target``
``"tensorrt"`` (full-range INT8 at convolution inputs, FP16 elsewhere) or ``"onnxruntime"`` (7-bit
weights, integer convolutions on CPUs). Left out, it follows the output: an ``.engine`` is built
from the TensorRT flavour, an ``.onnx`` is the ONNX Runtime flavour; an ``.engine`` with
``"onnxruntime"`` is refused, as is ``int8_target`` with another precision or an already-int8
source.
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
    # the ONNX model of that precision: the output itself, or the source an engine was built from
    # unchanged; None when it was an intermediate (deleted with its temporary folder)
    onnx: Path | None
    parity_dsb: float | None = None  # mean DSB between this model's and the reference's instances
    steps: list[str] = field(default_factory=list)
    parity_reference: str = ""  # what the instances were compared with ("" when skipped)


def _stage(steps: list[str], report: Callable[[str], None] | None, text: str) -> None:
    steps.append(text)
    log.info(text)
    if report:
        report(text)


def _check_outputs(out: Path, inputs: list[Any]) -> None:
    """InputError if ``out`` or, for an engine, its sidecar would replace one of ``inputs``."""
    from edgeseg.commands._paths import check_not_input

    check_not_input(out, inputs, "the output")
    if out.suffix == ".engine":
        check_not_input(out.with_name(out.name + ".json"), inputs, "the engine's sidecar")


def convert(model: PathLike, out: PathLike, *, precision: str | None = None, calib_data: Any = None,
            calib_method: str = "percentile", calib_images: int = 64, calib_cache: PathLike | None = None,
            int8_target: str | None = None, profile: Any = None, workspace_gib: float = 2.0,
            timing_cache: PathLike | None = None, parity: bool = True,
            on_stage: Callable[[str], None] | None = None) -> ConvertReport:
    """Convert ``model`` to ``out`` (``.onnx`` or ``.engine``) in ``precision``.

    ``precision=None``: the source's own (fp32 for a checkpoint; an ONNX model's from its
    metadata). ``calib_data`` (a training-image folder or list of images) is required when an
    fp32 model becomes ``int8``. ``on_stage`` is called with a short text as each stage starts
    (the CLI's progress bar). Nothing but ``out`` (and an engine's sidecar) is written.
    ``int8_target`` picks the INT8 flavour when calibrating (default: from the output suffix).
    """
    from .onnx_export import export_onnx, onnx_info

    out = Path(out)
    if precision is not None and precision not in PRECISIONS:
        raise InputError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if out.suffix not in (".onnx", ".engine"):
        raise InputError(f"cannot tell the conversion target from {out}: expected an output ending in "
                         ".onnx (ONNX model) or .engine (TensorRT engine)")
    src = Path(str(model))
    from_onnx = src.suffix.lower() == ".onnx"
    named_inputs = [src if (from_onnx or src.exists()) else None, calib_cache, timing_cache]
    if isinstance(calib_data, (str, Path)):
        named_inputs.append(calib_data)
    _check_outputs(out, named_inputs)
    source_precision = onnx_info(src).precision if from_onnx else "fp32"
    target = precision or source_precision
    if source_precision != "fp32" and target != source_precision:
        raise InputError(f"{src} is already {source_precision} and cannot become {target} (--precision "
                         f"{target} conflicts with it); convert the fp32 "
                         f"model or the checkpoint to {target}, or drop --precision to build {src.name} "
                         "as it is")
    calibrating = target == "int8" and source_precision != "int8"
    if int8_target is not None:
        if int8_target not in INT8_TARGETS:
            raise InputError(f"--int8-target must be one of {INT8_TARGETS}, got {int8_target!r}")
        if not calibrating:
            what = (f"{src.name} is already int8 (its flavour is fixed)" if source_precision == "int8"
                    else f"not {target}")
            raise InputError(f"--int8-target only applies to --precision int8, {what}; drop "
                             "--int8-target")
        if out.suffix == ".engine" and int8_target == "onnxruntime":
            raise InputError(f"{out} is a TensorRT engine, which is built from the 'tensorrt' INT8 flavour; "
                             "drop --int8-target onnxruntime, or write a .onnx for ONNX Runtime")
    flavour = int8_target or ("tensorrt" if out.suffix == ".engine" else "onnxruntime")
    if calibrating and calib_data is None:
        raise InputError("INT8 needs calibration images: pass --calib-data DIR (training images; the "
                         "model's validation images are left out automatically)")
    if calib_data is not None and not calibrating:
        if target == "int8":
            raise InputError(f"--calib-data is not used: {src} is already int8 (calibrated); drop "
                             "--calib-data to build it as it is")
        raise InputError(f"--calib-data only applies to --precision int8, not {target}")
    t0 = time.perf_counter()
    steps: list[str] = []
    with tempfile.TemporaryDirectory(prefix="edgeseg-convert-") as tmp:
        tmpdir = Path(tmp)
        # the ONNX of the target precision: the output itself, or (engine) an intermediate
        onnx_out = out if out.suffix == ".onnx" else tmpdir / f"{out.stem}.onnx"
        kept: Path | None = onnx_out if out.suffix == ".onnx" else None
        # an fp32 ONNX model: the reference of fp16/int8 results (None for an fp16/int8 source)
        fp32: Path | None = src if from_onnx and source_precision == "fp32" else None
        if from_onnx and target == source_precision:  # as it is: copy to .onnx, or build from it
            if out.suffix == ".onnx":
                from edgeseg._atomic import atomic_write_bytes

                _stage(steps, on_stage, f"copy the {target} ONNX")
                atomic_write_bytes(out, src.read_bytes())
                result = out
            else:
                result, kept = src, src
        else:  # the source is fp32 here (an fp32 ONNX or a checkpoint): export, then convert
            if fp32 is None:
                _stage(steps, on_stage, "export fp32 ONNX")
                fp32 = export_onnx(model, onnx_out if target == "fp32" else tmpdir / "model.fp32.onnx")
            if target == "fp32":
                result = fp32
            elif target == "fp16":
                from .fp16 import convert_fp16

                _stage(steps, on_stage, "convert to FP16")
                result = convert_fp16(fp32, onnx_out)
            else:
                from edgeseg.calibration import calibrate

                _stage(steps, on_stage, f"calibrate INT8 for {flavour} ({calib_method}, up to "
                                        f"{calib_images} images)")
                result = Path(calibrate(fp32, calib_data, onnx_out, target=flavour,
                                        method=calib_method, num_images=calib_images,
                                        cache=calib_cache))
        final = result
        if out.suffix == ".engine":
            from .tensorrt_build import build_engine

            _stage(steps, on_stage, "build TensorRT engine")
            final = build_engine(result, out, profile=profile, workspace_gib=workspace_gib,
                                 timing_cache=timing_cache)
        agreement = None
        reference, reference_name = _reference(model, src, from_onnx, source_precision, target, fp32,
                                               final)
        if parity and reference is not None:
            _stage(steps, on_stage, f"check instances against {reference_name}")
            agreement = _parity(reference, final)
        if agreement is None:
            reference_name = ""
    return ConvertReport(output=final, precision=target, size_bytes=final.stat().st_size,
                         seconds=time.perf_counter() - t0, onnx=kept, parity_dsb=agreement,
                         steps=steps, parity_reference=reference_name)


def _reference(model: Any, src: Path, from_onnx: bool, source_precision: str, target: str,
               fp32: Path | None, final: Path) -> tuple[Any, str]:
    """The model whose instances ``final`` is compared with, and its name (None: nothing to compare)."""
    if not from_onnx and target == "fp32":
        return model, "the fp32 checkpoint (torch)"  # not the exported file against itself
    if fp32 is not None and fp32 != final:
        return fp32, "the fp32 ONNX model"
    if from_onnx and final.suffix == ".engine":
        return src, f"its {source_precision} ONNX source"
    return None, ""  # a byte copy of the source: identical by construction


def _parity(reference: Any, candidate: Path) -> float:
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

"""``convert(..., precision="auto")``: build every precision, keep the fastest that keeps accuracy.

For an ``.onnx`` output the candidates are fp32, fp16 and (with calibration images) the ONNX
Runtime INT8 flavour, timed and scored with ONNX Runtime on this machine's CPU; for an
``.engine`` output the fp32 / fp16 / INT8 engines, on this machine's GPU. Each is scored on
labelled real images (:func:`edgeseg.autoprecision.scoring_set`, the bundled ones by default)
and the choice follows :func:`edgeseg.autoprecision.decide`. The chosen artifact is written to
the output with the decision in its metadata: ONNX ``metadata_props["edgeseg.precision_decision"]``
(JSON), or the key ``"precision_decision"`` of an engine's ``.engine.json`` sidecar.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
from pathlib import Path
from typing import Any, Callable

from edgeseg.autoprecision import Measurement, PrecisionDecision, check_max_drop, decide, measure, scoring_set
from edgeseg.errors import InputError

__all__ = ["convert_auto", "DECISION_KEY"]

log = logging.getLogger(__name__)
DECISION_KEY = "edgeseg.precision_decision"


def _write_onnx_with_decision(src: Path, out: Path, decision: PrecisionDecision) -> None:
    from edgeseg._atomic import atomic_write_bytes

    from .onnx_export import load_onnx

    proto = load_onnx(src)
    keep = [p for p in proto.metadata_props if p.key != DECISION_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    entry = proto.metadata_props.add()
    entry.key, entry.value = DECISION_KEY, json.dumps(decision.to_dict())
    atomic_write_bytes(out, proto.SerializeToString())


def _write_engine_with_decision(src: Path, out: Path, decision: PrecisionDecision) -> None:
    from edgeseg._atomic import atomic_write_bytes, atomic_write_json

    sidecar = src.with_name(src.name + ".json")
    meta = json.loads(sidecar.read_text()) if sidecar.exists() else {}
    meta["precision_decision"] = decision.to_dict()
    atomic_write_bytes(out, src.read_bytes())
    atomic_write_json(out.with_name(out.name + ".json"), meta)


def read_decision(path: Any) -> dict[str, Any] | None:
    """The decision recorded in an artifact written by :func:`convert_auto` (None: none recorded)."""
    path = Path(path)
    if path.suffix == ".engine":
        sidecar = path.with_name(path.name + ".json")
        return json.loads(sidecar.read_text()).get("precision_decision") if sidecar.exists() else None
    from .onnx_export import load_onnx

    for p in load_onnx(path).metadata_props:
        if p.key == DECISION_KEY:
            return json.loads(p.value)
    return None


def convert_auto(model: Any, out: Any, *, max_drop: float = 0.01, calib_data: Any = None,
                 images: Any = None, on_stage: Callable[[str], None] | None = None,
                 **options: Any) -> tuple[Any, PrecisionDecision]:
    """Build each candidate precision, measure, write the chosen one to ``out``:
    ``(ConvertReport of the chosen artifact, decision)``. ``options`` go to
    :func:`edgeseg.converters.convert` (calibration and engine settings)."""
    from edgeseg.segmenter import Segmenter

    from .onnx_export import onnx_info
    from .pipeline import convert

    out = Path(out)
    max_drop = check_max_drop(max_drop)
    if out.suffix not in (".onnx", ".engine"):
        raise InputError(f"cannot tell the conversion target from {out}: expected an output ending in "
                         ".onnx (ONNX model) or .engine (TensorRT engine)")
    src = Path(str(model))
    if src.suffix.lower() == ".onnx" and onnx_info(src).precision != "fp32":
        raise InputError(f"--precision auto compares precisions against fp32, and {src} is already "
                         f"{onnx_info(src).precision}; pass the fp32 model or the checkpoint")
    from .pipeline import _check_outputs

    _check_outputs(out, [src if src.exists() else None, calib_data if isinstance(calib_data, (str, Path))
                         else None])
    engine = out.suffix == ".engine"
    device = "cuda" if engine else "cpu"
    data = scoring_set(images)
    with tempfile.TemporaryDirectory(prefix="edgeseg-auto-") as tmp:
        reports, results = {}, []
        for p in ("fp32", "fp16", "int8"):
            if p == "int8" and calib_data is None:
                results.append(Measurement(p, None, None, "no calibration images (pass --calib-data)"))
                continue
            if on_stage:
                on_stage(f"build and measure {p}")
            cand = Path(tmp) / f"model.{p}{out.suffix}"
            reports[p] = convert(model, cand, precision=p, calib_data=calib_data if p == "int8" else None,
                                 parity=False, **options)
            results.append(measure(lambda: Segmenter(cand, device=device, diameter=None), data, p))
        decision = decide(results, max_drop, "tensorrt" if engine else "onnxruntime", device, len(data))
        chosen = reports[decision.chosen].output
        (_write_engine_with_decision if engine else _write_onnx_with_decision)(chosen, out, decision)
    report = dataclasses.replace(reports[decision.chosen], output=out, size_bytes=out.stat().st_size,
                                 onnx=None if engine else out)
    return report, decision

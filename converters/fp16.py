"""``convert_fp16``: an FP16 ONNX model for strongly typed FP16 TensorRT engines.

Weights and activations become float16; the graph keeps float32 inputs and outputs (the Cast
nodes sit inside), and numerically sensitive ops (by default the final Softmax) stay float32.
The metadata travels along with ``precision="fp16"`` and the checksum of the fp32 source.
Before writing (atomically), the model is run on ONNX Runtime against its fp32 source.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Sequence, Union

import numpy as np

from edgeseg._atomic import atomic_write_bytes
from edgeseg.errors import InputError, ModelError
from edgeseg.modelinfo import file_sha256

from .onnx_export import (
    _require,
    _verification_inputs,
    check_graph,
    io_names,
    load_onnx,
    onnx_info,
    set_metadata,
)

__all__ = ["convert_fp16", "KEEP_FP32"]

log = logging.getLogger(__name__)
PathLike = Union[str, Path]

KEEP_FP32 = ("Softmax",)


def convert_fp16(src: PathLike, out: PathLike, *, keep_fp32: Sequence[str] = KEEP_FP32,
                 verify: bool = True, max_abs: float = 0.05) -> Path:
    """Convert an edgeseg fp32 ONNX model to FP16 (fp32 I/O) and return the written path.

    Args:
        src: an fp32 ``.onnx`` written by :func:`~edgeseg.converters.export_onnx`.
        out: the ``.onnx`` path to write.
        keep_fp32: op types left in float32.
        verify: compare with ``src`` on ONNX Runtime before writing; ``max_abs`` bounds the
            largest probability difference (a sanity bound: parity is judged on instances, see
            ``edgeseg parity``).
    """
    onnx = _require("onnx")
    float16 = _require("onnxconverter_common.float16")
    src, out = Path(src), Path(out)
    if out.suffix != ".onnx":
        raise InputError(f"the FP16 output path must end in .onnx, got {out}")
    model = load_onnx(src)
    info = onnx_info(model)
    if info.precision != "fp32":
        raise InputError(f"{src} is already {info.precision}; convert the fp32 model to FP16")
    io_names(model, str(src))  # one input, one output, whatever their names
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m16 = float16.convert_float_to_float16(model, keep_io_types=True, op_block_list=list(keep_fp32))
    if caught:
        log.debug("FP16 conversion clipped %d tiny/huge constants to the float16 range", len(caught))
    _float32_outputs(m16, onnx)
    set_metadata(m16, info.replace(precision="fp16", source_sha256=file_sha256(src)))
    check_graph(m16, "the FP16 graph")
    data = m16.SerializeToString()
    if verify:
        err = max_prob_difference(src.read_bytes(), data, info.multiple)
        log.info("FP16 vs fp32 on ONNX Runtime: max abs probability difference %.3g", err)
        if not err <= max_abs:
            raise ModelError(f"the FP16 model differs from its fp32 source by {err:.3g} (max abs "
                             f"probability), more than {max_abs}; nothing was written")
    atomic_write_bytes(out, data)
    return out


def _float32_outputs(model, onnx) -> None:
    """Make every graph output float32 again.

    onnxconverter-common casts the output of a blocked (fp32) last op back to float16 even with
    ``keep_io_types=True``; such a trailing ``Cast(to=FLOAT16)`` is removed and its input renamed
    to the graph output.
    """
    f16, f32 = onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT
    g = model.graph
    for out in g.output:
        if out.type.tensor_type.elem_type != f16:
            continue
        cast = next((n for n in g.node if out.name in n.output), None)
        to = next((a.i for a in cast.attribute if a.name == "to"), None) if cast is not None else None
        if cast is None or cast.op_type != "Cast" or to != f16:
            raise ModelError(f"FP16 conversion left output {out.name} in float16 and it cannot be "
                             "restored to float32")
        src = cast.input[0]
        for n in g.node:
            n.output[:] = [out.name if o == src else o for o in n.output]
            n.input[:] = [out.name if i == src else i for i in n.input]
        g.node.remove(cast)
        out.type.tensor_type.elem_type = f32


def max_prob_difference(reference: bytes, candidate: bytes, multiple: int) -> float:
    """Largest probability difference between two edgeseg ONNX models on ONNX Runtime (CPU).

    The input and output names are each model's own (one input, one output).
    """
    ort = _require("onnxruntime")
    so = ort.SessionOptions()
    so.log_severity_level = 3
    a = ort.InferenceSession(reference, so, providers=["CPUExecutionProvider"])
    b = ort.InferenceSession(candidate, so, providers=["CPUExecutionProvider"])
    names = [(s.get_inputs()[0].name, s.get_outputs()[0].name) for s in (a, b)]
    err = 0.0
    for x in _verification_inputs(multiple):
        pa = a.run([names[0][1]], {names[0][0]: x})[0]
        pb = b.run([names[1][1]], {names[1][0]: x})[0]
        err = max(err, float(np.abs(pa.astype(np.float32) - pb.astype(np.float32)).max()))
    return err

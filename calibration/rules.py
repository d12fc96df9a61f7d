"""TensorRT's rules for explicitly quantized (Q/DQ) ONNX models, as a checker.

TensorRT takes INT8 Q/DQ graphs that are symmetric (every zero point 0), quantize weights per
output channel (Conv: axis 0; ConvTranspose, whose weights are C_in x C_out x kH x kW: axis 1),
and keep biases in float (no INT32 DequantizeLinear). ONNX Runtime's ``quantize_static`` defaults
break each rule; :func:`check_tensorrt_qdq` lists every violation so tests and the calibrator can
refuse a model TensorRT would reject or mis-run. It also holds edgeseg's TensorRT flavour to
NVIDIA's placement advice: Q/DQ at the inputs of weighted layers only (a Conv output feeding a
QuantizeLinear is reported), logits never quantized before Softmax, and full-range 8-bit weights
(the 7-bit weights of the ONNX Runtime flavour are reported).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["check_tensorrt_qdq"]

_WEIGHT_AXIS = {"Conv": 0, "ConvTranspose": 1}


def check_tensorrt_qdq(model: Any) -> list[str]:
    """Violations of TensorRT's Q/DQ rules in an ONNX ModelProto (empty list: valid)."""
    from onnx import TensorProto, numpy_helper

    g = model.graph
    inits = {t.name: t for t in g.initializer}
    consts = {n.output[0]: n.attribute[0].t for n in g.node if n.op_type == "Constant" and n.attribute}
    producers = {o: n for n in g.node for o in n.output}
    problems: list[str] = []

    def const(name: str) -> np.ndarray | None:
        t = inits.get(name) or consts.get(name)
        return None if t is None else numpy_helper.to_array(t)

    qdq = [n for n in g.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    if not qdq:
        problems.append("no QuantizeLinear/DequantizeLinear nodes: the model is not quantized")
    for n in qdq:
        if len(n.input) > 2 and n.input[2]:
            zp = const(n.input[2])
            if zp is None:
                problems.append(f"{n.name}: zero point {n.input[2]} is not a constant")
            else:
                if np.any(zp != 0):
                    problems.append(f"{n.name}: zero point {zp.ravel()[:4]} is not 0 (TensorRT needs symmetric INT8)")
                if zp.dtype != np.int8:
                    problems.append(f"{n.name}: zero point dtype {zp.dtype}, expected int8")
        if n.op_type == "DequantizeLinear":
            x = const(n.input[0])
            if x is not None and x.dtype == np.int32:
                problems.append(f"{n.name}: INT32 DequantizeLinear (a quantized bias); TensorRT needs float biases")
    consumers: dict[str, list[Any]] = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    for n in g.node:
        if n.op_type in _WEIGHT_AXIS and any(c.op_type == "QuantizeLinear" for c in consumers.get(n.output[0], [])):
            problems.append(f"{n.name}: its output {n.output[0]} is quantized; quantize only the inputs of "
                            "weighted layers and leave their outputs to TensorRT's fusion")
    for sm in (n for n in g.node if n.op_type == "Softmax"):
        dq = producers.get(sm.input[0])
        if dq is not None and dq.op_type == "DequantizeLinear":
            problems.append(f"{sm.name}: its input {sm.input[0]} (the logits) went through Q/DQ; keep logits float")
    # weights of Conv / ConvTranspose: quantized per channel on the right axis, full range
    for n in g.node:
        if n.op_type not in _WEIGHT_AXIS or len(n.input) < 2:
            continue
        dq = producers.get(n.input[1])
        if dq is None or dq.op_type != "DequantizeLinear":
            problems.append(f"{n.name}: weight {n.input[1]} is not quantized (no DequantizeLinear)")
            continue
        scale = const(dq.input[1])
        axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
        w = const(dq.input[0])
        if w is not None and w.dtype == np.int8 and w.size and int(np.abs(w.astype(np.int32)).max()) <= 64:
            problems.append(f"{n.name}: weight {n.input[1]} uses at most 7 bits (|q| <= 64, ONNX Runtime's "
                            "reduce_range); TensorRT's flavour quantizes weights to the full [-127, 127]")
        if w is None:  # Q -> DQ on a float weight: look through the QuantizeLinear
            q = producers.get(dq.input[0])
            w = const(q.input[0]) if q is not None and q.op_type == "QuantizeLinear" else None
        if scale is None or scale.ndim != 1 or (w is not None and scale.size != w.shape[_WEIGHT_AXIS[n.op_type]]):
            problems.append(f"{n.name}: weight scale is not per-channel")
        elif axis != _WEIGHT_AXIS[n.op_type]:
            problems.append(f"{n.name}: weight quantized on axis {axis}, TensorRT needs axis "
                            f"{_WEIGHT_AXIS[n.op_type]} for {n.op_type}")
        if len(n.input) > 2 and n.input[2]:
            b = producers.get(n.input[2])
            if b is not None and b.op_type == "DequantizeLinear":
                problems.append(f"{n.name}: bias {n.input[2]} goes through DequantizeLinear; keep it float")
            elif n.input[2] in inits and inits[n.input[2]].data_type not in (TensorProto.FLOAT, TensorProto.FLOAT16):
                problems.append(f"{n.name}: bias {n.input[2]} is not float32 or float16")
    return problems

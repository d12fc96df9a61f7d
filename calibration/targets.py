"""The two INT8 flavours of a calibrated model: one for ONNX Runtime on CPUs, one for TensorRT.

Both take the same calibrated activation ranges and quantize symmetric INT8 activations and
per-channel INT8 weights at the inputs of every Conv/ConvTranspose, with float biases. They
differ where the runtimes differ:

``tensorrt`` (what ``.engine`` builds use)
    Q/DQ only at the inputs of the weighted layers (activations and weights), never at their
    outputs, so TensorRT fuses each DQ -> Conv into an INT8 convolution and chooses the output
    precision itself, and the logits reach Softmax unrounded (NVIDIA's Q/DQ placement advice).
    Full-range 8-bit weights. Everything not quantized is FP16 (a mixed INT8 + FP16 graph, FP16
    Q/DQ scales, hence opset 19): a strongly typed network runs each layer in the graph's own
    types, so FP32 would stay FP32. Graph inputs and outputs stay float32, Softmax float32.

``onnxruntime`` (ONNX Runtime's CPU execution provider)
    ONNX Runtime computes a convolution in integers only for DQ -> Conv -> Q (it fuses them into
    QLinearConv); with Q/DQ at the inputs only it runs float convolutions on dequantized values,
    slower than the fp32 model. So the outputs are quantized too, except the head's logits, with
    asymmetric uint8 activations (ONNX Runtime's CPU format, U8S8): a ReLU then needs no op of its
    own (the quantizer drops it: a uint8 zero point of 0 clips at 0), and ReLU, MaxPool and
    Concat stay in integers (QLinearConv -> MaxPool -> QLinearConcat in NHWC, without the float
    ReLU and Q/DQ pair after every convolution that symmetric int8 activations needed). Measured
    on a 2-core Xeon (AVX-512 VNNI), the bundled model at 512^2: 85 -> 63 ms per frame, DSB on the
    126 held-out-group images 0.5323 (symmetric int8) / 0.5332 (uint8) vs 0.5336 fp32.
    ConvTranspose runs in float on dequantized inputs. On x86 CPUs without VNNI (AVX2,
    AVX-512 without VNNI) ONNX Runtime's u8s8 kernels add pairs of u8 x s8 products in saturating
    16-bit lanes, which full-range weights overflow (ONNX Runtime's quantization docs: use
    ``reduce_range`` or U8U8 there). Weights are therefore 7-bit (``reduce_range``, [-64, 64]): with
    them 2 x 255 x 64 < 2**15, so the result no longer depends on the CPU. Float parts stay float32.
    Measured on the default model (README): full-range weights lost 0.038 DSB under an emulated
    AVX2 CPU, 7-bit weights gave bit-identical output on AVX2 and AVX-512 VNNI and kept the INT8
    speed; U8U8 also held on AVX2 but ran at fp32 speed (VNNI speeds up u8 x s8 only).

The flavour is recorded in the model's metadata (``model_card["int8"]`` and the
``edgeseg.int8_target`` entry); the TensorRT engine builder refuses the ``onnxruntime`` one.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edgeseg.errors import InputError, ModelError

__all__ = ["TARGETS", "Int8Flavour", "flavour", "drop_logit_qdq", "mixed_fp16", "FP16_MIN_SCALE", "cpu_int8_isa"]

TARGETS = ("onnxruntime", "tensorrt")
FP16_OPSET = 19  # QuantizeLinear / DequantizeLinear take float16 inputs and scales from opset 19
FP16_MIN_SCALE = 2.0 ** -14  # the smallest normal float16: smaller scales would lose precision
KEEP_FP32 = ("Softmax",)


@dataclass(frozen=True)
class Int8Flavour:
    """How an INT8 model is laid out for one runtime (see the module docstring)."""

    target: str
    weight_bits: int  # 7: reduce_range ([-64, 64]); 8: full range ([-127, 127])
    qdq: str  # which tensors carry Q/DQ
    float_type: str  # the type of everything not quantized
    why: str
    float_edge_convs: bool = False  # the first (image) and last (logits) Conv stay float
    activations: str = "int8"  # "int8": symmetric, zero points 0; "uint8": asymmetric (ONNX Runtime)

    @property
    def reduce_range(self) -> bool:
        return self.weight_bits == 7

    @property
    def output_qdq(self) -> bool:
        return self.target == "onnxruntime"

    def metadata(self) -> dict[str, Any]:
        return {**asdict(self), "activation_bits": 8, "symmetric": self.activations == "int8",
                "per_channel_weights": True}


_FLAVOURS = {
    "tensorrt": Int8Flavour(
        target="tensorrt", weight_bits=8,
        qdq="inputs of Conv/ConvTranspose (activations and weights); outputs float",
        float_type="float16 (Softmax, graph inputs and outputs float32)",
        why="TensorRT fuses DQ -> Conv into INT8 convolutions and picks their output precision; a "
            "strongly typed network runs the rest in the graph's types, so FP16"),
    "onnxruntime": Int8Flavour(
        target="onnxruntime", weight_bits=7,
        qdq="inputs and outputs of Conv/ConvTranspose/ReLU/MaxPool/Concat (ReLU folded into the "
            "uint8 zero point), except the logits; the first (image) and last (logits) "
            "convolutions stay float",
        float_type="float32",
        why="ONNX Runtime runs integer convolutions only for DQ -> Conv -> Q, and keeps ReLU, "
            "MaxPool and Concat in integers with uint8 activations; 7-bit weights keep its "
            "u8s8 kernels from saturating on x86 CPUs without VNNI (AVX2), so results do not depend "
            "on the CPU; with 7-bit weights the two edge convolutions cost the most accuracy (v2 "
            "model, 126 held-out images: -0.0100 DSB vs fp32 with them, -0.0075 without)",
        float_edge_convs=True, activations="uint8"),
}


def flavour(target: str) -> Int8Flavour:
    if target not in _FLAVOURS:
        raise InputError(f"INT8 target must be one of {TARGETS}, got {target!r}: 'tensorrt' for TensorRT "
                         "engines, 'onnxruntime' for ONNX Runtime on the CPU")
    return _FLAVOURS[target]


def drop_logit_qdq(model: Any) -> None:
    """Remove Q -> DQ pairs between the head's logits and Softmax (the logits stay float)."""
    g = model.graph
    producers = {o: n for n in g.node for o in n.output}
    for sm in [n for n in g.node if n.op_type == "Softmax"]:
        dq = producers.get(sm.input[0])
        if dq is None or dq.op_type != "DequantizeLinear":
            continue
        q = producers.get(dq.input[0])
        if q is None or q.op_type != "QuantizeLinear":
            continue
        consumers = [n for n in g.node if dq.output[0] in n.input or q.output[0] in n.input]
        if consumers != [sm, dq] and consumers != [dq, sm]:
            continue  # shared with another consumer: leave it
        sm.input[0] = q.input[0]
        g.node.remove(dq)
        g.node.remove(q)


def _clamp_weight_scales(model: Any) -> int:
    """Raise per-channel weight scales below :data:`FP16_MIN_SCALE` to it, requantizing the weights.

    A weight channel that small has an absolute rounding error of at most 2**-15 either way; as a
    float16 subnormal its scale would carry a relative error of up to 50 %. Returns how many.
    """
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    changed = 0
    for n in model.graph.node:
        if n.op_type != "DequantizeLinear" or n.input[0] not in inits or n.input[1] not in inits:
            continue
        q = numpy_helper.to_array(inits[n.input[0]])
        if q.dtype != np.int8:
            continue
        scale = numpy_helper.to_array(inits[n.input[1]]).astype(np.float32)
        small = (scale > 0) & (scale < FP16_MIN_SCALE)
        if not small.any():
            continue
        axis = next((a.i for a in n.attribute if a.name == "axis"), 1) if scale.ndim else 0
        shape = [1] * q.ndim
        if scale.ndim:
            shape[axis] = -1
        new = np.where(small, np.float32(FP16_MIN_SCALE), scale)
        ratio = (scale / new).reshape(shape) if scale.ndim else scale / new
        q = np.clip(np.round(q.astype(np.float32) * ratio), -127, 127).astype(np.int8)
        inits[n.input[0]].CopyFrom(numpy_helper.from_array(q, n.input[0]))
        inits[n.input[1]].CopyFrom(numpy_helper.from_array(new.astype(np.float32), n.input[1]))
        changed += int(small.sum())
    return changed


def mixed_fp16(model: Any) -> Any:
    """The INT8 Q/DQ graph with every float tensor in float16 except Softmax and the graph I/O.

    Q/DQ scales become float16 (so the opset is raised to 19, which allows them); DQ -> Conv
    stays adjacent, so TensorRT still fuses INT8 convolutions.
    """
    import onnx
    from onnxconverter_common import float16

    from edgeseg.converters.fp16 import _float32_outputs

    for op in model.opset_import:
        if op.domain in ("", "ai.onnx") and op.version < FP16_OPSET:
            op.version = FP16_OPSET
    _clamp_weight_scales(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # it warns for every constant clipped to the float16 range
        m16 = float16.convert_float_to_float16(model, keep_io_types=True, op_block_list=list(KEEP_FP32))
    _float32_outputs(m16, onnx)
    producers = {o: n for n in m16.graph.node for o in n.output}
    for n in m16.graph.node:
        if n.op_type in ("Conv", "ConvTranspose"):
            for name in n.input[:2]:
                p = producers.get(name)
                if p is None or p.op_type != "DequantizeLinear":
                    raise ModelError(f"FP16 conversion separated {n.name} from its DequantizeLinear input "
                                     f"{name}; TensorRT could not build an INT8 convolution from it")
    return m16


def cpu_int8_isa(cpuinfo: str | None = None) -> str:
    """The x86 instructions ONNX Runtime's INT8 kernels can use here, from /proc/cpuinfo.

    ``avx512_vnni`` / ``avx_vnni`` (u8 x s8 dot products into 32 bits, no saturation), ``avx2`` or
    ``avx512bw`` without VNNI (16-bit saturating sums: where full-range weights go wrong), or
    ``unknown`` (not Linux x86, or unreadable). Reported beside INT8 parity results.
    """
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
                cpuinfo = f.read()
        except OSError:
            return "unknown"
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            flags.update(line.partition(":")[2].split())
    for isa in ("avx512_vnni", "avx_vnni"):
        if isa in flags:
            return isa
    for isa in ("avx512bw", "avx2", "sse4_1"):
        if isa in flags:
            return f"{isa} (no VNNI)"
    return "unknown"

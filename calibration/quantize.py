"""``calibrate``: an fp32 edgeseg ONNX model -> an INT8 Q/DQ ONNX model for TensorRT or ONNX Runtime.

1. calibration inputs from training images (the runtime's preprocessing, one fixed shape;
   the model's validation images are left out) — :mod:`edgeseg.calibration.inputs`;
2. activation ranges from ONNX Runtime's calibrators (``minmax``, ``entropy`` or ``percentile``),
   collected a few images at a time to bound memory, cached as JSON and reused (the same
   ranges, low and high per tensor, serve both targets);
3. Q/DQ insertion with ONNX Runtime's QDQ quantizer: symmetric INT8 weights, per-channel (Conv
   axis 0, ConvTranspose axis 1), float biases, laid out for the target
   (:mod:`edgeseg.calibration.targets`): ``tensorrt`` quantizes only the inputs of
   Conv/ConvTranspose, with symmetric int8 activations (zero points 0), full-range weights, FP16
   elsewhere; ``onnxruntime`` also the outputs but the logits, with asymmetric uint8
   activations through ReLU, MaxPool and Concat (ONNX Runtime's integer kernels), 7-bit weights;
4. the TensorRT flavour is checked against TensorRT's rules (:func:`check_tensorrt_qdq`); both
   carry the model's metadata with ``precision="int8"``, the calibration settings and the
   flavour, and are written atomically.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np

from edgeseg._atomic import atomic_write_bytes, atomic_write_json
from edgeseg._version import __version__
from edgeseg.errors import BackendUnavailableError, InputError, ModelError
from edgeseg.modelinfo import file_sha256

from .inputs import ImagesLike, calibration_inputs
from .rules import check_tensorrt_qdq
from .targets import TARGETS, Int8Flavour, drop_logit_qdq, flavour, mixed_fp16

__all__ = ["calibrate", "CalibrationConfig", "METHODS", "TARGETS"]

log = logging.getLogger(__name__)
PathLike = Union[str, Path]
METHODS = ("minmax", "entropy", "percentile")
CACHE_FORMAT = "edgeseg-calibration-cache"
_CHUNK = 4  # images per collect_data call: bounds the intermediate outputs kept in memory
# Ranges are found for the inputs and outputs of these ops (what either flavour quantizes)
_CALIBRATED_OPS = ["Conv", "ConvTranspose", "Relu", "MaxPool", "Concat"]
# In the cache key: what the ranges are (caches written before uint8 activations hold symmetric
# ranges of Conv/ConvTranspose tensors only, and are refused with "differs in ['ranges']")
_RANGES = "low/high per tensor of " + "/".join(_CALIBRATED_OPS)


@dataclass(frozen=True)
class CalibrationConfig:
    """How INT8 ranges are found (saved in the INT8 model's metadata and in the cache)."""

    method: str = "percentile"
    num_images: int = 64
    shape: int = 512
    percentile: float = 99.999
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise InputError(f"calibration method must be one of {METHODS}, got {self.method!r}")
        if not 50.0 < self.percentile <= 100.0:
            raise InputError(f"percentile must be in (50, 100], got {self.percentile}")


def _ort_quant() -> Any:
    try:
        from onnxruntime import quantization
    except ImportError:
        raise BackendUnavailableError("INT8 calibration needs onnxruntime; install it with "
                                      "pip install 'edgeseg[convert]'") from None
    return quantization


def _ranges(src: Path, inputs: list[np.ndarray], cfg: CalibrationConfig) -> dict[str, list[float]]:
    """Activation ranges {tensor: [low, high]} from ONNX Runtime's calibrator."""
    q = _ort_quant()
    from edgeseg.converters.onnx_export import io_names, load_onnx
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

    input_name = io_names(load_onnx(src), str(src))[0]  # the model's own name, not assumed

    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[cfg.method]
    extra = {"symmetric": False}  # low and high: the TensorRT flavour symmetrizes them itself
    if cfg.method == "percentile":
        extra.update(percentile=cfg.percentile, num_bins=2048)
    elif cfg.method == "entropy":
        extra.update(num_bins=2048, num_quantized_bins=255)
    # (MinMax's own max_intermediate_outputs option drops data in some ONNX Runtime versions; the
    # chunked collect_data calls below bound memory for every method, and each call merges.)

    class Reader(q.CalibrationDataReader):
        def __init__(self, batch: list[np.ndarray]) -> None:
            self._it = iter(batch)

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self._it, None)
            return None if x is None else {input_name: x}

    with tempfile.TemporaryDirectory(prefix="edgeseg-calib-") as tmp:
        calibrator = create_calibrator(src, _CALIBRATED_OPS,
                                       augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                                       calibrate_method=method, extra_options=extra)
        for k in range(0, len(inputs), _CHUNK):
            calibrator.collect_data(Reader(inputs[k:k + _CHUNK]))
        data = calibrator.compute_data()
    ranges = {}
    for name in data:
        lo, hi = data[name].range_value
        ranges[name] = [float(np.asarray(lo).min()), float(np.asarray(hi).max())]
    return ranges


def _quantize(src: Path, ranges: dict[str, list[float]], fl: Int8Flavour) -> Any:
    """QDQ model (ModelProto) from fp32 ``src`` and the activation ranges, laid out as ``fl``."""
    q = _ort_quant()
    import onnx
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorsData
    from onnxruntime.quantization.qdq_quantizer import QDQQuantizer

    tensors = TensorsData(CalibrationMethod.MinMax,
                          {k: (np.float32(lo), np.float32(hi)) for k, (lo, hi) in ranges.items()})
    uint8 = fl.activations == "uint8"
    extra = {
        "ActivationSymmetric": not uint8,  # int8: zero points 0 (TensorRT)
        "WeightSymmetric": True,
        "QuantizeBias": False,  # float biases: no INT32 DequantizeLinear (TensorRT)
        "QDQOpTypePerChannelSupportToAxis": {"Conv": 0, "ConvTranspose": 1},
        "AddQDQPairToWeight": False,
        "DedicatedQDQPair": False,
        # outputs of weighted layers: float for TensorRT; ONNX Runtime fuses DQ -> Conv -> Q only
        "OpTypesToExcludeOutputQuantization": [] if fl.output_qdq else ["Conv", "ConvTranspose"],
    }
    model = onnx.load(str(src))
    convs = [n.name for n in model.graph.node if n.op_type == "Conv"]
    exclude = [convs[0], convs[-1]] if fl.float_edge_convs and len(convs) > 2 else None
    # uint8: ReLU, MaxPool and Concat quantized too (ReLU dropped into the zero point), so ONNX
    # Runtime keeps the chain between convolutions in integers
    ops = _CALIBRATED_OPS if uint8 else ["Conv", "ConvTranspose"]
    activation = q.QuantType.QUInt8 if uint8 else q.QuantType.QInt8
    quantizer = QDQQuantizer(model, True, fl.reduce_range, q.QuantType.QInt8, activation, tensors,
                             None, exclude, ops, extra)
    quantizer.quantize_model()
    quantizer.model.topological_sort()  # Q/DQ nodes are appended last; ONNX wants them sorted
    qmodel = quantizer.model.model
    if fl.output_qdq:
        drop_logit_qdq(qmodel)  # never round the logits to INT8 before Softmax
    if fl.float_type.startswith("float16"):
        qmodel = mixed_fp16(qmodel)
    return qmodel


def _load_cache(cache: Path, key: dict[str, Any]) -> dict[str, list[float]] | None:
    import json

    if not cache.is_file():
        return None
    try:
        d = json.loads(cache.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"calibration cache {cache} is unreadable ({exc}); delete it to recalibrate") from None
    if d.get("format") != CACHE_FORMAT:
        raise InputError(f"{cache} is not an edgeseg calibration cache; pass another --calib-cache path")
    if d.get("key") != key:
        diff = sorted(k for k in set(key) | set(d.get("key", {})) if key.get(k) != d.get("key", {}).get(k))
        raise InputError(f"calibration cache {cache} was made for other settings (differs in {diff}); "
                         "delete it or pass another --calib-cache path")
    log.info("calibration: reusing the %d tensor ranges cached in %s", len(d["ranges"]), cache)
    return {k: [float(a), float(b)] for k, (a, b) in d["ranges"].items()}


def calibrate(onnx: PathLike, images: ImagesLike, out: PathLike | None = None, *,
              target: str = "onnxruntime", method: str = "percentile", num_images: int = 64,
              shape: int = 512, percentile: float = 99.999, cache: PathLike | None = None,
              seed: int = 0) -> Path:
    """Calibrate an fp32 edgeseg ONNX model on training images and write its INT8 Q/DQ version.

    Args:
        onnx: fp32 ``.onnx`` from :func:`~edgeseg.converters.export_onnx`.
        images: a training dataset folder, or a list of image paths / arrays / Samples.
            Images listed as validation images in the model card are left out.
        out: the INT8 ``.onnx`` to write (default: ``<onnx stem>.int8.onnx`` beside it).
        target: ``onnxruntime`` (ONNX Runtime on CPUs: 7-bit weights, integer convolutions) or
            ``tensorrt`` (TensorRT engines: full-range INT8 at convolution inputs, FP16
            elsewhere); see :mod:`edgeseg.calibration.targets`.
        method: ``minmax`` | ``entropy`` | ``percentile``.
        num_images: how many images (a seeded choice when there are more).
        shape: the fixed calibration input size (square, multiple of the network multiple).
        cache: JSON file of tensor ranges; reused when made for the same model and settings.

    Raises:
        InputError: bad settings, a cache made for something else.
        DataError: fewer than 4 usable training images (fewer than 32: a warning).
        ModelError: the TensorRT flavour breaks TensorRT's Q/DQ rules.
    """
    from edgeseg.converters.onnx_export import check_graph, onnx_info, set_metadata

    cfg = CalibrationConfig(method=method, num_images=num_images, shape=shape, percentile=percentile, seed=seed)
    fl = flavour(target)
    src = Path(onnx)
    info = onnx_info(src)
    if info.precision != "fp32":
        raise InputError(f"{src} is {info.precision}; calibrate the fp32 model")
    out = Path(out) if out is not None else src.with_name(src.name.replace(".onnx", "") + ".int8.onnx")
    if out.suffix != ".onnx":
        raise InputError(f"the INT8 output path must end in .onnx, got {out}")
    t0 = time.perf_counter()
    val_ids = set((info.model_card.get("val") or {}).get("per_image") or {})
    ids, inputs = calibration_inputs(images, info.norm, shape=cfg.shape, multiple=info.multiple,
                                     num_images=cfg.num_images, exclude=val_ids, seed=cfg.seed)
    key = {"onnx_sha256": file_sha256(src), **asdict(cfg), "images": sorted(ids), "ranges": _RANGES}
    ranges = _load_cache(Path(cache), key) if cache else None
    if ranges is None:
        ranges = _ranges(src, inputs, cfg)
        if cache:
            atomic_write_json(cache, {"format": CACHE_FORMAT, "edgeseg_version": __version__,
                                      "key": key, "ranges": ranges})
    qmodel = _quantize(src, ranges, fl)
    if fl.target == "tensorrt":
        problems = check_tensorrt_qdq(qmodel)
        if problems:
            raise ModelError("the INT8 model breaks TensorRT's Q/DQ rules: " + "; ".join(problems[:5]))
    card = dict(info.model_card)
    card["calibration"] = {**asdict(cfg), "n_images": len(ids), "seconds": round(time.perf_counter() - t0, 1)}
    card["int8"] = fl.metadata()
    set_metadata(qmodel, info.replace(precision="int8", source_sha256=key["onnx_sha256"], model_card=card))
    entry = qmodel.metadata_props.add()
    entry.key, entry.value = "edgeseg.int8_target", fl.target
    check_graph(qmodel, "the INT8 graph")
    atomic_write_bytes(out, qmodel.SerializeToString())
    log.info("wrote %s (INT8 for %s, %s calibration on %d images, %.1f s)", out, fl.target, cfg.method,
             len(ids), time.perf_counter() - t0)
    return out

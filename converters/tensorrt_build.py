"""``build_engine``: an edgeseg ONNX model (fp32, fp16 or INT8 Q/DQ) -> a TensorRT engine.

The network is strongly typed, so the precision is the ONNX graph's own (FP16 casts, INT8
QuantizeLinear/DequantizeLinear); no precision builder flags or calibrators are used, which
makes the same code build on TensorRT 10.x (``STRONGLY_TYPED`` network flag) and 11.x
(``create_network()`` without flags: 11.x removed ``BuilderFlag.FP16/INT8`` and the calibrators
and made every network strongly typed). INT8 engines are built from the TensorRT flavour of the
INT8 ONNX model (:func:`edgeseg.calibration.calibrate` with ``target="tensorrt"``); the ONNX
Runtime flavour (7-bit weights) is refused. Building needs TensorRT and the NVIDIA driver only:
the GPU's name and compute capability come from the driver library (ctypes), not pycuda.

The engine is written as TensorRT's raw serialized bytes; beside it ``<engine>.json`` (the
sidecar) records the model's preprocessing, thresholds and classes, the optimisation profile, the
TensorRT version, GPU and compute capability it was built for, and checksums. Both are written
atomically.

Engines run only where they were built (same TensorRT version, GPU architecture, platform): build
on the device that runs them, e.g. ``edgeseg convert model.int8.onnx -o model.int8.engine`` on
the Jetson.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union

from edgeseg._atomic import atomic_write_bytes, atomic_write_json
from edgeseg._trt import (
    Profile,
    create_trt,
    default_profile,
    driver_gpu_info,
    import_tensorrt,
    make_sidecar,
    network_flags,
    parse_shape,
    sidecar_path,
    trt_logger,
    validate_profile,
    version_tuple,
)
from edgeseg.errors import BackendUnavailableError, EdgesegError, InputError, ModelError
from edgeseg.modelinfo import METADATA_KEY, ModelInfo

__all__ = [
    "DEFAULT_WORKSPACE_GIB",
    "Profile",
    "build_engine",
    "default_profile",
    "parse_shape",
    "validate_profile",
]

log = logging.getLogger(__name__)

PathLike = Union[str, Path]
DEFAULT_WORKSPACE_GIB = 2.0


def build_engine(
    onnx: PathLike,
    out: PathLike,
    *,
    profile: Sequence[Any] | None = None,
    workspace_gib: float = DEFAULT_WORKSPACE_GIB,
    timing_cache: PathLike | None = None,
) -> Path:
    """Build a TensorRT engine from an edgeseg ONNX model on this machine's GPU (CUDA device 0).

    Args:
        onnx: an ``.onnx`` file written by edgeseg (its metadata gives precision, preprocessing,
            thresholds and the size multiple).
        out: the engine path, ending in ``.engine``; the sidecar goes to ``<out>.json``.
        profile: ``(min, opt, max)`` NCHW shapes (tuples or ``"NxCxHxW"`` strings) for the input;
            C must be 1, H and W multiples of the model's multiple. Default:
            :func:`default_profile` (min 1x1x64x64, opt 1x1x1024x1024, max 4x1x1024x1024).
        workspace_gib: TensorRT's workspace memory pool limit in GiB.
        timing_cache: a timing-cache file: read if it exists (it must come from the same TensorRT
            version and GPU, ``ignore_mismatch=False``; otherwise it is ignored with a warning),
            and written back atomically after the build. Rebuilds then skip most tactic timing.

    Returns:
        ``out`` as a Path.

    Raises:
        InputError: bad arguments or profile.
        ModelError: the ONNX file is missing, not an edgeseg model, or TensorRT cannot parse or
            build it (the message carries TensorRT's errors).
        BackendUnavailableError: TensorRT (>= 10), the NVIDIA driver or a CUDA GPU is missing,
            or TensorRT cannot start CUDA (the message carries TensorRT's logged reason).
    """
    onnx, out = Path(onnx), Path(out)
    if out.suffix != ".engine":
        raise InputError(f"the engine path must end in .engine (so the tensorrt backend is picked), got {out}")
    if not isinstance(workspace_gib, (int, float)) or not workspace_gib > 0:
        raise InputError(f"workspace_gib must be a positive number of GiB, got {workspace_gib!r}")
    if not onnx.is_file():
        raise ModelError(f"ONNX model not found: {onnx}; export one first with "
                         "`edgeseg convert MODEL -o model.onnx`")
    data = onnx.read_bytes()
    info = _model_info(onnx)
    _check_int8_flavour(info, onnx, out)
    prof = default_profile(info.multiple) if profile is None else validate_profile(profile, info.multiple)
    cache = Path(timing_cache) if timing_cache is not None else None

    trt = import_tensorrt()
    gpu = driver_gpu_info()
    logger = trt_logger(trt)
    log.info("building a %s TensorRT %s engine from %s on %s (compute %s), profile %s",
             info.precision, trt.__version__, onnx, gpu.name, gpu.compute_capability, prof.describe())
    t0 = time.perf_counter()
    engine, input_name, output_name = _build(trt, logger, data, onnx, prof, workspace_gib, cache,
                                             info.precision)
    seconds = time.perf_counter() - t0

    atomic_write_bytes(out, engine)  # raw serialized plan, nothing prepended
    sidecar = make_sidecar(
        info=info, profile=prof, trt_version=trt.__version__, gpu=gpu, onnx_name=onnx.name,
        onnx_sha256=hashlib.sha256(data).hexdigest(), engine_name=out.name,
        engine_sha256=hashlib.sha256(engine).hexdigest(), engine_bytes=len(engine),
        input_name=input_name, output_name=output_name, build_seconds=seconds,
        workspace_gib=workspace_gib)
    atomic_write_json(sidecar_path(out), sidecar)
    log.info("wrote %s (%.1f MB, %.1f s) and %s", out, len(engine) / 1e6, seconds, sidecar_path(out).name)
    return out


def _build(trt: Any, logger: Any, data: bytes, onnx: Path, prof: Profile, workspace_gib: float,
           cache: Path | None, precision: str) -> tuple[bytes, str, str]:
    """The TensorRT part: parse, configure, build. Returns (plan bytes, input name, output name)."""
    builder = create_trt(trt, trt.Builder, logger, what="builder")
    # TensorRT 10.x: 1 << STRONGLY_TYPED (== 1 there); 11.x: no flags (see edgeseg._trt.network_flags)
    flags = network_flags(trt.NetworkDefinitionCreationFlag, version_tuple(trt.__version__)[0])
    network = create_trt(trt, builder.create_network, *(() if flags is None else (flags,)),
                         what="network definition")
    parser = create_trt(trt, trt.OnnxParser, network, logger, what="ONNX parser")
    with logger.capture() as logged:
        return _parse_and_build(trt, builder, network, parser, data, onnx, prof, workspace_gib, cache,
                                precision, logged)


def _parse_and_build(trt: Any, builder: Any, network: Any, parser: Any, data: bytes, onnx: Path,
                     prof: Profile, workspace_gib: float, cache: Path | None, precision: str,
                     logged: Any) -> tuple[bytes, str, str]:
    if not parser.parse(data, str(onnx)):  # path lets the parser find external weights
        details = format_parser_errors([parser.get_error(i) for i in range(parser.num_errors)])
        raise ModelError(f"TensorRT {trt.__version__} could not parse {onnx}: {details}")
    if network.num_inputs != 1 or network.num_outputs != 1:
        raise ModelError(f"{onnx} must have one input and one output, TensorRT found "
                         f"{network.num_inputs} and {network.num_outputs}")
    inp, outp = network.get_input(0), network.get_output(0)
    if len(inp.shape) != 4:
        raise ModelError(f"{onnx} input {inp.name!r} has shape {tuple(inp.shape)}; expected N x 1 x H x W")

    config = create_trt(trt, builder.create_builder_config, what="builder config")
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        # TF32 (10-bit mantissa products) is on by default in 10.x and 11.x; an fp32 engine stays
        # IEEE fp32 so that it matches ONNX Runtime. Speed comes from the fp16 / int8 ONNX models.
        config.clear_flag(trt.BuilderFlag.TF32)
    opt_profile = builder.create_optimization_profile()
    opt_profile.set_shape(inp.name, prof.min, prof.opt, prof.max)
    if config.add_optimization_profile(opt_profile) < 0:
        raise ModelError(f"TensorRT rejected the optimisation profile {prof.describe()} for {onnx}: "
                         + logged.reason("no details"))
    if cache is not None:
        _attach_timing_cache(config, cache)

    plan = builder.build_serialized_network(network, config)  # None on failure
    if plan is None:
        raise ModelError(f"TensorRT {trt.__version__} failed to build an engine from {onnx} (profile "
                         f"{prof.describe()}, workspace {workspace_gib} GiB): " + logged.reason())
    engine = memoryview(plan).tobytes()  # IHostMemory supports the buffer protocol
    if cache is not None:
        atomic_write_bytes(cache, memoryview(config.get_timing_cache().serialize()).tobytes())
        log.info("timing cache written to %s", cache)
    return engine, str(inp.name), str(outp.name)


def _check_int8_flavour(info: ModelInfo, onnx: Path, out: Path) -> None:
    """ModelError for an INT8 model calibrated for ONNX Runtime on the CPU (see calibrate's targets)."""
    target = (info.model_card.get("int8") or {}).get("target") if info.precision == "int8" else None
    if target not in (None, "tensorrt"):
        raise ModelError(
            f"{onnx} is the INT8 model for ONNX Runtime on the CPU ({target} flavour: 7-bit weights, Q/DQ "
            "at convolution outputs), not the TensorRT flavour (full-range INT8 at convolution inputs, FP16 "
            "elsewhere); calibrate for TensorRT with `edgeseg convert MODEL -o "
            f"{out.name} --precision int8 --calib-data DIR` or `... -o model.int8.onnx --precision int8 "
            "--int8-target tensorrt --calib-data DIR`")


def _attach_timing_cache(config: Any, path: Path) -> None:
    """Load ``path`` (if present) as the build's timing cache; fall back to a fresh one."""
    blob = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(blob)
    if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
        if blob:
            log.info("using timing cache %s (%d bytes)", path, len(blob))
        return
    if blob:
        log.warning("timing cache %s was made by another TensorRT version or GPU (or is damaged); "
                    "starting a fresh one, which will replace it", path)
    fresh = config.create_timing_cache(b"")
    if fresh is None or not config.set_timing_cache(fresh, ignore_mismatch=False):
        log.warning("TensorRT could not create a timing cache; building without one")


def _model_info(onnx: Path) -> ModelInfo:
    """The ModelInfo in the ONNX metadata, via the onnx package or else ONNX Runtime."""
    try:
        from edgeseg.converters.onnx_export import onnx_info

        return onnx_info(onnx)
    except BackendUnavailableError:
        pass  # no onnx package (e.g. a Jetson with only TensorRT): try ONNX Runtime
    except EdgesegError:
        raise
    except Exception as exc:  # protobuf decode errors and the like
        raise ModelError(f"{onnx} could not be read as an ONNX model ({type(exc).__name__}: {exc}); "
                         "export it again with `edgeseg convert MODEL -o model.onnx`") from None
    try:
        import onnxruntime as ort
    except ImportError:
        raise BackendUnavailableError(
            "reading the model's metadata from the ONNX file needs the onnx package or ONNX "
            "Runtime; install one: `pip install onnx` (or `pip install 'edgeseg[convert]'`)") from None
    so = ort.SessionOptions()
    so.log_severity_level = 3
    try:
        meta = ort.InferenceSession(str(onnx), so, providers=["CPUExecutionProvider"]).get_modelmeta()
    except Exception as exc:  # ORT raises its own types for bad files
        raise ModelError(f"{onnx} could not be read as an ONNX model ({exc}); export it again") from None
    if METADATA_KEY not in meta.custom_metadata_map:
        raise ModelError(f"{onnx} has no '{METADATA_KEY}' metadata: it was not exported by edgeseg. "
                         "Export it with `edgeseg convert MODEL -o model.onnx`")
    return ModelInfo.from_json(meta.custom_metadata_map[METADATA_KEY], f"the metadata of {onnx}")


def format_parser_errors(errors: Sequence[Any]) -> str:
    """One line per ONNX parser error: node index, name and operator where known, and the text."""
    lines = []
    for i, err in enumerate(errors, 1):
        where = []
        for attr, label in (("node", "node #"), ("node_name", "node "), ("node_operator", "op ")):
            fn = getattr(err, attr, None)  # node_name/node_operator exist in newer parsers only
            try:
                value = fn() if callable(fn) else None
            except Exception:  # pragma: no cover - defensive against binding differences
                value = None
            if value not in (None, "", -1):
                where.append(f"{label}{value}")
        desc = err.desc() if callable(getattr(err, "desc", None)) else str(err)
        lines.append(f"[{i}] {', '.join(where) or 'graph'}: {desc}")
    return "; ".join(lines) if lines else "no error details reported"

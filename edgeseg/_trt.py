"""TensorRT helpers shared by the engine builder and the TensorRT backend.

Nothing here imports ``tensorrt`` or ``pycuda`` at module level: the pure parts (version rules,
network-creation flags, optimisation profiles, the ``<engine>.json`` sidecar and its
compatibility check) are testable on any machine, and the few functions that need TensorRT or
the CUDA driver import them lazily or take the imported module as an argument.

Supported: TensorRT 10.x (JetPack's 10.3 on Jetson Orin, PyPI 10.x on desktops) and 11.x.
Both are driven through the same API subset. Differences that matter here (sources in the
functions that depend on them):

* TensorRT 11 removed ``BuilderFlag.FP16/INT8`` and the INT8 calibrators; every network is
  strongly typed, so precision comes from the ONNX graph (FP16 casts, INT8 Q/DQ nodes), and
  ``create_network()`` takes no flags. TensorRT 10 builds the same graphs the same way when the
  network is created with ``NetworkDefinitionCreationFlag.STRONGLY_TYPED``.
* That flag's enum value differs: 1 in 10.x (``EXPLICIT_BATCH`` = 0 beside it, deprecated),
  0 in 11.x (deprecated and ignored there; ``PREFER_JIT_PYTHON_PLUGINS`` = 1,
  ``PREFER_AOT_PYTHON_PLUGINS`` = 2), so it is read from the enum and passed on 10.x only.

When CUDA cannot start (a driver too old for the wheel's CUDA, a GPU that is busy or lost),
``trt.Builder(logger)`` and ``trt.Runtime(logger)`` raise pybind11's ``TypeError: factory function
returned nullptr`` and TensorRT logs the reason as a WARNING: :func:`create_trt` turns that into
one BackendUnavailableError carrying the reason (:mod:`edgeseg._trtlog`).
"""

from __future__ import annotations

import json
import logging
import numbers
import platform
import re
import shlex
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Union

from ._trtlog import LoggedMessages, create_trt, trt_logger  # noqa: F401  (re-exported)
from ._version import __version__
from .errors import BackendUnavailableError, InputError, ModelError
from .modelinfo import ModelInfo

log = logging.getLogger(__name__)

PathLike = Union[str, Path]
Shape = tuple[int, int, int, int]

MIN_TRT_MAJOR = 10
SIDECAR_FORMAT = "edgeseg-engine"
SIDECAR_VERSION = 1
TRT_INSTALL_HINT = ("install it with `pip install 'edgeseg[tensorrt-cu12]'` (x86-64 GPUs, NVIDIA driver >= 525; "
                    "'edgeseg[tensorrt-cu13]' needs driver >= 580); on Jetson, JetPack provides TensorRT, then "
                    "`pip install pycuda`")
PYCUDA_INSTALL_HINT = ("install it with `pip install pycuda` (it compiles against the CUDA toolkit: put its "
                       "bin/ on PATH; on Jetson, JetPack's CUDA), or `pip install 'edgeseg[tensorrt-cu12]'`")


# -- versions and flags ---------------------------------------------------------------------------
def version_tuple(text: str) -> tuple[int, ...]:
    """``"10.3.0.30"`` -> ``(10, 3, 0, 30)``; trailing non-numeric parts are dropped."""
    parts = []
    for piece in str(text).strip().split("."):
        m = re.match(r"\d+", piece)
        if not m:
            break
        parts.append(int(m.group()))
        if m.group() != piece:
            break
    if not parts:
        raise ModelError(f"cannot read a TensorRT version from {text!r}; expected e.g. '10.3.0.30'")
    return tuple(parts)


def check_trt_version(version: str) -> tuple[int, ...]:
    """Raise BackendUnavailableError for TensorRT older than 10 (out of scope), naming it."""
    v = version_tuple(version)
    if v[0] < MIN_TRT_MAJOR:
        raise BackendUnavailableError(
            f"TensorRT {version} is installed, but edgeseg needs TensorRT {MIN_TRT_MAJOR} or newer "
            "(strongly typed networks, name-based tensor API); upgrade to a JetPack that ships "
            "TensorRT 10 (e.g. 10.3) on Jetson, or `pip install 'tensorrt>=10'` on a desktop GPU")
    return v


def network_flags(flag_enum: Any, trt_major: int) -> int | None:
    """The ``create_network`` flags for a strongly typed network; None: call it without flags.

    TensorRT 10.x: ``1 << int(flag_enum.STRONGLY_TYPED)`` (the member's value is 1 there; it is
    read from the enum, never hard-coded). TensorRT 11+: None, as every network is strongly
    typed and 11.x documents the member as deprecated and ignored.
    """
    if trt_major >= 11:
        return None
    member = getattr(flag_enum, "STRONGLY_TYPED", None)
    if member is None:
        raise BackendUnavailableError(
            f"this TensorRT {trt_major}.x has no NetworkDefinitionCreationFlag.STRONGLY_TYPED; "
            f"edgeseg needs TensorRT {MIN_TRT_MAJOR} or newer")
    return 1 << int(member)


# -- lazy imports ---------------------------------------------------------------------------------
def import_tensorrt() -> Any:
    """``import tensorrt`` with an install hint, and the version check (>= 10)."""
    try:
        import tensorrt as trt
    except (ImportError, OSError) as exc:  # OSError: the wheel is there, its libraries are not
        raise BackendUnavailableError(
            f"TensorRT is needed for .engine files but cannot be imported ({exc}); "
            f"{TRT_INSTALL_HINT}") from None
    check_trt_version(getattr(trt, "__version__", "0"))
    return trt


def import_cuda_driver() -> Any:
    """``pycuda.driver``, initialised, with at least one CUDA device (else BackendUnavailableError)."""
    try:
        import pycuda.driver as cuda
    except (ImportError, OSError) as exc:
        raise BackendUnavailableError(
            f"pycuda is needed to run TensorRT engines but cannot be imported ({exc}); "
            f"{PYCUDA_INSTALL_HINT}") from None
    try:
        cuda.init()  # must precede every other pycuda.driver call; safe to repeat
        count = cuda.Device.count()
    except Exception as exc:  # pycuda.driver.Error and friends
        raise BackendUnavailableError(
            f"the CUDA driver could not be initialised ({type(exc).__name__}: {exc}); TensorRT "
            "runs on NVIDIA GPUs: check the NVIDIA driver, or use the .onnx model with the "
            "onnxruntime backend on the CPU") from None
    if count < 1:
        raise BackendUnavailableError(
            "the CUDA driver sees no GPU; TensorRT runs on NVIDIA GPUs: use the .onnx model with "
            "the onnxruntime backend on the CPU")
    return cuda


@dataclass(frozen=True)
class GpuInfo:
    """The GPU an engine is built for or run on (CUDA device 0; select with CUDA_VISIBLE_DEVICES)."""

    name: str
    compute_capability: str  # "8.7" style


def gpu_info(cuda: Any, index: int = 0) -> GpuInfo:
    """Name and compute capability of CUDA device ``index`` (pycuda.driver, initialised)."""
    dev = cuda.Device(index)
    major, minor = dev.compute_capability()
    return GpuInfo(name=str(dev.name()), compute_capability=f"{int(major)}.{int(minor)}")


def driver_gpu_info(index: int = 0) -> GpuInfo:
    """The same from the CUDA driver library itself (ctypes, no pycuda): what engine builds use."""
    from ._cudadrv import device_info

    name, cc = device_info(index)
    return GpuInfo(name=name, compute_capability=cc)


def platform_tag() -> str:
    """``"Linux-aarch64"`` style: engines are not portable across platforms."""
    return f"{platform.system()}-{platform.machine()}"


# -- optimisation profiles ------------------------------------------------------------------------
class Profile(NamedTuple):
    """An optimisation profile for the N x 1 x H x W input: min <= opt <= max, elementwise."""

    min: Shape
    opt: Shape
    max: Shape

    def contains(self, shape: Sequence[int]) -> bool:
        return len(shape) == 4 and all(lo <= int(s) <= hi for lo, s, hi in zip(self.min, shape, self.max))

    def describe(self) -> str:
        fmt = "x".join
        return (f"min {fmt(map(str, self.min))}, opt {fmt(map(str, self.opt))}, "
                f"max {fmt(map(str, self.max))}")

    def to_dict(self) -> dict[str, list[int]]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}


def parse_shape(text: str) -> Shape:
    """``"1x1x1024x1024"`` -> ``(1, 1, 1024, 1024)`` (N x C x H x W, positive integers)."""
    if not isinstance(text, str):
        raise InputError(f"a shape string such as '1x1x1024x1024' was expected, got {type(text).__name__}")
    parts = [p.strip() for p in text.strip().lower().split("x")]
    if len(parts) != 4 or not all(re.fullmatch(r"\d+", p) for p in parts):
        raise InputError(f"cannot read the shape {text!r}: expected N x C x H x W as four positive "
                         "integers joined by 'x', e.g. '1x1x1024x1024'")
    shape = tuple(int(p) for p in parts)
    if min(shape) < 1:
        raise InputError(f"shape {text!r} has a zero dimension; every dimension must be >= 1")
    return shape  # type: ignore[return-value]


def _as_shape(value: Any, which: str) -> Shape:
    if isinstance(value, str):
        return parse_shape(value)
    try:
        dims = list(value)
    except TypeError:
        raise InputError(f"profile {which} shape must be 4 integers (N, C, H, W) or a string like "
                         f"'1x1x1024x1024', got {value!r}") from None
    if len(dims) != 4 or not all(isinstance(d, numbers.Integral) and not isinstance(d, bool) for d in dims):
        raise InputError(f"profile {which} shape must be 4 integers (N, C, H, W), got {value!r}")
    dims = [int(d) for d in dims]
    if min(dims) < 1:
        raise InputError(f"profile {which} shape {tuple(dims)} has a dimension < 1")
    return tuple(dims)  # type: ignore[return-value]


def validate_profile(profile: Any, multiple: int) -> Profile:
    """Check a ``(min, opt, max)`` profile of NCHW shapes (tuples or 'NxCxHxW' strings).

    C must be 1, H and W multiples of ``multiple``, and min <= opt <= max elementwise.
    """
    try:
        items = list(profile)
    except TypeError:
        raise InputError(f"profile must be (min, opt, max) NCHW shapes, got {profile!r}") from None
    if len(items) != 3:
        raise InputError(f"profile must be three NCHW shapes (min, opt, max), got {len(items)}: {profile!r}")
    shapes = [_as_shape(v, which) for v, which in zip(items, ("min", "opt", "max"))]
    for shape, which in zip(shapes, ("min", "opt", "max")):
        if shape[1] != 1:
            raise InputError(f"profile {which} shape {shape} has C={shape[1]}; edgeseg models take one "
                             "grey channel, so C must be 1")
        if shape[2] % multiple or shape[3] % multiple:
            raise InputError(f"profile {which} shape {shape}: H and W must be multiples of {multiple} "
                             "(the model's multiple)")
    lo, mid, hi = shapes
    if not all(a <= b <= c for a, b, c in zip(lo, mid, hi)):
        raise InputError(f"profile must satisfy min <= opt <= max in every dimension, got min {lo}, "
                         f"opt {mid}, max {hi}")
    return Profile(lo, mid, hi)


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def default_profile(multiple: int = 16) -> Profile:
    """The profile for 1024 x 1024 tiles: min 1x1x64x64, opt 1x1x1024x1024, max 4x1x1024x1024.

    Opt is one whole 1024 x 1024 frame (the common camera case); max allows the Segmenter's
    default batch of 4 tiles of 1024 px; min lets small frames through (padded to >= 64 px).
    Sides are rounded up to multiples of ``multiple``.
    """
    lo, side = _round_up(64, multiple), _round_up(1024, multiple)
    return Profile((1, 1, lo, lo), (1, 1, side, side), (4, 1, side, side))


def check_batch_shape(shape: Sequence[int], profile: Profile, multiple: int, engine: Any = "the engine") -> None:
    """InputError unless ``shape`` is N x 1 x H x W inside ``profile`` with H, W multiples of ``multiple``."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != 4 or shape[1] != 1:
        raise InputError(f"batch must be N x 1 x H x W, got shape {shape}")
    if shape[2] % multiple or shape[3] % multiple:
        raise InputError(f"batch H and W must be multiples of {multiple}, got shape {shape}; pad the "
                         "images (the Segmenter does this)")
    if not profile.contains(shape):
        raise InputError(f"batch shape {'x'.join(map(str, shape))} is outside the optimisation profile of "
                         f"{engine} ({profile.describe()}); keep tiles and batches within it, or rebuild "
                         "the engine with a wider profile")


# -- the sidecar ----------------------------------------------------------------------------------
def sidecar_path(engine: PathLike) -> Path:
    """``model.int8.engine`` -> ``model.int8.engine.json``."""
    engine = Path(engine)
    return engine.with_name(engine.name + ".json")


def rebuild_command(engine: PathLike, onnx: Any = None) -> str:
    """The command that rebuilds ``engine``; names are shell-quoted (a sidecar may be forged)."""
    src = onnx if _is_file_name(onnx) else "model.onnx"
    return f"edgeseg convert {shlex.quote(src)} -o {shlex.quote(Path(engine).name)}"


def _is_file_name(value: Any) -> bool:
    """A non-empty string without control characters (what a sidecar's ``onnx`` field holds)."""
    return isinstance(value, str) and bool(value.strip()) and not any(ord(c) < 32 or ord(c) == 127 for c in value)


def make_sidecar(*, info: ModelInfo, profile: Profile, trt_version: str, gpu: GpuInfo, onnx_name: str,
                 onnx_sha256: str, engine_name: str, engine_sha256: str, engine_bytes: int,
                 input_name: str, output_name: str, build_seconds: float, workspace_gib: float,
                 platform_name: str | None = None, built_at: str | None = None) -> dict[str, Any]:
    """The JSON written beside an engine: what it is, what built it, where it may run."""
    return {
        "format": SIDECAR_FORMAT,
        "format_version": SIDECAR_VERSION,
        "engine": engine_name,
        "engine_sha256": engine_sha256,
        "engine_bytes": int(engine_bytes),
        "onnx": onnx_name,
        "onnx_sha256": onnx_sha256,
        "precision": info.precision,
        # preprocessing, thresholds, classes; provenance now points at the ONNX it was built from
        "model_info": info.replace(source_sha256=onnx_sha256, edgeseg_version=__version__).to_dict(),
        "trt_version": str(trt_version),
        "gpu_name": gpu.name,
        "compute_capability": gpu.compute_capability,
        "platform": platform_name or platform_tag(),
        "input_name": input_name,
        "output_name": output_name,
        "profile": {"input": input_name, **profile.to_dict()},
        "workspace_gib": float(workspace_gib),
        "build_seconds": round(float(build_seconds), 3),
        "built_at": built_at or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "edgeseg_version": __version__,
    }


_REQUIRED = ("trt_version", "compute_capability", "engine_sha256", "model_info", "profile",
             "input_name", "output_name")


@dataclass(frozen=True)
class Sidecar:
    """A validated ``<engine>.json``: the raw dict plus its parsed profile and ModelInfo."""

    path: Path
    data: dict
    profile: Profile
    info: ModelInfo


def read_sidecar(engine: PathLike) -> Sidecar:
    """The validated sidecar of ``engine`` (ModelError, with the rebuild command, if unusable)."""
    path = sidecar_path(engine)
    fix = f"rebuild the engine on this device: `{rebuild_command(engine)}`"
    if not path.is_file():
        raise ModelError(f"{engine} has no sidecar {path.name} (it records the model's preprocessing, "
                         f"the TensorRT version and GPU it was built for); {fix}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"{path} is not readable JSON ({exc}); {fix}") from None
    if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ModelError(f"{path} is not an edgeseg engine sidecar (format {found!r}, expected "
                         f"{SIDECAR_FORMAT!r}); {fix}")
    try:
        newer = int(data.get("format_version", 1)) > SIDECAR_VERSION
    except (TypeError, ValueError):
        newer = True
    if newer:
        raise ModelError(f"{path} has sidecar format version {data.get('format_version')!r}, newer than "
                         f"this edgeseg {__version__} reads ({SIDECAR_VERSION}): upgrade edgeseg, or {fix}")
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise ModelError(f"{path} lacks {missing}; {fix}")
    fix = f"rebuild the engine on this device: `{rebuild_command(engine, data.get('onnx'))}`"
    problems = _field_problems(data)
    if problems:
        raise ModelError(f"{path} has invalid fields ({'; '.join(problems[:4])}); {fix}")
    prof = data["profile"]
    try:
        profile = _sidecar_profile(prof)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelError(f"{path} has an invalid profile {prof!r} ({exc}); {fix}") from None
    info = ModelInfo.from_dict(data["model_info"], f"the sidecar {path}")
    return Sidecar(path=path, data=data, profile=profile, info=info)


def _sidecar_profile(prof: Any) -> Profile:
    """The sidecar's profile: three shapes of 4 integers >= 1 with min <= opt <= max (ValueError)."""
    if not isinstance(prof, dict):
        raise TypeError(f"expected an object with min, opt and max, got {type(prof).__name__}")
    shapes = []
    for k in ("min", "opt", "max"):
        dims = prof[k]
        if not isinstance(dims, list) or len(dims) != 4:
            raise ValueError(f"{k} must be a list of 4 dimensions (N, C, H, W)")
        if not all(isinstance(d, int) and not isinstance(d, bool) for d in dims):
            raise ValueError(f"{k} dimensions must be integers")
        if min(dims) < 1:
            raise ValueError(f"{k} dimensions must be >= 1")
        shapes.append(tuple(dims))
    lo, mid, hi = shapes
    if not all(a <= b <= c for a, b, c in zip(lo, mid, hi)):
        raise ValueError("min <= opt <= max must hold in every dimension")
    return Profile(*shapes)


def _field_problems(data: dict) -> list[str]:
    """What is wrong with the types and values of a sidecar's fields (empty: nothing)."""
    problems = []

    def bad(key: str, expected: str) -> None:
        value = repr(data[key])
        problems.append(f"{key} {value[:60]}{'...' if len(value) > 60 else ''} is not {expected}")

    if not isinstance(data["trt_version"], str) or not re.match(r"\d+(\.\d+)*", data["trt_version"]):
        bad("trt_version", "a TensorRT version string such as '10.3.0.30'")
    if not isinstance(data["compute_capability"], str) or not re.fullmatch(r"\d+\.\d+", data["compute_capability"]):
        bad("compute_capability", "a string such as '8.7'")
    if not isinstance(data["engine_sha256"], str) or not re.fullmatch(r"[0-9a-f]{64}", data["engine_sha256"]):
        bad("engine_sha256", "64 lowercase hex digits")
    for key in ("input_name", "output_name"):
        if not _is_file_name(data[key]):
            bad(key, "a tensor name")
    if not isinstance(data["model_info"], dict):
        bad("model_info", "an object")
    for key in ("onnx", "engine", "gpu_name", "platform"):
        if key in data and not _is_file_name(data[key]):
            bad(key, "a plain name (text without control characters)")
    if "precision" in data and data["precision"] not in ("fp32", "fp16", "int8"):
        bad("precision", "one of fp32, fp16, int8")
    return problems


def check_compatibility(sidecar: dict[str, Any], *, trt_version: str, gpu: GpuInfo, engine: PathLike,
                        platform_name: str | None = None) -> None:
    """ModelError if the engine cannot run here: another TensorRT version, GPU or platform.

    TensorRT engines run only on the TensorRT version that built them (TensorRT rejects even a
    patch-level difference, e.g. "expecting library version 8.0.0 got 8.0.1, please rebuild"),
    only on the GPU architecture they were built for, and only on the platform that built them.
    Version-compatible and hardware-compatible engines are not built by edgeseg, so exact
    major.minor.patch and compute capability are required. A different build number (4th
    component) or GPU model of the same compute capability only warns: TensorRT itself decides
    at deserialisation, and a refusal there still becomes a ModelError.
    """
    cmd = rebuild_command(engine, sidecar.get("onnx"))
    built, here = str(sidecar["trt_version"]), str(trt_version)
    if version_tuple(built)[:3] != version_tuple(here)[:3]:
        raise ModelError(f"{engine} was built with TensorRT {built}, but TensorRT {here} is installed "
                         f"here; engines only run on the TensorRT version that built them. Rebuild it on "
                         f"this device: `{cmd}`")
    if version_tuple(built) != version_tuple(here):
        log.warning("%s was built with TensorRT %s, this is TensorRT %s (same major.minor.patch)",
                    engine, built, here)
    cc_built = str(sidecar["compute_capability"])
    if cc_built != gpu.compute_capability:
        raise ModelError(f"{engine} was built for a GPU of compute capability {cc_built} "
                         f"({sidecar.get('gpu_name', 'unknown GPU')}), but this GPU ({gpu.name}) has "
                         f"compute capability {gpu.compute_capability}; engines only run on the GPU "
                         f"architecture they were built for. Rebuild it on this device: `{cmd}`")
    if sidecar.get("gpu_name") and sidecar["gpu_name"] != gpu.name:
        log.warning("%s was built on %s and runs on %s (same compute capability %s): TensorRT tunes "
                    "engines per GPU model, rebuild it here for best speed (`%s`)",
                    engine, sidecar["gpu_name"], gpu.name, gpu.compute_capability, cmd)
    here_platform = platform_name or platform_tag()
    if sidecar.get("platform") and sidecar["platform"] != here_platform:
        raise ModelError(f"{engine} was built on {sidecar['platform']}, this is {here_platform}; engines "
                         f"are not portable across platforms. Rebuild it on this device: `{cmd}`")

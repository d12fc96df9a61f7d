"""The few CUDA driver API calls edgeseg needs without pycuda, through ctypes on the driver library.

* :func:`device_info`: the GPU's name and compute capability (``cuInit``, ``cuDeviceGetCount``,
  ``cuDeviceGet``, ``cuDeviceGetName``, ``cuDeviceGetAttribute``), so that building a TensorRT
  engine needs TensorRT and the NVIDIA driver, not pycuda (which has no wheels and compiles
  against the CUDA toolkit's headers).
* :func:`release_primary_context`: ``cuDevicePrimaryCtxRelease``, which takes the device, not
  the context, and so balances a retain from any thread (pycuda's ``Context.detach`` skips the
  release when it runs off the thread that retained the context).

The library is ``libcuda.so.1`` (Linux, Jetson included) or ``nvcuda.dll`` (Windows); it comes with
the NVIDIA driver, not with the CUDA toolkit or TensorRT.
"""

from __future__ import annotations

import ctypes
import sys
import threading
from typing import Any

from .errors import BackendUnavailableError

__all__ = ["device_info", "release_primary_context", "load_driver", "NO_GPU_HINT"]

_ATTR_CC_MAJOR, _ATTR_CC_MINOR = 75, 76  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR / _MINOR
NO_GPU_HINT = ("TensorRT runs on NVIDIA GPUs: check the NVIDIA driver with `nvidia-smi`, or use the .onnx "
               "model with the onnxruntime backend on the CPU")

_lock = threading.Lock()
_driver: Any = None


def _names() -> tuple[str, ...]:
    return ("nvcuda.dll",) if sys.platform.startswith("win") else ("libcuda.so.1", "libcuda.so")


def load_driver() -> Any:
    """The CUDA driver library (ctypes.CDLL), loaded once; BackendUnavailableError if absent."""
    global _driver
    with _lock:
        if _driver is None:
            errors = []
            for name in _names():
                try:
                    _driver = ctypes.CDLL(name)
                    break
                except OSError as exc:
                    errors.append(str(exc))
            else:
                raise BackendUnavailableError(
                    f"the NVIDIA driver's CUDA library ({_names()[0]}) cannot be loaded ({errors[0]}): no "
                    f"NVIDIA driver is installed or visible here; {NO_GPU_HINT}")
        return _driver


def _error_text(lib: Any, code: int) -> str:
    """``CUDA_ERROR_NO_DEVICE: no CUDA-capable device is detected`` style, from the driver itself."""
    name, desc = ctypes.c_char_p(), ctypes.c_char_p()
    try:
        lib.cuGetErrorName(code, ctypes.byref(name))
        lib.cuGetErrorString(code, ctypes.byref(desc))
    except AttributeError:  # pragma: no cover - every driver since CUDA 6 has both
        pass
    text = ": ".join(v.decode(errors="replace") for v in (name.value, desc.value) if v)
    return text or f"CUDA error {code}"


def _call(lib: Any, func: str, *args: Any) -> None:
    code = getattr(lib, func)(*args)
    if code != 0:
        raise BackendUnavailableError(
            f"the CUDA driver failed in {func} ({_error_text(lib, code)}); {NO_GPU_HINT}")


def _device(lib: Any, index: int) -> ctypes.c_int:
    _call(lib, "cuInit", 0)  # must precede every other driver call; safe to repeat
    count = ctypes.c_int(0)
    _call(lib, "cuDeviceGetCount", ctypes.byref(count))
    if count.value <= index:
        raise BackendUnavailableError(
            f"the CUDA driver sees {count.value} GPU(s), so there is no CUDA device {index} (check "
            f"CUDA_VISIBLE_DEVICES); {NO_GPU_HINT}")
    dev = ctypes.c_int(0)
    _call(lib, "cuDeviceGet", ctypes.byref(dev), index)
    return dev


def device_info(index: int = 0) -> tuple[str, str]:
    """(name, ``"8.7"``-style compute capability) of CUDA device ``index``."""
    lib = load_driver()
    dev = _device(lib, index)
    name = ctypes.create_string_buffer(256)
    _call(lib, "cuDeviceGetName", name, len(name), dev)
    major, minor = ctypes.c_int(0), ctypes.c_int(0)
    _call(lib, "cuDeviceGetAttribute", ctypes.byref(major), _ATTR_CC_MAJOR, dev)
    _call(lib, "cuDeviceGetAttribute", ctypes.byref(minor), _ATTR_CC_MINOR, dev)
    return name.value.decode(errors="replace"), f"{major.value}.{minor.value}"


def release_primary_context(index: int = 0) -> None:
    """Drop one reference to device ``index``'s primary context; callable from any thread."""
    lib = load_driver()
    dev = _device(lib, index)
    # cuda.h maps cuDevicePrimaryCtxRelease to the _v2 entry point since CUDA 11
    func = "cuDevicePrimaryCtxRelease_v2" if hasattr(lib, "cuDevicePrimaryCtxRelease_v2") \
        else "cuDevicePrimaryCtxRelease"
    _call(lib, func, dev)

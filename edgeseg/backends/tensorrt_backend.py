"""TensorRT backend: ``.engine`` files built by ``edgeseg convert model.onnx -o model.engine``.

Needs TensorRT >= 10 and pycuda (neither is imported until an engine is opened). The engine's
``<engine>.json`` sidecar gives the model's preprocessing, thresholds and classes, and is checked
before deserialising: the engine must have been built by this TensorRT version (major.minor.patch)
for this GPU's compute capability, on this platform, else a ModelError says how to rebuild it.

Only runtime APIs present in both TensorRT 10.x and 11.x are used: ``Runtime.
deserialize_cuda_engine``, the name-based tensor API (``num_io_tensors``, ``get_tensor_name``,
``get_tensor_mode``, ``get_tensor_dtype``), ``IExecutionContext.set_input_shape``,
``get_tensor_shape``, ``set_tensor_address`` and ``execute_async_v3``.

CUDA: the device's primary context (the one the CUDA runtime, hence TensorRT, uses) is retained
once and pushed/popped around every call, so any thread may call :meth:`infer`; a lock
serialises calls, which share one stream and one set of page-locked host / device buffers that
grow only when a larger batch arrives. :meth:`close` may run on any thread: the retain is
balanced there too (pycuda's ``Context.detach`` releases only on the thread that retained, so
off that thread the driver's ``cuDevicePrimaryCtxRelease`` does it), and a backend that is never
closed is closed by a finalizer when it is garbage-collected or at interpreter exit.

TensorRT objects are created through :func:`edgeseg._trt.create_trt`: when CUDA cannot start,
``trt.Runtime`` fails with one BackendUnavailableError carrying TensorRT's logged reason.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import weakref
from pathlib import Path
from typing import Any

import numpy as np

from .._trt import (
    Profile,
    check_batch_shape,
    check_compatibility,
    create_trt,
    gpu_info,
    import_cuda_driver,
    import_tensorrt,
    read_sidecar,
    rebuild_command,
    trt_logger,
)
from .._cudadrv import release_primary_context
from ..errors import BackendUnavailableError, EdgesegError, InputError, ModelError
from ..modelinfo import ModelInfo

log = logging.getLogger(__name__)


class _CudaResources:
    """The retained primary context and everything living in it; released once, from any thread.

    Kept apart from the backend so that the backend's finalizer can release it without keeping
    the backend alive.
    """

    _BUFFERS = ("dev_in", "dev_out")

    def __init__(self, cuda: Any, ctx: Any) -> None:
        self.cuda, self.ctx = cuda, ctx
        self.thread = threading.get_ident()  # pycuda's detach releases only on this thread
        self.runtime = self.engine = self.context = self.stream = None
        self.host_in = self.host_out = self.dev_in = self.dev_out = None
        self.cap_in = self.cap_out = 0

    def free(self, names: tuple[str, ...] = _BUFFERS) -> None:
        for name in names:
            buf = getattr(self, name)
            if buf is not None:
                buf.free()
                setattr(self, name, None)

    def release(self) -> None:
        """Drop buffers and TensorRT objects (execution context first), then the CUDA context."""
        ctx, self.ctx = self.ctx, None
        if ctx is None:
            return
        cuda = self.cuda
        try:
            ctx.push()
        except Exception as exc:  # pycuda.driver.Error: the GPU is gone, nothing can be freed
            log.warning("could not make the CUDA context current to free the engine: %s", exc)
        else:
            try:
                self.free()
                self.host_in = self.host_out = None
                self.cap_in = self.cap_out = 0
                self.context = None
                self.engine = None
                self.runtime = None
                self.stream = None
            finally:
                cuda.Context.pop()
        try:
            ctx.detach()
        finally:
            if threading.get_ident() != self.thread:
                # pycuda skipped cuDevicePrimaryCtxRelease off the retaining thread: balance it here
                try:
                    release_primary_context(0)
                except EdgesegError as exc:  # pragma: no cover - the driver worked a moment ago
                    log.warning("could not release the CUDA primary context: %s", exc)


class TensorRTBackend:
    """Runs an edgeseg TensorRT engine on CUDA device 0 (pick the GPU with CUDA_VISIBLE_DEVICES).

    Attributes:
        info: the model's ModelInfo, from the sidecar.
        precision: ``fp32`` | ``fp16`` | ``int8`` (of the ONNX graph the engine was built from).
        profile: ``(min, opt, max)`` NCHW shapes the engine accepts; batches outside raise InputError.
    """

    name = "tensorrt"
    device = "cuda"

    def __init__(self, model: str | Path, device: str = "auto") -> None:
        if device == "cpu":
            raise BackendUnavailableError(
                "device 'cpu' was asked for, but TensorRT runs on NVIDIA GPUs; use the .onnx model "
                "with the onnxruntime backend on the CPU")
        if device not in ("auto", "cuda"):
            raise InputError(f"unknown device {device!r} for the tensorrt backend; expected 'cuda' or 'auto'")
        path = Path(model)
        if not path.is_file():
            raise ModelError(f"TensorRT engine not found: {path}; build one on this device with "
                             f"`{rebuild_command(path)}`")
        self._lock = threading.Lock()
        self._cu: _CudaResources | None = None
        trt = import_tensorrt()
        cuda = import_cuda_driver()
        sidecar = read_sidecar(path)
        gpu = gpu_info(cuda)
        check_compatibility(sidecar.data, trt_version=trt.__version__, gpu=gpu, engine=path)
        plan = path.read_bytes()
        if hashlib.sha256(plan).hexdigest() != sidecar.data["engine_sha256"]:
            raise ModelError(f"{path} does not match its sidecar {sidecar.path.name} (checksum differs: the "
                             f"engine was replaced or damaged); rebuild both with "
                             f"`{rebuild_command(path, sidecar.data.get('onnx'))}`")
        self.path = path
        self.info: ModelInfo = sidecar.info
        self.precision: str = str(sidecar.data.get("precision", sidecar.info.precision))
        self.profile: Profile = sidecar.profile
        self.gpu = gpu.name
        self._trt, self._cuda = trt, cuda
        try:
            ctx = cuda.Device(0).retain_primary_context()
        except Exception as exc:  # pycuda.driver.Error
            raise BackendUnavailableError(f"could not use the CUDA context of {gpu.name} ({exc}); check "
                                          "the NVIDIA driver and that the GPU is not in prohibited mode") from None
        self._cu = cu = _CudaResources(cuda, ctx)
        self._finalizer = weakref.finalize(self, cu.release)
        try:
            ctx.push()
            try:
                self._load(plan, sidecar.data)
            finally:
                cuda.Context.pop()
        except BaseException:
            self._finalizer()
            raise
        log.info("tensorrt backend: %s (%s, TensorRT %s) on %s, profile %s", path, self.precision,
                 trt.__version__, gpu.name, self.profile.describe())

    def _load(self, plan: bytes, sidecar: dict) -> None:
        """Deserialise and prepare the engine (the CUDA context is current)."""
        trt, cu = self._trt, self._cu
        logger = trt_logger(trt)
        cmd = rebuild_command(self.path, sidecar.get("onnx"))
        cu.runtime = create_trt(trt, trt.Runtime, logger, what="runtime")
        with logger.capture() as logged:
            cu.engine = cu.runtime.deserialize_cuda_engine(plan)  # None on failure
            if cu.engine is None:
                raise ModelError(f"TensorRT {trt.__version__} could not deserialise {self.path}: "
                                 f"{logged.reason()}; rebuild it with `{cmd}`")
            cu.context = cu.engine.create_execution_context()
            if cu.context is None:
                raise ModelError(f"TensorRT could not create an execution context for {self.path} (out "
                                 f"of GPU memory?): {logged.reason()}")
        engine = cu.engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or len(outputs) != 1:
            raise ModelError(f"{self.path} must have one input and one output, has inputs {inputs} and "
                             f"outputs {outputs}; rebuild it from an edgeseg ONNX model with `{cmd}`")
        self._input, self._output = inputs[0], outputs[0]
        if (self._input, self._output) != (sidecar["input_name"], sidecar["output_name"]):
            raise ModelError(f"{self.path} has tensors {self._input!r} -> {self._output!r}, its sidecar says "
                             f"{sidecar['input_name']!r} -> {sidecar['output_name']!r}; rebuild with `{cmd}`")
        self._in_dtype = self._np_dtype(self._input)  # float32 for edgeseg models (all precisions)
        self._out_dtype = self._np_dtype(self._output)
        cu.stream = self._cuda.Stream()

    def _np_dtype(self, tensor: str) -> np.dtype:
        dtype = self._cu.engine.get_tensor_dtype(tensor)
        try:
            return np.dtype(self._trt.nptype(dtype))  # raises TypeError for types numpy lacks
        except TypeError:
            raise ModelError(f"{self.path} tensor {tensor!r} has TensorRT type {dtype}, which has no numpy "
                             "equivalent; edgeseg engines take and return float32") from None

    # -- inference --------------------------------------------------------------------------------
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """N x 1 x H x W float32 (within :attr:`profile`) -> N x C x H x W float32 probabilities."""
        if not isinstance(batch, np.ndarray):
            raise InputError(f"batch must be a numpy array (N x 1 x H x W float32), got {type(batch).__name__}")
        check_batch_shape(batch.shape, self.profile, self.info.multiple, self.path)
        x = np.ascontiguousarray(batch, dtype=np.float32)
        with self._lock:
            cu = self._cu
            if cu is None or cu.ctx is None:
                raise EdgesegError(f"the tensorrt backend for {self.path} was closed; open it again")
            cu.ctx.push()
            try:
                return self._run(cu, x)
            finally:
                self._cuda.Context.pop()

    def _run(self, cu: _CudaResources, x: np.ndarray) -> np.ndarray:
        cuda, ctx = self._cuda, cu.context
        if not ctx.set_input_shape(self._input, tuple(x.shape)):
            raise InputError(f"TensorRT rejected the input shape {x.shape} for {self.path} (profile "
                             f"{self.profile.describe()})")
        out_shape = tuple(int(d) for d in ctx.get_tensor_shape(self._output))
        if len(out_shape) != 4 or min(out_shape) < 1:
            raise ModelError(f"{self.path} reports output shape {out_shape} for input {x.shape}")
        n_in, n_out = x.size, int(np.prod(out_shape))
        self._reserve(cu, n_in, n_out)
        host_in, host_out = cu.host_in[:n_in], cu.host_out[:n_out]
        np.copyto(host_in, x.reshape(-1), casting="same_kind")
        cuda.memcpy_htod_async(cu.dev_in, host_in, cu.stream)  # size = host_in.nbytes
        ctx.set_tensor_address(self._input, int(cu.dev_in))
        ctx.set_tensor_address(self._output, int(cu.dev_out))
        if not ctx.execute_async_v3(cu.stream.handle):
            raise ModelError(f"TensorRT failed to run {self.path} on input {x.shape}; see the TensorRT "
                             "errors in the log")
        cuda.memcpy_dtoh_async(host_out, cu.dev_out, cu.stream)
        cu.stream.synchronize()
        # a fresh float32 array: results never share the reused page-locked buffer
        return host_out.reshape(out_shape).astype(np.float32, copy=True)

    def _reserve(self, cu: _CudaResources, n_in: int, n_out: int) -> None:
        """Grow the page-locked host and device buffers when a larger batch arrives."""
        cuda = self._cuda
        if n_in > cu.cap_in:
            cu.free(("dev_in",))
            cu.host_in = cuda.pagelocked_empty(n_in, self._in_dtype)
            cu.dev_in = cuda.mem_alloc(cu.host_in.nbytes)
            cu.cap_in = n_in
        if n_out > cu.cap_out:
            cu.free(("dev_out",))
            cu.host_out = cuda.pagelocked_empty(n_out, self._out_dtype)
            cu.dev_out = cuda.mem_alloc(cu.host_out.nbytes)
            cu.cap_out = n_out

    def close(self) -> None:
        """Free device memory and release the CUDA context (from any thread); later infer calls raise."""
        with self._lock:
            finalizer = getattr(self, "_finalizer", None)
            if finalizer is not None:
                finalizer()  # runs _CudaResources.release once; later calls do nothing

    def __repr__(self) -> str:
        return (f"TensorRTBackend({str(self.path)!r}, precision={self.precision!r}, gpu={self.gpu!r}, "
                f"profile=({self.profile.describe()}))")


def open(model: str | Path, device: str = "auto", **options: Any) -> TensorRTBackend:  # noqa: A001
    return TensorRTBackend(model, device=device, **options)

"""ONNX Runtime backend: ``.onnx`` models (fp32, fp16 or INT8 Q/DQ) on CPU, CUDA or TensorRT EPs.

Needs only ``onnxruntime`` (not torch): the model's metadata is read through ONNX Runtime's own
``custom_metadata_map``. Where ``onnx`` is installed too (``edgeseg[convert]``), the CPU
provider runs the model with its class Softmax rewritten as elementwise ops in memory
(:mod:`.ort_graph`; ``split_softmax=False`` runs the graph exactly as written). Execution
providers are used as asked: if the one asked for cannot start, this raises instead of quietly
running on the CPU.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import BackendUnavailableError, ModelError
from ..modelinfo import METADATA_KEY, ModelInfo

log = logging.getLogger(__name__)

_CPU, _CUDA, _TRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise BackendUnavailableError(
            "the onnxruntime backend needs ONNX Runtime, which is not installed; install it with "
            "`pip install onnxruntime` (CPU) or `pip install onnxruntime-gpu` (CUDA)") from None
    return onnxruntime


def _providers(ort: Any, device: str, providers: Sequence[str] | None) -> list[str]:
    available = ort.get_available_providers()
    if providers:
        missing = [p for p in providers if p not in available]
        if missing:
            raise BackendUnavailableError(
                f"ONNX Runtime {ort.__version__} here offers {available}, not {missing}; install "
                "onnxruntime-gpu (CUDA/TensorRT providers) on a machine with an NVIDIA GPU")
        return list(providers)
    if device == "cpu" or (device == "auto" and _CUDA not in available):
        return [_CPU]
    if _CUDA not in available:
        raise BackendUnavailableError(
            f"device 'cuda' was asked for but ONNX Runtime {ort.__version__} here offers only "
            f"{available}; install onnxruntime-gpu on a machine with an NVIDIA GPU, or use device='cpu'")
    return [_CUDA, _CPU]


def _fmt(shape: Sequence[Any]) -> str:
    return " x ".join(str(d) if isinstance(d, int) and d > 0 else str(d or "?") for d in shape)


def check_io_shapes(path: Any, input_shape: Sequence[Any], output_shape: Sequence[Any], *, classes: int,
                    multiple: int) -> None:
    """ModelError unless the model takes N x 1 x H x W and returns N x ``classes`` x H x W, with N, H
    and W free (the Segmenter feeds batches of tiles of any size). ONNX Runtime reports a free
    dimension as a name or None, a fixed one as a positive int."""
    fix = "export it again with `edgeseg convert MODEL -o model.onnx` (dynamic N, H and W)"
    shown = _fmt(input_shape)
    if len(input_shape) != 4:
        raise ModelError(f"{path} takes a {len(input_shape)}-D input ({shown}); edgeseg models take "
                         f"N x 1 x H x W grey images: {fix}")
    channels = input_shape[1]
    if isinstance(channels, int) and channels > 0 and channels != 1:
        raise ModelError(f"{path} takes {channels}-channel input ({shown}); edgeseg models take one grey "
                         f"channel (N x 1 x H x W): {fix}")
    fixed = [axis for axis, d in zip("NHW", (input_shape[0], input_shape[2], input_shape[3]))
             if isinstance(d, int) and d > 0]
    if fixed:
        raise ModelError(f"{path} has a fixed input shape ({shown}; fixed {', '.join(fixed)}), but the "
                         f"Segmenter feeds batches of tiles of any size (H and W multiples of {multiple}): "
                         f"{fix}")
    if not output_shape:  # rank unknown to ONNX Runtime: nothing to check before running
        return
    out_channels = output_shape[1] if len(output_shape) == 4 else None
    if len(output_shape) != 4 or (isinstance(out_channels, int) and out_channels > 0 and out_channels != classes):
        raise ModelError(f"{path} returns {_fmt(output_shape)}; expected N x {classes} x H x W class "
                         f"probabilities (one channel per class of its metadata): {fix}")


class OnnxRuntimeBackend:
    """Runs an edgeseg ONNX model with ONNX Runtime."""

    name = "onnxruntime"

    def __init__(self, model: str | Path, device: str = "auto", providers: Sequence[str] | None = None,
                 threads: int | None = None, spinning: bool = False, split_softmax: bool = True) -> None:
        ort = _ort()
        path = Path(model)
        source: str | bytes = str(path)
        if path.suffix.lower() == ".zip":  # a bioimage.io package: its ONNX weights
            from ..bmz import onnx_from_package

            source = onnx_from_package(path)[1]
        elif not path.is_file():
            raise ModelError(f"ONNX model not found: {path}; expected an .onnx file written by "
                             "`edgeseg convert MODEL -o model.onnx`")
        chosen = _providers(ort, device, providers)
        self.graph_rewrites: list[str] = []
        if split_softmax and chosen[0] == _CPU:
            source = self._rewritten(source)
        so = ort.SessionOptions()
        so.log_severity_level = 3
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            so.intra_op_num_threads = int(threads)
        if not spinning:
            # Idle pool threads sleep instead of spinning between operators: the CPU they would
            # burn goes to pre/post-processing (Segmenter.stream) and to other processes on a
            # small shared device. Measured on the shared 2-core CPU, ORT fp32 at 512^2: 282-291 vs
            # 386-417 ms of CPU time per frame, wall time no worse, serial or streamed.
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self._sess = ort.InferenceSession(source, so, providers=chosen)
        except Exception as exc:  # ORT raises its own exception types for bad files
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"{path} could not be loaded by ONNX Runtime ({first}); the file is "
                             "truncated, corrupted or not an ONNX model: export it again") from None
        active = self._sess.get_providers()
        if chosen[0] not in active:
            raise BackendUnavailableError(
                f"ONNX Runtime could not start {chosen[0]} for {path} (active: {active}); check the "
                "CUDA/cuDNN/TensorRT installation, or ask for device='cpu'")
        meta = self._sess.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in meta:
            raise ModelError(f"{path} has no '{METADATA_KEY}' metadata: it was not exported by edgeseg. "
                             "Export it with `edgeseg convert MODEL -o model.onnx`")
        self.info = ModelInfo.from_json(meta[METADATA_KEY], f"the metadata of {path}")
        self.precision = self.info.precision
        self.device = "cpu" if chosen[0] == _CPU else "cuda"
        self.providers = active
        self.path = path
        inputs, outputs = self._sess.get_inputs(), self._sess.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1 or inputs[0].type != "tensor(float)":
            raise ModelError(f"{path} must have one float input and one output, got inputs "
                             f"{[(i.name, i.type) for i in inputs]} and outputs {[o.name for o in outputs]}")
        self._input, self._output = inputs[0].name, outputs[0].name
        check_io_shapes(path, inputs[0].shape, outputs[0].shape, classes=len(self.info.classes),
                        multiple=self.info.multiple)
        log.info("onnxruntime backend: %s (%s) on %s%s", path, self.precision, active,
                 f", rewrites {self.graph_rewrites}" if self.graph_rewrites else "")

    def _rewritten(self, source: str | bytes) -> str | bytes:
        """The model with its class Softmax as elementwise ops (:mod:`.ort_graph`): several
        times faster on the CPU provider, the same probabilities. The file is not changed."""
        from .ort_graph import split_softmax

        try:
            data = source if isinstance(source, bytes) else Path(source).read_bytes()
        except OSError:  # unreadable: ONNX Runtime reports it below, as for any load
            return source
        rewritten = split_softmax(data)
        if rewritten is None:
            return source
        self.graph_rewrites.append("split_softmax")
        return rewritten

    def infer(self, batch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(batch, dtype=np.float32)
        out = self._sess.run([self._output], {self._input: x})[0]  # thread-safe in ONNX Runtime
        return np.asarray(out, dtype=np.float32)

    def close(self) -> None:
        self._sess = None


def open(model: str | Path, device: str = "auto", **options: Any) -> OnnxRuntimeBackend:  # noqa: A001
    return OnnxRuntimeBackend(model, device=device, **options)

"""``export_onnx``: the single entry from a trained model to ONNX.

The exported graph takes ``image`` (N x 1 x H x W float32, normalised like training, H and W
multiples of 2**depth) and returns ``probs`` (N x 3 x H x W float32 softmax probabilities), with
dynamic N/H/W, BatchNorm folded into the convolutions, opset >= 17, and the model's
:class:`~edgeseg.modelinfo.ModelInfo` in ``metadata_props`` (key ``"edgeseg"``). Before the file
is written (atomically) it passes the ONNX checker and is run on ONNX Runtime against the torch
model: the largest probability difference must be within ``atol``.
"""

from __future__ import annotations

import io
import logging
import warnings
from pathlib import Path
from typing import Any, Union

import numpy as np

from edgeseg._atomic import atomic_write_bytes
from edgeseg._version import __version__
from edgeseg.errors import BackendUnavailableError, InputError, ModelError
from edgeseg.modelinfo import METADATA_KEY, ModelInfo

__all__ = ["export_onnx", "onnx_info", "load_onnx", "io_names", "check_graph", "set_metadata", "INPUT_NAME",
           "OUTPUT_NAME", "MIN_OPSET"]

log = logging.getLogger(__name__)

INPUT_NAME, OUTPUT_NAME = "image", "probs"
MIN_OPSET = 17
PathLike = Union[str, Path]


def _require(module: str, extra: str = "convert") -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise BackendUnavailableError(
            f"{module} is needed for ONNX conversion but is not installed ({exc}); "
            f"install it with: pip install 'edgeseg[{extra}]'"
        ) from None


def _load(model: Any) -> tuple[Any, ModelInfo]:
    """(eval torch UNet, ModelInfo) from a name, a checkpoint path or a Checkpoint."""
    from edgeseg.checkpoint import Checkpoint, load_checkpoint

    ckpt = model if isinstance(model, Checkpoint) else load_checkpoint(model)
    return ckpt.build_model(), ModelInfo.from_checkpoint(ckpt)


def _verification_inputs(multiple: int) -> list[np.ndarray]:
    """Deterministic, image-like inputs (smooth blobs on noise) at two shapes and batch sizes."""
    rng = np.random.default_rng(0)
    out = []
    for n, h, w in ((1, 4 * multiple, 6 * multiple), (2, 8 * multiple, 8 * multiple)):
        yy, xx = np.mgrid[:h, :w].astype(np.float32)
        x = np.zeros((n, 1, h, w), np.float32)
        for i in range(n):
            for _ in range(12):
                cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(3, multiple)
                x[i, 0] += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
            x[i, 0] += rng.normal(0, 0.05, (h, w)).astype(np.float32)
        out.append(np.clip(x, 0, 1))
    return out


def export_onnx(
    model: Any,
    path: PathLike,
    *,
    opset: int = MIN_OPSET,
    verify: bool = True,
    atol: float = 1e-4,
) -> Path:
    """Export a trained model to ONNX (fp32) and return the written path.

    Args:
        model: ``"default"``, a checkpoint path, or a loaded ``Checkpoint``.
        path: where to write the ``.onnx`` file (written atomically).
        opset: ONNX opset (>= 17).
        verify: run the exported graph on ONNX Runtime against torch before writing.
        atol: largest allowed absolute probability difference in that check.
    """
    if opset < MIN_OPSET:
        raise InputError(f"opset must be >= {MIN_OPSET}, got {opset}")
    path = Path(path)
    if path.suffix != ".onnx":
        raise InputError(f"the ONNX output path must end in .onnx, got {path}")
    torch = _require("torch", "train")
    onnx = _require("onnx")
    from edgeseg.model import fold_batchnorm

    net, info = _load(model)
    folded = _softmaxed(fold_batchnorm(net), torch).eval()
    dummy = torch.zeros(1, 1, 4 * info.multiple, 4 * info.multiple)
    buf = io.BytesIO()
    dyn = {0: "N", 2: "H", 3: "W"}
    with warnings.catch_warnings(), torch.no_grad():
        # torch >= 2.9 marks the TorchScript exporter deprecated; it still makes the plainest
        # graphs for TensorRT, so it is used while it exists.
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=FutureWarning)
        warnings.simplefilter("ignore", category=UserWarning)
        torch.onnx.export(folded, (dummy,), buf, dynamo=False, opset_version=opset,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes={INPUT_NAME: dyn, OUTPUT_NAME: dyn}, do_constant_folding=True)
    proto = onnx.load_from_string(buf.getvalue())
    proto.producer_name, proto.producer_version = "edgeseg", __version__
    proto.doc_string = ("edgeseg nuclei U-Net: image N x 1 x H x W (normalised, H and W multiples of "
                        f"{info.multiple}) -> probs N x 3 x H x W ({', '.join(info.classes)})")
    set_metadata(proto, info)
    check_graph(proto, "the exported ONNX graph")
    data = proto.SerializeToString()
    if verify:
        err = _max_abs_error(data, net, torch, info.multiple)
        log.info("ONNX Runtime vs torch: max abs probability difference %.3g", err)
        if not err <= atol:
            raise ModelError(f"the exported ONNX model differs from torch by {err:.3g} (max abs "
                             f"probability), more than atol={atol}; the export is not written")
    atomic_write_bytes(path, data)
    log.info("wrote %s (%.1f MB)", path, len(data) / 1e6)
    return path


def _softmaxed(net: Any, torch: Any) -> Any:
    """``softmax(net(x), dim=1)`` as a torch module (torch is imported lazily by the caller)."""

    class Softmaxed(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.net = inner

        def forward(self, x: Any) -> Any:
            return torch.softmax(self.net(x), dim=1)

    return Softmaxed(net)


def check_graph(proto: Any, what: str) -> None:
    """The ONNX checker (full shape inference) as a ModelError naming ``what``."""
    onnx = _require("onnx")
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ModelError(f"{what} failed the ONNX checker: {exc}") from exc


def set_metadata(proto: Any, info: ModelInfo) -> None:
    """Write ``info`` into ``proto.metadata_props`` (replacing edgeseg keys already there)."""
    flat = {
        METADATA_KEY: info.to_json(),
        "edgeseg.version": info.edgeseg_version,
        "edgeseg.precision": info.precision,
        "edgeseg.classes": ",".join(info.classes),
        "edgeseg.source_sha256": info.source_sha256,
    }
    keep = [p for p in proto.metadata_props if p.key not in flat]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    for k, v in flat.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v


def load_onnx(path: PathLike) -> Any:
    """``onnx.load`` with one-line ModelErrors for a missing, unreadable or truncated file."""
    onnx = _require("onnx")
    path = Path(path)
    if not path.is_file():
        what = "is a folder, not" if path.is_dir() else "not found: expected"
        raise ModelError(f"ONNX model {what} an .onnx file: {path}; export one with "
                         "`edgeseg convert MODEL -o model.onnx`")
    try:
        return onnx.load(str(path))
    except OSError:
        raise  # unreadable (permissions, I/O): the CLI reports it in one line with the path
    except Exception as exc:  # noqa: BLE001 - protobuf DecodeError and friends: not ONNX, or cut short
        text = " ".join(str(exc).split()) or type(exc).__name__
        raise ModelError(f"{path} could not be read as an ONNX model ({type(exc).__name__}: {text[:200]}); "
                         "the file is truncated, corrupted or not an ONNX model: export it again") from None


def io_names(proto: Any, what: str = "the ONNX model") -> tuple[str, str]:
    """The names of the one input (initializers aside) and the one output of an ONNX graph."""
    g = proto.graph
    weights = {t.name for t in g.initializer}
    inputs = [i.name for i in g.input if i.name not in weights]
    outputs = [o.name for o in g.output]
    if len(inputs) != 1 or len(outputs) != 1:
        raise ModelError(f"{what} must have one input (N x 1 x H x W image) and one output (N x C x H x W "
                         f"probabilities), got inputs {inputs} and outputs {outputs}")
    return inputs[0], outputs[0]


def onnx_info(proto_or_path: Any) -> ModelInfo:
    """The ModelInfo stored in an ONNX model (a ModelProto or a path)."""
    proto = proto_or_path if hasattr(proto_or_path, "metadata_props") else load_onnx(proto_or_path)
    where = f"the metadata of {proto_or_path}" if isinstance(proto_or_path, (str, Path)) else "ONNX metadata"
    for p in proto.metadata_props:
        if p.key == METADATA_KEY:
            return ModelInfo.from_json(p.value, where)
    raise ModelError(f"{where} has no '{METADATA_KEY}' entry: the model was not exported by edgeseg (or "
                     "the file is cut short). Export it with `edgeseg convert MODEL -o model.onnx`")


def _max_abs_error(data: bytes, net: Any, torch: Any, multiple: int) -> float:
    ort = _require("onnxruntime")
    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    err = 0.0
    with torch.no_grad():
        for x in _verification_inputs(multiple):
            ref = torch.softmax(net(torch.from_numpy(x)), dim=1).numpy()
            got = sess.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
            if got.shape != ref.shape:
                raise ModelError(f"ONNX output shape {got.shape} != torch output shape {ref.shape}")
            err = max(err, float(np.abs(got - ref).max()))
    return err

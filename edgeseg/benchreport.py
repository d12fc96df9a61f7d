"""Facts and presentation of ``edgeseg bench`` results: machine, versions, model, table, plot."""

from __future__ import annotations

import importlib
import os
import platform
import time
from pathlib import Path
from typing import Any, Sequence

__all__ = ["machine", "versions", "model_facts", "cpu_flags", "table", "plot", "available_memory",
           "block_memory"]

_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni",
          "avx512_bf16", "avx512_fp16", "amx_int8", "amx_bf16", "asimd", "asimddp", "asimdhp")


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_flags(text: str | None = None) -> list[str]:
    """The SIMD flags that decide ONNX Runtime's / oneDNN's float and int8 kernels."""
    text = _cpuinfo() if text is None else text
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines()
                  if line.startswith(("flags", "Features"))), [])
    return [f for f in _FLAGS if f in flags]


def machine() -> dict[str, Any]:
    text = _cpuinfo()
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines()
                  if line.startswith(("model name", "Model"))), platform.processor() or platform.machine())
    try:
        load = list(os.getloadavg())
    except OSError:
        load = []
    gpu = None
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return {"cpu": model, "cpu_count": os.cpu_count(), "cpu_flags": cpu_flags(text),
            "platform": platform.platform(), "python": platform.python_version(), "gpu": gpu,
            "loadavg_start": load, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def versions() -> dict[str, str | None]:
    from . import __version__

    out: dict[str, str | None] = {"edgeseg": __version__}
    for name, mod in (("numpy", "numpy"), ("opencv", "cv2"), ("torch", "torch"),
                      ("onnxruntime", "onnxruntime"), ("scikit-image", "skimage"), ("tensorrt", "tensorrt")):
        try:
            out[name] = getattr(importlib.import_module(mod), "__version__", "?")
        except ImportError:
            out[name] = None
    try:
        import torch

        out["torch_threads"] = str(torch.get_num_threads())
    except ImportError:
        pass
    import cv2

    out["opencv_threads"] = str(cv2.getNumThreads())
    return out


def model_facts(model: str, configurations: Sequence[str]) -> dict[str, Any]:
    from .checkpoint import load_checkpoint
    from .modelinfo import ModelInfo

    ckpt = load_checkpoint(model)
    info = ModelInfo.from_checkpoint(ckpt)
    params = sum(int(v.numel()) for v in ckpt.state_dict.values())
    return {"model": model, "path": str(ckpt.path), "classes": list(info.classes), "multiple": info.multiple,
            "parameters": params, "postprocess": info.postprocess.to_dict(),
            "configurations": sorted(set(configurations))}


_COLUMNS = ("backend", "precision", "device", "mode", "size", "batch", "pre_ms", "copy_ms", "infer_ms",
            "post_ms", "total_ms", "p99_ms", "fps", "speedup_vs_naive", "layout")


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.2f}" if abs(v) < 100 else f"{v:.0f}"
    return str(v)


def _layout(row: dict[str, Any]) -> str | None:
    """The stream's thread layout of a row (its ``policy`` reads "layout (n threads): reason")."""
    policy = row.get("policy")
    return policy.split(" ", 1)[0] if isinstance(policy, str) and policy else None


def table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as an aligned text table."""
    heads = [c.replace("_ms", "").replace("speedup_vs_naive", "x naive") for c in _COLUMNS]
    cells = [heads] + [[_fmt(_layout(r) if c == "layout" else r.get(c)) for c in _COLUMNS] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(_COLUMNS))]
    lines = ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def plot(rows: Sequence[dict[str, Any]], path: str | Path, title: str = "edgeseg bench") -> None:
    """A PNG of the stage times per row (stacked horizontal bars, ms per frame; a dot marks the
    wall time per frame, below the stages' sum when they overlap), written atomically."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ._atomic import atomic_write_bytes

    labels = [f"{r['backend']}/{r['precision']}/{r['device']} {r['mode']} {r['size']}^2 b{r['batch']}"
              for r in rows]
    fig, ax = plt.subplots(figsize=(10, 0.28 * len(rows) + 1.5))
    left = [0.0] * len(rows)
    y = list(range(len(rows)))
    for key, colour in (("pre_ms", "#4c72b0"), ("copy_ms", "#dd8452"), ("infer_ms", "#55a868"),
                        ("post_ms", "#c44e52")):
        vals = [r[key] for r in rows]
        ax.barh(y, vals, left=left, color=colour, label=key[:-3])
        left = [a + b for a, b in zip(left, vals)]
    ax.scatter([r["total_ms"] for r in rows], y, color="black", s=10, zorder=3, label="wall / frame")
    ax.set_yticks(y, labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("ms per frame")
    ax.set_title(title)
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


# Host memory one open configuration holds per input pixel of a batch (activations, ONNX Runtime's
# arena, probabilities, labels), measured here at 1024^2: torch 355, ONNX Runtime 546 bytes; rounded up.
_BYTES_PER_PIXEL = {"onnxruntime": 640}
_BYTES_PER_PIXEL_DEFAULT = 420  # torch and the naive baseline on the CPU
_BYTES_PER_PIXEL_DEVICE = 64  # GPU backends: host buffers only
MEMORY_FRACTION = 0.8  # a block runs only if its estimate fits this share of the available memory


def available_memory() -> int | None:
    """``MemAvailable`` of /proc/meminfo in bytes (None where there is none)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def block_memory(cands: list[Any], size: int, batch: int) -> int:
    """Estimated host memory of timing one (size, batch) block: every configuration stays open
    (they are timed interleaved), each holding about its bytes per pixel of a batch; ``cands``
    have ``backend`` and ``device``."""
    px = size * size * batch
    return sum(px * (_BYTES_PER_PIXEL.get(c.backend, _BYTES_PER_PIXEL_DEFAULT) if c.device == "cpu"
                     else _BYTES_PER_PIXEL_DEVICE) for c in cands)

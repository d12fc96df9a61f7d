"""Shared helpers of the benchmark scripts: where the data is, machine facts, JSON output."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DSB_ROOT = REPO.parent / "shared" / "data" / "dsb2018"
STAGE1_TRAIN = DSB_ROOT / "stage1_train"


def require_data(path: Path = STAGE1_TRAIN) -> Path:
    if not (path / "images").is_dir():
        sys.exit(f"DSB2018 data not found at {path}: this benchmark needs the real images "
                 "(see README, 'Data'); pass --data DIR to point at a copy")
    return path


def machine() -> dict[str, Any]:
    import cv2
    import numpy as np

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "opencv_threads": cv2.getNumThreads(),
        "cpu_flags": cpu_flags(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def cpu_flags() -> list[str]:
    """The SIMD flags that decide ONNX Runtime's int8 and float kernels: the same list
    ``edgeseg bench`` records (:func:`edgeseg.benchreport.cpu_flags`)."""
    from edgeseg.benchreport import cpu_flags as flags

    return flags()


def time_ms(fn: Callable[[], Any], repeat: int = 20, warmup: int = 2) -> float:
    """Median wall time of ``fn`` in milliseconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    return times[len(times) // 2]


def write_json(path: str | None, obj: dict[str, Any]) -> None:
    if not path:
        return
    from edgeseg._atomic import atomic_write_json

    atomic_write_json(path, obj)
    print(f"wrote {path}")


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    cells = [[c for c in columns]] + [[_fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def dumps(obj: Any) -> str:
    return json.dumps(obj, indent=2)


def group_split_parser(doc: str):
    """The arguments every group-split script takes: --model, --data, --split, --json."""
    import argparse

    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--data", default=str(STAGE1_TRAIN))
    ap.add_argument("--split", default=str(REPO / "training/splits/dsb2018_groups.json"))
    ap.add_argument("--json", required=True)
    return ap


def labels_at_zoom(seg: Any, image: Any, zoom: float) -> Any:
    """``seg``'s labels of ``image`` segmented at a forced ``zoom`` (1.0: as given), back at the
    image's size: what size control does for that zoom, for sweeps of its rules."""
    if zoom == 1.0:
        return seg.segment(image).labels
    import edgeseg.sizing as sizing
    from edgeseg.postprocess import label_instances

    probs, *_ = seg._zoomed(image, zoom)
    probs = sizing.resize_probabilities(probs, image.shape[:2])
    return label_instances(probs, sizing.scaled_postprocess(seg.postprocess, zoom))

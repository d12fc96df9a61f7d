"""Benchmark edgeseg.metrics.dsb_score against a naive per-object reference.

Usage::

    python benchmarks/bench_metrics.py [--json OUT] [--runs N] [--data DIR]

Times ``dsb_score`` (median of ``--runs`` runs after one warm-up) on synthetic 1024x1024
label images with ~300 disc-shaped nuclei (prediction = ground truth with every object
jittered by a pixel or two, some objects dropped and some spurious ones added) and, in the
same run, a naive reference that loops over ground-truth objects with boolean masks. If the
DSB2018 stage1_train labels exist, the largest real label image is also timed against
itself shifted by one pixel.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edgeseg._atomic import atomic_write_json  # noqa: E402
from edgeseg.metrics import IOU_THRESHOLDS, dsb_score  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "dsb2018" / "stage1_train"


def synthetic_pair(
    size: int = 1024, n_objects: int = 300, seed: int = 0
) -> Tuple[np.ndarray, np.ndarray]:
    """Ground truth with ``n_objects`` discs and a jittered, imperfect prediction."""
    rng = np.random.default_rng(seed)
    gt = np.zeros((size, size), np.int32)
    pred = np.zeros((size, size), np.int32)

    def disc(img: np.ndarray, cy: int, cx: int, r: int, value: int) -> None:
        y0, y1 = max(cy - r, 0), min(cy + r + 1, size)
        x0, x1 = max(cx - r, 0), min(cx + r + 1, size)
        yy, xx = np.ogrid[y0:y1, x0:x1]
        img[y0:y1, x0:x1][(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = value

    next_pred = 1
    for i in range(1, n_objects + 1):
        cy, cx = (int(v) for v in rng.integers(0, size, 2))
        r = int(rng.integers(8, 22))
        disc(gt, cy, cx, r, i)
        if rng.random() < 0.08:  # missed object
            continue
        dy, dx = (int(v) for v in rng.integers(-2, 3, 2))
        disc(pred, cy + dy, cx + dx, r + int(rng.integers(-1, 2)), next_pred)
        next_pred += 1
    for _ in range(20):  # spurious detections
        cy, cx = (int(v) for v in rng.integers(0, size, 2))
        disc(pred, cy, cx, int(rng.integers(5, 12)), next_pred)
        next_pred += 1
    return gt, pred


def naive_dsb_score(gt: np.ndarray, pred: np.ndarray) -> float:
    """Reference: IoU of each gt object with every prediction it touches, via boolean masks."""
    gt_ids = [i for i in np.unique(gt) if i != 0]
    pred_ids = [j for j in np.unique(pred) if j != 0]
    col = {j: k for k, j in enumerate(pred_ids)}
    if not gt_ids and not pred_ids:
        return 1.0
    iou = np.zeros((len(gt_ids), len(pred_ids)))
    for a, i in enumerate(gt_ids):
        gm = gt == i
        for j in np.unique(pred[gm]):
            if j != 0:
                pm = pred == j
                iou[a, col[j]] = np.logical_and(gm, pm).sum() / np.logical_or(gm, pm).sum()
    scores = []
    for t in IOU_THRESHOLDS:
        tp = int((iou > t).sum())
        scores.append(tp / (len(gt_ids) + len(pred_ids) - tp))
    return float(np.mean(scores))


def time_ms(fn: Callable[[], float], runs: int) -> Tuple[float, float]:
    """Median wall time in ms over ``runs`` calls after one warm-up; also the result."""
    result = fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), result


def largest_label_image(data: Path) -> Optional[Tuple[str, np.ndarray]]:
    """The real label image with the most pixels (then most objects), or None if absent."""
    labels_dir = data / "labels"
    if not labels_dir.is_dir():
        return None
    import cv2  # only needed for the real-data case

    best: Optional[Tuple[Tuple[int, int], str, np.ndarray]] = None
    for p in sorted(labels_dir.glob("*.png")):
        lab = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        if lab is None or lab.ndim != 2:
            continue
        key = (lab.size, int(lab.max()))
        if best is None or key > best[0]:
            best = (key, p.name, lab)
    return None if best is None else (best[1], best[2])


def bench_case(
    name: str, gt: np.ndarray, pred: np.ndarray, runs: int, naive_runs: int
) -> Dict[str, Any]:
    fast_ms, fast = time_ms(lambda: dsb_score(gt, pred), runs)
    naive_ms, naive = time_ms(lambda: naive_dsb_score(gt, pred), naive_runs)
    if abs(fast - naive) > 1e-9:
        raise RuntimeError(f"{name}: dsb_score {fast} != naive reference {naive}")
    return {
        "case": name,
        "shape": list(gt.shape),
        "dtype": str(gt.dtype),
        "n_gt": int(len(np.unique(gt)) - (gt == 0).any()),
        "n_pred": int(len(np.unique(pred)) - (pred == 0).any()),
        "score": fast,
        "dsb_score_ms": round(fast_ms, 3),
        "naive_ms": round(naive_ms, 3),
        "speedup": round(naive_ms / fast_ms, 1),
        "runs": runs,
        "naive_runs": naive_runs,
    }


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, help="write the results to this JSON file")
    ap.add_argument("--runs", type=int, default=30, help="timed runs of dsb_score")
    ap.add_argument("--naive-runs", type=int, default=3, help="timed runs of the reference")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="DSB2018 stage1_train")
    args = ap.parse_args(argv)

    results = []
    gt, pred = synthetic_pair()
    results.append(bench_case("synthetic 1024x1024 int32", gt, pred, args.runs, args.naive_runs))
    big = gt.astype(np.uint32)
    big[big > 0] += np.uint32(2**31 - 1000)  # large sparse ids: exercises the compaction path
    results.append(bench_case("synthetic, uint32 ids ~2^31", big, pred, args.runs, 1))

    real = largest_label_image(args.data)
    if real is None:
        print(f"no real labels under {args.data}; skipping the real-data case")
    else:
        name, lab = real
        shifted = np.zeros_like(lab)
        shifted[:, 1:] = lab[:, :-1]
        results.append(
            bench_case(f"real {name[:12]} vs 1-px shift", lab, shifted, args.runs, args.naive_runs)
        )

    print(f"{'case':<36} {'objects':>11} {'score':>7} {'dsb ms':>8} {'naive ms':>9} {'ratio':>7}")
    for r in results:
        objs = f"{r['n_gt']}/{r['n_pred']}"
        print(
            f"{r['case']:<36} {objs:>11} {r['score']:>7.4f} {r['dsb_score_ms']:>8.2f} "
            f"{r['naive_ms']:>9.1f} {r['speedup']:>6.1f}x"
        )
    if args.json:
        meta = {"python": platform.python_version(), "numpy": np.__version__,
                "machine": platform.machine(), "processor": platform.processor()}
        atomic_write_json(args.json, {"benchmark": "metrics", "meta": meta, "results": results})
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Post-processing speed and quality: edgeseg.label_instances vs a scikit-image watershed.

Both do the same job on the same probability maps, in the same run:

* edgeseg: ``label_instances`` (thresholds, hole filling, seeds, seeded growth, min size)
* ``skimage_ws``: ``skimage.segmentation.watershed(-body_prob, seeds, mask=foreground)`` given
  the very same seeds, precomputed outside the timing (the strictest comparison: watershed only);
* ``skimage_job``: the minimal same job in scikit-image: thresholds, seed labelling
  (``skimage.measure.label``), watershed;
* ``skimage_full``: everything edgeseg does, in scikit-image/SciPy: hole filling, seed labelling,
  watershed, small-object removal, sequential relabelling.

Inputs: the real 1024x1024 images of DSB2018 stage1_train and a 2048x2048 mosaic of 64 real
256x256 images (dense: thousands of nuclei), with probabilities made from ground truth by
``encode`` -> ``one_hot(smooth=1.0)`` (soft edges, like a network's output). The Kaggle score of
each result vs ground truth is printed beside the times: the speed must not cost accuracy.

    python benchmarks/bench_postprocess.py [--json out.json] [--repeat 20]

``--model`` times instead the issue 11 acceptance row: the default model's probabilities (torch
fp32 on the CPU) of real DSB2018 mosaics (``edgeseg.benchmark.mosaics``), ``label_instances``
against ``cv2.connectedComponents`` seeds + ``skimage.segmentation.watershed(-body, seeds,
mask=fg)``, interleaved in the same run (``edgeseg.benchmark.postprocess_vs_skimage``), wall and
process CPU time, with the CPU flags and the load average before and after:

    python benchmarks/bench_postprocess.py --model default --size 1024 --json out.json

``--before FILE`` (with ``--model``) also times an earlier version of ``edgeseg/postprocess.py``
(``git show REV:edgeseg/postprocess.py > FILE``) interleaved with the current one and the
reference, and checks that both give the same label images.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from _common import STAGE1_TRAIN, machine, require_data, table, time_ms, write_json

from edgeseg.data import read_labels
from edgeseg.metrics import dsb_score
from edgeseg.postprocess import PostprocessConfig, label_instances
from edgeseg.targets import encode, one_hot


def reference_watershed(probs: np.ndarray, cfg: PostprocessConfig, seeds: np.ndarray) -> np.ndarray:
    from skimage.segmentation import watershed

    fg = probs[0] < 1.0 - cfg.fg_threshold
    return watershed(-probs[1], seeds, mask=fg)


def reference_job(probs: np.ndarray, cfg: PostprocessConfig) -> np.ndarray:
    from skimage.measure import label
    from skimage.segmentation import watershed

    fg = probs[0] < 1.0 - cfg.fg_threshold
    seeds = label((probs[1] > cfg.seed_threshold) & fg, connectivity=2)
    return watershed(-probs[1], seeds, mask=fg)


def reference_full(probs: np.ndarray, cfg: PostprocessConfig) -> np.ndarray:
    from scipy import ndimage as ndi
    from skimage.measure import label
    from skimage.morphology import remove_small_objects
    from skimage.segmentation import relabel_sequential, watershed

    fg = ndi.binary_fill_holes(probs[0] < 1.0 - cfg.fg_threshold)
    seeds = label((probs[1] > cfg.seed_threshold) & fg, connectivity=2)
    lab = watershed(-probs[1], seeds, mask=fg)
    lab = remove_small_objects(lab, max_size=cfg.min_size - 1) if cfg.min_size > 1 else lab
    return relabel_sequential(lab)[0]


def cases(data_root):
    manifest = json.loads((data_root / "manifest.json").read_text())
    big = sorted(m["id"] for m in manifest if (m["h"], m["w"]) == (1024, 1024))
    for i in big[:8]:
        yield f"real 1024^2 {i[:8]}", read_labels(data_root / "labels" / f"{i}.png")
    small = sorted((m["id"] for m in manifest if (m["h"], m["w"]) == (256, 256)))[:64]
    tiles = [read_labels(data_root / "labels" / f"{i}.png") for i in small]
    mosaic = np.zeros((2048, 2048), np.int32)
    offset = 0
    for k, lab in enumerate(tiles):
        y, x = divmod(k, 8)
        lab = lab.astype(np.int32)
        mosaic[y * 256:(y + 1) * 256, x * 256:(x + 1) * 256] = np.where(lab > 0, lab + offset, 0)
        offset += int(lab.max())
    yield "mosaic 2048^2 (64 real)", mosaic


def load_before(path: str):
    """An earlier edgeseg/postprocess.py as the module ``edgeseg._postprocess_before``."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location("edgeseg._postprocess_before", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def before_after(before, probs, cfg, rounds: int) -> dict:
    """The earlier and the current label_instances and the reference, interleaved: median wall
    and process CPU ms per frame, and whether the two versions' label images are identical."""
    import time

    from edgeseg.benchmark import naive_label

    fns = {"before": lambda p: before.label_instances(p, cfg), "after": lambda p: label_instances(p, cfg),
           "reference": lambda p: naive_label(p, cfg)}
    identical = all(np.array_equal(fns["before"](p), fns["after"](p)) for p in probs)
    wall = {k: [] for k in fns}
    cpu = {k: [] for k in fns}
    for _ in range(rounds):
        for p in probs:
            for k, fn in fns.items():
                t0, c0 = time.perf_counter(), time.process_time()
                fn(p)
                wall[k].append((time.perf_counter() - t0) * 1e3)
                cpu[k].append((time.process_time() - c0) * 1e3)
    out = {"identical_labels": identical, "timings": len(wall["after"])}
    for k in fns:
        out[f"{k}_ms"], out[f"{k}_cpu_ms"] = float(np.median(wall[k])), float(np.median(cpu[k]))
    for k in ("before", "after"):
        out[f"{k}_speedup"] = out["reference_ms"] / out[f"{k}_ms"]
        out[f"{k}_speedup_cpu"] = out["reference_cpu_ms"] / out[f"{k}_cpu_ms"]
    return out


def model_run(args, root) -> None:
    """label_instances vs the scikit-image reference on a model's probabilities of real mosaics."""
    import os

    from edgeseg.benchmark import mosaics, postprocess_vs_skimage
    from edgeseg.benchreport import machine as machine_facts
    from edgeseg.segmenter import Segmenter

    seg = Segmenter(args.model, backend="torch", device="cpu", diameter=None, tile=-(-args.size // 16) * 16)
    frames = mosaics(root, args.size, args.frames, seed=1)
    probs = [seg.segment(f, probabilities=True).probabilities for f in frames]
    seg.close()
    facts = machine_facts()
    row = postprocess_vs_skimage(probs, seg.postprocess, args.repeat)
    facts["loadavg_end"] = list(os.getloadavg())
    row["foreground_fraction"] = float(np.mean([(p[0] < 1.0 - seg.postprocess.fg_threshold).mean() for p in probs]))
    print(f"cpu flags: {' '.join(facts['cpu_flags'])}; load average {facts['loadavg_start']} -> {facts['loadavg_end']}")
    print(table([row], ["size", "frames", "timings", "label_instances_ms", "skimage_reference_ms", "speedup",
                        "label_instances_cpu_ms", "skimage_reference_cpu_ms", "speedup_cpu"]))
    result = {"benchmark": "postprocess_model", "model": args.model, "config": seg.postprocess.to_dict(),
              "machine": facts, "postprocess": row}
    if args.before:
        ba = before_after(load_before(args.before), probs, seg.postprocess, args.repeat)
        facts["loadavg_end"] = list(os.getloadavg())
        ba["before_file"] = args.before
        result["before_after"] = ba
        print()
        print(table([dict(ba, version=k, ms=ba[f"{k}_ms"], cpu_ms=ba[f"{k}_cpu_ms"],
                          speedup=ba.get(f"{k}_speedup"), speedup_cpu=ba.get(f"{k}_speedup_cpu"))
                     for k in ("before", "after", "reference")],
                    ["version", "ms", "cpu_ms", "speedup", "speedup_cpu", "identical_labels"]))
        print(f"load average at the end: {facts['loadavg_end']}")
    write_json(args.json, result)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(STAGE1_TRAIN))
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--smooth", type=float, default=1.0, help="sigma of the soft probability edges")
    ap.add_argument("--model", default=None,
                    help="time label_instances on this model's probabilities of real mosaics instead")
    ap.add_argument("--size", type=int, default=1024, help="mosaic size with --model")
    ap.add_argument("--frames", type=int, default=3, help="mosaics with --model")
    ap.add_argument("--before", default=None,
                    help="with --model: an earlier edgeseg/postprocess.py to time beside the current one")
    args = ap.parse_args()
    from pathlib import Path

    import cv2

    root = require_data(Path(args.data))
    if args.model:
        return model_run(args, root)
    cfg = PostprocessConfig()
    rows = []
    for name, gt in cases(root):
        probs = one_hot(encode(gt), smooth=args.smooth)
        fg = cv2.compare(probs[0], 1.0 - cfg.fg_threshold, cv2.CMP_LT)
        seeds8 = cv2.bitwise_and(cv2.compare(probs[1], cfg.seed_threshold, cv2.CMP_GT), fg)
        _, seeds = cv2.connectedComponents(seeds8, connectivity=8, ltype=cv2.CV_32S)
        ours = label_instances(probs, cfg)
        ref = reference_watershed(probs, cfg, seeds)
        full = reference_full(probs, cfg)
        r = max(3, args.repeat // 4)
        row = {
            "case": name, "h": gt.shape[0], "w": gt.shape[1], "nuclei": int(len(np.unique(gt)) - 1),
            "edgeseg_ms": time_ms(lambda: label_instances(probs, cfg), args.repeat),
            "skimage_ws_ms": time_ms(lambda: reference_watershed(probs, cfg, seeds), r),
            "skimage_job_ms": time_ms(lambda: reference_job(probs, cfg), r),
            "skimage_full_ms": time_ms(lambda: reference_full(probs, cfg), r),
            "edgeseg_score": dsb_score(gt, ours),
            "skimage_ws_score": dsb_score(gt, ref),
            "skimage_full_score": dsb_score(gt, full),
        }
        row["speedup_ws"] = row["skimage_ws_ms"] / row["edgeseg_ms"]
        row["speedup_job"] = row["skimage_job_ms"] / row["edgeseg_ms"]
        row["speedup_full"] = row["skimage_full_ms"] / row["edgeseg_ms"]
        rows.append(row)
        print(f"{name}: {row['edgeseg_ms']:.2f} ms vs {row['skimage_ws_ms']:.2f} ms", flush=True)
    real = [r for r in rows if r["case"].startswith("real")]
    summary = {
        "real_1024_edgeseg_ms_median": float(np.median([r["edgeseg_ms"] for r in real])),
        "real_1024_edgeseg_ms_max": float(np.max([r["edgeseg_ms"] for r in real])),
        "real_1024_speedup_ws_min": float(np.min([r["speedup_ws"] for r in real])),
        "real_1024_speedup_job_min": float(np.min([r["speedup_job"] for r in real])),
        "real_1024_speedup_full_min": float(np.min([r["speedup_full"] for r in real])),
        "mosaic_edgeseg_ms": rows[-1]["edgeseg_ms"],
        "mosaic_speedup_ws": rows[-1]["speedup_ws"],
        "mosaic_speedup_job": rows[-1]["speedup_job"],
        "mean_score_edgeseg": float(np.mean([r["edgeseg_score"] for r in rows])),
        "mean_score_skimage_ws": float(np.mean([r["skimage_ws_score"] for r in rows])),
    }
    print()
    print(table(rows, ["case", "nuclei", "edgeseg_ms", "skimage_ws_ms", "skimage_job_ms", "skimage_full_ms",
                       "speedup_ws", "speedup_job", "speedup_full", "edgeseg_score", "skimage_ws_score", "skimage_full_score"]))
    print()
    for k, v in summary.items():
        print(f"{k}: {v:.4g}")
    write_json(args.json, {"benchmark": "postprocess", "config": cfg.to_dict(), "smooth": args.smooth,
                           "machine": machine(), "rows": rows, "summary": summary})


if __name__ == "__main__":
    main()

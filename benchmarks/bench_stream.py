"""Streamed vs serial throughput, per backend x precision, timed interleaved in one run.

Issue 11's acceptance: ``Segmenter.stream`` never loses to the serial loop on this CPU (same
backend, frames in order). For every CPU configuration here (torch fp32, ONNX Runtime fp32 /
fp16 / int8) and size, each round times, back to back on the same frames (real DSB2018
mosaics, as ``edgeseg bench``): the serial loop (``segment`` per frame, the bench's
``_time_serial``), the stream with its automatic policy (``layout="auto"``, the bench's
``_time_stream``) and, for reference, the stream with every layout forced (``overlap``: one
thread per stage, the design before the policy; ``pair``; ``worker``). The order of the modes
alternates between rounds, so a load change hits them alike. Per mode: wall ms per frame and
process CPU ms per frame (all threads; CPU time is robust to other processes' load, wall time
is what the acceptance is about), median over rounds; ``vs_serial``: median over rounds of the
serial wall time over this mode's wall time in the same round (> 1: faster than serial).

    nice -n 15 .venv/bin/python benchmarks/bench_stream.py \\
        --json benchmarks/results/2026-11-27-cpu2/stream_vs_serial.json

On a shared machine record the load (the JSON has the load average per round); rerun it on a
quiet machine for the numbers that count.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from _common import STAGE1_TRAIN, require_data, table, write_json

MODES = ("serial", "stream", "stream-overlap", "stream-pair", "stream-worker")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=STAGE1_TRAIN)
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    ap.add_argument("--frames", type=int, default=4, help="frames per round and mode")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--only", nargs="+", default=["torch/fp32", "onnxruntime/fp32", "onnxruntime/fp16",
                                                  "onnxruntime/int8"])
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    ap.add_argument("--workdir", type=Path, default=None, help="converted models (default: a temporary folder)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    data = require_data(args.data)

    from edgeseg.benchmark import BenchConfig, _open, _time_serial, _time_stream, candidates, mosaics
    from edgeseg.benchreport import machine, versions

    cfg = BenchConfig(sizes=tuple(args.sizes), batches=(1,), device="cpu", only=tuple(args.only),
                      data=str(data), workdir=str(args.workdir) if args.workdir else None)
    info = machine()
    rows: list[dict[str, Any]] = []
    loads: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="edgeseg-bench-stream-") as tmp:
        workdir = Path(cfg.workdir or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        cands, skipped = candidates(cfg, workdir, print)
        cands = [c for c in cands if c.backend != "naive"]
        tile = -(-max(max(cfg.sizes), 1024) // 16) * 16
        for size in args.sizes:
            frames = mosaics(data, size, args.frames)
            segs = {c.name: _open(c, cfg, tile, 1) for c in cands}

            def run(name: str, mode: str, frames: list[np.ndarray] = frames) -> tuple[float, float, list[float], Any]:
                seg = segs[name]
                t0, c0 = time.perf_counter(), time.process_time()
                if mode == "serial":
                    _, _, lat, policy = _time_serial(seg, frames, 1)
                else:
                    layout = mode.split("-", 1)[1] if "-" in mode else "auto"
                    _, _, lat, policy = _time_stream(seg, frames, 1, layout)
                n = len(frames)
                return (time.perf_counter() - t0) * 1e3 / n, (time.process_time() - c0) * 1e3 / n, lat, policy

            for c in cands:  # warm-up: first calls allocate and pick kernels per shape
                for m in args.modes:
                    run(c.name, m, frames[:1])
            samples: dict[tuple[str, str], list] = {(c.name, m): [] for c in cands for m in args.modes}
            for r in range(args.rounds):
                for c in cands:
                    for m in (args.modes if r % 2 == 0 else args.modes[::-1]):
                        samples[(c.name, m)].append(run(c.name, m))
                loads.append({"size": size, "round": r + 1, "loadavg": list(os.getloadavg())})
                print(f"size {size}: round {r + 1} of {args.rounds}, load {os.getloadavg()[0]:.1f}", flush=True)
            for c in cands:
                serial = [w for w, _, _, _ in samples.get((c.name, "serial"), [])]
                for m in args.modes:
                    got = samples[(c.name, m)]
                    wall = [w for w, _, _, _ in got]
                    lat = [v for _, _, ls, _ in got for v in ls]
                    policy = got[-1][3]
                    rows.append({
                        "backend": c.backend, "precision": c.precision, "device": c.device, "size": size,
                        "batch": 1, "mode": m, "layout": getattr(policy, "layout", None),
                        "policy": None if policy is None else str(policy),
                        "frames": len(frames) * len(got), "rounds": len(got),
                        "wall_ms": float(np.median(wall)), "wall_ms_min": float(np.min(wall)),
                        "cpu_ms": float(np.median([x for _, x, _, _ in got])),
                        "fps": 1e3 / float(np.median(wall)),
                        "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
                        "vs_serial": (float(np.median([s / w for s, w in zip(serial, wall)]))
                                      if serial else None),
                        "wall_ms_rounds": wall,
                    })
            for s in segs.values():
                s.close()
            # after every size (a long run cut short keeps the sizes it finished)
            info["loadavg_end"] = list(os.getloadavg())
            info["load_note"] = ("shared machine: load average (1, 5, 15 min) at start, per round and at "
                                 "end; modes timed interleaved in rounds, order alternating")
            print(table(rows, ["backend", "precision", "size", "mode", "layout", "wall_ms", "cpu_ms", "p50_ms",
                               "p99_ms", "vs_serial"]), flush=True)
            write_json(args.json, {"machine": info, "versions": versions(), "loads": loads, "skipped": skipped,
                                   "config": {"sizes": args.sizes, "sizes_done": sorted({r["size"] for r in rows}),
                                              "frames_per_round": args.frames, "rounds": args.rounds,
                                              "data": str(data), "tile": tile, "modes": args.modes,
                                              "diameter": None},
                                   "rows": rows})


if __name__ == "__main__":
    main()

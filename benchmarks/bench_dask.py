"""edgeseg.dask.segment_array: throughput with 1 and 2 workers, and peak memory per worker.

Input: a mosaic of real DSB2018 stage1_train fluorescence images (256^2 each; repeated to fill),
uint8. Baseline, timed in the same run: one whole-mosaic ``Segmenter`` call in this process
(tiled, as a user with enough memory would). Dask runs: a ``dask.distributed`` LocalCluster of N
one-thread worker processes, ``chunk`` x ``chunk`` chunks, labels stored to a zarr array on disk
(as ``predict --dask`` does) and the instance table computed in the same pass.

Memory: the peak RSS of each worker process (``getrusage`` max RSS: the model, torch, the chunks
in flight) for arrays of growing size; ``--memory-side`` adds a lazily built array (the real
mosaic tiled with ``dask.array.tile``, never materialised) such as 16384^2.

    python benchmarks/bench_dask.py --side 4096 --workers 1 2 --memory-side 8192 \\
        --json benchmarks/results/2026-11-27-cpu2/dask.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import STAGE1_TRAIN, machine, require_data, table, write_json


def mosaic(root: Path, side: int) -> np.ndarray:
    """The tests' real-image mosaic (tests/mosaic.py), uncropped."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from mosaic import fluorescence_mosaic

    return fluorescence_mosaic(root, side, offset=0)


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM; unlike getrusage's ru_maxrss it is not
    inherited across exec, so a spawned worker reports its own peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def run_dask(arr, workers: int, chunk: int) -> dict:
    import dask
    import dask.array as da
    import zarr
    from distributed import Client, LocalCluster

    import edgeseg.dask

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as client, tempfile.TemporaryDirectory() as tmp:
        client.run(lambda: __import__("edgeseg.dask._worker"))  # workers up and importing edgeseg
        labels, rows = edgeseg.dask.segment_array(arr, chunk=chunk, diameter=None, with_table=True)
        target = zarr.open_array(str(Path(tmp) / "labels.zarr"), mode="w", shape=labels.shape,
                                 chunks=(chunk, chunk), dtype="int32")
        t0 = time.perf_counter()
        _, tab = dask.compute(da.store(labels, target, lock=False, compute=False), rows)
        wall = time.perf_counter() - t0
        rss = client.run(peak_rss_mb)
    mp = arr.shape[0] * arr.shape[1] / 1e6
    return {"side": arr.shape[0], "workers": workers, "chunk": chunk, "wall_s": round(wall, 2),
            "mpix_per_s": round(mp / wall, 3), "nuclei": len(tab),
            "peak_rss_mb_per_worker": sorted(round(v, 1) for v in rss.values())}


COLUMNS = ["side", "workers", "chunk", "wall_s", "mpix_per_s", "nuclei", "peak_rss_mb_per_worker"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=STAGE1_TRAIN)
    ap.add_argument("--side", type=int, default=4096)
    ap.add_argument("--chunk", type=int, default=1024)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--memory-side", type=int, nargs="*", default=[],
                    help="also run these (lazily tiled) sides with the largest worker count, for memory")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    root = require_data(args.data)
    arr = mosaic(root, args.side)
    rows = []
    if not args.no_baseline:
        from edgeseg import Segmenter

        with Segmenter("default", diameter=None) as seg:
            t0 = time.perf_counter()
            n = seg.segment(arr).count
            wall = time.perf_counter() - t0
        rows.append({"side": args.side, "workers": "whole image, this process", "chunk": "-",
                     "wall_s": round(wall, 2), "mpix_per_s": round(arr.size / 1e6 / wall, 3), "nuclei": n,
                     "peak_rss_mb_per_worker": [round(peak_rss_mb(), 1)]})
        print(table([rows[-1]], COLUMNS), flush=True)
    for w in args.workers:
        rows.append(run_dask(arr, w, args.chunk))
        print(table([rows[-1]], COLUMNS), flush=True)
    if args.memory_side:
        import dask.array as da

        base = da.from_array(arr, chunks=args.chunk)
        for side in args.memory_side:
            reps = -(-side // args.side)
            big = da.tile(base, (reps, reps))[:side, :side]
            rows.append({**run_dask(big, max(args.workers), args.chunk), "input": "lazy tiled mosaic"})
            print(table([rows[-1]], COLUMNS), flush=True)
    print(table(rows, COLUMNS))
    if args.json:
        write_json(args.json, {"benchmark": "bench_dask", "machine": machine(), "rows": rows,
                               "note": "LocalCluster of one-thread worker processes (OMP_NUM_THREADS=1 "
                                       "per worker, set by distributed); torch fp32 CPU; diameter=None"})


if __name__ == "__main__":
    main()

"""``edgeseg bench``: the naive baseline and every backend x precision here, side by side."""

from __future__ import annotations

import argparse

DESCRIPTION = ("time the naive baseline (PyTorch eager + scikit-image watershed) and every backend x "
               "precision available here, serial and streamed, on real-image mosaics")
EPILOG = """--json FILE: {"machine", "versions", "model", "rows": [{backend, precision, device, mode, size,
batch, pre_ms, copy_ms, infer_ms, post_ms, total_ms, p99_ms, fps, speedup_vs_naive}], "postprocess"}.
--quick: sizes 256 512, batch 1 and 8, 2 rounds of 2 frames (of a batch, where larger)."""
QUICK = {"sizes": [256, 512], "rounds": 2, "frames": 2}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help=DESCRIPTION, description=DESCRIPTION, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default", help="'default' (bundled) or a .pt checkpoint (default: %(default)s)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto: the CPU, and CUDA where there is a GPU (default: %(default)s)")
    p.add_argument("--quick", action="store_true", help="fewer sizes and rounds (" + ", ".join(
        f"{k} {v}" for k, v in QUICK.items()) + ")")
    p.add_argument("--sizes", type=int, nargs="+", default=None,
                   help="square frame sizes (default 256 512 1024 2048)")
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8], dest="batches", help="batch sizes (default 1 8)")
    p.add_argument("--rounds", type=int, default=None, help="timing rounds, configurations interleaved (default 3)")
    p.add_argument("--frames", type=int, default=None, help="frames per round and row (default 4, at least the batch)")
    p.add_argument("--only", nargs="+", default=[], metavar="NAME",
                   help="run only these: naive, torch/fp32, onnxruntime/int8, ... (default: all available)")
    p.add_argument("--modes", nargs="+", choices=("serial", "stream"), default=["serial", "stream"])
    p.add_argument("--data", default=None, help="folder of real images for the mosaics (default: bundled DSB2018 images)")
    p.add_argument("--calib-data", default=None, help="INT8 calibration images (default: --data)")
    p.add_argument("--workdir", default=None, help="keep converted models here (default: a temporary folder)")
    p.add_argument("--post-size", type=int, default=1024,
                   help="time label_instances against the scikit-image reference at this size (0: skip; "
                        "default %(default)s)")
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--plot", default=None, help="write a PNG of the stage times per row here")
    p.add_argument("--allocator", choices=("default", "tuned"), default="default",
                   help="default: malloc as a plain script has it (the naive baseline as users run it); "
                        "tuned: edgeseg.allocator.tune_allocator for every row, the baseline included "
                        "(default: %(default)s)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from .._atomic import atomic_write_json
    from ..benchmark import BenchConfig, run_bench
    from ..benchreport import plot, table
    from ._paths import check_writable

    for opt, path in (("--json", args.json), ("--plot", args.plot)):
        if path:
            check_writable(path, option=opt)
    quick = QUICK if args.quick else {}
    cfg = BenchConfig(model=args.model, sizes=tuple(args.sizes or quick.get("sizes") or (256, 512, 1024, 2048)),
                      batches=tuple(args.batches), rounds=args.rounds or quick.get("rounds", 3),
                      frames=args.frames or quick.get("frames", 4), device=args.device, only=tuple(args.only),
                      modes=tuple(args.modes), postprocess_size=args.post_size, data=args.data,
                      calib_data=args.calib_data, workdir=args.workdir, allocator=args.allocator)
    result = run_bench(cfg, say=lambda text: print(f"  {text}", file=sys.stderr, flush=True))
    print(table(result["rows"]))
    post = result.get("postprocess")
    if post:
        print(f"label_instances at {post['size']}^2: {post['label_instances_ms']:.2f} ms vs scikit-image "
              f"reference {post['skimage_reference_ms']:.2f} ms ({post['speedup']:.1f}x)")
    for what in result.get("skipped", []):
        print(f"not run here: {what}")
    m = result["machine"]
    print(f"edgeseg bench: {m['cpu']} ({m['cpu_count']} cores; {' '.join(m['cpu_flags'])}), load "
          f"{m['loadavg_start']} -> {m['loadavg_end']}; allocator: {m['allocator']}")
    if args.json:
        atomic_write_json(args.json, result)
        print(f"wrote {args.json}")
    if args.plot:
        plot(result["rows"], args.plot)
        print(f"wrote {args.plot}")
    return 0

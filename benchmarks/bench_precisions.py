"""ONNX Runtime INT8 vs FP16 vs FP32 vs PyTorch FP32 on this CPU, side by side in one run.

Times the network alone (``backend.infer`` on one N x 1 x H x W batch) and the whole frame
(``Segmenter.segment``) at 512x512 and 1024x1024, on the bundled default model. The INT8 model is
calibrated on training images (cached in out/calib_cache.json, so reruns skip calibration).

    python benchmarks/bench_precisions.py [--model default] [--calib-images 32] [--json out.json]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from _common import REPO, STAGE1_TRAIN, machine, require_data, table, time_ms, write_json

from edgeseg import Segmenter


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--data", default=str(STAGE1_TRAIN))
    ap.add_argument("--calib-images", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    from bench_segmenter import frames

    from edgeseg.calibration import calibrate
    from edgeseg.converters import convert_fp16, export_onnx

    data = require_data(Path(args.data))
    tmp = Path(tempfile.mkdtemp())
    fp32 = export_onnx(args.model, tmp / "model.onnx")
    models = {
        "torch fp32": Segmenter(args.model, backend="torch", device="cpu", diameter=None),
        "onnxruntime fp32": Segmenter(fp32, device="cpu", diameter=None),
        "onnxruntime fp16": Segmenter(convert_fp16(fp32, tmp / "model.fp16.onnx"), device="cpu", diameter=None),
        "onnxruntime int8": Segmenter(calibrate(fp32, data, tmp / "model.int8.onnx", num_images=args.calib_images,
                                                cache=REPO / "out" / "calib_cache.json"), device="cpu", diameter=None),
    }
    images = frames(data)
    rows = []
    for size in (512, 1024):
        image = images[size]
        base = None
        for name, seg in models.items():
            x = np.random.default_rng(0).random((1, 1, size, size), dtype=np.float32)
            net = time_ms(lambda: seg._backend.infer(x), args.repeat, warmup=1)
            frame = time_ms(lambda: seg.segment(image), args.repeat, warmup=1)
            base = base or net
            rows.append({"size": f"{size}^2", "model": name, "network_ms": net, "frame_ms": frame,
                         "network_speedup_vs_torch": base / net})
            print(f"{size}^2 {name}: network {net:.0f} ms, frame {frame:.0f} ms", flush=True)
    print()
    print(table(rows, ["size", "model", "network_ms", "frame_ms", "network_speedup_vs_torch"]))
    write_json(args.json, {"benchmark": "precisions", "model": args.model, "machine": machine(), "rows": rows})


if __name__ == "__main__":
    main()

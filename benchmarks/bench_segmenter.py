"""End-to-end frames/s of ``Segmenter`` per backend, beside a naive baseline in the same run.

Frames: a 1024x1024 mosaic of 16 real 256x256 DSB2018 fluorescence images (a dense, typical
frame) and its 512x512 centre crop.
Rows:

* ``baseline``: PyTorch eager fp32 + scikit-image watershed on the same model (what a user would
  write by hand: normalise, pad, ``model(x)``, softmax, ``skimage.measure.label`` seeds,
  ``watershed(-body, seeds, mask=fg)``);
* ``torch``: ``Segmenter(model, backend="torch")``;
* ``onnxruntime``: ``Segmenter(model.onnx)`` (fp32; int8/fp16 ONNX files given with --onnx are
  timed too).

    python benchmarks/bench_segmenter.py [--model default] [--onnx extra.onnx ...] [--json out.json]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import STAGE1_TRAIN, machine, require_data, table, write_json

from edgeseg import Segmenter
from edgeseg.data import normalize, read_image_raw, to_grey
from edgeseg.tiling import pad_to_multiple

SIZES = (512, 1024)


def frames(root: Path) -> dict[int, np.ndarray]:
    import json

    manifest = json.loads((root / "manifest.json").read_text())
    fluo = sorted(m["id"] for m in manifest if (m["h"], m["w"]) == (256, 256))[:16]
    tiles = [to_grey(read_image_raw(root / "images" / f"{i}.png")) for i in fluo]
    mosaic = np.vstack([np.hstack(tiles[r * 4:(r + 1) * 4]) for r in range(4)]).astype(np.uint8)
    return {1024: mosaic, 512: np.ascontiguousarray(mosaic[256:768, 256:768])}


def naive_baseline(model: str):
    import torch
    from skimage.measure import label
    from skimage.segmentation import watershed

    from edgeseg.checkpoint import load_checkpoint

    ckpt = load_checkpoint(model)
    net, norm_cfg, pp = ckpt.build_model(), ckpt.norm(), ckpt.postprocess()

    def run(image: np.ndarray) -> np.ndarray:
        x, _ = normalize(to_grey(image), norm_cfg)
        h, w = x.shape
        xp = pad_to_multiple(x, 16)
        with torch.no_grad():
            p = torch.softmax(net(torch.from_numpy(xp)[None, None]), 1)[0, :, :h, :w].numpy()
        fg = p[0] < 1 - pp.fg_threshold
        seeds = label((p[1] > pp.seed_threshold) & fg, connectivity=2)
        return watershed(-p[1], seeds, mask=fg)

    return run


def time_fps(fn, image, repeat: int) -> tuple[float, float]:
    fn(image)  # warm-up
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn(image)
        times.append(time.perf_counter() - t)
    med = float(np.median(times))
    return med * 1e3, 1.0 / med


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="default")
    ap.add_argument("--onnx", nargs="*", default=[], help="more ONNX models to time (e.g. int8/fp16)")
    ap.add_argument("--data", default=str(STAGE1_TRAIN))
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    from edgeseg.converters.onnx_export import export_onnx

    images = frames(require_data(Path(args.data)))
    tmp = Path(tempfile.mkdtemp())
    onnx_fp32 = export_onnx(args.model, tmp / "model.onnx")
    runners = {"baseline (torch eager + skimage)": naive_baseline(args.model),
               "torch": Segmenter(args.model, backend="torch", device="cpu", diameter=None).segment,
               "onnxruntime fp32": Segmenter(onnx_fp32, device="cpu", diameter=None).segment}
    for extra in args.onnx:
        seg = Segmenter(extra, device="cpu", diameter=None)
        runners[f"onnxruntime {seg.precision} ({Path(extra).name})"] = seg.segment
    rows = []
    for size in SIZES:
        base = None
        for name, fn in runners.items():
            ms, fps = time_fps(fn, images[size], args.repeat)
            base = base or ms
            rows.append({"size": f"{size}^2", "runner": name, "ms_per_frame": ms, "frames_per_s": fps,
                         "speedup_vs_baseline": base / ms})
            print(f"{size}^2 {name}: {ms:.0f} ms", flush=True)
    print()
    print(table(rows, ["size", "runner", "ms_per_frame", "frames_per_s", "speedup_vs_baseline"]))
    write_json(args.json, {"benchmark": "segmenter", "model": args.model, "machine": machine(), "rows": rows})


if __name__ == "__main__":
    main()

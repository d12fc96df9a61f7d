"""Training-throughput benchmark: images/s of one optimisation step (forward + loss + backward +
AdamW) of the edgeseg U-Net at a given crop and batch, on CPU and (when present) CUDA, plus the
cost of building a batch (crop + augmentation, numpy/OpenCV) per image.

    python benchmarks/bench_train.py                      # width 16 and 32, crop 256, batch 4
    python benchmarks/bench_train.py --crop 192 --batch-size 8 --widths 16 --json out/b.json

Prints a table and writes the results as JSON (atomically) to --json (default
out/bench_train.json).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
from _common import REPO, machine, table, write_json  # also puts the repo on sys.path

from edgeseg.training.augment import AugmentConfig, augment_pair
from edgeseg.model import UNet, UNetConfig, count_params, gflops
from edgeseg.training.train import seg_loss


def bench_step(width: int, depth: int, crop: int, batch: int, device: str, steps: int,
               warmup: int, amp: bool) -> dict:
    """Seconds per training step of a fresh model on random data (median of ``steps``)."""
    torch.manual_seed(0)
    dev = torch.device(device)
    cfg = UNetConfig(width=width, depth=depth)
    model = UNet(cfg).to(dev).train()
    cuda = dev.type == "cuda"
    model.to(memory_format=torch.channels_last)  # as edgeseg.train does on every device
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.rand(batch, 1, crop, crop, device=dev)
    x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 3, (batch, crop, crop), device=dev)
    w = torch.tensor([1.0, 1.0, 3.0], device=dev)
    amp_dtype = (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16) \
        if (cuda and amp) else None
    times = []
    for i in range(warmup + steps):
        if cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        with torch.autocast(dev.type, dtype=amp_dtype or torch.float32,
                            enabled=amp_dtype is not None):
            logits = model(x)
        loss, _, _ = seg_loss(logits, y, w, 1.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if cuda:
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    s = float(np.median(times))
    return {"device": device, "width": width, "depth": depth, "crop": crop, "batch": batch,
            "amp": amp_dtype is not None, "params": count_params(model),
            "gflops_fwd_per_image": gflops(cfg, crop, crop), "s_per_step": s,
            "images_per_s": batch / s, "steps_timed": steps}


def bench_batch(crop: int, batch: int, reps: int = 20) -> float:
    """Seconds to build one batch (crop + augment) from 360x360 float16 images."""
    rng = np.random.default_rng(0)
    img = rng.random((360, 360)).astype(np.float16)
    tgt = rng.integers(0, 3, (360, 360), dtype=np.uint8)
    cfg = AugmentConfig()
    t = time.perf_counter()
    for _ in range(reps * batch):
        augment_pair(img, tgt, crop, cfg, rng)
    return (time.perf_counter() - t) / reps


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--widths", type=int, nargs="+", default=[16, 32])
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per configuration")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--devices", nargs="+", default=None, help="default: cpu (+ cuda if present)")
    ap.add_argument("--no-amp", action="store_true", help="fp32 on CUDA too")
    ap.add_argument("--json", default=str(REPO / "out" / "bench_train.json"),
                    help="write the results here ('' : don't)")
    args = ap.parse_args(argv)
    devices = args.devices or (["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    rows = [bench_step(w, args.depth, args.crop, args.batch_size, dev, args.steps, args.warmup,
                       not args.no_amp) for dev in devices for w in args.widths]
    batch_s = bench_batch(args.crop, args.batch_size)
    print(table(rows, ["device", "width", "crop", "batch", "amp", "params",
                       "gflops_fwd_per_image", "s_per_step", "images_per_s"]))
    print(f"batch building (crop + augmentation, one process): {batch_s * 1e3:.1f} ms/batch")
    write_json(args.json, {
        "benchmark": "train", "machine": machine(), "torch": str(torch.__version__),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "batch_build_s": batch_s, "results": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())

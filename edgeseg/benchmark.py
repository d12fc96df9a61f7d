"""End-to-end speed of edgeseg against a naive baseline, side by side, in one run (``edgeseg bench``).

Rows (one per configuration x mode x size x batch):

* ``naive``: the same model in PyTorch eager FP32 (no BatchNorm folding, NCHW) and scikit-image
  post-processing: ``cv2.connectedComponents`` seeds + ``skimage.segmentation.watershed(-body,
  seeds, mask=fg)``; serial only;
* every backend x precision available here through :class:`edgeseg.Segmenter`: torch fp32 (and
  fp16 on CUDA), ONNX Runtime fp32 / fp16 / int8 (converted by :mod:`edgeseg.converters`),
  TensorRT where it is installed; each ``serial`` (``segment`` / ``segment_batch``) and
  ``stream`` (:meth:`Segmenter.stream`, stages overlapped).

Inputs are mosaics of real images (256 x 256 crops of dark-background DSB2018 images, seeded), so
post-processing meets a realistic number of nuclei. Configurations are timed in rounds: each
round runs every configuration once on the same frames, so the baseline and the candidates meet
the same machine load (the load average is recorded).

Per row: ``pre_ms`` / ``copy_ms`` / ``infer_ms`` / ``post_ms`` are the mean per-frame stage
times (copy: batch staging and output crops, and host<->device copies where they are separate);
``total_ms`` the wall time per frame (1000 / fps; in stream mode less than the stages' sum);
``p99_ms`` the 99th percentile of per-frame latency (a batch's frames wait for the batch);
``speedup_vs_naive``: the naive row's ``total_ms`` (same size and batch, same device where there
is one) over this row's; ``policy`` (stream rows): the stream's thread layout and why
(:mod:`edgeseg.streampolicy`), None for serial rows.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .errors import InputError
from .stream import percentile

__all__ = ["BenchConfig", "Candidate", "run_bench", "mosaics", "naive_label", "ROW_KEYS"]

log = logging.getLogger(__name__)

ROW_KEYS = ("backend", "precision", "device", "mode", "size", "batch", "pre_ms", "copy_ms", "infer_ms",
            "post_ms", "total_ms", "p99_ms", "fps", "speedup_vs_naive", "policy")


@dataclass(frozen=True)
class BenchConfig:
    """What ``edgeseg bench`` runs. ``only``: names such as ``naive``, ``torch/fp32``,
    ``onnxruntime/int8`` (default: every one available). ``frames``: frames per round and row
    (at least ``batch``)."""

    model: str = "default"
    sizes: tuple[int, ...] = (256, 512, 1024, 2048)
    batches: tuple[int, ...] = (1, 8)
    rounds: int = 3
    frames: int = 4
    device: str = "auto"
    only: tuple[str, ...] = ()
    modes: tuple[str, ...] = ("serial", "stream")
    data: str | None = None  # a folder of images (or with images/); None: the bundled demo images
    calib_data: str | None = None  # INT8 calibration images; None: ``data``
    workdir: str | None = None  # converted models go here; None: a temporary folder
    postprocess_size: int = 1024  # label_instances vs scikit-image at this size (0: not timed)
    # "default": malloc as a plain script has it; "tuned": edgeseg.allocator.tune_allocator for
    # every row (the baseline included), so that no row pays page faults for its large tensors
    allocator: str = "default"


@dataclass
class Candidate:
    backend: str
    precision: str
    device: str
    segmenter: Any = None  # a Segmenter, or the naive runner
    samples: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return "naive" if self.backend == "naive" else f"{self.backend}/{self.precision}"


# -- inputs -------------------------------------------------------------------------------------

def _image_files(folder: Path) -> list[Path]:
    from .data import IMAGE_EXTS

    root = folder / "images" if (folder / "images").is_dir() else folder
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTS and "label" not in p.parts[-2])
    if not files:
        raise InputError(f"no images found in {folder}; expected a folder of images (or one with images/)")
    return files


def _tiles(folder: Path, limit: int = 64) -> list[np.ndarray]:
    """256 x 256 crops of dark-background (fluorescence) images, as uint8 grey."""
    import cv2

    from .data import image_kind
    from .imageio import read_image_raw, to_grey

    tiles: list[np.ndarray] = []
    for path in _image_files(folder):
        raw = read_image_raw(path)
        if image_kind(raw) != "fluorescence" or min(raw.shape[:2]) < 256:
            continue
        grey = to_grey(raw)
        grey = cv2.normalize(grey, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
        for y in range(0, grey.shape[0] - 255, 256):
            for x in range(0, grey.shape[1] - 255, 256):
                tiles.append(np.ascontiguousarray(grey[y:y + 256, x:x + 256]))
        if len(tiles) >= limit:
            break
    if not tiles:
        raise InputError(f"no fluorescence image of at least 256 x 256 px in {folder}")
    return tiles


def mosaics(folder: Path, size: int, count: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` size x size uint8 frames, each a seeded mosaic of real 256 x 256 crops."""
    tiles = _tiles(folder)
    rng = np.random.default_rng(seed + size)
    n = -(-size // 256)
    frames = []
    for _ in range(count):
        pick = rng.integers(0, len(tiles), n * n)
        rows = [np.hstack([tiles[k] for k in pick[r * n:(r + 1) * n]]) for r in range(n)]
        frames.append(np.ascontiguousarray(np.vstack(rows)[:size, :size]))
    return frames


# -- the naive baseline -------------------------------------------------------------------------

def naive_label(probs: np.ndarray, cfg: Any) -> np.ndarray:
    """The scikit-image reference: cv2 seeds + ``watershed(-body, seeds, mask=fg)``."""
    import cv2
    from skimage.segmentation import watershed

    fg = probs[0] < 1.0 - cfg.fg_threshold
    seeds = ((probs[1] > cfg.seed_threshold) & fg).astype(np.uint8)
    _, markers = cv2.connectedComponents(seeds, connectivity=8)
    return watershed(-probs[1], markers, mask=fg)


class NaiveRunner:
    """PyTorch eager FP32 (as trained: no folding, NCHW) + scikit-image watershed, one thread."""

    def __init__(self, model: str, device: str) -> None:
        import torch

        from .checkpoint import load_checkpoint
        from .modelinfo import ModelInfo

        ckpt = load_checkpoint(model)
        self.info = ModelInfo.from_checkpoint(ckpt)
        self.torch, self.device = torch, device
        self.net = ckpt.build_model().to(device).eval()

    def run(self, frames: list[np.ndarray]) -> dict[str, float]:
        """Segment ``frames`` as one batch; per-frame stage ms."""
        from .data import normalize
        from .tiling import pad_to_multiple

        torch = self.torch
        t0 = time.perf_counter()
        norms = [normalize(f.astype(np.float32), self.info.norm)[0] for f in frames]
        batch = np.stack([pad_to_multiple(n, self.info.multiple) for n in norms])[:, None]
        t1 = time.perf_counter()
        with torch.no_grad():
            x = torch.from_numpy(batch).to(self.device)
            t2 = time.perf_counter()
            probs = torch.softmax(self.net(x), dim=1)
            if self.device == "cuda":
                torch.cuda.synchronize()
            t3 = time.perf_counter()
            out = probs.cpu().numpy()
        t4 = time.perf_counter()
        h, w = frames[0].shape[:2]
        for p in out:
            naive_label(np.ascontiguousarray(p[:, :h, :w]), self.info.postprocess)
        t5 = time.perf_counter()
        n = len(frames)
        return {"preprocess": (t1 - t0) * 1e3 / n, "copy": ((t2 - t1) + (t4 - t3)) * 1e3 / n,
                "infer": (t3 - t2) * 1e3 / n, "postprocess": (t5 - t4) * 1e3 / n}


# -- candidates ---------------------------------------------------------------------------------

def _cuda_here() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def candidates(cfg: BenchConfig, workdir: Path, say: Callable[[str], None]) -> tuple[list[Candidate], list[str]]:
    """The configurations to time here (models converted into ``workdir``), and the skipped ones."""
    from .converters import convert

    cuda = cfg.device in ("auto", "cuda") and _cuda_here()
    devices = (["cpu"] if cfg.device in ("auto", "cpu") else []) + (["cuda"] if cuda else [])
    if cfg.device == "cuda" and not cuda:
        raise InputError("bench --device cuda: this PyTorch sees no CUDA GPU; use --device cpu or auto")
    wanted = lambda name: not cfg.only or name in cfg.only  # noqa: E731
    skipped: list[str] = []
    out: list[Candidate] = []
    for dev in devices:
        if wanted("naive"):
            out.append(Candidate("naive", "fp32", dev))
        for prec in (("fp32", "fp16") if dev == "cuda" else ("fp32",)):
            if wanted(f"torch/{prec}"):
                out.append(Candidate("torch", prec, dev))
    ort = importlib.util.find_spec("onnxruntime") is not None
    onnx_needed = [p for p in ("fp32", "fp16", "int8") if wanted(f"onnxruntime/{p}")]
    trt = importlib.util.find_spec("tensorrt") is not None and cuda
    trt_needed = [p for p in ("fp32", "fp16", "int8") if trt and wanted(f"tensorrt/{p}")]
    if not ort and onnx_needed:
        skipped.append("onnxruntime (not installed)")
    if not trt:
        skipped.append("tensorrt (not installed or no CUDA GPU)")
    calib = cfg.calib_data or cfg.data or str(_demo())
    for prec in onnx_needed if ort else []:
        path = workdir / f"model.{prec}.onnx"
        if not path.is_file():
            say(f"converting {cfg.model} to {path.name}")
            convert(cfg.model, path, precision=prec, parity=False, calib_images=8,
                    calib_data=calib if prec == "int8" else None)
        import onnxruntime

        ort_devs = ["cpu"] + (["cuda"] if cuda and "CUDAExecutionProvider" in onnxruntime.get_available_providers()
                              else [])
        for dev in ort_devs:
            if dev in devices:
                out.append(Candidate("onnxruntime", prec, dev, segmenter=str(path)))
    for prec in trt_needed:
        path = workdir / f"model.{prec}.engine"
        if not path.is_file():
            say(f"building {path.name}")
            convert(cfg.model, path, precision=prec, parity=False, calib_images=8,
                    calib_data=calib if prec == "int8" else None)
        out.append(Candidate("tensorrt", prec, "cuda", segmenter=str(path)))
    return out, skipped


def _demo() -> Path:
    from ._resources import demo_dir

    return demo_dir()


def _open(c: Candidate, cfg: BenchConfig, tile: int, batch: int) -> Any:
    from .segmenter import Segmenter

    if c.backend == "naive":
        return NaiveRunner(cfg.model, c.device)
    model = cfg.model if c.backend == "torch" else c.segmenter
    opts = {"precision": c.precision} if c.backend == "torch" and c.precision != "fp32" else {}
    return Segmenter(model, backend=c.backend, device=c.device, diameter=None, tile=tile,
                     batch_size=batch, backend_options=opts)


# -- timing -------------------------------------------------------------------------------------

Sample = tuple[list[dict], float, list[float], Any]  # stage times, wall ms, latencies, stream policy


def _time_serial(seg: Any, frames: list[np.ndarray], batch: int) -> Sample:
    stages, lat = [], []
    t_all = time.perf_counter()
    for k in range(0, len(frames), batch):
        chunk = frames[k:k + batch]
        t0 = time.perf_counter()
        if isinstance(seg, NaiveRunner):
            st = seg.run(chunk)
            stages.extend([st] * len(chunk))
        elif batch == 1:
            stages.append(seg.segment(chunk[0]).timings)
        else:
            stages.extend(r.timings for r in seg.segment_batch(chunk))
        lat.extend([(time.perf_counter() - t0) * 1e3] * len(chunk))
    return stages, (time.perf_counter() - t_all) * 1e3, lat, None


def _time_stream(seg: Any, frames: list[np.ndarray], batch: int, layout: str = "auto") -> Sample:
    t0 = time.perf_counter()
    with seg.stream(frames, batch=batch, layout=layout) as s:
        stages = [r.timings for r in s]
        lat = list(s.latencies_ms)
    return stages, (time.perf_counter() - t0) * 1e3, lat, s.policy


def _row(c: Candidate, mode: str, size: int, batch: int, samples: list[Sample]) -> dict[str, Any]:
    stages = [t for s, _, _, _ in samples for t in s]
    frames = len(stages)
    wall = sum(w for _, w, _, _ in samples)
    mean = lambda key: float(np.mean([t.get(key, 0.0) for t in stages]))  # noqa: E731
    lat = [v for _, _, ls, _ in samples for v in ls]
    policy = samples[-1][3] if samples else None
    return {"backend": c.backend, "precision": c.precision, "device": c.device, "mode": mode, "size": size,
            "batch": batch, "pre_ms": mean("preprocess"), "copy_ms": mean("copy"),
            "infer_ms": mean("infer"),
            "post_ms": mean("postprocess"), "total_ms": wall / frames, "p99_ms": percentile(lat, 99),
            "fps": 1e3 * frames / wall, "speedup_vs_naive": None,
            "policy": None if policy is None else str(policy)}


def _speedups(rows: list[dict]) -> None:
    naive = {(r["device"], r["size"], r["batch"]): r["total_ms"] for r in rows if r["backend"] == "naive"}
    for r in rows:
        base = naive.get((r["device"], r["size"], r["batch"])) or naive.get(("cpu", r["size"], r["batch"]))
        r["speedup_vs_naive"] = base / r["total_ms"] if base else None


def postprocess_vs_skimage(probs: list[np.ndarray], cfg: Any, rounds: int) -> dict[str, Any]:
    """``label_instances`` against the scikit-image reference on the same probabilities,
    interleaved, median ms per frame."""
    from .postprocess import label_instances

    ours, ref, ours_cpu, ref_cpu = [], [], [], []
    for _ in range(rounds):
        for p in probs:
            t0, c0 = time.perf_counter(), time.process_time()
            label_instances(p, cfg)
            t1, c1 = time.perf_counter(), time.process_time()
            naive_label(p, cfg)
            t2, c2 = time.perf_counter(), time.process_time()
            ours.append((t1 - t0) * 1e3)
            ref.append((t2 - t1) * 1e3)
            ours_cpu.append((c1 - c0) * 1e3)
            ref_cpu.append((c2 - c1) * 1e3)
    e, s = float(np.median(ours)), float(np.median(ref))
    ec, sc = float(np.median(ours_cpu)), float(np.median(ref_cpu))
    return {"size": int(probs[0].shape[1]), "frames": len(probs), "timings": len(ours),
            "label_instances_ms": e, "skimage_reference_ms": s, "speedup": s / e,
            # CPU time of the process (all its threads): robust to other processes' load
            "label_instances_cpu_ms": ec, "skimage_reference_cpu_ms": sc,
            "speedup_cpu": sc / ec if ec > 0 else None,
            "reference": "cv2.connectedComponents seeds + skimage.segmentation.watershed(-body, seeds, mask=fg)"}


def _postprocess_row(cfg: BenchConfig, data: Path, tile: int) -> dict[str, Any]:
    """label_instances vs the scikit-image reference on the network's probabilities of real
    mosaics at ``postprocess_size`` (torch fp32 on the CPU makes them)."""
    from .segmenter import Segmenter

    seg = Segmenter(cfg.model, backend="torch", device="cpu", diameter=None, tile=max(tile, -(-cfg.postprocess_size // 16) * 16))
    frames = mosaics(data, cfg.postprocess_size, 3, seed=1)
    probs = [seg.segment(f, probabilities=True).probabilities for f in frames]
    seg.close()
    return postprocess_vs_skimage(probs, seg.postprocess, max(cfg.rounds, 3) * 2)


def run_bench(cfg: BenchConfig, say: Callable[[str], None] = log.info) -> dict[str, Any]:
    """Run the benchmark; the JSON-ready result (machine, versions, model, rows, postprocess)."""
    import tempfile

    from .benchreport import MEMORY_FRACTION, available_memory, block_memory, machine, model_facts, versions

    if not cfg.sizes or any(s < 32 for s in cfg.sizes) or not cfg.batches or min(cfg.batches) < 1:
        raise InputError(f"sizes must be >= 32 px and batches >= 1, got {cfg.sizes} / {cfg.batches}")
    if cfg.postprocess_size and cfg.postprocess_size < 32:
        raise InputError(f"the post-processing size must be >= 32 px (0: skip), got {cfg.postprocess_size}")
    if cfg.rounds < 1 or cfg.frames < 1:
        raise InputError(f"rounds and frames must be >= 1, got {cfg.rounds} / {cfg.frames}")
    bad = [m for m in cfg.modes if m not in ("serial", "stream")]
    if bad:
        raise InputError(f"modes must be serial and/or stream, got {bad}")
    if Path(str(cfg.model)).suffix.lower() in (".onnx", ".engine"):
        raise InputError(f"bench times the naive baseline and converts the model itself, so it needs the "
                         f"checkpoint: got {cfg.model}; pass --model default or a .pt checkpoint")
    if cfg.allocator not in ("default", "tuned"):
        raise InputError(f"allocator must be 'default' or 'tuned', got {cfg.allocator!r}")
    from .allocator import allocator_tuning, tune_allocator

    if cfg.allocator == "tuned":
        tune_allocator()
    data = Path(cfg.data) if cfg.data else _demo()
    info = machine()
    tuned = allocator_tuning()  # "default" in a process that tuned it before is tuned all the same
    info["allocator"] = tuned.detail if tuned is not None and tuned.applied else "default (not tuned)"
    with tempfile.TemporaryDirectory(prefix="edgeseg-bench-") as tmp:
        workdir = Path(cfg.workdir) if cfg.workdir else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        cands, skipped = candidates(cfg, workdir, say)
        if not cands:
            raise InputError(f"nothing to run: --only {list(cfg.only)} names no configuration available here")
        rows: list[dict] = []
        post: dict[str, Any] | None = None
        tile = -(-max(max(cfg.sizes), 1024) // 16) * 16  # no tiling: the naive baseline has none
        for size in cfg.sizes:
            for batch in cfg.batches:
                need, avail = block_memory(cands, size, batch), available_memory()
                if avail is not None and need > MEMORY_FRACTION * avail:  # not an OOM kill
                    msg = (f"size {size}, batch {batch}: needs about {need / 2**30:.1f} GiB with "
                           f"{len(cands)} configurations open, {avail / 2**30:.1f} GiB available; "
                           "time fewer at once (--only) or a smaller --batch")
                    skipped.append(msg)
                    say(f"skipped: {msg}")
                    continue
                n = max(cfg.frames, batch) // batch * batch
                frames = mosaics(data, size, n)
                timed = [(c, m) for c in cands for m in (("serial",) if c.backend == "naive" else cfg.modes)]
                segs = {c.name + c.device: _open(c, cfg, tile, batch) for c in cands}
                samples: dict[tuple, list] = {(c.name, c.device, m): [] for c, m in timed}
                for c, m in timed:  # warm-up: first calls allocate and pick kernels per shape
                    fn = _time_stream if m == "stream" else _time_serial
                    fn(segs[c.name + c.device], frames[:batch], batch)
                for r in range(cfg.rounds):
                    say(f"size {size}, batch {batch}: round {r + 1} of {cfg.rounds}")
                    for c, m in timed:
                        fn = _time_stream if m == "stream" else _time_serial
                        samples[(c.name, c.device, m)].append(fn(segs[c.name + c.device], frames, batch))
                block = [_row(c, m, size, batch, samples[(c.name, c.device, m)]) for c, m in timed]
                _speedups(block)
                rows.extend(block)
                say(f"size {size}, batch {batch}: done")
                for s in segs.values():
                    if hasattr(s, "close"):
                        s.close()
        if cfg.postprocess_size:
            say(f"label_instances vs scikit-image at {cfg.postprocess_size}^2")
            post = _postprocess_row(cfg, data, tile)
        info["loadavg_end"] = machine()["loadavg_start"]
        info["load_note"] = ("shared machine: the load average (1, 5, 15 min) at start and end; "
                             "configurations were timed interleaved, in rounds")
        result = {"machine": info, "versions": versions(),
                  "model": model_facts(cfg.model, [c.name for c in cands]),
                  "rows": rows, "postprocess": post, "skipped": skipped,
                  "config": {"sizes": list(cfg.sizes), "batches": list(cfg.batches), "rounds": cfg.rounds,
                             "frames_per_round": cfg.frames, "data": str(data), "tile": tile,
                             "diameter": None}}
    return result

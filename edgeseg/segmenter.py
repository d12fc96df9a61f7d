"""``Segmenter``: one call from a camera frame to nuclei, the same on every backend.

    import edgeseg
    seg = edgeseg.Segmenter("default")                 # or "model.onnx", "model.int8.engine"
    result = seg.segment(frame)                        # H x W or H x W x C; uint8/uint16/float32
    result.labels                                      # H x W int32, 0 = background
    result.instances.rows()                            # id, area, bbox, centroid, score, intensity

Preprocessing (percentile normalisation, bright-background inversion), classes and default
thresholds come from the model artifact, identical to training. Frames larger than ``tile`` go
through the network as overlapping tiles in batches, blended before post-processing.

Thread safety: one Segmenter may be shared by several threads. Pre- and post-processing run
concurrently; each backend makes its ``infer`` safe (the torch backend serialises it, ONNX Runtime
and TensorRT contexts are used under a lock or are thread-safe). Results never share buffers.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Sequence, Union

import numpy as np

from .allocator import hint_allocator
from .backends import open_backend
from .data import NormInfo, normalize, to_grey
from .errors import InputError
from .modelinfo import ModelInfo
from .postprocess import InstanceTable, PostprocessConfig, instance_table, label_instances
from .sizing import (SizeEstimate, check_diameter, estimate_diameter, estimate_window, resize_image,
                     resize_probabilities, scaled_postprocess, zoom_for)
from .tta import average_dihedral
from .tiling import pad_to_multiple, run_tiled, tile_grid
from .units import PixelSize, as_pixel_size, is_length, parse_length_um

__all__ = ["Segmenter", "Result"]

log = logging.getLogger(__name__)

PathLike = Union[str, Path]
_DTYPES = (np.uint8, np.uint16, np.float32)


@dataclass(frozen=True)
class Result:
    """What :meth:`Segmenter.segment` returns for one image.

    Attributes:
        labels: H x W int32 instance labels (0 = background, 1..N).
        instances: per-instance table (id, area, bbox, centroid, score, intensity).
        probabilities: 3 x H x W float32 class probabilities, when asked for, else None.
        timings: milliseconds per stage: preprocess, infer, postprocess, total.
        norm: the normalisation applied (percentiles, whether the image was inverted).
        tiles: number of network tiles (1 when the frame went through whole).
        zoom: the zoom the frame went through the network at (size control; 1.0 = as it is).
        diameter: the nucleus diameter (px) size control used: given, calibrated or estimated.
        pixel_size: the pixel size (µm) the frame was segmented with, when known.
    """

    labels: np.ndarray
    instances: InstanceTable
    probabilities: np.ndarray | None = None
    timings: dict[str, float] = field(default_factory=dict)
    norm: NormInfo | None = None
    tiles: int = 1
    zoom: float = 1.0
    diameter: float | None = None
    pixel_size: PixelSize | None = None

    @property
    def count(self) -> int:
        return len(self.instances)


def check_image(image: Any) -> np.ndarray:
    """Validate a frame: H x W or H x W x C (C in 1, 3, 4), uint8/uint16/float32/bool, non-empty."""
    if not isinstance(image, np.ndarray):
        raise InputError(f"image must be a numpy array (H x W or H x W x C), got {type(image).__name__}; "
                         "convert with np.asarray(image)")
    if image.dtype not in _DTYPES and image.dtype != np.bool_:  # bool: 0/1, as to_grey documents
        hint = " (use image.astype(np.float32))" if image.dtype.kind in "fiu" else ""
        raise InputError(f"image dtype must be uint8, uint16, float32 or bool, got {image.dtype}{hint}")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        raise InputError(f"image must be H x W (grey) or H x W x C with C in 1, 3, 4 (RGB/RGBA), got "
                         f"shape {image.shape}; for channels-first arrays use np.moveaxis(image, 0, -1), "
                         "for a stack or batch pass one 2-D frame at a time (or use segment_batch)")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise InputError(f"image is empty (shape {image.shape}); expected at least 1 x 1 pixels")
    return image


class Segmenter:
    """Real-time nuclei instance segmentation with a trained edgeseg model.

    Args:
        model: ``"default"`` (the bundled model), a ``.pt`` checkpoint, an ``.onnx`` model or a
            TensorRT ``.engine``.
        backend: ``"torch"`` | ``"onnxruntime"`` | ``"tensorrt"``; None: follows from ``model``.
        device: ``"auto"`` | ``"cpu"`` | ``"cuda"``. An unavailable device raises: it is never
            silently replaced by another.
        tile: frames with a side longer than this go through the network as overlapping tiles
            of ``tile`` x ``tile`` px (a multiple of the model's multiple, usually 16). Default
            1024, or the largest side a TensorRT engine's optimisation profile allows.
        overlap: overlap of neighbouring tiles in px (default 128, a quarter of smaller tiles).
        batch_size: tiles per network call (default 4, or the engine profile's largest batch).
        backend_options: passed to the backend (e.g. ``precision="fp16"`` for torch on CUDA,
            ``providers=[...]`` or ``threads=N`` for ONNX Runtime).
        diameter: size control (:mod:`edgeseg.sizing`): "auto" (default: estimated per frame by
            consensus across zooms, ~1.3x the network time; :meth:`calibrate_size` estimates it
            once for a stream instead), a nucleus diameter in px (frames are rescaled so nuclei
            match the model's training diameter, labels come back at the frame's size), or None
            (frames as they are: the fastest, for nuclei of the training size). "auto" is the
            default because it wins on the held-out groups and on rescaled copies of them.
            A diameter in µm (``"7um"``, ``"7 µm"``) needs the pixel size: ``pixel_size`` here or
            per frame (``segment(frame, pixel_size=...)``); it becomes px for each frame.
        pixel_size: µm per pixel of the frames (a number, a ``(y, x)`` pair or a
            :class:`~edgeseg.units.PixelSize`), used for diameters in µm and kept in
            ``Result.pixel_size``; ``segment(frame, pixel_size=...)`` overrides it per frame.
        tta: test-time augmentation: average the probabilities of the 8 flips / 90-degree
            rotations (8x the network time; for offline analysis, not live use).
        precision: "auto": time and score the precisions this backend and device can run
            (:mod:`edgeseg.autoprecision`) and use the fastest whose DSB score on labelled
            images stays within ``max_drop`` of fp32's; the decision is ``precision_decision``.
            None (default): the model's own precision.
        max_drop, calib_data: for ``precision="auto"``: the allowed DSB drop (default 0.01), and
            calibration images for the int8 candidate of an fp32 ONNX model.
        **thresholds: overrides of the model's post-processing thresholds
            (``seed_threshold``, ``fg_threshold``, ``min_size``, ``fill_holes``, ``max_grow``,
            ``min_confidence``, ``border_weight``).
    """

    def __init__(
        self,
        model: PathLike = "default",
        backend: str | None = None,
        device: str = "auto",
        *,
        tile: int | None = None,
        overlap: int | None = None,
        batch_size: int | None = None,
        backend_options: dict[str, Any] | None = None,
        diameter: float | str | None = "auto",
        tta: bool = False,
        pixel_size: Any = None,
        precision: str | None = None,
        max_drop: float = 0.01,
        calib_data: Any = None,
        **thresholds: Any,
    ) -> None:
        self.pixel_size: PixelSize | None = as_pixel_size(pixel_size)
        self.diameter_um: float | None = None
        if is_length(diameter):  # "7um": px follow from the pixel size of each frame
            self.diameter_um = parse_length_um(diameter, "diameter")
            diameter = f"{self.diameter_um:g}um"
        else:
            diameter = check_diameter(diameter)
        if not isinstance(tta, bool):
            raise InputError(f"tta must be True or False, got {tta!r}")
        self.precision_decision = None  # what precision="auto" chose and why (edgeseg.autoprecision)
        if precision == "auto":
            from .autoprecision import open_auto

            self._backend, self.precision_decision = open_auto(model, backend, device, backend_options,
                                                               max_drop, calib_data)
        elif precision is None:
            self._backend = open_backend(model, backend, device, **(backend_options or {}))
        else:
            raise InputError(f"precision must be 'auto' or None (the model's own), got {precision!r}; "
                             "a fixed precision comes from the model file (edgeseg convert --precision) "
                             "or, for the torch backend, backend_options={'precision': 'fp16'}")
        hint_allocator(self._backend)  # torch on the CPU with malloc untuned: logged once
        info = self._backend.info
        # A TensorRT engine only takes shapes inside its optimisation profile (min, opt, max).
        profile = getattr(self._backend, "profile", None)
        max_n, max_side, self._min_side = 4, 1024, 0
        if profile is not None:
            (_, _, min_h, min_w), _, (pn, _, ph, pw) = (tuple(s) for s in profile)
            max_n, max_side, self._min_side = pn, min(ph, pw), max(min_h, min_w)
        if tile is None:
            tile = max_side // info.multiple * info.multiple
        if batch_size is None:
            batch_size = max_n
        if overlap is None:
            overlap = min(128, tile // 4)
        if profile is not None and (tile > max_side or batch_size > max_n):
            raise InputError(f"tile={tile} / batch_size={batch_size} do not fit the engine's optimisation "
                             f"profile (max {max_n} x {max_side} x {max_side}); pass smaller values or "
                             "rebuild the engine with a larger --max-shape")
        if tile % info.multiple or tile <= 2 * overlap:
            raise InputError(f"tile={tile} must be a multiple of {info.multiple} and larger than "
                             f"2 * overlap={2 * overlap}")
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        self.tile, self.overlap, self.batch_size = tile, overlap, batch_size
        self.postprocess: PostprocessConfig = info.postprocess.with_overrides(**thresholds)
        self.model = str(model)
        self.diameter: float | str | None = diameter
        self.tta = tta
        self.last_size: SizeEstimate | None = None  # the latest "auto" estimate

    # -- properties ---------------------------------------------------------------------------
    @property
    def info(self) -> ModelInfo:
        return self._backend.info

    @property
    def backend(self) -> str:
        return self._backend.name

    @property
    def device(self) -> str:
        return self._backend.device

    @property
    def precision(self) -> str:
        return self._backend.precision

    def __repr__(self) -> str:
        return (f"Segmenter(model={self.model!r}, backend={self.backend!r}, device={self.device!r}, "
                f"precision={self.precision!r}, tile={self.tile})")

    # -- inference ----------------------------------------------------------------------------
    def _preprocess(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, NormInfo]:
        image = check_image(image)
        grey = to_grey(image)
        # colour is only kept where the model's preprocessing uses it (NormConfig.colour)
        norm, ninfo = normalize(grey if self.info.norm.colour == "grey" else image,
                                self.info.norm)
        return grey, norm, ninfo

    def _probabilities(self, norm: np.ndarray) -> tuple[np.ndarray, int]:
        if not self.tta:
            return self._network(norm)
        return average_dihedral(norm, self._network)

    def _network(self, norm: np.ndarray) -> tuple[np.ndarray, int]:
        h, w = norm.shape
        m = self.info.multiple
        if max(h, w) <= self.tile:
            padded = pad_to_multiple(norm, m, min_size=self._min_side)
            probs = self._backend.infer(padded[None, None])[0]
            return np.ascontiguousarray(probs[:, :h, :w]), 1
        probs = run_tiled(norm, self._backend.infer, classes=len(self.info.classes), multiple=m,
                          tile=self.tile, overlap=self.overlap, batch_size=self.batch_size,
                          min_size=self._min_side)
        return probs, len(tile_grid(h, w, multiple=m, tile=self.tile, overlap=self.overlap,
                                    min_size=self._min_side))

    def _finish(self, grey: np.ndarray, probs: np.ndarray, ninfo: NormInfo, tiles: int,
                t: dict[str, float], keep_probs: bool) -> Result:
        t0 = time.perf_counter()
        labels = label_instances(probs, self.postprocess)
        table = instance_table(labels, probs, grey)
        t["postprocess"] = (time.perf_counter() - t0) * 1e3
        t["total"] = t.get("preprocess", 0.0) + t.get("infer", 0.0) + t["postprocess"]
        return Result(labels=labels, instances=table, probabilities=probs if keep_probs else None,
                      timings=t, norm=ninfo, tiles=tiles)

    def _size(self, pixel_size: PixelSize | None) -> float | str | None:
        """The diameter for a frame: in px ("auto", None) -- µm converted with its pixel size."""
        if self.diameter_um is None:
            return self.diameter
        if pixel_size is None:
            raise InputError(f"diameter={self.diameter!r} is in µm, but the pixel size of the frame "
                             "is unknown; pass pixel_size=<µm per pixel> (Segmenter or segment(); "
                             "edgeseg predict --pixel-size) or give the diameter in px.")
        return self.diameter_um / pixel_size.length

    def segment(self, image: np.ndarray, *, probabilities: bool = False,
                pixel_size: Any = None) -> Result:
        """Segment one frame (H x W or H x W x C; uint8, uint16, float32, or bool as 0/1).
        ``pixel_size``: µm per pixel of this frame (default: the Segmenter's ``pixel_size``)."""
        px = as_pixel_size(pixel_size) or self.pixel_size
        result = self._segment(image, probabilities, px)
        return result if px is None else replace(result, pixel_size=px)

    def _segment(self, image: np.ndarray, probabilities: bool, px: PixelSize | None) -> Result:
        size = self._size(px)
        image = check_image(image)  # once: every path below takes the checked frame
        if size is not None:
            return self._segment_sized(image, probabilities, size)
        if (getattr(self._backend, "device_postprocess", False) and not probabilities and not self.tta
                and max(image.shape[:2]) <= self.tile):
            from .devicepath import segment_on_device  # torch backend: pre/post on its device

            return segment_on_device(self, image)
        t: dict[str, float] = {}
        t0 = time.perf_counter()
        grey, norm, ninfo = self._preprocess(image)
        if image.ndim == 2:  # the intensity column reads the grey frame itself (same values):
            grey = image     # no float32 copy held through inference, 4 bytes per pixel less
        t1 = time.perf_counter()
        probs, tiles = self._probabilities(norm)
        del norm  # post-processing does not need it: 4 bytes per pixel less at the peak
        t2 = time.perf_counter()
        t["preprocess"], t["infer"] = (t1 - t0) * 1e3, (t2 - t1) * 1e3
        return self._finish(grey, probs, ninfo, tiles, t, probabilities)

    # -- size control -------------------------------------------------------------------------
    def _zoomed(self, image: np.ndarray, zoom: float) -> tuple[np.ndarray, NormInfo, int, dict]:
        """Probabilities (at the zoomed size) of the frame zoomed by ``zoom``."""
        t0 = time.perf_counter()
        small = image if zoom == 1.0 else resize_image(image, zoom)
        _, norm, ninfo = self._preprocess(small)
        t1 = time.perf_counter()
        probs, tiles = self._probabilities(norm)
        t2 = time.perf_counter()
        return probs, ninfo, tiles, {"preprocess": (t1 - t0) * 1e3, "infer": (t2 - t1) * 1e3}

    def estimate_size(self, image: np.ndarray) -> SizeEstimate:
        """The nucleus diameter of one frame by consensus across zooms (:mod:`edgeseg.sizing`)."""
        image = check_image(image)
        return self._estimate(image, {})[0]

    def _estimate(self, image: np.ndarray, cache: dict) -> tuple[SizeEstimate, dict]:
        # The estimate reads every instance the network proposes: which of them the confidence
        # filter keeps is a separate choice, and the estimate's rules were set on unfiltered
        # instances (dropping touching-zone slivers raised the median size, so frames were shrunk
        # further: held-out groups 0.5482 -> 0.5447 with border_weight 0.75)
        pp = self.postprocess.with_overrides(min_confidence=0.0)

        def labels_at(zoom: float) -> np.ndarray:
            view = estimate_window(image, zoom)
            out = self._zoomed(view, zoom)
            if view is image:
                cache[zoom] = out  # the whole frame: the final pass may reuse it
            return label_instances(out[0], pp)
        return estimate_diameter(labels_at, self.info.diameter), cache

    def calibrate_size(self, frames: Iterable[np.ndarray]) -> float:
        """Estimate the nucleus diameter once from a few frames (median of the per-frame
        estimates) and keep it: later frames are rescaled without paying for an estimate.
        Returns the diameter in px; raises InputError when no frame shows enough nuclei."""
        found = [e.diameter for e in (self.estimate_size(f) for f in frames)
                 if e.diameter is not None]
        if not found:
            raise InputError("calibrate_size: no frame showed enough nuclei to estimate their "
                             "size; pass frames with nuclei, or set diameter=<px> yourself.")
        self.diameter, self.diameter_um = float(np.median(found)), None
        log.info("calibrated nucleus diameter: %.1f px from %d frames", self.diameter, len(found))
        return self.diameter

    def _segment_sized(self, image: np.ndarray, keep_probs: bool, size: float | str) -> Result:
        t0 = time.perf_counter()
        cache: dict = {}
        if size == "auto":
            est, cache = self._estimate(image, cache)
            self.last_size = est
            size = est.diameter
        zoom = 1.0 if size is None else zoom_for(self.info.diameter, float(size))
        probs, ninfo, tiles, t = cache.get(zoom) or self._zoomed(image, zoom)
        h, w = image.shape[:2]
        if zoom != 1.0:
            probs = resize_probabilities(probs, (h, w))
        t["preprocess"] = t["preprocess"] + ((time.perf_counter() - t0) * 1e3
                                             - t["preprocess"] - t["infer"])  # estimate: pre
        grey = to_grey(image)
        t1 = time.perf_counter()
        pp = scaled_postprocess(self.postprocess, zoom)
        labels = label_instances(probs, pp)
        table = instance_table(labels, probs, grey)
        t["postprocess"] = (time.perf_counter() - t1) * 1e3
        t["total"] = t["preprocess"] + t["infer"] + t["postprocess"]
        return Result(labels=labels, instances=table, probabilities=probs if keep_probs else None,
                      timings=t, norm=ninfo, tiles=tiles, zoom=zoom,
                      diameter=None if size is None else float(size))

    def segment_batch(self, images: Iterable[np.ndarray], *, probabilities: bool = False) -> list[Result]:
        """Segment several frames; frames of one padded size share network calls."""
        images = list(images)
        if self.diameter is not None or self.tta:  # per-frame sizes: one frame at a time
            return [self.segment(im, probabilities=probabilities) for im in images]
        t0 = time.perf_counter()
        prepared = [self._preprocess(im) for im in images]
        pre = (time.perf_counter() - t0) * 1e3 / max(len(images), 1)
        results: list[Result | None] = [None] * len(images)
        m = self.info.multiple
        groups: dict[tuple[int, int], list[int]] = {}
        for i, (_, norm, _) in enumerate(prepared):
            h, w = norm.shape
            if max(h, w) <= self.tile:
                key = tuple(max(-(-d // m) * m, self._min_side) for d in (h, w))
                groups.setdefault(key, []).append(i)
            else:
                grey, norm, ninfo = prepared[i]
                t0 = time.perf_counter()
                probs, tiles = self._probabilities(norm)
                t = {"preprocess": pre, "infer": (time.perf_counter() - t0) * 1e3}
                results[i] = self._finish(grey, probs, ninfo, tiles, t, probabilities)
        for members in groups.values():
            for k in range(0, len(members), self.batch_size):
                chunk = members[k:k + self.batch_size]
                batch = np.stack([pad_to_multiple(prepared[i][1], m, self._min_side) for i in chunk])[:, None]
                t0 = time.perf_counter()
                out = self._backend.infer(batch)
                per = (time.perf_counter() - t0) * 1e3 / len(chunk)
                for i, p in zip(chunk, out):
                    grey, norm, ninfo = prepared[i]
                    h, w = norm.shape
                    probs = np.ascontiguousarray(p[:, :h, :w])
                    t = {"preprocess": pre, "infer": per}
                    results[i] = self._finish(grey, probs, ninfo, 1, t, probabilities)
        return [r for r in results if r is not None]

    def stream(self, frames: Iterable[Any], *, batch: int = 1, queue_size: int = 2,
               probabilities: bool = False, keep_errors: bool = False, with_frames: bool = False,
               layout: str = "auto") -> Any:
        """Segment a stream of frames with read/preprocess, inference and post-processing
        overlapped on threads (:mod:`edgeseg.stream`; ``layout``: how, see
        :mod:`edgeseg.streampolicy`, "auto" decides from the backend): Results in the frames' order, the
        same as :meth:`segment` gives, plus ``timings["latency"]``. ``frames``: arrays, or
        callables returning one (read in the pipeline). Returns a :class:`~edgeseg.stream.FrameStream`
        (an iterator; ``close()`` or a ``with`` block stops it; ``summary()``: fps, p50/p99)."""
        from .stream import FrameStream

        return FrameStream(self, frames, batch=batch, queue_size=queue_size, probabilities=probabilities,
                           keep_errors=keep_errors, with_frames=with_frames, layout=layout)

    def close(self) -> None:
        self._backend.close()

    def __enter__(self) -> "Segmenter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def segment_files(seg: Segmenter, paths: Sequence[PathLike], max_pixels: int | None = None,
                  pixel_size: Any = None) -> Iterable[tuple[Path, np.ndarray, Result]]:
    """Read and segment image files one by one (used by the CLI). ``max_pixels``: see
    :func:`edgeseg.imageio.read_image_raw` (None: its default, 0: no limit). The pixel size a
    file records (OME-TIFF, ImageJ TIFF) is used; ``pixel_size`` (µm) for files that record none
    (a file that records another one is logged as a warning and keeps its own)."""
    from .imageio import DEFAULT_MAX_PIXELS, read_image_meta

    fallback = as_pixel_size(pixel_size)
    for p in paths:
        raw, own = read_image_meta(p, DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels)
        if raw.dtype not in _DTYPES:
            raw = raw.astype(np.float32)
        yield Path(p), raw, seg.segment(raw, pixel_size=choose_pixel_size(p, own, fallback))


def choose_pixel_size(path: PathLike, own: PixelSize | None,
                      fallback: PixelSize | None) -> PixelSize | None:
    """The pixel size of a file: the one it records, else ``fallback`` (the user's, for files
    that record none); a file that records another one than ``fallback`` is logged and wins."""
    if own is not None and fallback is not None and not np.allclose(
            (own.x, own.y), (fallback.x, fallback.y), rtol=0.01):
        log.warning("%s records a pixel size of %s, used instead of the given %s (which is for "
                    "images that record none)", path, own, fallback)
    return own or fallback

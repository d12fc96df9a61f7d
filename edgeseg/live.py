"""Live segmentation of a frame stream: a camera, a video file, or synthetic frames.

A microscope camera delivers frames faster than a small device may segment them. ``LiveRunner``
therefore reads frames in a background thread that keeps only the newest one (``latest=True``):
the segmentation always works on the freshest frame and latency stays bounded, while the frame
count of dropped frames is reported. For files and tests, ``latest=False`` processes every frame.

    from edgeseg import Segmenter
    from edgeseg.live import LiveRunner, open_source

    with open_source("camera:0") as source:
        for frame in LiveRunner(Segmenter("model.int8.engine"), source).frames():
            print(frame.index, frame.result.count, f"{frame.fps:.1f} fps")
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np

from .errors import BackendUnavailableError, DataError, InputError

__all__ = ["open_source", "SyntheticSource", "VideoSource", "LiveRunner", "LiveFrame"]

log = logging.getLogger(__name__)


class SyntheticSource:
    """Fluorescence-like frames: bright nuclei drifting over a dark, noisy background (seeded)."""

    def __init__(self, size: tuple[int, int] = (256, 256), nuclei: int = 25, frames: int | None = None,
                 seed: int = 0, fps: float = 0.0) -> None:
        h, w = size
        if h < 16 or w < 16:
            raise InputError(f"synthetic frames need at least 16 x 16 px, got {size}")
        self.size, self.frames, self.fps = (h, w), frames, fps
        self._rng = np.random.default_rng(seed)
        self._pos = self._rng.uniform((0, 0), (h, w), (nuclei, 2))
        self._vel = self._rng.normal(0, 1.0, (nuclei, 2))
        self._radius = self._rng.uniform(4, 9, nuclei)
        self._count = 0
        self.name = f"synthetic {h}x{w}"

    def read(self) -> np.ndarray | None:
        if self.frames is not None and self._count >= self.frames:
            return None
        if self.fps:
            time.sleep(1.0 / self.fps)
        h, w = self.size
        self._pos = (self._pos + self._vel) % (h, w)
        img = np.zeros((h, w), np.float32)
        for (y, x), r in zip(self._pos, self._radius):
            cv2.ellipse(img, (int(x), int(y)), (int(r * 1.2), int(r)), float(self._count % 180), 0, 360,
                        float(self._rng.uniform(0.6, 1.0)), -1)
        img = cv2.GaussianBlur(img, (0, 0), 1.2) + self._rng.normal(0.08, 0.03, (h, w)).astype(np.float32)
        self._count += 1
        return (np.clip(img, 0, 1) * 255).astype(np.uint8)

    def close(self) -> None:
        pass

    def __enter__(self) -> "SyntheticSource":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class VideoSource:
    """Frames from OpenCV's VideoCapture: a camera index or a video file (returned as RGB)."""

    def __init__(self, target: int | str, frames: int | None = None) -> None:
        self.cap = cv2.VideoCapture(target)
        if not self.cap.isOpened():
            what = f"camera {target}" if isinstance(target, int) else f"video file {target}"
            raise DataError(f"could not open {what}; check that it exists and is not used by another "
                            "program (headless machines: use --source synthetic or a video file)")
        self.frames, self._count = frames, 0
        self.name = f"camera {target}" if isinstance(target, int) else Path(str(target)).name

    def read(self) -> np.ndarray | None:
        if self.frames is not None and self._count >= self.frames:
            return None
        ok, frame = self.cap.read()
        if not ok:
            return None
        self._count += 1
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if frame.ndim == 3 else frame

    def close(self) -> None:
        self.cap.release()

    def __enter__(self) -> "VideoSource":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def open_source(spec: str, frames: int | None = None, size: tuple[int, int] = (256, 256)) -> Any:
    """``"camera:0"``, ``"synthetic"``, or a video file path."""
    if spec == "synthetic":
        return SyntheticSource(size=size, frames=frames)
    if spec.startswith("camera:"):
        index = spec.split(":", 1)[1]
        if not index.isdigit():
            raise InputError(f"camera sources look like camera:0, got {spec!r}")
        return VideoSource(int(index), frames)
    if not Path(spec).is_file():
        raise DataError(f"video file not found: {spec}; expected camera:N, synthetic, or a video file")
    return VideoSource(spec, frames)


@dataclass(frozen=True)
class LiveFrame:
    """One segmented frame of a live stream."""

    index: int
    image: np.ndarray
    result: Any  # edgeseg.segmenter.Result
    fps: float  # frames segmented per second, smoothed
    dropped: int  # frames skipped so far to stay current


class LiveRunner:
    """Segment a frame source; with ``latest=True`` always the newest frame (real time)."""

    def __init__(self, segmenter: Any, source: Any, latest: bool = True) -> None:
        self.seg, self.source, self.latest = segmenter, source, latest
        self._frame: np.ndarray | None = None
        self._seq = 0
        self._done = False
        self._cond = threading.Condition()

    def _grab(self) -> None:
        while True:
            frame = self.source.read()
            with self._cond:
                if frame is None or self._done:
                    self._done = True
                    self._cond.notify_all()
                    return
                self._frame, self._seq = frame, self._seq + 1
                self._cond.notify_all()

    def frames(self) -> Iterator[LiveFrame]:
        """Yield segmented frames until the source ends (or the caller stops iterating)."""
        index, fps, t_prev = 0, 0.0, time.perf_counter()
        for frame, dropped in (self._newest() if self.latest else self._every()):
            result = self.seg.segment(frame)
            now = time.perf_counter()
            rate = 1.0 / max(now - t_prev, 1e-9)
            fps = 0.9 * fps + 0.1 * rate if index else rate  # smoothed frames/s
            t_prev = now
            yield LiveFrame(index, frame, result, fps, dropped)
            index += 1

    def _every(self) -> Iterator[tuple[np.ndarray, int]]:
        """Every frame of the source, in order: (frame, 0)."""
        while (frame := self.source.read()) is not None:
            yield frame, 0

    def _newest(self) -> Iterator[tuple[np.ndarray, int]]:
        """The newest frame each time one is asked for: (frame, frames dropped so far)."""
        grabber = threading.Thread(target=self._grab, name="edgeseg-live-grab", daemon=True)
        grabber.start()
        last_seq, dropped = 0, 0
        try:
            while True:
                with self._cond:
                    while self._seq == last_seq and not self._done:
                        self._cond.wait(timeout=1.0)
                    if self._seq == last_seq and self._done:
                        return
                    frame, seq = self._frame, self._seq
                dropped += seq - last_seq - 1
                last_seq = seq
                yield frame, dropped
        finally:
            with self._cond:
                self._done = True


def check_display() -> None:
    """Raise BackendUnavailableError when OpenCV cannot open a window here."""
    try:
        cv2.namedWindow("edgeseg live", cv2.WINDOW_NORMAL)
    except cv2.error:
        raise BackendUnavailableError(
            "this OpenCV build cannot open windows (opencv-python-headless, or no display); run with "
            "--no-display (and --record out.avi to keep the overlay video), or install opencv-python "
            "on a machine with a display") from None

"""Live segmentation of a frame stream: a camera, a video file, or synthetic frames.

A microscope camera delivers frames faster than a small device may segment them. ``LiveRunner``
therefore reads frames in a background thread that keeps only the newest one (``latest=True``):
the segmentation always works on the freshest frame and latency stays bounded, while the frame
count of dropped frames is reported. For files and tests, ``latest=False`` processes every frame.
A source's error ends ``frames()`` with that error (in either mode); a camera that stops delivering
is reopened a few times before that, and a video file shorter than its header says logs a warning.

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
from collections import deque
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
    """Frames from OpenCV's VideoCapture: a camera index or a video file (returned as RGB).

    A video file that ends before the frame count its header declares (a truncated or damaged
    file) logs a warning with both counts. A camera that stops delivering frames is reopened up
    to ``reconnect_tries`` times, waiting ``reconnect_delay`` seconds before the first try and
    twice as long before each next one (at most 5 s); then ``read`` raises :class:`DataError`.
    """

    def __init__(self, target: int | str, frames: int | None = None, reconnect_tries: int = 5,
                 reconnect_delay: float = 0.5) -> None:
        self.target, self.is_camera = target, isinstance(target, int)
        self.name = f"camera {target}" if self.is_camera else Path(str(target)).name
        self.frames, self._count, self._ended, self._closed = frames, 0, False, False
        self.reconnect_tries, self.reconnect_delay = reconnect_tries, reconnect_delay
        cap = self._open()
        if cap is None:
            what = f"camera {target}" if self.is_camera else f"video file {target}"
            raise DataError(f"could not open {what}; check that it exists and is not used by another "
                            "program (headless machines: use --source synthetic or a video file)")
        self.cap = cap
        declared = 0 if self.is_camera else int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.declared_frames: int | None = declared if declared > 0 else None  # the file header's count

    def _open(self) -> Any:
        cap = cv2.VideoCapture(self.target)
        if cap.isOpened():
            return cap
        cap.release()
        return None

    def _next(self) -> np.ndarray | None:
        try:
            ok, frame = self.cap.read()
        except cv2.error as exc:  # a backend failing mid-stream: treated like no frame
            log.debug("%s: read failed: %s", self.name, exc)
            return None
        return frame if ok and frame is not None else None

    def read(self) -> np.ndarray | None:
        if self._ended or self._closed or (self.frames is not None and self._count >= self.frames):
            return None
        frame = self._next()
        if frame is None and self.is_camera:
            frame = self._reconnect()
        if frame is None:  # end of the file
            self._ended = True
            if self.declared_frames is not None and self._count < self.declared_frames:
                log.warning("%s ended after %d frames, but its header declares %d: the file is "
                            "truncated or damaged; the frames after %d are lost", self.name,
                            self._count, self.declared_frames, self._count)
            return None
        self._count += 1
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) if frame.ndim == 3 else frame

    def _reconnect(self) -> np.ndarray | None:
        """Reopen a camera that delivered no frame (bounded retries, growing delays); None if closed."""
        waited = 0.0
        for attempt in range(1, self.reconnect_tries + 1):
            delay = min(self.reconnect_delay * 2 ** (attempt - 1), 5.0)
            log.warning("%s delivered no frame after %d frames; reopening it in %.1f s (try %d of %d)",
                        self.name, self._count, delay, attempt, self.reconnect_tries)
            time.sleep(delay)
            waited += delay
            if self._closed:  # closed meanwhile (the stream was stopped): no reopening
                return None
            self.cap.release()
            cap = self._open()
            if cap is not None:
                self.cap = cap
                frame = self._next()
                if frame is not None:
                    log.warning("%s is back after %d tries", self.name, attempt)
                    return frame
        raise DataError(f"{self.name} stopped delivering frames after {self._count} frames and could not "
                        f"be reopened ({self.reconnect_tries} tries over {waited:.1f} s); check its cable "
                        "and power, and that no other program took it")

    def close(self) -> None:
        self._closed = True
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
    """Segment a frame source; with ``latest=True`` always the newest frame (real time).

    An exception raised by ``source.read()`` ends :meth:`frames` with that exception, in the
    thread that iterates (after the frames read before it), in both modes. :meth:`stop` ends
    :meth:`frames` after the frame in progress; it is safe to call from a signal handler.
    """

    def __init__(self, segmenter: Any, source: Any, latest: bool = True) -> None:
        self.seg, self.source, self.latest = segmenter, source, latest
        self._frame: np.ndarray | None = None
        self._seq = 0
        self._done = False
        self._error: BaseException | None = None
        self._stop = False
        self._closing = False
        self._cond = threading.Condition()
        self.latency: dict[str, float] = {}  # frames, fps, p50_ms, p99_ms of the last frames() run

    def stop(self) -> None:
        """End :meth:`frames` after the frame in progress (no lock taken: signal-handler safe)."""
        self._stop = True

    def _grab(self) -> None:
        while True:
            try:
                frame = self.source.read()
            except BaseException as exc:  # handed over: frames() raises it in the consumer's thread
                with self._cond:
                    self._error, self._done = exc, True
                    self._cond.notify_all()
                return
            with self._cond:
                if frame is None or self._done or self._stop:
                    self._done = True
                    self._cond.notify_all()
                    return
                self._frame, self._seq = frame, self._seq + 1
                self._cond.notify_all()

    def frames(self) -> Iterator[LiveFrame]:
        """Yield segmented frames until the source ends, :meth:`stop` is called, or the caller stops.

        Reading, inference and post-processing overlap (:meth:`Segmenter.stream`, one frame in
        each queue so latency stays low); a segmenter without ``stream`` runs frame by frame."""
        if getattr(self.seg, "stream", None) is None:
            yield from self._serial()
            return
        self._closing = False
        dropped_of: deque = deque()  # frames dropped before each frame, in the stream's order

        def source() -> Iterator[np.ndarray]:
            for frame, dropped in (self._newest() if self.latest else self._every()):
                if self._stop:
                    return
                if getattr(self.seg, "diameter", None) == "auto":
                    self._calibrate(frame)
                dropped_of.append(dropped)
                yield frame

        index, fps, t_prev = 0, 0.0, time.perf_counter()
        stream = self.seg.stream(source(), queue_size=1, with_frames=True)
        try:
            for frame, result in stream:
                if self._stop:
                    return
                now = time.perf_counter()
                rate = 1.0 / max(now - t_prev, 1e-9)
                fps = 0.9 * fps + 0.1 * rate if index else rate  # smoothed frames/s
                t_prev = now
                yield LiveFrame(index, frame, result, fps, dropped_of.popleft())
                index += 1
        finally:
            self._closing = True  # a newest-frame wait ends now, not at the next frame
            stream.close()
            self.latency = stream.summary()

    def _serial(self) -> Iterator[LiveFrame]:
        index, fps, t_prev = 0, 0.0, time.perf_counter()
        for frame, dropped in (self._newest() if self.latest else self._every()):
            if self._stop:
                return
            if getattr(self.seg, "diameter", None) == "auto":
                self._calibrate(frame)
            result = self.seg.segment(frame)
            now = time.perf_counter()
            rate = 1.0 / max(now - t_prev, 1e-9)
            fps = 0.9 * fps + 0.1 * rate if index else rate  # smoothed frames/s
            t_prev = now
            yield LiveFrame(index, frame, result, fps, dropped)
            index += 1

    def _calibrate(self, frame: np.ndarray) -> None:
        """Size control in a stream: ``diameter="auto"`` is estimated once, on the first frame
        that shows nuclei, and kept (not paid per frame)."""
        from .errors import InputError

        try:
            d = self.seg.calibrate_size([frame])
            log.info("live: nucleus diameter %.1f px, kept for the rest of the stream", d)
        except InputError:
            log.debug("live: no nuclei to estimate their size on this frame yet")

    def _every(self) -> Iterator[tuple[np.ndarray, int]]:
        """Every frame of the source, in order: (frame, 0)."""
        while not self._stop and not self._closing and (frame := self.source.read()) is not None:
            yield frame, 0

    def _newest(self) -> Iterator[tuple[np.ndarray, int]]:
        """The newest frame each time one is asked for: (frame, frames dropped so far)."""
        grabber = threading.Thread(target=self._grab, name="edgeseg-live-grab", daemon=True)
        grabber.start()
        last_seq, dropped = 0, 0
        try:
            while True:
                with self._cond:
                    while (self._seq == last_seq and not self._done and not self._stop
                           and not self._closing):
                        self._cond.wait(timeout=0.25)
                    if self._stop or self._closing:
                        return
                    if self._seq == last_seq:  # the grabber ended and every frame was handed out
                        if self._error is not None:
                            raise self._error
                        return
                    frame, seq = self._frame, self._seq
                dropped += seq - last_seq - 1
                last_seq = seq
                yield frame, dropped
        finally:
            with self._cond:
                self._done = True
            # Let a read in progress finish before the caller closes the source (bounded wait).
            grabber.join(timeout=2.0)


def check_display() -> None:
    """Raise BackendUnavailableError when OpenCV cannot open a window here."""
    try:
        cv2.namedWindow("edgeseg live", cv2.WINDOW_NORMAL)
    except cv2.error:
        raise BackendUnavailableError(
            "this OpenCV build cannot open windows (opencv-python-headless, or no display); run with "
            "--no-display (and --record out.avi to keep the overlay video), or install opencv-python "
            "on a machine with a display") from None

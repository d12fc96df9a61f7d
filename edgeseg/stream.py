"""Overlapped frame pipeline: read/preprocess, inference and post-processing as concurrent stages.

    seg = edgeseg.Segmenter("model.onnx", diameter=None)
    with seg.stream(frames) as results:            # an iterable of frames (or of loaders)
        for result in results:                     # one Result per frame, in order
            ...
    results.summary()                              # frames, fps, p50 / p99 latency (ms)

Stages: read + preprocess, inference, post-processing, joined by bounded queues (``queue_size``
items each). How they are laid out on threads is the stream's policy (``stream.policy``, see
:mod:`edgeseg.streampolicy`): with the ``overlap`` layout (a GPU backend, or a CPU backend that
leaves cores free) each stage has its thread, so while the backend runs the network on frame
k, frame k+1 is read and normalised and frame k-1 is labelled; where CPU inference already
uses every core the stages of a frame share one worker thread (``worker``: never slower than
the serial loop, and the consumer's own work overlaps with the next frame). ``layout=`` asks
for one ("overlap", "pair", "worker"). A full queue blocks the thread before it
(back-pressure: at most ``n * (queue_size + 1)`` frames are in flight with ``n`` threads, whatever
the source's speed). Each stage handles its frames in arrival order, so results come out in the
frames' order. With ``batch`` > 1 inference gathers up to ``batch`` consecutive frames of one
padded shape into one network call (as ``segment_batch``).

Shutdown: the source running out ends the stream after its last frame. An exception in the
source or a stage travels down the pipeline in the frame's place and is raised in the caller's
thread after the frames before it were yielded (``keep_errors=True``: an :class:`EdgesegError` or
``OSError`` of one frame is yielded in its place instead, and the stream goes on). Closing the
stream early (``close()``, leaving a ``with`` block, ``break`` out of a loop over it, or the
consumer raising) stops every stage at its next queue operation and joins the threads; the
source iterator is closed in its own thread.

Results are those of :meth:`Segmenter.segment` (the same stage functions: tests compare them),
with one more timing, ``latency``: ms from taking the frame from the source to its result being
ready, queue waits included.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import numpy as np

from .errors import EdgesegError, InputError

__all__ = ["FrameStream", "Job", "prepare", "infer", "finish", "percentile"]

log = logging.getLogger(__name__)

_POLL = 0.05  # s between looks at the stop flag while a queue is full or empty
_WAIT = 0.5  # s between the caller's looks at the last stage thread (alive?) while it waits
_JOIN = 5.0  # s to wait at shutdown for a reader blocked in the source's read()


@dataclass
class Job:
    """One frame on its way through the stages."""

    index: int
    frame: np.ndarray | None
    t_read: float
    diameter: Any = None  # the Segmenter's size setting when the frame was taken
    grey: np.ndarray | None = None
    norm: np.ndarray | None = None
    ninfo: Any = None
    zoom: float = 1.0
    size: float | None = None
    probs: np.ndarray | None = None
    tiles: int = 1
    t: dict[str, float] = field(default_factory=dict)


# -- stage functions: Segmenter.segment cut at its two hand-overs ------------------------------

def prepare(seg: Any, frame: np.ndarray, index: int = 0, t_read: float | None = None) -> Job:
    """Check and normalise one frame (and rescale it when a fixed diameter is set)."""
    from .segmenter import check_image
    from .sizing import resize_image, zoom_for

    t0 = time.perf_counter()
    size_of = getattr(seg, "_size", None)  # µm diameters become px with the Segmenter's pixel size
    diameter = size_of(seg.pixel_size) if size_of is not None else seg.diameter
    job = Job(index, frame, t0 if t_read is None else t_read, diameter=diameter)
    image = check_image(frame)
    if job.diameter is None:
        grey, job.norm, job.ninfo = seg._preprocess(image)
        job.grey = image if image.ndim == 2 else grey  # as segment(): no float copy of a grey frame
    elif job.diameter != "auto":  # a fixed diameter: the zoom is known before the network
        job.size = float(job.diameter)
        job.zoom = zoom_for(seg.info.diameter, job.size)
        small = image if job.zoom == 1.0 else resize_image(image, job.zoom)
        _, job.norm, job.ninfo = seg._preprocess(small)
    job.t["preprocess"] = (time.perf_counter() - t0) * 1e3
    return job


def _batchable(seg: Any, job: Job) -> tuple[int, int] | None:
    """The padded network shape of a frame that goes through whole (None: tiled, TTA or auto size)."""
    if job.norm is None or seg.tta or max(job.norm.shape) > seg.tile:
        return None
    m = seg.info.multiple
    return tuple(max(-(-d // m) * m, seg._min_side) for d in job.norm.shape)  # type: ignore[return-value]


def infer(seg: Any, jobs: list[Job]) -> None:
    """Class probabilities of ``jobs`` (one network call when they share a padded shape)."""
    from .tiling import pad_to_multiple

    keys = {_batchable(seg, j) for j in jobs}
    if len(jobs) > 1 and len(keys) == 1 and None not in keys:
        t0 = time.perf_counter()
        batch = np.stack([pad_to_multiple(j.norm, seg.info.multiple, seg._min_side) for j in jobs])[:, None]
        t1 = time.perf_counter()
        out = seg._backend.infer(batch)
        t2 = time.perf_counter()
        crops = []
        for j, p in zip(jobs, out):
            h, w = j.norm.shape
            crops.append(np.ascontiguousarray(p[:, :h, :w]))
        t3 = time.perf_counter()
        for j, p in zip(jobs, crops):
            j.probs, j.tiles, j.norm = p, 1, None
            j.t["infer"] = (t2 - t1) * 1e3 / len(jobs)
            j.t["copy"] = ((t1 - t0) + (t3 - t2)) * 1e3 / len(jobs)
        return
    for j in jobs:
        _infer_one(seg, j)


def _infer_one(seg: Any, job: Job) -> None:
    from .sizing import zoom_for

    t0 = time.perf_counter()
    if job.diameter == "auto":  # size by consensus across zooms: the network at several zooms
        image = job.frame
        est, cache = seg._estimate(image, {})
        seg.last_size = est
        job.size = est.diameter
        job.zoom = 1.0 if est.diameter is None else zoom_for(seg.info.diameter, float(est.diameter))
        job.probs, job.ninfo, job.tiles, t = cache.get(job.zoom) or seg._zoomed(image, job.zoom)
        job.t["preprocess"] += t["preprocess"]
        job.t["infer"] = (time.perf_counter() - t0) * 1e3 - t["preprocess"]
        return
    job.probs, job.tiles = seg._probabilities(job.norm)
    job.norm = None  # post-processing does not need it
    job.t["infer"] = (time.perf_counter() - t0) * 1e3


def finish(seg: Any, job: Job, probabilities: bool = False) -> Any:
    """Labels and instance table of a job whose probabilities are known: the Result."""
    from .data import to_grey
    from .postprocess import instance_table, label_instances
    from .segmenter import Result
    from .sizing import resize_probabilities, scaled_postprocess

    t = job.t
    if job.diameter is None:
        t.setdefault("infer", 0.0)
        result = seg._finish(job.grey, job.probs, job.ninfo, job.tiles, t, probabilities)
    else:
        t0 = time.perf_counter()
        probs = job.probs
        h, w = job.frame.shape[:2]
        if job.zoom != 1.0:
            probs = resize_probabilities(probs, (h, w))
        grey = to_grey(job.frame)
        labels = label_instances(probs, scaled_postprocess(seg.postprocess, job.zoom))
        table = instance_table(labels, probs, grey)
        t["postprocess"] = (time.perf_counter() - t0) * 1e3
        t["total"] = t["preprocess"] + t["infer"] + t["postprocess"]
        result = Result(labels=labels, instances=table, probabilities=probs if probabilities else None,
                        timings=t, norm=job.ninfo, tiles=job.tiles, zoom=job.zoom, diameter=job.size)
    job.probs = job.grey = None
    px = getattr(seg, "pixel_size", None)
    return result if px is None else dataclasses.replace(result, pixel_size=px)


def percentile(values: Iterable[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values`` (NaN when empty)."""
    arr = np.asarray(list(values), np.float64)
    return float(np.percentile(arr, q)) if arr.size else float("nan")


# -- the pipeline -------------------------------------------------------------------------------

class _Failed:
    """An exception travelling down the pipeline in the place of frame ``index``."""

    def __init__(self, index: int, exc: BaseException, frame: Any = None) -> None:
        self.index, self.exc, self.frame = index, exc, frame


_END = object()


class _Stopped(Exception):
    """The stream was closed: a stage leaves its loop."""


class FrameStream:
    """Iterator over the Results of a frame source, computed by overlapped stages.

    Made by :meth:`Segmenter.stream`. Iterate it once; ``close()`` (or a ``with`` block) stops
    it early. ``latencies_ms`` holds the per-frame latencies so far; :meth:`summary` the
    frame rate and the p50 / p99 latency; ``policy`` the thread layout
    (:class:`~edgeseg.streampolicy.StreamPolicy`: which stages share a thread, and why).
    """

    def __init__(self, seg: Any, frames: Iterable[Any], *, batch: int = 1, queue_size: int = 2,
                 probabilities: bool = False, keep_errors: bool = False, with_frames: bool = False,
                 layout: str = "auto") -> None:
        from .streampolicy import choose_policy

        for name, v in (("batch", batch), ("queue_size", queue_size)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InputError(f"stream: {name} must be an integer >= 1, got {v!r}")
        if not isinstance(layout, str):
            raise InputError(f"stream: layout must be a string ('auto', 'overlap', 'pair' or 'worker'), "
                             f"got {layout!r}")
        self.policy = choose_policy(getattr(seg, "_backend", None), layout)
        try:
            self._source = iter(frames)
        except TypeError:
            raise InputError(f"stream: frames must be an iterable of frames (numpy arrays) or of "
                             f"callables returning one, got {type(frames).__name__}") from None
        self.seg, self.batch, self.probabilities = seg, batch, probabilities
        self.keep_errors, self.with_frames = keep_errors, with_frames
        self._queues = [queue.Queue(maxsize=queue_size) for _ in self.policy.groups]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._in_source = False  # the reader is inside the source's next(): may block on a device
        self.latencies_ms: list[float] = []
        self._t_first: float | None = None
        self._t_last: float | None = None
        self._gen = self._run()

    # iterator and context manager
    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        return next(self._gen)

    def __enter__(self) -> "FrameStream":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass

    def close(self) -> None:
        """Stop every stage and join the threads (idempotent)."""
        self._gen.close()

    def summary(self) -> dict[str, float]:
        """Frames so far, frames/s (first start to last result), p50 / p99 latency in ms (the
        thread layout: ``policy``)."""
        n = len(self.latencies_ms)
        wall = (self._t_last - self._t_first) if n and self._t_first is not None else 0.0
        return {"frames": n, "fps": n / wall if wall > 0 else float("nan"),
                "p50_ms": percentile(self.latencies_ms, 50), "p99_ms": percentile(self.latencies_ms, 99)}

    # queue operations that give up when the stream is closed
    def _put(self, q: queue.Queue, item: Any) -> None:
        while True:
            if self._stop.is_set():
                raise _Stopped
            try:
                q.put(item, timeout=_POLL)
                return
            except queue.Full:
                continue

    def _get(self, q: queue.Queue) -> Any:
        while True:
            if self._stop.is_set():
                raise _Stopped
            try:
                return q.get(timeout=_POLL)
            except queue.Empty:
                continue

    def _handle(self, index: int, exc: BaseException, frame: Any) -> _Failed:
        if not isinstance(exc, (EdgesegError, OSError)) or not self.keep_errors:
            log.debug("stream: frame %d failed: %r", index, exc)
        return _Failed(index, exc, frame)

    def _fatal(self, item: Any) -> bool:
        return isinstance(item, _Failed) and not (self.keep_errors and isinstance(item.exc, (EdgesegError, OSError)))

    # stages: generators over the items before them; a thread runs a chain of them
    def _read(self) -> Iterator[Any]:
        """Frames from the source, read (loaders called) and preprocessed: Jobs or failures."""
        index = 0
        while True:
            if self._stop.is_set():
                raise _Stopped
            self._in_source = True
            try:
                item = next(self._source)
            except StopIteration:
                return
            except BaseException as exc:  # the source failed: nothing comes after it
                yield _Failed(index, exc)
                return
            finally:
                self._in_source = False
            t_read = time.perf_counter()  # latency: from the frame's hand-over (or its loader)
            frame = None
            try:
                frame = item() if callable(item) else item
                job = prepare(self.seg, frame, index, t_read)
            except BaseException as exc:
                fail = self._handle(index, exc, frame)
                yield fail
                if self._fatal(fail):
                    return
            else:
                yield job
            index += 1

    def _drain(self, q: queue.Queue) -> Iterator[Any]:
        """The items a stage thread before this one handed over, up to its end."""
        while (item := self._get(q)) is not _END:
            yield item

    def _infer(self, items: Iterator[Any]) -> Iterator[Any]:
        """Jobs with their probabilities (``batch`` consecutive frames of one shape per call)."""
        pending: deque = deque()
        while True:
            item = pending.popleft() if pending else next(items, _END)
            if item is _END:
                return
            if isinstance(item, _Failed):
                yield item
                if self._fatal(item):
                    return
                continue
            jobs = [item]
            key = _batchable(self.seg, item) if self.batch > 1 else None
            while key is not None and len(jobs) < self.batch:
                nxt = next(items, _END)
                if isinstance(nxt, Job) and _batchable(self.seg, nxt) == key:
                    jobs.append(nxt)
                else:  # another shape, an error or the end: handled after this batch
                    pending.append(nxt)
                    break
            try:
                infer(self.seg, jobs)
            except BaseException as exc:
                fail = self._handle(jobs[0].index, exc, jobs[0].frame)
                yield fail
                if self._fatal(fail):
                    return
                for j in jobs[1:]:  # the batch failed as a whole: each frame reports it
                    yield _Failed(j.index, exc, j.frame)
                continue
            yield from jobs

    def _post(self, items: Iterator[Any]) -> Iterator[Any]:
        """(frame, Result) per job, or its failure."""
        for item in items:
            if isinstance(item, _Failed):
                yield item
                if self._fatal(item):
                    return
                continue
            try:
                result = finish(self.seg, item, self.probabilities)
            except BaseException as exc:
                fail = self._handle(item.index, exc, item.frame)
                yield fail
                if self._fatal(fail):
                    return
                continue
            result.timings["latency"] = (time.perf_counter() - item.t_read) * 1e3
            yield (item.frame, result)

    def _stage_thread(self, k: int, steps: tuple[str, ...]) -> None:
        """Thread ``k``: the reader (k == 0) or the items of thread k - 1, through ``steps``,
        into queue k; then the end mark. A failure of the stage code itself travels on too."""
        out = self._queues[k]
        items: Iterator[Any] = self._read() if k == 0 else self._drain(self._queues[k - 1])
        for step in steps:
            items = self._infer(items) if step == "infer" else self._post(items)
        try:
            try:
                for item in items:
                    self._put(out, item)
                self._put(out, _END)
            except _Stopped:
                raise
            except BaseException as exc:  # a bug, not a frame's failure: fatal, raised in the caller
                log.debug("stream: stage thread %d failed: %r", k, exc)
                self._put(out, _Failed(-1, exc))
        except _Stopped:
            pass
        finally:
            if hasattr(items, "close"):
                items.close()  # the chain's generators, now (not whenever they are collected)
            if k == 0:
                close = getattr(self._source, "close", None)
                if close is not None:
                    try:
                        close()
                    except Exception as exc:  # a generator already running elsewhere, ...
                        log.debug("stream: closing the source failed: %r", exc)

    def _run(self) -> Iterator[Any]:
        self._t_first = time.perf_counter()
        for k, steps in enumerate(self.policy.groups):
            name = "+".join(("read",) * (k == 0) + steps)
            th = threading.Thread(target=self._stage_thread, args=(k, steps),
                                  name=f"edgeseg-stream-{k}-{name}", daemon=True)
            th.start()
            self._threads.append(th)
        results, last = self._queues[-1], self._threads[-1]
        try:
            while True:
                try:
                    item = results.get(timeout=_WAIT)  # a wake-up costs CPU: not every 50 ms
                except queue.Empty:  # the stages end with _END or a failure: unless one crashed
                    if not last.is_alive() and results.empty():
                        raise EdgesegError("stream: the last stage ended without handing over a "
                                           "result (see the log)") from None
                    continue
                if item is _END:
                    return
                if isinstance(item, _Failed):
                    if self._fatal(item):
                        raise item.exc
                    yield (item.frame, item.exc) if self.with_frames else item.exc
                    continue
                frame, result = item
                self._t_last = time.perf_counter()
                self.latencies_ms.append(result.timings["latency"])
                yield (frame, result) if self.with_frames else result
        finally:
            self._stop.set()
            self._join()

    def _join(self) -> None:
        """Wait for the stages: each finishes the frame in hand (native code must not be left
        running at interpreter exit), except a reader blocked in the source's own read, which
        is given up on after ``_JOIN`` s (a daemon thread, it ends with the source or the process)."""
        for th in self._threads:
            waited = 0.0
            while th.is_alive():
                th.join(timeout=_POLL)
                waited = waited + _POLL if (th is self._threads[0] and self._in_source) else 0.0
                if waited >= _JOIN:
                    log.warning("stream: the source did not hand over its frame within %.0f s; "
                                "leaving its reader behind", _JOIN)
                    break

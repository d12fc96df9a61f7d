"""edgeseg.live: errors reach the consumer (no hang), camera reconnects, truncated videos warn."""

from __future__ import annotations

import logging
import threading

import cv2
import numpy as np
import pytest

from edgeseg.errors import DataError
from edgeseg.live import LiveRunner, SyntheticSource, VideoSource


class CountingSegmenter:
    """Stands in for a Segmenter: the runner only calls ``segment``; this one counts pixels > 0."""

    def segment(self, frame):
        labels = (frame[..., 0] if frame.ndim == 3 else frame) > 0
        return type("R", (), {"count": int(labels.any()), "labels": labels.astype(np.int32),
                              "timings": {"total": 0.0}})()


def run_bounded(fn, timeout: float = 30.0) -> dict:
    """Run ``fn`` in a thread; fail (instead of hanging the test run) if it does not return."""
    box: dict = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"did not return within {timeout} s (hang)"
    return box


class FailingSource:
    """Gives ``good`` frames, then its read() raises (a driver error, a camera unplugged...)."""

    def __init__(self, good: int, exc: BaseException) -> None:
        self.left, self.exc = good, exc

    def read(self):
        if self.left == 0:
            raise self.exc
        self.left -= 1
        return np.full((16, 16), 9, np.uint8)


@pytest.mark.parametrize("latest", [True, False])
def test_read_error_reaches_the_consumer_instead_of_hanging(latest):
    seen = []

    def consume():
        for f in LiveRunner(CountingSegmenter(), FailingSource(3, RuntimeError("driver fell over")),
                            latest=latest).frames():
            seen.append(f.index)

    box = run_bounded(consume)
    assert isinstance(box.get("error"), RuntimeError) and "driver fell over" in str(box["error"])
    assert 1 <= len(seen) <= 3 if latest else seen == [0, 1, 2]


@pytest.mark.parametrize("latest", [True, False])
def test_stop_ends_frames_after_the_frame_in_progress(latest):
    runner = LiveRunner(CountingSegmenter(), SyntheticSource((32, 32), frames=None, fps=500.0), latest=latest)
    seen = []

    def consume():
        for f in runner.frames():
            seen.append(f.index)
            if f.index == 4:
                runner.stop()

    box = run_bounded(consume)
    assert "error" not in box and seen == [0, 1, 2, 3, 4]


class FakeCamera:
    """cv2.VideoCapture stand-in: the k-th opening delivers ``PLAN[k]`` frames (None: won't open)."""

    PLAN: list = []
    openings = 0

    def __init__(self, target) -> None:
        k = FakeCamera.openings
        FakeCamera.openings += 1
        self.left = FakeCamera.PLAN[k] if k < len(FakeCamera.PLAN) else None

    def isOpened(self) -> bool:
        return self.left is not None

    def read(self):
        if self.left:
            self.left -= 1
            return True, np.full((8, 8, 3), 200, np.uint8)
        return False, None

    def get(self, prop) -> float:
        return -1.0

    def release(self) -> None:
        pass


@pytest.fixture
def fake_camera(monkeypatch):
    FakeCamera.openings = 0
    monkeypatch.setattr(cv2, "VideoCapture", FakeCamera)
    return FakeCamera


def test_camera_loss_reconnects_then_fails_clearly(fake_camera, caplog):
    # 3 frames; lost; first reopen fails, second gives 2 frames; lost for good.
    fake_camera.PLAN = [3, None, 2]
    cam = VideoSource(0, reconnect_tries=3, reconnect_delay=0.001)
    seen = []

    def consume():
        for f in LiveRunner(CountingSegmenter(), cam, latest=False).frames():
            seen.append(f.index)

    with caplog.at_level(logging.WARNING, logger="edgeseg.live"):
        box = run_bounded(consume)
    err = box.get("error")
    assert isinstance(err, DataError), box
    assert seen == [0, 1, 2, 3, 4]
    msg = str(err)
    assert "camera 0" in msg and "after 5 frames" in msg and "3 tries" in msg and "\n" not in msg
    assert any("is back after 2 tries" in r.getMessage() for r in caplog.records)
    assert fake_camera.openings == 1 + 2 + 3  # first open, 2 to recover, 3 more before giving up


def test_camera_loss_in_newest_frame_mode_raises_in_the_consumer(fake_camera):
    fake_camera.PLAN = [2]
    cam = VideoSource(0, reconnect_tries=2, reconnect_delay=0.001)
    box = run_bounded(lambda: list(LiveRunner(CountingSegmenter(), cam, latest=True).frames()))
    assert isinstance(box.get("error"), DataError) and "could not be reopened" in str(box["error"])


def test_closing_a_camera_stops_its_reconnect_attempts(fake_camera):
    fake_camera.PLAN = [1]
    cam = VideoSource(0, reconnect_tries=5, reconnect_delay=0.2)
    assert cam.read() is not None
    box: dict = {}
    reader = threading.Thread(target=lambda: box.setdefault("frame", cam.read()))
    reader.start()
    cam.close()  # e.g. the stream was stopped while the camera was away
    reader.join(10)
    assert not reader.is_alive() and box["frame"] is None
    assert fake_camera.openings == 1  # never reopened after close()


def write_video(path, frames: int) -> None:
    src = SyntheticSource((64, 80), frames=frames, seed=1)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (80, 64))
    assert w.isOpened()
    while (f := src.read()) is not None:
        w.write(cv2.cvtColor(f, cv2.COLOR_GRAY2BGR))
    w.release()


def test_truncated_video_warns_with_both_counts(tmp_path, caplog):
    whole, cut = tmp_path / "whole.avi", tmp_path / "cut.avi"
    write_video(whole, 120)
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])

    def count(path):
        with VideoSource(str(path)) as v:
            n = 0
            while v.read() is not None:
                n += 1
            return n, v.declared_frames

    with caplog.at_level(logging.WARNING, logger="edgeseg.live"):
        assert count(whole) == (120, 120)
        assert not caplog.records  # a whole file ends quietly
        n, declared = count(cut)
    assert declared == 120 and 0 < n < 120
    msgs = [r.getMessage() for r in caplog.records]
    assert len(msgs) == 1 and f"after {n} frames" in msgs[0] and "declares 120" in msgs[0]
    assert "cut.avi" in msgs[0]


def test_frames_limit_on_a_video_is_not_a_truncation(tmp_path, caplog):
    video = tmp_path / "v.avi"
    write_video(video, 10)
    with caplog.at_level(logging.WARNING, logger="edgeseg.live"), VideoSource(str(video), frames=4) as v:
        n = 0
        while v.read() is not None:
            n += 1
    assert n == 4 and not caplog.records


def test_auto_diameter_is_estimated_once_per_stream():
    """Size control in a stream: the first frame with nuclei fixes the diameter."""
    pytest.importorskip("torch")
    from edgeseg import Segmenter

    seg = Segmenter("default", device="cpu", diameter="auto")
    calls = []
    real = seg.calibrate_size

    def counting(frames):
        calls.append(1)
        return real(frames)

    seg.calibrate_size = counting
    with SyntheticSource(size=(128, 128), frames=3) as src:
        out = list(LiveRunner(seg, src, latest=False).frames())
    assert len(out) == 3 and len(calls) == 1
    assert isinstance(seg.diameter, float) and seg.diameter > 0
    assert all(f.result.diameter == seg.diameter for f in out[1:])

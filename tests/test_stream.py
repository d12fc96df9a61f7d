"""edgeseg.stream: overlapped stages give the serial results, in order, and always shut down cleanly."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from edgeseg.errors import InputError

pytest.importorskip("torch")


def stream_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("edgeseg-stream-") and t.is_alive()]


def no_stream_threads_left(timeout: float = 10.0) -> bool:
    deadline = time.time() + timeout
    while stream_threads() and time.time() < deadline:
        time.sleep(0.05)
    return not stream_threads()


@pytest.fixture(scope="module")
def seg():
    from edgeseg import Segmenter

    return Segmenter("default", device="cpu", diameter=None)


@pytest.fixture(scope="module")
def real_frames():
    """The bundled real DSB2018 images: grey and RGB, 256 x 256 and 256 x 320, and a 384 crop."""
    from edgeseg._resources import demo_dir
    from edgeseg.data import load_dataset

    images = [s.image() for s in load_dataset(demo_dir())]
    big = next(i for i in images if i.shape[0] >= 1024)
    return [i for i in images if i.shape[0] < 1024] + [np.ascontiguousarray(big[100:484, 200:584])]


def small_frames(n: int, size: int = 48) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [(rng.random((size, size)) * 255).astype(np.uint8) for _ in range(n)]


def same(a, b) -> None:
    assert np.array_equal(a.labels, b.labels)
    assert np.array_equal(a.instances.area, b.instances.area)
    assert np.allclose(a.instances.score, b.instances.score, equal_nan=True)
    assert (a.tiles, a.zoom, a.diameter) == (b.tiles, b.zoom, b.diameter)


def test_stream_gives_the_serial_results_on_real_images(seg, real_frames):
    serial = [seg.segment(f) for f in real_frames]
    with seg.stream(real_frames, probabilities=True) as s:
        streamed = list(s)
    assert len(streamed) == len(serial)
    for a, b in zip(serial, streamed):
        same(a, b)
        assert b.probabilities is not None and b.timings["latency"] > 0
    summary = s.summary()
    assert summary["frames"] == len(real_frames) and summary["p99_ms"] >= summary["p50_ms"] > 0
    assert no_stream_threads_left()


def test_batched_stream_gives_the_batched_results(seg, real_frames):
    frames = real_frames[:2] + real_frames[-1:] + real_frames[:1]  # shapes 256, 256, 384, 256
    serial = seg.segment_batch(frames)
    streamed = list(seg.stream(frames, batch=2))
    for a, b in zip(serial, streamed, strict=True):
        same(a, b)


@pytest.mark.parametrize("diameter", [20.0, "auto"])
def test_stream_with_size_control_gives_the_serial_results(real_frames, diameter):
    from edgeseg import Segmenter

    seg = Segmenter("default", device="cpu", diameter=diameter)
    frames = real_frames[:2]
    serial = [seg.segment(f) for f in frames]
    for a, b in zip(serial, seg.stream(frames), strict=True):
        same(a, b)


def test_frames_keep_their_order_and_loaders_are_read_in_the_stream(seg):
    sizes = [32, 80, 48, 64, 32, 96]
    frames = [lambda s=s: np.full((s, s), 7, np.uint8) for s in sizes]
    assert [r.labels.shape[0] for r in seg.stream(frames, batch=3)] == sizes


def test_a_source_error_is_raised_after_the_frames_before_it(seg):
    def source():
        yield from small_frames(3)
        raise RuntimeError("camera unplugged")

    got = []
    with pytest.raises(RuntimeError, match="camera unplugged"):
        for r in seg.stream(source()):
            got.append(r)
    assert len(got) == 3 and no_stream_threads_left()


def test_a_bad_frame_raises_in_the_caller_or_is_handed_back_with_keep_errors(seg):
    frames = small_frames(2) + [np.zeros((8, 8), np.int64)] + small_frames(2)
    got = []
    with pytest.raises(InputError, match="dtype"):
        for r in seg.stream(frames):
            got.append(r)
    assert len(got) == 2 and no_stream_threads_left()
    out = list(seg.stream(frames, keep_errors=True))
    assert [type(r).__name__ for r in out] == ["Result", "Result", "InputError", "Result", "Result"]


def test_a_consumer_error_shuts_the_stream_down(seg):
    with pytest.raises(KeyError):
        with seg.stream(small_frames(20)) as s:
            for _ in s:
                raise KeyError("consumer failed")
    assert no_stream_threads_left()


@pytest.mark.parametrize("kw", [{"batch": 0}, {"queue_size": -1}, {"batch": True}])
def test_bad_stream_options_are_one_clear_error(seg, kw):
    with pytest.raises(InputError, match="integer >= 1"):
        seg.stream([], **kw)


def test_frames_that_are_not_iterable_are_refused(seg):
    with pytest.raises(InputError, match="iterable"):
        seg.stream(42)

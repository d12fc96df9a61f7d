"""edgeseg.streampolicy: the stream's thread layout follows the backend (GPU: overlap; CPU inference
on every core: one worker; CPU inference leaving cores free: overlap), an asked-for layout is
used as given, and every layout gives the serial results, in order, and shuts down cleanly."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from edgeseg.errors import InputError
from edgeseg.streampolicy import LAYOUTS, choose_policy, inference_threads

torch = pytest.importorskip("torch")


class _Backend:
    def __init__(self, device: str) -> None:
        self.device = device


def stream_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("edgeseg-stream-") and t.is_alive()]


def no_stream_threads_left(timeout: float = 10.0) -> bool:
    deadline = time.time() + timeout
    while stream_threads() and time.time() < deadline:
        time.sleep(0.05)
    return not stream_threads()


def small_frames(n: int, sizes=(48, 64, 48, 32)) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [(rng.random((sizes[k % len(sizes)],) * 2) * 255).astype(np.uint8) for k in range(n)]


@pytest.fixture(scope="module")
def seg():
    from edgeseg import Segmenter

    return Segmenter("default", device="cpu", diameter=None)


def test_a_gpu_backend_overlaps_the_stages():
    p = choose_policy(_Backend("cuda"), cpus=2)
    assert (p.layout, p.threads, p.inference_threads) == ("overlap", 3, None)
    assert "cuda" in p.reason


def test_torch_on_every_core_runs_one_worker_and_with_a_core_free_overlaps(seg):
    n = torch.get_num_threads()
    assert inference_threads(seg._backend) == n
    busy = choose_policy(seg._backend, cpus=n)
    assert (busy.layout, busy.threads, busy.inference_threads, busy.cpus) == ("worker", 1, n, n)
    assert "no core left" in busy.reason
    free = choose_policy(seg._backend, cpus=n + 1)
    assert (free.layout, free.threads) == ("overlap", 3)
    assert f"{n} of {n + 1} cores" in free.reason


def test_onnxruntime_threads_set_by_the_user_are_read_not_changed(tiny_onnx):
    pytest.importorskip("onnxruntime")
    from edgeseg.backends.onnxruntime_backend import OnnxRuntimeBackend

    one = OnnxRuntimeBackend(tiny_onnx, device="cpu", threads=1)
    assert inference_threads(one) == 1
    assert choose_policy(one, cpus=2).layout == "overlap"
    assert one._sess.get_session_options().intra_op_num_threads == 1  # left as the user set it
    default = OnnxRuntimeBackend(tiny_onnx, device="cpu")  # ORT's default: one thread per core
    assert choose_policy(default, cpus=inference_threads(default)).layout == "worker"
    two = OnnxRuntimeBackend(tiny_onnx, device="cpu", threads=2)
    assert choose_policy(two, cpus=2).layout == "worker"
    assert choose_policy(two, cpus=4).layout == "overlap"


def test_an_unknown_backend_keeps_the_overlap():
    assert choose_policy(object(), cpus=2).layout == "overlap"
    assert choose_policy(_Backend("cpu"), cpus=2).layout == "overlap"  # CPU threads not known


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_an_asked_for_layout_is_used_as_given(seg, layout):
    with seg.stream(small_frames(6), layout=layout) as s:
        first = next(s)
        names = stream_threads()
        rest = list(s)
    assert s.policy.layout == layout and s.policy.reason == "asked for"
    assert len(names) == s.policy.threads == len(LAYOUTS[layout])
    assert names[0].startswith("edgeseg-stream-0-read")
    assert [r.labels.shape for r in [first, *rest]] == [f.shape for f in small_frames(6)]
    assert no_stream_threads_left()


@pytest.mark.parametrize("bad", ["fast", "", 3, None])
def test_a_bad_layout_is_one_clear_error(seg, bad):
    with pytest.raises(InputError, match="layout"):
        seg.stream(small_frames(1), layout=bad)
    assert no_stream_threads_left()


def test_the_automatic_policy_is_the_one_for_the_backend(seg):
    s = seg.stream(small_frames(2))
    assert s.policy == choose_policy(seg._backend)
    assert len(list(s)) == 2


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("batch", [1, 3])
def test_every_layout_gives_the_serial_results_in_order(seg, layout, batch):
    frames = small_frames(7)
    serial = seg.segment_batch(frames) if batch > 1 else [seg.segment(f) for f in frames]
    streamed = list(seg.stream(frames, layout=layout, batch=batch, probabilities=True))
    for a, b in zip(serial, streamed, strict=True):
        assert np.array_equal(a.labels, b.labels)
        assert np.array_equal(a.instances.area, b.instances.area)
        assert b.probabilities is not None and b.timings["latency"] > 0
    assert no_stream_threads_left()


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_layout_raises_a_source_error_after_the_frames_before_it(seg, layout):
    def source():
        yield from small_frames(3)
        raise RuntimeError("camera unplugged")

    got = []
    with pytest.raises(RuntimeError, match="camera unplugged"):
        for r in seg.stream(source(), layout=layout):
            got.append(r)
    assert len(got) == 3 and no_stream_threads_left()


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_layout_hands_back_bad_frames_with_keep_errors(seg, layout):
    frames = small_frames(2) + [np.zeros((8, 8), np.int64)] + small_frames(2)
    out = list(seg.stream(frames, keep_errors=True, layout=layout))
    assert [type(r).__name__ for r in out] == ["Result", "Result", "InputError", "Result", "Result"]
    with pytest.raises(InputError, match="dtype"):
        list(seg.stream(frames, layout=layout))
    assert no_stream_threads_left()


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_layout_stops_on_an_inference_error_without_hanging(seg, layout, monkeypatch):
    calls = []
    real = seg._backend.infer

    def failing(batch):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("device lost")
        return real(batch)

    monkeypatch.setattr(seg._backend, "infer", failing)
    got = []
    with pytest.raises(RuntimeError, match="device lost"):
        for r in seg.stream(small_frames(6), layout=layout):
            got.append(r)
    assert len(got) == 2 and no_stream_threads_left()


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_a_failure_of_the_stage_code_itself_is_raised_not_hung(seg, layout, monkeypatch):
    import edgeseg.stream as stream_mod

    def broken(*a, **k):
        raise ZeroDivisionError("stage bug")

    monkeypatch.setattr(stream_mod, "_batchable", broken)  # outside the per-frame error handling
    with pytest.raises(ZeroDivisionError, match="stage bug"):
        list(seg.stream(small_frames(4), layout=layout, batch=2))
    assert no_stream_threads_left()


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_layout_closes_early_with_back_pressure(seg, layout):
    state = {"made": 0, "closed": False}

    def endless():
        try:
            while True:
                state["made"] += 1
                yield np.full((32, 32), state["made"] % 200, np.uint8)
        finally:
            state["closed"] = True

    s = seg.stream(endless(), queue_size=1, layout=layout)
    for k, _ in enumerate(s):
        if k == 2:
            break
    time.sleep(0.3)  # let the reader fill what the queues hold: back-pressure bounds it
    assert state["made"] <= 3 + s.policy.threads * (1 + 1) + 1
    s.close()
    assert no_stream_threads_left() and state["closed"]

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

pytest.importorskip("onnxruntime")

from edgeseg import EdgesegError, Segmenter  # noqa: E402
from edgeseg.errors import BackendUnavailableError, InputError, ModelError  # noqa: E402


@pytest.fixture(scope="module")
def seg_onnx(tiny_onnx):
    return Segmenter(tiny_onnx, device="cpu", tile=64, overlap=8)


def blobs(h=48, w=64, dtype=np.uint8, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    img = np.zeros((h, w), np.float32)
    for _ in range(6):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        img += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 30.0)
    img = img / img.max()
    return (img * (255 if dtype == np.uint8 else 65535 if dtype == np.uint16 else 1)).astype(dtype)


def test_result_api(seg_onnx):
    r = seg_onnx.segment(blobs(), probabilities=True)
    assert r.labels.shape == (48, 64) and r.labels.dtype == np.int32
    assert r.probabilities.shape == (3, 48, 64)
    np.testing.assert_allclose(r.probabilities.sum(0), 1.0, atol=1e-5)
    assert set(r.timings) == {"preprocess", "infer", "postprocess", "total"}
    assert len(r.instances) == r.count == int(r.labels.max())
    assert seg_onnx.backend == "onnxruntime" and seg_onnx.device == "cpu" and seg_onnx.precision == "fp32"
    assert seg_onnx.segment(blobs()).probabilities is None


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("channels", [None, 1, 3, 4])
def test_input_kinds(seg_onnx, dtype, channels):
    img = blobs(dtype=dtype)
    if channels:
        img = np.repeat(img[..., None], channels, axis=2)
    r = seg_onnx.segment(img)
    assert r.labels.shape == (48, 64)


def test_same_answer_on_torch_and_onnxruntime(tiny_pt, tiny_onnx):
    a = Segmenter(tiny_pt, device="cpu").segment(blobs(), probabilities=True)
    b = Segmenter(tiny_onnx, device="cpu").segment(blobs(), probabilities=True)
    assert float(np.abs(a.probabilities - b.probabilities).max()) <= 1e-4
    np.testing.assert_array_equal(a.labels, b.labels)


def test_tiled_and_batch(tiny_onnx):
    seg = Segmenter(tiny_onnx, device="cpu", tile=32, overlap=4, batch_size=3)
    img = blobs(70, 90)
    r = seg.segment(img, probabilities=True)
    assert r.tiles > 1 and r.labels.shape == (70, 90)
    batch = seg.segment_batch([blobs(), blobs(seed=1), img])
    singles = [seg.segment(x) for x in (blobs(), blobs(seed=1), img)]
    for b, s in zip(batch, singles):
        np.testing.assert_array_equal(b.labels, s.labels)


def test_threshold_overrides_and_errors(tiny_onnx):
    seg = Segmenter(tiny_onnx, device="cpu", min_size=50)
    assert seg.postprocess.min_size == 50
    with pytest.raises(InputError, match="valid ones"):
        Segmenter(tiny_onnx, device="cpu", seed_tresh=0.3)
    with pytest.raises(InputError, match="tile"):
        Segmenter(tiny_onnx, device="cpu", tile=30)


def test_never_switches_device_or_backend(tiny_onnx, tiny_pt):
    import onnxruntime as ort
    import torch

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(BackendUnavailableError, match="cuda"):
            Segmenter(tiny_onnx, device="cuda")
    if not torch.cuda.is_available():
        with pytest.raises(BackendUnavailableError, match="cuda"):
            Segmenter(tiny_pt, device="cuda")
    with pytest.raises(ModelError, match="onnxruntime backend reads"):
        Segmenter(tiny_onnx, backend="torch")
    with pytest.raises(InputError, match="unknown backend"):
        Segmenter(tiny_onnx, backend="tflite")
    with pytest.raises(InputError, match="unknown device"):
        Segmenter(tiny_onnx, device="gpu")


@pytest.mark.parametrize("content", [b"", b"not an onnx model at all", None])
def test_bad_model_files(tmp_path, tiny_onnx, content):
    p = tmp_path / "bad.onnx"
    data = tiny_onnx.read_bytes()
    p.write_bytes(content if content is not None else data[: len(data) // 2])
    with pytest.raises(ModelError) as e:
        Segmenter(p, device="cpu")
    assert str(p) in str(e.value)


def test_truncated_checkpoint(tmp_path, tiny_pt):
    p = tmp_path / "cut.pt"
    data = tiny_pt.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError) as e:
        Segmenter(p, device="cpu")
    assert str(p) in str(e.value)


def test_unknown_suffix(tmp_path):
    p = tmp_path / "model.h5"
    p.write_bytes(b"x")
    with pytest.raises(InputError, match="cannot tell the backend"):
        Segmenter(p)


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((8, 8), np.float64), "float32"),
        (np.zeros((8, 8), np.int32), "dtype"),
        (np.zeros((8, 8, 2), np.uint8), "C in 1, 3, 4"),
        (np.zeros((2, 8, 8, 1), np.uint8), "one 2-D frame"),
        (np.zeros((0, 8), np.uint8), "empty"),
        ([[1, 2]], "numpy array"),
    ],
)
def test_bad_images(seg_onnx, bad, match):
    with pytest.raises(InputError, match=match):
        seg_onnx.segment(bad)


def test_thread_safety(seg_onnx, tiny_pt):
    images = [blobs(seed=s) for s in range(6)]
    for seg in (seg_onnx, Segmenter(tiny_pt, device="cpu")):
        expected = [seg.segment(im).labels for im in images]
        errors, out = [], {}

        def work(k):
            try:
                for rep in range(3):
                    i = (k + rep) % len(images)
                    out[(k, rep)] = (i, seg.segment(images[i]).labels)
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        for i, labels in out.values():
            np.testing.assert_array_equal(labels, expected[i])


_dtypes = st.sampled_from([np.uint8, np.uint16, np.float32, np.float64, np.int16, np.bool_, np.int64])
_shapes = st.one_of(
    st.tuples(st.integers(0, 40), st.integers(0, 40)),
    st.tuples(st.integers(0, 24), st.integers(0, 24), st.integers(0, 5)),
    st.tuples(st.integers(1, 4), st.integers(1, 12), st.integers(1, 12), st.integers(1, 3)),
    st.tuples(st.integers(0, 50)),
)


@st.composite
def _frames(draw):
    dtype = draw(_dtypes)
    shape = draw(_shapes)
    return draw(arrays(dtype, shape, elements=None if dtype != np.float32 else
                       st.floats(allow_nan=True, allow_infinity=True, width=32)))


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arr=_frames())
@example(arr=np.zeros((4, 1), np.uint8))  # found: OpenCV 5 took the 4 x 1 labels for a scalar
def test_fuzz_segment_never_raises_anything_else(seg_onnx, arr):
    try:
        r = seg_onnx.segment(arr)
    except EdgesegError:
        return
    assert r.labels.shape == arr.shape[:2] and r.labels.dtype == np.int32


def test_bool_frames_are_segmented_as_zero_and_one(seg_onnx):
    """to_grey documents bool as 0/1, so a bool mask is a frame like its uint8 0/1 twin."""
    mask = blobs(seed=3) > 100
    r = seg_onnx.segment(mask)
    twin = seg_onnx.segment(mask.astype(np.uint8))
    assert r.labels.dtype == np.int32 and r.labels.shape == mask.shape
    np.testing.assert_array_equal(r.labels, twin.labels)
    np.testing.assert_array_equal(r.instances.intensity, twin.instances.intensity)


# -- diameter in µm with the pixel size (issue 12) ---------------------------------------------
def test_diameter_in_µm_is_the_same_as_in_px(tiny_onnx):
    rng = np.random.default_rng(3)
    img = (rng.random((96, 80)) * 255).astype(np.uint8)
    px = Segmenter(tiny_onnx, device="cpu", diameter=36).segment(img)
    um = Segmenter(tiny_onnx, device="cpu", diameter="9um", pixel_size=0.25)
    got = um.segment(img)
    assert got.zoom == px.zoom != 1.0 and got.diameter == pytest.approx(36.0)
    assert np.array_equal(got.labels, px.labels) and got.pixel_size.x == 0.25
    other = um.segment(img, pixel_size=0.5)  # per frame: 9 µm at 0.5 µm/px is 18 px
    assert other.diameter == pytest.approx(18.0) and other.pixel_size.x == 0.5
    assert Segmenter(tiny_onnx, device="cpu", diameter=None).segment(img).pixel_size is None
    with pytest.raises(InputError, match="in µm, but the pixel size of the frame is unknown"):
        Segmenter(tiny_onnx, device="cpu", diameter="9 µm").segment(img)
    with pytest.raises(InputError, match="not a length|diameter must be"):
        Segmenter(tiny_onnx, device="cpu", diameter="9 parsecs")

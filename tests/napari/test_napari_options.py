"""The widget's options without Qt: controls -> Segmenter arguments, bad values refused."""

from __future__ import annotations

import numpy as np
import pytest

from edgeseg.errors import InputError
from edgeseg.napari._options import SegmenterCache, SegmentOptions
from edgeseg.napari._planes import frame_axes, frame_count, newest_frame


def test_controls_to_segmenter_kwargs():
    o = SegmentOptions.from_controls(diameter_mode="px", diameter_px=25.0, model=" m.onnx ",
                                     backend="auto", device="cpu", seed_threshold=0.5)
    assert o.segmenter_kwargs() == {"model": "m.onnx", "backend": None, "device": "cpu",
                                    "diameter": 25.0, "seed_threshold": 0.5}
    assert SegmentOptions.from_controls(diameter_mode="none", diameter_px=25.0).diameter is None
    assert SegmentOptions.from_controls(diameter_mode="auto", diameter_px=25.0).diameter == "auto"
    kw = SegmentOptions(backend="onnxruntime", min_size=0).segmenter_kwargs()
    assert kw["backend"] == "onnxruntime" and kw["min_size"] == 0


@pytest.mark.parametrize("kw, words", [
    ({"device": "gpu"}, "device must be one of auto, cpu, cuda, got 'gpu'"),
    ({"backend": "trt"}, "backend must be one of"),
    ({"model": "  "}, "model is empty"),
    ({"diameter": -3.0}, "diameter must be"),
])
def test_bad_options_are_input_errors(kw, words):
    with pytest.raises(InputError, match=words):
        SegmentOptions(**kw)


def test_bad_diameter_mode():
    with pytest.raises(InputError, match="diameter mode must be one of auto, px, none"):
        SegmentOptions.from_controls(diameter_mode="µm", diameter_px=3.0)


def test_cache_reuses_the_segmenter_until_an_option_changes():
    pytest.importorskip("torch")
    cache = SegmenterCache()
    a = cache.get(SegmentOptions(device="cpu"))
    assert cache.get(SegmentOptions(device="cpu")) is a
    b = cache.get(SegmentOptions(device="cpu", min_size=5))
    assert b is not a and b.postprocess.min_size == 5
    cache.clear()
    assert cache.get(SegmentOptions(device="cpu", min_size=5)) is not b


def test_frames_of_layer_data():
    assert frame_axes((5, 2, 64, 48), rgb=False) == ((5, 2), (64, 48))
    assert frame_axes((64, 48, 3), rgb=True) == ((), (64, 48, 3))
    assert frame_count((5, 2, 64, 48), rgb=False) == 10 and frame_count((64, 48), rgb=False) == 1
    with pytest.raises(InputError, match=r"shape \(64,\); expected \.\.\. x H x W"):
        frame_axes((64,), rgb=False)
    stack = np.arange(2 * 3 * 4 * 5, dtype=np.int16).reshape(2, 3, 4, 5)
    last = newest_frame(stack, rgb=False)
    assert last.dtype == np.float32  # int16 is not a Segmenter dtype: float32, values kept
    np.testing.assert_array_equal(last, stack[-1, -1])
    with pytest.raises(InputError, match="stack is empty"):
        newest_frame(np.zeros((0, 4, 5)), rgb=False)

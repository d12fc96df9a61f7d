"""The dock widget in a headless napari viewer: Labels equal edgeseg.Segmenter on the same real
DSB2018 image, a stack frame by frame, and errors as notifications (no traceback, no exception)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")

from napari.layers import Labels  # noqa: E402
from napari.utils.notifications import NotificationSeverity  # noqa: E402
from napari_helpers import (BRIGHT, FLUO, STAINED, notifications, segmenter, viewer,  # noqa: E402,F401
                            wait_until, widget)

from edgeseg.imageio import read_image, read_image_raw  # noqa: E402
from edgeseg.napari._planes import INSTANCE_COLUMNS  # noqa: E402


def run(widget):
    worker = widget.segment()
    assert worker is not None
    wait_until(lambda: widget.worker is None)
    return worker


def check_features(features, table, offset=0):
    assert list(features["index"]) == list(table.id + offset)
    assert list(features["id"]) == list(table.id + offset)
    np.testing.assert_array_equal(features["area"], table.area)
    np.testing.assert_array_equal(features[["y0", "x0", "y1", "x1"]].to_numpy(), table.bbox)
    np.testing.assert_allclose(features[["centroid_y", "centroid_x"]].to_numpy(), table.centroid)
    np.testing.assert_allclose(features["score"], table.score)
    np.testing.assert_allclose(features["intensity"], table.intensity)


def test_segment_2d_real_image_equals_segmenter(viewer, widget, segmenter, notifications):
    raw = read_image_raw(FLUO)  # as stored: H x W x 3 for this RGBA PNG (grey in colour)
    image = viewer.add_image(raw, name="fluo", scale=(0.5, 0.5))
    assert widget.image_combo.currentText() == "fluo"
    run(widget)
    labels = viewer.layers["fluo labels"]
    assert isinstance(labels, Labels)
    expected = segmenter.segment(raw)
    assert expected.count > 10  # a real image with nuclei, not a trivial empty result
    np.testing.assert_array_equal(labels.data, expected.labels)
    assert tuple(labels.scale) == tuple(image.scale)  # overlays the image
    features = labels.features
    assert set(INSTANCE_COLUMNS) <= set(features.columns)
    check_features(features, expected.instances)
    assert str(expected.count) in widget.status.text()
    assert not [n for n in notifications if n.severity >= NotificationSeverity.WARNING]

    # a second click replaces the layer's data instead of adding a layer
    run(widget)
    assert [layer.name for layer in viewer.layers] == ["fluo", "fluo labels"]


def test_segment_stack_frame_by_frame(viewer, widget, segmenter):
    stack = np.stack([read_image(p) for p in (FLUO, STAINED, BRIGHT)])  # 3 x 256 x 256 float32
    viewer.add_image(stack, name="stack")
    viewer.dims.axis_labels = ("t", "y", "x")
    worker = widget.segment()
    done: list[int] = []
    worker.yielded.connect(done.append)  # what drives the napari progress bar
    wait_until(lambda: widget.worker is None)
    assert done == [1, 2, 3]
    labels = viewer.layers["stack labels"]
    assert labels.data.shape == stack.shape
    features = labels.features
    offset = 0
    for t, plane in enumerate(stack):
        expected = segmenter.segment(plane)
        assert expected.count > 0
        got = labels.data[t]
        # ids continue across frames: frame t's ids are the Segmenter's plus the ids before it
        np.testing.assert_array_equal(np.where(got > 0, got - offset, 0), expected.labels)
        rows = features[features["t"] == t]
        assert list(rows["plane_id"]) == list(expected.instances.id)
        check_features(rows.reset_index(drop=True), expected.instances, offset)
        offset += int(expected.labels.max())
    assert features["index"].is_unique


def test_thresholds_and_diameter_reach_the_segmenter(viewer, widget):
    from edgeseg import Segmenter

    raw = read_image(FLUO)
    viewer.add_image(raw, name="fluo")
    widget.diameter_combo.setCurrentText("px")
    widget.diameter_spin.setValue(30.0)
    widget.seed_spin.setValue(0.7)
    widget.min_size_spin.setValue(50)
    run(widget)
    with Segmenter("default", diameter=30.0, seed_threshold=0.7, min_size=50) as seg:
        expected = seg.segment(raw)
    np.testing.assert_array_equal(viewer.layers["fluo labels"].data, expected.labels)
    assert widget.cache.get(widget.options()).postprocess.seed_threshold == 0.7


def errors(notifications):
    return [n for n in notifications if n.severity == NotificationSeverity.ERROR]


def test_missing_model_is_a_notification(viewer, widget, notifications, tmp_path):
    viewer.add_image(read_image(FLUO), name="fluo")
    missing = tmp_path / "missing.onnx"
    widget.model_edit.setText(str(missing))
    run(widget)  # the error is raised in the worker thread
    shown = errors(notifications)
    assert len(shown) == 1
    assert shown[0].message.startswith("edgeseg: ") and "missing.onnx" in shown[0].message
    assert "Traceback" not in shown[0].message and "\n" not in shown[0].message
    assert "fluo labels" not in viewer.layers
    assert widget.segment_button.isEnabled()  # ready for the next try


def test_no_image_layer_is_a_notification(viewer, widget, notifications):
    viewer.add_labels(np.zeros((8, 8), np.int32), name="not an image")
    assert widget.segment() is None
    shown = errors(notifications)
    assert len(shown) == 1 and "no image layer" in shown[0].message


def test_frame_without_2d_shape_is_a_notification(viewer, widget, notifications):
    viewer.add_image(np.zeros((2, 3, 4, 5), np.uint8), rgb=False, name="odd")
    widget.model_edit.setText("")  # an empty model name is refused before any work
    assert widget.segment() is None
    shown = errors(notifications)
    assert len(shown) == 1 and "model is empty" in shown[0].message

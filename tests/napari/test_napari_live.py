"""Live mode: a layer that a camera plugin keeps updating is segmented frame by frame in a worker
thread; frames arriving while one is in flight are dropped (only the newest waits), not queued."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")

from napari.utils.notifications import NotificationSeverity  # noqa: E402
from napari_helpers import (BRIGHT, FLUO, STAINED, notifications, segmenter, viewer,  # noqa: E402,F401
                            wait_until, widget)

from edgeseg.imageio import read_image  # noqa: E402


def idle(widget):
    wait_until(lambda: not widget.live.busy)


def test_live_segments_the_newest_frame_and_drops_the_rest(viewer, widget, segmenter, notifications):
    a, b, c = (read_image(p) for p in (FLUO, STAINED, BRIGHT))
    camera = viewer.add_image(a, name="camera")
    widget.live_check.setChecked(True)
    assert widget.live.active and widget.live.busy  # the current frame goes at once
    idle(widget)
    live = viewer.layers["camera live"]
    np.testing.assert_array_equal(live.data, segmenter.segment(a).labels)
    assert list(live.features["id"]) == list(segmenter.segment(a).instances.id)

    # three frames while the viewer is busy: b goes, c is superseded by a (dropped), a goes next
    camera.data = b
    assert widget.live.busy
    camera.data = c
    camera.data = a.copy()
    idle(widget)
    assert widget.live.segmented == 3 and widget.live.dropped == 1
    np.testing.assert_array_equal(live.data, segmenter.segment(a).labels)
    assert "3 frames segmented, 1 dropped" in widget.status.text()

    # a growing time stack: the newest (last) frame is segmented
    camera.data = np.stack([a, c])
    idle(widget)
    np.testing.assert_array_equal(live.data, segmenter.segment(c).labels)

    # off: updates are no longer followed
    widget.live_check.setChecked(False)
    camera.data = b
    assert not widget.live.busy
    np.testing.assert_array_equal(live.data, segmenter.segment(c).labels)
    assert not [n for n in notifications if n.severity >= NotificationSeverity.WARNING]


def test_live_error_is_a_notification_and_stops_live(viewer, widget, notifications, tmp_path):
    camera = viewer.add_image(read_image(FLUO), name="camera")
    widget.model_edit.setText(str(tmp_path / "nowhere.engine"))
    widget.live_check.setChecked(True)
    idle(widget)
    shown = [n for n in notifications if n.severity == NotificationSeverity.ERROR]
    assert len(shown) == 1 and "nowhere.engine" in shown[0].message
    assert not widget.live_check.isChecked() and not widget.live.active
    camera.data = read_image(BRIGHT)  # no longer followed: no second error
    assert not widget.live.busy
    assert "camera live" not in viewer.layers

"""Shared by the napari plugin tests: a headless viewer (offscreen Qt), waiting for workers,
catching notifications, and the real DSB2018 fixture images."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before any QApplication exists

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "dsb2018_mini" / "images"
FLUO = FIXTURES / "00071198d059ba7f5914a526d124d28e6d010c92466da21d4a04cd5413362552.png"
STAINED = FIXTURES / "4ca5081854df7bbcaa4934fcf34318f82733a0f8c05b942c2265eea75419d62f_crop_y0_x0.png"
BRIGHT = FIXTURES / "c395870ad9f5a3ae651b50efab9b20c3e6b9aea15d4c731eb34c0cf9e3800a72_crop_y640_x512.png"


def wait_until(condition: Callable[[], bool], timeout: float = 120.0) -> None:
    """Run the Qt event loop until ``condition()`` is true (fails the test after ``timeout`` s)."""
    from qtpy.QtWidgets import QApplication

    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            pytest.fail(f"timed out after {timeout} s waiting for the worker")
        QApplication.processEvents()
        time.sleep(0.005)


@pytest.fixture
def viewer():
    """napari's viewer model (layers, dims, add_image/add_labels: all the widget uses) with a
    Qt application on the offscreen platform. Not ``napari.Viewer(show=False)``: its vispy canvas
    needs OpenGL, which Qt's offscreen platform does not give without a display (CI has none)."""
    pytest.importorskip("napari")
    pytest.importorskip("torch")  # the bundled default model is a torch checkpoint
    from napari._qt.qt_event_loop import get_qapp
    from napari.components import ViewerModel

    get_qapp()
    yield ViewerModel(title="edgeseg test")


@pytest.fixture
def widget(viewer):
    from edgeseg.napari._widget import SegmentWidget

    w = SegmentWidget(viewer)
    yield w
    w.live_check.setChecked(False)
    wait_until(lambda: w.worker is None and not w.live.busy)
    w.close()
    w.deleteLater()


@pytest.fixture
def notifications():
    """The napari notifications dispatched during the test (a list of Notification)."""
    from napari.utils.notifications import notification_manager

    seen: list = []
    notification_manager.notification_ready.connect(seen.append)
    yield seen
    notification_manager.notification_ready.disconnect(seen.append)


@pytest.fixture(scope="module")
def segmenter():
    """The reference: edgeseg.Segmenter with the widget's defaults, outside napari."""
    pytest.importorskip("torch")
    from edgeseg import Segmenter

    with Segmenter("default") as seg:
        yield seg

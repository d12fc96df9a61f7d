"""Live mode: segment the newest frame of an image layer each time its data changes.

A camera plugin keeps updating a layer (``layer.data = frame``, or a stack that grows); each data
event asks for the newest frame to be segmented in a worker thread, so the viewer never waits.
At most one frame is in flight: events that arrive meanwhile are not queued, only the latest is
remembered, and when the frame in flight is done the layer's newest frame at that moment goes
next. Frames skipped that way are counted in :attr:`LiveSegmentation.dropped`.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import numpy as np
from napari.qt.threading import create_worker

from ._planes import LabelsResult, layer_data, newest_frame, segment_frame
from ._report import USER_ERRORS, Failure

__all__ = ["LiveSegmentation"]

log = logging.getLogger(__name__)


class LiveSegmentation:
    """Follows one image layer's data events; results and errors go to the callbacks.

    Args:
        prepare: called in the main thread for each frame (it reads the widget's controls, and
            may raise an EdgesegError); returns a function that the worker thread calls to get
            the Segmenter (it may load a model: the widget's
            :class:`~edgeseg.napari._options.SegmenterCache`).
        on_result: ``on_result(layer, result)`` in the main thread for each segmented frame.
        on_error: ``on_error(exc)`` in the main thread when a frame fails; live mode has stopped
            by then. Exceptions other than user errors (EdgesegError, OSError) are bugs, which
            napari also shows as an error notification with the traceback.
    """

    def __init__(self, prepare: Callable[[], Callable[[], Any]],
                 on_result: Callable[[Any, LabelsResult], None],
                 on_error: Callable[[BaseException], None]) -> None:
        self._prepare = prepare
        self._on_result = on_result
        self._on_error = on_error
        self.layer: Any = None
        self._worker: Any = None
        self._pending = False
        self.segmented = 0  # frames segmented since start()
        self.dropped = 0    # data events whose frame was never segmented (a newer one went instead)

    @property
    def active(self) -> bool:
        return self.layer is not None

    @property
    def busy(self) -> bool:
        """A frame is being segmented."""
        return self._worker is not None

    def start(self, layer: Any) -> None:
        """Follow ``layer`` (an Image layer) and segment its newest frame now."""
        self.stop()
        self.layer = layer
        self.segmented = self.dropped = 0
        layer.events.data.connect(self._on_data)
        log.info("live: following layer %r", layer.name)
        self._on_data()

    def stop(self) -> None:
        """Stop following; a frame in flight still finishes but its result is discarded."""
        if self.layer is not None:
            self.layer.events.data.disconnect(self._on_data)
            log.info("live: stopped (%d frames segmented, %d dropped)", self.segmented, self.dropped)
        self.layer = None
        self._pending = False

    def _on_data(self, event: Any = None) -> None:
        if self.layer is None:
            return
        if self._worker is not None:
            if self._pending:
                self.dropped += 1  # the frame remembered before is superseded by this one
            self._pending = True
            return
        self._launch()

    def _launch(self) -> None:
        layer = self.layer
        try:
            # a copy: a camera may write into the same buffer while the worker reads it
            frame = np.array(newest_frame(layer_data(layer), layer.rgb))
            load = self._prepare()
        except USER_ERRORS as exc:
            self._fail(exc)
            return
        worker = create_worker(_segment, load, frame)
        worker.returned.connect(lambda result, layer=layer: self._returned(layer, result))
        worker.errored.connect(self._fail)  # a bug: napari shows it with its traceback too
        worker.finished.connect(self._finished)
        self._worker = worker
        worker.start()

    def _returned(self, layer: Any, result: LabelsResult | Failure) -> None:
        if isinstance(result, Failure):
            if layer is self.layer:
                self._fail(result.error)
            return
        if layer is self.layer:
            self.segmented += 1
            self._on_result(layer, result)

    def _fail(self, exc: BaseException) -> None:
        self.stop()
        self._on_error(exc)

    def _finished(self) -> None:
        self._worker = None
        if self._pending and self.layer is not None:
            self._pending = False
            self._launch()


def _segment(load: Callable[[], Any], frame: np.ndarray) -> LabelsResult | Failure:
    try:
        return segment_frame(load(), frame)
    except USER_ERRORS as exc:
        return Failure(exc)

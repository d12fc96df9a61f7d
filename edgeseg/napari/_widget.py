"""The "Segment nuclei" dock widget: model, backend, device, size control and thresholds; a
button that segments the chosen image layer (every frame of a stack, with a progress bar) into a
Labels layer whose ``features`` are the instance table; a live toggle (:mod:`._live`).

All work runs in worker threads (``napari.qt.threading``), so the viewer stays responsive; user
errors (:class:`~edgeseg.errors.EdgesegError`, OS errors) become napari notifications.
"""

from __future__ import annotations

import logging
from typing import Any

from napari.layers import Image, Labels
from napari.qt.threading import create_worker
from napari.utils.notifications import show_info
from qtpy.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout,
                            QHBoxLayout, QLabel, QLineEdit, QPushButton, QSpinBox, QVBoxLayout,
                            QWidget)

from ..errors import EdgesegError, InputError
from ._live import LiveSegmentation
from ._options import BACKENDS, DEVICES, DIAMETER_MODES, SegmenterCache, SegmentOptions
from ._planes import LabelsResult, frame_count, layer_data, segment_planes
from ._report import USER_ERRORS, Failure, report_error

__all__ = ["SegmentWidget"]

log = logging.getLogger(__name__)

MODEL_FILTER = "edgeseg models (*.pt *.onnx *.engine);;All files (*)"


class SegmentWidget(QWidget):
    """Dock widget of the edgeseg plugin (``Plugins > edgeseg nuclei > Segment nuclei``).

    ``napari_viewer`` is the viewer napari passes in (npe2 injects it by the argument's name).
    """

    def __init__(self, napari_viewer: Any, parent: Any = None) -> None:
        super().__init__(parent)
        self.viewer = napari_viewer
        self.cache = SegmenterCache()
        self.worker: Any = None  # the "Segment" worker in flight, if any
        self.live = LiveSegmentation(self._prepare, self._show_live, self._live_error)
        self._build()
        self._refresh_layers()
        self.viewer.layers.events.inserted.connect(self._refresh_layers)
        self.viewer.layers.events.removed.connect(self._layer_removed)
        self.viewer.layers.events.moved.connect(self._refresh_layers)
        self.viewer.layers.selection.events.active.connect(self._follow_selection)

    # -- controls -------------------------------------------------------------------------------
    def _build(self) -> None:
        form = QFormLayout()
        self.image_combo = QComboBox()
        self.image_combo.setToolTip("the image layer to segment (follows the layer selection)")
        form.addRow("image", self.image_combo)

        self.model_edit = QLineEdit("default")
        self.model_edit.setToolTip("'default' (the bundled model) or a .pt, .onnx or .engine file")
        browse = QPushButton("…")
        browse.setMaximumWidth(32)
        browse.setToolTip("choose a .pt, .onnx or .engine file")
        browse.clicked.connect(self._browse_model)
        row = QHBoxLayout()
        row.addWidget(self.model_edit)
        row.addWidget(browse)
        form.addRow("model", row)

        self.backend_combo = _combo(BACKENDS, "auto: follows from the model file")
        form.addRow("backend", self.backend_combo)
        self.device_combo = _combo(DEVICES, "an unavailable device is an error, never replaced")
        form.addRow("device", self.device_combo)

        self.diameter_combo = _combo(DIAMETER_MODES, "nucleus size control: auto (estimated per "
                                     "frame), px (nucleus diameter in pixels), none (as they are)")
        self.diameter_spin = QDoubleSpinBox()
        self.diameter_spin.setRange(1.0, 1000.0)
        self.diameter_spin.setValue(20.0)
        self.diameter_spin.setSuffix(" px")
        self.diameter_spin.setEnabled(False)
        self.diameter_combo.currentTextChanged.connect(
            lambda mode: self.diameter_spin.setEnabled(mode == "px"))
        row = QHBoxLayout()
        row.addWidget(self.diameter_combo)
        row.addWidget(self.diameter_spin)
        form.addRow("diameter", row)

        self.seed_spin = _threshold("seed threshold (probability a seed pixel needs)")
        form.addRow("seed threshold", self.seed_spin)
        self.fg_spin = _threshold("foreground threshold (probability a nucleus pixel needs)")
        form.addRow("fg threshold", self.fg_spin)
        self.min_size_spin = QSpinBox()
        self.min_size_spin.setRange(-1, 1_000_000)
        self.min_size_spin.setValue(-1)
        self.min_size_spin.setSpecialValueText("model's")
        self.min_size_spin.setSuffix(" px")
        self.min_size_spin.setToolTip("smallest nucleus kept, in px (model's: the model's own)")
        form.addRow("min size", self.min_size_spin)

        self.segment_button = QPushButton("Segment")
        self.segment_button.setToolTip("segment the image layer (every frame of a stack) into a "
                                       "Labels layer with the instance table as its features")
        self.segment_button.clicked.connect(self.segment)
        self.live_check = QCheckBox("live: segment the newest frame as the layer updates")
        self.live_check.toggled.connect(self._toggle_live)
        self.status = QLabel("")
        self.status.setWordWrap(True)

        box = QVBoxLayout(self)
        box.addLayout(form)
        box.addWidget(self.segment_button)
        box.addWidget(self.live_check)
        box.addWidget(self.status)
        box.addStretch(1)

    def _browse_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "edgeseg model", "", MODEL_FILTER)
        if path:
            self.model_edit.setText(path)

    def options(self) -> SegmentOptions:
        """The Segmenter options the controls describe (InputError for a bad combination)."""
        seed, fg, size = self.seed_spin.value(), self.fg_spin.value(), self.min_size_spin.value()
        return SegmentOptions.from_controls(
            model=self.model_edit.text(), backend=self.backend_combo.currentText(),
            device=self.device_combo.currentText(),
            diameter_mode=self.diameter_combo.currentText(), diameter_px=self.diameter_spin.value(),
            seed_threshold=None if seed <= 0 else seed, fg_threshold=None if fg <= 0 else fg,
            min_size=None if size < 0 else size)

    def _prepare(self) -> Any:
        """Read the controls now (main thread); the returned function gets the Segmenter in a
        worker thread (loading the model when the options changed)."""
        options = self.options()
        return lambda: self.cache.get(options)

    # -- image layers ---------------------------------------------------------------------------
    def image_layer(self) -> Any:
        """The chosen image layer, or None."""
        name = self.image_combo.currentText()
        layer = self.viewer.layers[name] if name in self.viewer.layers else None
        return layer if isinstance(layer, Image) else None

    def _refresh_layers(self, event: Any = None) -> None:
        current = self.image_combo.currentText()
        names = [layer.name for layer in self.viewer.layers if isinstance(layer, Image)]
        self.image_combo.blockSignals(True)
        self.image_combo.clear()
        self.image_combo.addItems(names)
        active = self.viewer.layers.selection.active
        if current in names:
            self.image_combo.setCurrentText(current)
        elif isinstance(active, Image):
            self.image_combo.setCurrentText(active.name)
        self.image_combo.blockSignals(False)

    def _follow_selection(self, event: Any = None) -> None:
        active = self.viewer.layers.selection.active
        if isinstance(active, Image):
            self.image_combo.setCurrentText(active.name)

    def _layer_removed(self, event: Any = None) -> None:
        if self.live.active and self.live.layer not in self.viewer.layers:
            self.live_check.setChecked(False)
        self._refresh_layers()

    # -- segment --------------------------------------------------------------------------------
    def segment(self) -> Any:
        """Segment the chosen image layer in a worker thread; returns the worker (or None when
        nothing was started: the reason is shown as a notification)."""
        if self.worker is not None:
            show_info("edgeseg: still segmenting; wait for it to finish")
            return None
        layer = self.image_layer()
        try:
            if layer is None:
                raise InputError("no image layer to segment: open an image (File > Open, or File > "
                                 "Open Sample > edgeseg nuclei) and choose it under 'image'")
            load = self._prepare()
            data = layer_data(layer)
            total = frame_count(data.shape, layer.rgb)
        except EdgesegError as exc:
            report_error(exc)
            return None
        names = _axis_names(self.viewer, layer)
        worker = create_worker(_segment_layer, load, data, layer.rgb, names,
                               _progress={"total": total, "desc": f"edgeseg: {layer.name}"})
        worker.returned.connect(lambda result, layer=layer: self._show(layer, result))
        worker.finished.connect(self._segment_finished)
        self.worker = worker
        self.segment_button.setEnabled(False)
        self.status.setText(f"segmenting {layer.name} ({total} frame{'s' * (total > 1)}) ...")
        worker.start()
        return worker

    def _segment_finished(self) -> None:
        self.worker = None
        self.segment_button.setEnabled(True)

    def _show(self, image: Any, result: LabelsResult | Failure) -> Labels | None:
        if isinstance(result, Failure):
            self.status.setText("")
            report_error(result.error)
            return None
        layer = self._labels_layer(f"{image.name} labels", image, result, image.scale, image.translate)
        self.status.setText(f"{image.name}: {result.count} nuclei -> layer {layer.name!r}")
        return layer

    def _labels_layer(self, name: str, image: Any, result: LabelsResult, scale: Any,
                      translate: Any) -> Labels:
        """Put ``result`` into the Labels layer ``name`` (created if missing)."""
        existing = self.viewer.layers[name] if name in self.viewer.layers else None
        if isinstance(existing, Labels):
            existing.data = result.data
            existing.features = result.features
            return existing
        return self.viewer.add_labels(result.data, name=name, features=result.features,
                                      scale=scale, translate=translate)

    # -- live -----------------------------------------------------------------------------------
    def _toggle_live(self, on: bool) -> None:
        if not on:
            self.live.stop()
            if self.status.text().startswith("live"):
                self.status.setText(f"live stopped: {self.live.segmented} frames segmented, "
                                    f"{self.live.dropped} dropped")
            return
        layer = self.image_layer()
        try:
            if layer is None:
                raise InputError("no image layer to follow: open the camera's layer first and choose "
                                 "it under 'image'")
            self.options()
        except EdgesegError as exc:
            report_error(exc)
            self.live_check.setChecked(False)
            return
        self.status.setText(f"live: following {layer.name}")
        self.live.start(layer)

    def _show_live(self, image: Any, result: LabelsResult) -> None:
        self._labels_layer(f"{image.name} live", image, result, image.scale[-2:],
                           image.translate[-2:])
        self.status.setText(f"live: {image.name}: {result.count} nuclei; {self.live.segmented} "
                            f"frames segmented, {self.live.dropped} dropped")

    def _live_error(self, exc: BaseException) -> None:
        self.live_check.setChecked(False)
        if isinstance(exc, USER_ERRORS):  # anything else is a bug napari already shows
            report_error(exc)


def _segment_layer(load: Any, data: Any, rgb: bool, names: list[str]) -> Any:
    """The worker: yields frames done, returns a LabelsResult or a Failure (a user error);
    other exceptions (bugs) reach napari's error notification with their traceback."""
    try:
        return (yield from segment_planes(load(), data, rgb, names))
    except USER_ERRORS as exc:
        return Failure(exc)


def _axis_names(viewer: Any, layer: Any) -> list[str]:
    """Names of the layer's leading (stack) axes: the viewer's axis labels where they fit."""
    labels = list(getattr(viewer.dims, "axis_labels", ()))
    lead = layer.ndim - 2
    names = [str(n) for n in labels[len(labels) - layer.ndim:][:lead]] if len(labels) >= layer.ndim else []
    return [n if n.isidentifier() and n not in ("index", "id", "plane_id") else f"axis{i}"
            for i, n in enumerate(names)]


def _combo(items: tuple[str, ...], tip: str) -> QComboBox:
    combo = QComboBox()
    combo.addItems(list(items))
    combo.setToolTip(tip)
    return combo


def _threshold(tip: str) -> QDoubleSpinBox:
    spin = QDoubleSpinBox()
    spin.setRange(0.0, 1.0)
    spin.setSingleStep(0.05)
    spin.setDecimals(2)
    spin.setValue(0.0)
    spin.setSpecialValueText("model's")
    spin.setToolTip(f"{tip}; model's: the model's own")
    return spin

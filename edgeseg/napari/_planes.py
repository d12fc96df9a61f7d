"""An image layer's data as 2-D frames, and Segmenter results as a Labels layer's data + features.

No Qt here. A layer holds ``... x H x W`` (grey) or ``... x H x W x C`` (``rgb``) data; every
index of the leading axes (time, z, ...) is one frame for :meth:`edgeseg.Segmenter.segment`.
For a stack, label ids are made unique across the whole stack (plane k's ids follow plane k-1's)
so that each label value has one row in the layer's features; ``plane_id`` keeps the id the
Segmenter gave it within its plane (the ``id`` of ``edgeseg predict``'s CSV for that frame).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Generator, Sequence

import numpy as np

from ..errors import InputError

__all__ = ["frame_axes", "layer_data", "as_frame", "newest_frame", "segment_frame", "segment_planes",
           "segment_stack", "frame_count", "LabelsResult", "INSTANCE_COLUMNS"]

log = logging.getLogger(__name__)

# The instance columns, in the order of ``edgeseg predict``'s CSV.
INSTANCE_COLUMNS = ("id", "area", "centroid_y", "centroid_x", "y0", "x0", "y1", "x1", "intensity",
                    "score")
_DTYPES = (np.uint8, np.uint16, np.float32, np.bool_)


@dataclass(frozen=True)
class LabelsResult:
    """What a Labels layer gets: ``data`` (int32, the image layer's shape less any colour axis)
    and ``features`` (one row per label value; column ``index`` is the label value)."""

    data: np.ndarray
    features: dict[str, np.ndarray]
    count: int

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape


def frame_axes(shape: Sequence[int], rgb: bool) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(leading shape, frame shape)`` of layer data of ``shape``; InputError if no 2-D frame."""
    shape = tuple(int(s) for s in shape)
    need = 3 if rgb else 2
    if len(shape) < need:
        what = "... x H x W x C (RGB)" if rgb else "... x H x W"
        raise InputError(f"the image layer's data has shape {shape}; expected {what}: edgeseg "
                         "segments 2-D frames (or each frame of a stack)")
    return shape[:len(shape) - need], shape[len(shape) - need:]


def layer_data(layer: Any) -> Any:
    """An image layer's data at full resolution (level 0 of a multiscale layer)."""
    return layer.data[0] if getattr(layer, "multiscale", False) else layer.data


def as_frame(frame: Any) -> np.ndarray:
    """A frame as a numpy array of a dtype Segmenter takes (other integers and floats: float32)."""
    frame = np.asarray(frame)
    if frame.dtype not in _DTYPES and frame.dtype.kind in "iuf":
        frame = frame.astype(np.float32)
    return frame


def newest_frame(data: Any, rgb: bool) -> np.ndarray:
    """The last frame of a stack (the last index of every leading axis), or the 2-D frame itself."""
    lead, _ = frame_axes(np.shape(data), rgb)
    if any(n == 0 for n in lead):
        raise InputError(f"the image layer's stack is empty (shape {np.shape(data)}); nothing to segment")
    return as_frame(data[(-1,) * len(lead)] if lead else data)


def _columns(result: Any, offset: int) -> dict[str, np.ndarray]:
    t = result.instances
    cols = {
        "id": t.id.astype(np.int64) + offset, "area": t.area.astype(np.int64),
        "centroid_y": t.centroid[:, 0].astype(np.float64), "centroid_x": t.centroid[:, 1].astype(np.float64),
        "y0": t.bbox[:, 0].astype(np.int64), "x0": t.bbox[:, 1].astype(np.int64),
        "y1": t.bbox[:, 2].astype(np.int64), "x1": t.bbox[:, 3].astype(np.int64),
        "intensity": t.intensity.astype(np.float64), "score": t.score.astype(np.float64),
    }
    return {"index": cols["id"].copy(), **cols}


def segment_frame(segmenter: Any, frame: Any) -> LabelsResult:
    """One 2-D frame: labels exactly as ``segmenter.segment(frame)`` gives them, and its table."""
    result = segmenter.segment(as_frame(frame))
    return LabelsResult(result.labels.astype(np.int32, copy=False), _columns(result, 0), result.count)


def segment_planes(segmenter: Any, data: Any, rgb: bool, axis_names: Sequence[str] | None = None
                   ) -> Generator[int, None, LabelsResult]:
    """Segment every frame of ``data`` (2-D: the one frame), yielding the number of frames done
    after each one and returning the :class:`LabelsResult` (a napari generator worker: its
    ``yielded`` signal drives a progress bar, and it can be stopped between frames)."""
    lead, frame = frame_axes(np.shape(data), rgb)
    if not lead:
        out = segment_frame(segmenter, data)
        yield 1
        return out
    names = list(axis_names or [])[:len(lead)]
    names += [f"axis{i}" for i in range(len(names), len(lead))]
    labels = np.zeros(lead + frame[:2], np.int32)
    parts: list[dict[str, np.ndarray]] = []
    offset = 0
    for k, idx in enumerate(np.ndindex(*lead)):
        plane = segmenter.segment(as_frame(data[idx]))
        ids = plane.labels
        labels[idx] = np.where(ids > 0, ids + offset, 0)
        cols = _columns(plane, offset)
        n = len(cols["id"])
        pos = {name: np.full(n, i, np.int64) for name, i in zip(names, idx)}
        parts.append({"index": cols.pop("index"), **pos,
                      "plane_id": plane.instances.id.astype(np.int64), **cols})
        offset += int(ids.max(initial=0))
        yield k + 1
    features = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    log.info("segmented %d frames: %d nuclei", len(parts), len(features["index"]))
    return LabelsResult(labels, features, len(features["index"]))


def segment_stack(segmenter: Any, data: Any, rgb: bool, axis_names: Sequence[str] | None = None
                  ) -> LabelsResult:
    """:func:`segment_planes` run to the end."""
    gen = segment_planes(segmenter, data, rgb, axis_names)
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


def frame_count(shape: Sequence[int], rgb: bool) -> int:
    """How many 2-D frames layer data of ``shape`` holds."""
    lead, _ = frame_axes(shape, rgb)
    return int(np.prod(lead, dtype=np.int64)) if lead else 1

"""A frame through a torch backend with pre- and post-processing on its device.

Used by :meth:`edgeseg.Segmenter.segment` when the backend has ``device_postprocess`` (the
torch backend on CUDA, by default) and the frame goes through the network whole, without size
control or TTA. The frame is uploaded once (its raw dtype, so a uint8 frame moves a quarter of
the bytes), normalised (:func:`edgeseg.preprocess_torch.normalize_torch`), padded by symmetric
reflection as :func:`edgeseg.tiling.pad_to_multiple` does, run through the network, labelled
(:func:`edgeseg.postprocess_torch.label_instances_torch`) and measured
(:func:`edgeseg.postprocess_torch.instance_table_torch`): only the label image and the instance
table come back. Colour frames of a model reading the haematoxylin channel are normalised on
the host (the stain separation is not ported).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .data import normalize, to_grey
from .postprocess_torch import instance_table_torch, label_instances_torch
from .preprocess_torch import normalize_torch

__all__ = ["segment_on_device"]


def _symmetric_index(n: int, size: int, device: Any) -> Any:
    import torch

    i = torch.arange(size, device=device) % (2 * n)
    return torch.where(i >= n, 2 * n - 1 - i, i)


def pad_symmetric(x: Any, multiple: int, min_size: int = 0) -> Any:
    """H x W tensor padded at the bottom/right like :func:`edgeseg.tiling.pad_to_multiple`."""
    h, w = x.shape
    ph = max(-(-h // multiple) * multiple, min_size)
    pw = max(-(-w // multiple) * multiple, min_size)
    if (ph, pw) == (h, w):
        return x
    x = x.index_select(0, _symmetric_index(h, ph, x.device))
    return x.index_select(1, _symmetric_index(w, pw, x.device))


def segment_on_device(seg: Any, image: np.ndarray) -> Any:
    """The :class:`edgeseg.segmenter.Result` of one (checked) frame, computed on the backend's device."""
    import torch

    from .segmenter import Result

    backend = seg._backend
    device = backend.device
    t0 = time.perf_counter()
    host_norm = image.ndim == 3 and seg.info.norm.colour != "grey"
    if host_norm:  # the haematoxylin channel of stained colour frames: the host's normalize
        norm_np, ninfo = normalize(image, seg.info.norm)
        grey_t = torch.from_numpy(to_grey(image)).to(device)
        norm = torch.from_numpy(norm_np).to(device)
    else:
        src = image if image.ndim == 2 else to_grey(image)
        if src.dtype == np.uint16:  # torch has no uint16 arithmetic on every device: int32
            src = src.astype(np.int32)
        grey_t = torch.from_numpy(np.ascontiguousarray(src)).to(device).float()
        norm, ninfo = normalize_torch(grey_t, seg.info.norm)
    h, w = norm.shape
    x = pad_symmetric(norm, seg.info.multiple, seg._min_side)[None, None]
    t1 = time.perf_counter()
    probs = backend.infer_tensor(x)[0, :, :h, :w]
    if device == "cuda":
        torch.cuda.synchronize()
    t2 = time.perf_counter()
    labels = label_instances_torch(probs, seg.postprocess)
    table = instance_table_torch(labels, probs, grey_t)
    labels_np = labels.cpu().numpy()
    t3 = time.perf_counter()
    t = {"preprocess": (t1 - t0) * 1e3, "infer": (t2 - t1) * 1e3, "postprocess": (t3 - t2) * 1e3}
    t["total"] = t["preprocess"] + t["infer"] + t["postprocess"]
    return Result(labels=labels_np, instances=table, probabilities=None, timings=t, norm=ninfo, tiles=1)

"""Normalisation on the device: :func:`edgeseg.data.normalize` for a grey frame as a torch tensor.

The same rule as the CPU path: percentiles ``p_low`` / ``p_high`` of the finite pixels of a
strided subsample (about 65k pixels) map to 0 and 1, clipped; with ``invert="auto"`` a
bright-background frame (median closer to the 99.8th than to the 1st percentile) becomes
``1 - x``; NaN/inf pixels become 0. Only the five percentiles come back to the host (for the
:class:`~edgeseg.data.NormInfo`). Colour frames of a model that reads the haematoxylin channel
(``NormConfig.colour == "hematoxylin"``) are normalised on the host (:func:`edgeseg.data.normalize`).
"""

from __future__ import annotations

import math
from typing import Any

from .data import _KIND_Q, _SUBSAMPLE_TARGET, NormConfig, NormInfo, _bright_background
from .errors import InputError

__all__ = ["normalize_torch"]


def normalize_torch(grey: Any, cfg: NormConfig | None = None) -> tuple[Any, NormInfo]:
    """``(float32 H x W tensor in [0, 1], NormInfo)`` of a grey H x W tensor, on its device."""
    import torch

    cfg = NormConfig() if cfg is None else cfg
    if not isinstance(grey, torch.Tensor) or grey.ndim != 2 or grey.numel() == 0:
        got = tuple(grey.shape) if isinstance(grey, torch.Tensor) else type(grey).__name__
        raise InputError(f"normalize_torch expects a non-empty H x W torch tensor, got {got}; "
                         "colour frames go through edgeseg.data.to_grey first")
    grey = grey.float()
    h, w = grey.shape
    step = max(1, math.ceil(math.sqrt(h * w / _SUBSAMPLE_TARGET)))
    sub = grey[::step, ::step].reshape(-1)
    finite = torch.isfinite(sub)
    vals = sub[finite]
    if vals.numel() == 0:
        vals = grey[torch.isfinite(grey)]
    if vals.numel():
        q = torch.tensor((cfg.p_low, cfg.p_high) + _KIND_Q, dtype=torch.float64, device=grey.device)
        lo, hi, *kind = torch.quantile(vals.double(), q / 100.0).tolist()
        bright = _bright_background(*kind)
    else:
        lo = hi = 0.0
        bright = False
    inverted = cfg.invert == "always" or (cfg.invert == "auto" and bright)
    lo32 = torch.tensor(lo, dtype=torch.float32)
    hi32 = torch.tensor(hi, dtype=torch.float32)
    span = hi32 - lo32
    if float(span) > 0 and math.isfinite(float(span)):
        out = ((grey - lo32.to(grey.device)) / span.to(grey.device)).clamp_(0.0, 1.0)
    else:
        out = torch.zeros_like(grey)
    if inverted:
        out = 1.0 - out
    out = torch.where(torch.isfinite(grey), out, torch.zeros((), device=grey.device))
    return out, NormInfo(lo=float(lo32), hi=float(hi32), inverted=bool(inverted))

"""Function-preserving widening of a trained U-Net (a warm start for a wider model).

``widen(old, new_config)`` returns a :class:`~edgeseg.model.UNet` of the larger ``width`` that
computes exactly what ``old`` computes: every old channel keeps its index within its level (in
the decoder's concatenations the skip half moves up by the new level width), its weights, bias
and BatchNorm statistics; the weights from new channels into old ones are zero, so the new
channels cannot change the output until training moves those weights; the new channels'
own weights keep the fresh (Kaiming) initialisation of the wider model, so they carry signal and
their outgoing weights receive gradient from the first step (zeroing both sides would leave
them stuck). The idea is Net2WiderNet (Chen et al., ICLR 2016) with zero instead of copied
outgoing weights, which needs no symmetry breaking.

Only the width may grow; depth, input channels, classes, normalisation and up-sampling must match.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from ..errors import InputError
from ..model import UNet, UNetConfig

log = logging.getLogger(__name__)

__all__ = ["can_widen", "widen"]


def can_widen(old: UNetConfig, new: UNetConfig) -> bool:
    """Whether ``new`` differs from ``old`` only by a larger width."""
    same = old.to_dict() | {"width": new.width} == new.to_dict()
    return same and new.width > old.width


def _convs(block: nn.Module) -> list[nn.Module]:
    return [m for m in block.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]


def _bns(block: nn.Module) -> list[nn.BatchNorm2d]:
    return [m for m in block.modules() if isinstance(m, nn.BatchNorm2d)]


@torch.no_grad()
def _copy_conv(new: nn.Module, old: nn.Module, in_map: torch.Tensor, out_map: torch.Tensor) -> None:
    """``new`` gets ``old``'s weights at (out_map, in_map); other inputs of old outputs: 0."""
    w_new, w_old = new.weight, old.weight
    if isinstance(new, nn.ConvTranspose2d):  # weight is in x out x k x k
        w_new, w_old = w_new.transpose(0, 1), w_old.transpose(0, 1)
    w_new[out_map] = 0.0
    w_new[out_map[:, None], in_map] = w_old
    if new.bias is not None:
        new.bias[out_map] = old.bias


@torch.no_grad()
def _copy_bn(new: nn.BatchNorm2d, old: nn.BatchNorm2d, out_map: torch.Tensor) -> None:
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(new, name)[out_map] = getattr(old, name)
    new.num_batches_tracked.copy_(old.num_batches_tracked)


def _copy_block(new: nn.Module, old: nn.Module, in_map: torch.Tensor, out_map: torch.Tensor) -> None:
    """A conv block (conv [bn] relu conv [bn] relu): first conv in -> out, second out -> out."""
    c_new, c_old = _convs(new), _convs(old)
    _copy_conv(c_new[0], c_old[0], in_map, out_map)
    _copy_conv(c_new[1], c_old[1], out_map, out_map)
    for b_new, b_old in zip(_bns(new), _bns(old)):
        _copy_bn(b_new, b_old, out_map)


def widen(old: UNet, new_config: UNetConfig) -> UNet:
    """A ``new_config`` U-Net (wider than ``old``) computing the same function as ``old``.

    The new channels' weights come from the global torch RNG (seed it for a reproducible
    result). Raises :class:`InputError` unless ``new_config`` is ``old.config`` with a larger
    width.
    """
    oc = old.config
    if not can_widen(oc, new_config):
        raise InputError(f"cannot widen a {oc.to_dict()} U-Net to {new_config.to_dict()}: only "
                         "a larger width is supported (same depth, channels, classes, norm and "
                         "up-sampling).")
    new = UNet(new_config).to(next(old.parameters()).device)

    def level(i: int) -> torch.Tensor:
        return torch.arange(oc.channels(i))

    def concat(i: int) -> torch.Tensor:  # [up(x), skip] of level i: the skip half moves up
        return torch.cat([level(i), new_config.channels(i) + level(i)])

    for i, (b_new, b_old) in enumerate(zip(new.down, old.down)):
        _copy_block(b_new, b_old, torch.arange(oc.in_channels) if i == 0 else level(i - 1),
                    level(i))
    for j, (u_new, u_old) in enumerate(zip(new.ups, old.ups)):
        lv = oc.depth - j
        _copy_conv(_convs(u_new)[0], _convs(u_old)[0], level(lv), level(lv - 1))
    for j, (b_new, b_old) in enumerate(zip(new.up_blocks, old.up_blocks)):
        lv = oc.depth - j
        _copy_block(b_new, b_old, concat(lv - 1), level(lv - 1))
    _copy_conv(new.head, old.head, level(0), torch.arange(oc.classes))
    log.info("widened the U-Net from width %d to %d (function preserved)", oc.width,
             new_config.width)
    return new.train(old.training)

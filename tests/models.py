"""Tiny random models for runtime tests (real-model tests use the bundled default model)."""

from __future__ import annotations

from pathlib import Path


def tiny_checkpoint(path: Path, width: int = 4, depth: int = 2, seed: int = 0, **configs) -> Path:
    import torch

    from edgeseg.checkpoint import save_checkpoint
    from edgeseg.model import UNet, UNetConfig

    torch.manual_seed(seed)
    net = UNet(UNetConfig(width=width, depth=depth))
    for m in net.modules():  # non-trivial BatchNorm statistics, so that folding matters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return save_checkpoint(path, net.eval(), **configs)

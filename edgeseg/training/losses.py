"""The training loss and learning-rate schedule."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["WarmupCosine", "seg_loss"]


class WarmupCosine:
    """LR factor: linear warm-up over ``warmup`` steps, then cosine decay to ``min_ratio`` at
    ``total`` (a callable object, so LambdaLR saves its parameters in the state dict)."""

    def __init__(self, total: int, warmup: int, min_ratio: float) -> None:
        self.total, self.warmup, self.min_ratio = total, min(warmup, total), min_ratio

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        t = min((step - self.warmup) / max(self.total - self.warmup, 1), 1.0)
        return self.min_ratio + (1.0 - self.min_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))


def seg_loss(logits: torch.Tensor, target: torch.Tensor, class_weights: torch.Tensor,
             dice_weight: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Class-weighted cross-entropy + ``dice_weight`` x soft Dice loss averaged over the body and
    border classes (batch-level Dice). Returns (total, ce, dice)."""
    logits = logits.float()
    ce = F.cross_entropy(logits, target, weight=class_weights)
    probs = torch.softmax(logits, dim=1)[:, 1:]
    onehot = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2)[:, 1:].to(probs.dtype)
    inter = (probs * onehot).sum(dim=(0, 2, 3))
    denom = probs.sum(dim=(0, 2, 3)) + onehot.sum(dim=(0, 2, 3))
    dice = (1.0 - (2.0 * inter + 1.0) / (denom + 1.0)).mean()
    return ce + dice_weight * dice, ce, dice

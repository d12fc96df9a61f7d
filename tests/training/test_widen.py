"""Function-preserving widening (``edgeseg.training.widen``) and ``edgeseg train --init M --width W``."""

from __future__ import annotations

import pytest
import torch

from edgeseg import cli
from edgeseg.checkpoint import load_checkpoint
from edgeseg.errors import InputError
from edgeseg.model import UNet, UNetConfig
from edgeseg.training.widen import can_widen, widen

from test_finetune import FT_ARGS, base  # noqa: F401  (the module-scoped base run fixture)


def _trained_like(cfg: UNetConfig) -> UNet:
    """A U-Net with non-trivial weights and BatchNorm statistics (a few training-mode passes)."""
    torch.manual_seed(0)
    net = UNet(cfg)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
        net.train()
        for _ in range(3):
            net(torch.randn(2, cfg.in_channels, 32, 48))
    return net.eval()


@pytest.mark.parametrize("norm", ["batch", "none"])
@pytest.mark.parametrize("upsample", ["transpose", "bilinear"])
@pytest.mark.parametrize("widths", [(4, 6), (3, 8)])
def test_widened_model_computes_the_same_function(norm, upsample, widths):
    old_cfg = UNetConfig(width=widths[0], depth=3, norm=norm, upsample=upsample, in_channels=2)
    old = _trained_like(old_cfg)
    torch.manual_seed(1)
    new = widen(old, UNetConfig(**{**old_cfg.to_dict(), "width": widths[1]}))
    assert new.config.width == widths[1] and not new.training
    x = torch.randn(3, 2, 32, 48)
    with torch.no_grad():
        diff = (old(x) - new(x)).abs().max().item()
    assert diff < 1e-4
    assert sum(p.numel() for p in new.parameters()) > sum(p.numel() for p in old.parameters())


def test_new_channels_learn_from_the_first_steps():
    old_cfg = UNetConfig(width=4, depth=2)
    new = widen(_trained_like(old_cfg), UNetConfig(width=6, depth=2)).train()
    opt = torch.optim.SGD(new.parameters(), lr=0.1)
    x = torch.randn(2, 1, 32, 32)
    new(x).square().mean().backward()
    head = new.head.weight.grad[:, 4:]  # new level-0 channels into the (old) class outputs
    assert head.abs().sum() > 0  # zero weights, but a non-zero gradient: not stuck
    opt.step()
    opt.zero_grad()
    new(x).square().mean().backward()  # now the new channels' own weights get gradient too
    assert new.down[0][0].weight.grad[4:].abs().sum() > 0


@pytest.mark.parametrize("change", [{"width": 4}, {"width": 2}, {"width": 8, "depth": 3},
                                    {"width": 8, "classes": 4}, {"width": 8, "norm": "none"}])
def test_only_a_larger_width_can_be_widened(change):
    old_cfg = UNetConfig(width=4, depth=2)
    new_cfg = UNetConfig(**{**old_cfg.to_dict(), **change})
    assert not can_widen(old_cfg, new_cfg)
    with pytest.raises(InputError, match="only a larger width"):
        widen(UNet(old_cfg), new_cfg)


def test_cli_init_with_a_larger_width_widens(base, tmp_path, capsys):  # noqa: F811
    data, init = base
    width = load_checkpoint(init).model_config.width
    run = tmp_path / "wide"
    assert cli.main(["train", "--init", str(init), "--data", str(data), "--out", str(run),
                     "--steps", "2", "--val-every", "2", "--width", str(width + 2),
                     *FT_ARGS]) == 0
    ck = load_checkpoint(run / "last.pt")
    assert ck.model_config.width == width + 2
    assert ck.model_card["init"]["widened_from"] == width
    # a narrower or deeper model is refused with one line, nothing trained
    capsys.readouterr()
    assert cli.main(["train", "--init", str(init), "--data", str(data), "--out",
                     str(tmp_path / "deep"), "--steps", "2", "--depth", "3", *FT_ARGS]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "larger --width" in err[0]
    assert not (tmp_path / "deep" / "last.pt").exists()

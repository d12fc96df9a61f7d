"""The segmentation network: a plain U-Net built only from TensorRT/ONNX-friendly operators.

The graph holds Conv2d, BatchNorm2d, ReLU, MaxPool2d, ConvTranspose2d (or bilinear Resize +
1x1 Conv) and channel Concat, nothing else, so it exports to ONNX with dynamic N/H/W and builds
in TensorRT without plugins. Input is ``N x in_channels x H x W`` with H and W divisible by
``2**depth``; output is class logits ``N x classes x H x W``.

Size at the defaults (width 16, depth 4): 1.9 M parameters, about 6 GFLOP per 256^2 frame and
about 96 GFLOP per 1024^2 frame (see :func:`gflops`).

Example::

    from edgeseg.model import UNet, UNetConfig
    net = UNet(UNetConfig(width=16, depth=4)).eval()
    logits = net(torch.zeros(1, 1, 256, 256))        # 1 x 3 x 256 x 256
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

import torch
from torch import nn

from ._config import ConfigMixin
from .errors import InputError

log = logging.getLogger(__name__)

__all__ = ["UNet", "UNetConfig", "count_params", "fold_batchnorm", "gflops"]

_NORMS = ("batch", "none")
_UPSAMPLES = ("transpose", "bilinear")


@dataclass(frozen=True)
class UNetConfig(ConfigMixin):
    """Architecture of :class:`UNet`.

    Attributes:
        in_channels: input channels (1: normalised grey image).
        classes: output classes (3: background, nucleus body, border/touching zone).
        width: channels of the first level; level ``i`` has ``width * 2**i``.
        depth: number of 2x down-samplings; H and W must be divisible by ``2**depth``.
        norm: ``"batch"`` (Conv-BN-ReLU) or ``"none"`` (Conv(bias)-ReLU).
        upsample: ``"transpose"`` (2x2 stride-2 ConvTranspose) or ``"bilinear"``
            (bilinear Resize then 1x1 Conv).
    """

    in_channels: int = 1
    classes: int = 3
    width: int = 16
    depth: int = 4
    norm: str = "batch"
    upsample: str = "transpose"

    def __post_init__(self) -> None:
        for name, lo, hi in (("in_channels", 1, 64), ("classes", 2, 256),
                             ("width", 1, 1024), ("depth", 1, 8)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
                raise InputError(
                    f"UNetConfig.{name} must be an integer in [{lo}, {hi}], got {value!r}; "
                    f"pass e.g. {name}={getattr(UNetConfig, name)}.")
        if self.norm not in _NORMS:
            raise InputError(f"UNetConfig.norm must be one of {_NORMS}, got {self.norm!r}.")
        if self.upsample not in _UPSAMPLES:
            raise InputError(
                f"UNetConfig.upsample must be one of {_UPSAMPLES}, got {self.upsample!r}.")

    @property
    def multiple(self) -> int:
        """H and W of an input must be multiples of this (``2**depth``)."""
        return 2 ** self.depth

    def channels(self, level: int) -> int:
        """Feature channels at encoder/decoder ``level`` (0 = full resolution)."""
        return self.width * 2 ** level




def _conv_block(cin: int, cout: int, norm: str) -> nn.Sequential:
    """Two (Conv3x3 [-> BN] -> ReLU) layers."""
    layers: list[nn.Module] = []
    for c_in in (cin, cout):
        bn = norm == "batch"
        layers.append(nn.Conv2d(c_in, cout, 3, padding=1, bias=not bn))
        if bn:
            layers.append(nn.BatchNorm2d(cout))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def _up(cin: int, cout: int, mode: str) -> nn.Module:
    if mode == "transpose":
        return nn.ConvTranspose2d(cin, cout, 2, stride=2)
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                         nn.Conv2d(cin, cout, 1))


def _exporting() -> bool:
    """True while the graph is being traced/exported/compiled (no Python shape checks then)."""
    return bool(torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()
                or torch.compiler.is_compiling())


class UNet(nn.Module):
    """U-Net: ``depth`` down levels, a bottleneck, ``depth`` up levels with skip concatenation.

    ``forward(x)`` takes ``N x in_channels x H x W`` float (H, W multiples of ``2**depth``) and
    returns logits ``N x classes x H x W``. Apply softmax over dim 1 for probabilities.
    """

    def __init__(self, config: UNetConfig | None = None) -> None:
        super().__init__()
        cfg = config if config is not None else UNetConfig()
        if not isinstance(cfg, UNetConfig):
            raise InputError(f"UNet expects a UNetConfig, got {type(cfg).__name__}; "
                             "build one with UNetConfig(...) or UNetConfig.from_dict(d).")
        self.config = cfg
        c = cfg.channels
        self.down = nn.ModuleList([_conv_block(cfg.in_channels, c(0), cfg.norm)])
        self.down.extend(_conv_block(c(i - 1), c(i), cfg.norm) for i in range(1, cfg.depth + 1))
        self.pool = nn.MaxPool2d(2)
        self.ups = nn.ModuleList(_up(c(i), c(i - 1), cfg.upsample)
                                 for i in range(cfg.depth, 0, -1))
        self.up_blocks = nn.ModuleList(_conv_block(2 * c(i - 1), c(i - 1), cfg.norm)
                                       for i in range(cfg.depth, 0, -1))
        self.head = nn.Conv2d(c(0), cfg.classes, 1)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise :class:`InputError` unless ``x`` is ``N x in_channels x H x W`` with H, W
        multiples of ``2**depth``."""
        cfg = self.config
        if x.dim() != 4 or x.shape[1] != cfg.in_channels:
            raise InputError(
                f"UNet expects a 4-D tensor N x {cfg.in_channels} x H x W, got shape "
                f"{tuple(x.shape)}; add batch/channel axes, e.g. x[None, None] for one HxW image.")
        h, w = int(x.shape[2]), int(x.shape[3])
        m = cfg.multiple
        if h % m or w % m:
            ph, pw = -h % m, -w % m
            raise InputError(
                f"UNet(depth={cfg.depth}) needs H and W divisible by {m}, got {h}x{w}; pad the "
                f"image (e.g. reflect-pad by {ph} rows and {pw} columns to {h + ph}x{w + pw}) "
                "and crop the output back.")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not _exporting():
            self.check_input(x)
        skips = []
        for i, block in enumerate(self.down):
            if i:
                x = self.pool(x)
            x = block(x)
            skips.append(x)
        x = skips.pop()
        for up, block in zip(self.ups, self.up_blocks):
            x = block(torch.cat([up(x), skips.pop()], dim=1))
        return self.head(x)


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``model`` (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def gflops(cfg: UNetConfig, h: int, w: int) -> float:
    """Analytic GFLOP of one ``h x w`` frame: 2 x the multiply-accumulates of every Conv and
    ConvTranspose (BN, ReLU, pooling, resize and concat are not counted; BN folds into convs).
    """
    if h % cfg.multiple or w % cfg.multiple:
        raise InputError(f"gflops needs h, w divisible by {cfg.multiple}, got {h}x{w}; "
                         "pass the padded size.")
    c = cfg.channels
    macs = 0

    def block(cin: int, cout: int, pixels: int) -> int:
        return 9 * cin * cout * pixels + 9 * cout * cout * pixels

    for i in range(cfg.depth + 1):
        pixels = (h >> i) * (w >> i)
        macs += block(cfg.in_channels if i == 0 else c(i - 1), c(i), pixels)
    for i in range(cfg.depth, 0, -1):
        out_pixels = (h >> (i - 1)) * (w >> (i - 1))
        # ConvTranspose 2x2/2: each output pixel gets one tap of cin channels per cout.
        # Bilinear path: a 1x1 conv at the output resolution -> the same MAC count.
        macs += c(i) * c(i - 1) * out_pixels
        macs += block(2 * c(i - 1), c(i - 1), out_pixels)
    macs += c(0) * cfg.classes * h * w
    return 2.0 * macs / 1e9


def _fold_sequential(seq: nn.Sequential) -> nn.Sequential:
    out: list[nn.Module] = []
    mods = list(seq)
    i = 0
    while i < len(mods):
        m = mods[i]
        nxt = mods[i + 1] if i + 1 < len(mods) else None
        if isinstance(m, nn.Conv2d) and isinstance(nxt, nn.BatchNorm2d):
            out.append(torch.nn.utils.fusion.fuse_conv_bn_eval(m, nxt))
            i += 2
            continue
        out.append(_fold(m))
        i += 1
    return nn.Sequential(*out)


def _fold(module: nn.Module) -> nn.Module:
    if isinstance(module, nn.Sequential):
        return _fold_sequential(module)
    for name, child in list(module.named_children()):
        setattr(module, name, _fold(child))
    return module


def fold_batchnorm(model: UNet) -> UNet:
    """Return an eval-mode copy of ``model`` with every BatchNorm folded into the conv before it.

    The copy computes the same function as ``model.eval()`` (to float rounding) with fewer
    operators; use it for ONNX/TensorRT export. ``model`` itself is left untouched. The copy's
    ``state_dict`` no longer matches its ``config`` (convs gained biases): export it, don't
    checkpoint it.
    """
    folded = _fold(copy.deepcopy(model).eval())
    folded.eval()
    folded.bn_folded = True  # type: ignore[attr-defined]
    return folded

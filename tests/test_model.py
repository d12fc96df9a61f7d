"""edgeseg.model: shapes, sizes, GFLOP count, BN folding, input errors, ONNX export."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgeseg.errors import InputError
from edgeseg.model import UNet, UNetConfig, count_params, fold_batchnorm, gflops

TINY = {"width": 4, "depth": 2}


def _randomize_bn(model: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.2)


@pytest.mark.parametrize("upsample", ["transpose", "bilinear"])
@pytest.mark.parametrize("depth,shape", [(2, (2, 1, 32, 48)), (3, (1, 1, 64, 40))])
def test_output_shape(upsample: str, depth: int, shape: tuple) -> None:
    net = UNet(UNetConfig(width=4, depth=depth, upsample=upsample)).eval()
    with torch.no_grad():
        out = net(torch.rand(*shape))
    assert out.shape == (shape[0], 3, shape[2], shape[3])
    assert out.dtype == torch.float32


def test_default_config_and_sizes() -> None:
    cfg = UNetConfig()
    assert (cfg.in_channels, cfg.classes, cfg.width, cfg.depth, cfg.norm) == (1, 3, 16, 4, "batch")
    assert cfg.multiple == 16


def _hand_params(w: int, d: int, cin: int = 1, classes: int = 3, bn: bool = True,
                 transpose: bool = True) -> int:
    """Parameter count written out from the architecture description."""
    def conv3(a: int, b: int) -> int:
        return 9 * a * b + (2 * b if bn else b)  # BN: gamma + beta; else conv bias
    c = [w * 2 ** i for i in range(d + 1)]
    total = conv3(cin, c[0]) + conv3(c[0], c[0])
    for i in range(1, d + 1):
        total += conv3(c[i - 1], c[i]) + conv3(c[i], c[i])
    for i in range(d, 0, -1):
        total += (4 if transpose else 1) * c[i] * c[i - 1] + c[i - 1]  # up conv + bias
        total += conv3(2 * c[i - 1], c[i - 1]) + conv3(c[i - 1], c[i - 1])
    return total + c[0] * classes + classes


@pytest.mark.parametrize("kw", [{"width": 16, "depth": 4}, {"width": 32, "depth": 4},
                                {"width": 8, "depth": 3, "upsample": "bilinear"},
                                {"width": 4, "depth": 2, "norm": "none"}])
def test_param_count(kw: dict) -> None:
    cfg = UNetConfig(**kw)
    expected = _hand_params(cfg.width, cfg.depth, bn=cfg.norm == "batch",
                            transpose=cfg.upsample == "transpose")
    assert count_params(UNet(cfg)) == expected


def test_reference_sizes() -> None:
    # The numbers quoted in ARCHITECTURE.md: width 32 -> 7.8 M params, 24 GFLOP per 256^2;
    # width 16 -> 1.9 M params, 6 GFLOP per 256^2 (x16 at 1024^2, within the ~100 GFLOP budget).
    assert count_params(UNet(UNetConfig(width=16))) == 1_942_323
    assert count_params(UNet(UNetConfig(width=32))) == 7_762_531
    assert gflops(UNetConfig(width=16), 256, 256) == pytest.approx(6.03, abs=0.01)
    assert gflops(UNetConfig(width=32), 256, 256) == pytest.approx(24.08, abs=0.01)
    assert gflops(UNetConfig(), 1024, 1024) == pytest.approx(16 * gflops(UNetConfig(), 256, 256))
    assert gflops(UNetConfig(), 1024, 1024) < 100


def test_gflops_hand_count() -> None:
    # width 2, depth 1, 1 input channel, 3 classes, 8x8 input (64 px; 16 px at level 1):
    macs = (9 * 1 * 2 * 64 + 9 * 2 * 2 * 64        # level 0 block
            + 9 * 2 * 4 * 16 + 9 * 4 * 4 * 16      # level 1 (bottleneck) block
            + 4 * 2 * 64                           # 2x2 transpose conv 4 -> 2, 64 output px
            + 9 * 4 * 2 * 64 + 9 * 2 * 2 * 64      # decoder block on the concat (4 channels)
            + 2 * 3 * 64)                          # 1x1 head
    assert gflops(UNetConfig(width=2, depth=1), 8, 8) == pytest.approx(2 * macs / 1e9)


def _hook_macs(net: UNet, h: int, w: int) -> int:
    """MACs counted from the real layer shapes during a forward pass (an independent count)."""
    total = [0]

    def hook(m: torch.nn.Module, inp: tuple, out: torch.Tensor) -> None:
        k = m.kernel_size[0] * m.kernel_size[1]
        if isinstance(m, torch.nn.ConvTranspose2d):
            total[0] += inp[0].numel() * m.out_channels * k
        else:
            total[0] += out.numel() * m.in_channels * k

    for m in net.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            m.register_forward_hook(hook)
    with torch.no_grad():
        net.eval()(torch.zeros(1, 1, h, w))
    return total[0]


@pytest.mark.parametrize("kw", [{"width": 4, "depth": 2}, {"width": 8, "depth": 3,
                                                             "upsample": "bilinear"}])
def test_gflops_matches_layers(kw: dict) -> None:
    cfg = UNetConfig(**kw)
    assert gflops(cfg, 64, 96) == pytest.approx(2 * _hook_macs(UNet(cfg), 64, 96) / 1e9)


@pytest.mark.parametrize("upsample", ["transpose", "bilinear"])
def test_fold_batchnorm_equivalent(upsample: str) -> None:
    torch.manual_seed(0)
    net = UNet(UNetConfig(width=8, depth=3, upsample=upsample))
    _randomize_bn(net)
    net.train()
    folded = fold_batchnorm(net)
    assert net.training, "the original model must be left as it was"
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert not folded.training
    x = torch.rand(2, 1, 48, 64)
    with torch.no_grad():
        ref = net.eval()(x)
        got = folded(x)
    scale = max(1.0, float(ref.abs().max()))
    assert float((ref - got).abs().max()) <= 1e-5 * scale


def test_bad_shapes_raise_input_error() -> None:
    net = UNet(UNetConfig(**TINY))
    with pytest.raises(InputError, match=r"divisible by 4.*30x32.*pad"):
        net(torch.zeros(1, 1, 30, 32))
    with pytest.raises(InputError, match="4-D"):
        net(torch.zeros(1, 32, 32))
    with pytest.raises(InputError, match="N x 1 x H x W"):
        net(torch.zeros(1, 3, 32, 32))
    with pytest.raises(InputError):
        gflops(UNetConfig(**TINY), 30, 32)


@pytest.mark.parametrize("kw", [{"width": 0}, {"depth": 0}, {"depth": 9}, {"classes": 1},
                                {"norm": "group"}, {"upsample": "nearest"}, {"width": 2.5},
                                {"width": True}])
def test_config_validation(kw: dict) -> None:
    with pytest.raises(InputError):
        UNetConfig(**kw)


def test_config_roundtrip() -> None:
    cfg = UNetConfig(width=8, depth=3, upsample="bilinear")
    assert UNetConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(InputError, match="unknown keys"):
        UNetConfig.from_dict({**cfg.to_dict(), "dropout": 0.1})
    with pytest.raises(InputError):
        UNet({"width": 8})  # type: ignore[arg-type]


ALLOWED_OPS = {"Conv", "Relu", "MaxPool", "ConvTranspose", "Resize", "Concat", "Identity",
               "Constant"}


@pytest.mark.parametrize("upsample", ["transpose", "bilinear"])
def test_onnx_export_dynamic_shapes(upsample: str) -> None:
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    net = UNet(UNetConfig(width=4, depth=2, upsample=upsample))
    _randomize_bn(net)
    folded = fold_batchnorm(net)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter announces its deprecation
        torch.onnx.export(folded, (torch.zeros(1, 1, 32, 32),), buf, dynamo=False,
                          input_names=["image"], output_names=["logits"], opset_version=17,
                          dynamic_axes={"image": {0: "N", 2: "H", 3: "W"},
                                        "logits": {0: "N", 2: "H", 3: "W"}})
    proto = onnx.load_from_string(buf.getvalue())
    ops = {n.op_type for n in proto.graph.node}
    assert ops <= ALLOWED_OPS, ops - ALLOWED_OPS
    sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    for shape in [(1, 1, 32, 32), (3, 1, 48, 80)]:
        x = rng.random(shape, dtype=np.float32)
        got = sess.run(None, {"image": x})[0]
        with torch.no_grad():
            ref = net.eval()(torch.from_numpy(x)).numpy()
        assert got.shape == (shape[0], 3, shape[2], shape[3])
        np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-4)

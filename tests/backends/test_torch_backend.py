"""The torch backend's options and fast path (issue 11 item 3).

CPU: the options are checked, nothing asked for is silently changed, infer_tensor equals infer,
and the device path of the Segmenter (normalise + label with torch) agrees with the host path
on real images. CUDA (``gpu``): graphs, pinned copies and FP16 within the parity bound of FP32.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgeseg import Segmenter  # noqa: E402
from edgeseg.backends import open_backend  # noqa: E402
from edgeseg.data import read_image_raw  # noqa: E402
from edgeseg.errors import BackendUnavailableError, InputError  # noqa: E402
from edgeseg.metrics import dsb_score  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
VAL_IDS = json.loads((REPO / "training" / "splits" / "dsb2018_groups.json").read_text())["val"]
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_cpu_refuses_what_it_cannot_do(tiny_pt):
    with pytest.raises(BackendUnavailableError, match="fp16.*CUDA"):
        open_backend(tiny_pt, device="cpu", precision="fp16")
    with pytest.raises(BackendUnavailableError, match="cuda_graphs"):
        open_backend(tiny_pt, device="cpu", cuda_graphs=True)
    with pytest.raises(InputError, match="compile"):
        open_backend(tiny_pt, device="cpu", compile="yes")
    with pytest.raises(InputError, match="device_postprocess"):
        open_backend(tiny_pt, device="cpu", device_postprocess=1)
    b = open_backend(tiny_pt, device="cpu")
    assert (b.device, b.precision, b.cuda_graphs, b.device_postprocess) == ("cpu", "fp32", False, False)


def test_infer_tensor_equals_infer(tiny_pt):
    b = open_backend(tiny_pt, device="cpu")
    x = np.random.default_rng(0).random((2, 1, 64, 48), dtype=np.float32)
    np.testing.assert_array_equal(b.infer_tensor(torch.from_numpy(x)).numpy(), b.infer(x))


def test_device_path_agrees_with_host_path(stage1_train):
    host = Segmenter("default", device="cpu", diameter=None)
    dev = Segmenter("default", device="cpu", diameter=None, backend_options={"device_postprocess": True})
    for i in VAL_IDS[:3]:
        image = read_image_raw(stage1_train / "images" / f"{i}.png")
        a, b = host.segment(image), dev.segment(image)
        assert b.labels.dtype == np.int32 and b.labels.shape == a.labels.shape
        assert dsb_score(a.labels, b.labels) >= 0.99
        assert abs(len(a.instances) - len(b.instances)) <= max(1, len(a.instances) // 100)
        assert b.norm.inverted == a.norm.inverted
        assert set(b.timings) == {"preprocess", "infer", "postprocess", "total"}


def test_pad_symmetric_matches_pad_to_multiple():
    from edgeseg.devicepath import pad_symmetric
    from edgeseg.tiling import pad_to_multiple

    rng = np.random.default_rng(0)
    for h, w, m, lo in ((5, 7, 16, 0), (30, 17, 16, 0), (16, 16, 16, 64), (33, 40, 8, 0)):
        x = rng.random((h, w), dtype=np.float32)
        np.testing.assert_array_equal(pad_symmetric(torch.from_numpy(x), m, lo).numpy(),
                                      pad_to_multiple(x, m, lo))


@pytest.mark.gpu
@cuda
def test_cuda_graphs_equal_eager(stage1_train):
    image = read_image_raw(stage1_train / "images" / f"{VAL_IDS[0]}.png")
    eager = Segmenter("default", device="cuda", diameter=None,
                      backend_options={"cuda_graphs": False, "device_postprocess": False})
    graphs = Segmenter("default", device="cuda", diameter=None, backend_options={"device_postprocess": False})
    assert graphs._backend.cuda_graphs
    for _ in range(2):  # capture, then replay
        a = eager.segment(image, probabilities=True).probabilities
        b = graphs.segment(image, probabilities=True).probabilities
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.gpu
@cuda
def test_cuda_fp16_within_parity_bound(stage1_train):
    # the FP16 bound of tests/test_precision_parity.py: DSB within 0.003 of FP32 on val images
    fp32 = Segmenter("default", device="cuda", diameter=None)
    fp16 = Segmenter("default", device="cuda", diameter=None, backend_options={"precision": "fp16"})
    assert fp16.precision == "fp16" and fp16.device == "cuda"
    s32, s16 = [], []
    from edgeseg.data import read_labels
    for i in VAL_IDS[:20]:
        image = read_image_raw(stage1_train / "images" / f"{i}.png")
        gt = read_labels(stage1_train / "labels" / f"{i}.png")
        s32.append(dsb_score(gt, fp32.segment(image).labels))
        s16.append(dsb_score(gt, fp16.segment(image).labels))
    assert abs(np.mean(s16) - np.mean(s32)) <= 0.003


@pytest.mark.gpu
@cuda
def test_cuda_device_path_agrees_with_cpu(stage1_train):
    cpu = Segmenter("default", device="cpu", diameter=None)
    gpu = Segmenter("default", device="cuda", diameter=None)
    assert gpu._backend.device_postprocess
    for i in VAL_IDS[:10]:
        image = read_image_raw(stage1_train / "images" / f"{i}.png")
        assert dsb_score(cpu.segment(image).labels, gpu.segment(image).labels) >= 0.99


@pytest.mark.gpu
@cuda
def test_cuda_compile_option(tiny_pt):
    b = open_backend(tiny_pt, device="cuda", compile=True)
    x = np.random.default_rng(0).random((1, 1, 64, 64), dtype=np.float32)
    ref = open_backend(tiny_pt, device="cuda", cuda_graphs=False)
    np.testing.assert_allclose(b.infer(x), ref.infer(x), atol=1e-4)

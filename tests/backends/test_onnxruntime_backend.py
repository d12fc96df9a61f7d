"""ONNX Runtime backend: the model's input and output shapes are checked when it is opened."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from models import shaped_onnx  # noqa: E402

from edgeseg.backends import open_backend  # noqa: E402
from edgeseg.cli import main  # noqa: E402
from edgeseg.errors import ModelError  # noqa: E402
from edgeseg.segmenter import Segmenter  # noqa: E402


def test_dynamic_single_channel_model_opens_and_runs(tiny_onnx, tmp_path):
    """The control: a plain N x 1 x H x W -> N x 3 x H x W graph passes the checks and segments."""
    path = shaped_onnx(tmp_path / "ok.onnx", tiny_onnx, ["N", 1, "H", "W"])
    backend = open_backend(path, device="cpu")
    probs = backend.infer(np.zeros((2, 1, 32, 48), np.float32))
    assert probs.shape == (2, 3, 32, 48)
    assert Segmenter(path, device="cpu").segment(np.zeros((40, 50), np.uint8)).labels.shape == (40, 50)


@pytest.mark.parametrize("shape, channels, match", [
    ([1, 1, 64, 64], 3, r"fixed input shape \(1 x 1 x 64 x 64; fixed N, H, W\)"),
    (["N", 1, 64, 64], 3, r"fixed input shape .*fixed H, W"),
    ([1, 1, "H", "W"], 3, r"fixed input shape .*fixed N\)"),
    (["N", 3, "H", "W"], 3, r"takes 3-channel input .*one grey channel"),
    (["N", 1, "H", "W"], 2, r"returns N x 2 x H x W; expected N x 3 x H x W"),
])
def test_incompatible_shapes_are_a_model_error_at_open(tiny_onnx, tmp_path, shape, channels, match):
    path = shaped_onnx(tmp_path / "bad.onnx", tiny_onnx, shape, output_channels=channels)
    with pytest.raises(ModelError, match=match) as err:
        open_backend(path, device="cpu")
    assert str(path) in str(err.value) and "edgeseg convert" in str(err.value)
    with pytest.raises(ModelError, match=match):
        Segmenter(path, device="cpu")


def test_static_model_in_predict_is_one_line(tiny_onnx, tmp_path, capsys):
    import cv2

    path = shaped_onnx(tmp_path / "static.onnx", tiny_onnx, [1, 1, 64, 64])
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((64, 64), np.uint8))
    assert main(["predict", str(tmp_path / "a.png"), "--model", str(path), "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "fixed input shape" in err[0] and "Traceback" not in err[0]

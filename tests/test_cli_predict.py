from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest

from edgeseg.cli import main

pytest.importorskip("onnxruntime")


def test_convert_then_predict(tmp_path, tiny_pt, capsys):
    onnx_path = tmp_path / "m.onnx"
    assert main(["convert", str(tiny_pt), "-o", str(onnx_path)]) == 0
    assert onnx_path.is_file() and "fp32" in capsys.readouterr().out
    img = np.zeros((40, 50), np.uint8)
    cv2.circle(img, (20, 20), 8, 200, -1)
    d = tmp_path / "imgs"
    d.mkdir()
    cv2.imwrite(str(d / "a.png"), img)
    cv2.imwrite(str(d / "b.tif"), (img.astype(np.uint16) * 200))
    out = tmp_path / "out"
    assert main(["-q", "predict", str(d), "--model", str(onnx_path), "-o", str(out), "--device", "cpu"]) == 0
    summary = capsys.readouterr().out
    assert "2 images" in summary and "onnxruntime/cpu/fp32" in summary
    for name in ("a.png", "b.tif"):
        labels = cv2.imread(str(out / f"{name}.labels.tif"), cv2.IMREAD_UNCHANGED)
        assert labels.dtype == np.uint16 and labels.shape == (40, 50)
        rows = list(csv.DictReader(open(out / f"{name}.instances.csv")))
        assert len(rows) == int(labels.max())
        if rows:
            assert {"id", "area", "centroid_y", "centroid_x", "intensity", "score"} <= set(rows[0])
        assert (out / f"{name}.overlay.png").is_file()


def test_predict_errors(tmp_path, capsys):
    assert main(["predict", str(tmp_path / "none.png"), "-o", str(tmp_path)]) == 1
    assert "image not found" in capsys.readouterr().err
    assert main(["convert", "default", "-o", str(tmp_path / "m.trt")]) == 1
    assert "expected an output ending" in capsys.readouterr().err

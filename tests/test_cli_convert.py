"""`edgeseg convert` (every precision) and `edgeseg parity`, on a tiny model and real images."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from edgeseg.cli import main

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxconverter_common")


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("calib")
    (d / "images").mkdir()
    (d / "labels").mkdir()
    rng = np.random.default_rng(0)
    for k in range(6):
        img = np.zeros((48, 48), np.uint8)
        lab = np.zeros((48, 48), np.uint16)
        for j in range(3):
            c = tuple(int(v) for v in rng.integers(8, 40, 2))
            cv2.circle(img, c, 6, 200, -1)
            cv2.circle(lab, c, 6, j + 1, -1)
        cv2.imwrite(str(d / "images" / f"s{k}.png"), img)
        cv2.imwrite(str(d / "labels" / f"s{k}.png"), lab)
    return d


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_convert_every_precision(tiny_pt, calib_dir, tmp_path, capsys, precision):
    out = tmp_path / f"m.{precision}.onnx"
    argv = ["convert", str(tiny_pt), "-o", str(out), "--precision", precision]
    if precision == "int8":
        argv += ["--calib-data", str(calib_dir), "--calib-images", "6", "--calib-cache", str(tmp_path / "c.json")]
    assert main(argv) == 0
    line = capsys.readouterr().out
    assert f"({precision}," in line and "parity: DSB" in line
    from edgeseg.converters.onnx_export import onnx_info

    assert onnx_info(out).precision == precision


def test_convert_errors(tiny_pt, calib_dir, tmp_path, capsys):
    assert main(["convert", str(tiny_pt), "-o", str(tmp_path / "m.int8.onnx"), "--precision", "int8"]) == 1
    assert "--calib-data" in capsys.readouterr().err
    assert main(["convert", str(tiny_pt), "-o", str(tmp_path / "m.onnx"), "--calib-data", str(calib_dir)]) == 1
    assert "only applies" in capsys.readouterr().err
    assert main(["convert", str(tiny_pt), "-o", str(tmp_path / "m.plan")]) == 1
    assert ".engine" in capsys.readouterr().err
    assert main(["convert", str(tiny_pt), "-o", str(tmp_path / "m.engine"), "--min-shape", "1x1x64x64"]) == 1
    assert "all three" in capsys.readouterr().err


def test_engine_without_tensorrt_says_how_to_install(tiny_pt, tmp_path, capsys):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here: the engine tests in tests/converters run instead")
    except ImportError:
        pass
    assert main(["convert", str(tiny_pt), "-o", str(tmp_path / "m.engine")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install" in err and "TensorRT" in err


def test_parity_command(tiny_pt, calib_dir, tmp_path, capsys):
    int8 = tmp_path / "m.int8.onnx"
    assert main(["convert", str(tiny_pt), "-o", str(int8), "--precision", "int8", "--calib-data",
                 str(calib_dir), "--calib-images", "6", "--no-parity"]) == 0
    capsys.readouterr()
    rc = main(["parity", str(tiny_pt), str(int8), "--data", str(calib_dir), "--subset", "all",
               "--device", "cpu", "--png", str(tmp_path / "worst.png"), "--json", str(tmp_path / "p.json")])
    out = capsys.readouterr().out
    rep = json.loads((tmp_path / "p.json").read_text())
    assert rc == (0 if rep["passed"] else 2)
    assert ("PASS" if rep["passed"] else "FAIL") in out
    assert rep["n_images"] == 6 and rep["candidate"]["precision"] == "int8" and rep["tolerance"] == 0.01
    assert {"max_abs", "mean_abs", "agreement_dsb", "reference_dsb", "candidate_dsb", "dsb_difference"} <= set(rep)
    assert cv2.imread(str(tmp_path / "worst.png")).shape[1] > 2 * 48
    # a model compared with itself passes with zero error
    assert main(["parity", str(tiny_pt), str(tiny_pt), "--data", str(calib_dir), "--subset", "all",
                 "--device", "cpu"]) == 0
    assert "PASS" in capsys.readouterr().out

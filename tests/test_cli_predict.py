from __future__ import annotations

import argparse
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


# -- OME-TIFF labels with the pixel size, µm columns, --pixel-size, --diameter in µm (issue 12) -----
def _physical_x(path):
    import xml.etree.ElementTree as ET

    import tifffile

    with tifffile.TiffFile(path) as tif:
        assert tif.is_ome and tif.pages[0].is_tiled
        pixels = next(e for e in ET.fromstring(tif.ome_metadata).iter() if e.tag.endswith("}Pixels"))
    x = pixels.get("PhysicalSizeX")
    return None if x is None else (float(x), pixels.get("PhysicalSizeXUnit"))


@pytest.fixture(scope="module")
def real_inputs(tmp_path_factory):
    """A 256 x 256 crop of a real DSB2018 fluorescence image as an OME-TIFF (0.5 µm/px) and a PNG."""
    tifffile = pytest.importorskip("tifffile")
    from edgeseg._resources import demo_dir
    from edgeseg.imageio import read_image_raw, to_grey

    img = to_grey(read_image_raw(next((demo_dir() / "images").glob("13c8*.png")))).astype(np.uint8)
    d = tmp_path_factory.mktemp("inputs")
    tifffile.imwrite(d / "a.ome.tif", img, ome=True, metadata={"axes": "YX", "PhysicalSizeX": 0.5,
                                                               "PhysicalSizeY": 0.5})
    cv2.imwrite(str(d / "b.png"), img)
    return d


def test_predict_writes_ome_tiff_with_the_pixel_size_and_µm_columns(tmp_path, real_inputs, caplog):
    pytest.importorskip("torch")
    out = tmp_path / "out"
    argv = ["predict", str(real_inputs), "-o", str(out), "--diameter", "none", "--pixel-size", "0.25"]
    assert main(argv) == 0
    assert "a.ome.tif records a pixel size of 0.5 µm, used instead of the given 0.25 µm" in caplog.text
    for name, um in (("a.ome.tif", 0.5), ("b.png", 0.25)):  # the file's own, else --pixel-size
        assert _physical_x(out / f"{name}.labels.tif") == (um, "µm")
        rows = list(csv.DictReader(open(out / f"{name}.instances.csv", encoding="utf-8")))
        assert len(rows) > 10
        for r in rows:
            area = int(r["area"])
            assert float(r["area_um2"]) == pytest.approx(area * um * um, rel=1e-3)
            assert float(r["diameter_um"]) == pytest.approx(2 * np.sqrt(area / np.pi) * um, rel=1e-3)
    a = cv2.imread(str(out / "a.ome.tif.labels.tif"), cv2.IMREAD_UNCHANGED)
    b = cv2.imread(str(out / "b.png.labels.tif"), cv2.IMREAD_UNCHANGED)
    assert a.shape == (256, 256) and np.array_equal(a, b)  # same pixels, same labels

    plain = tmp_path / "plain"  # no pixel size anywhere: no physical size, no µm columns
    assert main(["-q", "predict", str(real_inputs / "b.png"), "-o", str(plain), "--diameter", "none"]) == 0
    assert _physical_x(plain / "b.png.labels.tif") is None
    header = open(plain / "b.png.instances.csv", encoding="utf-8").readline()
    assert "area" in header and "area_um2" not in header and "diameter_um" not in header


def test_predict_diameter_in_µm(tmp_path, real_inputs, capsys):
    pytest.importorskip("torch")
    ome = str(real_inputs / "a.ome.tif")
    assert main(["-q", "predict", ome, "-o", str(tmp_path / "um"), "--diameter", "15um"]) == 0
    assert main(["-q", "predict", ome, "-o", str(tmp_path / "px"), "--diameter", "30"]) == 0
    um, px = (cv2.imread(str(tmp_path / d / "a.ome.tif.labels.tif"), cv2.IMREAD_UNCHANGED) for d in ("um", "px"))
    assert um.max() > 10 and np.array_equal(um, px)  # 15 µm at 0.5 µm/px is 30 px
    capsys.readouterr()
    rc = main(["-q", "predict", str(real_inputs / "b.png"), "-o", str(tmp_path / "x"), "--diameter", "15um"])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err
    assert "b.png failed" in err and "pixel size of the frame is unknown" in err and "--pixel-size" in err


def test_diameter_in_µm_refused_where_no_pixel_size_can_come(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["predict", str(tmp_path), "-o", str(tmp_path / "o"), "--pixel-size", "big"])
    assert "--pixel-size" in capsys.readouterr().err
    from edgeseg.commands._common import make_segmenter
    from edgeseg.errors import InputError

    args = argparse.Namespace(model="default", backend=None, device="cpu", tile=None, diameter="7um", tta=False,
                              seed_threshold=None, fg_threshold=None, min_size=None)  # live/bench/eval
    with pytest.raises(InputError, match="takes the diameter in px"):
        make_segmenter(args)


def test_threshold_options_override_the_model_and_bad_values_are_one_line(tmp_path, capsys):
    from edgeseg.cli import build_parser
    from edgeseg.commands._common import make_segmenter

    args = build_parser().parse_args(["predict", str(tmp_path), "-o", str(tmp_path / "o"),
                                      "--device", "cpu", "--min-confidence", "0.7",
                                      "--border-weight", "0.5", "--min-size", "9"])
    pp = make_segmenter(args).postprocess
    assert (pp.min_confidence, pp.border_weight, pp.min_size) == (0.7, 0.5, 9)
    default = make_segmenter(build_parser().parse_args(
        ["predict", str(tmp_path), "-o", str(tmp_path / "o"), "--device", "cpu"])).postprocess
    assert default.border_weight == 0.75  # the shipped model's own value
    img = tmp_path / "a.png"
    cv2.imwrite(str(img), np.zeros((32, 32), np.uint8))
    capsys.readouterr()
    assert main(["predict", str(img), "-o", str(tmp_path / "o"), "--device", "cpu",
                 "--border-weight", "1.5"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "border_weight must be a number in [0, 1], got 1.5" in err[0]

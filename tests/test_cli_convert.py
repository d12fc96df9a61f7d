"""`edgeseg convert` (every precision) and `edgeseg parity`, on a tiny model and real images."""

from __future__ import annotations

import json

import cv2
import pytest

from edgeseg.cli import main

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxconverter_common")


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


# -- issue 9: convert never writes over its input, builds any precision as it is, reads names ------
def _sha(path):
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def _has_tensorrt() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return True


def test_convert_never_writes_over_its_input(tiny_onnx, calib_dir, tmp_path, capsys):
    import shutil

    m = tmp_path / "m"
    m.mkdir()
    src = shutil.copy(tiny_onnx, m / "model.onnx")
    (m / "link.onnx").symlink_to(src)
    before = _sha(src)
    # the reproduction: an fp16 engine from model.onnx used to write the fp16 graph over it
    rc = main(["convert", str(src), "-o", str(m / "model.engine"), "--precision", "fp16", "--no-parity"])
    written = sorted(p.name for p in m.iterdir())
    if rc == 1:  # no TensorRT here: stops at the build, having written nothing at all
        assert "TensorRT" in capsys.readouterr().err and written == ["link.onnx", "model.onnx"]
    else:  # TensorRT: only the named engine and its sidecar
        assert written == ["link.onnx", "model.engine", "model.engine.json", "model.onnx"]
    assert _sha(src) == before
    # -o naming the input, however spelt, is refused before anything runs
    for out in (src, m / "." / "model.onnx", m / "link.onnx"):
        assert main(["convert", str(src), "-o", str(out), "--precision", "fp16"]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "is also an input" in err[0]
    assert main(["convert", str(m / "link.onnx"), "-o", str(src)]) == 1
    assert "is also an input" in capsys.readouterr().err
    # nor may the output replace the calibration cache
    cache = m / "ranges.onnx"
    cache.write_text("{}")
    assert main(["convert", str(src), "-o", str(cache), "--precision", "int8", "--calib-data", str(calib_dir),
                 "--calib-cache", str(cache)]) == 1
    assert "is also an input" in capsys.readouterr().err and cache.read_text() == "{}"
    # a conversion beside the input adds exactly the named file
    assert main(["convert", str(src), "-o", str(m / "model.fp16.onnx"), "--precision", "fp16", "--no-parity"]) == 0
    assert sorted(p.name for p in m.iterdir()) == ["link.onnx", "model.fp16.onnx", "model.onnx", "ranges.onnx"]
    assert _sha(src) == before


@pytest.fixture(scope="module")
def tiny_int8(tiny_pt, calib_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("int8") / "model.int8.onnx"
    # the TensorRT flavour: the one an engine is built from (the ONNX Runtime one is refused there)
    assert main(["-q", "convert", str(tiny_pt), "-o", str(out), "--precision", "int8", "--int8-target",
                 "tensorrt", "--calib-data", str(calib_dir), "--calib-images", "6", "--no-parity"]) == 0
    return out


@pytest.mark.skipif(_has_tensorrt(), reason="TensorRT is installed: the build itself runs in tests/converters")
@pytest.mark.parametrize("extra", [[], ["--precision", "int8"]])
def test_int8_onnx_goes_to_the_tensorrt_step_as_it_is(tiny_int8, tmp_path, capsys, caplog, extra):
    """The README's device step: precision read from the file, no --calib-data demanded; without
    TensorRT the build is reached and fails there, in one line."""
    before = _sha(tiny_int8)
    argv = ["convert", str(tiny_int8), "-o", str(tmp_path / "model.int8.engine"), *extra]
    rc = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1
    assert err[0].startswith("edgeseg convert: error: TensorRT is needed") and "pip install" in err[0]
    assert main(["-v", *argv]) == 1  # the stages it went through, from the log
    stages = [r.getMessage() for r in caplog.records if r.name == "edgeseg.converters.pipeline"]
    assert stages == ["build TensorRT engine"]
    assert capsys.readouterr().err.strip().splitlines()[-1] == err[0]
    assert _sha(tiny_int8) == before and list(tmp_path.iterdir()) == []


def test_fp16_and_int8_onnx_keep_their_precision(tiny_onnx, tiny_int8, calib_dir, tmp_path, capsys):
    from edgeseg.converters.onnx_export import onnx_info

    fp16 = tmp_path / "model.fp16.onnx"
    assert main(["convert", str(tiny_onnx), "-o", str(fp16), "--precision", "fp16", "--no-parity"]) == 0
    copy = tmp_path / "copy.fp16.onnx"  # no --precision: as it is (a byte copy, nothing to compare)
    assert main(["convert", str(fp16), "-o", str(copy)]) == 0
    assert copy.read_bytes() == fp16.read_bytes() and "(fp16," in capsys.readouterr().out
    for src, to in ((fp16, "int8"), (fp16, "fp32"), (tiny_int8, "fp16")):
        assert main(["convert", str(src), "-o", str(tmp_path / "x.onnx"), "--precision", to]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"is already {onnx_info(src).precision} and cannot become {to}" in err[0]
    assert main(["convert", str(tiny_int8), "-o", str(tmp_path / "y.engine"), "--calib-data", str(calib_dir)]) == 1
    assert "already int8" in capsys.readouterr().err and not (tmp_path / "x.onnx").exists()


def test_fp32_export_parity_is_against_the_checkpoint(tiny_pt, tmp_path, capsys):
    """Not the exported file against itself (always 1.0), but torch against ONNX Runtime."""
    assert main(["convert", str(tiny_pt), "-o", str(tmp_path / "m.onnx")]) == 0
    out = capsys.readouterr().out
    assert "vs the fp32 checkpoint (torch)'s instances" in out


def test_convert_bad_onnx_sources_are_one_line(tiny_onnx, tmp_path, capsys):
    trunc = tmp_path / "trunc.onnx"
    data = tiny_onnx.read_bytes()
    trunc.write_bytes(data[: len(data) // 2])
    cases = [(tmp_path / "missing.onnx", "ONNX model not found"),
             (trunc, "could not be read as an ONNX model"),
             (tmp_path, "cannot tell the conversion target")]
    for src, match in cases[:2]:
        for argv in (["-o", str(tmp_path / "o.onnx")], ["-o", str(tmp_path / "o.fp16.onnx"), "--precision", "fp16"],
                     ["-o", str(tmp_path / "o.engine")]):
            assert main(["convert", str(src), *argv]) == 1
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and match in err[0] and str(src) in err[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trunc.onnx"]


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_convert_reads_the_input_name(tiny_onnx, calib_dir, tmp_path, capsys, precision):
    from models import renamed_input_onnx

    from edgeseg.converters.onnx_export import io_names, load_onnx, onnx_info

    src = renamed_input_onnx(tiny_onnx, tmp_path / "renamed.onnx", "input")
    out = tmp_path / f"renamed.{precision}.onnx"
    argv = ["convert", str(src), "-o", str(out), "--precision", precision]
    if precision == "int8":
        argv += ["--calib-data", str(calib_dir), "--calib-images", "6"]
    assert main(argv) == 0
    assert "parity: DSB" in capsys.readouterr().out
    assert io_names(load_onnx(out)) == ("input", "probs") and onnx_info(out).precision == precision


def test_parity_arguments_are_checked(tiny_pt, calib_dir, tmp_path, capsys):
    base = ["parity", str(tiny_pt), str(tiny_pt), "--data", str(calib_dir), "--subset", "all", "--device", "cpu"]
    for bad, match in ((["--limit", "-3"], "--limit must be >= 1"), (["--limit", "0"], "--limit must be >= 1"),
                       (["--tolerance", "nan"], "finite number >= 0"), (["--tolerance", "inf"], "finite"),
                       (["--tolerance", "-0.1"], "finite number >= 0")):
        assert main([*base, *bad, "--json", str(tmp_path / "p.json")]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and match in err[0]
    assert not (tmp_path / "p.json").exists()
    assert main([*base, "--limit", "2", "--tolerance", "0", "--json", str(tmp_path / "p.json")]) == 0
    rep = json.loads((tmp_path / "p.json").read_text())
    assert rep["n_images"] == 2 and rep["tolerance"] == 0.0 and "on 2 images" in capsys.readouterr().out


def test_compare_refuses_a_tolerance_that_cannot_judge():
    from edgeseg.errors import InputError
    from edgeseg.parity import check_tolerance

    assert check_tolerance(0) == 0.0 and check_tolerance("0.01") == 0.01
    for bad in (float("nan"), float("inf"), -1e-9, "x", None, True):
        with pytest.raises(InputError, match="tolerance"):
            check_tolerance(bad)

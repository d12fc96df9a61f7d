"""``convert``: which INT8 flavour each output gets, engines from FP16/INT8 .onnx, conflicting flags."""

from __future__ import annotations

import pytest

from edgeseg.cli import main

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxconverter_common")


def _target(path):
    from edgeseg.converters.onnx_export import onnx_info

    return onnx_info(path).model_card["int8"]["target"]


@pytest.fixture(scope="module")
def int8_models(tiny_pt, calib_dir, tmp_path_factory):
    """(ONNX Runtime flavour, TensorRT flavour) made by `edgeseg convert`, sharing one range cache."""
    d = tmp_path_factory.mktemp("flavours")
    common = ["--precision", "int8", "--calib-data", str(calib_dir), "--calib-images", "6",
              "--calib-cache", str(d / "ranges.json"), "--no-parity"]
    cpu, trt = d / "m.int8.onnx", d / "m.trt.int8.onnx"
    assert main(["convert", str(tiny_pt), "-o", str(cpu), *common]) == 0
    assert main(["convert", str(tiny_pt), "-o", str(trt), *common, "--int8-target", "tensorrt"]) == 0
    return cpu, trt


def test_an_onnx_output_gets_the_onnxruntime_flavour_unless_told(int8_models):
    cpu, trt = int8_models
    assert _target(cpu) == "onnxruntime" and _target(trt) == "tensorrt"


@pytest.fixture()
def fake_build(monkeypatch):
    """build_engine replaced by a recorder (no TensorRT here): the ONNX it gets and its flavour."""
    from edgeseg.converters import tensorrt_build

    calls = []

    def build(onnx_path, out, **kw):
        calls.append((onnx_path, _target(onnx_path) if "int8" in str(onnx_path) else None))
        out.write_bytes(b"plan")
        return out

    monkeypatch.setattr(tensorrt_build, "build_engine", build)
    return calls


def test_an_engine_output_calibrates_the_tensorrt_flavour(tiny_pt, calib_dir, tmp_path, fake_build):
    from edgeseg.converters.pipeline import convert

    rep = convert(tiny_pt, tmp_path / "m.int8.engine", precision="int8", calib_data=calib_dir, calib_images=6,
                  parity=False)
    # the calibrated ONNX is an intermediate in a temporary folder: nothing but the output is written
    assert [(p.name, t) for p, t in fake_build] == [("m.int8.onnx", "tensorrt")]
    assert rep.precision == "int8" and rep.onnx is None
    assert not (tmp_path / "m.int8.onnx").exists()


def test_an_engine_from_an_int8_onnx_is_built_as_it_is(int8_models, tmp_path, fake_build, capsys):
    cpu, trt = int8_models
    assert main(["convert", str(trt), "-o", str(tmp_path / "m.int8.engine"), "--no-parity"]) == 0
    assert fake_build == [(trt, "tensorrt")] and "(int8," in capsys.readouterr().out


def test_the_onnxruntime_flavour_is_refused_for_engines(int8_models, tmp_path, capsys):
    cpu, _ = int8_models
    assert main(["convert", str(cpu), "-o", str(tmp_path / "m.int8.engine")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "ONNX Runtime on the CPU" in err and "--int8-target tensorrt" in err
    assert not list(tmp_path.glob("m.int8.engine*"))


@pytest.mark.parametrize("argv, match", [
    (["-o", "{tmp}/m.onnx", "--int8-target", "tensorrt"], "only applies to --precision int8, not fp32"),
    (["-o", "{tmp}/m.fp16.onnx", "--precision", "fp16", "--int8-target", "onnxruntime"], "not fp16"),
    (["-o", "{tmp}/m.engine", "--precision", "int8", "--int8-target", "onnxruntime", "--calib-data", "{calib}"],
     "drop --int8-target onnxruntime"),
])
def test_conflicting_flags_are_refused(tiny_pt, calib_dir, tmp_path, capsys, argv, match):
    argv = [a.format(tmp=tmp_path, calib=calib_dir) for a in argv]
    assert main(["convert", str(tiny_pt), *argv]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("extra, match", [
    (["--precision", "fp16"], "--precision fp16 conflicts"),
    (["--calib-data", "x"], "already int8"),
    (["--int8-target", "tensorrt"], "already int8"),
])
def test_engine_from_int8_onnx_conflicts(int8_models, tmp_path, capsys, extra, match):
    _, trt = int8_models
    assert main(["convert", str(trt), "-o", str(tmp_path / "m.engine"), *extra]) == 1
    assert match in capsys.readouterr().err

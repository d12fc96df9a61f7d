"""Engine sidecars are validated field by field, and the rebuild command they suggest quotes its
names (a forged sidecar cannot turn the hint into another shell command). No TensorRT needed."""

from __future__ import annotations

import json
import shlex

import pytest

from edgeseg._atomic import atomic_write_json
from edgeseg._trt import GpuInfo, default_profile, make_sidecar, read_sidecar, rebuild_command, sidecar_path
from edgeseg.errors import ModelError
from edgeseg.modelinfo import ModelInfo

INFO = ModelInfo(model_config={"width": 4, "depth": 4}, multiple=16, precision="fp16")


def _sidecar(**over):
    d = make_sidecar(info=INFO, profile=default_profile(16), trt_version="10.3.0.30", gpu=GpuInfo("Orin", "8.7"),
                     onnx_name="model.fp16.onnx", onnx_sha256="a" * 64, engine_name="m.engine",
                     engine_sha256="b" * 64, engine_bytes=1, input_name="image", output_name="probs",
                     build_seconds=1.0, workspace_gib=2.0, platform_name="Linux-aarch64")
    d.update(over)
    return d


def _write(tmp_path, name="m.engine", **over):
    engine = tmp_path / name
    atomic_write_json(sidecar_path(engine), _sidecar(**over))
    return engine


def test_a_valid_sidecar_reads(tmp_path):
    sc = read_sidecar(_write(tmp_path))
    assert sc.profile == default_profile(16) and sc.info.precision == "fp16"


@pytest.mark.parametrize("onnx", ["x.onnx; rm -rf ~", "$(reboot).onnx", "`id`.onnx", "a b.onnx", "it's.onnx"])
def test_forged_onnx_name_is_quoted_in_the_hint(tmp_path, onnx):
    engine = _write(tmp_path, trt_version="9.0", onnx=onnx, profile={"min": [1, 1, 0, 64], "opt": [1, 1, 64, 64],
                                                                      "max": [1, 1, 64, 64]})
    with pytest.raises(ModelError) as err:
        read_sidecar(engine)
    cmd = str(err.value).split("`")[1] if "`" not in onnx else None
    assert f"edgeseg convert {shlex.quote(onnx)} -o m.engine" in str(err.value)
    if cmd is not None:  # the hint parses back into exactly: edgeseg convert ONNX -o ENGINE
        assert shlex.split(cmd) == ["edgeseg", "convert", onnx, "-o", "m.engine"]


def test_rebuild_command_quotes_and_falls_back():
    assert rebuild_command("dir/model.int8.engine", "model.int8.onnx") == \
        "edgeseg convert model.int8.onnx -o model.int8.engine"
    assert shlex.split(rebuild_command("/x/my engine.engine", "a;b.onnx")) == \
        ["edgeseg", "convert", "a;b.onnx", "-o", "my engine.engine"]
    for bad in (None, "", "  ", "x\nrm -rf ~", 42, ["a"]):
        assert rebuild_command("m.engine", bad) == "edgeseg convert model.onnx -o m.engine"


@pytest.mark.parametrize("profile", [
    {"min": [1, 1, 0, 64], "opt": [1, 1, 64, 64], "max": [1, 1, 64, 64]},
    {"min": [1, 1, -64, 64], "opt": [1, 1, 64, 64], "max": [1, 1, 64, 64]},
    {"min": [1, 1, 64, 64], "opt": [1, 1, 64, 64], "max": [0, 1, 64, 64]},
    {"min": [1, 1, 128, 128], "opt": [1, 1, 64, 64], "max": [1, 1, 256, 256]},
    {"min": [1, 1, 64.5, 64], "opt": [1, 1, 64, 64], "max": [1, 1, 64, 64]},
    {"min": [1, True, 64, 64], "opt": [1, 1, 64, 64], "max": [1, 1, 64, 64]},
    {"min": "1x1x64x64", "opt": [1, 1, 64, 64], "max": [1, 1, 64, 64]},
    [[1, 1, 64, 64]] * 3,
])
def test_invalid_profiles_are_refused(tmp_path, profile):
    with pytest.raises(ModelError, match="invalid profile") as err:
        read_sidecar(_write(tmp_path, profile=profile))
    assert "edgeseg convert model.fp16.onnx -o m.engine" in str(err.value)


@pytest.mark.parametrize("field, value", [
    ("trt_version", 10), ("trt_version", "ten"), ("compute_capability", 8.7), ("compute_capability", "8.7; id"),
    ("engine_sha256", "b" * 63), ("engine_sha256", None), ("input_name", ""), ("output_name", ["probs"]),
    ("model_info", []), ("gpu_name", {"x": 1}), ("platform", "Linux\naarch64"), ("precision", "int4"),
    ("onnx", 7),
])
def test_invalid_fields_are_refused_in_one_line(tmp_path, field, value):
    with pytest.raises(ModelError, match=f"invalid fields.*{field}") as err:
        read_sidecar(_write(tmp_path, **{field: value}))
    assert "\n" not in str(err.value) and "edgeseg convert" in str(err.value)


def test_raw_json_with_wrong_types_never_escapes_as_another_error(tmp_path):
    engine = tmp_path / "m.engine"
    for broken in ({**_sidecar(), "model_info": "x"}, {**_sidecar(), "profile": None},
                   {**_sidecar(), "format_version": "two"}):
        sidecar_path(engine).write_text(json.dumps(broken))
        with pytest.raises(ModelError):
            read_sidecar(engine)

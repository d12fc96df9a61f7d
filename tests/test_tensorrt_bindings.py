"""edgeseg against the REAL ``tensorrt`` Python bindings of TensorRT 10.3 and 11.4, on any Linux CPU.

PyPI's ``tensorrt-cu12-bindings`` wheels (about 1.2 MB each; cached in $EDGESEG_TRT_WHEELS or
~/.cache/edgeseg-trt) hold the real pybind11 module. It loads once libnvinfer.so.N,
libnvonnxparser.so.N and libnvinfer_plugin.so.N resolve: stub libraries compiled here with ``cc``
(tests/fixtures/trt_stubs) export the factory symbols it links against and behave like TensorRT
where CUDA cannot start (the reason logged as a WARNING, then NULL). A subprocess
(tests/trt_bindings_probe.py) then checks every class, member, enum value and signature edgeseg
uses (tests/trt_api.py, which the fakes of the other TensorRT tests share), and that "TensorRT
present, CUDA unusable" is one EdgesegError line carrying TensorRT's reason: in build_engine, in
``edgeseg convert``, and in the TensorRT backend's runtime. Skips, saying why, where the package
registry or a C compiler is missing.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from trt_api import REAL_FLAGS

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
STUBS = HERE / "fixtures" / "trt_stubs"
BINDINGS = {10: "10.3.0", 11: "11.4.0.106"}  # tensorrt-cu12-bindings releases (JetPack 6 ships 10.3)
LOG_SLOT = {10: 0, 11: 4}  # vtable slot of ILogger::log (see nvinfer.c)
REASON = "CUDA initialization failure with error: 35. Please check your CUDA installation"

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the stub TensorRT libraries are Linux shared objects")


def _cache() -> Path:
    return Path(os.environ.get("EDGESEG_TRT_WHEELS") or Path.home() / ".cache" / "edgeseg-trt")


def _wheel(version: str) -> Path:
    """The cached bindings wheel for this Python, downloaded (without dependencies) if needed."""
    tag = f"cp{sys.version_info[0]}{sys.version_info[1]}"
    pattern = f"tensorrt_cu12_bindings-{version}-{tag}-*.whl"
    found = sorted(_cache().glob(pattern))
    if not found:
        _cache().mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-q", "-d", str(_cache()), f"tensorrt-cu12-bindings=={version}"]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            why = (proc.stderr.strip().splitlines() or ["no wheel for this platform"])[-1]
        except (OSError, subprocess.TimeoutExpired) as exc:
            why = str(exc)
        found = sorted(_cache().glob(pattern))
        if not found:
            pytest.skip(f"tensorrt-cu12-bindings=={version} ({tag}) could not be downloaded into {_cache()} "
                        f"(is the package registry reachable?): {why}")
    return found[-1]


def _cc(src: Path, out: Path, *defines: str) -> None:
    soname = out.name
    proc = subprocess.run(["cc", "-shared", "-fPIC", "-O1", *defines, "-o", str(out), f"-Wl,-soname,{soname}",
                           str(src)], capture_output=True, text=True)
    if proc.returncode:
        pytest.fail(f"compiling {src.name} failed: {proc.stderr}")


@pytest.fixture(scope="module")
def model_onnx(tmp_path_factory) -> Path:
    """An fp32 edgeseg ONNX model (an Identity graph with edgeseg metadata): all TensorRT reads."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from edgeseg.converters.onnx_export import set_metadata
    from edgeseg.modelinfo import ModelInfo

    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, "H", "W"])
    y = helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 1, "H", "W"])
    graph = helper.make_graph([helper.make_node("Identity", ["image"], ["probs"])], "g", [x], [y])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    set_metadata(proto, ModelInfo(model_config={"width": 4, "depth": 4}, multiple=16, precision="fp32"))
    path = tmp_path_factory.mktemp("trt-model") / "model.onnx"
    onnx.save(proto, str(path))
    return path


@pytest.fixture(scope="module", params=sorted(BINDINGS), ids=lambda m: f"trt{m}")
def probe(request, tmp_path_factory, model_onnx):
    """Run the probe for one TensorRT major: {'driver': result, 'nodriver': result}."""
    major = request.param
    if shutil.which("cc") is None:
        pytest.skip("no C compiler (cc) to build the stub TensorRT libraries")
    wheel = _wheel(BINDINGS[major])
    root = tmp_path_factory.mktemp(f"trt{major}")
    site, libs, driver = root / "site", root / "lib", root / "libcuda"
    for d in (libs, driver):
        d.mkdir()
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    _cc(STUBS / "nvinfer.c", libs / f"libnvinfer.so.{major}", f"-DLOG_SLOT={LOG_SLOT[major]}")
    _cc(STUBS / "nvonnxparser.c", libs / f"libnvonnxparser.so.{major}")
    _cc(STUBS / "nvinfer_plugin.c", libs / f"libnvinfer_plugin.so.{major}")
    _cc(STUBS / "cuda.c", driver / "libcuda.so.1")
    results = {}
    for mode, path in (("driver", f"{libs}:{driver}"), ("nodriver", str(libs))):
        work = root / f"work-{mode}"
        work.mkdir()
        env = {**os.environ, "LD_LIBRARY_PATH": path, "STUB_TRT_REASON": REASON,
               "PYTHONPATH": os.pathsep.join([str(site), str(HERE), str(REPO)])}
        proc = subprocess.run([sys.executable, str(HERE / "trt_bindings_probe.py"), str(major), str(model_onnx),
                               str(work), mode], capture_output=True, text=True, env=env, timeout=300)
        assert proc.returncode == 0, f"probe ({mode}) failed:\n{proc.stdout}\n{proc.stderr}"
        results[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
    assert results["driver"]["version"] == BINDINGS[major]
    return major, results


def _one_line_edgeseg_error(err: dict | None, *needles: str) -> str:
    assert err is not None, "expected an error"
    assert err["edgeseg"] and err["type"] == "BackendUnavailableError", err
    msg = err["message"]
    assert "\n" not in msg and "TypeError" not in msg and "nullptr" not in msg, msg
    for needle in needles:
        assert needle in msg, (needle, msg)
    return msg


def test_every_member_and_signature_edgeseg_uses_exists(probe):
    major, res = probe
    r = res["driver"]
    assert r["api_problems"] == []
    assert r["flags"] == REAL_FLAGS[major]  # the fakes' enums (tests/trt_api.py) are the real ones
    assert r["network_flags"] == (2 if major == 10 else None)  # 10.x: 1 << STRONGLY_TYPED; 11.x: none
    assert r["captured"] == {"errors": ["probe error"], "warnings": ["probe warning"]}


def test_tensorrt_present_cuda_unusable_is_one_line_with_tensorrt_s_reason(probe):
    major, res = probe
    r = res["driver"]
    # the bindings' own failure, which edgeseg must never let through
    assert r["raw_builder"]["type"] == "TypeError" and "nullptr" in r["raw_builder"]["message"]
    _one_line_edgeseg_error(r["builder"], REASON, "could not create its builder", "driver")
    msg = _one_line_edgeseg_error(r["build_engine"], REASON, f"TensorRT {BINDINGS[major]}")
    assert "tensorrt-cu12" in msg and "JetPack" in msg
    assert r["files_after_build"] == []  # nothing written
    cli = r["cli"]
    assert cli["rc"] == 1
    assert "Traceback" not in cli["stderr"] and "TypeError" not in cli["stderr"]
    lines = cli["stderr"].strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgeseg convert: error: TensorRT") and REASON in lines[0]
    _one_line_edgeseg_error(r["runtime"], REASON, "could not create its runtime")
    assert r["runtime_context"] == {"stack": 0, "detached": 1}  # popped and released


def test_no_nvidia_driver_is_one_line(probe):
    _, res = probe
    r = res["nodriver"]
    if r["build_engine"] and "libcuda" not in r["build_engine"]["message"]:
        pytest.skip("this machine has an NVIDIA driver library of its own")
    _one_line_edgeseg_error(r["build_engine"], "libcuda.so.1", "no NVIDIA driver")
    assert platform.system() == "Linux"

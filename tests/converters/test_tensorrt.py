"""TensorRT engine builder: pure logic everywhere, the build flow on a fake TensorRT, and a real
build where TensorRT and a CUDA GPU exist (marked ``tensorrt`` and ``gpu``)."""

from __future__ import annotations

import json
import sys
import types

import numpy as np
import pytest
from edgeseg.converters.tensorrt_build import build_engine, format_parser_errors

from edgeseg._atomic import atomic_write_json
from edgeseg._trt import (
    GpuInfo,
    Profile,
    check_batch_shape,
    check_compatibility,
    check_trt_version,
    default_profile,
    make_sidecar,
    network_flags,
    parse_shape,
    read_sidecar,
    sidecar_path,
    validate_profile,
    version_tuple,
)
from edgeseg.errors import BackendUnavailableError, InputError, ModelError
from edgeseg.modelinfo import ModelInfo
from trt_api import Flags10, Flags11

INFO = ModelInfo(model_config={"width": 4, "depth": 4}, multiple=16, precision="int8")
GPU = GpuInfo("Orin", "8.7")


# -- shapes and profiles ------------------------------------------------------------------------
@pytest.mark.parametrize("text, shape", [("1x1x1024x1024", (1, 1, 1024, 1024)),
                                         (" 4 X 1 x 64 x 64 ", (4, 1, 64, 64))])
def test_parse_shape(text, shape):
    assert parse_shape(text) == shape


@pytest.mark.parametrize("text", ["1x1x1024", "1x1x64x64x1", "axbxcxd", "1x1x-64x64", "1x0x64x64", "",
                                  "1.5x1x64x64", "1,1,64,64"])
def test_parse_shape_rejects(text):
    with pytest.raises(InputError, match="1x1x1024x1024|zero"):
        parse_shape(text)
    with pytest.raises(InputError):
        parse_shape(1024)  # type: ignore[arg-type]


def test_validate_profile_accepts_tuples_and_strings():
    p = validate_profile([(1, 1, 32, 32), "2x1x64x48", [4, 1, 64, 64]], multiple=16)
    assert p == Profile((1, 1, 32, 32), (2, 1, 64, 48), (4, 1, 64, 64))
    assert p.contains((3, 1, 48, 64)) and not p.contains((5, 1, 64, 64)) and not p.contains((1, 1, 16, 32))
    as_arrays = validate_profile([np.array(s) for s in p], multiple=16)  # numpy integers are fine
    assert as_arrays == p and all(type(d) is int for s in as_arrays for d in s)


@pytest.mark.parametrize("profile, match", [
    ([(1, 2, 32, 32), (1, 2, 32, 32), (1, 2, 32, 32)], "C must be 1"),
    ([(1, 1, 32, 32), (1, 1, 40, 32), (1, 1, 64, 64)], "multiples of 16"),
    ([(1, 1, 64, 64), (1, 1, 32, 32), (1, 1, 64, 64)], "min <= opt <= max"),
    ([(2, 1, 32, 32), (1, 1, 32, 32), (4, 1, 64, 64)], "min <= opt <= max"),
    ([(1, 1, 32, 32), (1, 1, 64, 64)], "three"),
    ([(1, 1, 32), (1, 1, 32, 32), (1, 1, 64, 64)], "4 integers"),
    ([(True, 1, 32, 32), (1, 1, 32, 32), (1, 1, 64, 64)], "4 integers"),
    ([(1, 1, 32.0, 32), (1, 1, 32, 32), (1, 1, 64, 64)], "4 integers"),
    ([(0, 1, 32, 32), (1, 1, 32, 32), (1, 1, 64, 64)], "< 1"),
    (7, "min, opt, max"),
])
def test_validate_profile_rejects(profile, match):
    with pytest.raises(InputError, match=match):
        validate_profile(profile, multiple=16)


def test_default_profile():
    assert default_profile(16) == Profile((1, 1, 64, 64), (1, 1, 1024, 1024), (4, 1, 1024, 1024))
    assert default_profile(128) == Profile((1, 1, 128, 128), (1, 1, 1024, 1024), (4, 1, 1024, 1024))
    odd = default_profile(48)
    assert odd.min[2] == 96 and odd.max[3] == 1056
    for m in (4, 16, 32, 48, 128):
        assert validate_profile(default_profile(m), m) == default_profile(m)


def test_check_batch_shape_names_the_profile():
    prof = default_profile(16)
    check_batch_shape((4, 1, 1024, 1024), prof, 16)
    with pytest.raises(InputError, match=r"outside the optimisation profile.*max 4x1x1024x1024"):
        check_batch_shape((5, 1, 1024, 1024), prof, 16)
    with pytest.raises(InputError, match="min 1x1x64x64"):
        check_batch_shape((1, 1, 32, 32), prof, 16)
    with pytest.raises(InputError, match="multiples of 16"):
        check_batch_shape((1, 1, 72, 64), prof, 16)
    with pytest.raises(InputError, match="N x 1 x H x W"):
        check_batch_shape((1, 3, 64, 64), prof, 16)


# -- versions and flags ---------------------------------------------------------------------------
class PybindLike:  # pybind11 enum members are not ints but convert with int()
    def __init__(self, value):
        self.value = value

    def __int__(self):
        return self.value


def test_network_flags_follow_the_enum_value():
    assert network_flags(Flags10, 10) == 0b10  # 1 << STRONGLY_TYPED (1 in 10.x)
    assert network_flags(Flags11, 11) is None  # 11.x: create_network() without flags
    assert network_flags(types.SimpleNamespace(STRONGLY_TYPED=PybindLike(1)), 10) == 2
    assert network_flags(types.SimpleNamespace(), 12) is None  # a future release without the member
    with pytest.raises(BackendUnavailableError, match="STRONGLY_TYPED"):
        network_flags(types.SimpleNamespace(), 10)


def test_trt_version_rules():
    assert version_tuple("10.3.0.30") == (10, 3, 0, 30)
    assert version_tuple("11.0.0.post1") == (11, 0, 0)
    assert check_trt_version("10.3.0.30")[:2] == (10, 3)
    assert check_trt_version("11.1.0")[0] == 11
    with pytest.raises(BackendUnavailableError, match=r"TensorRT 8\.6\.2 is installed.*10 or newer"):
        check_trt_version("8.6.2")
    with pytest.raises(ModelError):
        version_tuple("unknown")


# -- sidecar --------------------------------------------------------------------------------------
def _sidecar(**over):
    d = make_sidecar(info=INFO, profile=default_profile(16), trt_version="10.3.0.30", gpu=GPU,
                     onnx_name="model.int8.onnx", onnx_sha256="a" * 64, engine_name="model.int8.engine",
                     engine_sha256="b" * 64, engine_bytes=123, input_name="image", output_name="probs",
                     build_seconds=12.345678, workspace_gib=2.0, platform_name="Linux-aarch64")
    d.update(over)
    return d


def test_sidecar_round_trip(tmp_path):
    engine = tmp_path / "model.int8.engine"
    assert sidecar_path(engine).name == "model.int8.engine.json"
    atomic_write_json(sidecar_path(engine), _sidecar())
    sc = read_sidecar(engine)
    d = sc.data
    assert d["format"] == "edgeseg-engine" and d["precision"] == "int8"
    assert d["trt_version"] == "10.3.0.30" and d["compute_capability"] == "8.7" and d["gpu_name"] == "Orin"
    assert d["profile"] == {"input": "image", "min": [1, 1, 64, 64], "opt": [1, 1, 1024, 1024],
                            "max": [4, 1, 1024, 1024]}
    assert d["onnx_sha256"] == "a" * 64 and d["engine_sha256"] == "b" * 64 and d["build_seconds"] == 12.346
    assert {"edgeseg_version", "built_at", "workspace_gib", "platform"} <= set(d)
    assert sc.profile == default_profile(16)
    assert sc.info.precision == "int8" and sc.info.multiple == 16 and sc.info.classes == INFO.classes
    assert sc.info.postprocess == INFO.postprocess and sc.info.norm == INFO.norm
    assert sc.info.source_sha256 == "a" * 64  # provenance: built from that ONNX


@pytest.mark.parametrize("content, match", [
    (None, "no sidecar"),
    ("{not json", "not readable JSON"),
    (json.dumps({"format": "other"}), "not an edgeseg engine sidecar"),
    (json.dumps({"format": "edgeseg-engine", "format_version": 1}), "lacks"),
    (json.dumps({**_sidecar(), "format_version": 99}), "newer"),
    (json.dumps({**_sidecar(), "profile": {"min": [1, 1], "opt": [1], "max": []}}), "invalid profile"),
])
def test_bad_sidecars_say_how_to_rebuild(tmp_path, content, match):
    engine = tmp_path / "m.engine"
    if content is not None:
        sidecar_path(engine).write_text(content)
    with pytest.raises(ModelError, match=match) as err:
        read_sidecar(engine)
    assert "edgeseg convert" in str(err.value) and "-o m.engine" in str(err.value)


def test_compatibility_rules(caplog):
    sc = _sidecar()
    ok = {"trt_version": "10.3.0.30", "gpu": GPU, "engine": "m.engine", "platform_name": "Linux-aarch64"}
    check_compatibility(sc, **ok)
    with pytest.raises(ModelError, match=r"TensorRT 10\.3\.0\.30.*TensorRT 10\.3\.1 is installed") as e:
        check_compatibility(sc, **{**ok, "trt_version": "10.3.1"})
    assert "edgeseg convert model.int8.onnx -o m.engine" in str(e.value)
    with pytest.raises(ModelError, match=r"10\.3\.0\.30.*11\.0\.0"):
        check_compatibility(sc, **{**ok, "trt_version": "11.0.0"})
    with pytest.raises(ModelError, match=r"compute capability 8\.7 \(Orin\).*RTX 3090\).*8\.6"):
        check_compatibility(sc, **{**ok, "gpu": GpuInfo("NVIDIA GeForce RTX 3090", "8.6")})
    with pytest.raises(ModelError, match="Linux-aarch64.*Windows-AMD64"):
        check_compatibility(sc, **{**ok, "platform_name": "Windows-AMD64"})
    caplog.clear()
    check_compatibility(sc, **{**ok, "trt_version": "10.3.0.26"})  # build number only: warn
    check_compatibility(sc, **{**ok, "gpu": GpuInfo("Orin NX", "8.7")})  # same arch, other model
    assert "10.3.0.26" in caplog.text and "Orin NX" in caplog.text


def test_format_parser_errors_names_nodes():
    class Err:
        def __init__(self, node, name, op, desc):
            self._v = (node, name, op, desc)

        def node(self):
            return self._v[0]

        def node_name(self):
            return self._v[1]

        def node_operator(self):
            return self._v[2]

        def desc(self):
            return self._v[3]

    class OldErr:  # parsers before node_name()/node_operator()
        def node(self):
            return -1

        def desc(self):
            return "model has no opset"

    text = format_parser_errors([Err(3, "/enc/Conv_2", "Conv", "unsupported pads"),
                                 Err(7, "/dec/Resize", "Resize", "bad mode"), OldErr()])
    assert "node #3, node /enc/Conv_2, op Conv: unsupported pads" in text
    assert "/dec/Resize" in text and "bad mode" in text and "[3] graph: model has no opset" in text


# -- build_engine on this machine (no TensorRT) and on a fake TensorRT ---------------------------
@pytest.fixture()
def meta_onnx(tmp_path):
    """A tiny ONNX graph with edgeseg metadata (Identity; enough for everything before TensorRT)."""
    onnx = pytest.importorskip("onnx")
    from edgeseg.converters.onnx_export import set_metadata
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, "H", "W"])
    y = helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["N", 1, "H", "W"])
    graph = helper.make_graph([helper.make_node("Identity", ["image"], ["probs"])], "g", [x], [y])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    set_metadata(proto, INFO)
    path = tmp_path / "model.int8.onnx"
    onnx.save(proto, str(path))
    return path


def test_build_engine_argument_errors(meta_onnx, tmp_path):
    with pytest.raises(InputError, match=".engine"):
        build_engine(meta_onnx, tmp_path / "m.plan")
    with pytest.raises(InputError, match="workspace_gib"):
        build_engine(meta_onnx, tmp_path / "m.engine", workspace_gib=0)
    with pytest.raises(ModelError, match="not found"):
        build_engine(tmp_path / "missing.onnx", tmp_path / "m.engine")
    with pytest.raises(InputError, match="C must be 1"):
        build_engine(meta_onnx, tmp_path / "m.engine", profile=["1x3x64x64"] * 3)
    with pytest.raises(InputError, match="multiples of 16"):
        build_engine(meta_onnx, tmp_path / "m.engine", profile=["1x1x64x64", "1x1x72x72", "1x1x96x96"])
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00not an onnx model")
    with pytest.raises(ModelError):
        build_engine(junk, tmp_path / "m.engine")
    assert not list(tmp_path.glob("*.engine*"))


def test_build_engine_without_tensorrt_says_how_to_install(meta_onnx, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt -> ImportError
    with pytest.raises(BackendUnavailableError, match=r"pip install 'edgeseg\[tensorrt-cu12\]'.*JetPack"):
        build_engine(meta_onnx, tmp_path / "m.engine")


class FakeTRT:
    """The slice of the TensorRT 10/11 builder API that build_engine uses, recording the calls."""

    def __init__(self, version="10.3.0.30", flags=Flags10, parse_errors=(), build_error=None,
                 cuda_start_failure=""):
        self.calls: dict = {}
        rec = self.calls

        class Severity:
            INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = "IE", "E", "W", "I", "V"

        class ILogger:
            def __init__(self):
                pass

        ILogger.Severity = Severity

        class Tensor:
            def __init__(self, name):
                self.name, self.shape = name, (-1, 1, -1, -1)

        class Network:
            num_inputs = num_outputs = 1

            def get_input(self, i):
                return Tensor("image")

            def get_output(self, i):
                return Tensor("probs")

        class Parser:
            def __init__(self, network, logger):
                self.num_errors = len(parse_errors)

            def parse(self, data, path):
                rec["parse"] = (len(data), path)
                return not parse_errors

            def get_error(self, i):
                return parse_errors[i]

        class Cache:
            def __init__(self, blob):
                self.blob = blob

            def serialize(self):
                return bytearray(b"CACHE:" + self.blob[-20:])

        class Config:
            def set_memory_pool_limit(self, pool, size):
                rec["pool"] = (pool, size)

            def clear_flag(self, flag):
                rec["cleared"] = flag

            def add_optimization_profile(self, p):
                rec["profile"] = p.shape
                return 0

            def create_timing_cache(self, blob):
                rec.setdefault("cache_in", []).append(bytes(blob))
                return Cache(bytes(blob))

            def set_timing_cache(self, cache, ignore_mismatch):
                rec["ignore_mismatch"] = ignore_mismatch
                self.cache = cache
                return not cache.blob.startswith(b"OTHERGPU")

            def get_timing_cache(self):
                return self.cache

        class OptProfile:
            def set_shape(self, name, lo, opt, hi):
                self.shape = (name, tuple(lo), tuple(opt), tuple(hi))

        class Builder:
            def __init__(self, logger):
                if cuda_start_failure:  # TensorRT without CUDA: a logged reason, then nullptr
                    logger.log(Severity.WARNING, cuda_start_failure)
                    raise TypeError("pybind11::init(): factory function returned nullptr")
                self.logger = logger

            def create_network(self, flags=None):
                rec["flags"] = flags
                return Network()

            def create_builder_config(self):
                return Config()

            def create_optimization_profile(self):
                return OptProfile()

            def build_serialized_network(self, network, config):
                if build_error:
                    self.logger.log(Severity.ERROR, build_error)
                    return None
                return b"\x7fPLAN" + bytes(range(64))

        self.module = types.ModuleType("tensorrt")
        self.module.__dict__.update(
            __version__=version, ILogger=ILogger, Builder=Builder, OnnxParser=Parser,
            NetworkDefinitionCreationFlag=flags, MemoryPoolType=types.SimpleNamespace(WORKSPACE="WS"),
            BuilderFlag=types.SimpleNamespace(TF32="TF32"))


class FakeDriver:
    """The CUDA driver library as edgeseg._cudadrv calls it through ctypes (byref args have ``_obj``)."""

    def __init__(self, name=b"Orin", cc=(8, 7), count=1, init_error=0):
        self.name, self.cc, self.count, self.init_error = name, cc, count, init_error
        self.released = 0

    def cuInit(self, flags):
        return self.init_error

    def cuDeviceGetCount(self, count):
        count._obj.value = self.count
        return 0

    def cuDeviceGet(self, dev, index):
        dev._obj.value = index
        return 0

    def cuDeviceGetName(self, buf, size, dev):
        buf.value = self.name[:size - 1]
        return 0

    def cuDeviceGetAttribute(self, value, attr, dev):
        value._obj.value = {75: self.cc[0], 76: self.cc[1]}[attr]
        return 0

    def cuGetErrorName(self, code, text):
        text._obj.value = {100: b"CUDA_ERROR_NO_DEVICE"}.get(code, b"CUDA_ERROR_UNKNOWN")
        return 0

    def cuGetErrorString(self, code, text):
        text._obj.value = {100: b"no CUDA-capable device is detected"}.get(code, b"unknown error")
        return 0

    def cuDevicePrimaryCtxRelease_v2(self, dev):
        self.released += 1
        return 0


def _install(monkeypatch, trt, **gpu):
    monkeypatch.setitem(sys.modules, "tensorrt", trt.module)
    monkeypatch.setitem(sys.modules, "pycuda", None)  # building needs no pycuda
    monkeypatch.setitem(sys.modules, "pycuda.driver", None)
    driver = FakeDriver(**gpu)
    monkeypatch.setattr("edgeseg._cudadrv._driver", driver)
    return driver


def test_gpu_info_and_context_release_through_the_driver_library(monkeypatch):
    from edgeseg import _cudadrv
    from edgeseg._trt import driver_gpu_info

    driver = FakeDriver(name=b"NVIDIA GeForce RTX 4090", cc=(8, 9))
    monkeypatch.setattr(_cudadrv, "_driver", driver)
    assert driver_gpu_info() == GpuInfo("NVIDIA GeForce RTX 4090", "8.9")
    _cudadrv.release_primary_context(0)
    assert driver.released == 1
    with pytest.raises(BackendUnavailableError, match=r"sees 1 GPU\(s\), so there is no CUDA device 1"):
        driver_gpu_info(1)
    monkeypatch.setattr(_cudadrv, "_driver", FakeDriver(init_error=100))
    with pytest.raises(BackendUnavailableError, match="cuInit.*CUDA_ERROR_NO_DEVICE: no CUDA-capable device"):
        driver_gpu_info()


def test_no_driver_library_is_one_clear_error(monkeypatch):
    import ctypes

    from edgeseg import _cudadrv

    def missing(name, *a, **k):
        raise OSError(f"{name}: cannot open shared object file: No such file or directory")

    monkeypatch.setattr(_cudadrv, "_driver", None)
    monkeypatch.setattr(ctypes, "CDLL", missing)
    with pytest.raises(BackendUnavailableError, match=r"libcuda\.so\.1.*cannot be loaded.*no NVIDIA driver"):
        _cudadrv.device_info()


@pytest.mark.parametrize("flags, version, expected", [(Flags10, "10.3.0.30", 2), (Flags11, "11.4.0.106", None)])
def test_build_flow_on_fake_tensorrt(meta_onnx, tmp_path, monkeypatch, flags, version, expected):
    trt = FakeTRT(version=version, flags=flags)
    _install(monkeypatch, trt)
    out, cache = tmp_path / "model.int8.engine", tmp_path / "trt.cache"
    prof = [(1, 1, 32, 32), (2, 1, 64, 64), (4, 1, 128, 128)]
    assert build_engine(meta_onnx, out, profile=prof, workspace_gib=1.5, timing_cache=cache) == out
    c = trt.calls
    assert c["flags"] == expected and c["pool"] == ("WS", int(1.5 * 2**30))
    assert c["profile"] == ("image", *map(tuple, prof)) and c["parse"][1] == str(meta_onnx)
    assert "cleared" not in c  # int8 model: TF32 untouched; only fp32 engines clear it
    assert c["ignore_mismatch"] is False and c["cache_in"] == [b""]
    assert out.read_bytes() == b"\x7fPLAN" + bytes(range(64))  # raw plan, nothing prepended
    assert cache.read_bytes().startswith(b"CACHE:")
    sc = read_sidecar(out)
    assert sc.data["trt_version"] == version and sc.data["compute_capability"] == "8.7"
    assert sc.data["engine_sha256"] == __import__("hashlib").sha256(out.read_bytes()).hexdigest()
    assert sc.profile == Profile(*map(tuple, prof)) and sc.info.precision == "int8"
    # second build reads the cache back; a cache from another GPU is replaced by a fresh one
    build_engine(meta_onnx, out, profile=prof, timing_cache=cache)
    assert c["cache_in"][-1].startswith(b"CACHE:")
    cache.write_bytes(b"OTHERGPU")
    build_engine(meta_onnx, out, profile=prof, timing_cache=cache)
    assert c["cache_in"][-2:] == [b"OTHERGPU", b""] and cache.read_bytes().startswith(b"CACHE:")


def test_fp32_build_clears_tf32(tmp_path, monkeypatch, meta_onnx):
    onnx = pytest.importorskip("onnx")
    from edgeseg.converters.onnx_export import set_metadata

    proto = onnx.load(str(meta_onnx))
    set_metadata(proto, INFO.replace(precision="fp32"))
    fp32 = tmp_path / "model.onnx"
    onnx.save(proto, str(fp32))
    trt = FakeTRT()
    _install(monkeypatch, trt)
    build_engine(fp32, tmp_path / "model.engine")
    assert trt.calls["cleared"] == "TF32"
    assert trt.calls["profile"] == ("image", (1, 1, 64, 64), (1, 1, 1024, 1024), (4, 1, 1024, 1024))


def test_parser_errors_become_one_model_error(meta_onnx, tmp_path, monkeypatch):
    class Err:
        def __init__(self, node, name, desc):
            self.node, self.node_name, self.desc = (lambda: node), (lambda: name), (lambda: desc)

    trt = FakeTRT(parse_errors=[Err(2, "/down1/Conv", "weights missing"), Err(9, "/up/Resize", "bad mode")])
    _install(monkeypatch, trt)
    with pytest.raises(ModelError, match=r"could not parse.*/down1/Conv.*weights missing.*/up/Resize.*bad mode"):
        build_engine(meta_onnx, tmp_path / "m.engine")
    assert not list(tmp_path.glob("m.engine*"))


def test_build_failure_reports_logged_errors(meta_onnx, tmp_path, monkeypatch):
    _install(monkeypatch, FakeTRT(build_error="[myelin] out of memory: 9 GiB requested"))
    with pytest.raises(ModelError, match=r"failed to build.*out of memory: 9 GiB"):
        build_engine(meta_onnx, tmp_path / "m.engine", profile=["1x1x16x16"] * 3)
    assert not list(tmp_path.glob("m.engine*"))


def test_cuda_that_cannot_start_is_one_error_with_tensorrt_s_reason(meta_onnx, tmp_path, monkeypatch):
    reason = "CUDA initialization failure with error: 35. Please check your CUDA installation"
    _install(monkeypatch, FakeTRT(cuda_start_failure=reason))
    with pytest.raises(BackendUnavailableError) as err:
        build_engine(meta_onnx, tmp_path / "m.engine")
    msg = str(err.value)
    assert reason in msg and "could not create its builder" in msg and "driver" in msg and "\n" not in msg
    assert not list(tmp_path.glob("m.engine*"))


def test_int8_model_for_onnxruntime_is_refused(meta_onnx, tmp_path, monkeypatch):
    onnx = pytest.importorskip("onnx")
    from edgeseg.converters.onnx_export import set_metadata

    proto = onnx.load(str(meta_onnx))
    set_metadata(proto, INFO.replace(model_card={"int8": {"target": "onnxruntime", "weight_bits": 7}}))
    cpu = tmp_path / "model.int8.onnx"
    onnx.save(proto, str(cpu))
    _install(monkeypatch, FakeTRT())
    with pytest.raises(ModelError, match="ONNX Runtime on the CPU.*--int8-target tensorrt"):
        build_engine(cpu, tmp_path / "m.engine")


def test_old_tensorrt_is_refused_by_name(meta_onnx, tmp_path, monkeypatch):
    _install(monkeypatch, FakeTRT(version="8.6.2.3"))
    with pytest.raises(BackendUnavailableError, match=r"TensorRT 8\.6\.2\.3 is installed"):
        build_engine(meta_onnx, tmp_path / "m.engine")


# -- real TensorRT ----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def trt_gpu():
    """The tensorrt module, or a skip saying what is missing (TensorRT, pycuda or a CUDA GPU).

    Session-scoped and listed first so that the skip comes before the tiny model is exported.
    """
    trt = pytest.importorskip("tensorrt", reason="TensorRT is not installed (pip install "
                              "'edgeseg[tensorrt-cu12]'; JetPack provides it on Jetson)")
    cuda = pytest.importorskip("pycuda.driver", reason="pycuda is not installed (pip install pycuda)")
    try:
        cuda.init()
        count = cuda.Device.count()
    except Exception as exc:
        pytest.skip(f"no usable CUDA driver: {exc}")
    if count < 1:
        pytest.skip("no CUDA GPU")
    return trt


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_real_build_writes_engine_sidecar_and_cache(trt_gpu, tiny_onnx, tmp_path):
    trt = trt_gpu
    out, cache = tmp_path / "tiny.engine", tmp_path / "tiny.cache"
    prof = ["1x1x16x16", "2x1x32x48", "3x1x64x64"]
    build_engine(tiny_onnx, out, profile=prof, workspace_gib=0.5, timing_cache=cache)
    sc = read_sidecar(out)
    assert sc.data["trt_version"] == trt.__version__ and sc.data["precision"] == "fp32"
    assert sc.profile == validate_profile(prof, 4) and sc.info.multiple == 4
    assert sc.data["input_name"] == "image" and sc.data["output_name"] == "probs"
    assert cache.stat().st_size > 0 and out.stat().st_size == sc.data["engine_bytes"]
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    assert runtime.deserialize_cuda_engine(out.read_bytes()) is not None  # raw plan, no header
    build_engine(tiny_onnx, out, profile=prof, workspace_gib=0.5, timing_cache=cache)  # reuses it
    assert np.isfinite(read_sidecar(out).data["build_seconds"])

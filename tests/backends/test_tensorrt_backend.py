"""TensorRT backend: errors and the whole inference path on a fake TensorRT + pycuda everywhere,
and the real thing (engine vs ONNX Runtime, sidecar checks) where TensorRT and a GPU exist."""

from __future__ import annotations

import gc
import hashlib
import json
import subprocess
import sys
import threading
import types
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from edgeseg._atomic import atomic_write_json
from edgeseg._trt import GpuInfo, Profile, make_sidecar, sidecar_path
from edgeseg.backends import open_backend
from edgeseg.backends.tensorrt_backend import TensorRTBackend
from edgeseg.errors import BackendUnavailableError, EdgesegError, InputError, ModelError
from edgeseg.modelinfo import ModelInfo

INFO = ModelInfo(model_config={"width": 4, "depth": 4}, multiple=16, precision="fp16")
PROFILE = Profile((1, 1, 16, 16), (1, 1, 64, 64), (4, 1, 128, 128))
PLAN = b"PLAN" + bytes(range(200))


def write_engine(tmp_path: Path, plan: bytes = PLAN, name: str = "model.engine", **over) -> Path:
    engine = tmp_path / name
    engine.write_bytes(plan)
    sidecar = make_sidecar(info=INFO, profile=PROFILE, trt_version="10.3.0.30", gpu=GpuInfo("Orin", "8.7"),
                           onnx_name="model.fp16.onnx", onnx_sha256="0" * 64, engine_name=engine.name,
                           engine_sha256=hashlib.sha256(plan).hexdigest(), engine_bytes=len(plan),
                           input_name="image", output_name="probs", build_seconds=1.0, workspace_gib=2.0)
    sidecar.update({"platform": "Linux-aarch64", **over})  # fake_env reports Linux-aarch64
    atomic_write_json(sidecar_path(engine), sidecar)
    return engine


# -- errors that need no TensorRT -----------------------------------------------------------------
def test_cpu_device_is_refused_with_the_onnx_hint(tmp_path):
    for model in ("model.engine", write_engine(tmp_path)):
        with pytest.raises(BackendUnavailableError, match="NVIDIA GPUs.*onnxruntime backend on the CPU"):
            open_backend(model, device="cpu")


def test_missing_engine_and_bad_device(tmp_path):
    with pytest.raises(ModelError, match=r"not found.*edgeseg convert model\.onnx -o missing\.engine"):
        TensorRTBackend(tmp_path / "missing.engine")
    with pytest.raises(InputError, match="'cuda' or 'auto'"):
        TensorRTBackend(tmp_path / "missing.engine", device="gpu")


def test_without_tensorrt_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt -> ImportError
    with pytest.raises(BackendUnavailableError) as err:
        open_backend(write_engine(tmp_path))
    msg = str(err.value)
    assert "pip install 'edgeseg[tensorrt-cu12]'" in msg and "JetPack provides TensorRT" in msg and "pycuda" in msg


def test_without_pycuda_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", FakeTRT().module)
    monkeypatch.setitem(sys.modules, "pycuda", None)
    monkeypatch.setitem(sys.modules, "pycuda.driver", None)
    with pytest.raises(BackendUnavailableError, match="pip install pycuda"):
        open_backend(write_engine(tmp_path))


def test_importing_the_backends_does_not_import_tensorrt():
    code = ("import sys, edgeseg, edgeseg.backends, edgeseg.backends.tensorrt_backend, "
            "edgeseg.converters.tensorrt_build; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorrt', 'pycuda')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- a fake TensorRT runtime and pycuda: the backend's logic without a GPU -------------------------
class FakeCuda:
    """pycuda.driver as the backend uses it; device memory is host bytearrays keyed by address."""

    def __init__(self, name="Orin", cc=(8, 7)):
        self.mem: dict[int, bytearray] = {}
        self.stack = threading.local()
        self.allocs = self.detached = self.next_addr = 0
        self.retained = 0  # primary-context references held (pycuda's retain minus releases)
        fake = self

        class Device:
            def __init__(self, i):
                self.i = i

            @staticmethod
            def count():
                return 1

            def name(self):
                return name

            def compute_capability(self):
                return cc

            def retain_primary_context(self):
                fake.retained += 1
                return Ctx()

        class Ctx:
            def __init__(self):
                self.thread = threading.get_ident()

            def push(self):
                fake._stack().append(self)

            def detach(self):  # like pycuda: the release is skipped off the retaining thread
                fake.detached += 1
                if threading.get_ident() == self.thread:
                    fake.retained -= 1

        class Context:
            @staticmethod
            def pop():
                fake._stack().pop()

        class Alloc:
            def __init__(self, nbytes):
                fake.require_context()
                fake.next_addr += 0x1000
                self.addr = fake.next_addr
                fake.mem[self.addr] = bytearray(nbytes)
                fake.allocs += 1

            def __int__(self):
                return self.addr

            def free(self):
                fake.require_context()
                del fake.mem[self.addr]

        class Stream:
            handle = 0xBEEF

            def synchronize(self):
                fake.require_context()

        def htod(dest, src, stream=None):
            fake.require_context()
            buf = fake.mem[int(dest)]
            assert src.nbytes <= len(buf), "copy larger than the allocation"
            buf[:src.nbytes] = src.tobytes()

        def dtoh(dest, src, stream=None):
            fake.require_context()
            dest[...] = np.frombuffer(bytes(fake.mem[int(src)][:dest.nbytes]), dest.dtype)

        self.module = types.ModuleType("pycuda.driver")
        self.module.__dict__.update(
            init=lambda flags=0: None, Device=Device, Context=Context, Stream=Stream, mem_alloc=Alloc,
            pagelocked_empty=lambda n, dtype: np.empty(n, dtype), memcpy_htod_async=htod,
            memcpy_dtoh_async=dtoh)

    def _stack(self) -> list:
        if not hasattr(self.stack, "items"):
            self.stack.items = []
        return self.stack.items

    def require_context(self) -> None:
        assert self._stack(), "CUDA call without a current context"


class FakeTRT:
    """The TensorRT 10/11 runtime subset the backend uses; the 'network' returns x, 2x, 3x."""

    def __init__(self, version="10.3.0.30", out_dtype="float16", cuda: FakeCuda | None = None,
                 cuda_start_failure: str = ""):
        self.cuda, self.cuda_start_failure = cuda, cuda_start_failure

        class Severity:
            INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = "IE", "E", "W", "I", "V"

        class ILogger:
            def __init__(self):
                pass

        ILogger.Severity = Severity
        Mode = types.SimpleNamespace(INPUT="in", OUTPUT="out")
        fake = self

        class Context:
            def __init__(self):
                self.shape, self.addr = None, {}

            def set_input_shape(self, name, shape):
                assert name == "image"
                self.shape = tuple(shape)
                return PROFILE.contains(shape)

            def get_tensor_shape(self, name):
                n, _, h, w = self.shape
                return (n, 3, h, w)

            def set_tensor_address(self, name, ptr):
                self.addr[name] = ptr

            def execute_async_v3(self, stream_handle):
                mem = fake.cuda.mem
                fake.cuda.require_context()
                assert stream_handle == 0xBEEF
                n = int(np.prod(self.shape))
                x = np.frombuffer(bytes(mem[self.addr["image"]][:4 * n]), np.float32).reshape(self.shape)
                y = np.concatenate([x, 2 * x, 3 * x], axis=1).astype(out_dtype)
                mem[self.addr["probs"]][:y.nbytes] = y.tobytes()
                return True

        class Engine:
            num_io_tensors = 2

            def get_tensor_name(self, i):
                return ("image", "probs")[i]

            def get_tensor_mode(self, name):
                return Mode.INPUT if name == "image" else Mode.OUTPUT

            def get_tensor_dtype(self, name):
                return "float32" if name == "image" else out_dtype

            def create_execution_context(self):
                fake.cuda.require_context()
                return Context()

        class Runtime:
            def __init__(self, logger):
                if fake.cuda_start_failure:  # what TensorRT does when CUDA cannot start
                    logger.log(Severity.WARNING, fake.cuda_start_failure)
                    raise TypeError("pybind11::init(): factory function returned nullptr")
                self.logger = logger

            def deserialize_cuda_engine(self, plan):
                fake.cuda.require_context()
                if not bytes(plan).startswith(b"PLAN"):
                    self.logger.log(Severity.ERROR, "Serialization assertion magicTag failed")
                    return None
                return Engine()

        def nptype(t):
            if t not in ("float32", "float16"):
                raise TypeError("Could not resolve TensorRT datatype to an equivalent numpy datatype.")
            return np.dtype(t).type

        self.module = types.ModuleType("tensorrt")
        self.module.__dict__.update(__version__=version, ILogger=ILogger, Runtime=Runtime, TensorIOMode=Mode,
                                    nptype=nptype)


@pytest.fixture()
def fake_env(monkeypatch):
    cuda = FakeCuda()
    trt = FakeTRT(cuda=cuda)
    cuda.trt = trt
    cuda.driver_releases = 0

    def driver_release(index):  # edgeseg._cudadrv.release_primary_context, off the retaining thread
        assert index == 0
        cuda.driver_releases += 1
        cuda.retained -= 1

    monkeypatch.setattr("edgeseg.backends.tensorrt_backend.release_primary_context", driver_release)
    pkg = types.ModuleType("pycuda")
    pkg.driver = cuda.module
    monkeypatch.setitem(sys.modules, "tensorrt", trt.module)
    monkeypatch.setitem(sys.modules, "pycuda", pkg)
    monkeypatch.setitem(sys.modules, "pycuda.driver", cuda.module)
    monkeypatch.setattr("edgeseg._trt.platform_tag", lambda: "Linux-aarch64")
    return cuda


def expected(x: np.ndarray) -> np.ndarray:
    return np.concatenate([x, 2 * x, 3 * x], axis=1).astype(np.float16).astype(np.float32)


def test_fake_engine_inference_path(tmp_path, fake_env):
    be = open_backend(write_engine(tmp_path))
    assert isinstance(be, TensorRTBackend) and be.name == "tensorrt" and be.device == "cuda"
    assert be.precision == "fp16" and be.profile == PROFILE and be.info.multiple == 16
    assert be.info.postprocess == INFO.postprocess and "Orin" in repr(be)
    rng = np.random.default_rng(0)
    x1 = rng.random((2, 1, 64, 48), dtype=np.float32)
    y1 = be.infer(x1)
    assert y1.dtype == np.float32 and y1.shape == (2, 3, 64, 48)
    np.testing.assert_array_equal(y1, expected(x1))  # fp16 output converted to float32
    allocs = fake_env.allocs
    x2 = rng.random((1, 1, 32, 32), dtype=np.float32)  # smaller: buffers are reused
    np.testing.assert_array_equal(be.infer(x2), expected(x2))
    assert fake_env.allocs == allocs
    np.testing.assert_array_equal(y1, expected(x1))  # earlier results do not share buffers
    x3 = rng.random((4, 1, 128, 128), dtype=np.float32)  # larger: buffers grow
    np.testing.assert_array_equal(be.infer(x3), expected(x3))
    assert fake_env.allocs == allocs + 2
    assert fake_env._stack() == []  # every push was popped
    be.close()
    be.close()  # idempotent
    assert fake_env.detached == 1 and fake_env.mem == {}
    assert fake_env.retained == 0 and fake_env.driver_releases == 0  # same thread: pycuda released
    with pytest.raises(EdgesegError, match="closed"):
        be.infer(x2)


def test_close_from_another_thread_releases_the_primary_context(tmp_path, fake_env):
    be = open_backend(write_engine(tmp_path))
    be.infer(np.zeros((1, 1, 32, 32), np.float32))
    assert fake_env.retained == 1
    t = threading.Thread(target=be.close)
    t.start()
    t.join()
    assert fake_env.detached == 1 and fake_env.driver_releases == 1  # balanced by the driver call
    assert fake_env.retained == 0 and fake_env.mem == {} and fake_env._stack() == []
    with pytest.raises(EdgesegError, match="closed"):
        be.infer(np.zeros((1, 1, 32, 32), np.float32))


def test_a_backend_never_closed_is_released_by_its_finalizer(tmp_path, fake_env):
    be = open_backend(write_engine(tmp_path))
    be.infer(np.zeros((2, 1, 64, 64), np.float32))
    assert fake_env.mem and fake_env.retained == 1
    del be
    gc.collect()
    assert fake_env.mem == {} and fake_env.detached == 1 and fake_env.retained == 0


def test_cuda_that_cannot_start_is_one_error_with_tensorrt_s_reason(tmp_path, fake_env):
    reason = "CUDA initialization failure with error: 35"
    fake_env.trt.cuda_start_failure = reason
    with pytest.raises(BackendUnavailableError) as err:
        open_backend(write_engine(tmp_path))
    msg = str(err.value)
    assert reason in msg and "could not create its runtime" in msg and "driver" in msg
    assert "\n" not in msg and not isinstance(err.value, TypeError)
    assert fake_env._stack() == [] and fake_env.detached == 1 and fake_env.retained == 0


def test_fake_engine_rejects_batches_outside_the_profile(tmp_path, fake_env):
    be = open_backend(write_engine(tmp_path))
    with pytest.raises(InputError, match=r"5x1x64x64 is outside.*min 1x1x16x16.*max 4x1x128x128"):
        be.infer(np.zeros((5, 1, 64, 64), np.float32))
    with pytest.raises(InputError, match="outside"):
        be.infer(np.zeros((1, 1, 144, 64), np.float32))
    with pytest.raises(InputError, match="multiples of 16"):
        be.infer(np.zeros((1, 1, 40, 64), np.float32))
    with pytest.raises(InputError, match="N x 1 x H x W"):
        be.infer(np.zeros((1, 64, 64), np.float32))
    with pytest.raises(InputError, match="numpy array"):
        be.infer([[0.0]])  # type: ignore[arg-type]
    assert fake_env._stack() == []


def test_fake_engine_from_many_threads(tmp_path, fake_env):
    be = open_backend(write_engine(tmp_path))
    rng = np.random.default_rng(1)
    xs = [rng.random((1 + i % 4, 1, 16 * (1 + i % 8), 32), dtype=np.float32) for i in range(24)]
    with ThreadPoolExecutor(6) as pool:
        ys = list(pool.map(be.infer, xs))
    for x, y in zip(xs, ys):
        np.testing.assert_array_equal(y, expected(x))
    be.close()


def test_fake_engine_in_the_segmenter(tmp_path, fake_env):
    from edgeseg import Segmenter

    seg = Segmenter(str(write_engine(tmp_path)))
    assert (seg.backend, seg.device, seg.precision) == ("tensorrt", "cuda", "fp16")
    frame = (np.random.default_rng(3).random((100, 80)) * 255).astype(np.uint8)
    res = seg.segment(frame, probabilities=True)  # padded to 112 x 80, inside the profile
    assert res.labels.shape == (100, 80) and res.probabilities.shape == (3, 100, 80)
    seg.close()


@pytest.mark.parametrize("over, match", [
    ({"trt_version": "10.3.1.2"}, r"built with TensorRT 10\.3\.1\.2, but TensorRT 10\.3\.0\.30 is installed"),
    ({"compute_capability": "8.6", "gpu_name": "RTX 3090"}, r"8\.6 \(RTX 3090\).*\(Orin\).*8\.7"),
    ({"platform": "Windows-AMD64"}, "Windows-AMD64.*Linux-aarch64"),
    ({"engine_sha256": "f" * 64}, "does not match its sidecar"),
])
def test_fake_incompatible_engines(tmp_path, fake_env, over, match):
    engine = write_engine(tmp_path, **over)
    with pytest.raises(ModelError, match=match) as err:
        open_backend(engine)
    assert "edgeseg convert model.fp16.onnx -o model.engine" in str(err.value)
    assert fake_env.detached == 0 and fake_env.allocs == 0  # refused before touching the GPU


def test_fake_missing_sidecar_and_bad_plan(tmp_path, fake_env):
    engine = write_engine(tmp_path)
    sidecar_path(engine).unlink()
    with pytest.raises(ModelError, match=r"no sidecar model\.engine\.json.*edgeseg convert"):
        open_backend(engine)
    bad = write_engine(tmp_path, plan=b"JUNK" * 10, name="bad.engine")
    with pytest.raises(ModelError, match="could not deserialise.*magicTag"):
        open_backend(bad)
    assert fake_env._stack() == [] and fake_env.detached == 1  # context released on failure


# -- real TensorRT ----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def trt_gpu():
    """The tensorrt module, or a skip saying what is missing (TensorRT, pycuda or a CUDA GPU)."""
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


@pytest.fixture(scope="session")
def tiny_engine(trt_gpu, tiny_onnx, tmp_path_factory):
    from edgeseg.converters.tensorrt_build import build_engine

    out = tmp_path_factory.mktemp("trt") / "tiny.engine"
    return build_engine(tiny_onnx, out, profile=["1x1x16x16", "2x1x32x48", "4x1x64x64"], workspace_gib=0.5)


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_real_engine_matches_onnxruntime(tiny_engine, tiny_onnx):
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(str(tiny_onnx), providers=["CPUExecutionProvider"])
    be = open_backend(tiny_engine)
    assert be.precision == "fp32" and be.info.multiple == 4 and be.profile.max == (4, 1, 64, 64)
    rng = np.random.default_rng(0)
    errs = []
    for shape in [(2, 1, 32, 48), (4, 1, 64, 64), (1, 1, 16, 16), (3, 1, 36, 52), (2, 1, 32, 48)]:
        x = rng.random(shape, dtype=np.float32)
        got, ref = be.infer(x), sess.run(None, {"image": x})[0]
        assert got.dtype == np.float32 and got.shape == ref.shape
        errs.append(float(np.abs(got - ref).max()))
    print(f"TensorRT fp32 vs ONNX Runtime max abs: {max(errs):.2e}")
    assert max(errs) <= 1e-3
    with pytest.raises(InputError, match="outside the optimisation profile"):
        be.infer(np.zeros((5, 1, 32, 32), np.float32))
    xs = [rng.random((1 + i % 4, 1, 32, 32), dtype=np.float32) for i in range(16)]
    with ThreadPoolExecutor(4) as pool:
        ys = list(pool.map(be.infer, xs))
    for x, y in zip(xs, ys):
        assert float(np.abs(y - sess.run(None, {"image": x})[0]).max()) <= 1e-3
    be.close()


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_real_engine_in_the_segmenter(tiny_engine, tiny_onnx):
    from edgeseg import Segmenter

    frame = (np.random.default_rng(2).random((44, 60)) * 255).astype(np.uint8)
    a = Segmenter(str(tiny_engine), tile=64, overlap=8).segment(frame, probabilities=True)
    b = Segmenter(str(tiny_onnx), device="cpu", tile=64, overlap=8).segment(frame, probabilities=True)
    assert float(np.abs(a.probabilities - b.probabilities).max()) <= 1e-3


def _copy(engine: Path, dest: Path, **edit) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    out = dest / engine.name
    out.write_bytes(engine.read_bytes())
    data = json.loads(sidecar_path(engine).read_text())
    data.update(edit)
    sidecar_path(out).write_text(json.dumps(data))
    return out


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_real_engine_sidecar_checks(tiny_engine, tmp_path, trt_gpu):
    here = json.loads(sidecar_path(tiny_engine).read_text())
    other = "9.9.9.9" if not trt_gpu.__version__.startswith("9.9.9") else "9.9.8.1"
    with pytest.raises(ModelError) as err:
        open_backend(_copy(tiny_engine, tmp_path / "v", trt_version=other))
    assert other in str(err.value) and trt_gpu.__version__ in str(err.value)
    cc = "1.0" if here["compute_capability"] != "1.0" else "2.0"
    with pytest.raises(ModelError) as err:
        open_backend(_copy(tiny_engine, tmp_path / "cc", compute_capability=cc, gpu_name="Old GPU"))
    assert f"compute capability {cc} (Old GPU)" in str(err.value)
    assert here["compute_capability"] in str(err.value) and "edgeseg convert" in str(err.value)
    missing = _copy(tiny_engine, tmp_path / "m")
    sidecar_path(missing).unlink()
    with pytest.raises(ModelError, match="no sidecar.*edgeseg convert"):
        open_backend(missing)

"""Run by tests/test_tensorrt_bindings.py in a subprocess: edgeseg against the REAL tensorrt bindings.

The bindings (``tensorrt_bindings`` from the ``tensorrt-cu12-bindings`` wheel) load stub
libnvinfer / libnvonnxparser / libnvinfer_plugin libraries (tests/fixtures/trt_stubs) whose
factories log $STUB_TRT_REASON and return NULL, as TensorRT does where CUDA cannot start; with
``driver`` as the mode, a stub libcuda.so.1 reports one GPU. Prints one JSON object.

    python trt_bindings_probe.py MAJOR MODEL.onnx WORKDIR driver|nodriver
"""

from __future__ import annotations

import contextlib
import io
import json
import re
import sys
import types
from pathlib import Path


def _overloads(doc: str) -> list[list[str]]:
    """Parameter names (without self) of each signature in a pybind11 docstring."""
    out = []
    for line in (doc or "").splitlines():
        m = re.match(r"\s*(?:\d+\.\s*)?\w+\((.*)\)\s*->", line)
        if not m:
            continue
        depth, cur, parts = 0, "", []
        for ch in m.group(1):
            depth += ch in "[(<{"
            depth -= ch in "])>}"
            if ch == "," and depth == 0:
                parts.append(cur)
                cur = ""
            else:
                cur += ch
        parts.append(cur)
        names = [p.split(":")[0].split("=")[0].strip() for p in parts if p.strip()]
        out.append([n for n in names if n != "self"])
    return out


def check_api(trt: object) -> list[str]:
    from trt_api import API, ENUMS, FUNCTIONS

    problems = []
    for cls_name, members in API.items():
        cls = getattr(trt, cls_name, None)
        if cls is None:
            problems.append(f"tensorrt.{cls_name} is missing")
            continue
        for member, params in members.items():
            attr = getattr(cls, member, None)
            if attr is None:
                problems.append(f"tensorrt.{cls_name}.{member} is missing")
            elif params is None:
                if not isinstance(attr, property):
                    problems.append(f"tensorrt.{cls_name}.{member} is not a property")
            else:
                sigs = _overloads(getattr(attr, "__doc__", ""))
                if not any(sig[:len(params)] == list(params) for sig in sigs):
                    problems.append(f"tensorrt.{cls_name}.{member}: no signature starts with {params}: {sigs}")
    for path, names in ENUMS.items():
        obj = trt
        for part in path.split("."):
            obj = getattr(obj, part, None)
        missing = [n for n in names if obj is None or not hasattr(obj, n)]
        if missing:
            problems.append(f"tensorrt.{path} lacks {missing}")
    problems += [f"tensorrt.{f} is missing" for f in FUNCTIONS if not callable(getattr(trt, f, None))]
    return problems


def error_of(fn) -> dict | None:
    try:
        fn()
    except BaseException as exc:  # noqa: BLE001 - reported to the test
        from edgeseg.errors import EdgesegError

        return {"type": type(exc).__name__, "edgeseg": isinstance(exc, EdgesegError), "message": str(exc)}
    return None


def fake_pycuda() -> dict:
    """pycuda.driver as the backend uses it up to the runtime (no GPU is ever touched)."""
    state = {"stack": [], "detached": 0}
    driver = types.ModuleType("pycuda.driver")

    class Ctx:
        def push(self):
            state["stack"].append(self)

        def detach(self):
            state["detached"] += 1

    class Device:
        def __init__(self, index):
            pass

        @staticmethod
        def count():
            return 1

        def name(self):
            return "Stub GPU"

        def compute_capability(self):
            return (8, 7)

        def retain_primary_context(self):
            return Ctx()

    class Context:
        @staticmethod
        def pop():
            state["stack"].pop()

    driver.init, driver.Device, driver.Context = (lambda flags=0: None), Device, Context
    pkg = types.ModuleType("pycuda")
    pkg.driver = driver
    sys.modules["pycuda"], sys.modules["pycuda.driver"] = pkg, driver
    return state


def main() -> None:
    major, model, work, mode = int(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
    import tensorrt_bindings  # the wheel's package; PyPI's tensorrt-cu12 meta package names it tensorrt

    sys.modules["tensorrt"] = tensorrt_bindings
    import tensorrt as trt

    from edgeseg._trt import create_trt, import_tensorrt, network_flags, trt_logger, version_tuple
    from edgeseg.converters.tensorrt_build import build_engine

    res: dict = {"version": trt.__version__}
    assert version_tuple(trt.__version__)[0] == major, (trt.__version__, major)
    if mode == "nodriver":
        res["build_engine"] = error_of(lambda: build_engine(model, work / "nodriver.engine"))
        print(json.dumps(res))
        return
    res["api_problems"] = check_api(trt)
    res["flags"] = {k: int(v) for k, v in trt.NetworkDefinitionCreationFlag.__members__.items()}
    res["parser_error_extras"] = [m for m in ("node_name", "node_operator") if hasattr(trt.ParserError, m)]
    import_tensorrt()  # the version check passes
    res["network_flags"] = network_flags(trt.NetworkDefinitionCreationFlag, version_tuple(trt.__version__)[0])
    logger = trt_logger(trt)  # a Python subclass of the real ILogger
    with logger.capture() as logged:
        logger.log(trt.ILogger.Severity.WARNING, "probe warning")
        logger.log(trt.ILogger.Severity.ERROR, "probe error")
    res["captured"] = {"errors": logged.errors, "warnings": logged.warnings}
    # TensorRT present, CUDA unusable
    res["raw_builder"] = error_of(lambda: trt.Builder(logger))  # what edgeseg must never let through
    res["builder"] = error_of(lambda: create_trt(trt, trt.Builder, logger, what="builder"))
    res["build_engine"] = error_of(lambda: build_engine(model, work / "m.engine"))
    res["files_after_build"] = sorted(p.name for p in work.glob("m.engine*"))
    from edgeseg import cli

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = cli.main(["convert", str(model), "-o", str(work / "cli.engine"), "--no-parity"])
    res["cli"] = {"rc": rc, "stderr": err.getvalue()}
    # the runtime, through the backend (a fake pycuda up to trt.Runtime)
    from edgeseg._atomic import atomic_write_json
    from edgeseg._trt import GpuInfo, default_profile, make_sidecar, sidecar_path
    from edgeseg.backends.tensorrt_backend import TensorRTBackend
    from edgeseg.converters.onnx_export import onnx_info

    state = fake_pycuda()
    engine = work / "r.engine"
    engine.write_bytes(b"plan")
    import hashlib

    atomic_write_json(sidecar_path(engine), make_sidecar(
        info=onnx_info(model), profile=default_profile(16), trt_version=trt.__version__,
        gpu=GpuInfo("Stub GPU", "8.7"), onnx_name=model.name, onnx_sha256="0" * 64, engine_name=engine.name,
        engine_sha256=hashlib.sha256(b"plan").hexdigest(), engine_bytes=4, input_name="image",
        output_name="probs", build_seconds=0.0, workspace_gib=1.0))
    res["runtime"] = error_of(lambda: TensorRTBackend(engine))
    res["runtime_context"] = {"stack": len(state["stack"]), "detached": state["detached"]}
    print(json.dumps(res))


if __name__ == "__main__":
    main()

"""Packaging: light import, lazy heavy dependencies, package-dir mapping, error family."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import edgeseg

REPO = Path(__file__).resolve().parents[1]

BLOCK_HEAVY = textwrap.dedent(
    """
    import sys, importlib.abc
    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {"torch", "onnx", "onnxruntime", "tensorrt", "pycuda", "skimage", "scipy"}:
                raise ImportError(f"{name} is blocked: this test imitates a device without it")
    sys.meta_path.insert(0, Block())
    """
)


def run_py(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_import_is_light():
    r = run_py("import sys, edgeseg; bad = [m for m in ('torch', 'onnx', 'onnxruntime', 'tensorrt') "
               "if m in sys.modules]; print(bad)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_core_pipeline_works_without_torch_or_onnx():
    code = BLOCK_HEAVY + textwrap.dedent(
        """
        import numpy as np, edgeseg
        from edgeseg.cli import main
        from edgeseg.targets import one_hot
        lab = np.zeros((32, 32), np.int32); lab[4:12, 4:12] = 1; lab[4:12, 12:20] = 2
        probs = one_hot(edgeseg.encode(lab))
        pred = edgeseg.label_instances(probs)
        assert edgeseg.dsb_score(lab, pred) == 1.0
        try:
            main(["--version"])
        except SystemExit as e:
            assert e.code == 0
        assert main(["demo", "--oracle", "-o", "/tmp/edgeseg-no-torch-demo"]) == 0
        try:
            edgeseg.Segmenter("default")
        except edgeseg.BackendUnavailableError as e:
            assert "pip install torch==2.13.0" in str(e) and ".onnx" in str(e)
        else:
            raise AssertionError("expected BackendUnavailableError without torch")
        assert main(["demo", "-o", "/tmp/edgeseg-no-torch-demo"]) == 1
        """
    )
    r = run_py(code)
    assert r.returncode == 0, r.stderr


def test_subpackages_map_to_top_level_folders():
    import edgeseg.calibration
    import edgeseg.converters

    assert Path(edgeseg.converters.__file__).parent == REPO / "converters"
    assert Path(edgeseg.calibration.__file__).parent == REPO / "calibration"
    text = (REPO / "pyproject.toml").read_text()
    assert '"edgeseg.converters" = "converters"' in text and '"edgeseg.calibration" = "calibration"' in text


def test_error_family():
    for name in ("InputError", "DataError", "ModelError", "BackendUnavailableError"):
        assert issubclass(getattr(edgeseg, name), edgeseg.EdgesegError)
    assert issubclass(edgeseg.InputError, ValueError)


def test_lazy_attributes_and_dir():
    assert callable(edgeseg.label_instances) and callable(edgeseg.read_image)
    assert "label_instances" in dir(edgeseg)
    try:
        edgeseg.no_such_thing  # noqa: B018
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_wheel_holds_every_module_and_asset(tmp_path):
    """The explicit package list and package-data must cover everything in the source tree."""
    import zipfile

    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                        "-w", str(tmp_path), str(REPO)], capture_output=True, text=True, timeout=300,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    names = set(zipfile.ZipFile(next(tmp_path.glob("edgeseg-*.whl"))).namelist())
    expected = set()
    for folder, pkg in (("edgeseg", "edgeseg"), ("converters", "edgeseg/converters"),
                        ("calibration", "edgeseg/calibration")):
        for f in (REPO / folder).rglob("*"):
            if f.is_file() and "__pycache__" not in f.parts and f.suffix not in (".pyc",):
                expected.add(f"{pkg}/{f.relative_to(REPO / folder).as_posix()}")
    missing = sorted(expected - names)
    assert not missing, f"files missing from the wheel: {missing}"
    assert not any(n.startswith(("converters/", "calibration/")) for n in names)


def test_onnx_runtime_path_needs_neither_torch_nor_onnx(tiny_onnx):
    """A device with ONNX Runtime only: Segmenter on an .onnx model imports no torch, no onnx."""
    code = BLOCK_HEAVY.replace('"onnxruntime", ', "") + textwrap.dedent(
        f"""
        import numpy as np, sys
        from edgeseg import Segmenter
        seg = Segmenter({str(tiny_onnx)!r}, device="cpu")
        r = seg.segment(np.zeros((40, 50), np.uint8))
        assert r.labels.shape == (40, 50)
        assert not any(m in sys.modules for m in ("torch", "onnx"))
        """
    )
    r = run_py(code)
    assert r.returncode == 0, r.stderr

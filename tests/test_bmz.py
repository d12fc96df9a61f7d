"""edgeseg.bmz: a bioimage.io package's ONNX weights, and one clear line for what is not one."""

from __future__ import annotations

import zipfile

import pytest

from edgeseg import Segmenter
from edgeseg.bmz import onnx_from_package
from edgeseg.errors import ModelError


def _zip(path, members):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_onnx_weights_from_a_package(tmp_path, tiny_onnx):
    pkg = _zip(tmp_path / "p.zip", {"rdf.yaml": "type: model\n", "weights.onnx": tiny_onnx.read_bytes()})
    name, data = onnx_from_package(pkg)
    assert name == "weights.onnx" and data == tiny_onnx.read_bytes()
    assert Segmenter(pkg, device="cpu").info == Segmenter(tiny_onnx, device="cpu").info


@pytest.mark.parametrize("members, match", [
    ({"weights.onnx": b"x"}, "without rdf.yaml"),
    ({"rdf.yaml": "type: model\n", "weights.pt": b"x"}, "holds no ONNX weights"),
    ({"rdf.yaml": "x", "a.onnx": b"x", "b.onnx": b"x"}, "2 ONNX files"),
])
def test_not_an_edgeseg_package(tmp_path, members, match):
    pkg = _zip(tmp_path / "p.zip", members)
    with pytest.raises(ModelError, match=match):
        onnx_from_package(pkg)


def test_missing_or_corrupt_zip(tmp_path):
    with pytest.raises(ModelError, match="package not found"):
        Segmenter(tmp_path / "none.zip")
    (tmp_path / "bad.zip").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ModelError, match="could not be read as a zip"):
        Segmenter(tmp_path / "bad.zip")

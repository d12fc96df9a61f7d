"""convert --precision auto (edgeseg.converters.autoprecision): the decision is printed and recorded."""

from __future__ import annotations

import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxconverter_common")

from edgeseg.cli import main  # noqa: E402
from edgeseg.converters.autoprecision import read_decision  # noqa: E402
from edgeseg.converters.onnx_export import onnx_info  # noqa: E402


def test_cli_convert_auto_records_the_decision(tiny_pt, tmp_path, capsys):
    out = tmp_path / "model.auto.onnx"
    assert main(["convert", str(tiny_pt), "-o", str(out), "--precision", "auto", "--max-drop", "0.5"]) == 0
    printed = capsys.readouterr().out
    assert "precision auto on onnxruntime/cpu: chose" in printed
    decision = read_decision(out)
    assert decision["max_drop"] == 0.5
    assert [c["precision"] for c in decision["candidates"]] == ["fp32", "fp16", "int8"]
    assert onnx_info(out).precision == decision["chosen"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.auto.onnx"]


def test_cli_convert_auto_refuses_a_reduced_precision_source(tiny_onnx, tmp_path, capsys):
    from edgeseg.converters import convert_fp16

    fp16 = convert_fp16(tiny_onnx, tmp_path / "m.fp16.onnx")
    assert main(["convert", str(fp16), "-o", str(tmp_path / "o.onnx"), "--precision", "auto"]) == 1
    assert "already fp16" in capsys.readouterr().err

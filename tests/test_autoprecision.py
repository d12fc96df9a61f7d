"""precision="auto" at runtime (edgeseg.autoprecision): the decision rule, and the Segmenter."""

from __future__ import annotations

import pytest

from edgeseg.autoprecision import Measurement, decide
from edgeseg.errors import InputError


def test_fastest_within_the_drop_wins():
    ms = [Measurement("fp32", 10.0, 0.80), Measurement("fp16", 6.0, 0.795), Measurement("int8", 4.0, 0.70)]
    d = decide(ms, 0.01, "onnxruntime", "cpu", 4)
    assert d.chosen == "fp16"
    assert "faster than fp32" in d.reason and "fp16: 6.0 ms" in d.summary()
    assert [c["precision"] for c in d.to_dict()["candidates"]] == ["fp32", "fp16", "int8"]
    assert decide(ms, 0.2, "onnxruntime", "cpu", 4).chosen == "int8"


def test_fp32_when_the_faster_ones_lose_accuracy_or_are_slower():
    lossy = decide([Measurement("fp32", 10.0, 0.8), Measurement("int8", 5.0, 0.7)], 0.01, "ort", "cpu", 4)
    assert lossy.chosen == "fp32" and "lost more than 0.01" in lossy.reason
    slow = decide([Measurement("fp32", 10.0, 0.8), Measurement("int8", 12.0, 0.8)], 0.01, "ort", "cpu", 4)
    assert slow.chosen == "fp32" and "no other precision was faster" in slow.reason
    unmeasured = decide([Measurement("fp32", 10.0, 0.8), Measurement("int8", None, None, "no images")],
                        0.01, "ort", "cpu", 4)
    assert unmeasured.chosen == "fp32" and "not measured (no images)" in unmeasured.summary()


@pytest.mark.parametrize("bad", [-0.1, 1.0, "0.01", True])
def test_bad_max_drop(bad):
    with pytest.raises(InputError, match="max_drop"):
        decide([Measurement("fp32", 1.0, 1.0)], bad, "torch", "cpu", 1)


def test_segmenter_auto_on_onnxruntime_measures_fp32_and_fp16(tiny_onnx):
    pytest.importorskip("onnxconverter_common")
    from edgeseg import Segmenter

    seg = Segmenter(tiny_onnx, device="cpu", diameter=None, precision="auto")
    d = seg.precision_decision
    assert [m.precision for m in d.candidates] == ["fp32", "fp16", "int8"]
    assert all(m.ms > 0 for m in d.candidates[:2]) and d.candidates[2].ms is None
    assert seg.precision == d.chosen and d.device == "cpu" and d.backend == "onnxruntime"


def test_segmenter_auto_on_torch_cpu_is_fp32_and_says_why(tiny_pt):
    from edgeseg import Segmenter

    seg = Segmenter(tiny_pt, device="cpu", precision="auto")
    assert seg.precision == "fp32"
    assert seg.precision_decision.reason == "the only precision available here"
    with pytest.raises(InputError, match="precision must be 'auto' or None"):
        Segmenter(tiny_pt, device="cpu", precision="fp16")
    with pytest.raises(InputError, match="chooses the precision itself"):
        Segmenter(tiny_pt, device="cpu", precision="auto", backend_options={"precision": "fp32"})


def test_cli_predict_prints_the_decision(tiny_pt, tmp_path, capsys):
    from edgeseg._resources import demo_dir
    from edgeseg.cli import main

    image = sorted((demo_dir() / "images").iterdir())[0]
    assert main(["-q", "predict", str(image), "--model", str(tiny_pt), "-o", str(tmp_path / "out"),
                 "--device", "cpu", "--diameter", "none", "--precision", "auto"]) == 0
    assert "precision auto on torch/cpu: chose fp32 (the only precision available here)" in capsys.readouterr().err

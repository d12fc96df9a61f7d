"""edgeseg bench: one run, the naive baseline beside every backend x precision here (schema only:
speed claims come from the committed benchmark results, not from tests)."""

from __future__ import annotations

import importlib.util
import json

import pytest

from edgeseg.benchmark import ROW_KEYS
from edgeseg.benchreport import cpu_flags
from edgeseg.cli import main

pytest.importorskip("torch")
pytest.importorskip("skimage")


def test_bench_quick_writes_the_schema_table_and_plot(tmp_path, capsys):
    out, png = tmp_path / "bench.json", tmp_path / "bench.png"
    # --quick with the smallest sizes: every configuration, both modes, batch 1 and 2
    assert main(["bench", "--quick", "--device", "cpu", "--sizes", "48", "--batch", "1", "2", "--rounds", "1",
                 "--post-size", "64", "--json", str(out), "--plot", str(png)]) == 0
    result = json.loads(out.read_text())
    assert {"machine", "versions", "model", "rows"} <= set(result)
    assert {"cpu_flags", "cpu_count", "loadavg_start", "loadavg_end", "allocator"} <= set(result["machine"])
    assert result["machine"]["allocator"] == "default (not tuned)"  # the test process's malloc as it is
    assert {"torch", "onnxruntime", "numpy", "opencv"} <= set(result["versions"])
    rows = result["rows"]
    for r in rows:
        assert set(r) == set(ROW_KEYS)  # exactly the row schema
        assert r["mode"] in ("serial", "stream") and r["size"] == 48 and r["batch"] in (1, 2)
        assert all(isinstance(r[k], float) and r[k] >= 0 for k in ROW_KEYS[6:13])  # the stage times
        assert r["fps"] > 0 and r["speedup_vs_naive"] > 0
    seen = {(r["backend"], r["precision"], r["mode"], r["batch"]) for r in rows}
    expected = {("naive", "fp32", "serial")} | {("torch", "fp32", m) for m in ("serial", "stream")}
    if importlib.util.find_spec("onnxruntime"):
        expected |= {("onnxruntime", p, m) for p in ("fp32", "fp16", "int8") for m in ("serial", "stream")}
    assert {(b, p, m, k) for b, p, m in expected for k in (1, 2)} == seen
    assert len(rows) == len(seen)
    assert all(r["speedup_vs_naive"] == 1.0 for r in rows if r["backend"] == "naive")
    post = result["postprocess"]
    assert post["size"] == 64 and post["label_instances_ms"] > 0 and post["skimage_reference_ms"] > 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = capsys.readouterr().out
    assert "x naive" in text and "onnxruntime" in text and "label_instances" in text


@pytest.mark.parametrize("argv, words", [
    (["--sizes", "8"], "sizes must be >= 32"),
    (["--model", "x.onnx"], "needs the checkpoint"),
    (["--only", "tensorrt/fp64"], "nothing to run"),
])
def test_bench_refuses_bad_options_in_one_line(tmp_path, capsys, argv, words):
    assert main(["bench", "--device", "cpu", "--post-size", "0", *argv]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0]


def test_cpu_flags_come_from_cpuinfo():
    text = "processor: 0\nflags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512_vnni\n"
    assert cpu_flags(text) == ["sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni"]
    assert cpu_flags("Features\t: fp asimd asimddp\n") == ["asimd", "asimddp"]


def test_bench_skips_a_block_that_would_not_fit_in_memory(tmp_path, capsys, monkeypatch):
    """2048^2 x batch 8 with every configuration open was OOM-killed on a 24 GiB machine, losing
    every row: a block whose estimate does not fit is skipped with the reason, the rest is kept."""
    import edgeseg.benchreport as br
    from edgeseg.benchmark import Candidate
    from edgeseg.benchreport import block_memory
    one = block_memory([Candidate("torch", "fp32", "cpu")], 64, 1)
    assert one == 64 * 64 * 420
    assert block_memory([Candidate("onnxruntime", "int8", "cpu")] * 2, 64, 8) == 2 * 8 * 64 * 64 * 640
    assert block_memory([Candidate("torch", "fp16", "cuda")], 64, 1) < one
    # 'available': enough for torch at batch 1, not at batch 8
    monkeypatch.setattr(br, "available_memory", lambda: int(2 * block_memory(
        [Candidate("naive", "fp32", "cpu"), Candidate("torch", "fp32", "cpu")], 48, 1) / 0.8))
    out = tmp_path / "bench.json"
    assert main(["bench", "--device", "cpu", "--only", "naive", "torch/fp32", "--sizes", "48",
                 "--batch", "1", "8", "--rounds", "1", "--frames", "1", "--modes", "serial",
                 "--post-size", "0", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert {r["batch"] for r in result["rows"]} == {1}
    assert any("size 48, batch 8: needs about" in s and "--only" in s for s in result["skipped"])
    assert "not run here: size 48, batch 8" in capsys.readouterr().out

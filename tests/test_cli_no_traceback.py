"""Property: no CLI command answers a bad input (issue 9's reproductions) with a traceback.

Each command line below is run in-process through ``main``: it must exit 1 with exactly one line
on stderr, ``edgeseg CMD: error: ...``, and leave every input file as it was.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest

from edgeseg.cli import main

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxconverter_common")

try:
    import tensorrt  # noqa: F401
    HAS_TRT = True
except ImportError:
    HAS_TRT = False

DEMO = Path(__file__).resolve().parents[1] / "edgeseg" / "assets" / "demo"


@pytest.fixture(scope="module")
def bad(tiny_onnx, tmp_path_factory):
    """Inputs: good models and data to misuse, and broken files."""
    import cv2
    from models import shaped_onnx

    from edgeseg.converters.fp16 import convert_fp16

    d = tmp_path_factory.mktemp("bad")
    onnx = d / "model.onnx"
    onnx.write_bytes(tiny_onnx.read_bytes())
    data = onnx.read_bytes()
    (d / "trunc.onnx").write_bytes(data[: len(data) // 2])
    convert_fp16(onnx, d / "model.fp16.onnx")
    shaped_onnx(d / "static.onnx", onnx, [1, 1, 64, 64])
    shaped_onnx(d / "rgb.onnx", onnx, ["N", 3, "H", "W"])
    cv2.imwrite(str(d / "a.png"), np.zeros((64, 64), np.uint8))
    (d / "ids.txt").write_text("091944f1d2611c916b98c020bd066667e33f4639159b2a92407fe5a40788856d\n")
    (d / "afile").write_text("x")
    (d / "forged.engine").write_bytes(b"plan")
    (d / "forged.engine.json").write_text('{"format": "edgeseg-engine", "onnx": "x; rm -rf ~"}')
    return d


CASES = {
    "convert missing onnx": "convert {d}/missing.onnx -o {t}/o.onnx",
    "convert truncated onnx": "convert {d}/trunc.onnx -o {t}/o.fp16.onnx --precision fp16",
    "convert truncated onnx to engine": "convert {d}/trunc.onnx -o {t}/o.engine",
    "convert -o input": "convert {d}/model.onnx -o {d}/model.onnx",
    "convert -o input via ..": "convert {d}/model.onnx -o {d}/../{dn}/model.onnx --precision fp16",
    "convert fp16 to int8": "convert {d}/model.fp16.onnx -o {t}/x.onnx --precision int8",
    "convert int8 without images": "convert {d}/model.onnx -o {t}/x.onnx --precision int8",
    "convert -o in a file": "convert {d}/model.onnx -o {d}/afile/x.onnx",
    "convert fp16 engine (no TensorRT)": "convert {d}/model.onnx -o {t}/m.engine --precision fp16 --no-parity",
    "convert as-is engine (no TensorRT)": "convert {d}/model.fp16.onnx -o {t}/m.fp16.engine",
    "parity --limit -3": "parity {d}/model.onnx {d}/model.onnx --data {demo} --subset all --limit -3",
    "parity --tolerance nan": "parity {d}/model.onnx {d}/model.onnx --data {demo} --subset all --tolerance nan",
    "parity --png into a file": "parity {d}/model.onnx {d}/model.onnx --data {demo} --png {d}/afile/w.png",
    "eval id list with --subset": "eval --model {d}/model.onnx --data {demo} --ids {d}/ids.txt --subset all",
    "eval --json is a folder": "eval --model {d}/model.onnx --data {demo} --json {t}",
    "predict static model": "predict {d}/a.png --model {d}/static.onnx -o {t}/out",
    "predict 3-channel model": "predict {d}/a.png --model {d}/rgb.onnx -o {t}/out",
    "predict forged engine": "predict {d}/a.png --model {d}/forged.engine -o {t}/out",
    "bench an onnx model": "bench --model {d}/static.onnx --sizes 64 --rounds 1",
    "bench --json device": "bench --model {d}/model.onnx --json " + os.devnull,
    "live --csv into a file": "live --source synthetic --frames 1 --no-display --model {d}/model.onnx "
                              "--csv {d}/afile/f.csv",
    "train --out into a file": "train --data {demo} --out {d}/afile/run --steps 1",
    "demo -o a file": "demo -o {d}/afile --oracle",
}
if Path("/proc/self/mem").exists():
    CASES["eval unreadable id list"] = "eval --model {d}/model.onnx --data {demo} --ids /proc/self/mem"
    CASES["predict -o nowhere"] = "predict {d}/a.png --model {d}/model.onnx -o /proc/edgeseg/out"


def _snapshot(d: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(d.iterdir()) if p.is_file()}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_exit_1_no_traceback(bad, tmp_path, capsys, case):
    if HAS_TRT and "TensorRT" in case:
        pytest.skip("TensorRT is installed: that build succeeds here")
    line = CASES[case].format(d=bad, dn=bad.name, t=tmp_path, demo=DEMO)
    argv = line.split()
    before = _snapshot(bad)
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse's own usage errors exit 2 with a usage line
        pytest.fail(f"{case}: argparse refused it (exit {exc.code}); the case does not reach the command")
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert rc == 1 and len(lines) == 1 and lines[0].startswith(f"edgeseg {argv[0]}: error: "), err
    assert _snapshot(bad) == before
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob("*.engine*"))

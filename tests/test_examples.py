"""The examples run headless (synthetic camera / video file) and the live CLI works."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("torch")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_live_camera_example_synthetic(tmp_path, capsys):
    out = tmp_path / "live.avi"
    assert load("live_camera").main(["--source", "synthetic", "--frames", "4", "--no-display",
                                     "--record", str(out)]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("frame")]
    assert len(lines) == 4 and all("nuclei" in ln for ln in lines)
    cap = cv2.VideoCapture(str(out))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 4


def test_live_camera_example_video_file(tmp_path, capsys):
    from edgeseg.live import SyntheticSource

    video = tmp_path / "in.avi"
    src = SyntheticSource((128, 160), frames=3, seed=1)
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (160, 128))
    while (f := src.read()) is not None:
        w.write(cv2.cvtColor(f, cv2.COLOR_GRAY2BGR))
    w.release()
    assert load("live_camera").main(["--source", str(video), "--no-display"]) == 0
    assert sum(ln.startswith("frame") for ln in capsys.readouterr().out.splitlines()) == 3


def test_embed_example(capsys):
    assert load("embed_segmenter").main([]) == 0
    out = capsys.readouterr().out
    assert "4 frames segmented, 1 rejected" in out


def test_live_cli_and_latest_frame_runner(tmp_path, capsys):
    from edgeseg.cli import main
    from edgeseg.live import LiveRunner, SyntheticSource

    csv = tmp_path / "live.csv"
    assert main(["live", "--source", "synthetic", "--frames", "3", "--no-display", "--csv", str(csv),
                 "--device", "cpu"]) == 0
    assert len(csv.read_text().strip().splitlines()) == 4
    assert "3 frames from synthetic" in capsys.readouterr().out

    class Slow:
        """A stand-in segmenter slower than the camera: frames must be dropped, not queued."""

        def segment(self, frame):
            import time

            from edgeseg.postprocess import instance_table
            time.sleep(0.05)
            labels = np.zeros(frame.shape[:2], np.int32)
            return type("R", (), {"count": 0, "labels": labels, "instances": instance_table(labels)})()

    frames = list(LiveRunner(Slow(), SyntheticSource((32, 32), frames=40, fps=200.0)).frames())
    assert frames and frames[-1].dropped > 0 and len(frames) < 40


def test_live_errors(capsys):
    from edgeseg.cli import main

    assert main(["live", "--source", "nowhere.mp4", "--no-display"]) == 1
    assert "video file not found" in capsys.readouterr().err
    assert main(["live", "--source", "camera:x", "--no-display"]) == 1
    assert "camera:0" in capsys.readouterr().err

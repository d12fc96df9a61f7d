"""``edgeseg live``: unusable --record/--csv paths fail first; SIGTERM/SIGINT keep the video and CSV."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import cv2
import pytest

from edgeseg.cli import main

pytest.importorskip("torch")


def live(tiny_pt, *extra: str) -> int:
    return main(["live", "--source", "synthetic", "--frames", "2", "--no-display", "--model", str(tiny_pt),
                 "--device", "cpu", *extra])


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edgeseg live: error:"), err
    return err[0]


@pytest.mark.parametrize("option", ["--record", "--csv"])
def test_output_in_a_missing_folder_is_an_error_before_any_frame(tmp_path, tiny_pt, capsys, option):
    target = tmp_path / "missing" / ("x.avi" if option == "--record" else "x.csv")
    assert live(tiny_pt, option, str(target)) == 1
    line = one_error_line(capsys)
    assert str(target.parent) in line and "does not exist" in line
    assert not target.parent.exists()


@pytest.mark.parametrize("option", ["--record", "--csv"])
def test_output_that_is_a_folder_is_an_error(tmp_path, tiny_pt, capsys, option):
    assert live(tiny_pt, option, str(tmp_path)) == 1
    assert "is a folder" in one_error_line(capsys)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_record_in_a_read_only_folder_is_an_error(tmp_path, tiny_pt, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        assert live(tiny_pt, "--record", str(ro / "x.avi")) == 1
        assert "cannot write" in one_error_line(capsys)
    finally:
        ro.chmod(0o755)


def test_record_the_video_writer_refuses_is_an_error(tmp_path, tiny_pt, capsys):
    target = tmp_path / "x.notavideo"  # the folder is fine; OpenCV has no writer for this name
    assert live(tiny_pt, "--record", str(target)) == 1
    line = one_error_line(capsys)
    assert "could not open an MJPG video writer" in line and str(target) in line
    assert not target.exists()


def test_record_writes_every_frame(tmp_path, tiny_pt, capsys):
    target = tmp_path / "x.avi"
    assert live(tiny_pt, "--record", str(target)) == 0
    cap = cv2.VideoCapture(str(target))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 2


def test_frames_below_one_is_an_error(tiny_pt, capsys):
    assert main(["live", "--source", "synthetic", "--frames", "0", "--no-display"]) == 1
    assert "--frames must be at least 1" in one_error_line(capsys)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_finalises_the_video_and_keeps_the_csv(tmp_path, tiny_pt, sig):
    video, table = tmp_path / "live.avi", tmp_path / "live.csv"
    cmd = [sys.executable, "-c", "import sys; from edgeseg.cli import main; sys.exit(main(sys.argv[1:]))",
           "live", "--source", "synthetic", "--no-display", "--model", str(tiny_pt), "--device", "cpu",
           "--record", str(video), "--csv", str(table)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        # The CSV is written as it goes: wait for 3 frames on disk while the stream runs.
        while not (table.is_file() and len(table.read_text().splitlines()) >= 4):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no frames within 120 s"
            time.sleep(0.1)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + sig, (out, err)
    assert f"stopped by {signal.Signals(sig).name}" in out and "Traceback" not in err
    rows = table.read_text().splitlines()
    assert rows[0] == "index,nuclei,ms,fps,dropped"
    n = len(rows) - 1
    assert n >= 3 and f"{n} frames from synthetic" in out
    assert [int(r.split(",")[0]) for r in rows[1:]] == list(range(n))
    assert all(len(r.split(",")) == 5 for r in rows[1:])
    cap = cv2.VideoCapture(str(video))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == n  # the header was finalised
    read = 0
    while cap.read()[0]:
        read += 1
    assert read == n

"""A failed `edgeseg train` start leaves nothing that refuses the same command (issue 9, item 17)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")

from edgeseg import cli  # noqa: E402

ARGS = ["--steps", "1", "--val-every", "1", "--batch-size", "2", "--crop", "32", "--width", "4",
        "--depth", "2", "--val-fraction", "0.3", "--device", "cpu"]


def discs(root: Path, n: int = 4) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        lab = np.zeros((40, 48), np.uint16)
        for k in range(1, 4):
            cv2.circle(lab, (int(rng.integers(8, 40)), int(rng.integers(8, 32))), 5, k, -1)
        img = rng.normal(20, 5, lab.shape) + (lab > 0) * 150
        cv2.imwrite(str(root / "images" / f"i{i}.png"), np.clip(img, 0, 255).astype(np.uint8))
        cv2.imwrite(str(root / "labels" / f"i{i}.png"), lab)
    return root


def test_failed_start_does_not_block_the_same_command(tmp_path, capsys):
    data = discs(tmp_path / "data")
    label = data / "labels" / "i1.png"
    good = label.read_bytes()
    label.write_bytes(good[: len(good) // 2])  # a truncated label: found when the data is read
    run = tmp_path / "run"
    cmd = ["train", "--data", str(data), "--out", str(run), *ARGS]
    assert cli.main(cmd) == 1
    err = capsys.readouterr().err
    assert "truncated" in err and "Traceback" not in err
    assert not (run / "config.json").exists()
    label.write_bytes(good)  # the user repairs the file and runs the same command again
    assert cli.main(cmd) == 0, capsys.readouterr().err
    assert (run / "config.json").is_file() and (run / "best.pt").is_file()


def test_new_run_remakes_a_split_left_by_a_failed_start(tmp_path, capsys):
    """A split.json without config.json is a failed start's: a new run writes its own."""
    data = discs(tmp_path / "data", n=5)
    run = tmp_path / "run"
    run.mkdir()
    (run / "split.json").write_text('{"stale": true}')
    assert cli.main(["train", "--data", str(data), "--out", str(run), *ARGS]) == 0, \
        capsys.readouterr().err
    assert "stale" not in (run / "split.json").read_text()

"""``edgeseg demo --data``: folders without labels (or only some) give a demo that says so."""

from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest

from edgeseg.cli import main

pytest.importorskip("torch")


def blob_image(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.normal(20, 3, (h, w)).clip(0, 255).astype(np.uint8)
    for y, x in rng.integers(8, min(h, w) - 8, (4, 2)):
        cv2.circle(img, (int(x), int(y)), 5, 200, -1)
    return img


def demo(tiny_pt, data, out, *extra: str) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "mean of empty slice" and friends fail the test
        return main(["-q", "demo", "--data", str(data), "-o", str(out), "--model", str(tiny_pt),
                     "--device", "cpu", *extra])


def test_demo_on_a_folder_without_labels_says_so(tmp_path, tiny_pt, capsys):
    data = tmp_path / "plain"
    data.mkdir()
    names = ("experiment_a_001", "experiment_a_002")  # the same first 12 characters
    for i, name in enumerate(names):
        cv2.imwrite(str(data / f"{name}.png"), blob_image(48, 64, i))
    assert demo(tiny_pt, data, tmp_path / "o") == 0
    out = capsys.readouterr().out
    assert "has no labels, so no score" in out and "no labels, no score" in out
    assert "2 images" in out and "frames/s" in out
    assert "nan" not in out.lower() and "inf" not in out.lower()
    assert sum("(no labels)" in ln for ln in out.splitlines()) == 2
    # one overlay per image, even though the names share their first 12 characters
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [f"{n}_overlay.png" for n in names]


def test_oracle_without_labels_is_one_clear_error(tmp_path, tiny_pt, capsys):
    data = tmp_path / "plain"
    data.mkdir()
    cv2.imwrite(str(data / "a.png"), blob_image(48, 64, 0))
    assert demo(tiny_pt, data, tmp_path / "o", "--oracle") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--oracle" in err[0] and "has none" in err[0]


def test_demo_with_some_labels_scores_those(tmp_path, tiny_pt, capsys):
    data = tmp_path / "mixed"
    (data / "images").mkdir(parents=True)
    (data / "labels").mkdir()
    for i, name in enumerate(("a", "b")):
        cv2.imwrite(str(data / "images" / f"{name}.png"), blob_image(48, 64, i))
    labels = np.zeros((48, 64), np.uint16)
    labels[10:20, 10:20] = 1
    cv2.imwrite(str(data / "labels" / "a.png"), labels)
    assert demo(tiny_pt, data, tmp_path / "o") == 0
    out = capsys.readouterr().out
    assert "1 of 2 images" in out and "the score is over those" in out
    assert "mean Kaggle DSB2018 score" in out and "over the 1 labelled" in out
    assert "nan" not in out.lower()

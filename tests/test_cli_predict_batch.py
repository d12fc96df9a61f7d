"""``edgeseg predict`` over batches: unique output names, bad files skipped, re-runs resume."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edgeseg.cli import main

pytest.importorskip("torch")

KINDS = ("labels.tif", "instances.csv", "overlay.png")


def blob_image(h: int, w: int) -> np.ndarray:
    img = np.zeros((h, w), np.uint8)
    cv2.circle(img, (w // 2, h // 2), min(h, w) // 4, 200, -1)
    return img


def predict(tiny_pt, *args: str) -> int:
    return main(["-q", "predict", *args, "--model", str(tiny_pt), "--device", "cpu"])


def test_names_that_used_to_collide_get_their_own_outputs(tmp_path, tiny_pt, capsys):
    d, out = tmp_path / "in", tmp_path / "out"
    d.mkdir()
    shapes = {"a.png": (40, 50), "a.tif": (48, 36), "a_1.png": (32, 64)}
    for name, (h, w) in shapes.items():
        assert cv2.imwrite(str(d / name), blob_image(h, w))
    assert predict(tiny_pt, str(d), "-o", str(out)) == 0
    assert "3 of 3 images segmented" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{n}.{k}" for n in shapes for k in KINDS)
    for name, shape in shapes.items():  # each output belongs to its own input (nothing overwritten)
        assert cv2.imread(str(out / f"{name}.labels.tif"), cv2.IMREAD_UNCHANGED).shape == shape
        assert cv2.imread(str(out / f"{name}.overlay.png")).shape[:2] == shape


def test_same_file_name_in_two_folders_is_refused_before_any_work(tmp_path, tiny_pt, capsys):
    for sub in ("p1", "p2"):
        (tmp_path / sub).mkdir()
        cv2.imwrite(str(tmp_path / sub / "A01.png"), blob_image(32, 32))
    out = tmp_path / "out"
    assert predict(tiny_pt, str(tmp_path / "p1"), str(tmp_path / "p2"), "-o", str(out)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'A01.png'" in err[0] and "separate -o" in err[0]
    assert not out.exists()


def test_the_same_file_twice_is_segmented_once(tmp_path, tiny_pt, capsys):
    d = tmp_path / "in"
    d.mkdir()
    cv2.imwrite(str(d / "a.png"), blob_image(32, 32))
    assert predict(tiny_pt, str(d), str(d / "a.png"), "-o", str(tmp_path / "out")) == 0
    assert "1 of 1 images segmented" in capsys.readouterr().out


def test_an_output_that_would_overwrite_an_input_is_refused(tmp_path, tiny_pt, capsys):
    d = tmp_path / "in"
    d.mkdir()
    cv2.imwrite(str(d / "x.png"), blob_image(32, 32))
    cv2.imwrite(str(d / "x.png.overlay.png"), blob_image(24, 24))  # an image with an unlucky name
    before = (d / "x.png.overlay.png").read_bytes()
    assert predict(tiny_pt, str(d), "-o", str(d)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "would overwrite the input" in err[0]
    assert (d / "x.png.overlay.png").read_bytes() == before


def make_batch(tmp_path, bad_first: bool):
    d = tmp_path / "in"
    d.mkdir()
    bad = d / ("0bad.png" if bad_first else "m_bad.png")
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 20)
    for name in ("a.png", "z.png"):
        cv2.imwrite(str(d / name), blob_image(32, 40))
    return d, bad


def test_a_bad_file_is_reported_and_the_batch_goes_on(tmp_path, tiny_pt, capsys):
    d, bad = make_batch(tmp_path, bad_first=True)
    out = tmp_path / "out"
    assert predict(tiny_pt, str(d), "-o", str(out)) == 1
    cap = capsys.readouterr()
    err = cap.err.strip().splitlines()
    assert len(err) == 2 and str(bad) in err[0] and "going on" in err[0]
    assert err[1].startswith("edgeseg predict: error: 1 of 3 images") and str(bad) in err[1]
    assert "2 of 3 images segmented, 1 failed" in cap.out
    for name in ("a.png", "z.png"):
        assert all((out / f"{name}.{k}").is_file() for k in KINDS)
    assert not list(out.glob("0bad*"))


def test_fail_fast_stops_at_the_first_bad_file(tmp_path, tiny_pt, capsys):
    d, bad = make_batch(tmp_path, bad_first=True)
    out = tmp_path / "out"
    assert predict(tiny_pt, str(d), "-o", str(out), "--fail-fast") == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edgeseg predict: error:") and str(bad) in err[0]
    assert not any(out.iterdir())


def test_rerun_skips_finished_images_unless_overwrite(tmp_path, tiny_pt, capsys):
    d = tmp_path / "in"
    d.mkdir()
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(d / name), blob_image(32, 40))
    out = tmp_path / "out"
    assert predict(tiny_pt, str(d), "-o", str(out)) == 0
    stamp = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    capsys.readouterr()

    assert predict(tiny_pt, str(d), "-o", str(out)) == 0
    assert "nothing to do, all 2 images have their outputs" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamp

    (out / "a.png.instances.csv").unlink()  # an unfinished image: done again, the other skipped
    assert predict(tiny_pt, str(d), "-o", str(out)) == 0
    assert "1 of 2 images segmented, 1 skipped (all outputs exist" in capsys.readouterr().out
    assert (out / "a.png.instances.csv").is_file()
    assert all((out / f"b.png.{k}").stat().st_mtime_ns == stamp[f"b.png.{k}"] for k in KINDS)

    assert predict(tiny_pt, str(d), "-o", str(out), "--overwrite") == 0
    assert "2 of 2 images segmented" in capsys.readouterr().out
    assert all((out / f"b.png.{k}").stat().st_mtime_ns != stamp[f"b.png.{k}"] for k in KINDS)


def test_no_overlay_needs_only_labels_and_table_to_count_as_finished(tmp_path, tiny_pt, capsys):
    d = tmp_path / "in"
    d.mkdir()
    cv2.imwrite(str(d / "a.png"), blob_image(32, 40))
    out = tmp_path / "out"
    assert predict(tiny_pt, str(d), "-o", str(out), "--no-overlay") == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.png.instances.csv", "a.png.labels.tif"]
    assert predict(tiny_pt, str(d), "-o", str(out), "--no-overlay") == 0
    assert "nothing to do" in capsys.readouterr().out
    assert predict(tiny_pt, str(d), "-o", str(out)) == 0  # the overlay is missing now: done again
    assert (out / "a.png.overlay.png").is_file()

"""``edgeseg predict --dask``: per-image jobs on a cluster, OME-Zarr labels for large arrays, a
failed image retried once then reported, and a re-run after an interruption that redoes only what
was missing, with the same outputs. Real DSB2018 images; one LocalCluster shared by the tests
(its address is passed as --dask), and one run with --dask local:1."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("distributed")
zarr = pytest.importorskip("zarr")

from edgeseg.cli import main
from edgeseg.data import read_labels


@pytest.fixture(scope="module")
def address():
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        yield cluster.scheduler_address


@pytest.fixture(scope="module")
def images(stage1_train: Path, tmp_path_factory) -> Path:
    manifest = json.loads((stage1_train / "manifest.json").read_text())
    ids = sorted(m["id"] for m in manifest if (m["h"], m["w"]) == (256, 256))[:4]
    d = tmp_path_factory.mktemp("images")
    for i in ids:
        shutil.copy(stage1_train / "images" / f"{i}.png", d / f"{i[:8]}.png")
    return d


def outputs(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file()}


def test_images_as_jobs_match_plain_predict(address, images, tmp_path, capsys) -> None:
    assert main(["-q", "predict", str(images), "-o", str(tmp_path / "plain"), "--diameter", "none"]) == 0
    assert main(["-q", "predict", str(images), "-o", str(tmp_path / "dask"), "--diameter", "none",
                 "--dask", address]) == 0
    assert "4 of 4 images segmented on Dask" in capsys.readouterr().out
    plain, dask = outputs(tmp_path / "plain"), outputs(tmp_path / "dask")
    assert sorted(plain) == sorted(dask) and len(dask) == 12  # labels, csv, overlay per image
    for name in plain:
        if name.endswith(".labels.tif"):
            np.testing.assert_array_equal(read_labels(tmp_path / "plain" / name),
                                          read_labels(tmp_path / "dask" / name))
        elif name.endswith(".csv"):
            assert plain[name] == dask[name]


def test_rerun_after_an_interruption_redoes_only_what_is_missing(address, images, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    args = ["-q", "predict", str(images), "-o", str(out), "--diameter", "none", "--dask", address]
    assert main(args) == 0
    first = outputs(out)
    names = sorted({n.split(".")[0] for n in first})
    # an interrupted run: one image never started, one cut between two of its outputs, and the
    # temporary file of a write in flight
    for p in out.glob(f"{names[0]}.*"):
        p.unlink()
    (out / f"{names[1]}.png.instances.csv").unlink()
    (out / f".{names[1]}.png.labels.tif.x1y2.tmp").write_bytes(b"half")
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob(f"{names[2]}.*")}
    capsys.readouterr()
    assert main(args) == 0
    said = capsys.readouterr().out
    assert "2 of 4 images segmented on Dask" in said and "2 skipped" in said
    assert outputs(out) == {**first, f".{names[1]}.png.labels.tif.x1y2.tmp": b"half"}
    assert {p.name: p.stat().st_mtime_ns for p in out.glob(f"{names[2]}.*")} == stamps  # not redone
    assert main(args) == 0
    assert "nothing to do, all 4 images" in capsys.readouterr().out


def test_a_bad_image_is_retried_once_then_reported(address, images, tmp_path, capsys) -> None:
    d = tmp_path / "in"
    shutil.copytree(images, d)
    (d / "broken.png").write_bytes((images / min(os.listdir(images))).read_bytes()[:300])
    code = main(["-q", "predict", str(d), "-o", str(tmp_path / "out"), "--diameter", "none", "--dask", address])
    assert code == 1
    err = capsys.readouterr().err
    assert "broken.png failed twice" in err and "1 of 5 images could not be segmented" in err
    assert len(list((tmp_path / "out").glob("*.labels.tif"))) == 4  # the others are written


def test_large_array_becomes_ome_zarr_labels(address, stage1_train, tmp_path, capsys) -> None:
    from mosaic import fluorescence_mosaic

    import edgeseg.dask

    mosaic = fluorescence_mosaic(stage1_train, 1024)[:, :768]
    src = tmp_path / "mosaic.zarr"
    zarr.open_array(str(src), mode="w", shape=mosaic.shape, chunks=(256, 256), dtype="uint8")[:] = mosaic
    out = tmp_path / "out"
    (out / ".mosaic.zarr.labels.ome.zarr.old1.tmp").mkdir(parents=True)  # left by an interrupted run
    args = ["-q", "predict", str(src), "-o", str(out), "--diameter", "none", "--dask", address,
            "--chunk", "512"]
    assert main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == ["mosaic.zarr.instances.csv", "mosaic.zarr.labels.ome.zarr"]
    group = zarr.open_group(str(out / "mosaic.zarr.labels.ome.zarr"), mode="r")
    ms = group.attrs["multiscales"][0]
    assert ms["version"] == "0.4" and [a["name"] for a in ms["axes"]] == ["y", "x"]
    level0 = np.asarray(group[ms["datasets"][0]["path"]][:])
    assert level0.dtype == np.int32 and level0.shape == mosaic.shape
    want = edgeseg.dask.segment_array(mosaic, chunk=512, diameter=None).compute(scheduler="sync")
    np.testing.assert_array_equal(level0, want)
    rows = (out / "mosaic.zarr.instances.csv").read_text().splitlines()
    assert rows[0].startswith("id,area,centroid_y") and len(rows) - 1 == len(np.unique(want)) - 1
    capsys.readouterr()
    assert main(args) == 0 and "nothing to do" in capsys.readouterr().out  # finished: skipped


def test_local_cluster_and_bad_scheduler(images, tmp_path, capsys) -> None:
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(next(images.iterdir()), one)
    assert main(["-q", "predict", str(one), "-o", str(tmp_path / "out"), "--diameter", "none",
                 "--dask", "local:1", "--no-overlay"]) == 0
    assert len(list((tmp_path / "out").iterdir())) == 2
    assert main(["-q", "predict", str(one), "-o", str(tmp_path / "o2"), "--dask", "local:0"]) == 1
    assert "local:N with N >= 1" in capsys.readouterr().err

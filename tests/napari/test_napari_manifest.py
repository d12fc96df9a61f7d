"""The npe2 manifest ships in the package, napari finds it through the entry point, ``npe2
validate`` passes (with the manifest's python names imported), and ``import edgeseg`` stays
free of napari."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import edgeseg

MANIFEST = Path(edgeseg.__file__).resolve().parent / "napari" / "napari.yaml"


def test_import_edgeseg_never_imports_the_plugin():
    code = ("import sys, edgeseg, edgeseg.segmenter, edgeseg.cli; "
            "print([m for m in sys.modules if m.split('.')[0] in ('napari', 'qtpy', 'PyQt5') "
            "or m.startswith('edgeseg.napari')])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_entry_point_names_the_shipped_manifest():
    eps = [ep for ep in metadata.entry_points(group="napari.manifest") if ep.name == "edgeseg"]
    assert [ep.value for ep in eps] == ["edgeseg.napari:napari.yaml"]
    assert MANIFEST.is_file()


def test_npe2_validate_passes():
    pytest.importorskip("npe2")
    npe2 = Path(sys.executable).with_name("npe2")
    cli = [str(npe2)] if npe2.is_file() else [sys.executable, "-m", "npe2"]
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    # by plugin name: the manifest napari finds through the entry point; --imports imports every
    # python_name in it (the widget class, the sample function)
    r = subprocess.run([*cli, "validate", "edgeseg", "--imports"], capture_output=True, text=True,
                       timeout=300, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "valid" in r.stdout.lower()


def test_manifest_contributions():
    npe2 = pytest.importorskip("npe2")
    pm = npe2.PluginManifest.from_file(MANIFEST)
    assert pm.name == "edgeseg"
    commands = {c.id: c.python_name for c in pm.contributions.commands}
    assert commands["edgeseg.segment_widget"] == "edgeseg.napari._widget:SegmentWidget"
    assert [w.command for w in pm.contributions.widgets] == ["edgeseg.segment_widget"]
    assert [s.command for s in pm.contributions.sample_data] == ["edgeseg.sample_nuclei"]


def test_sample_is_a_real_image():
    pytest.importorskip("napari")
    from edgeseg.napari._sample import nuclei

    [(data, meta, kind)] = nuclei()
    assert kind == "image" and data.ndim >= 2 and data.shape[0] > 100 and data.std() > 0
    assert "DSB2018" in meta["name"]

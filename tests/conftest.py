"""Shared test fixtures: where the real DSB2018 data is, and small real samples.

Hypothesis runs derandomized (profile ``edgeseg``, the default): each property test draws the same
examples on every machine and every run, so a run does not depend on where it runs; failures
found are kept as explicit ``@example``s. ``pytest --hypothesis-profile explore`` searches with
fresh random examples instead (then add what it finds as an ``@example``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

settings.register_profile("edgeseg", derandomize=True, database=None, print_blob=True)
settings.register_profile("explore", derandomize=False, database=None, print_blob=True)
settings.load_profile("edgeseg")

REPO = Path(__file__).resolve().parents[1]
DSB_ROOT = REPO.parent / "shared" / "data" / "dsb2018"
STAGE1_TRAIN = DSB_ROOT / "stage1_train"
KAGGLE_SAMPLE = DSB_ROOT / "kaggle_layout_sample"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(autouse=True, scope="session")
def _untuned_allocator():
    """The CLI tunes malloc process-wide (edgeseg.allocator); tests call main([...]) in-process,
    so the test process records a tuning that changed nothing: every test sees the same
    allocator. tests/test_allocator.py checks the real tuning in subprocesses."""
    from edgeseg import allocator

    allocator._done = allocator.AllocatorTuning(False, "left as it is in the test process")
    yield


def _require(path: Path) -> Path:
    if not path.is_dir():
        pytest.skip(
            f"DSB2018 data not found at {path}: these tests read the real data set from "
            "../shared/data/dsb2018 beside the repository"
        )
    return path


@pytest.fixture(scope="session")
def stage1_train() -> Path:
    return _require(STAGE1_TRAIN)


@pytest.fixture(scope="session")
def kaggle_sample() -> Path:
    return _require(KAGGLE_SAMPLE)


@pytest.fixture(scope="session")
def manifest(stage1_train: Path) -> list[dict]:
    return json.loads((stage1_train / "manifest.json").read_text())


def subset_ids(manifest: list[dict], n: int, seed: int = 0) -> list[str]:
    """A fixed, seeded subset of image ids (the same on every machine)."""
    ids = sorted(m["id"] for m in manifest)
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(ids, size=min(n, len(ids)), replace=False).tolist())


@pytest.fixture(scope="session")
def tiny_pt(tmp_path_factory) -> Path:
    pytest.importorskip("torch")
    from models import tiny_checkpoint

    return tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "tiny.pt")


@pytest.fixture(scope="session")
def tiny_onnx(tiny_pt: Path) -> Path:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from edgeseg.converters.onnx_export import export_onnx

    return export_onnx(tiny_pt, tiny_pt.with_suffix(".onnx"))


def disc_dataset(d: Path, seed: int) -> Path:
    """Six 48 x 48 images with three bright discs each and their label images (images/ + labels/)."""
    import cv2

    (d / "images").mkdir()
    (d / "labels").mkdir()
    rng = np.random.default_rng(seed)
    for k in range(6):
        img, lab = np.zeros((48, 48), np.uint8), np.zeros((48, 48), np.uint16)
        for j in range(3):
            c = tuple(int(v) for v in rng.integers(8, 40, 2))
            cv2.circle(img, c, 6, 200, -1)
            cv2.circle(lab, c, 6, j + 1, -1)
        cv2.imwrite(str(d / "images" / f"s{k}.png"), img)
        cv2.imwrite(str(d / "labels" / f"s{k}.png"), lab)
    return d


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory) -> Path:
    """A tiny labelled dataset for INT8 calibration tests."""
    return disc_dataset(tmp_path_factory.mktemp("calib"), seed=0)

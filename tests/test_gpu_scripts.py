"""The prepared GPU scripts: scripts/gpu_check.sh (issue 11's check), scripts/gpu_train.sh (a
training run on the GPU) and scripts/pack_data.py (the data pack gpu_train.sh reads there).
On a machine without a CUDA GPU each script says so, writes nothing and exits 0."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
SCRIPT = SCRIPTS / "gpu_train.sh"


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


@pytest.mark.parametrize("name", ["gpu_check.sh", "gpu_train.sh"])
@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.skipif(_cuda(), reason="this machine has a CUDA GPU: the script would run")
def test_cpu_machine_says_so_and_exits_0(tmp_path, name):
    out = tmp_path / "results"
    proc = subprocess.run(["bash", str(SCRIPTS / name), str(out)], capture_output=True,
                          text=True, timeout=120,
                          env={"PYTHON": sys.executable, "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert "no CUDA GPU" in proc.stdout
    assert not out.exists()


@pytest.mark.parametrize("name", ["gpu_check.sh", "gpu_train.sh"])
def test_needs_an_outdir(name):
    proc = subprocess.run(["bash", str(SCRIPTS / name)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert f"usage: scripts/{name} OUTDIR" in proc.stderr


def _dataset(root: Path) -> dict[str, np.ndarray]:
    """An RGBA grey image, an RGBA colour image and a plain grey one, with labels."""
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    grey = rng.integers(0, 255, (40, 48), dtype=np.uint8)
    colour = rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)
    alpha = np.full((40, 48, 1), 255, np.uint8)
    images = {"a": np.dstack([grey, grey, grey, alpha]), "b": np.dstack([colour, alpha]),
              "c": grey}
    for name, img in images.items():
        bgr = cv2.cvtColor(img, cv2.COLOR_RGBA2BGRA) if img.ndim == 3 else img
        cv2.imwrite(str(root / "images" / f"{name}.png"), bgr)
        lab = np.zeros((40, 48), np.uint16)
        lab[5:15, 5:15], lab[20:30, 20:40] = 1, 300
        cv2.imwrite(str(root / "labels" / f"{name}.png"), lab)
    return images


def test_pack_keeps_pixels_kinds_and_labels(tmp_path):
    sys.path.insert(0, str(REPO / "scripts"))
    import pack_data

    from edgeseg.data import image_kind, load_dataset

    _dataset(tmp_path / "src")
    assert pack_data.main([str(tmp_path / "src"), str(tmp_path / "dst")]) == 0
    src = {s.id: s for s in load_dataset(tmp_path / "src")}
    dst = {s.id: s for s in load_dataset(tmp_path / "dst")}
    assert src.keys() == dst.keys() == {"a", "b", "c"}
    for i in src:
        a, b = src[i].image(), dst[i].image()
        assert np.array_equal(pack_data.reduce(a), b)
        assert image_kind(a) == image_kind(b)
        assert np.array_equal(src[i].labels(), dst[i].labels())
    assert dst["a"].image().ndim == 2  # exactly grey RGBA -> one channel
    assert dst["b"].image().shape == (40, 48, 3)  # colour keeps its channels, loses alpha
    assert not (tmp_path / "dst.partial").exists()


def test_pack_never_writes_over_a_folder(tmp_path, capsys):
    sys.path.insert(0, str(REPO / "scripts"))
    import pack_data

    _dataset(tmp_path / "src")
    (tmp_path / "dst").mkdir()
    (tmp_path / "dst" / "keep.txt").write_text("mine")
    assert pack_data.main([str(tmp_path / "src"), str(tmp_path / "dst")]) == 1
    assert "exists" in capsys.readouterr().err
    assert (tmp_path / "dst" / "keep.txt").read_text() == "mine"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_cpu_dry_run_trains_and_brings_back_the_files(tmp_path):
    """The same command line on the CPU (GPU_TRAIN_DEVICE=cpu): the flags exist, the run starts
    from the shipped model and the files the GPU session fetches land in OUTDIR."""
    pytest.importorskip("torch")
    sys.path.insert(0, str(REPO / "tests" / "training"))
    from test_train import make_tiny_dataset

    data = make_tiny_dataset(tmp_path / "data", n=8)
    out = tmp_path / "out"
    env = {"PYTHON": sys.executable, "PATH": "/usr/bin:/bin", "GPU_TRAIN_DEVICE": "cpu",
           "DATA": str(data), "SPLIT": "", "STEPS": "3", "BATCH": "2", "WORKERS": "1",
           "GPU_TRAIN_S": "240", "OMP_NUM_THREADS": "2"}
    proc = subprocess.run(["bash", str(SCRIPT), str(out)], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr + (out / "train.log").read_text()
    assert "training exit code 0" in proc.stdout
    for name in ("best.pt", "log.csv", "config.json", "model_card.json", "train.log",
                 "versions.json"):
        assert (out / name).is_file(), name
    assert not (out / "last.pt").exists()  # too big to fetch: it stays on the machine
    from edgeseg.checkpoint import MODELS_DIR, load_checkpoint

    shipped = load_checkpoint(MODELS_DIR / "default" / "model.pt").model_config
    assert load_checkpoint(out / "best.pt").model_config == shipped  # the shipped model's

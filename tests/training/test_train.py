"""edgeseg.train: CLI smoke run, exact resume after SIGKILL, config checks, batches, loss."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")

from edgeseg import cli
from edgeseg.training.augment import AugmentConfig, augment_pair, dihedral, random_crop
from edgeseg.checkpoint import load_checkpoint
from edgeseg.errors import InputError, ModelError
from edgeseg.model import UNetConfig
from edgeseg.training.train import TrainConfig, WarmupCosine, load_run_config, seg_loss
from edgeseg.training.data import make_batch

REPO = Path(__file__).resolve().parents[1]
TINY_ARGS = ["--batch-size", "2", "--crop", "32", "--width", "4", "--depth", "2",
             "--val-fraction", "0.3", "--device", "cpu"]


def make_tiny_dataset(root: Path, n: int = 6, seed: int = 0) -> Path:
    """Bright discs on dark noise: images/<id>.png (uint8) + labels/<id>.png (uint16)."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    rng = np.random.default_rng(seed)
    for i in range(n):
        h, w = (64, 80) if i % 2 == 0 else (24, 40)  # some images smaller than the crop
        lab = np.zeros((h, w), np.uint16)
        for k in range(1, 7):
            cy, cx, r = rng.integers(4, h - 4), rng.integers(4, w - 4), rng.integers(3, 7)
            cv2.circle(lab, (int(cx), int(cy)), int(r), k, -1)
        img = rng.normal(20, 5, (h, w)) + (lab > 0) * 150
        cv2.imwrite(str(root / "images" / f"img{i:02d}.png"), np.clip(img, 0, 255).astype(np.uint8))
        cv2.imwrite(str(root / "labels" / f"img{i:02d}.png"), lab)
    return root


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_dataset(tmp_path_factory.mktemp("data") / "tiny")


def test_cli_train_smoke(tiny: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    rc = cli.main(["train", "--data", str(tiny), "--out", str(run), "--steps", "6",
                   "--val-every", "3", "--ckpt-every", "3", "--log-every", "2", *TINY_ARGS])
    assert rc == 0
    for name in ("config.json", "split.json", "last.pt", "best.pt", "log.csv", "curves.png",
                 "model_card.json"):
        assert (run / name).is_file(), name
    cfg = load_run_config(run)
    assert cfg.steps == 6 and cfg.model == UNetConfig(width=4, depth=2) and cfg.crop == 32
    split = json.loads((run / "split.json").read_text())
    assert split["train"] and split["val"] and not set(split["train"]) & set(split["val"])
    assert len(split["train"]) + len(split["val"]) == 6
    ckpt = load_checkpoint(run / "best.pt")
    card = ckpt.model_card
    assert set(card["val"]["per_image"]) == set(split["val"])
    assert card["postprocess"] == ckpt.postprocess_config
    assert {"seed_threshold", "fg_threshold", "min_size"} <= set(ckpt.postprocess_config)
    assert card["training"]["steps"] == 6 and card["hardware"]["device"] == "cpu"
    assert card["data"]["n_train"] == len(split["train"])
    net = ckpt.build_model()
    with torch.no_grad():
        out = net(torch.rand(1, 1, 64, 80))
    assert out.shape == (1, 3, 64, 80) and torch.isfinite(out).all()
    last = load_checkpoint(run / "last.pt")
    assert last.train_state["step"] == 6
    with open(run / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [2, 3, 4, 6]
    assert all(float(r["loss"]) > 0 for r in rows if r["loss"])
    assert rows[-1]["val_dsb"] != ""
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # A finished run resumes to "done" without training further.
    assert cli.main(["train", "--resume", str(run)]) == 0
    assert load_checkpoint(run / "last.pt").train_state["step"] == 6
    # --finalize makes a shippable model from best.pt (as it would mid-run) and bundles cleanly.
    assert cli.main(["train", "--finalize", str(run)]) == 0
    final = load_checkpoint(run / "final.pt")
    assert final.train_state is None and final.model_card["finalized_from"] == "best.pt"
    assert set(final.model_card["val"]["per_image"]) == set(split["val"])
    assert final.postprocess_config == final.model_card["postprocess"]
    assert json.loads((run / "final_model_card.json").read_text())["val"] == final.model_card["val"]
    from edgeseg.checkpoint import export_default

    dest = export_default(run / "final.pt", tmp_path / "bundle", half=False)
    assert load_checkpoint(dest / "model.pt").model_card["val"] == final.model_card["val"]


def test_refuses_existing_run_and_changed_config(tiny: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    run = tmp_path / "run"
    assert cli.main(["train", "--data", str(tiny), "--out", str(run), "--steps", "2",
                     "--val-every", "2", *TINY_ARGS]) == 0
    capsys.readouterr()
    assert cli.main(["train", "--data", str(tiny), "--out", str(run), "--steps", "2",
                     *TINY_ARGS]) == 1
    assert "already holds a run" in capsys.readouterr().err
    assert cli.main(["train", "--resume", str(run), "--steps", "4"]) == 1
    err = capsys.readouterr().err
    assert "steps: run has 2, asked 4" in err and "LR schedule" in err
    assert cli.main(["train", "--resume", str(tmp_path / "nothing")]) == 1
    assert "not a run folder" in capsys.readouterr().err


def _train_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "edgeseg.cli", "train", *args]


def _env(**extra: str) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", EDGESEG_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    env.pop("EDGESEG_TEST_STEP_SLEEP", None)
    env.update(extra)
    return env


def _step(path: Path) -> int:
    try:
        return int(load_checkpoint(path).train_state["step"])
    except ModelError:  # not written yet
        return -1


def test_resume_after_sigkill_is_exact(tiny: Path, tmp_path: Path) -> None:
    common = ["--data", str(tiny), "--steps", "10", "--ckpt-every", "2", "--val-every", "5",
              "--log-every", "1", "--seed", "3", *TINY_ARGS]
    run_a, run_b = tmp_path / "a", tmp_path / "b"
    # Uninterrupted reference and the victim run side by side (one thread each).
    ref = subprocess.Popen(_train_cmd("--out", str(run_a), *common), cwd=REPO, env=_env(),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    victim = subprocess.Popen(_train_cmd("--out", str(run_b), *common), cwd=REPO,
                              env=_env(EDGESEG_TEST_STEP_SLEEP="0.3"),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while _step(run_b / "last.pt") < 4:
            assert victim.poll() is None, victim.communicate()[0].decode()
            assert time.monotonic() < deadline, "no checkpoint at step >= 4 within 60 s"
            time.sleep(0.05)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        killed_at = _step(run_b / "last.pt")
        assert 4 <= killed_at < 10, killed_at
        out, _ = ref.communicate(timeout=60)
        assert ref.returncode == 0, out.decode()
    finally:
        for p in (ref, victim):
            if p.poll() is None:
                p.kill()
                p.wait()
    resumed = subprocess.run(_train_cmd("--resume", str(run_b)), cwd=REPO, env=_env(),
                             capture_output=True, timeout=60, check=False)
    assert resumed.returncode == 0, resumed.stderr.decode()
    a = load_checkpoint(run_a / "last.pt")
    b = load_checkpoint(run_b / "last.pt")
    assert a.train_state["step"] == b.train_state["step"] == 10
    assert a.state_dict.keys() == b.state_dict.keys()
    diff = max(float((a.state_dict[k].double() - b.state_dict[k].double()).abs().max())
               for k in a.state_dict)
    assert diff <= 1e-6, diff
    for key in ("exp_avg", "exp_avg_sq"):
        sa = a.train_state["optimizer"]["state"]
        sb = b.train_state["optimizer"]["state"]
        assert all(torch.allclose(sa[i][key], sb[i][key], atol=1e-6, rtol=0) for i in sa)
    assert a.train_state["scheduler"]["last_epoch"] == b.train_state["scheduler"]["last_epoch"]
    with open(run_b / "log.csv", newline="") as f:
        steps = [int(r["step"]) for r in csv.DictReader(f)]
    assert steps == list(range(1, 11))
    assert len(b.train_state["sessions"]) == 2


def test_sigterm_checkpoints_and_stops(tiny: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = subprocess.Popen(
        _train_cmd("--data", str(tiny), "--out", str(run), "--steps", "50", "--ckpt-every", "2",
                   "--val-every", "50", *TINY_ARGS),
        cwd=REPO, env=_env(EDGESEG_TEST_STEP_SLEEP="0.2"), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while _step(run / "last.pt") < 2:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, err.decode()
    assert b"--resume" in out
    step = _step(run / "last.pt")
    assert 2 <= step < 50  # the step reached when the signal came, not only the last multiple


def test_sigterm_to_the_process_group_with_workers(tiny: Path, tmp_path: Path) -> None:
    """`timeout` and Ctrl-C signal the whole process group, batch workers included: the run
    still checkpoints and stops cleanly (the workers leave the shutdown to it)."""
    run = tmp_path / "run"
    proc = subprocess.Popen(
        _train_cmd("--data", str(tiny), "--out", str(run), "--steps", "200", "--ckpt-every", "2",
                   "--val-every", "200", "--workers", "2", *TINY_ARGS),
        cwd=REPO, env=_env(EDGESEG_TEST_STEP_SLEEP="0.1"), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while _step(run / "last.pt") < 2:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 143, err.decode()
    assert b"Traceback" not in err, err.decode()
    assert b"--resume" in out
    assert 2 <= _step(run / "last.pt") < 200


def test_batches_are_a_function_of_seed_step_rank(tiny: Path) -> None:
    from edgeseg.data import NormConfig, load_dataset
    from edgeseg.targets import TargetConfig
    from edgeseg.training.data import TrainSet
    data = TrainSet(load_dataset(tiny), NormConfig(), TargetConfig())
    kw = {"batch_size": 3, "crop": 32, "augment": AugmentConfig()}
    x1, y1 = make_batch(data, seed=1, step=5, rank=0, **kw)
    x2, y2 = make_batch(data, seed=1, step=5, rank=0, **kw)
    assert x1.shape == (3, 1, 32, 32) and y1.shape == (3, 32, 32)
    assert x1.dtype == np.float32 and y1.dtype == np.int64
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    for other in ({"seed": 1, "step": 6, "rank": 0}, {"seed": 2, "step": 5, "rank": 0},
                  {"seed": 1, "step": 5, "rank": 1}):
        assert not np.array_equal(make_batch(data, **other, **kw)[0], x1)
    assert set(np.unique(y1)) <= {0, 1, 2}


def test_random_crop_pads_small_images() -> None:
    rng = np.random.default_rng(0)
    img = rng.random((5, 7)).astype(np.float16)
    tgt = rng.integers(0, 3, (5, 7)).astype(np.uint8)
    ci, ct = random_crop(img, tgt, 16, rng)
    assert ci.shape == ct.shape == (16, 16)
    assert set(np.unique(ct)) <= set(np.unique(tgt))
    big = rng.random((40, 50)).astype(np.float32)
    ci, ct = random_crop(big, (big * 3).astype(np.uint8), 16, rng)
    assert ci.shape == (16, 16)
    # the crop is a window of the image, and target pixels move with image pixels
    assert np.array_equal(ct, (ci * 3).astype(np.uint8))


def test_augment_geometry_keeps_image_and_target_aligned() -> None:
    rng = np.random.default_rng(0)
    base = rng.random((40, 40)).astype(np.float32)
    tgt = (base > 0.5).astype(np.uint8) * 2
    no_intensity = AugmentConfig(intensity_scale=0, intensity_shift=0, gamma=0, blur_prob=0,
                                 noise_prob=0)
    for _ in range(10):
        img, t = augment_pair(base, tgt, 32, no_intensity, rng)
        assert np.array_equal((img > 0.5).astype(np.uint8) * 2, t)
    assert len({dihedral(np.arange(4).reshape(2, 2), k).tobytes() for k in range(8)}) == 8
    with pytest.raises(InputError):
        AugmentConfig(blur_prob=2.0)


def test_train_config_roundtrip_and_validation() -> None:
    cfg = TrainConfig().replace(steps=100, model__width=8, crop=128)
    assert cfg.model.width == 8
    again = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg and again.diff(cfg) == {}
    assert cfg.diff(cfg.replace(lr=0.5, model__depth=3)) == {
        "lr": (cfg.lr, 0.5), "model.depth": (4, 3)}
    with pytest.raises(InputError, match="multiple of 2\\*\\*depth"):
        TrainConfig(crop=100)
    with pytest.raises(InputError):
        TrainConfig(steps=0)
    with pytest.raises(InputError):
        TrainConfig(class_weights=(1.0, 2.0))
    with pytest.raises(InputError, match="unknown keys"):
        TrainConfig.from_dict({"stepz": 3})


def test_schedule_and_loss() -> None:
    f = WarmupCosine(total=100, warmup=10, min_ratio=0.01)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0) and f(100) == pytest.approx(0.01)
    assert all(f(s) >= f(s + 1) for s in range(10, 100))
    y = torch.randint(0, 3, (2, 16, 16))
    perfect = torch.nn.functional.one_hot(y, 3).permute(0, 3, 1, 2).float() * 20
    w = torch.tensor([1.0, 1.0, 3.0])
    good, ce, dice = seg_loss(perfect, y, w, 1.0)
    bad, _, _ = seg_loss(-perfect, y, w, 1.0)
    assert float(good) < 1e-3 and float(ce) < 1e-6 and float(dice) < 1e-3
    assert float(bad) > 1.0


def test_kind_balance_lifts_rare_kinds() -> None:
    from edgeseg.training.data import sampling_probs
    kinds = ["fluorescence"] * 90 + ["stained"] * 9 + ["brightfield"] * 1
    assert sampling_probs(kinds, 0.0) is None
    assert sampling_probs(["fluorescence"] * 5, 1.0) is None  # one kind: nothing to balance
    share = lambda p, k: float(sum(pi for pi, ki in zip(p, kinds) if ki == k))  # noqa: E731
    full = sampling_probs(kinds, 1.0)
    assert np.isclose(full.sum(), 1.0)
    for k in ("fluorescence", "stained", "brightfield"):
        assert np.isclose(share(full, k), 1 / 3)
    half = sampling_probs(kinds, 0.5)
    assert 0.01 < share(half, "brightfield") < share(half, "stained") < 1 / 3
    assert share(half, "fluorescence") < 0.9
    with pytest.raises(InputError, match="kind_balance"):
        TrainConfig(kind_balance=1.5)


def test_balanced_batches_are_deterministic_and_follow_probs(tiny: Path) -> None:
    from edgeseg.data import NormConfig, load_dataset
    from edgeseg.targets import TargetConfig
    from edgeseg.training.data import TrainSet
    samples = load_dataset(tiny)
    kinds = {s.id: ("stained" if i == 0 else "fluorescence") for i, s in enumerate(samples)}
    data = TrainSet(samples, NormConfig(), TargetConfig(), kinds=kinds, kind_balance=1.0)
    assert data.probs is not None and np.isclose(data.probs[0], 0.5)
    kw = {"batch_size": 2, "crop": 32, "augment": AugmentConfig()}
    a = make_batch(data, seed=3, step=7, rank=0, **kw)
    b = make_batch(data, seed=3, step=7, rank=0, **kw)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_curves_are_skipped_without_matplotlib(tmp_path: Path, monkeypatch, caplog) -> None:
    from edgeseg.training.runlog import RunLog

    runlog = RunLog(tmp_path / "log.csv")
    runlog.add(1, loss=0.5, ce=0.3, dice=0.2)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import raises ImportError
    with caplog.at_level("WARNING"):
        runlog.plot(tmp_path / "curves.png")
        runlog.plot(tmp_path / "curves.png")
    assert not (tmp_path / "curves.png").exists()
    assert [r.message for r in caplog.records].count(caplog.records[0].message) == 1
    assert "matplotlib is not installed" in caplog.records[0].message
    monkeypatch.delitem(sys.modules, "matplotlib.figure")
    runlog.plot(tmp_path / "curves.png")
    assert (tmp_path / "curves.png").stat().st_size > 0

"""``edgeseg train --init``: the fine-tuning recipe (frozen BatchNorm statistics, the base model as
a candidate for best.pt) on a tiny synthetic dataset."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from edgeseg import cli
from edgeseg.checkpoint import load_checkpoint
from edgeseg.training.config import TrainConfig

from test_train import TINY_ARGS, make_tiny_dataset  # tests/training (rootdir-relative import)

FT_ARGS = ["--batch-size", "2", "--crop", "32", "--device", "cpu", "--log-every", "1"]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("ft")
    data = make_tiny_dataset(root / "data", n=8)
    run = root / "base"
    assert cli.main(["train", "--data", str(data), "--out", str(run), "--steps", "6",
                     "--val-every", "3", *TINY_ARGS]) == 0
    return data, run / "best.pt"


def _bn_stats(sd: dict) -> dict:
    return {k: v for k, v in sd.items() if k.endswith(("running_mean", "running_var"))}


@pytest.mark.parametrize("freeze", [True, False])
def test_finetune_freezes_bn_statistics_and_validates_the_base_first(base, tmp_path, freeze):
    data, init = base
    run = tmp_path / "ft"
    flag = [] if freeze else ["--no-freeze-bn"]
    assert cli.main(["train", "--init", str(init), "--data", str(data), "--out", str(run),
                     "--steps", "4", "--val-every", "2", "--lr", "1e-2", *FT_ARGS, *flag]) == 0
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["freeze_bn"] is freeze and cfg["init"] == str(init)
    before = load_checkpoint(init).state_dict
    after = load_checkpoint(run / "last.pt").state_dict
    stats_b, stats_a = _bn_stats(before), _bn_stats(after)
    assert stats_b and stats_b.keys() == stats_a.keys()
    same = all(torch.equal(stats_b[k], stats_a[k]) for k in stats_b)
    assert same is freeze  # frozen: as initialised; not frozen: updated by the batches
    weights = [k for k in before if k.endswith("weight") and before[k].ndim == 4]
    assert any(not torch.equal(before[k], after[k]) for k in weights)  # the convs did learn
    with open(run / "log.csv") as f:
        val_steps = [int(r["step"]) for r in csv.DictReader(f) if r.get("val_dsb")]
    assert val_steps[:1] == [0] and 4 in val_steps  # the base is scored before the first step


def test_freeze_bn_config_validation():
    from edgeseg.errors import InputError
    with pytest.raises(InputError, match="freeze_bn"):
        TrainConfig(freeze_bn="yes")
    assert TrainConfig.from_dict(TrainConfig(freeze_bn=True).to_dict()).freeze_bn is True
    old = TrainConfig().to_dict()
    del old["freeze_bn"]  # a run folder written before the field existed
    assert TrainConfig.from_dict(old).freeze_bn is False


def _discs(radius: int, shape=(160, 200), n=6) -> "tuple":
    import numpy as np
    cv2 = pytest.importorskip("cv2")
    lab = np.zeros(shape, np.int32)
    for k in range(n):
        cy, cx = 2 * radius + (k // 3) * 3 * radius, 2 * radius + (k % 3) * 3 * radius
        cv2.circle(lab, (cx, cy), radius, k + 1, -1)
    img = (lab > 0).astype(np.float32)
    return img, lab


def test_size_zoom_follows_the_runtime_rule():
    import numpy as np

    from edgeseg.sizing import zoom_for
    from edgeseg.training.data import size_zoom

    _, big = _discs(20)  # ~40 px nuclei
    d = 2 * np.sqrt(np.bincount(big.ravel())[1:].mean() / np.pi)
    assert size_zoom(big, 19.0) == pytest.approx(zoom_for(19.0, d)) == pytest.approx(19.0 / d)
    assert size_zoom(big, 0.0) == 1.0  # off
    assert size_zoom(_discs(10)[1], 19.0) == 1.0  # inside the keep range: as the runtime does
    assert size_zoom(np.zeros((50, 50), np.int32), 19.0) == 1.0  # no nuclei


def test_train_and_val_sets_learn_at_the_reference_size(tmp_path):
    import numpy as np
    cv2 = pytest.importorskip("cv2")

    from edgeseg.data import NormConfig, load_dataset
    from edgeseg.targets import TargetConfig
    from edgeseg.training.data import TrainSet
    from edgeseg.training.validation import ValSet

    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    img, lab = _discs(20)
    cv2.imwrite(str(tmp_path / "images" / "a.png"), (img * 200 + 20).astype(np.uint8))
    cv2.imwrite(str(tmp_path / "labels" / "a.png"), lab.astype(np.uint16))
    samples = load_dataset(tmp_path)
    plain = TrainSet(samples, NormConfig(), TargetConfig(), keep_labels=True)
    sized = TrainSet(samples, NormConfig(), TargetConfig(), keep_labels=True, size_reference=19.0)
    assert plain.zooms == [1.0] and sized.zooms[0] == pytest.approx(0.475, abs=0.02)
    assert sized.images[0].shape == sized.labels[0].shape
    assert sized.images[0].shape[0] == round(160 * sized.zooms[0])
    assert plain.nucleus_diameter == pytest.approx(40, abs=1.5)
    assert sized.nucleus_diameter == pytest.approx(19.0, abs=1.0)
    assert int(sized.labels[0].max()) == 6  # every nucleus kept
    val = ValSet.load(samples, {}, NormConfig(), size_reference=19.0)
    assert val[0].image.shape == val[0].labels.shape == sized.images[0].shape


def test_finetune_keeps_the_base_diameter(base, tmp_path):
    data, init = base
    from edgeseg.training.config import finetune_config

    ckpt = load_checkpoint(init)
    assert finetune_config(ckpt, str(init)).size_reference == pytest.approx(
        ckpt.model_card["nucleus_diameter"])
    assert finetune_config(ckpt, str(init), size_reference=0.0).size_reference == 0.0
    run = tmp_path / "ft"
    assert cli.main(["train", "--init", str(init), "--data", str(data), "--out", str(run),
                     "--steps", "2", "--val-every", "2", *FT_ARGS]) == 0
    card = load_checkpoint(run / "best.pt").model_card
    assert card["nucleus_diameter"] == pytest.approx(ckpt.model_card["nucleus_diameter"], abs=0.01)
    assert json.loads((run / "config.json").read_text())["size_reference"] > 0


@pytest.mark.parametrize("bad", [-1.0, float("nan"), True, "19"])
def test_size_reference_validation(bad):
    from edgeseg.errors import InputError
    with pytest.raises(InputError, match="size_reference"):
        TrainConfig(size_reference=bad)


def test_thresholds_are_kept_on_a_few_val_images(caplog):
    """A 3-parameter grid fitted to 2 images fits those images: below tune_min_images the
    thresholds stay the base's; from it on the grid is searched."""
    import numpy as np

    from edgeseg.training.finalize import tune_thresholds
    from edgeseg.training.validation import ValItem, ValSet

    _, lab = _discs(6, shape=(48, 64))
    probs = np.zeros((3,) + lab.shape, np.float32)
    probs[0] = 0.65 * (lab == 0) + 0.35 * (lab > 0)
    probs[1] = 1.0 - probs[0]
    val = ValSet([ValItem(f"i{k}", "fluorescence", lab.astype(np.float32), lab) for k in range(2)])
    cfg = TrainConfig(tune_seed_thresholds=(0.3, 0.5), tune_fg_thresholds=(0.3, 0.5),
                      tune_min_sizes=(0, 32))
    with caplog.at_level("WARNING"):
        kept, res, table = tune_thresholds([probs] * 2, val, cfg)
    assert kept == cfg.postprocess and table == [] and "skipped" in caplog.text
    assert res["n_images"] == 2
    _, _, table = tune_thresholds([probs] * 2, val, cfg.replace(tune_min_images=2))
    assert len(table) == 1 + 8  # the base thresholds first, then the 2 x 2 x 2 grid

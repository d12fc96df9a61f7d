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

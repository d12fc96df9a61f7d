"""edgeseg.training.groups and the committed group split: whole groups held out, every kind and
nucleus-size stratum in val, reproducible from the data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeseg.data import load_split
from edgeseg.training.groups import ImageFeatures, acquisition_groups, group_split, size_class

SPLIT = Path(__file__).resolve().parents[2] / "training" / "splits" / "dsb2018_groups.json"


def feats(n, kind, h, w, area, mean, tag):
    return [ImageFeatures(f"{tag}{i:03d}", kind, h, w, mean + i % 3, 5.0, area * (1 + 0.01 * i), 20,
                          (mean,) * 3) for i in range(n)]


def test_groups_split_by_size_and_intensity_and_split_holds_out_whole_groups():
    fs = (feats(30, "fluorescence", 256, 256, 100, 10, "a") + feats(30, "fluorescence", 256, 256,
                                                                   1500, 40, "b")
          + feats(12, "fluorescence", 520, 696, 400, 20, "c") + feats(8, "stained", 256, 320, 300,
                                                                      150, "d")
          + feats(9, "stained", 256, 320, 900, 160, "e"))
    groups = acquisition_groups(fs)
    assert len({groups[f.id] for f in fs if f.id.startswith("a")}) == 1
    assert groups["a000"] != groups["b000"]  # same size and kind, other nuclei / intensity
    train, val = group_split(fs, groups, val_fraction=0.2, seed=0)
    assert set(train).isdisjoint(val) and len(train) + len(val) == len(fs)
    val_groups = {groups[i] for i in val}
    for g in val_groups:  # whole groups only
        assert all(i in val for i in groups if groups[i] == g)
    assert {f.kind for f in fs if f.id in set(val)} == {"fluorescence", "stained"}
    assert group_split(fs, groups, val_fraction=0.2, seed=0) == (train, val)  # reproducible


def test_size_class():
    assert size_class(100) == "small" and size_class(400) == "typical" and size_class(2000) == "large"


def test_committed_group_split_is_valid_and_balanced():
    split = load_split(SPLIT)
    obj = json.loads(SPLIT.read_text())
    assert obj["method"] == "group" and len(split["train"]) + len(split["val"]) == 664
    groups, kinds, features = obj["groups"], obj["kinds"], obj["features"]
    val = set(split["val"])
    for g in obj["val_groups"]:
        assert all(i in val for i, gg in groups.items() if gg == g)
    assert not any(groups[i] in obj["val_groups"] for i in split["train"])
    assert {kinds[i] for i in val} == {"fluorescence", "stained", "brightfield"}
    assert {size_class(features[i]["median_area"]) for i in val} == {"small", "typical", "large"}


@pytest.mark.slow
def test_committed_group_split_is_reproducible(stage1_train):
    """The committed file is what groups.py computes from the real data."""
    from edgeseg.data import load_dataset
    from edgeseg.training.groups import image_features
    obj = json.loads(SPLIT.read_text())
    fs = image_features([s for s in load_dataset(stage1_train) if s.has_labels])
    groups = acquisition_groups(fs)
    assert groups == obj["groups"]
    train, val = group_split(fs, groups, val_fraction=obj["val_fraction"], seed=obj["seed"])
    assert (train, val) == (obj["train"], obj["val"])

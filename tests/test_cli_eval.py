from __future__ import annotations

import json

import pytest

from edgeseg.cli import main

pytest.importorskip("torch")


def test_eval_reproduces_the_model_card(stage1_train, tmp_path, capsys):
    from edgeseg._resources import MODELS_DIR

    card = json.loads((MODELS_DIR / "default" / "model_card.json").read_text())
    out = tmp_path / "eval.json"
    # the card's val scores are without size control (thresholds are tuned at network scale)
    assert main(["-q", "eval", "--model", "default", "--data", str(stage1_train), "--subset", "val",
                 "--device", "cpu", "--diameter", "none", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert {"dsb_score", "ap50", "f1_50", "n_images", "images", "per_kind"} <= set(report)
    assert report["n_images"] == card["val"]["n_images"]
    print(f"eval: DSB {report['dsb_score']:.4f}, model card: {card['val']['dsb_score']:.4f}")
    assert abs(report["dsb_score"] - card["val"]["dsb_score"]) <= 1e-3
    assert "DSB2018 score" in capsys.readouterr().out
    # the default settings (diameter auto), as the card's validation section records them
    assert main(["-q", "eval", "--model", "default", "--data", str(stage1_train), "--subset", "val",
                 "--device", "cpu", "--json", str(out)]) == 0
    auto = json.loads(out.read_text())
    assert auto["diameter"] == "auto"
    assert abs(auto["dsb_score"] - card["validation"]["settings"]["auto"]["1"]["dsb_score"]) <= 1e-3


def test_eval_on_kaggle_layout(kaggle_sample, tmp_path):
    out = tmp_path / "e.json"
    assert main(["-q", "eval", "--model", "default", "--data", str(kaggle_sample), "--device", "cpu",
                 "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["n_images"] == 5 and 0.0 <= report["dsb_score"] <= 1.0
    assert len(report["images"]) == 5 and {"id", "dsb_score", "ap50", "f1_50"} <= set(report["images"][0])


def test_eval_scale_shift_reports_both_label_conventions(kaggle_sample, tmp_path, capsys):
    """--scales 0.5 scores against truth shrunk by area coverage and, beside it, against
    OpenCV's nearest neighbour with the ceiling that convention leaves a perfect prediction."""
    out = tmp_path / "e.json"
    assert main(["-q", "eval", "--model", "default", "--data", str(kaggle_sample), "--device", "cpu",
                 "--diameter", "none", "--scales", "0.5,1", "--json", str(out)]) == 0
    half = json.loads(out.read_text())["scale_shift"]["0.5"]
    assert 0.0 <= half["dsb_score_nearest"] <= 1.0
    assert 0.3 < half["nearest_ceiling"] < 0.99  # the centred truth is not perfect there
    assert "ceiling" in capsys.readouterr().out


def test_eval_unknown_ids(stage1_train, tmp_path, capsys):
    ids = tmp_path / "ids.txt"
    ids.write_text("not-an-image-id\n")
    assert main(["eval", "--model", "default", "--data", str(stage1_train), "--ids", str(ids)]) == 1
    assert "not in" in capsys.readouterr().err


# -- issue 9: --ids with --subset scores what it says, and the report says what was scored ----------
@pytest.fixture(scope="module")
def six_images(tmp_path_factory):
    from conftest import disc_dataset

    d = disc_dataset(tmp_path_factory.mktemp("six"), seed=1)
    split = d / "split.json"
    split.write_text(json.dumps({"train": ["s0", "s1", "s2", "s3"], "val": ["s4", "s5"]}))
    return d


@pytest.mark.parametrize("subset, n, scored", [
    ([], 2, "the 2 val ids of"), (["--subset", "val"], 2, "the 2 val ids of"),
    (["--subset", "all"], 6, "all 6 ids of"),
])
def test_eval_split_subsets(tiny_pt, six_images, tmp_path, capsys, subset, n, scored):
    out = tmp_path / "e.json"
    assert main(["eval", "--model", str(tiny_pt), "--data", str(six_images), "--ids", str(six_images / "split.json"),
                 "--device", "cpu", "--json", str(out), *subset]) == 0
    report = json.loads(out.read_text())
    ids = sorted(r["id"] for r in report["images"])
    assert report["n_images"] == n and ids == (["s4", "s5"] if n == 2 else [f"s{k}" for k in range(6)])
    assert report["subset"] == ("all" if n == 6 else "val") and report["scored"].startswith(scored)
    assert f"{n} images ({scored}" in capsys.readouterr().out


def test_eval_id_list_and_whole_dataset(tiny_pt, six_images, tmp_path, capsys):
    ids = tmp_path / "ids.txt"
    ids.write_text("s1\ns3\n")
    base = ["eval", "--model", str(tiny_pt), "--data", str(six_images), "--device", "cpu"]
    assert main([*base, "--ids", str(ids), "--json", str(tmp_path / "a.json")]) == 0
    report = json.loads((tmp_path / "a.json").read_text())
    assert report["n_images"] == 2 and report["subset"] == "listed" and "listed in" in report["scored"]
    assert main([*base, "--json", str(tmp_path / "b.json")]) == 0
    report = json.loads((tmp_path / "b.json").read_text())
    assert report["n_images"] == 6 and report["subset"] == "all" and report["scored"] == "every labelled image of --data"
    capsys.readouterr()
    for subset in ("val", "all"):  # a plain id list has no subsets: refused, not ignored
        assert main([*base, "--ids", str(ids), "--subset", subset]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"--subset {subset} does not apply" in err[0]
    ids.write_text("\n\n")
    assert main([*base, "--ids", str(ids)]) == 1
    assert "lists no ids" in capsys.readouterr().err

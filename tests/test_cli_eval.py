from __future__ import annotations

import json

import pytest

from edgeseg.cli import main

pytest.importorskip("torch")


def test_eval_reproduces_the_model_card(stage1_train, tmp_path, capsys):
    from edgeseg._resources import MODELS_DIR

    card = json.loads((MODELS_DIR / "default" / "model_card.json").read_text())
    out = tmp_path / "eval.json"
    assert main(["-q", "eval", "--model", "default", "--data", str(stage1_train), "--subset", "val",
                 "--device", "cpu", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert {"dsb_score", "ap50", "f1_50", "n_images", "images", "per_kind"} <= set(report)
    assert report["n_images"] == card["val"]["n_images"]
    print(f"eval: DSB {report['dsb_score']:.4f}, model card: {card['val']['dsb_score']:.4f}")
    assert abs(report["dsb_score"] - card["val"]["dsb_score"]) <= 1e-3
    assert "DSB2018 score" in capsys.readouterr().out


def test_eval_on_kaggle_layout(kaggle_sample, tmp_path):
    out = tmp_path / "e.json"
    assert main(["-q", "eval", "--model", "default", "--data", str(kaggle_sample), "--device", "cpu",
                 "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["n_images"] == 5 and 0.0 <= report["dsb_score"] <= 1.0
    assert len(report["images"]) == 5 and {"id", "dsb_score", "ap50", "f1_50"} <= set(report["images"][0])


def test_eval_unknown_ids(stage1_train, tmp_path, capsys):
    ids = tmp_path / "ids.txt"
    ids.write_text("not-an-image-id\n")
    assert main(["eval", "--model", "default", "--data", str(stage1_train), "--ids", str(ids)]) == 1
    assert "not in" in capsys.readouterr().err

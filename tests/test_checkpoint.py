"""edgeseg.checkpoint: round trip, fp16 bundle, error messages for bad files and names."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgeseg import checkpoint as ck
from edgeseg.checkpoint import (
    FORMAT_VERSION,
    export_default,
    load_checkpoint,
    resolve_model,
    save_checkpoint,
)
from edgeseg.data import NormConfig
from edgeseg.errors import ModelError
from edgeseg.model import UNet, UNetConfig
from edgeseg.postprocess import PostprocessConfig
from edgeseg.targets import TargetConfig

CFG = UNetConfig(width=4, depth=2)
PP = PostprocessConfig(seed_threshold=0.6, fg_threshold=0.4, min_size=12)


def _model(seed: int = 0) -> UNet:
    torch.manual_seed(seed)
    net = UNet(CFG)
    net.train()
    with torch.no_grad():  # give BN non-trivial running stats
        for _ in range(2):
            net(torch.rand(2, 1, 32, 32))
    return net.eval()


def _save(path: Path, net: UNet, **kw) -> Path:
    return save_checkpoint(path, net, norm_config=NormConfig(p_high=99.5),
                           target_config=TargetConfig(), postprocess_config=PP,
                           model_card={"note": "test", "val": {"dsb_score": 0.5}}, **kw)


def test_round_trip(tmp_path: Path) -> None:
    net = _model()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    net.train()
    net(torch.rand(2, 1, 32, 32)).mean().backward()
    opt.step()
    net.eval()
    state = {"step": 7, "optimizer": opt.state_dict(), "torch_rng": torch.get_rng_state(),
             "best_score": 0.25}
    p = _save(tmp_path / "sub" / "c.pt", net, train_state=state)
    c = load_checkpoint(p)
    assert c.path == p and c.format_version == FORMAT_VERSION
    assert c.model_config == CFG
    assert c.norm() == NormConfig(p_high=99.5)
    assert c.targets() == TargetConfig()
    assert c.postprocess() == PP
    assert c.model_card["val"]["dsb_score"] == 0.5
    assert c.train_state["step"] == 7
    assert torch.equal(c.train_state["torch_rng"], state["torch_rng"])
    opt2 = torch.optim.AdamW(UNet(CFG).parameters(), lr=1e-3)
    opt2.load_state_dict(c.train_state["optimizer"])  # loadable as saved
    rebuilt = c.build_model()
    assert not rebuilt.training
    x = torch.rand(1, 1, 32, 48)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), net(x))
    assert not list(tmp_path.glob("sub/*.tmp")), "no temporary files left behind"


def test_half_bundle_upcasts(tmp_path: Path) -> None:
    net = _model()
    full = _save(tmp_path / "full.pt", net)
    half = _save(tmp_path / "half.pt", net, half=True)
    assert half.stat().st_size < 0.75 * full.stat().st_size
    c = load_checkpoint(half)
    assert all(v.dtype == torch.float32 for v in c.state_dict.values() if v.is_floating_point())
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(c.build_model()(x), net(x), atol=2e-2, rtol=2e-2)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="not found.*nope.pt"):
        load_checkpoint(tmp_path / "nope.pt")


def test_truncated_file(tmp_path: Path) -> None:
    p = _save(tmp_path / "c.pt", _model())
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match=r"c\.pt is truncated or corrupted"):
        load_checkpoint(p)


def test_garbage_file(tmp_path: Path) -> None:
    p = tmp_path / "junk.pt"
    p.write_bytes(b"this is not a checkpoint at all" * 10)
    with pytest.raises(ModelError, match="junk.pt"):
        load_checkpoint(p)


def test_plain_state_dict(tmp_path: Path) -> None:
    p = tmp_path / "sd.pt"
    torch.save(_model().state_dict(), p)
    with pytest.raises(ModelError, match=r"sd\.pt is not an edgeseg checkpoint.*state_dict"):
        load_checkpoint(p)


class _Custom:
    pass


def test_unsafe_pickle(tmp_path: Path) -> None:
    p = tmp_path / "obj.pt"
    torch.save({"format": "edgeseg-checkpoint", "x": _Custom()}, p)
    with pytest.raises(ModelError, match=r"obj\.pt is not an edgeseg checkpoint"):
        load_checkpoint(p)


def test_newer_format_version(tmp_path: Path) -> None:
    p = _save(tmp_path / "c.pt", _model())
    obj = torch.load(p, weights_only=True)
    obj["format_version"] = FORMAT_VERSION + 1
    torch.save(obj, p)
    with pytest.raises(ModelError, match="newer edgeseg.*[Uu]pgrade"):
        load_checkpoint(p)


def test_weights_not_matching_config(tmp_path: Path) -> None:
    p = _save(tmp_path / "c.pt", _model())
    obj = torch.load(p, weights_only=True)
    obj["model_config"]["width"] = 8
    torch.save(obj, p)
    with pytest.raises(ModelError, match="do not fit"):
        load_checkpoint(p).build_model()


def test_unknown_name_lists_bundled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ck, "MODELS_DIR", tmp_path / "models")
    with pytest.raises(ModelError, match=r"unknown model 'default'.*\(none installed\)"):
        load_checkpoint("default")
    (tmp_path / "run").mkdir()
    _save(tmp_path / "run" / "best.pt", _model())
    dest = export_default(tmp_path / "run")
    assert dest == tmp_path / "models" / "default"
    with pytest.raises(ModelError, match="unknown model 'fancy'.*default"):
        resolve_model("fancy")


def test_export_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ck, "MODELS_DIR", tmp_path / "models")
    run = tmp_path / "run"
    net = _model()
    _save(run / "best.pt", net, train_state={"step": 3})
    dest = export_default(run)
    assert sorted(p.name for p in dest.iterdir()) == ["config.json", "model.pt",
                                                      "model_card.json"]
    assert resolve_model("default") == dest / "model.pt"
    assert ck.bundled_models() == ["default"]
    c = load_checkpoint("default")
    assert c.train_state is None
    assert c.postprocess() == PP
    assert torch.load(dest / "model.pt", weights_only=True)["state_dict_dtype"] == "float16"
    config = json.loads((dest / "config.json").read_text())
    assert config["model_config"] == CFG.to_dict()
    assert config["postprocess_config"] == PP.to_dict()
    card = json.loads((dest / "model_card.json").read_text())
    assert card["note"] == "test" and card["weights_dtype"] == "float16"
    assert (dest / "model.pt").stat().st_size <= ck.MAX_BUNDLED_BYTES
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(c.build_model()(x), net(x), atol=2e-2, rtol=2e-2)


def test_resolve_folders(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(ModelError, match="holds no model.pt, best.pt or last.pt"):
        resolve_model(run)
    _save(run / "last.pt", _model())
    assert resolve_model(run) == run / "last.pt"
    _save(run / "best.pt", _model())
    assert resolve_model(run) == run / "best.pt"
    assert load_checkpoint(run).path == run / "best.pt"


def test_card_values_made_plain(tmp_path: Path) -> None:
    import numpy as np
    p = save_checkpoint(tmp_path / "c.pt", _model(),
                        model_card={"x": np.float64(1.5), "t": (1, 2), "v": torch.__version__})
    card = load_checkpoint(p).model_card
    assert card == {"x": 1.5, "t": [1, 2], "v": str(torch.__version__)}
    with pytest.raises(ModelError, match="model_card holds a object"):
        save_checkpoint(tmp_path / "d.pt", _model(), model_card={"o": object()})
    assert not (tmp_path / "d.pt").exists()


def test_save_rejects_other_models(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="expects an edgeseg UNet"):
        save_checkpoint(tmp_path / "x.pt", torch.nn.Conv2d(1, 1, 1))


# ---------------------------------------------------------------- issue 9, item 19


def test_random_bytes_are_reported_as_corrupt(tmp_path: Path) -> None:
    p = tmp_path / "noise.pt"
    for seed in range(5):
        p.write_bytes(np.random.default_rng(seed).bytes(4096))
        with pytest.raises(ModelError) as ei:
            load_checkpoint(p)
        msg = str(ei.value)
        assert "truncated or corrupted" in msg and "Python objects" not in msg, msg
        assert "\n" not in msg


@pytest.mark.parametrize("state", [[1, 2, 3], "weights", {"conv.weight": [0.5, 1.0]},
                                   {0: torch.zeros(2)}])
def test_state_dict_that_is_not_a_dict_of_tensors(tmp_path: Path, state) -> None:
    p = tmp_path / "bad_state.pt"
    save_checkpoint(p, _model())
    obj = torch.load(p, weights_only=True)
    obj["state_dict"] = state
    torch.save(obj, p)
    with pytest.raises(ModelError, match=r"bad_state\.pt: state_dict is .*expected a dict of "
                                         r"parameter names to tensors"):
        load_checkpoint(p)

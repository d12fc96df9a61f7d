"""scripts/repost_default.py: new post-processing thresholds on a model, its val re-scored."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from edgeseg.checkpoint import load_checkpoint

from test_finetune import base  # noqa: F401  (the module-scoped base run fixture)

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "repost_default.py"


def test_repost_changes_thresholds_and_rescoring(base, tmp_path):  # noqa: F811
    data, init = base
    out = tmp_path / "m.pt"
    cmd = [sys.executable, str(SCRIPT), str(init), str(out), "--set", "min_confidence=0.99",
           "--split", str(init.parent / "split.json"), "--data", str(data), "--why", "test"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    old, new = load_checkpoint(init), load_checkpoint(out)
    assert new.postprocess_config["min_confidence"] == 0.99
    assert {k: v for k, v in new.postprocess_config.items() if k != "min_confidence"} == \
        {k: v for k, v in old.postprocess_config.items() if k != "min_confidence"}
    rev = new.model_card["postprocess_revisions"][-1]
    assert rev["changed"] == {"min_confidence": [0.0, 0.99]} and rev["why"] == "test"
    assert new.model_card["val"]["dsb_score"] == rev["val_dsb_after"]
    for k, v in old.state_dict.items():  # the same weights
        assert (new.state_dict[k] == v).all()
    # never over an existing file, a bad --set is one line
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode != 0 and "exists" in again.stderr
    bad = subprocess.run([sys.executable, str(SCRIPT), str(init), str(tmp_path / "x.pt"),
                          "--set", "min_confidence"], capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "FIELD=VALUE" in bad.stderr

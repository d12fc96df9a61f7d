"""edgeseg.allocator: freed memory stays in the process (checked in subprocesses: the tuning is
process-wide, and the test process keeps malloc as it is)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from edgeseg import allocator

_PROBE = r"""
import json, os, sys
import numpy as np
if sys.argv[1] == "tuned":
    from edgeseg.allocator import tune_allocator
    t = tune_allocator()
    assert t.applied, t.detail
def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
out = []
for _ in range(3):  # a frame's large tensor: allocated, used, freed
    a = np.ones((64, 1 << 20), np.uint8)  # 64 MiB, above glibc's largest mmap threshold
    held = rss()
    del a
    out.append(held - rss())
print(json.dumps({"returned": out}))
"""


def _returned(mode: str) -> list[int]:
    """Bytes handed back to the OS when a 64 MiB block is freed, three times over."""
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])["returned"]


@pytest.mark.skipif(allocator._glibc() is None, reason="tune_allocator changes glibc malloc only")
def test_tuned_process_keeps_large_blocks_for_reuse():
    """By default glibc unmaps a freed 64 MiB block (the next frame faults it in again, page by
    page); tuned, the block stays in the process and is reused."""
    assert min(_returned("default")) > 48 << 20
    assert max(_returned("tuned")) < 8 << 20


def test_tuning_is_reported_and_idempotent(monkeypatch):
    monkeypatch.setattr(allocator, "_done", None)
    monkeypatch.setattr(allocator, "_glibc", lambda: None)  # as on macOS / Windows / musl
    first = allocator.tune_allocator()
    assert not first.applied and "not glibc" in first.detail
    assert allocator.tune_allocator() is first and allocator.allocator_tuning() is first


def test_cli_option_tunes_or_leaves_it(monkeypatch, tmp_path):
    """predict --allocator tuned (the default) calls tune_allocator; --allocator default does not."""
    import cv2

    from edgeseg.cli import main

    calls = []
    monkeypatch.setattr(allocator, "tune_allocator", lambda: calls.append(1))
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((64, 64), np.uint8))
    assert main(["predict", str(tmp_path / "a.png"), "-o", str(tmp_path / "o1"), "--allocator", "default",
                 "--diameter", "none"]) == 0
    assert calls == []
    assert main(["predict", str(tmp_path / "a.png"), "-o", str(tmp_path / "o2"), "--diameter", "none"]) == 0
    assert calls == [1]


def test_hint_is_logged_once_for_torch_on_the_cpu(monkeypatch, caplog):
    class Backend:
        name, device = "torch", "cpu"

    monkeypatch.setattr(allocator, "_done", None)
    monkeypatch.setattr(allocator, "_hinted", False)
    with caplog.at_level("INFO", logger="edgeseg.allocator"):
        assert not allocator.hint_allocator(type("Gpu", (), {"name": "torch", "device": "cuda"})())
        assert allocator.hint_allocator(Backend()) and not allocator.hint_allocator(Backend())
    assert sum("tune_allocator()" in r.getMessage() for r in caplog.records) == 1
    monkeypatch.setattr(allocator, "_hinted", False)
    monkeypatch.setattr(allocator, "_done", allocator.AllocatorTuning(True, "tuned"))
    assert not allocator.hint_allocator(Backend())  # tuned already: nothing to say

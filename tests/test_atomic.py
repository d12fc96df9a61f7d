"""edgeseg._atomic: atomic writes get the usual file mode without touching the process umask."""

from __future__ import annotations

import os
import stat

import pytest

from edgeseg import _atomic
from edgeseg._atomic import atomic_write_bytes, atomic_write_json, atomic_write_text

pytestmark = pytest.mark.skipif(os.name != "posix", reason="file modes and umask are POSIX")


def test_writes_never_set_the_umask(tmp_path, monkeypatch):
    """Setting the umask, even briefly, races with files other threads create (they would get
    mode 0666); the writes must not call os.umask at all."""
    def forbidden(mask):
        raise AssertionError(f"os.umask({mask:o}) called during a write")
    monkeypatch.setattr(_atomic.os, "umask", forbidden)
    atomic_write_bytes(tmp_path / "a.bin", b"x")
    atomic_write_text(tmp_path / "a.txt", "x")
    atomic_write_json(tmp_path / "a.json", {"x": 1})
    assert (tmp_path / "a.bin").read_bytes() == b"x"


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_mode_follows_the_umask(tmp_path, mask):
    old = os.umask(mask)
    try:
        atomic_write_bytes(tmp_path / "f.bin", b"data")
        with open(tmp_path / "plain.bin", "wb") as f:  # what a plain open() gives
            f.write(b"data")
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "f.bin").stat().st_mode)
    assert mode == 0o666 & ~mask == stat.S_IMODE((tmp_path / "plain.bin").stat().st_mode)


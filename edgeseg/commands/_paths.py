"""Output paths checked before the work starts (no heavy imports).

A command that computes for minutes and then cannot write its result has lost the user's time;
one that writes over its own input has lost the user's file. :func:`check_writable` is called on
every output path a command is given, before any model is opened, and answers with one
:class:`~edgeseg.errors.InputError` line saying which path, why, and what to do instead.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import Iterable, Union

from ..errors import InputError

__all__ = ["check_writable", "check_not_input", "same_file"]

PathLike = Union[str, "os.PathLike[str]"]


def same_file(a: PathLike, b: PathLike) -> bool:
    """True if ``a`` and ``b`` name the same file (links and ``..`` resolved); False if either is missing."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        pass
    try:  # not both existing: compare the resolved names
        return Path(a).resolve() == Path(b).resolve()
    except (OSError, RuntimeError):
        return False


def check_not_input(path: PathLike, inputs: Iterable[PathLike | None], option: str = "the output") -> None:
    """InputError if the output ``path`` is one of ``inputs`` (None entries are skipped)."""
    for src in inputs:
        if src is not None and same_file(path, src):
            raise InputError(f"{option} {path} is also an input ({src}); it would be overwritten: "
                             "choose another output path")


def check_writable(path: PathLike, *, folder: bool = False, option: str = "the output",
                   inputs: Iterable[PathLike | None] = ()) -> Path:
    """Check, before any work, that ``path`` can be written; return it as a Path.

    ``folder=False``: ``path`` is a file, written atomically (a temporary file beside it, then a
    rename): it must not be a folder or a special file, and the folder it goes in must be
    creatable and writable. ``folder=True``: ``path`` is an output folder (created if missing).
    Missing parent folders are not created here, only checked: the nearest existing one must be
    a writable folder. ``inputs``: paths this output must not replace.

    Raises InputError (one line: the option, the path, the reason, the fix). A filesystem that
    fills up during the work can still fail later; the CLI reports that OSError in one line too.
    """
    p = Path(os.fspath(path))
    if str(path) == "":
        raise InputError(f"{option} is an empty path; give a file or folder name")
    check_not_input(p, inputs, option)
    if p.is_symlink() and not p.exists():
        raise InputError(f"{option} {p} is a link to a missing file ({os.readlink(p)}); remove the link or "
                         "choose another path")
    try:
        st = p.stat() if (p.exists() or p.is_symlink()) else None
    except OSError as exc:
        raise InputError(f"cannot use {p} for {option}: {exc.strerror or exc}") from None
    if st is not None:
        if folder and not stat.S_ISDIR(st.st_mode):
            raise InputError(f"{option} {p} exists and is not a folder; give a folder (it is created if "
                             "missing)")
        if not folder and stat.S_ISDIR(st.st_mode):
            raise InputError(f"{option} {p} is a folder; give a file name (one inside it, for instance)")
        if not folder and not stat.S_ISREG(st.st_mode):
            raise InputError(f"{option} {p} exists and is not a regular file (a device, pipe or socket); "
                             "outputs are written to a temporary file and renamed over the target: give "
                             "a file path")
    probe_dir = p if (folder and st is not None) else p.parent
    existing = probe_dir
    while not existing.exists() and existing != existing.parent:
        if existing.is_symlink():  # a dangling link in the way
            break
        existing = existing.parent
    if not existing.is_dir():
        what = "does not exist" if not existing.exists() else "is a file, not a folder"
        raise InputError(f"cannot write {option} {p}: {existing} {what}; choose a path inside a folder")
    try:  # the one reliable test (permissions, read-only mounts, ACLs, root): create a file there
        fd, tmp = tempfile.mkstemp(prefix=".edgeseg-probe-", dir=existing)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise InputError(f"cannot write {option} {p}: {existing} is not writable "
                         f"({exc.strerror or exc}); choose a writable location") from None
    return p

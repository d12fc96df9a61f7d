"""Output paths are checked before the work (issue 9, item 9), and no CLI command answers a bad
path or argument with a traceback: one ``edgeseg CMD: error: ...`` line and exit status 1."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from edgeseg.cli import main
from edgeseg.commands._paths import check_writable, same_file
from edgeseg.errors import InputError

DEMO = Path(__file__).resolve().parents[1] / "edgeseg" / "assets" / "demo"
LINUX_PROC = Path("/proc/self/mem").exists()


# -- check_writable ---------------------------------------------------------------------------
def test_writable_paths_pass_and_nothing_is_created(tmp_path):
    (tmp_path / "old.json").write_text("{}")
    assert check_writable(tmp_path / "new" / "deeper" / "r.json") == tmp_path / "new" / "deeper" / "r.json"
    assert check_writable(tmp_path / "old.json") == tmp_path / "old.json"  # replaced atomically later
    assert check_writable(tmp_path, folder=True) == tmp_path
    assert check_writable(tmp_path / "new_run", folder=True) == tmp_path / "new_run"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.json"]  # no folder, no probe left


@pytest.mark.parametrize("kind, match", [
    ("parent_is_file", "is a file, not a folder"),
    ("is_dir", "is a folder; give a file name"),
    ("device", "not a regular file"),
    ("empty", "empty path"),
    ("same_as_input", "is also an input"),
])
def test_unwritable_file_outputs(tmp_path, kind, match):
    afile = tmp_path / "afile"
    afile.write_text("x")
    path = {"parent_is_file": afile / "r.json", "is_dir": tmp_path, "device": Path(os.devnull),
            "empty": "", "same_as_input": tmp_path / "." / "afile"}[kind]
    with pytest.raises(InputError, match=match) as err:
        check_writable(path, option="--json", inputs=[None, afile])
    assert "\n" not in str(err.value)
    assert afile.read_text() == "x" and sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_a_dangling_link_is_refused_not_followed(tmp_path):
    (tmp_path / "r.json").symlink_to(tmp_path / "gone" / "r.json")
    with pytest.raises(InputError, match="is a link to a missing file"):
        check_writable(tmp_path / "r.json", option="--json")


def test_an_existing_file_is_not_an_output_folder(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match="exists and is not a folder"):
        check_writable(tmp_path / "f", folder=True, option="-o")


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs Linux /proc (a place nobody can create files)")
def test_a_place_where_nothing_can_be_created(tmp_path):
    with pytest.raises(InputError, match=r"/proc is not writable"):
        check_writable("/proc/edgeseg-test/r.json")
    with pytest.raises(InputError, match=r"/proc is not writable"):
        check_writable("/proc/edgeseg-test", folder=True)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes through permission bits")
def test_read_only_folder(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(InputError, match="is not writable"):
            check_writable(ro / "r.json")
    finally:
        ro.chmod(0o700)


def test_same_file(tmp_path):
    a = tmp_path / "a.onnx"
    a.write_text("x")
    (tmp_path / "link.onnx").symlink_to(a)
    assert same_file(a, tmp_path / "link.onnx") and same_file(a, tmp_path / "sub" / ".." / "a.onnx")
    assert same_file(tmp_path / "missing", tmp_path / "." / "missing")
    assert not same_file(a, tmp_path / "b.onnx")


# -- every command with an output, every kind of bad output path --------------------------------
# (command line with {out} for the output, whether the output is a folder). Every model, image and
# dataset named here is missing: had a command opened or read it before checking its output, the
# error line would be about that file, not about the output path.
MISSING = "/nonexistent/edgeseg"
COMMANDS = {
    "predict": (["predict", f"{MISSING}/images", "-o", "{out}", "--model", f"{MISSING}.pt"], True),
    "eval": (["eval", "--data", MISSING, "--model", f"{MISSING}.pt", "--json", "{out}"], False),
    "bench": (["bench", "--model", f"{MISSING}.pt", "--json", "{out}"], False),
    "parity --png": (["parity", f"{MISSING}.pt", f"{MISSING}.onnx", "--data", MISSING, "--png", "{out}"], False),
    "parity --json": (["parity", f"{MISSING}.pt", f"{MISSING}.onnx", "--data", MISSING, "--json", "{out}"],
                      False),
    "live --csv": (["live", "--source", f"{MISSING}.avi", "--no-display", "--model", f"{MISSING}.pt",
                    "--csv", "{out}"], False),
    "convert": (["convert", f"{MISSING}.pt", "-o", "{out}"], False),
    "export-bioimageio": (["export-bioimageio", f"{MISSING}.pt", "-o", "{out}"], False),
    "train": (["train", "--data", MISSING, "--out", "{out}", "--steps", "1"], True),
    "demo": (["demo", "-o", "{out}", "--data", MISSING, "--model", f"{MISSING}.pt"], True),
}
KINDS = ["parent_is_file", "wrong_type", "device", "proc"]


def _bad_path(tmp_path: Path, kind: str, folder: bool, suffix: str) -> str:
    afile = tmp_path / "afile.txt"
    if kind == "parent_is_file":
        return str(afile / f"out{suffix}")
    if kind == "wrong_type":  # a folder where a file goes, a file where a folder goes
        target = tmp_path / f"out{suffix}"
        target.write_text("x") if folder else target.mkdir()
        return str(target)
    if kind == "device":
        return os.devnull
    return f"/proc/edgeseg-test/out{suffix}"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_bad_output_paths_fail_before_the_work_in_one_line(tmp_path, capsys, command, kind):
    if kind == "proc" and not Path("/proc").is_dir():
        pytest.skip("needs Linux /proc")
    argv, folder = COMMANDS[command]
    (tmp_path / "afile.txt").write_text("x")
    out = _bad_path(tmp_path, kind, folder, ".onnx" if command == "convert" else
                    ".zip" if command == "export-bioimageio" else
                    ".png" if command.endswith("--png") else ".csv" if command.startswith("live") else ".json")
    before = sorted(p.name for p in tmp_path.iterdir())
    rc = main([a.replace("{out}", out) for a in argv])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"edgeseg {argv[0]}: error:") and out in lines[0]
    assert MISSING not in lines[0]  # refused for its output, before any input was read
    assert sorted(p.name for p in tmp_path.iterdir()) == before and (tmp_path / "afile.txt").read_text() == "x"


# -- an OSError in the middle of the work -------------------------------------------------------
def test_os_error_mid_command_is_one_line_with_the_path(tmp_path, capsys):
    """The output folder is fine, but one overlay's name is taken by a folder: the rename fails."""
    out = tmp_path / "demo"
    (out / "091944f1d261_overlay.png").mkdir(parents=True)
    rc = main(["-q", "demo", "--oracle", "-o", str(out)])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgeseg demo: error: ")
    assert "091944f1d261_overlay.png" in lines[0] and "Is a directory (errno 21)" in lines[0]
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]  # no temporary file left


def test_os_errors_without_a_file_name_get_the_output_path(tmp_path):
    """A write that fails after the file was opened (a full disk: ENOSPC) names the output."""
    import errno

    from edgeseg._atomic import atomic_open
    from edgeseg.cli import describe_os_error

    target = tmp_path / "r.json"
    with pytest.raises(OSError) as err, atomic_open(target, "w") as f:
        f.write("{")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(target)
    assert describe_os_error(err.value).startswith(f"{target}: No space left on device (errno 28)")
    assert list(tmp_path.iterdir()) == []

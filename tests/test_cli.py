from __future__ import annotations

import pytest

from edgeseg import __version__
from edgeseg.cli import build_parser, main


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "demo" in out


def test_no_command_prints_help(capsys):
    assert main([]) == 0
    assert "usage" in capsys.readouterr().out


def test_parser_is_separate_from_main():
    args = build_parser().parse_args(["demo", "-o", "x"])
    assert args.command == "demo" and args.out == "x"


def test_demo_runs_on_bundled_images(tmp_path, capsys):
    assert main(["-q", "demo", "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "mean Kaggle DSB2018 score" in out
    overlays = sorted(tmp_path.glob("*_overlay.png"))
    assert len(overlays) == 4


def test_user_error_is_one_line_and_exit_1(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    assert main(["demo", "--data", str(missing), "-o", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(missing) in err[0] and err[0].startswith("edgeseg demo: error:")

"""The ``edgeseg`` command line.

Each subcommand lives in ``edgeseg/commands/<name>.py`` and exposes ``add_parser(subparsers)``
and ``run(args) -> int``. Those modules import nothing heavy at module level: torch, onnx and
tensorrt are imported inside ``run`` only, after the arguments have been parsed.

The CLI owns logging (``-v``/``-q``) and progress bars; the library never prints.
An :class:`~edgeseg.errors.EdgesegError` or an ``OSError`` (a full disk, a read-only folder, a
file that vanished) becomes one line on stderr and exit status 1; ``-vv`` logs the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Sequence

from ._version import __version__
from .errors import EdgesegError

# Order is the order shown in --help.
COMMANDS = ("demo", "train", "eval", "predict", "convert", "export_bioimageio", "parity", "bench", "live")

log = logging.getLogger(__name__)


def _available_commands() -> list:
    mods = []
    for name in COMMANDS:
        try:
            mods.append(importlib.import_module(f"edgeseg.commands.{name}"))
        except ModuleNotFoundError as exc:  # a command not built yet in this version
            if exc.name != f"edgeseg.commands.{name}":
                raise
    return mods


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgeseg",
        description="Real-time nuclei instance segmentation: train, convert, predict, evaluate.",
    )
    parser.add_argument("--version", action="version", version=f"edgeseg {__version__}")
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    verbosity.add_argument("-q", "--quiet", action="store_true", help="errors only, no progress bars")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in _available_commands():
        mod.add_parser(sub)
    return parser


def _configure_logging(verbose: int, quiet: bool) -> None:
    level = logging.ERROR if quiet else (logging.DEBUG if verbose > 1 else
                                         logging.INFO if verbose == 1 else logging.WARNING)
    root = logging.getLogger("edgeseg")
    root.setLevel(level)
    if not any(getattr(h, "_edgeseg_cli", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler._edgeseg_cli = True  # type: ignore[attr-defined]
        root.addHandler(handler)


def describe_os_error(exc: OSError) -> str:
    """One line: ``/out/x.json: No space left on device (errno 28); check the path, ...``."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.errno is not None:
        reason += f" (errno {exc.errno})"
    where = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
    return (f"{where}: {reason}" if where else reason) + "; check the path, its permissions and the free space"


def _one_line(text: str) -> str:
    return " ".join(text.split()) if "\n" in text or "\r" in text else text


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    _configure_logging(args.verbose, args.quiet)
    args.progress = not args.quiet and sys.stderr.isatty()
    try:
        return int(args.run(args) or 0)
    except EdgesegError as exc:
        log.debug("%s failed", args.command, exc_info=True)
        print(f"edgeseg {args.command}: error: {_one_line(str(exc))}", file=sys.stderr)
        return 1
    except OSError as exc:
        log.debug("%s failed", args.command, exc_info=True)
        print(f"edgeseg {args.command}: error: {_one_line(describe_os_error(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"edgeseg {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

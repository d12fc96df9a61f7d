"""User errors from worker threads as napari notifications, one line each, never a traceback.

napari relays an exception raised in a worker as an error notification with its traceback, which
is right for a bug but not for a user error (a missing model file, an unavailable device, a bad
frame). Worker functions therefore catch :class:`~edgeseg.errors.EdgesegError` and ``OSError``
and return them as a :class:`Failure`; the main thread shows it with :func:`report_error`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from napari.utils.notifications import show_error

from ..errors import EdgesegError

__all__ = ["Failure", "USER_ERRORS", "report_error"]

log = logging.getLogger(__name__)

USER_ERRORS = (EdgesegError, OSError)


@dataclass(frozen=True)
class Failure:
    """What a worker returns instead of raising a user error."""

    error: BaseException


def report_error(exc: BaseException) -> None:
    """Show a user error as one line: ``edgeseg: <message>``."""
    log.info("edgeseg: %s", exc)
    show_error(f"edgeseg: {exc}")

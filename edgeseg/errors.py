"""The one family of user-facing errors.

Every error a user can cause (bad file, bad array, unavailable backend, ...) is an
:class:`EdgesegError`. Messages say what was received, what was expected and how to fix it.
The CLI prints the message on one line and exits with status 1.
"""

from __future__ import annotations

__all__ = [
    "EdgesegError",
    "InputError",
    "DataError",
    "ModelError",
    "BackendUnavailableError",
]


class EdgesegError(Exception):
    """Base class of every error edgeseg raises on purpose."""


class InputError(EdgesegError, ValueError):
    """An array or argument passed in does not have the expected shape, dtype or values."""


class DataError(EdgesegError):
    """A file or dataset on disk is missing, unreadable, truncated or laid out wrongly."""


class ModelError(EdgesegError):
    """A model artifact (checkpoint, ONNX, engine) is missing, corrupted or incompatible."""


class BackendUnavailableError(EdgesegError):
    """The backend or device that was asked for cannot be used on this machine."""

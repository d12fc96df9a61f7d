"""TensorRT's logger, bridged to Python logging, and TensorRT objects created with its reasons.

TensorRT reports why something failed through its ``ILogger``, and often only there: when CUDA
cannot start, ``trt.Builder(logger)`` / ``trt.Runtime(logger)`` log the cause as a WARNING
(e.g. ``CUDA initialization failure with error: 35``) and then fail inside pybind11 with
``TypeError: pybind11::init(): factory function returned nullptr``. :func:`create_trt` captures
what is logged meanwhile and raises one BackendUnavailableError that carries it.

Nothing here imports ``tensorrt``: the module is passed in.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any, Callable

from .errors import BackendUnavailableError

__all__ = ["trt_logger", "LoggedMessages", "create_trt", "CUDA_START_HINT"]

log = logging.getLogger(__name__)

CUDA_START_HINT = (
    "TensorRT could not start CUDA here: check that the NVIDIA driver is new enough for this TensorRT "
    "build (`nvidia-smi` shows it; PyPI's tensorrt-cu12 wheels need driver >= 525, tensorrt-cu13 >= 580; "
    "on Jetson use JetPack's TensorRT), that the GPU is visible (CUDA_VISIBLE_DEVICES) and that it is "
    "neither busy in exclusive mode nor lost (Xid errors in the kernel log)")

_LOGGERS: dict[int, Any] = {}
_LOGGERS_LOCK = threading.Lock()


class LoggedMessages:
    """The ERROR and WARNING messages TensorRT logged during one ``logger.capture()``, in order."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def reason(self, default: str = "no error was logged") -> str:
        """The errors joined by '; ' (else the warnings, else ``default``), on one line."""
        msgs = self.errors or self.warnings
        text = "; ".join(" ".join(m.split()) for m in msgs)
        return text or default

    def __bool__(self) -> bool:
        return bool(self.errors or self.warnings)

    def __repr__(self) -> str:
        return f"LoggedMessages(errors={self.errors!r}, warnings={self.warnings!r})"


def trt_logger(trt: Any) -> Any:
    """A process-wide ``trt.ILogger`` that forwards to Python logging and collects messages.

    TensorRT's logger must be thread safe and outlive every object created with it; older
    releases also treated it as a singleton, so one instance is shared per ``tensorrt`` module.
    ``with logger.capture() as logged:`` collects the ERROR/INTERNAL_ERROR and WARNING messages
    emitted meanwhile (a :class:`LoggedMessages`); ``capture(quiet=True)`` holds them back from
    Python logging too, for a caller that reports them itself.
    """
    with _LOGGERS_LOCK:
        key = id(trt.ILogger)
        if key not in _LOGGERS:
            _LOGGERS[key] = _make_logger(trt)
        return _LOGGERS[key]


def _make_logger(trt: Any) -> Any:
    severity = trt.ILogger.Severity

    class _Logger(trt.ILogger):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            trt.ILogger.__init__(self)  # required for Python subclasses (TensorRT Logger docs)
            self._lock = threading.Lock()
            self._captures: list[tuple[LoggedMessages, bool]] = []

        def log(self, sev: Any, msg: str) -> None:
            if sev == severity.INTERNAL_ERROR or sev == severity.ERROR:
                if not self._keep("errors", msg):
                    log.error("TensorRT: %s", msg)
            elif sev == severity.WARNING:
                if not self._keep("warnings", msg):
                    log.warning("TensorRT: %s", msg)
            elif sev == severity.INFO:
                log.debug("TensorRT: %s", msg)

        def _keep(self, kind: str, msg: str) -> bool:
            """Record ``msg`` in every active capture; True if one of them holds it back."""
            with self._lock:
                for sink, _ in self._captures:
                    getattr(sink, kind).append(str(msg))
                return any(quiet for _, quiet in self._captures)

        @contextlib.contextmanager
        def capture(self, quiet: bool = False) -> Iterator[LoggedMessages]:
            entry = (LoggedMessages(), quiet)
            with self._lock:
                self._captures.append(entry)
            try:
                yield entry[0]
            finally:
                with self._lock:
                    self._captures.remove(entry)

    return _Logger()


def create_trt(trt: Any, factory: Callable[..., Any], *args: Any, what: str) -> Any:
    """``factory(*args)`` (e.g. ``trt.Builder``, logger) or one BackendUnavailableError saying why.

    A factory that fails (pybind11's nullptr TypeError, or a None result) means TensorRT could
    not create ``what``; the message carries what TensorRT logged meanwhile (held back from the
    log, so that it is said once), or else the exception's own text, and :data:`CUDA_START_HINT`.
    On success, what was logged goes to the log as usual.
    """
    logger = trt_logger(trt)
    with logger.capture(quiet=True) as logged:
        try:
            obj = factory(*args)
            failure = None
        except Exception as exc:  # TypeError from pybind11 when TensorRT returns nullptr
            obj, failure = None, " ".join(f"{type(exc).__name__}: {exc}".split())
    if obj is not None:
        for msg in logged.errors:
            log.error("TensorRT: %s", msg)
        for msg in logged.warnings:
            log.warning("TensorRT: %s", msg)
        return obj
    version = getattr(trt, "__version__", "?")
    raise BackendUnavailableError(
        f"TensorRT {version} could not create its {what} "
        f"({logged.reason(default=failure or 'it returned nothing and logged no reason')}); {CUDA_START_HINT}")

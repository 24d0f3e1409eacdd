"""The process's logging: :func:`configure` once at start, :func:`reopen` on SIGHUP."""

from __future__ import annotations

import logging
import threading

from anweddol_actors.errors import AnweddolError
from anweddol_actors.logs.formats import formatter_for
from anweddol_actors.logs.handlers import LogFileHandler, StderrHandler, reopen_all
from anweddol_actors.logs.rotation import Rotation

__all__ = ["LEVELS", "LogError", "configure", "reopen"]

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# Bounds reopen(): long enough for a write in progress to finish, short enough that a
# signal handler never holds the server up.
REOPEN_WAIT = 2.0


class LogError(AnweddolError, ValueError):
    """The logging configuration cannot be applied (bad level or format, unusable file)."""


_lock = threading.Lock()
# The handlers configure installed on the root logger: replaced by the next configure,
# reopened by reopen(). Others (a test runner's capture) are left alone.
_installed: list[logging.Handler] = []


def configure(
    level: str,
    path: str | None,
    log_format: str,
    rotation: Rotation | None,
) -> None:
    """Send the root logger's records at ``level`` and above to ``path`` (created with its
    folder, 0640) or, when None or empty, to standard error, as ``text`` or ``json``
    lines; rotate the file as ``rotation`` says (ignored for standard error).

    Calling it again replaces the handlers it installed before (closed). Raises
    :class:`LogError` (one line) when the level, format or file is unusable.
    """
    name = str(level).upper()
    if name not in LEVELS:
        raise LogError(f"log level {level!r} is not one of {', '.join(LEVELS)}")
    numeric = logging.getLevelName(name)
    try:
        formatter = formatter_for(log_format)
    except ValueError as exc:
        raise LogError(str(exc)) from None
    handler: logging.Handler
    if path:
        try:
            handler = LogFileHandler(path, rotation)
        except OSError as exc:
            raise LogError(f"cannot open the log file {path}: {exc.strerror or exc}") from None
    else:
        handler = StderrHandler()
    handler.setFormatter(formatter)

    root = logging.getLogger()
    with _lock:
        old = list(_installed)
        for previous in old:
            root.removeHandler(previous)
        root.addHandler(handler)
        _installed[:] = [handler]
        root.setLevel(numeric)
        # transitions logs every callback at INFO; the journal already records each one.
        logging.getLogger("transitions").setLevel(max(logging.WARNING, numeric))
    for previous in old:
        previous.close()


def reopen() -> int:
    """Close and reopen the log file configure opened (after logrotate moved it: a new
    file is created, the moved one is left as it is); returns how many files that was
    (0 for standard error). Safe in a signal handler; returns within ``REOPEN_WAIT``
    seconds; never raises (a file that cannot be reopened is reported on standard error
    and tried again at the next record)."""
    with _lock:
        handlers = list(_installed)
    try:
        return reopen_all(handlers, REOPEN_WAIT)
    except Exception as exc:  # a signal handler must not raise into the server
        logging.getLogger(__name__).warning("log file not reopened: %s", exc)
        return 0

"""The two destinations of the log: standard error, or a file (rotated or not).

Both are ``logging`` handlers whose errors go to :func:`trouble.report` (one line, rate
limited) instead of a traceback per record. The file handler opens its file owner- and
group-readable (0640, folder created 0750), counts the lines it holds when rotation is
on, and can be told to reopen its file after logrotate moved it.
"""

from __future__ import annotations

import io
import logging
import logging.handlers
import os
import stat
import sys
import threading

from anweddol_actors.logs import trouble
from anweddol_actors.logs.rotation import FILE_MODE, Rotation, archive, count_lines, make_folder

__all__ = ["LogFileHandler", "StderrHandler"]


def _describe(record: logging.LogRecord) -> str:
    error = sys.exc_info()[1]
    what = f"{type(error).__name__}: {error}" if error is not None else "unknown error"
    return f"cannot write a record of {record.name} ({what})"


class StderrHandler(logging.StreamHandler):
    """Standard error (the service manager's journal, when run as a service)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's name)
        trouble.report(_describe(record))


class LogFileHandler(logging.handlers.BaseRotatingHandler):
    """Appends to ``path``; rotates it as ``rotation`` says (None: never)."""

    def __init__(self, path: str, rotation: Rotation | None = None) -> None:
        self.rotation = rotation
        self.lines = 0
        self.regular = True
        make_folder(os.path.dirname(os.path.abspath(path)))
        super().__init__(path, "a", encoding="utf-8")

    def _open(self) -> io.TextIOWrapper:
        """The file in append mode, created 0640; counts its lines when they matter."""
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
        # Only a regular file has lines to count and content to move: a device (/dev/null,
        # /dev/full) or a pipe is never rotated (reading /dev/full would never end).
        self.regular = stat.S_ISREG(os.fstat(fd).st_mode)
        stream = os.fdopen(fd, "a", encoding=self.encoding, errors=self.errors)
        if self.rotation is not None and self.regular:
            self.lines = count_lines(self.baseFilename)
        return stream

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record) + self.terminator
            if self.stream is None:
                self.stream = self._open()
            if self.shouldRollover(record):
                self.doRollover()
            self.stream.write(text)
            self.stream.flush()
            self.lines += text.count("\n")
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def shouldRollover(self, record: logging.LogRecord) -> bool:  # noqa: N802 (logging's name)
        return self.rotation is not None and self.regular and self.lines >= self.rotation.max_lines

    def doRollover(self) -> None:  # noqa: N802 (logging's name)
        """Archive or drop the file's content; the file then starts empty. When the archive
        cannot be written, the file is kept whole (reported) and the next attempt waits for
        another ``max_lines`` lines, so a broken folder costs one try per rotation."""
        rotation = self.rotation
        assert rotation is not None
        try:
            if self.stream is not None:
                stream, self.stream = self.stream, None
                stream.close()
            if rotation.action == "archive":
                archive(self.baseFilename, rotation.archive_folder)
            fd = os.open(self.baseFilename, os.O_WRONLY | os.O_TRUNC | os.O_CREAT, FILE_MODE)
            os.close(fd)
        except OSError as exc:
            trouble.report(f"cannot rotate {self.baseFilename} ({exc}); it keeps its lines")
            self.stream = self._open()
            self.lines = 0
            return
        self.stream = self._open()

    def reopen(self) -> None:
        """Close the file and open it again by name (it was moved: a new one is created)."""
        with self.lock:
            if self.stream is not None:
                try:
                    self.stream.close()
                except OSError as exc:
                    trouble.report(f"cannot close {self.baseFilename} ({exc})")
                self.stream = None
            try:
                self.stream = self._open()
            except OSError as exc:
                # emit opens it again at the next record.
                trouble.report(f"cannot reopen {self.baseFilename} ({exc})")

    def close(self) -> None:
        """Close the file; what could not be flushed (a full disk) is reported and lost."""
        try:
            super().close()
        except OSError as exc:
            trouble.report(f"cannot close {self.baseFilename} ({exc})")

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's name)
        trouble.report(_describe(record))


def reopen_all(handlers: list[logging.Handler], wait: float) -> int:
    """Reopen every :class:`LogFileHandler` of ``handlers`` on a thread of its own, waiting
    at most ``wait`` seconds: called from a signal handler, the main thread may have been
    interrupted inside a handler's write, holding its lock; the thread then finishes once
    that write is done instead of swapping the file under it. Returns how many files."""
    files = [handler for handler in handlers if isinstance(handler, LogFileHandler)]
    if not files:
        return 0

    def run() -> None:
        for handler in files:
            handler.reopen()

    thread = threading.Thread(target=run, name="anweddol-log-reopen", daemon=True)
    thread.start()
    thread.join(wait)
    return len(files)

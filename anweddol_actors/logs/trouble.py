"""What logging does when it cannot log: say so on standard error, rarely, and go on.

A full disk or an unwritable archive folder must not take the server down, nor flood
standard error with one traceback per record (the ``logging`` default): one line at most
every ``REPORT_INTERVAL`` seconds, counting what was left unsaid.
"""

from __future__ import annotations

import sys
import threading
import time

__all__ = ["REPORT_INTERVAL", "report"]

REPORT_INTERVAL = 60.0

_lock = threading.Lock()
_last_report = float("-inf")
_unsaid = 0


def report(problem: str) -> None:
    """Write ``problem`` (one line) to standard error unless a report went out less than
    ``REPORT_INTERVAL`` seconds ago. Never raises."""
    global _last_report, _unsaid
    with _lock:
        now = time.monotonic()
        if now - _last_report < REPORT_INTERVAL:
            _unsaid += 1
            return
        _last_report = now
        unsaid, _unsaid = _unsaid, 0
    tail = f" ({unsaid} more logging problem(s) since the last report)" if unsaid else ""
    line = f"anweddol_actors: logging problem: {problem}{tail}; logging goes on\n"
    try:
        # The process's own stderr, not sys.stderr: a test or a caller may have swapped it.
        stream = sys.__stderr__ or sys.stderr
        stream.write(line)
        stream.flush()
    except Exception:
        pass  # nowhere left to say it


def _reset() -> None:
    """Forget the last report (tests)."""
    global _last_report, _unsaid
    with _lock:
        _last_report = float("-inf")
        _unsaid = 0

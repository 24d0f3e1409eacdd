"""What logging does when it cannot log: say so on standard error, rarely, and go on.

A full disk or an unwritable archive folder must not take the server down, nor flood
standard error with one traceback per record (the ``logging`` default): one line at most
every ``REPORT_INTERVAL`` seconds, counting what was left unsaid.
"""

from __future__ import annotations

import sys

from anweddol_actors.logs.ratelimited import Throttle

__all__ = ["REPORT_INTERVAL", "report"]

REPORT_INTERVAL = 60.0

_throttle = Throttle(REPORT_INTERVAL)


def report(problem: str) -> None:
    """Write ``problem`` (one line) to standard error unless a report went out less than
    ``REPORT_INTERVAL`` seconds ago. Never raises."""
    said = _throttle.occur()
    if said is None:
        return
    unsaid = said - 1
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
    _throttle.reset()

"""The PID file: which process is the running server, and whether it still is.

A PID file is trusted only when the process it names is alive *and* is an anweddol_actors
``serve`` (read from ``/proc/PID/cmdline``): a PID reused by another program after a crash
must never be signalled, nor block a start.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from anweddol_actors.errors import AnweddolError

DEFAULT_PID_FILE = "/run/anweddol_actors/server.pid"


class PidFileError(AnweddolError):
    """The PID file cannot be written or names a running server; one line."""


def read_pid(path: str | Path) -> int | None:
    """The PID the file holds, or None (no file, unreadable, not a number)."""
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def is_our_serve(pid: int) -> bool:
    """True when ``pid`` is alive and runs ``anweddol_actors ... serve``."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    arguments = [part.decode(errors="replace") for part in raw.split(b"\0") if part]
    for index, argument in enumerate(arguments):
        # "-m anweddol_actors" or a console script named anweddol_actors; "serve" after it.
        if os.path.basename(argument) == "anweddol_actors":
            return "serve" in arguments[index + 1 :]
    return False


def running_pid(path: str | Path) -> int | None:
    """The PID of the server the file names, if that server runs; else None."""
    pid = read_pid(path)
    return pid if pid is not None and is_our_serve(pid) else None


def write(path: str | Path, pid: int | None = None) -> None:
    """Create the PID file holding ``pid`` (this process by default), exclusively.

    A stale file (its process dead, or not our serve) is replaced; one naming a running
    server raises ``PidFileError``. The folder is created (0755) when missing.
    """
    path = Path(path)
    pid = os.getpid() if pid is None else pid
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    except OSError as exc:
        raise PidFileError(f"cannot create the PID file's folder {path.parent}: {exc}") from None
    for _ in range(2):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            other = running_pid(path)
            if other is not None and other != pid:
                raise PidFileError(f"{path} names a running server (PID {other})") from None
            # Stale: gone, or a PID now used by another program. Replaced, never signalled.
            path.unlink(missing_ok=True)
            continue
        except OSError as exc:
            raise PidFileError(f"cannot write the PID file {path}: {exc}") from None
        with os.fdopen(fd, "w") as stream:
            stream.write(f"{pid}\n")
        return
    raise PidFileError(f"{path}: another process keeps recreating it")


def remove(path: str | Path, pid: int | None = None) -> bool:
    """Remove the PID file if it still names ``pid`` (this process by default): a file
    another server wrote meanwhile is not ours to remove. True if removed."""
    pid = os.getpid() if pid is None else pid
    if read_pid(path) != pid:
        return False
    try:
        Path(path).unlink()
    except OSError:
        return False
    return True


def uptime(pid: int) -> float | None:
    """Seconds since ``pid`` started (from /proc), or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        system_uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError):
        return None
    # Field 22 (starttime, clock ticks after boot); the command name (field 2) may hold
    # spaces, so count from the closing parenthesis.
    fields = stat[stat.rfind(")") + 2 :].split()
    started = int(fields[19]) / os.sysconf("SC_CLK_TCK")
    return max(0.0, system_uptime - started)


def wait_gone(pid: int, timeout: float) -> bool:
    """Wait until ``pid`` no longer runs our serve (polling /proc); True if it ended."""
    deadline = time.monotonic() + timeout
    while is_our_serve(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)
    return True

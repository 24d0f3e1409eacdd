"""``start``, ``stop``, ``restart``, ``status``: the server as a background service.

``start`` runs ``serve`` as a detached child (its own session, no terminal; standard
output and error appended to the log file) and waits until that child wrote its PID file,
which ``serve`` does once it listens (and has dropped to ``server.user``). ``stop`` signals
the process the PID file names, only when it is an anweddol_actors ``serve``
(``service.pidfile``), and waits for it. ``status`` reads the PID file and /proc, then asks
the running server over the admin socket for the rest. Nothing is ever found or killed by
name.

Exit codes: 0 done; 1 the command ran but failed (nothing to stop, start refused or the
child died); 2 a usage or configuration error; ``status``: 0 running, 3 not running (LSB).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anweddol_actors.cli import CliError, serve
from anweddol_actors.cli.configfile import LoadedConfig, add_config_option, load
from anweddol_actors.cli.keyfiles import file_fingerprint
from anweddol_actors.cli.output import emit, emit_failure
from anweddol_actors.service import pidfile
from anweddol_actors.service.pidfile import DEFAULT_PID_FILE

DEFAULT_LOG_FILE = "/var/log/anweddol_actors/server.log"
# How long `start` waits for the child to listen: key generation and the journal's first
# open take seconds; building the dev image (first start without an ISO) takes minutes.
START_BOUND = 60.0
IMAGE_BUILD_BOUND = 900.0
# Past serve's own stop bound, the time for the interpreter to exit.
STOP_MARGIN = 15.0
STATUS_NOT_RUNNING = 3


def register(subparsers: argparse._SubParsersAction) -> None:
    for name, help_text, func in (
        ("start", "start the server in the background", run_start),
        ("stop", "stop the server the PID file names", run_stop),
        ("restart", "stop the server if it runs, then start it", run_restart),
        ("status", "say whether the server runs, and how it does", run_status),
    ):
        parser = subparsers.add_parser(name, help=help_text, description=help_text.capitalize())
        add_config_option(parser)
        parser.add_argument("--json", action="store_true", help="print one JSON object")
        parser.set_defaults(func=func)


@dataclass
class Outcome:
    """What a step did: printed by the command (once, for ``restart``'s JSON)."""

    ok: bool
    message: str
    text: str
    data: dict[str, Any] = field(default_factory=dict)


def show(args: argparse.Namespace, outcome: Outcome) -> int:
    if outcome.ok:
        return emit(args, outcome.message, outcome.data, outcome.text)
    return emit_failure(args, outcome.message, outcome.data, outcome.text)


def pid_file_of(config) -> str:
    return config.server.pid_file_path or DEFAULT_PID_FILE


# -- start ----------------------------------------------------------------------------


def run_start(args: argparse.Namespace) -> int:
    return show(args, start(load(args), quiet=args.json))


def start(loaded: LoadedConfig, quiet: bool = False) -> Outcome:
    config = loaded.config
    pid_path = pid_file_of(config)
    running = pidfile.running_pid(pid_path)
    if running is not None:
        return Outcome(
            False,
            "Server is already running",
            f"already running (PID {running}, PID file {pid_path})",
            {"pid": running, "pid_file": pid_path},
        )
    log_path = Path(config.server.log_file_path or DEFAULT_LOG_FILE)
    try:
        log_path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
        log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
    except OSError as exc:
        raise CliError(f"cannot open the log file {log_path}: {exc.strerror or exc}") from None
    bound = START_BOUND
    if needs_image_build(config):
        bound += IMAGE_BUILD_BOUND
        if not quiet:
            print(
                f"building the dev container image first (up to {IMAGE_BUILD_BOUND:.0f} s)",
                file=sys.stderr,
            )
    try:
        offset = os.fstat(log_fd).st_size
        # A new session and no terminal: the server outlives this command and the shell,
        # and no terminal signal (SIGHUP at logout, SIGINT at ^C) reaches it.
        child = subprocess.Popen(
            serve_command(loaded, pid_path, str(log_path)),
            stdin=subprocess.DEVNULL,
            stdout=log_fd,
            stderr=log_fd,
            start_new_session=True,
            cwd="/",
            close_fds=True,
        )
    except OSError as exc:
        raise CliError(f"cannot run the server: {exc}") from None
    finally:
        os.close(log_fd)
    return wait_started(child, pid_path, log_path, offset, bound)


def serve_command(loaded: LoadedConfig, pid_path: str, log_path: str) -> list[str]:
    command = [sys.executable, "-m", "anweddol_actors", "serve", "--pid-file", pid_path]
    if loaded.path is not None:
        # Absolute: the child runs in /, and must read the very file this command read.
        command += ["--config", os.path.abspath(loaded.path)]
    # serve writes its log there; its standard error goes there too (start opens the
    # file for it), so that an error before logging is set up is in the same file.
    return command + ["--log-file", log_path]


def needs_image_build(config) -> bool:
    if config.container.container_iso_file_path:
        return False
    # Loaded here, not at the top: only a start without an ISO needs the image builder.
    from anweddol_actors.image.builder import default_image_path, image_is_current

    return not image_is_current(default_image_path())


def wait_started(
    child: subprocess.Popen, pid_path: str, log_path: Path, offset: int, bound: float
) -> Outcome:
    """Wait until the child wrote its PID file (it listens), died, or ``bound`` passed."""
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        if child.poll() is not None:
            reason = last_error_line(log_path, offset) or f"exit status {child.returncode}"
            return Outcome(
                False,
                "Server failed to start",
                f"the server did not start: {reason} (log: {log_path})",
                {"error": reason, "log_file": str(log_path)},
            )
        if pidfile.read_pid(pid_path) == child.pid:
            return Outcome(
                True,
                "Server is started",
                f"started (PID {child.pid})",
                {"pid": child.pid, "pid_file": pid_path, "log_file": str(log_path)},
            )
        time.sleep(0.1)
    # Not up in time: end it rather than leave a server nobody knows about.
    child.send_signal(signal.SIGTERM)
    try:
        child.wait(timeout=serve.STOP_BOUND + STOP_MARGIN)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
    return Outcome(
        False,
        "Server failed to start",
        f"the server did not listen within {bound:.0f} s: stopped it (log: {log_path})",
        {"error": "start timed out", "log_file": str(log_path)},
    )


def last_error_line(log_path: Path, offset: int) -> str | None:
    """The last error the child wrote to the log after ``offset``: its ``error:`` line,
    else its last ERROR record, else its last line."""
    try:
        with open(log_path, "rb") as stream:
            stream.seek(offset)
            lines = stream.read().decode(errors="replace").splitlines()
    except OSError:
        return None
    lines = [line.strip() for line in lines if line.strip()]
    for marker in ("error: ", " ERROR ", '"level": "ERROR"'):
        found = [line for line in lines if marker in line]
        if found:
            line = found[-1]
            return line[len("error: ") :] if line.startswith("error: ") else line
    return lines[-1] if lines else None


# -- stop -----------------------------------------------------------------------------


def run_stop(args: argparse.Namespace) -> int:
    return show(args, stop(load(args)))


def stop(loaded: LoadedConfig) -> Outcome:
    pid_path = pid_file_of(loaded.config)
    pid = pidfile.read_pid(pid_path)
    if pid is None:
        return Outcome(
            False,
            "Server is not running",
            f"not running (no PID file {pid_path})",
            {"pid_file": pid_path},
        )
    if not pidfile.is_our_serve(pid):
        removed = pidfile.remove(pid_path, pid)
        return Outcome(
            False,
            "Server is not running",
            f"not running (PID {pid} of {pid_path} is no anweddol_actors server: "
            f"{'stale PID file removed' if removed else 'cannot remove the stale PID file'})",
            {"pid_file": pid_path, "stale_pid": pid, "removed": removed},
        )
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass  # ended between the check and the signal
    except PermissionError:
        raise CliError(f"not allowed to signal PID {pid} (run as root)") from None
    bound = serve.STOP_BOUND + STOP_MARGIN
    if not pidfile.wait_gone(pid, bound):
        return Outcome(
            False,
            "Server did not stop",
            f"PID {pid} still runs {bound:.0f} s after SIGTERM",
            {"pid": pid},
        )
    pidfile.remove(pid_path, pid)  # serve removes it itself; not when it was cut short
    return Outcome(True, "Server is stopped", "stopped", {"pid": pid})


# -- restart --------------------------------------------------------------------------


def run_restart(args: argparse.Namespace) -> int:
    loaded = load(args)
    if pidfile.running_pid(pid_file_of(loaded.config)) is not None:
        stopped = stop(loaded)
        if not stopped.ok:
            return show(args, stopped)
        if not args.json:
            print(stopped.text)
    return show(args, start(loaded, quiet=args.json))


# -- status ---------------------------------------------------------------------------


def run_status(args: argparse.Namespace) -> int:
    # Loaded here, not at the top: only status talks to the admin channel.
    from anweddol_actors.admin.client import AdminError, ask

    loaded = load(args)
    config = loaded.config
    pid_path = pid_file_of(config)
    recorded = pidfile.read_pid(pid_path)
    pid = recorded if recorded is not None and pidfile.is_our_serve(recorded) else None
    try:
        answer, admin_error = ask(config.server.admin_socket_path, "status", timeout=5.0), None
    except AdminError as exc:
        answer, admin_error = {}, str(exc)
    if pid is None and isinstance(answer.get("pid"), int) and pidfile.is_our_serve(answer["pid"]):
        pid = answer["pid"]  # a server started without a PID file (systemd's serve)
    if pid is None:
        why = f"no PID file {pid_path}" if recorded is None else f"stale PID file {pid_path}"
        emit(
            args,
            "Server is not running",
            {"running": False, "pid_file": pid_path, "stale_pid": recorded},
            f"not running ({why})",
        )
        return STATUS_NOT_RUNNING
    data = {
        "running": True,
        "pid": pid,
        "uptime": answer.get("uptime", round(pidfile.uptime(pid) or 0.0, 1)),
        "containers": answer.get("containers"),
        "available": answer.get("available"),
        "warm_pool": answer.get("warm_pool"),
        "hosts": answer.get("hosts"),
        "fingerprint": answer.get("fingerprint") or file_fingerprint(config),
        "listen": answer.get("listen") or configured_listen(config),
        "web": configured_web(config),
        "config": answer.get("config") or loaded.source,
        "pid_file": pid_path,
        "admin_error": admin_error,
    }
    return emit(args, "Server is running", data, status_text(data))


def status_text(data: dict[str, Any]) -> str:
    def shown(value: Any) -> str:
        return "unknown (admin channel unavailable)" if value is None else str(value)

    containers = shown(data["containers"])
    if data["available"] is not None:
        containers += f" ({data['available']} more available)"
    lines = [
        f"running (PID {data['pid']})",
        f"  uptime:           {duration(data['uptime'])}",
        f"  containers:       {containers}",
        *([f"  warm pool:        {warm_pool(data['warm_pool'])}"] if data.get("warm_pool") else []),
        *([f"  hypervisor hosts: {hosts(data['hosts'])}"] if data.get("hosts") else []),
        f"  key fingerprint:  {shown(data['fingerprint'])} (SHA-256)",
        f"  listening on:     {data['listen']}",
        *([f"  web server:       {data['web']}"] if data.get("web") else []),
        f"  configuration:    {data['config']}",
    ]
    if data["admin_error"]:
        lines.append(f"  admin channel:    {data['admin_error']}")
    return "\n".join(lines)


def warm_pool(pool: dict[str, Any]) -> str:
    """``1 of 1 ready, 0 filling`` (``off`` when its size is 0)."""
    if not pool.get("size"):
        return "off"
    return f"{pool.get('ready')} of {pool.get('size')} ready, {pool.get('filling')} filling"


def hosts(summary: dict[str, Any]) -> str:
    """``2 (2 enabled, 1 reachable)``: details in ``hosts list``."""
    return (
        f"{summary.get('total')} ({summary.get('enabled')} enabled, "
        f"{summary.get('reachable')} reachable)"
    )


def duration(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return "unknown"
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "min"), (seconds, "s")]
    shown = [f"{value} {unit}" for value, unit in parts if value]
    return " ".join(shown[:2]) or "0 s"


def configured_listen(config) -> str:
    return f"{config.server.bind_address or '0.0.0.0'}:{config.server.listen_port} (configured)"


def configured_web(config) -> str | None:
    """The HTTP front end's URL as configured (``serve --web`` alone is not seen here)."""
    web = config.web_server
    if not web.enabled:
        return None
    host = web.bind_address if web.bind_address is not None else config.server.bind_address
    scheme = "https" if web.enable_ssl else "http"
    return f"{scheme}://{host or '0.0.0.0'}:{web.port} (configured)"

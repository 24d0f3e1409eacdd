"""``python -m anweddol_actors serve``: run the server in the foreground.

With no configuration file it serves the embedded default: QEMU emulation (or KVM where
it works), ``user`` networking, the dev container image (built on first use), the SQLite
journal, port 6150.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from anweddol_actors.cli import CliError
from anweddol_actors.cli.configfile import add_config_option, load
from anweddol_actors.cli.keyfiles import key_fingerprint, load_or_create_keys
from anweddol_actors.config.database import database_problem, is_database_url, redacted
from anweddol_actors.config.host import iso_places, tls_problem
from anweddol_actors.config.schema import front_end_problem
from anweddol_actors.errors import AnweddolError
from anweddol_actors.service import pidfile, privileges
from anweddol_actors.service.policies import LivePolicies

log = logging.getLogger("anweddol_actors.serve")

# The most a stop may take once SIGTERM/SIGINT arrived: sessions get about 11 s, CREATEs in
# flight 30 s to unwind, each teardown a few libvirt calls (a hung libvirtd is declared dead
# by keepalive in about 20 s). Past it the process exits anyway, naming what held it: the
# journal is transactional, and the next start reconciles whatever was cut short.
STOP_BOUND = 120.0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="run the server in the foreground",
        description="Run the server in the foreground until SIGINT or SIGTERM.",
    )
    add_config_option(parser)
    parser.add_argument("--bind", metavar="ADDR", help="address to listen on (server.bind_address)")
    parser.add_argument(
        "--port", type=int, metavar="N", help="port to listen on (server.listen_port)"
    )
    parser.add_argument(
        "--iso", metavar="PATH", help="container ISO (container.container_iso_file_path)"
    )
    parser.add_argument("--database", metavar="PATH", help="journal database (server.database)")
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    parser.add_argument(
        "--log-file", metavar="PATH", help="log to this file (server.log_file_path)"
    )
    parser.add_argument(
        "--pid-file",
        metavar="PATH",
        help="write this PID file once listening, remove it at exit (server.pid_file_path)",
    )
    parser.add_argument(
        "--web",
        action="store_true",
        help="also serve the HTTP front end (as web_server.enabled: true)",
    )
    parser.add_argument(
        "--web-port",
        type=int,
        metavar="N",
        help="port of the HTTP front end (web_server.listen_port; 0: any free port)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    loaded = load(args, check_host=True)
    config = loaded.config
    configure_logging(args, config)
    log.info("configuration: %s", loaded.source)
    for warning in loaded.warnings:
        log.warning("%s", warning)
    for option, port in (("--port", args.port), ("--web-port", args.web_port)):
        if port is not None and not 0 <= port <= 65535:
            raise CliError(f"{option}: {port} is not a port number (0..65535)")

    web = config.web_server
    if (web.enabled or args.web) and web.enable_ssl:
        # Before anything starts (the TCP server, containers): as config check says it.
        problem = tls_problem(web.ssl_pem_certificate_file_path, web.ssl_pem_private_key_file_path)
        if problem:
            raise CliError(f"{loaded.source}: {problem}")

    settings = settings_from_config(config)
    if args.bind is not None:
        settings.bind_address = args.bind
    if args.port is not None:
        settings.listen_port = args.port
    if args.iso is not None:
        settings.iso_path = args.iso
    if args.database is not None:
        # As server.database: a path, sqlite:///PATH or postgresql://..., passed unchanged.
        problem = database_problem(args.database)
        if problem:
            raise CliError(f"--database: {problem}")
        settings.database = args.database
    front_end = config.server.front_end
    # The file's own database was judged at load; --database replaces it.
    problem = front_end_problem(
        None if front_end is None else front_end.to_dict(),
        settings.database,
        "server.database" if args.database is None else "--database",
    )
    if problem:
        raise CliError(f"server.front_end: {problem}")
    if front_end is not None:
        log.info(
            "front end %s: journal %s shared, lease %g s",
            front_end.name,
            redacted(settings.database),
            front_end.lease,
        )
    for host in settings.hosts:
        limit = "no limit" if host.max_containers is None else host.max_containers
        log.info(
            "host %s: %s, guest ports on %s, containers at most %s",
            host.name,
            host.libvirt_uri,
            host.address,
            limit,
        )
    pid_file = args.pid_file or config.server.pid_file_path
    if pid_file and (other := pidfile.running_pid(pid_file)) not in (None, os.getpid()):
        raise CliError(f"{pid_file} names a running server (PID {other})")
    account = account_to_become(config, settings)

    prepare_host(settings)
    if account is not None:
        for host in settings.host_list():  # once libvirtd runs (prepare_host)
            check_libvirt_as(account, host.libvirt_uri)
    rsa_wrapper = load_or_create_keys(config)
    fingerprint = key_fingerprint(rsa_wrapper)
    log.info("RSA key fingerprint (SHA-256): %s", fingerprint)

    # Loaded here, not at the top: each command imports only what it uses (--help stays fast).
    from anweddol_actors.core.server import ServerInterface
    from anweddol_actors.journal import JournalError

    try:
        server = ServerInterface(
            settings.iso_path,
            settings.bind_address,
            settings.listen_port,
            settings.client_timeout,
            runtime_rsa_wrapper=rsa_wrapper,
            settings=settings,
        )
    except OSError as exc:
        raise CliError(f"cannot open the journal {redacted(settings.database)}: {exc}") from None
    except JournalError as exc:  # its message names the journal (a URL without its password)
        raise CliError(str(exc)) from None
    try:
        policies = install_policies(server, config)
    except AnweddolError as exc:
        server.close()
        raise CliError(str(exc)) from None

    stopping = threading.Event()
    web: list = []  # the HTTP front end, once started

    def stop_all() -> None:
        # The HTTP front end first: no HTTP request is admitted while the engine stops,
        # and those in flight are cut (their sessions unwind) before it does.
        for web_server in web:
            web_server.stop()
        server.stopServer()

    def begin_stop() -> None:
        # One stop: a second signal (an impatient ^C, systemd's SIGTERM after ours) must not
        # race the first one's teardown.
        if stopping.is_set():
            log.info("already stopping")
            return
        stopping.set()
        threading.Thread(target=stop_all, name="anweddol-stop").start()
        threading.Thread(target=exit_if_stuck, name="anweddol-stop-bound", daemon=True).start()

    def stop(signum, frame) -> None:
        log.info("signal %s: stopping", signum)
        begin_stop()

    def reload(signum, frame) -> None:
        # Off the signal handler: reading the file and opening the token database block.
        threading.Thread(
            target=reload_configuration,
            args=(loaded, policies),
            name="anweddol-reload",
            daemon=True,
        ).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, reload)
    failed = threading.Event()

    admin = []

    @server.on_server_started
    def announce(context, data) -> None:
        host, port = server.listen_address[:2]
        log.info("serving on %s:%s (ISO %s)", host or "0.0.0.0", port, settings.iso_path)
        admin.append(start_admin(server, config))
        # Everything root must open is open now (the admin socket and the web server's
        # socket and PEM files too): drop to server.user, then say we are up by writing
        # the PID file.
        try:
            if config.web_server.enabled or args.web:
                web.append(start_web(server, config, args))
            become_service(account, config, settings, pid_file, args)
        except AnweddolError as exc:
            log.error("%s: stopping", exc)
            failed.set()
            begin_stop()

    try:
        server.startServer()
    except OSError as exc:
        server.close()
        policies.close()
        raise CliError(
            f"cannot listen on {settings.bind_address or '0.0.0.0'}:{settings.listen_port}: "
            f"{exc.strerror or exc}"
        ) from None
    except AnweddolError as exc:
        # A part that could not start (the journal refusing this front end's lease, say):
        # the server stopped what had started; one line says why.
        server.close()
        policies.close()
        raise CliError(f"cannot start: {exc}") from None
    finally:
        for channel in filter(None, admin):
            channel.close()
        if pid_file:
            pidfile.remove(pid_file)
    server.close()
    policies.close()
    log.info("stopped")
    return 1 if failed.is_set() else 0


def account_to_become(config, settings) -> privileges.Account | None:
    """The account named by ``server.user`` when serve must drop to it, checked now (before
    anything is built) so that a wrong one is a one-line error; None when there is no
    drop to do."""
    name = config.server.user
    if not name:
        return None
    try:
        account = privileges.lookup(name)
    except privileges.PrivilegeError as exc:
        raise CliError(str(exc)) from None
    if os.geteuid() == account.uid:
        return None  # started as that user already (e.g. by systemd's User=)
    if os.geteuid() != 0:
        raise CliError(f"server.user: becoming {name!r} needs root (running as uid {os.geteuid()})")
    first_port = settings.port_range[0]
    if first_port < privileges.unprivileged_port_start():
        raise CliError(
            f"port_forwarding.port_range starts at {first_port}: {name!r} cannot bind ports "
            f"below {privileges.unprivileged_port_start()} once the server dropped to it"
        )
    return account


# Run as server.user: can it open the hypervisor? The server's connection is made as root,
# but a reconnection after libvirtd restarts is made as the user.
_LIBVIRT_PROBE = (
    "import sys\n"
    "from anweddol_actors.hypervisor import Hypervisor\n"
    "try:\n"
    "    Hypervisor(sys.argv[1]).close()\n"
    "except Exception as exc:\n"
    "    sys.exit(str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc))\n"
)


def check_libvirt_as(account: privileges.Account, uri: str) -> None:
    """Refuse (one line) a ``server.user`` that could not reconnect to libvirt."""
    if uri.startswith("test://"):
        return  # libvirt's in-process test driver: no daemon, no permission
    try:
        probe = subprocess.run(
            [sys.executable, "-c", _LIBVIRT_PROBE, uri],
            capture_output=True,
            text=True,
            timeout=60,
            user=account.uid,
            group=account.gid,
            extra_groups=account.groups,
            cwd="/",
        )
    except PermissionError:
        # The interpreter (or a folder above it) is closed to the user: the server would
        # fail at its first late import once dropped, libvirt or not.
        raise CliError(
            f"server.user: {account.name} cannot run {sys.executable}: install Python where "
            "that user can read it, or leave server.user empty"
        ) from None
    except (OSError, subprocess.SubprocessError) as exc:
        raise CliError(f"server.user: cannot check {uri} as {account.name}: {exc}") from None
    if probe.returncode != 0:
        reason = (probe.stderr.strip().splitlines() or ["no reason given"])[-1]
        raise CliError(
            f"server.user: {account.name} cannot open {uri} ({reason}); the server would lose "
            "libvirt at its first reconnection: let that user reach libvirt, or leave "
            "server.user empty"
        )


def become_service(account, config, settings, pid_file: str | None, args) -> None:
    """Once listening: hand ``account`` what it writes later, drop to it, write the PID
    file (in that order: the PID file says the server is up and settled)."""
    if account is not None:
        journal = journal_path(settings.database)
        files, folders = [], []
        if journal is not None:
            files += [journal, Path(f"{journal}-wal"), Path(f"{journal}-shm")]
            folders.append(journal.parent)
        log_file = getattr(args, "log_file", None) or config.server.log_file_path
        if log_file:
            files.append(Path(log_file))
            folders.append(Path(log_file).parent)
        if config.log_rotation.log_archive_folder_path:
            folders.append(Path(config.log_rotation.log_archive_folder_path))
        if pid_file:
            Path(pid_file).parent.mkdir(parents=True, exist_ok=True, mode=0o755)
            folders.append(Path(pid_file).parent)
        tokens = config.access_token.access_token_database_file_path
        # Reopened as the user at a SIGHUP; a PostgreSQL one is no file of this machine.
        if config.access_token.enabled and not is_database_url(tokens):
            files.append(Path(tokens))
        for line in privileges.hand_over(account, files, folders):
            log.warning("%s", line)
        privileges.drop(account)
        log.info("running as %s", account.describe())
    if pid_file:
        pidfile.write(pid_file)


def journal_path(database: str) -> Path | None:
    """The journal's file, None for an in-memory one or one on a PostgreSQL server."""
    if is_database_url(database):
        return None
    # Loaded here, not at the top: each command imports only what it uses (--help stays fast).
    from anweddol_actors.journal.store import MEMORY, database_path

    path = database_path(database)
    return None if path is None or path == MEMORY else Path(path)


def reload_configuration(loaded, policies) -> None:
    """SIGHUP: re-read the same configuration file, swap the IP filter and the access
    tokens, reopen the log files; one line says what, and which other changes wait for a
    restart. A file that is now wrong changes nothing."""
    # Loaded here, not at the top: each command imports only what it uses (--help stays fast).
    from anweddol_actors.config import ConfigError, load_config
    from anweddol_actors.logs import reopen

    reopened = reopen()
    source = loaded.path or "the embedded default"
    try:
        config = load_config(loaded.path)
        in_force = policies.apply(config.ip_filter, config.access_token)
    except (ConfigError, AnweddolError, OSError) as exc:
        log.error("reload of %s failed, running policies kept: %s", source, exc)
        return
    waiting = changed_keys(loaded.config, config)
    log.info(
        "reloaded %s: %s; log files reopened: %d%s",
        source,
        in_force,
        reopened,
        f"; changed, needs a restart: {', '.join(waiting)}" if waiting else "",
    )
    # loaded.config stays the start's: what runs, for the next reload's comparison.


# What a reload applies; any other key changes only at a restart.
RELOADED_SECTIONS = ("ip_filter", "access_token")


def changed_keys(before, after) -> list[str]:
    """``section.key`` of every key outside ``RELOADED_SECTIONS`` that differs
    (``hypervisors`` for the whole list)."""
    old, new = before.to_dict(), after.to_dict()
    changed = []
    for section, keys in new.items():
        if section in RELOADED_SECTIONS:
            continue
        if not isinstance(keys, dict):
            # The hypervisors list: one setting, whichever entry changed.
            if old.get(section) != keys:
                changed.append(section)
            continue
        changed.extend(
            f"{section}.{key}" for key in keys if old.get(section, {}).get(key) != keys[key]
        )
    return changed


def exit_if_stuck(bound: float = STOP_BOUND) -> None:
    """Run in a daemon thread once a stop began: if the process is still there after
    ``bound`` seconds, log the threads that hold it and exit with status 1."""
    threading.Event().wait(bound)
    holding = [
        thread.name
        for thread in threading.enumerate()
        if not thread.daemon and thread is not threading.main_thread()
    ]
    log.error(
        "still running %g s after the stop began (threads: %s): exiting anyway",
        bound,
        ", ".join(holding) or "none",
    )
    logging.shutdown()
    os._exit(1)


def settings_from_config(config):
    """Engine settings from a loaded :class:`ServerConfig`."""
    # Loaded here, not at the top: each command imports only what it uses (--help stays fast).
    from anweddol_actors.engine.settings import HostSettings, Settings

    container, server, forwarding = config.container, config.server, config.port_forwarding
    front_end = server.front_end
    hosts = tuple(
        HostSettings(
            name=host.name,
            libvirt_uri=host.libvirt_uri,
            address=host.address,
            max_containers=host.max_containers,
            domain_type=host.domain_type,
            iso_path=host.container_iso_file_path,
        )
        for host in config.hypervisors
    )
    return Settings(
        hosts=hosts,
        host_lost_grace=container.host_lost_grace,
        iso_path=container.container_iso_file_path,
        bind_address=server.bind_address,
        listen_port=server.listen_port,
        client_timeout=server.timeout,
        max_message_size=server.max_message_size,
        request_deadline=server.request_deadline,
        max_connections=server.max_connections,
        max_connections_per_address=server.max_connections_per_address,
        libvirt_uri=container.libvirt_uri,
        network_mode=container.network_mode,
        domain_type=container.domain_type,
        nat_interface_name=container.nat_interface_name,
        container_memory=container.container_memory,
        container_vcpus=container.container_vcpus,
        max_containers=container.max_allowed_running_container_domains,
        max_lifetime=container.max_lifetime,
        max_idle_time=container.max_idle_time,
        warm_pool_size=container.warm_pool_size,
        port_range=tuple(forwarding.port_range),
        forward_bind_address=forwarding.bind_address,
        forward_max_connections=forwarding.max_connections,
        forward_max_connections_per_address=forwarding.max_connections_per_address,
        endpoint_username=container.endpoint_username,
        endpoint_password=container.endpoint_password,
        endpoint_listen_port=container.endpoint_listen_port,
        password_length=container.client_password_length,
        ready_timeout=container.ready_timeout,
        database=server.database,
        front_end=None if front_end is None else front_end.name,
        front_end_lease=Settings.front_end_lease if front_end is None else front_end.lease,
        on_start_live_containers=server.on_start_live_containers,
        pause_at=pause_points_from_environment(),
    )


def pause_points_from_environment() -> frozenset[str]:
    """The crash tests' pause steps (``engine.pause``), from the environment; none by default."""
    # Loaded here, not at the top: each command imports only what it uses (--help stays fast).
    from anweddol_actors.engine.pause import pause_points

    try:
        return pause_points(os.environ.get("ANWEDDOL_ACTORS_TEST_PAUSE_AT"))
    except ValueError as exc:
        raise CliError(f"ANWEDDOL_ACTORS_TEST_PAUSE_AT: {exc}") from None


def prepare_host(settings) -> None:
    """Start libvirt's daemons where nothing else does, and build the dev image if needed."""
    # Loaded here, not at the top: each command imports only what it uses (--help stays fast).
    from anweddol_actors.hypervisor.daemons import ensure_daemons

    if os.environ.get("INVOCATION_ID"):
        # Under systemd: libvirt's daemons are its units; one started from here would live
        # in this service's cgroup, and die with it.
        pass
    elif (
        any(host.libvirt_uri.startswith("qemu:///") for host in settings.host_list())
        and os.geteuid() == 0
    ):
        try:
            ensure_daemons()
        except Exception as exc:
            # Not fatal: the server serves STAT and connects once libvirt answers (its
            # reconciliation waits until then; docs/operations.md, Hypervisor outage).
            log.warning("cannot start libvirt (%s): serving without it until it answers", exc)
    if settings.iso_path is None:
        # Loaded here, not at the top: each command imports only what it uses (--help stays fast).
        from anweddol_actors.image.builder import ensure_image

        try:
            settings.iso_path = str(ensure_image())
        except Exception as exc:
            raise CliError(f"cannot build the dev container image: {exc}") from None
    check_isos(settings)


def check_isos(settings) -> None:
    """Refuse (one line) an ISO a host on this machine would boot and cannot read; log
    each remote host's, which is on that host's own disk and not checked here."""
    hosts = [(host.name, host.libvirt_uri, host.iso_path) for host in settings.hosts]
    for place in iso_places(settings.iso_path, settings.libvirt_uri, hosts):
        readable = os.access(place.path, os.R_OK)
        if place.checked:
            if readable:
                continue
            if place.host is None:
                raise CliError(f"container ISO {place.path} is missing or unreadable")
            raise CliError(
                f"{place.key}: container ISO {place.path} of host {place.host} is missing "
                "or unreadable"
            )
        # The CREATE answer's container_iso_sha256 is computed here, from this machine's
        # file of that path (image/checksum.py): the host's copy must be the same bytes.
        if readable:
            log.info(
                "host %s (%s): ISO %s not checked (on that host's disk); clients are given "
                "the checksum of this machine's copy: keep the host's identical",
                place.host,
                place.libvirt_uri,
                place.path,
            )
        else:
            log.warning(
                "host %s (%s): ISO %s not checked (on that host's disk), and this machine "
                "has no copy: CREATE answers carry its checksum, computed here; put an "
                "identical copy at the same path",
                place.host,
                place.libvirt_uri,
                place.path,
            )


def install_policies(server, config) -> LivePolicies:
    """The deployed server's policies (PROTOCOL.md §3): IP filter and access tokens.

    Installed once, before the server starts, as one ``LivePolicies`` that a SIGHUP
    updates in place (``reload_configuration``): the listener and the request hook read
    it at each use, so nothing is stacked. The caller closes it after the server."""
    # Loaded here, not at the top: each command imports only what it uses (--help stays fast).
    from anweddol_actors.core.client import RESPONSE_MSG_BAD_AUTH, RESPONSE_MSG_BAD_REQ

    policies = LivePolicies()
    policies.apply(config.ip_filter, config.access_token)
    server.engine.settings.ip_allows = policies.allows

    @server.on_request
    def check_access_token(context, data) -> None:
        store = policies.tokens  # one read: a reload swaps it between requests
        if store is None:
            return
        client = data["client_instance"]
        token = (client.getStoredRequest() or {}).get("parameters", {}).get("access_token")
        if not isinstance(token, str) or not token:
            client.sendResponse(False, RESPONSE_MSG_BAD_REQ, reason="Access token is required")
            client.closeConnection()
        elif not store.verify(token):
            client.sendResponse(False, RESPONSE_MSG_BAD_AUTH, reason="Invalid access token")
            client.closeConnection()

    return policies


def configure_logging(args: argparse.Namespace, config) -> None:
    """The process's log (``anweddol_actors.logs``): ``--log-file`` or
    ``server.log_file_path`` (standard error when neither), ``server.log_format``, and the
    ``log_rotation`` section when enabled. An unusable log file is a one-line error."""
    # Loaded here, not at the top: each command imports only what it uses (--help stays fast).
    from anweddol_actors.logs import LogError, Rotation, configure

    path = args.log_file if args.log_file is not None else config.server.log_file_path
    section = config.log_rotation
    rotation = None
    if section.enabled:
        rotation = Rotation(
            section.max_log_lines_amount, section.action, section.log_archive_folder_path
        )
    try:
        configure(args.log_level, path, config.server.log_format, rotation)
    except LogError as exc:
        raise CliError(str(exc)) from None


def start_web(server, config, args):
    """The HTTP front end (``web_server``) over the running engine: started and listening
    once this returns (``web server on URL`` logged). Raises AnweddolError (one line:
    the port in use, the PEM file that cannot be read)."""
    # Loaded here, not at the top: FastAPI and uvicorn only for a server that serves HTTP.
    from anweddol_actors.web.app import build_app
    from anweddol_actors.web.server import WebServer
    from anweddol_actors.web.settings import WebSettings

    web_settings = WebSettings.from_config(config)
    if config.web_server.bind_address is None and args.bind is not None:
        web_settings.bind_address = args.bind or "0.0.0.0"  # the TCP server's, as --bind says
    if args.web_port is not None:
        web_settings.port = args.web_port
    web_server = WebServer(build_app(server.engine, web_settings), web_settings)
    web_server.start()
    return web_server


def start_admin(server, config):
    """The admin channel (``containers``, ``status``) beside a listening server: an
    ``AdminServer``, or None (logged) when its socket cannot be made: clients are served
    anyway, only the admin commands are missing. Its ``status`` gives the key's
    fingerprint from the engine's own key."""
    # Loaded here, not at the top: each command imports only what it uses (--help stays fast).
    from anweddol_actors.admin.client import AdminError
    from anweddol_actors.admin.server import AdminServer

    path, owner = config.server.admin_socket_path, config.server.user
    channel = AdminServer(server.engine, path, owner)
    try:
        return channel.start()
    except AdminError as exc:
        log.error("admin commands unavailable: %s", exc)
        return None

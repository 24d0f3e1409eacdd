"""``anweddol_actors.core.server``: the seed's ``ServerInterface``, name for name.

Everything a seed user can reach is here (seed/server-api.md): the constants, the
constructor and its defaults, the getters and setters, the request and event handler
tables with the 19 ``on_*`` decorators, passive mode, ``executeRequestHandler``,
``triggerEvent``, ``handleClient``, ``startServer``/``stopServer`` and ``with``.
The work is done by :class:`anweddol_actors.engine.supervisor.Server` below it, in
plain snake_case; this module presents it as the seed.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import Any

from anweddol_actors.core.client import (
    RESPONSE_MSG_BAD_AUTH,
    RESPONSE_MSG_BAD_REQ,
    RESPONSE_MSG_INTERNAL_ERROR,
    RESPONSE_MSG_OK,
    RESPONSE_MSG_REFUSED_REQ,
    RESPONSE_MSG_UNAVAILABLE,
    RESPONSE_MSG_UNSPECIFIED,
    ClientInstance,
)
from anweddol_actors.core.crypto import RSAWrapper
from anweddol_actors.core.port_forwarding import ForwarderInstance
from anweddol_actors.core.virtualization import ContainerInstance, EndpointShellInstance
from anweddol_actors.engine import create, verbs
from anweddol_actors.engine.context import Request
from anweddol_actors.engine.entities import start_container
from anweddol_actors.engine.settings import Settings
from anweddol_actors.engine.supervisor import Server
from anweddol_actors.image.builder import default_image_path, ensure_image
from anweddol_actors.lifecycle.events import (
    ALL_EVENTS,
    CLIENT_CLOSED_BY_HANDLER,
    CONTEXT_AUTOMATIC_ACTION,
    CONTEXT_DEFERRED_CALL,
    CONTEXT_ERROR,
    CONTEXT_HANDLE_END,
    CONTEXT_NORMAL_PROCESS,
    EVENT_AUTHENTICATION_ERROR,
    EVENT_CLIENT_CLOSED,
    EVENT_CLIENT_INITIALIZED,
    EVENT_CONNECTION_ACCEPTED,
    EVENT_CONTAINER_CREATED,
    EVENT_CONTAINER_DOMAIN_STARTED,
    EVENT_CONTAINER_DOMAIN_STOPPED,
    EVENT_ENDPOINT_SHELL_CLOSED,
    EVENT_ENDPOINT_SHELL_CREATED,
    EVENT_ENDPOINT_SHELL_OPENED,
    EVENT_FORWARDER_CREATED,
    EVENT_FORWARDER_STARTED,
    EVENT_FORWARDER_STOPPED,
    EVENT_MALFORMED_REQUEST,
    EVENT_REQUEST,
    EVENT_RUNTIME_ERROR,
    EVENT_SERVER_STARTED,
    EVENT_SERVER_STOPPED,
    EVENT_UNHANDLED_VERB,
)

log = logging.getLogger(__name__)

DEFAULT_SERVER_BIND_ADDRESS = ""
DEFAULT_SERVER_LISTEN_PORT = 6150
DEFAULT_CLIENT_TIMEOUT = 10
DEFAULT_DIE_ON_ERROR = False
DEFAULT_PASSIVE_MODE = False
DEFAULT_ASYNCHRONOUS = False

REQUEST_VERB_CREATE = "CREATE"
REQUEST_VERB_DESTROY = "DESTROY"
REQUEST_VERB_STAT = "STAT"

# The seed exits with this code when stopServer(die_on_error=True) meets an error.
_DIE_EXIT_CODE = 0xDEAD

__all__ = [
    "ServerInterface",
    "DEFAULT_SERVER_BIND_ADDRESS",
    "DEFAULT_SERVER_LISTEN_PORT",
    "DEFAULT_CLIENT_TIMEOUT",
    "DEFAULT_DIE_ON_ERROR",
    "DEFAULT_PASSIVE_MODE",
    "DEFAULT_ASYNCHRONOUS",
    "REQUEST_VERB_CREATE",
    "REQUEST_VERB_DESTROY",
    "REQUEST_VERB_STAT",
    "RESPONSE_MSG_OK",
    "RESPONSE_MSG_BAD_AUTH",
    "RESPONSE_MSG_BAD_REQ",
    "RESPONSE_MSG_REFUSED_REQ",
    "RESPONSE_MSG_UNAVAILABLE",
    "RESPONSE_MSG_UNSPECIFIED",
    "RESPONSE_MSG_INTERNAL_ERROR",
    "CONTEXT_NORMAL_PROCESS",
    "CONTEXT_AUTOMATIC_ACTION",
    "CONTEXT_DEFERRED_CALL",
    "CONTEXT_HANDLE_END",
    "CONTEXT_ERROR",
    *[name for name in globals() if name.startswith("EVENT_")],
]


def present(data: dict, context: int | None = None) -> dict:
    """Engine-level event data as the seed hands it to handlers (reference/api/*.md):
    a channel becomes a ``ClientInstance``, actor handles become the seed's instances.
    ``context``: the handler's, journalled with what its container's calls fire."""
    presented: dict = {}
    for key, value in data.items():
        if key == "client":
            presented["client_instance"] = None if value is None else _client(value)
        elif key == "socket":
            presented["client_socket"] = value
        elif key == "container":
            presented["container_instance"] = ContainerInstance.of(value, context)
        elif key == "endpoint_shell":
            presented["endpoint_shell_instance"] = EndpointShellInstance.of(value)
        elif key == "forwarder":
            presented["forwarder_instance"] = ForwarderInstance.of(value)
        elif key == "exception":
            presented["exception_object"] = value
        elif key == "errors":
            presented["errors_dict"] = value
        else:
            presented[key] = value
    return presented


def _client(channel: Any) -> ClientInstance:
    return ClientInstance(None, exchange_keys=False, channel=channel)


class _VirtualizationInterface:
    """What ``getRuntimeVirtualizationInterface`` hands out: the live containers."""

    def __init__(self, server: Server) -> None:
        self._server = server

    def getStoredContainersAmount(self) -> int:
        return self._server.registry.count().get()

    def listStoredContainers(self) -> list[str]:
        return self._server.registry.uuids().get()

    def getStoredContainer(self, container_uuid: str):
        entry = self._server.registry.get(container_uuid).get()
        return None if entry is None else ContainerInstance.of(entry.container)

    def createContainer(self, iso_path: str | None = None, store: bool = False):
        """A new container on this server's journal and libvirt connection (not stored:
        only a CREATE stores containers); the caller owns it (``stop_actor``)."""
        context = self._server.context
        actor = start_container(context, iso_path=iso_path or context.settings.iso_path)
        actor.create().get()
        return ContainerInstance.of(actor)

    def getHypervisor(self):
        return self._server.context.hypervisors.get()


class _DatabaseInterface:
    """What ``getRuntimeDatabaseInterface`` hands out: the hashed credentials store."""

    def __init__(self, server: Server) -> None:
        self._server = server

    def getJournal(self):
        return self._server.journal

    def addEntry(self, container_uuid: str) -> tuple[str, str]:
        token = verbs.new_client_token()
        self._server.journal.store_credentials(container_uuid, token)
        return (container_uuid, token)

    def verifyEntry(self, container_uuid: str, client_token: str) -> bool:
        return self._server.journal.verify_credentials(container_uuid, client_token)

    def deleteEntry(self, container_uuid: str) -> None:
        self._server.journal.delete_credentials(container_uuid)


class _PortForwardingInterface:
    """What ``getRuntimePortForwardingInterface`` hands out: the forwarders of live containers."""

    def __init__(self, server: Server) -> None:
        self._server = server

    def getForwardablePortRange(self) -> range:
        low, high = self._server.settings.port_range
        return range(low, high + 1)

    def getStoredForwarder(self, container_uuid: str):
        entry = self._server.registry.get(container_uuid).get()
        return None if entry is None else ForwarderInstance.of(entry.forwarder)

    def listStoredForwarders(self) -> list[str]:
        return self._server.registry.uuids().get()


def _event_decorator(event: str) -> Callable:
    def decorator(self: ServerInterface, routine: Callable) -> Callable:
        self.setEventHandler(event, routine)
        return routine

    decorator.__name__ = event
    decorator.__doc__ = f"Decorator: make the decorated routine the handler of {event!r}."
    return decorator


class ServerInterface:
    """The Anweddol server (seed API)."""

    def __init__(
        self,
        runtime_container_iso_file_path: str | None = None,
        bind_address: str = DEFAULT_SERVER_BIND_ADDRESS,
        listen_port: int = DEFAULT_SERVER_LISTEN_PORT,
        client_timeout: int | None = DEFAULT_CLIENT_TIMEOUT,
        runtime_virtualization_interface: Any = None,
        runtime_database_interface: Any = None,
        runtime_port_forwarding_interface: Any = None,
        runtime_rsa_wrapper: RSAWrapper | None = None,
        passive_mode: bool = DEFAULT_PASSIVE_MODE,
        *,
        settings: Settings | None = None,
        journal: Any = None,
    ) -> None:
        if settings is None:
            settings = Settings()
        settings.iso_path = runtime_container_iso_file_path or settings.iso_path
        settings.bind_address = bind_address
        settings.listen_port = listen_port
        settings.client_timeout = client_timeout
        # No ISO given: the dev image, built on first start if it is not there yet.
        self._build_default_image = not settings.iso_path
        if not settings.iso_path:
            settings.iso_path = str(default_image_path())
        self._passive = bool(passive_mode)
        # Passive servers talk to no client: no key pair (the seed's rule).
        if runtime_rsa_wrapper is None and not self._passive:
            runtime_rsa_wrapper = RSAWrapper()
        self._rsa_wrapper = runtime_rsa_wrapper
        self._server = Server(
            settings,
            passive=self._passive,
            private_key=None if runtime_rsa_wrapper is None else runtime_rsa_wrapper.private_key,
            journal=journal,
        )
        self._virtualization = runtime_virtualization_interface or _VirtualizationInterface(
            self._server
        )
        self._database = runtime_database_interface or _DatabaseInterface(self._server)
        self._port_forwarding = runtime_port_forwarding_interface or _PortForwardingInterface(
            self._server
        )
        self._start_lock = threading.Lock()
        self._closed = False
        # The user's routines, as given (the seed's getters return them); the engine holds
        # wrappers that present its data as the seed's objects.
        self._request_routines: dict[str, Callable] = {}
        self._event_routines: dict[str, Callable] = {}
        for verb, routine in (
            (REQUEST_VERB_CREATE, self._handle_create_request),
            (REQUEST_VERB_DESTROY, self._handle_destroy_request),
            (REQUEST_VERB_STAT, self._handle_stat_request),
        ):
            self._install_verb(verb, routine)

    # -- context manager and finaliser ----------------------------------------------------

    def __enter__(self) -> ServerInterface:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.isRunning():
            self.stopServer()

    def __del__(self) -> None:
        try:
            if self.isRunning():
                self.stopServer()
        except Exception:
            pass

    # -- general usage --------------------------------------------------------------

    def isRunning(self) -> bool:
        return self._server.running

    def getRuntimeContainerISOFilePath(self) -> str:
        return self._server.settings.iso_path

    def getRuntimeDatabaseInterface(self) -> Any:
        return self._database

    def getRuntimeVirtualizationInterface(self) -> Any:
        return self._virtualization

    def getRuntimeRSAWrapper(self) -> RSAWrapper | None:
        return self._rsa_wrapper

    def getRuntimePortForwardingInterface(self) -> Any:
        return self._port_forwarding

    def getRuntimeStatistics(self) -> tuple[bool, int, int]:
        context = self._server.context
        return (self.isRunning(), context.dispatch.runtime_errors, context.uptime())

    def getRequestHandler(self, verb: str) -> Callable | None:
        return self._request_routines.get(verb)

    def getEventHandler(self, event: str) -> Callable | None:
        return self._event_routines.get(event)

    def setRuntimeContainerISOFilePath(self, iso_file_path: str) -> None:
        self._server.settings.iso_path = iso_file_path

    def setRuntimeDatabaseInterface(self, database_interface: Any) -> None:
        self._database = database_interface

    def setRuntimeVirtualizationInterface(self, virtualization_interface: Any) -> None:
        self._virtualization = virtualization_interface

    def setRuntimeRSAWrapper(self, rsa_wrapper: RSAWrapper) -> None:
        if self.isRunning():
            raise RuntimeError("The RSA wrapper cannot change while the server is running")
        self._rsa_wrapper = rsa_wrapper
        self._server.context.private_key = rsa_wrapper.private_key

    def setRuntimePortForwardingInterface(self, port_forwarding_interface: Any) -> None:
        self._port_forwarding = port_forwarding_interface

    # -- beyond the seed (snake_case) ------------------------------------------------

    @property
    def engine(self) -> Server:
        """The engine's supervisor, for administration and tests."""
        return self._server

    @property
    def listen_address(self) -> tuple:
        """The bound (address, port): useful with ``listen_port=0`` in tests."""
        return self._server.listen_address

    # -- request / client handling ----------------------------------------------------

    def setRequestHandler(self, verb: str, routine: Callable) -> None:
        if not isinstance(verb, str) or not verb:
            raise ValueError("verb must be a non-empty string")
        if not callable(routine):
            raise ValueError("routine must be callable")
        self._install_verb(verb, routine)

    def _install_verb(self, verb: str, routine: Callable) -> None:
        def run(request: Request) -> Any:
            client = None if request.channel is None else _client(request.channel)
            return routine(client_instance=client, **present(request.extra))

        self._request_routines[verb] = routine
        self._server.verbs[verb] = run

    def handleClient(
        self, client_instance: ClientInstance, asynchronous: bool = DEFAULT_ASYNCHRONOUS
    ) -> None:
        if client_instance.isClosed():
            raise RuntimeError("The client is closed")
        self._server.handle_channel(client_instance.channel, asynchronous)

    # -- lifecycle control --------------------------------------------------------------

    def startServer(self) -> None:
        with self._start_lock:
            if self.isRunning():
                raise RuntimeError("The server is already running")
            if self._build_default_image and not self._passive:
                self._server.settings.iso_path = str(ensure_image())
            transition = self._server.start()
        self._server.dispatch.emit(transition, EVENT_SERVER_STARTED, CONTEXT_NORMAL_PROCESS, {})
        if not self._passive:
            # The seed's startServer blocks its thread until the server stops.
            self._server.wait_stopped()

    def stopServer(self, die_on_error: bool = DEFAULT_DIE_ON_ERROR) -> None:
        if not self.isRunning():
            return
        transition, errors = self._server.stop()
        for exc in errors:
            self._server.dispatch.report(exc, {}, None, CONTEXT_ERROR)
        if transition is not None:
            self._server.dispatch.emit_contained(
                transition, EVENT_SERVER_STOPPED, CONTEXT_NORMAL_PROCESS, {}
            )
        if errors and die_on_error:
            os._exit(_DIE_EXIT_CODE)

    def close(self) -> None:
        """Stop if running and release the journal and libvirt connection (not in the seed)."""
        if self._closed:
            return
        self.stopServer()
        self._server.close()
        self._closed = True

    # -- manual handler execution -----------------------------------------------------

    def executeRequestHandler(
        self,
        verb: str,
        client_instance: ClientInstance | None = None,
        data: dict | None = None,
        **kwargs: Any,
    ) -> dict | None:
        routine = self._request_routines.get(verb)
        if routine is None:
            raise RuntimeError(f"No request handler for verb {verb!r}")
        if verb == REQUEST_VERB_DESTROY and routine == self._handle_destroy_request:
            kwargs["credentials_dict"] = dict(data or {})
        elif data:
            kwargs.update(data)
        if routine in (
            self._handle_create_request,
            self._handle_destroy_request,
            self._handle_stat_request,
        ):
            return routine(
                client_instance=client_instance,
                passive_execution=self._passive or client_instance is None,
                **kwargs,
            )
        return routine(client_instance=client_instance, **kwargs)

    def triggerEvent(self, event: str, context: int, data: dict | None = None) -> Any:
        if event not in ALL_EVENTS:
            raise RuntimeError(f"The event {event!r} does not exist")
        routine = self._event_routines.get(event)
        result = None if routine is None else routine(context=context, data=dict(data or {}))
        if self._passive:
            return result
        client = (data or {}).get("client_instance")
        if client is not None and client.isClosed():
            return CLIENT_CLOSED_BY_HANDLER
        return None

    # -- events ----------------------------------------------------------------------

    def setEventHandler(self, event: str, routine: Callable) -> None:
        if event not in ALL_EVENTS:
            raise RuntimeError(f"The event {event!r} does not exist")
        if not callable(routine):
            raise ValueError("routine must be callable")

        def handler(context: int, data: dict) -> Any:
            return routine(context=context, data=present(data, context))

        self._event_routines[event] = routine
        self._server.dispatch.set(event, handler)

    on_container_created = _event_decorator(EVENT_CONTAINER_CREATED)
    on_container_domain_started = _event_decorator(EVENT_CONTAINER_DOMAIN_STARTED)
    on_container_domain_stopped = _event_decorator(EVENT_CONTAINER_DOMAIN_STOPPED)
    on_forwarder_created = _event_decorator(EVENT_FORWARDER_CREATED)
    on_forwarder_started = _event_decorator(EVENT_FORWARDER_STARTED)
    on_forwarder_stopped = _event_decorator(EVENT_FORWARDER_STOPPED)
    on_endpoint_shell_created = _event_decorator(EVENT_ENDPOINT_SHELL_CREATED)
    on_endpoint_shell_opened = _event_decorator(EVENT_ENDPOINT_SHELL_OPENED)
    on_endpoint_shell_closed = _event_decorator(EVENT_ENDPOINT_SHELL_CLOSED)
    on_server_started = _event_decorator(EVENT_SERVER_STARTED)
    on_server_stopped = _event_decorator(EVENT_SERVER_STOPPED)
    on_client_initialized = _event_decorator(EVENT_CLIENT_INITIALIZED)
    on_client_closed = _event_decorator(EVENT_CLIENT_CLOSED)
    on_connection_accepted = _event_decorator(EVENT_CONNECTION_ACCEPTED)
    on_request = _event_decorator(EVENT_REQUEST)
    on_authentication_error = _event_decorator(EVENT_AUTHENTICATION_ERROR)
    on_runtime_error = _event_decorator(EVENT_RUNTIME_ERROR)
    on_malformed_request = _event_decorator(EVENT_MALFORMED_REQUEST)
    on_unhandled_verb = _event_decorator(EVENT_UNHANDLED_VERB)

    # -- the seed's private handlers (their names are part of what users subclass) -------

    def _run(self, flow: Callable, client_instance, passive_execution: bool, **kwargs: Any):
        channel = None if client_instance is None else client_instance.channel
        parameters = kwargs.pop("credentials_dict", None)
        return self._server.run_verb(flow, channel, passive_execution, parameters, kwargs)

    def _handle_create_request(
        self,
        client_instance: ClientInstance | None = None,
        passive_execution: bool = False,
        **kwargs: Any,
    ) -> dict | None:
        return self._run(create.create, client_instance, passive_execution, **kwargs)

    def _handle_destroy_request(
        self,
        client_instance: ClientInstance | None = None,
        passive_execution: bool = False,
        credentials_dict: dict | None = None,
        **kwargs: Any,
    ) -> dict | None:
        return self._run(
            verbs.destroy,
            client_instance,
            passive_execution,
            credentials_dict=credentials_dict,
            **kwargs,
        )

    def _handle_stat_request(
        self,
        client_instance: ClientInstance | None = None,
        passive_execution: bool = False,
        **kwargs: Any,
    ) -> dict | None:
        return self._run(verbs.stat, client_instance, passive_execution, **kwargs)

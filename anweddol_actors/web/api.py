"""The original's REST API: ``POST /<verb>`` with the request's parameters as the body.

Each request is a session of the engine, as a TCP client is: admitted under the same IP
filter and connection limits (shared with TCP), served by a ``SessionActor`` over an
:class:`~anweddol_actors.transport.HttpChannel`, journalled, and firing the same events
(its handlers' ``client_instance`` has no socket). The answer is the normalized response
``{"success", "message", "data"}`` with status 200, also when ``success`` is false:
deployed web clients raise on any status of 300 or more, and read ``message``.

What is refused before a session exists has an HTTP status, in the same shape:

=====  =========================================================================
403    refused by the IP filter, or a handler closed the client without answering
404    no such path; 405: no such method on it
413    a body over ``max_message_size`` (Content-Length checked first; never read past)
429    past ``server.max_connections`` or ``max_connections_per_address``
503    the server is stopping
504    no answer within ``answer_timeout`` (the answer, if it comes, is not delivered)
=====  =========================================================================

A body that is not JSON, not an object, or holds wrong types is the session's malformed
request (``on_malformed_request``, ``Bad request``, 200); a verb nobody handles is its
unhandled verb (``Bad request (Unhandled verb)``, 200): the engine's one validator
(``protocol.messages.validate_request``) decides, for both transports. The request-body
schemas below only *describe* it in ``/openapi.json`` (FastAPI's ``openapi_extra``), from
the same patterns and bounds.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from anweddol_actors import __version__
from anweddol_actors.engine.supervisor import Server
from anweddol_actors.errors import AnweddolError
from anweddol_actors.protocol.messages import (
    MAX_PARAMETER_NAME_LENGTH,
    MAX_PARAMETERS,
    REQUEST_VERB_CREATE,
    REQUEST_VERB_DESTROY,
    REQUEST_VERB_STAT,
    RESPONSE_MSG_BAD_REQ,
    RESPONSE_MSG_INTERNAL_ERROR,
    RESPONSE_MSG_REFUSED_REQ,
    RESPONSE_MSG_UNAVAILABLE,
    TOKEN_REGEX,
    UUID4_REGEX,
)
from anweddol_actors.transport import HttpChannel
from anweddol_actors.web.responses import client_address, normalized, refused
from anweddol_actors.web.settings import WebSettings

log = logging.getLogger(__name__)

__all__ = [
    "CreateParameters",
    "DestroyParameters",
    "NormalizedResponse",
    "Parameters",
    "StatParameters",
    "install",
]


# -- what /openapi.json says ----------------------------------------------------------


class NormalizedResponse(BaseModel):
    """Every answer of the API, errors included (PROTOCOL.md §3)."""

    success: bool
    message: str
    data: dict[str, Any]


class Parameters(BaseModel):
    """A request's parameters: an object; any verb may take keys of its own."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "maxProperties": MAX_PARAMETERS,
            "propertyNames": {"maxLength": MAX_PARAMETER_NAME_LENGTH},
        },
    )

    access_token: str | None = Field(
        default=None, description="Required when the server enables access tokens."
    )


class StatParameters(Parameters):
    """STAT: no parameter of its own."""


class CreateParameters(Parameters):
    """CREATE: no parameter of its own."""


class DestroyParameters(Parameters):
    """DESTROY: the container and the token its CREATE returned."""

    container_uuid: str = Field(pattern=UUID4_REGEX)
    client_token: str = Field(pattern=TOKEN_REGEX)


_BUILT_IN = {
    REQUEST_VERB_STAT: (StatParameters, "The server's version, uptime and free capacity."),
    REQUEST_VERB_CREATE: (
        CreateParameters,
        "A new container: its SSH port, user name, password, and the token to destroy it.",
    ),
    REQUEST_VERB_DESTROY: (DestroyParameters, "Destroy a container created by CREATE."),
}


def _error_doc(description: str) -> dict[str, Any]:
    return {"model": NormalizedResponse, "description": description}


_REFUSALS = {
    403: _error_doc("Refused by the IP filter, or by a handler"),
    404: _error_doc("No such path"),
    405: _error_doc("No such method on this path"),
    413: _error_doc("The body is larger than the server's max_message_size"),
    429: _error_doc("Too many connections (in all, or from this address)"),
    503: _error_doc("The server is stopping"),
    504: _error_doc("No answer in time"),
}


def _body_doc(model: type[BaseModel]) -> dict[str, Any]:
    """FastAPI's documented way to describe a body the endpoint reads itself."""
    return {
        "requestBody": {
            "required": False,
            "description": "The request's parameters (an empty body is {}).",
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }


# -- the answers ---------------------------------------------------------------------


_ADMISSION_REFUSALS = {
    "filtered": (403, RESPONSE_MSG_REFUSED_REQ, None),
    "limited": (429, RESPONSE_MSG_UNAVAILABLE, "Too many connections"),
    "stopping": (503, RESPONSE_MSG_UNAVAILABLE, "The server is stopping"),
}


class _Delivered(JSONResponse):
    """The engine's answer, written only to a client still connected; the session learns
    which (``HttpChannel.written``): an undelivered CREATE unwinds."""

    def __init__(self, content: dict, channel: HttpChannel, watcher: asyncio.Future) -> None:
        super().__init__(content)
        self._channel = channel
        self._watcher = watcher

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # One turn of the loop: a disconnect already seen by the transport reaches the
        # watcher before it is read.
        await asyncio.sleep(0)
        gone = self._watcher.done()
        self._watcher.cancel()
        if gone:
            self._channel.written(False)
            return
        try:
            await super().__call__(scope, receive, send)
        except BaseException:
            self._channel.written(False)
            raise
        self._channel.written(True)


class _TooLarge(AnweddolError):  # noqa: N818 - internal signal, never leaves this module
    """The body grew past the limit."""


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, at most ``limit`` bytes: Content-Length is checked first, and reading
    stops as soon as the body grows past it. ClientDisconnect when the peer left."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _TooLarge
    return bytes(body)


def _parse(verb: str, body: bytes) -> tuple[Any, str | None]:
    """The request over ``body``, or why the body is not one."""
    if not body.strip():
        return {"verb": verb, "parameters": {}}, None
    try:
        parameters = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None, "the body is not a JSON document"
    return {"verb": verb, "parameters": parameters}, None


async def _disconnected(receive: Any) -> None:
    """Returns when the client hangs up (the body is read: nothing else comes)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def _serve(engine: Server, settings: WebSettings, request: Request, verb: str) -> Response:
    ip = client_address(request)
    refusal = engine.admit_http(ip)
    if refusal is not None:
        status, message, reason = _ADMISSION_REFUSALS[refusal]
        return normalized(status, False, message, reason)
    try:
        try:
            body = await _read_body(request, settings.max_message_size)
        except _TooLarge:
            engine.release_http(ip)
            log.info("refused a body over %d bytes from %s", settings.max_message_size, ip)
            # The rest of the body is never read: the connection cannot carry another request.
            return normalized(
                413,
                False,
                RESPONSE_MSG_BAD_REQ,
                f"Body larger than {settings.max_message_size} bytes",
                headers={"connection": "close"},
            )
        payload, error = _parse(verb, body)
        channel = HttpChannel(ip, payload, asyncio.get_running_loop(), error=error)
        engine.serve_http(channel)
    except ClientDisconnect:
        engine.release_http(ip)
        return Response(status_code=204)  # the peer left mid-body: nobody reads this
    except BaseException:
        # No session took the slot (the peer left mid-body, a refusal, a failed start).
        engine.release_http(ip)
        raise
    return await _answer(engine, settings, request, channel)


async def _answer(
    engine: Server, settings: WebSettings, request: Request, channel: HttpChannel
) -> Response:
    watcher = asyncio.ensure_future(_disconnected(request.receive))
    try:
        await asyncio.wait(
            {channel.answer, watcher},
            timeout=settings.answer_timeout,
            return_when=asyncio.FIRST_COMPLETED,
        )
    except BaseException:  # cancelled: the web server is stopping
        channel.abandon()
        watcher.cancel()
        raise
    if not channel.answer.done():
        channel.abandon()
        watcher.cancel()
        if watcher.done() and not watcher.cancelled():
            return Response(status_code=204)  # the client is gone: nobody reads this
        log.warning("no answer for %s within %g s", channel.ip, settings.answer_timeout)
        return normalized(504, False, RESPONSE_MSG_UNAVAILABLE, "No answer in time")
    answer = channel.answer.result()
    if answer is None:
        watcher.cancel()
        if engine.context.stopping.is_set():
            return normalized(503, False, RESPONSE_MSG_UNAVAILABLE, "The server is stopping")
        return normalized(403, False, RESPONSE_MSG_REFUSED_REQ)
    return _Delivered(answer, channel, watcher)


def _verb_for(engine: Server, name: str) -> str:
    """The registered verb named ``name`` (any case), else ``name`` upper-cased (the
    engine then refuses it as unhandled, or as malformed)."""
    lowered = name.lower()
    for verb in list(engine.verbs):
        if verb.lower() == lowered:
            return verb
    return name.upper()


# -- the routes ------------------------------------------------------------------------


def install(app: FastAPI, engine: Server, settings: WebSettings) -> None:
    """``POST /stat``, ``/create``, ``/destroy``, one route per custom verb registered by
    now, ``POST /{verb}`` for the later ones, ``GET /``, and the normalized errors."""

    def endpoint_for(verb: str) -> Any:
        async def endpoint(request: Request) -> Response:
            return await _serve(engine, settings, request, verb)

        return endpoint

    verbs = dict.fromkeys([REQUEST_VERB_STAT, REQUEST_VERB_CREATE, REQUEST_VERB_DESTROY])
    verbs.update(dict.fromkeys(sorted(engine.verbs)))
    for verb in verbs:
        model, summary = _BUILT_IN.get(verb, (Parameters, f"The server's own verb {verb}."))
        app.add_api_route(
            f"/{verb.lower()}",
            endpoint_for(verb),
            methods=["POST"],
            name=verb.lower(),
            summary=summary,
            response_model=NormalizedResponse,
            responses=_REFUSALS,
            openapi_extra=_body_doc(model),
            tags=["verbs"],
        )

    async def any_verb(request: Request, verb: str) -> Response:
        return await _serve(engine, settings, request, _verb_for(engine, verb))

    app.add_api_route(
        "/{verb}",
        any_verb,
        methods=["POST"],
        name="verb",
        summary="Any verb registered with setRequestHandler (unknown ones: Unhandled verb).",
        response_model=NormalizedResponse,
        responses=_REFUSALS,
        openapi_extra=_body_doc(Parameters),
        tags=["verbs"],
    )

    async def home(request: Request) -> Response:
        refusal = refused(request, engine.settings.ip_allows)
        if refusal is not None:
            return refusal
        links = {"openapi": "/openapi.json"}
        if settings.enable_metrics:
            links["metrics"] = "/metrics"
        if settings.enable_ui:
            links["ui"] = "/ui/"
        return JSONResponse(
            {
                "name": "anweddol_actors",
                "version": __version__,
                "verbs": sorted(verbs.keys() | set(engine.verbs)),
                "links": links,
            }
        )

    app.add_api_route("/", home, methods=["GET"], summary="What this server is and serves")

    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        reasons = {404: "Unknown path", 405: "Method not allowed"}
        reason = reasons.get(exc.status_code, str(exc.detail))
        response = normalized(exc.status_code, False, RESPONSE_MSG_BAD_REQ, reason)
        for name, value in (exc.headers or {}).items():
            response.headers[name] = value
        return response

    async def internal_error(request: Request, exc: Exception) -> Response:
        log.error("HTTP request failed: %s", exc, exc_info=exc)
        return normalized(500, False, RESPONSE_MSG_INTERNAL_ERROR)

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, internal_error)

"""The operator's page: ``/ui/``, its assets and the data it polls.

- ``GET /ui/`` the page (``/ui`` redirects there); ``GET /ui/static/NAME`` its CSS and JS.
  All three are files of ``web/static/`` in the package, read once at install: servers
  often have no internet, so nothing comes from a CDN, and a name not in that folder is
  a 404 (no path is ever joined from the request).
- ``GET /ui/api/state`` the server's counters and its live containers, each with its
  journal history (``engine/admin.py``). What is shown is chosen field by field (allow
  lists there and here): never a token, a password or a key.
- ``GET /ui/api/machine/{kind}.svg?state=STATE`` a kind's machine drawn by Graphviz with
  STATE highlighted; a few dozen (kind, state) pairs exist, each drawn once.

Every ``/ui`` path, whatever follows, is served only to the peers that
``web_server.admin_allowed_ip_list`` names (parsed as ``ip_filter``'s entries), checked by
a small ASGI gate before routing: anyone else gets 403 in the normalized shape, and
learns nothing of which paths exist. The handlers are plain functions: FastAPI runs them
on its thread pool, where the engine's blocking calls (actors, journal, ``dot``) belong.
"""

from __future__ import annotations

import functools
import threading
from importlib import resources
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, RedirectResponse, Response

from anweddol_actors.engine import admin
from anweddol_actors.lifecycle.definitions import SPECS
from anweddol_actors.lifecycle.render import RenderError, to_dot, to_svg
from anweddol_actors.policy.ip_filter import ANY, IpFilter
from anweddol_actors.protocol.messages import RESPONSE_MSG_REFUSED_REQ
from anweddol_actors.web.responses import normalized
from anweddol_actors.web.settings import WebSettings

__all__ = ["PREFIX", "install"]

PREFIX = "/ui"
STATIC_FOLDER = "static"  # beside this module, in the package (pyproject's package-data)
PAGE = "index.html"
# HEAD too, for ``curl -I`` and monitoring probes (uvicorn sends no body to a HEAD).
READ_METHODS = ["GET", "HEAD"]

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}

# The page loads only its own files and talks only to its own server.
_PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
_DATA_HEADERS = {**_PAGE_HEADERS, "Cache-Control": "no-store"}
# Graphviz's SVG carries no script; opened on its own, it may not run any either.
_SVG_HEADERS = {
    **_PAGE_HEADERS,
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
}

# What the header of the page shows of engine/admin.py's ``status`` (the allow list: the
# server's fingerprint, its pid and whatever is added there later stay out).
STATUS_FIELDS = ("version", "uptime", "containers", "available", "listen")
# What a row of the containers' table shows of ``list_containers``.
CONTAINER_FIELDS = ("uuid", "state", "age", "client", "port", "expires_at", "expires_in")


def install(app: FastAPI, engine: Any, settings: WebSettings) -> None:
    """Add the page's routes to ``app`` over ``engine`` (an ``engine.supervisor.Server``),
    served only to ``settings.admin_allowed_ip_list``."""
    allowed = _allow_list(settings.admin_allowed_ip_list)
    app.add_middleware(_Gate, allows=allowed.allows)
    files = _static_files()

    @app.api_route(PREFIX, methods=READ_METHODS, include_in_schema=False)
    def ui_redirect() -> Response:
        return RedirectResponse(f"{PREFIX}/", status_code=307)

    @app.api_route(f"{PREFIX}/", methods=READ_METHODS, include_in_schema=False)
    def ui_page() -> Response:
        return _file_response(PAGE, files[PAGE])

    @app.api_route(PREFIX + "/static/{name}", methods=READ_METHODS, include_in_schema=False)
    def ui_static(name: str) -> Response:
        if name == PAGE or name not in files:
            return _normalized(404, "Not found")
        return _file_response(name, files[name])

    @app.api_route(f"{PREFIX}/api/state", methods=READ_METHODS, include_in_schema=False)
    def ui_state() -> Response:
        return JSONResponse(
            {"success": True, "message": "OK", "data": page_state(engine)},
            headers=_DATA_HEADERS,
        )

    @app.api_route(
        PREFIX + "/api/machine/{kind}.svg", methods=READ_METHODS, include_in_schema=False
    )
    def ui_machine(kind: str, state: str | None = None) -> Response:
        spec = SPECS.get(kind)
        if spec is None:
            return _normalized(404, f"No machine of kind {kind!r}")
        if state is not None and state not in spec.leaves:
            return _normalized(404, f"{kind} has no state {state!r}")
        try:
            svg = _machine_svg(kind, state)
        except RenderError as exc:
            return _normalized(503, str(exc))
        return Response(svg, media_type=_TYPES[".svg"], headers=_SVG_HEADERS)


def page_state(engine: Any) -> dict[str, Any]:
    """What ``/ui/api/state`` answers: the counters and the live containers."""
    context = engine.context
    status = admin.status(context, engine.listen_address)
    server = {name: status.get(name) for name in STATUS_FIELDS}
    server["runtime_errors"] = context.dispatch.runtime_errors
    server["requests"] = context.metrics.requests_received
    server["containers_by_state"] = admin.containers_by_state(context)
    containers = []
    for row in admin.list_containers(context):
        shown = {name: row.get(name) for name in CONTAINER_FIELDS}
        shown["kind"] = "container"
        shown["history"] = admin.container_history(context, row["uuid"])
        containers.append(shown)
    return {"server": server, "containers": containers}


def _allow_list(entries: tuple[str, ...]) -> IpFilter:
    # ip_filter's own semantics give an allow list: with "any" denied, only the entries
    # pass ("any" among them lets everyone in, as an administrator who wrote it meant).
    return IpFilter(True, allowed=entries, denied=[ANY])


class _Gate:
    """ASGI middleware: a ``/ui`` path from a peer not allowed gets 403 before routing."""

    def __init__(self, app: Any, allows: Any) -> None:
        self.app = app
        self.allows = allows

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and _under_prefix(scope.get("path", "")):
            client = scope.get("client")
            if client is None or not self.allows(client[0]):
                await _normalized(403, RESPONSE_MSG_REFUSED_REQ)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _under_prefix(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def _normalized(status: int, message: str) -> JSONResponse:
    return normalized(status, False, message, headers=_DATA_HEADERS)


def _static_files() -> dict[str, bytes]:
    """The files of ``web/static/``, by name (the folder is flat)."""
    folder = resources.files(__package__) / STATIC_FOLDER
    return {item.name: item.read_bytes() for item in folder.iterdir() if item.is_file()}


def _file_response(name: str, body: bytes) -> Response:
    suffix = name[name.rfind(".") :] if "." in name else ""
    media_type = _TYPES.get(suffix, "application/octet-stream")
    return Response(body, media_type=media_type, headers=_PAGE_HEADERS)


_render_lock = threading.Lock()


@functools.cache
def _machine_svg(kind: str, state: str | None) -> bytes:
    # Called only with a known kind and state (checked above): the cache stays as small as
    # the machines. The lock keeps concurrent first loads to one ``dot`` at a time.
    with _render_lock:
        return to_svg(to_dot(SPECS[kind], current=state))

"""``GET /metrics``: the server's metrics in the Prometheus text format.

Served to the addresses the server's IP filter admits (``engine.settings.ip_allows``, the
TCP listener's own question: the ``ip_filter`` section), else 403 with the normalized
refusal. The text is the engine's ``Metrics`` (``anweddol_actors.metrics``), one registry
per server. Installed only when ``web_server.enable_metrics`` is true (off by default).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from anweddol_actors.protocol.messages import RESPONSE_MSG_REFUSED_REQ
from anweddol_actors.web.settings import WebSettings

__all__ = ["install"]


def install(app: FastAPI, engine: Any, settings: WebSettings) -> None:
    """Add ``GET /metrics`` over ``engine`` (an ``engine.supervisor.Server``)."""

    # A plain function: FastAPI runs it on its thread pool, since a scrape reads the
    # journal and asks the registry actor (both blocking, both bounded).
    @app.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> Response:
        allows = engine.settings.ip_allows
        client = request.client.host if request.client is not None else ""
        if allows is not None and not allows(client):
            return JSONResponse(
                {"success": False, "message": RESPONSE_MSG_REFUSED_REQ, "data": {}},
                status_code=403,
            )
        registry_metrics = engine.context.metrics
        return Response(registry_metrics.render(), media_type=registry_metrics.content_type)

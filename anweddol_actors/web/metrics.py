"""``GET /metrics``: the server's metrics in the Prometheus text format.

Served to the addresses the server's IP filter admits (``engine.settings.ip_allows``, the
TCP listener's own question: the ``ip_filter`` section), else 403 with the normalized
refusal. The text is the engine's ``Metrics`` (``anweddol_actors.metrics``), one registry
per server. Installed only when ``web_server.enable_metrics`` is true (off by default).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from anweddol_actors.web.responses import refused
from anweddol_actors.web.settings import WebSettings

__all__ = ["install"]


def install(app: FastAPI, engine: Any, settings: WebSettings) -> None:
    """Add ``GET /metrics`` over ``engine`` (an ``engine.supervisor.Server``)."""

    # A plain function: FastAPI runs it on its thread pool, since a scrape reads the
    # journal and asks the registry actor (both blocking, both bounded).
    @app.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> Response:
        refusal = refused(request, engine.settings.ip_allows)
        if refusal is not None:
            return refusal
        registry_metrics = engine.context.metrics
        return Response(registry_metrics.render(), media_type=registry_metrics.content_type)

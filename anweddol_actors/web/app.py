"""The ASGI application: the API always, ``/metrics`` and ``/ui/`` when asked.

Built on FastAPI: it derives ``/openapi.json`` from the routes and models themselves (so
the description cannot drift from the code), runs on Starlette and uvicorn, and is well
kept. The API's routes are installed first and hold the error handlers that put every
HTTP error in the normalized response shape.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI

from anweddol_actors import __version__
from anweddol_actors.engine.supervisor import Server
from anweddol_actors.web import api
from anweddol_actors.web.settings import WebSettings

log = logging.getLogger(__name__)

__all__ = ["build_app"]


def build_app(engine: Server, settings: WebSettings) -> FastAPI:
    """The application over ``engine`` (an ``engine.supervisor.Server``)."""
    app = FastAPI(
        title="anweddol_actors",
        version=__version__,
        description="Short-lived SSH-reachable virtual machines: the Anweddol REST API.",
        docs_url=None,
        redoc_url=None,
    )
    # The optional parts first, so that their paths are theirs before the API's catch-all
    # POST /{verb} (which answers 405 to any other method on a one-segment path).
    if settings.enable_metrics:
        # Imported only when enabled: prometheus_client is loaded for nothing otherwise.
        from anweddol_actors.web import metrics

        metrics.install(app, engine, settings)
    if settings.enable_ui:
        # Imported only when enabled: the page's assets and renderer are not needed otherwise.
        from anweddol_actors.web import ui

        ui.install(app, engine, settings)
    api.install(app, engine, settings)
    return app

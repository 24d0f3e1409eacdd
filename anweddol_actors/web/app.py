"""The ASGI application: the API always, ``/metrics`` and ``/ui/`` when asked."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from anweddol_actors import __version__
from anweddol_actors.web import metrics, ui
from anweddol_actors.web.settings import WebSettings

__all__ = ["build_app"]


def build_app(engine: Any, settings: WebSettings) -> FastAPI:
    """The application over ``engine`` (an ``engine.supervisor.Server``)."""
    app = FastAPI(
        title="anweddol_actors",
        version=__version__,
        description="Short-lived SSH-reachable virtual machines: the Anweddol REST API.",
        docs_url=None,
        redoc_url=None,
    )
    if settings.enable_metrics:
        metrics.install(app, engine, settings)
    if settings.enable_ui:
        ui.install(app, engine, settings)
    return app

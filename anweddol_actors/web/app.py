"""The ASGI application: the API always, ``/metrics`` and ``/ui/`` when asked.

Built on FastAPI: it derives ``/openapi.json`` from the routes and models themselves (so
the description cannot drift from the code), runs on Starlette and uvicorn, and is well
kept. The API's routes come last (their ``POST /{verb}`` catches any one-segment path)
and bring the error handlers that put every HTTP error in the normalized response shape.
"""

from __future__ import annotations

from fastapi import FastAPI

from anweddol_actors import __version__
from anweddol_actors.engine.supervisor import Server
from anweddol_actors.web import api, metrics, ui
from anweddol_actors.web.settings import WebSettings

__all__ = ["build_app"]


def build_app(engine: Server, settings: WebSettings) -> FastAPI:
    """The application over ``engine`` (an ``engine.supervisor.Server``)."""
    app = FastAPI(
        title="anweddol_actors",
        version=__version__,
        description="Short-lived SSH-reachable virtual machines: the Anweddol REST API.",
        docs_url=None,
        redoc_url=None,
        # No redirect from /x/ to /x: POST /{verb} matches every one-segment path, so a
        # disabled page's /ui/ would be sent to /ui instead of being unknown (404).
        redirect_slashes=False,
    )
    # The optional parts first, so that their paths are theirs before the API's catch-all
    # POST /{verb} (which answers 405 to any other method on a one-segment path).
    if settings.enable_metrics:
        metrics.install(app, engine, settings)
    if settings.enable_ui:
        ui.install(app, engine, settings)
    api.install(app, engine, settings)
    return app

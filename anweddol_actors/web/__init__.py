"""The HTTP front end: the original's REST API, Prometheus metrics and the operator's page.

It runs beside the TCP server in ``serve``'s process and drives the same engine: an HTTP
request is a journalled session like a TCP connection, under the same IP filter, access
tokens and limits (docs/http.md). Modules: ``settings`` (what the configuration asks),
``server`` (uvicorn on a thread of its own), ``app`` (the ASGI application), ``api`` (the
verbs), ``metrics`` (``GET /metrics``), ``ui`` (``/ui/`` and its data).
"""

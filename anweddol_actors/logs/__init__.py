"""The server's log: where it goes, its shape, its rotation.

:func:`configure` sets the root logger up once per process (``serve`` calls it from the
configuration): standard error or a file, ``text`` or ``json`` lines, rotation as the
original's ``log_rotation`` section describes. :func:`reopen` reopens the file after
logrotate moved it (``serve``'s SIGHUP). The engine logs one line per request on the
``anweddol_actors.requests`` logger with the fields of :data:`REQUEST_FIELDS`.

Bottom layer: imports the standard library and :mod:`anweddol_actors.errors` only.
"""

from __future__ import annotations

from anweddol_actors.logs.formats import REQUEST_FIELDS, JsonFormatter, TextFormatter
from anweddol_actors.logs.rotation import Rotation
from anweddol_actors.logs.setup import LEVELS, LogError, configure, reopen

__all__ = [
    "LEVELS",
    "REQUEST_FIELDS",
    "JsonFormatter",
    "LogError",
    "Rotation",
    "TextFormatter",
    "configure",
    "reopen",
]

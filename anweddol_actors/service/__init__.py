"""Running the server as a system service: its PID file, the detached child that
``start`` launches, the drop to ``server.user``, and the policies a SIGHUP reloads.

Plain Python over the standard library (and ``policy`` for the reloadable policies); the
commands that use it are in ``cli/service.py`` and ``cli/serve.py``.
"""

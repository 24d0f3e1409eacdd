"""The admin channel: a Unix socket through which the admin commands (``status``,
``containers list``, ``containers destroy``, ``hosts list|drain|enable``) talk to the
running server.

Not the public port: only root and the server's user can open the socket, and nothing
on it is reachable from the network. One request a connection, JSON lines:
``{"command": NAME, ...arguments}`` then ``{"ok": true, "data": {...}}`` or
``{"ok": false, "error": "one line"}`` (``client.py`` holds the shape both ends share;
``server.py`` serves it beside the engine, whose ``engine/admin.py`` does the work).
"""

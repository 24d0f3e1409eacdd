"""``python -m anweddol_actors bench``: the server's speed, each figure beside its baseline.

The package sits over the engine (never core, admin, web or cli). Its modules:

- ``deployed_client``: a client that speaks the protocol as deployed clients do (one small
  write per protocol step, Nagle left on), written from PROTOCOL.md.
- ``server``: the ``serve`` child under test (a temporary folder, stopped by PID, its
  domains removed) and /proc measurements of processes.
- ``stat``, ``create``, ``forwarder``, ``journal``, ``idle``: one section of the report
  each, with its baseline.
- ``stats``: percentiles and summaries; ``report``: the target ratios, text and Markdown.
- ``run``: the sections in order (``QUICK`` and ``FULL`` plans) into one JSON document.
"""

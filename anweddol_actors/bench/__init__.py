"""``python -m anweddol_actors bench``: the server's speed, each figure beside its baseline.

The package sits over the engine (never core, admin, web or cli). Its modules:

- ``deployed_client``: a client that speaks the protocol as deployed clients do (one small
  write per protocol step, Nagle left on), written from PROTOCOL.md.
"""

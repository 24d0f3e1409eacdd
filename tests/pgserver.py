"""A real PostgreSQL server for the tests, started once per session (only if a test asks).

Started and stopped by tests/pgcluster.py (shared with the benchmarks): Debian's
``postgresql`` binaries, run as the ``postgres`` user into a temporary folder, listening
on 127.0.0.1 only on a free port; stopped at the end of the session, the folder removed.

Fixtures:

- ``pg_server``: the running server (:class:`~pgcluster.PgServer`), session-scoped.
- ``pg_url``: a fresh database for one test, owned by a password-protected non-superuser
  role as an administrator would set it up, as the ``postgresql://`` URL the journal and
  the token store take; dropped after the test.
- ``store_url``: parametrized ``sqlite`` / ``postgresql``: a SQLite file path in the test's
  folder, or ``pg_url``. For tests of the stores, which must behave the same on both.

Missing binaries FAIL the tests that need them, with one line saying what to install: a
silently skipped backend would look tested.
"""

from __future__ import annotations

import pytest

from tests.pgcluster import PgServer, PgUnavailable, start, stop

__all__ = ["PgServer", "pg_server", "pg_url", "store_url"]


@pytest.fixture(scope="session")
def pg_server():
    try:
        server = start()
    except PgUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        stop(server)


@pytest.fixture
def pg_url(pg_server):
    name = pg_server.create_database()
    try:
        yield pg_server.url(name)
    finally:
        pg_server.drop_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "store.sqlite3")
    return request.getfixturevalue("pg_url")

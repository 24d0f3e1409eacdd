"""PostgreSQL's LISTEN/NOTIFY between the front ends sharing one journal.

A front end tells another one something (a DESTROY of one of its containers reached this
front end instead) with :meth:`Journal.notify` on the other's channel
(:func:`channel_of`), and hears what it is told through a :class:`Listener` on its own.

A notification reaches only the listeners connected when it is sent: PostgreSQL keeps none
for later. A listener whose connection is lost (the server restarted, its backend was
terminated, the link froze past the keepalives) logs it once, and its next :meth:`wait`
connects again and LISTENs again; what was sent in between is lost, so a receiver must
not depend on notifications alone: :attr:`Listener.reconnections` counts the
reconnections, for a receiver to look again at what it might have missed (the journal
holds it).

Every call is bounded: :meth:`Listener.wait` returns within its timeout plus the connect
timeout of journal/database.py (which also gives the connection its statement timeout and
keepalives), and :meth:`Listener.close`, from any thread, within the connect timeout.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
from collections.abc import Iterable

import psycopg2
from psycopg2 import sql

from anweddol_actors.journal.database import (
    DatabaseError,
    connect_postgresql,
    one_line,
    parse_location,
)
from anweddol_actors.journal.store import FRONT_END_NAME, JournalError

log = logging.getLogger(__name__)

CHANNEL_PREFIX = "anweddol."
# PostgreSQL truncates identifiers, channel names included, to 63 bytes (NAMEDATALEN - 1):
# two longer names could meet on one channel.
MAX_CHANNEL_BYTES = 63


def channel_of(front_end: str) -> str:
    """The channel front end ``front_end`` listens on: ``anweddol.NAME``."""
    if not FRONT_END_NAME.fullmatch(front_end):
        raise JournalError(f"front end name {front_end!r} is not 1 to 48 of A-Z a-z 0-9 _ . -")
    return _checked(CHANNEL_PREFIX + front_end)


def _checked(channel: str) -> str:
    if not channel or len(channel.encode("utf-8")) > MAX_CHANNEL_BYTES:
        raise JournalError(f"channel {channel!r} must be 1 to {MAX_CHANNEL_BYTES} bytes")
    return channel


class Listener:
    """LISTEN on ``channels`` of the PostgreSQL database at ``url``, on a connection of
    its own (in autocommit mode: a notification is delivered between transactions).

    Meant for one thread calling :meth:`wait` in a loop; :meth:`close` may come from
    another, and wakes that wait.
    """

    def __init__(self, url: str, channels: Iterable[str]):
        try:
            self._location = parse_location(url)
        except DatabaseError as exc:
            raise JournalError(f"listener: {exc}") from None
        if not self._location.is_postgresql:
            raise JournalError(
                f"listener: notifications need a PostgreSQL journal, not {self._location.path}"
            )
        self.channels = tuple(_checked(channel) for channel in channels)
        if not self.channels:
            raise JournalError("listener: no channel to listen on")
        # Connections made again after a lost one (see the module docstring).
        self.reconnections = 0
        self._lock = threading.Lock()  # held by a wait, and by close once the wait left
        self._closed = False
        self._down = False  # the connection was lost (logged) and is not back yet
        self._connection = None
        try:
            self._connection = self._connect()
        except psycopg2.Error as exc:
            raise JournalError(
                f"listener: cannot listen on {self._location.path}: {one_line(exc)}"
            ) from exc
        # Written by close(): wakes a wait blocked in select().
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_write, False)

    def wait(self, timeout: float) -> list[tuple[str, str]]:
        """The notifications that arrive within ``timeout`` seconds, as (channel,
        payload): returns as soon as there are some, or at the timeout with none. Without
        a connection (lost at an earlier call), connects again first; if that fails, waits
        the timeout out and returns none (the next call tries again)."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self._lock:
            if self._closed:
                raise JournalError("listener: it is closed")
            if self._connection is None and not self._reconnect():
                self._sleep_until(deadline)
                return []
            return self._receive(deadline)

    def close(self) -> None:
        """Stop listening and close the connection; wakes a :meth:`wait` in progress."""
        if self._closed:
            return
        self._closed = True
        try:
            os.write(self._wake_write, b"x")
        except OSError:  # the pipe is full: a wake-up is pending already
            pass
        with self._lock:  # the wait in progress, if any, has returned
            self._drop()
            os.close(self._wake_read)
            os.close(self._wake_write)

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------

    def _connect(self):  # -> psycopg2 connection
        connection = connect_postgresql(self._location)
        try:
            connection.autocommit = True
            with connection.cursor() as cursor:
                for channel in self.channels:
                    cursor.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        except BaseException:
            connection.close()
            raise
        return connection

    def _reconnect(self) -> bool:
        try:
            self._connection = self._connect()
        except psycopg2.Error as exc:
            # The loss was logged; each failed attempt would repeat it every wait.
            log.debug("journal listener: cannot connect again yet: %s", one_line(exc))
            return False
        self.reconnections += 1
        if self._down:
            self._down = False
            log.info(
                "journal listener: connected again to %s, listening on %s",
                self._location.path,
                ", ".join(self.channels),
            )
        return True

    def _receive(self, deadline: float) -> list[tuple[str, str]]:
        connection = self._connection
        try:
            connection.poll()  # what arrived since the last call
            while not connection.notifies:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                readable, _, _ = select.select([connection, self._wake_read], [], [], remaining)
                if self._wake_read in readable:
                    break  # closing
                if readable:
                    connection.poll()
        except psycopg2.Error as exc:
            received = self._take(connection)
            self._lost(exc)
            return received
        return self._take(connection)

    @staticmethod
    def _take(connection) -> list[tuple[str, str]]:
        received = [(note.channel, note.payload) for note in connection.notifies]
        del connection.notifies[:]
        return received

    def _lost(self, exc: BaseException) -> None:
        if not self._down:
            self._down = True
            log.warning(
                "journal listener: connection to %s lost (%s); connecting again at the next wait",
                self._location.path,
                one_line(exc),
            )
        self._drop()

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                connection.close()
            except psycopg2.Error:  # already broken: nothing left to close
                pass

    def _sleep_until(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining > 0:
            select.select([self._wake_read], [], [], remaining)

"""The IP filter and the access tokens of a running server, swappable at a SIGHUP.

The listener and the request hook read ``LivePolicies`` at each use; ``apply`` builds the
new filter and opens the new token store first, then swaps each in one assignment, so a
connection sees either the old policy or the new one, never a mix, and a reload that
fails halfway (a token database that does not open) changes nothing.
"""

from __future__ import annotations

import threading

from anweddol_actors.policy.access_tokens import AccessTokenStore
from anweddol_actors.policy.ip_filter import IpFilter


class LivePolicies:
    def __init__(self) -> None:
        self.ip_filter: IpFilter | None = None  # None: every address passes
        self.tokens: AccessTokenStore | None = None  # None: no token asked
        self._retired: list[AccessTokenStore] = []
        self._lock = threading.Lock()

    def allows(self, ip: str) -> bool:
        """The listener's question (``Settings.ip_allows``)."""
        current = self.ip_filter
        return current is None or current.allows(ip)

    def apply(self, ip_filter_config, access_token_config) -> str:
        """Install the policies of the configuration's ``ip_filter`` and ``access_token``
        sections; returns one line saying what is now in force. Raises (changing nothing)
        when the token database cannot be opened."""
        with self._lock:
            new_filter = None
            if ip_filter_config.enabled:
                new_filter = IpFilter(
                    True, ip_filter_config.allowed_ip_list, ip_filter_config.denied_ip_list
                )
            new_tokens = None
            if access_token_config.enabled:
                new_tokens = AccessTokenStore(access_token_config.access_token_database_file_path)
            # A request may still hold the store being replaced: it is closed at the next
            # reload (or at close), long after any request that could use it has ended.
            for store in self._retired:
                store.close()
            self._retired = [self.tokens] if self.tokens is not None else []
            self.ip_filter = new_filter
            self.tokens = new_tokens
        return self.describe(ip_filter_config, access_token_config)

    @staticmethod
    def describe(ip_filter_config, access_token_config) -> str:
        if ip_filter_config.enabled:
            ip_part = (
                f"IP filter on ({len(ip_filter_config.allowed_ip_list)} allowed, "
                f"{len(ip_filter_config.denied_ip_list)} denied)"
            )
        else:
            ip_part = "IP filter off"
        if access_token_config.enabled:
            token_part = f"access tokens on ({access_token_config.access_token_database_file_path})"
        else:
            token_part = "access tokens off"
        return f"{ip_part}, {token_part}"

    def close(self) -> None:
        with self._lock:
            for store in [*self._retired, self.tokens]:
                if store is not None:
                    store.close()
            self._retired = []
            self.tokens = None

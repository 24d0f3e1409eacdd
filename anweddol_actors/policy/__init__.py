"""Server policies applied to clients before any work: IP filter and access tokens.

PROTOCOL.md §3 says what a refused client sees; these modules only decide.
"""

from anweddol_actors.policy.access_tokens import (
    TOKEN_BYTES,
    AccessTokenEntry,
    AccessTokenError,
    AccessTokenStore,
    hash_token,
)
from anweddol_actors.policy.ip_filter import ANY, IpFilter, parse_ip_entry

__all__ = [
    "ANY",
    "TOKEN_BYTES",
    "AccessTokenEntry",
    "AccessTokenError",
    "AccessTokenStore",
    "IpFilter",
    "hash_token",
    "parse_ip_entry",
]

"""Fixtures of the protocol tests (defined once in protocol_support, shared with tests/client)."""

from protocol_support import client_key, server_key

__all__ = ["client_key", "server_key"]

"""Helpers of the admin channel's tests."""

from __future__ import annotations

# Loopback ports for the forwarders of these tests: away from the other suites' ranges.
FORWARDER_PORTS = (43000, 43099)

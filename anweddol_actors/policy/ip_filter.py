"""Which client addresses may connect (the ``ip_filter`` section of the configuration).

Semantics are the original server's, extended to CIDR networks:

- filter disabled: every address passes;
- an address matched by an entry of ``denied`` (other than ``any``) is refused, even when
  ``allowed`` matches it too (the original checked the denied list last, so it won);
- ``any`` in ``denied``: only addresses matched by ``allowed`` pass (``any`` in ``allowed``
  lets everything through again, bar the explicit denials);
- otherwise the address passes: ``allowed`` only matters once ``denied`` holds ``any``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

__all__ = ["ANY", "IpFilter", "IpNetwork", "parse_ip_entry"]

ANY = "any"

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_ip_entry(entry: str) -> IpNetwork | None:
    """Parse one list entry: ``any`` (returns None), an address, or a CIDR network.

    Raises ValueError with a one-line reason, so that the configuration loader can name
    the entry. Host bits set in a network (``10.0.0.1/8``) are refused rather than
    silently widened: the administrator may have meant a single host.
    """
    if not isinstance(entry, str):
        raise ValueError(f"{entry!r} is not a string")
    text = entry.strip()
    if text.lower() == ANY:
        return None
    try:
        network = ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        if "has host bits set" in str(exc):
            widened = ipaddress.ip_network(text, strict=False)
            raise ValueError(f"{text!r} has host bits set (did you mean {widened}?)") from None
        raise ValueError(f"{text!r} is neither 'any', an IP address nor a CIDR network") from None
    return _unmapped_network(network)


def _unmapped_network(network: IpNetwork) -> IpNetwork:
    # "::ffff:10.0.0.0/104" and "10.0.0.0/8" must match the same peers.
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen >= 96:
        mapped = network.network_address.ipv4_mapped
        if mapped is not None:
            return ipaddress.ip_network(f"{mapped}/{network.prefixlen - 96}")
    return network


def _parse_address(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        # A dual-stack listener reports IPv4 peers as "::ffff:a.b.c.d"; a scope id ("%eth0")
        # does not change which host it is.
        address = ipaddress.ip_address(ip.split("%", 1)[0])
    except (ValueError, AttributeError):
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class IpFilter:
    """Decides from a peer address alone; built once, then read-only (thread-safe)."""

    def __init__(self, enabled: bool, allowed: Iterable[str], denied: Iterable[str]) -> None:
        self.enabled = bool(enabled)
        self._allow_any, self._allowed = self._parse_list(allowed)
        self._deny_any, self._denied = self._parse_list(denied)

    @staticmethod
    def _parse_list(entries: Iterable[str]) -> tuple[bool, tuple[IpNetwork, ...]]:
        if isinstance(entries, str):
            # A bare string would otherwise be read as a list of one-character entries.
            raise ValueError("an IP list must be a list of strings, not a string")
        has_any = False
        networks: list[IpNetwork] = []
        for entry in entries:
            network = parse_ip_entry(entry)
            if network is None:
                has_any = True
            else:
                networks.append(network)
        return has_any, tuple(networks)

    def allows(self, ip: str) -> bool:
        """True if a client connecting from ``ip`` may proceed to the key exchange.

        An unparsable peer address (a UNIX socket peer, say) is refused when the filter is
        enabled: a filter that cannot tell must fail closed.
        """
        if not self.enabled:
            return True
        address = _parse_address(ip)
        if address is None:
            return False
        if any(address in network for network in self._denied):
            return False
        if self._deny_any:
            return self._allow_any or any(address in network for network in self._allowed)
        return True

    def __repr__(self) -> str:
        def show(has_any: bool, networks: tuple[IpNetwork, ...]) -> list[str]:
            return ([ANY] if has_any else []) + [str(n) for n in networks]

        return (
            f"IpFilter(enabled={self.enabled}, allowed={show(self._allow_any, self._allowed)}, "
            f"denied={show(self._deny_any, self._denied)})"
        )

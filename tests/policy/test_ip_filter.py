"""IP filter: the original's semantics, plus CIDR networks and IPv6."""

from __future__ import annotations

import re

import pytest

from anweddol_actors.config import parse_config
from anweddol_actors.policy import IpFilter, parse_ip_entry


def test_disabled_lets_everything_through():
    ip_filter = IpFilter(False, allowed=[], denied=["any"])
    assert ip_filter.allows("203.0.113.9")
    assert ip_filter.allows("not an address")


def test_original_default_lists_allow_everyone():
    ip_filter = IpFilter(True, allowed=["any"], denied=[])
    assert ip_filter.allows("203.0.113.9")
    assert ip_filter.allows("::1")


def test_denied_addresses_are_refused_others_pass():
    ip_filter = IpFilter(True, allowed=[], denied=["203.0.113.9"])
    assert not ip_filter.allows("203.0.113.9")
    assert ip_filter.allows("203.0.113.10")


def test_allowed_list_is_ignored_without_any_in_denied():
    # Original semantics: allowed_ip_list is only consulted when denied_ip_list has 'any'.
    ip_filter = IpFilter(True, allowed=["10.0.0.1"], denied=[])
    assert ip_filter.allows("192.0.2.1")


def test_any_denied_means_only_allowed_pass():
    ip_filter = IpFilter(True, allowed=["127.0.0.1", "10.1.2.3"], denied=["any"])
    assert ip_filter.allows("127.0.0.1")
    assert ip_filter.allows("10.1.2.3")
    assert not ip_filter.allows("10.1.2.4")
    assert not ip_filter.allows("::1")


def test_explicit_denial_wins_over_allowance():
    ip_filter = IpFilter(True, allowed=["any"], denied=["any", "10.0.0.5"])
    assert ip_filter.allows("10.0.0.4")
    assert not ip_filter.allows("10.0.0.5")
    both = IpFilter(True, allowed=["10.0.0.5"], denied=["10.0.0.5"])
    assert not both.allows("10.0.0.5")


def test_cidr_networks():
    ip_filter = IpFilter(
        True, allowed=["10.0.0.0/8", "2001:db8::/32"], denied=["any", "10.9.0.0/16"]
    )
    assert ip_filter.allows("10.1.2.3")
    assert ip_filter.allows("10.255.255.255")
    assert not ip_filter.allows("10.9.4.4")
    assert not ip_filter.allows("11.0.0.1")
    assert ip_filter.allows("2001:db8::42")
    assert not ip_filter.allows("2001:db9::42")


def test_ipv4_mapped_peers_match_ipv4_entries():
    # A dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d.
    ip_filter = IpFilter(True, allowed=["192.0.2.0/24"], denied=["any"])
    assert ip_filter.allows("::ffff:192.0.2.7")
    assert not ip_filter.allows("::ffff:198.51.100.7")
    mapped_entry = IpFilter(True, allowed=["::ffff:192.0.2.0/120"], denied=["any"])
    assert mapped_entry.allows("192.0.2.7")


def test_unparsable_peer_is_refused_when_enabled():
    ip_filter = IpFilter(True, allowed=["any"], denied=[])
    assert not ip_filter.allows("")
    assert not ip_filter.allows("/run/server.sock")


def test_any_is_case_insensitive_and_entries_trimmed():
    ip_filter = IpFilter(True, allowed=[" 127.0.0.1 "], denied=["ANY"])
    assert ip_filter.allows("127.0.0.1")
    assert not ip_filter.allows("127.0.0.2")


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ("10.0.0.1/8", "has host bits set (did you mean 10.0.0.0/8?)"),
        ("example.org", "is neither 'any', an IP address nor a CIDR network"),
        ("300.1.1.1", "is neither 'any', an IP address nor a CIDR network"),
    ],
)
def test_bad_entries_are_refused(entry, reason):
    with pytest.raises(ValueError, match=re.escape(reason)):
        parse_ip_entry(entry)
    with pytest.raises(ValueError):
        IpFilter(True, allowed=[entry], denied=[])


def test_a_bare_string_is_not_a_list():
    with pytest.raises(ValueError, match="list of strings"):
        IpFilter(True, allowed="any", denied=[])


def test_from_config_section():
    config = parse_config(
        "ip_filter:\n  enabled: true\n  denied_ip_list: [any]\n  allowed_ip_list: [127.0.0.0/8]\n"
    )
    section = config.ip_filter  # what `serve` builds its filter from
    ip_filter = IpFilter(section.enabled, section.allowed_ip_list, section.denied_ip_list)
    assert ip_filter.allows("127.0.0.1")
    assert not ip_filter.allows("192.0.2.1")
    assert "127.0.0.0/8" in repr(ip_filter)

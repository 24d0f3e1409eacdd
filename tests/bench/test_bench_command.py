"""``python -m anweddol_actors bench --quick --json FILE`` as an administrator runs it: it
boots real guests (qemu:///system), so it is a ``vm`` test. It checks that the command
runs to its end and writes well-formed JSON with every section and numeric figures, never
the figures' values (benchmarks are not timed tests)."""

from __future__ import annotations

import json
import numbers

import pytest
from commands import run_command

pytestmark = pytest.mark.vm


def number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def test_bench_quick_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    result = run_command("bench", "--quick", "--json", str(out), timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Targets" in result.stdout
    document = json.loads(out.read_text())
    assert document["schema"] == 1 and document["quick"] is True
    assert document["errors"] == {}

    stat = document["stat"]
    assert number(stat["rsa_decrypt"]["per_second"])
    assert number(stat["server_cpu"]["seconds_each"]) and number(stat["server_cpu"]["vs_decrypt"])
    for kind in ("project", "deployed"):
        assert [load["clients"] for load in stat["loads"][kind]] == [1, 8, 64]
        for load in stat["loads"][kind]:
            assert number(load["per_second"]) and number(load["latency"]["p50"])
            assert load["samples"] and all(number(s) for s in load["samples"])

    create = document["create"]
    for part in ("bare_boot", "cold", "destroy"):
        assert number(create[part]["summary"]["p50"])
    for run in create["cold"]["runs"]:
        assert all(isinstance(label, str) and number(s) for label, s in run["phases"])
    assert number(create["live_container"]["server_rss_kib_per_container"])
    warm = create["warm"]
    if warm["available"]:  # a server with a warm pool reports it in its admin status
        assert number(warm["by_client"]["project"]["p50"])
        assert number(warm["by_client"]["deployed"]["p50"])

    forwarder = document["forwarder"]
    assert {"direct", "relay"} <= set(forwarder["paths"])
    assert number(forwarder["relay_vs_direct"])
    assert number(document["journal"]["transitions_per_second"])
    assert number(document["journal"]["raw_sqlite_per_second"])
    assert number(document["idle_connections"]["rss_kib_per_connection"])
    assert number(document["idle_connections"]["stat_while_open"]["p50"])
    assert [r["key"] for r in document["ratios"]] == [
        "warm_create_p50_project",
        "warm_create_p50_deployed",
        "cold_create_vs_bare_boot",
        "stat_deployed_vs_project",
        "server_cpu_vs_decrypt",
        "forwarder_vs_direct",
        "forwarder_vs_socat",
    ]

"""The pure parts of ``anweddol_actors.bench``: percentiles, summaries, ratios against their
targets, the table and Markdown rendering, a saved run shown again (``bench --from``),
and the deployed-style client against a real server (``serve`` on libvirt's test driver).
"""

from __future__ import annotations

import json
import math
import socket
import threading

import pytest
from commands import ServeChild, run_command, write_test_driver_config

from anweddol_actors.bench import report
from anweddol_actors.bench.deployed_client import DeployedClient, DeployedClientError
from anweddol_actors.bench.idle import measure as measure_idle
from anweddol_actors.bench.journal import measure as measure_journal
from anweddol_actors.bench.server import cpu_seconds, proc_status
from anweddol_actors.bench.stat import decrypt_rate, run_load
from anweddol_actors.bench.stats import percentile, ratio, summary
from anweddol_actors.protocol.crypto import generate_private_key


def test_percentile_interpolates_between_ranks():
    values = [4.0, 1.0, 3.0, 2.0]
    assert percentile(values, 0.0) == 1.0
    assert percentile(values, 1.0) == 4.0
    assert percentile(values, 0.5) == 2.5
    assert percentile([7.0], 0.99) == 7.0
    assert math.isnan(percentile([], 0.5))
    with pytest.raises(ValueError):
        percentile(values, 1.5)


def test_summary_and_ratio():
    figures = summary([0.1, 0.2, 0.3])
    assert figures["n"] == 3 and figures["p50"] == pytest.approx(0.2)
    assert figures["min"] == 0.1 and figures["max"] == 0.3
    assert summary([])["p50"] is None
    assert ratio(1.0, 2.0) == 0.5
    assert ratio(None, 2.0) is None and ratio(1.0, 0) is None


def document() -> dict:
    """A run as run.py writes it, with made-up figures."""
    load = {
        "per_second": 50.0,
        "latency": summary([0.02, 0.03]),
        "vs_decrypt_rate": 0.3,
        "errors": 0,
        "samples": [0.02, 0.03],
    }
    return {
        "schema": 1,
        "version": "test",
        "quick": True,
        "started": "2026-01-01T00:00:00+00:00",
        "host": {"cores": 2, "domain_type": "qemu"},
        "stat": {
            "rsa_decrypt": {"per_second": 150.0, "seconds_each": 0.0066},
            "loads": {
                "project": [{**load, "clients": 1}],
                "deployed": [{**load, "clients": 1, "latency": summary([0.1, 0.12])}],
            },
            "server_cpu": {"count": 10, "seconds_each": 0.019, "vs_decrypt": 2.9},
        },
        "create": {
            "bare_boot": {"summary": summary([5.0])},
            "cold": {"summary": summary([5.4])},
            "destroy": {"summary": summary([0.3])},
            "warm": {"available": False, "reason": "no pool"},
        },
        "forwarder": {
            "size_mib": 64,
            "streams": 4,
            "repeat": 1,
            "paths": {
                name: {
                    "mib_s_1_stream": speed,
                    "mib_s_4_streams": speed,
                    "setup": summary([0.0005]),
                }
                for name, speed in (("direct", 1000.0), ("relay", 700.0), ("socat", 300.0))
            },
            "relay_vs_direct": 0.7,
            "relay_vs_socat": 7 / 3,
        },
        "errors": {"journal": "OSError: disk full"},
    }


def test_ratios_against_targets():
    by_key = {r["key"]: r for r in report.ratios(document())}
    assert by_key["cold_create_vs_bare_boot"]["value"] == pytest.approx(1.08)
    assert by_key["cold_create_vs_bare_boot"]["met"] is True
    assert by_key["stat_deployed_vs_project"]["value"] == pytest.approx(0.11 / 0.025)
    assert by_key["stat_deployed_vs_project"]["met"] is False
    assert by_key["server_cpu_vs_decrypt"]["met"] is False
    assert by_key["forwarder_vs_direct"]["met"] is True
    assert by_key["forwarder_vs_socat"]["met"] is True
    # Warm was not available: not measured, neither met nor missed.
    assert by_key["warm_create_p50_project"] == {
        **by_key["warm_create_p50_project"],
        "value": None,
        "met": None,
    }


def test_render_text_and_markdown():
    text = report.render(document())
    assert "STAT (baseline: RSA-4096 OAEP decrypt 150/s" in text
    assert "warm CREATE" in text and "not available" in text
    assert "MISSED" in text and "met" in text
    assert "journal" in text and "disk full" in text  # a failed section is shown
    markdown = report.render(document(), markdown=True)
    assert "| client | clients | STAT/s |" in markdown
    assert "|---|---|" in markdown


def test_bench_from_saved_json(tmp_path):
    saved = tmp_path / "run.json"
    saved.write_text(json.dumps(document()))
    result = run_command("bench", "--from", str(saved), "--markdown")
    assert result.returncode == 0, result.stderr
    assert "**Targets**" in result.stdout
    missing = run_command("bench", "--from", str(tmp_path / "nothing.json"))
    assert missing.returncode == 2
    assert "cannot read" in missing.stderr


def test_journal_against_raw_sqlite(tmp_path):
    figures = measure_journal(0.2, folder=tmp_path)
    assert figures["transitions_per_second"] > 0 and figures["raw_sqlite_per_second"] > 0
    assert list(tmp_path.iterdir()) == []  # its files are removed


def test_proc_figures_of_this_process():
    import os

    mine = proc_status(os.getpid())
    assert mine["threads"] >= 1 and mine["rss_kib"] > 0 and mine["fds"] > 0
    assert cpu_seconds(os.getpid()) > 0


def test_run_load_counts_errors():
    calls = iter(range(1000000))

    def flaky() -> dict:
        return {"success": next(calls) % 2 == 0}

    load = run_load(flaky, 2, 0.2)
    assert load["requests"] > 0 and load["errors"] > 0
    assert len(load["samples"]) == load["requests"]


def test_decrypt_rate():
    rate = decrypt_rate(generate_private_key(2048), 0.1)
    assert rate["per_second"] > 0
    assert rate["seconds_each"] == pytest.approx(1 / rate["per_second"])


@pytest.fixture
def test_driver_server(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = write_test_driver_config(tmp_path, server=f"  listen_port: {port}\n")
    child = ServeChild("-c", str(config))
    try:
        child.wait_for_line(r"serving on", timeout=60)
        yield port, child.process.pid
    finally:
        assert child.stop() == 0


def test_deployed_client_against_serve(test_driver_server):
    """STAT, then a DESTROY of an unknown container: the server's answers, read exactly."""
    port, _pid = test_driver_server
    key = generate_private_key(2048)
    client = DeployedClient("127.0.0.1", port, key, timeout=30)
    stat = client.stat()
    assert stat["success"] is True and isinstance(stat["data"]["uptime"], int)
    refused = client.destroy("3f2b8c1e-9d4a-4f6b-8e2c-1a2b3c4d5e6f", "a" * 255)
    assert refused["success"] is False and refused["message"].startswith("Bad authentication")
    # Concurrent clients each get their own session.
    results: list[dict] = []
    threads = [threading.Thread(target=lambda: results.append(client.stat())) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert [r["success"] for r in results] == [True] * 4


def test_idle_connections_section(test_driver_server):
    """The idle-connection section against a real server: its figures, and every
    connection it opened closed again."""
    port, pid = test_driver_server
    client = DeployedClient("127.0.0.1", port, generate_private_key(2048), timeout=30)
    figures = measure_idle(pid, port, 10, client.stat)
    assert figures["held"] == 10
    assert figures["with_connections"]["fds"] >= figures["before"]["fds"] + 10
    assert figures["stat_while_open"]["n"] == 20
    assert proc_status(pid)["fds"] < figures["with_connections"]["fds"]


def test_deployed_client_connection_refused():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(DeployedClientError, match="STAT to 127.0.0.1"):
        DeployedClient("127.0.0.1", port, generate_private_key(2048), timeout=2).stat()


def test_bench_command_on_the_test_driver(tmp_path):
    """The command end to end where nothing boots: STAT with both clients and the idle
    connections against a `serve` child on libvirt's test driver; JSON and table written,
    the temporary folder gone."""
    out = tmp_path / "run.json"
    before = {p.name for p in tmp_path.parent.glob("anweddol-bench-*")}
    result = run_command(
        "bench",
        "--quick",
        "--uri",
        "test:///default",
        "--only",
        "stat",
        "idle_connections",
        "--json",
        str(out),
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "STAT (baseline: RSA-4096 OAEP decrypt" in result.stdout
    document = json.loads(out.read_text())
    assert document["errors"] == {} and document["host"]["domain_type"] == "test"
    assert [load["clients"] for load in document["stat"]["loads"]["deployed"]] == [1, 8, 64]
    assert document["idle_connections"]["held"] == 100
    assert "create" not in document or not document["create"].get("cold")
    after = {p.name for p in tmp_path.parent.glob("anweddol-bench-*")}
    assert after <= before  # the server's folder is removed

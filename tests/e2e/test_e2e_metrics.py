"""The metrics after a real CREATE, an SSH login through the forwarder and a DESTROY:
``/metrics`` scraped over HTTP from the web front end's own server, parsed by the
Prometheus client's parser."""

from __future__ import annotations

import httpx
import pytest
from probes import ssh_run
from prometheus_client.parser import text_string_to_metric_families
from serverharness import serve_web, wait_for

from anweddol_actors.client import Client
from anweddol_actors.metrics import CREATE_PHASES

pytestmark = pytest.mark.vm


def scrape(url: str) -> dict:
    """``{(sample name, sorted labels): value}`` of one scrape."""
    response = httpx.get(url, timeout=30)
    assert response.status_code == 200
    found = {}
    for family in text_string_to_metric_families(response.text):
        assert family.name.startswith("anweddol_")
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: dict, name: str, **labels: str) -> float:
    return found[(name, tuple(sorted(labels.items())))]


def transitions(found: dict, kind: str, trigger: str) -> float:
    return value(found, "anweddol_transitions_total", kind=kind, trigger=trigger)


def test_metrics_after_create_login_destroy(make_vm_server):
    running = make_vm_server()
    web = serve_web(running.engine, enable_metrics=True)
    try:
        url = web.url + "/metrics"
        client = Client(*running.address, timeout=240)
        created = client.create()
        assert created["success"] is True, created
        data = created["data"]

        # ``serve`` is journalled once the response is delivered, just after the client
        # has read it.
        wait_for(
            lambda: value(scrape(url), "anweddol_containers", state="started_serving") == 1,
            30,
            "the container counted as serving",
        )
        found = scrape(url)
        assert value(found, "anweddol_create_duration_seconds_count") == 1
        total = value(found, "anweddol_create_duration_seconds_sum")
        laps = 0.0
        for phase in CREATE_PHASES:
            count = value(found, "anweddol_create_phase_duration_seconds_count", phase=phase)
            assert count == 1, phase
            laps += value(found, "anweddol_create_phase_duration_seconds_sum", phase=phase)
        assert laps == pytest.approx(total)
        # The guest's boot is the phase a VM cannot skip.
        assert value(found, "anweddol_create_phase_duration_seconds_sum", phase="boot") > 0
        for kind, trigger in (
            ("container", "create"),
            ("container", "start"),
            ("container", "administer"),
            ("container", "serve"),
            ("endpoint_shell", "open"),
            ("endpoint_shell", "close"),
            ("forwarder", "create"),
            ("forwarder", "start"),
        ):
            assert transitions(found, kind, trigger) == 1, (kind, trigger)

        port = data["container_listen_port"]
        username = ssh_run(port, data["container_username"], data["container_password"], "id -un")
        assert username == data["container_username"]
        found = scrape(url)
        assert value(found, "anweddol_forwarder_connections_total") >= 1
        bytes_in = value(found, "anweddol_forwarder_bytes_total", direction="client_to_guest")
        bytes_out = value(found, "anweddol_forwarder_bytes_total", direction="guest_to_client")
        assert bytes_in > 0 and bytes_out > 0
        assert value(found, "anweddol_forwarders") == 1

        destroyed = client.destroy(data["container_uuid"], data["client_token"])
        assert destroyed["success"] is True, destroyed
        found = scrape(url)
        assert value(found, "anweddol_containers", state="started_serving") == 0
        assert transitions(found, "container", "destroy") == 1
        assert transitions(found, "forwarder", "destroy") == 1
        # The ended forwarder's counts stay in the totals.
        assert value(found, "anweddol_forwarder_bytes_total", direction="client_to_guest") >= (
            bytes_in
        )
        assert value(found, "anweddol_forwarder_bytes_total", direction="guest_to_client") >= (
            bytes_out
        )
        assert value(found, "anweddol_forwarders") == 0
        assert value(found, "anweddol_forwarder_connections_open") == 0
        for verb in ("CREATE", "DESTROY"):
            wait_for(
                lambda verb=verb: (
                    value(
                        scrape(url),
                        "anweddol_requests_total",
                        transport="tcp",
                        verb=verb,
                        outcome="OK",
                    )
                    == 1
                ),
                10,
                f"the {verb} request counted",
            )
        assert value(scrape(url), "anweddol_runtime_errors_total", kind="container") == 0
    finally:
        web.stop()

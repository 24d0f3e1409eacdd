"""Each metric moves when its cause happens, on a real server over real sockets (the
project's client over TCP, ``/metrics`` over HTTP), and two servers count apart."""

from __future__ import annotations

from collections import Counter

from prometheus_client.parser import text_string_to_metric_families
from promtext import samples, scrape, value
from serverharness import wait_for

from anweddol_actors.metrics import CONTAINER_STATES, CREATE_PHASES
from anweddol_actors.policy.ip_filter import IpFilter


def requests(found: dict, verb: str, outcome: str, transport: str = "tcp") -> float:
    return found.get(
        (
            "anweddol_requests_total",
            (("outcome", outcome), ("transport", transport), ("verb", verb)),
        ),
        0.0,
    )


def test_every_family_is_parsed_and_named_anweddol(make_server, serve_web, client_for):
    running = make_server()
    web = serve_web(running.engine)
    client_for(running).stat()
    response = scrape(web)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    families = list(text_string_to_metric_families(response.text))
    names = {family.name for family in families}
    assert names >= {
        "anweddol_containers",
        "anweddol_available_slots",
        "anweddol_uptime_seconds",
        "anweddol_requests",
        "anweddol_request_duration_seconds",
        "anweddol_transitions",
        "anweddol_create_duration_seconds",
        "anweddol_create_phase_duration_seconds",
        "anweddol_forwarder_bytes",
        "anweddol_forwarder_connections",
        "anweddol_forwarder_connections_refused",
        "anweddol_forwarder_connections_open",
        "anweddol_runtime_errors",
    }
    for family in families:
        assert family.name.startswith("anweddol_"), family.name
        for sample in family.samples:
            assert sample.name.startswith("anweddol_"), sample.name


def test_requests_by_verb_and_outcome(make_server, serve_web, client_for):
    # No slot: a CREATE is refused at once ("Unavailable"), no VM is involved.
    running = make_server(max_containers=0)
    web = serve_web(running.engine)
    client = client_for(running)
    before = samples(scrape(web).text)
    assert requests(before, "STAT", "OK") == 0
    client.stat()
    client.stat()
    assert client.create()["message"].startswith("Unavailable")
    assert client.request("NOSUCHVERB")["message"].startswith("Bad request")
    # The request line is written as the session ends, just after the response is sent.
    wait_for(lambda: requests(samples(scrape(web).text), "other", "Bad request") == 1)
    found = samples(scrape(web).text)
    assert requests(found, "STAT", "OK") == 2
    assert requests(found, "CREATE", "Unavailable") == 1
    # A verb nobody handles is never a label of its own: the series stay bounded.
    assert not any("NOSUCHVERB" in str(labels) for _name, labels in found)
    count = value(found, "anweddol_request_duration_seconds_count", transport="tcp", verb="STAT")
    assert count == 2
    assert value(found, "anweddol_request_duration_seconds_sum", transport="tcp", verb="STAT") > 0
    assert value(found, "anweddol_available_slots") == 0
    assert value(found, "anweddol_uptime_seconds") > 0
    for state in CONTAINER_STATES:
        assert value(found, "anweddol_containers", state=state) == 0
    # A refused CREATE is no delivered CREATE: its latency is not observed.
    assert value(found, "anweddol_create_duration_seconds_count") == 0
    for phase in CREATE_PHASES:
        assert value(found, "anweddol_create_phase_duration_seconds_count", phase=phase) == 0


def test_a_custom_verb_is_counted_by_its_name(make_server, serve_web, client_for):
    running = make_server()

    def ping(client_instance):
        client_instance.sendResponse(True, "OK", {})

    def chatty(client_instance):
        # A message of the handler's own: not a label value (outcome "other").
        client_instance.sendResponse(True, "Pong, and a message of my own", {})

    running.server.setRequestHandler("PING", ping)
    running.server.setRequestHandler("CHATTY", chatty)
    web = serve_web(running.engine)
    client = client_for(running)
    client.request("PING")
    client.request("CHATTY")
    wait_for(lambda: requests(samples(scrape(web).text), "CHATTY", "other") == 1)
    assert requests(samples(scrape(web).text), "PING", "OK") == 1


def test_transitions_counted_as_the_journal_holds_them(make_server, serve_web, client_for):
    running = make_server(max_containers=0)
    web = serve_web(running.engine)
    client = client_for(running)
    client.stat()
    client.create()
    wait_for(lambda: requests(samples(scrape(web).text), "CREATE", "Unavailable") == 1)
    journal = running.engine.journal
    wait_for(
        lambda: all(r["dest"] == "destroyed" for r in journal.history(kind="session")[-1:]),
        what="the last session ended",
    )
    journalled = Counter((row["kind"], row["trigger"]) for row in journal.history())
    found = samples(scrape(web).text)
    counted = {
        (dict(labels)["kind"], dict(labels)["trigger"]): count
        for (name, labels), count in found.items()
        if name == "anweddol_transitions_total" and count
    }
    assert counted == dict(journalled)
    assert counted[("session", "request")] == 2


def test_runtime_errors_by_kind(make_server, serve_web, client_for):
    running = make_server()

    def broken(context, data):
        raise RuntimeError("a handler that fails")

    running.server.on_client_closed(broken)
    web = serve_web(running.engine)
    client_for(running).stat()
    wait_for(lambda: running.engine.dispatch.runtime_errors == 1)
    found = samples(scrape(web).text)
    assert value(found, "anweddol_runtime_errors_total", kind="session") == 1
    assert value(found, "anweddol_runtime_errors_total", kind="container") == 0


def test_two_servers_in_one_process_count_apart(make_server, serve_web, client_for):
    first, second = make_server(), make_server()
    web_first, web_second = serve_web(first.engine), serve_web(second.engine)
    client_for(first).stat()
    wait_for(lambda: requests(samples(scrape(web_first).text), "STAT", "OK") == 1)
    found = samples(scrape(web_second).text)
    assert requests(found, "STAT", "OK") == 0
    assert value(found, "anweddol_transitions_total", kind="session", trigger="request") == 0
    assert first.engine.context.metrics.registry is not second.engine.context.metrics.registry


def test_metrics_refused_to_an_address_the_ip_filter_denies(make_server, serve_web):
    running = make_server()
    running.engine.settings.ip_allows = IpFilter(True, [], ["127.0.0.1"]).allows
    web = serve_web(running.engine)
    refused = scrape(web, local_address="127.0.0.1")
    assert refused.status_code == 403
    assert refused.json() == {"success": False, "message": "Refused request", "data": {}}
    allowed = scrape(web, local_address="127.0.0.2")
    assert allowed.status_code == 200
    assert "anweddol_uptime_seconds" in allowed.text


def test_no_metrics_route_when_disabled(make_server, serve_web):
    running = make_server()
    web = serve_web(running.engine, enable_metrics=False)
    response = scrape(web)
    # /metrics is then only the API's POST /{verb} path (a custom verb METRICS): a GET
    # there is a wrong method, answered in the normalized shape, and no metric is shown.
    assert response.status_code == 405
    assert response.json()["success"] is False
    assert "anweddol_" not in response.text

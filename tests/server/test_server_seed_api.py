"""The seed's ServerInterface over real loopback sockets: verbs, events, handlers, modes."""

from __future__ import annotations

import threading

import pytest
from rawpeer import RawPeer, closed_by_peer
from serverharness import record_events, wait_for

import anweddol_actors
from anweddol_actors.client import Client
from anweddol_actors.core import server as seed
from anweddol_actors.core.server import ServerInterface

record_all_events = record_events


def names(seen) -> list[str]:
    return [event for event, _, _ in seen]


def test_constants_have_the_seed_values():
    assert seed.DEFAULT_SERVER_BIND_ADDRESS == ""
    assert seed.DEFAULT_SERVER_LISTEN_PORT == 6150
    assert seed.DEFAULT_CLIENT_TIMEOUT == 10
    assert seed.DEFAULT_DIE_ON_ERROR is False
    assert seed.DEFAULT_PASSIVE_MODE is False
    assert seed.DEFAULT_ASYNCHRONOUS is False
    assert (seed.REQUEST_VERB_CREATE, seed.REQUEST_VERB_DESTROY, seed.REQUEST_VERB_STAT) == (
        "CREATE",
        "DESTROY",
        "STAT",
    )
    assert seed.RESPONSE_MSG_BAD_AUTH == "Bad authentication"
    assert seed.RESPONSE_MSG_INTERNAL_ERROR == "Internal error"
    assert seed.RESPONSE_MSG_UNSPECIFIED == "Unspecified"
    events = [name for name in dir(seed) if name.startswith("EVENT_")]
    assert len(events) == 19
    for name in events:
        value = getattr(seed, name)
        assert value.startswith("on_") and callable(getattr(ServerInterface, value))
    assert (
        seed.CONTEXT_NORMAL_PROCESS,
        seed.CONTEXT_AUTOMATIC_ACTION,
        seed.CONTEXT_DEFERRED_CALL,
        seed.CONTEXT_HANDLE_END,
        seed.CONTEXT_ERROR,
    ) == (20, 21, 22, 23, 24)


def test_stat_round_trip_fires_the_session_events_in_order(make_server):
    running = make_server(start=False)
    seen = record_all_events(running.server)
    running.start()
    response = Client(*running.address, timeout=5).stat()
    assert response["success"] is True and response["message"] == "OK"
    assert response["data"]["version"] == anweddol_actors.__version__
    assert isinstance(response["data"]["uptime"], int) and response["data"]["uptime"] >= 0
    wait_for(lambda: "on_client_closed" in names(seen))
    assert names(seen) == [
        "on_server_started",
        "on_connection_accepted",
        "on_client_initialized",
        "on_request",
        "on_client_closed",
    ]
    contexts = {event: context for event, context, _ in seen}
    assert contexts["on_client_closed"] == seed.CONTEXT_HANDLE_END
    assert contexts["on_request"] == seed.CONTEXT_NORMAL_PROCESS
    accepted = dict((e, d) for e, _, d in seen)["on_connection_accepted"]
    assert set(accepted) == {"client_socket"}
    request_data = dict((e, d) for e, _, d in seen)["on_request"]
    client = request_data["client_instance"]
    assert client.getStoredRequest()["verb"] == "STAT"
    assert client.getIP() == "127.0.0.1" and len(client.getID()) == 7
    assert client.isClosed()
    running.stop()
    assert names(seen)[-1] == "on_server_stopped"


def test_session_transitions_are_journalled(make_server):
    running = make_server()
    Client(*running.address, timeout=5).stat()
    journal = running.server.engine.journal
    wait_for(lambda: any(r["dest"] == "destroyed" for r in journal.history(kind="session")))
    triggers = [row["trigger"] for row in journal.history(kind="session")]
    assert triggers == ["start", "handshake", "request", "close", "destroy"]


def test_malformed_request_answers_bad_request_with_cerberus_errors(make_server, client_key):
    running = make_server(start=False)
    seen = record_all_events(running.server)
    running.start()
    peer = RawPeer(running.address, client_key)
    peer.handshake()
    response = peer.request("stat")  # lowercase: fails ^[A-Z]{1,}$
    assert response["success"] is False
    assert response["message"].startswith("Bad request")
    peer.close()
    wait_for(lambda: "on_client_closed" in names(seen))
    errors = dict((e, d) for e, _, d in seen)["on_malformed_request"]["errors_dict"]
    assert "verb" in errors
    assert "on_request" not in names(seen)


def test_unhandled_verb(make_server, client_key):
    running = make_server(start=False)
    seen = record_all_events(running.server)
    running.start()
    response = Client(*running.address, timeout=5).request("NOSUCHVERB")
    assert response == {"success": False, "message": "Bad request (Unhandled verb)", "data": {}}
    wait_for(lambda: "on_client_closed" in names(seen))
    assert "on_unhandled_verb" in names(seen)


def test_custom_verb_gets_the_client_instance(make_server):
    running = make_server(start=False)
    calls = []

    def hello(client_instance):
        calls.append(client_instance.getStoredRequest())
        client_instance.sendResponse(True, "OK", {"greeting": "hello"})

    running.server.setRequestHandler("HELLO", hello)
    assert running.server.getRequestHandler("HELLO") is hello
    running.start()
    response = Client(*running.address, timeout=5).request("HELLO", {"who": "me"})
    assert response["data"] == {"greeting": "hello"}
    assert calls[0]["parameters"]["who"] == "me"


def test_runtime_error_in_a_handler_answers_internal_error_and_counts(make_server):
    running = make_server(start=False)
    seen = record_all_events(running.server)

    def broken(client_instance):
        raise ValueError("boom")

    running.server.setRequestHandler("BROKEN", broken)
    running.start()
    assert running.server.getRuntimeStatistics()[1] == 0
    response = Client(*running.address, timeout=5).request("BROKEN")
    assert response["message"] == "Internal error" and response["success"] is False
    wait_for(lambda: "on_runtime_error" in names(seen))
    data = dict((e, d) for e, _, d in seen)["on_runtime_error"]
    assert isinstance(data["exception_object"], ValueError)
    assert "boom" in data["traceback"] and "client_instance" in data
    is_running, errors, uptime = running.server.getRuntimeStatistics()
    assert is_running is True and errors == 1 and uptime >= 0
    # The server still serves the next client.
    assert Client(*running.address, timeout=5).stat()["success"] is True


def test_destroy_needs_both_credentials(make_server):
    running = make_server(start=False)
    seen = record_all_events(running.server)
    running.start()
    journal = running.server.engine.journal
    container_uuid = "6a0f3c1e-94a4-4a38-9b6c-2f0d6d1d6a10"
    token = "a" * 255
    journal.store_credentials(container_uuid, token)
    client = Client(*running.address, timeout=5)
    wrong = client.destroy(container_uuid, "b" * 255)
    assert wrong["message"] == "Bad authentication" and wrong["success"] is False
    wait_for(lambda: "on_authentication_error" in names(seen))
    other_uuid = client.destroy("0a0f3c1e-94a4-4a38-9b6c-2f0d6d1d6a10", token)
    assert other_uuid["message"] == "Bad authentication"
    assert journal.verify_credentials(container_uuid, token)
    right = client.destroy(container_uuid, token)
    assert right["success"] is True and right["message"] == "OK"
    assert not journal.verify_credentials(container_uuid, token)


def test_handler_closing_the_client_ends_the_handling(make_server, client_key):
    running = make_server(start=False)
    seen = record_all_events(running.server)

    @running.server.on_request
    def refuse(context, data):
        seen.append(("refuse", context, data))
        data["client_instance"].closeConnection()

    running.start()
    peer = RawPeer(running.address, client_key)
    peer.handshake()
    peer.send_frame(b'{"verb": "STAT", "parameters": {}}')
    assert closed_by_peer(peer.sock)
    peer.close()
    wait_for(lambda: "on_client_closed" in names(seen))
    assert "refuse" in names(seen)


def test_connection_accepted_handler_can_refuse_a_client(make_server, client_key):
    running = make_server(start=False)

    @running.server.on_connection_accepted
    def refuse(context, data):
        data["client_socket"].close()

    running.start()
    peer = RawPeer(running.address, client_key)
    assert closed_by_peer(peer.sock)
    peer.close()
    journal = running.server.engine.journal
    wait_for(lambda: any(r["dest"] == "destroyed" for r in journal.history(kind="session")))
    assert [r["trigger"] for r in journal.history(kind="session")] == ["start", "close", "destroy"]


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_handle_client(make_server, client_key, server_rsa, asynchronous):
    """handleClient with a ClientInstance the caller accepted and keyed itself."""
    import socket

    from anweddol_actors.core.client import ClientInstance

    running = make_server()
    listener = socket.create_server(("127.0.0.1", 0))
    address = listener.getsockname()
    result = {}

    def peer_side():
        peer = RawPeer(address, client_key)
        peer.handshake()
        result["response"] = peer.request("STAT")
        peer.close()

    thread = threading.Thread(target=peer_side)
    thread.start()
    sock, _ = listener.accept()
    client = ClientInstance(sock, 5, server_rsa)
    running.server.handleClient(client, asynchronous=asynchronous)
    thread.join(timeout=10)
    listener.close()
    assert result["response"]["success"] is True
    wait_for(client.isClosed)


def test_passive_mode(server_rsa):
    server = ServerInterface(passive_mode=True, settings=_memory_settings())
    try:
        assert server.getRuntimeRSAWrapper() is None
        server.startServer()  # returns at once in passive mode
        assert server.isRunning() and server.listen_address == ("", 0)
        stat = server.executeRequestHandler(seed.REQUEST_VERB_STAT)
        assert stat["success"] is True and "uptime" in stat["data"]
        denied = server.executeRequestHandler(
            seed.REQUEST_VERB_DESTROY,
            data={"container_uuid": "6a0f3c1e-94a4-4a38-9b6c-2f0d6d1d6a10", "client_token": "x"},
        )
        assert denied["message"] == "Bad authentication"

        @server.on_unhandled_verb
        def answer(context, data):
            return {"context": context, "data": data}

        value = server.triggerEvent(seed.EVENT_UNHANDLED_VERB, seed.CONTEXT_DEFERRED_CALL, {"k": 1})
        assert value == {"context": seed.CONTEXT_DEFERRED_CALL, "data": {"k": 1}}
        with pytest.raises(RuntimeError):
            server.triggerEvent("on_nothing", seed.CONTEXT_DEFERRED_CALL, {})
        with pytest.raises(RuntimeError):
            server.setEventHandler("on_nothing", print)
    finally:
        server.stopServer()
        server.close()
    assert not server.isRunning()


def test_trigger_event_when_not_passive_returns_none(make_server):
    running = make_server()
    running.server.setEventHandler(seed.EVENT_REQUEST, lambda context, data: 42)
    assert running.server.triggerEvent(seed.EVENT_REQUEST, seed.CONTEXT_DEFERRED_CALL, {}) is None
    assert running.server.getEventHandler(seed.EVENT_REQUEST)(context=0, data={}) == 42


def test_with_statement_stops_the_server(server_rsa):
    with ServerInterface(
        "/nonexistent.iso",
        "127.0.0.1",
        0,
        2,
        runtime_rsa_wrapper=server_rsa,
        settings=_memory_settings(),
    ) as server:
        thread = threading.Thread(target=server.startServer, daemon=True)
        thread.start()
        wait_for(server.isRunning)
        assert Client("127.0.0.1", server.listen_address[1], timeout=5).stat()["success"]
    thread.join(timeout=30)
    assert not thread.is_alive() and not server.isRunning()
    server.close()


def test_create_failure_unwinds_and_answers_internal_error(make_server):
    """CREATE on libvirt's test driver: the domain 'starts' but no guest ever answers SSH,
    so the CREATE fails after domain start and must unwind it, journalled, with the
    stop event in the error context."""
    running = make_server(start=False, ready_timeout=0.5)
    seen = record_all_events(running.server)
    running.start()
    response = Client(*running.address, timeout=20).create()
    assert response["success"] is False and response["message"] == "Internal error"
    wait_for(lambda: "on_client_closed" in names(seen))
    order = [n for n in names(seen) if n.startswith("on_container") or n == "on_runtime_error"]
    assert order == [
        "on_container_created",
        "on_container_domain_started",
        "on_container_domain_stopped",
        "on_runtime_error",
    ]
    stopped = [c for e, c, _ in seen if e == "on_container_domain_stopped"]
    assert stopped == [seed.CONTEXT_ERROR]
    journal = running.server.engine.journal
    rows = journal.history(kind="container")
    assert [r["trigger"] for r in rows] == ["create", "start", "fail", "destroy"]
    assert running.server.engine.context.hypervisors.get().list_marked() == []
    assert journal.live_entities(kind="container") == []


def test_create_refused_when_capacity_is_reached(make_server):
    running = make_server(max_containers=0)
    response = Client(*running.address, timeout=5).create()
    assert response["success"] is False
    assert response["message"].startswith("Unavailable (")


def test_stop_server_is_idempotent_and_statistics_reset(make_server):
    running = make_server()
    running.stop()
    assert running.server.getRuntimeStatistics()[0] is False
    running.server.stopServer()  # a second stop is a no-op


def _memory_settings():
    from anweddol_actors.engine.settings import Settings

    return Settings(database=":memory:", libvirt_uri="test:///default")


def test_transitions_are_durable_before_their_events_fire(make_server):
    """Inside each handler, the transition the event reports is already recorded: in the
    journal, or, before the session's first valid request, held by its lifecycle (written
    with the request's row; docs/architecture.md, "The journal")."""
    running = make_server(start=False, ready_timeout=0.5)
    journal = running.server.engine.journal
    seen: dict[str, str | None] = {}

    def state_of_session(data):
        rows = journal.live_entities(kind="session")
        # The one live session is this client's (the test runs one client at a time).
        assert len(rows) == 1, rows
        return rows[0]["state"]

    def held_state(data):
        (session,) = running.server.engine._sessions
        assert journal.live_entities(kind="session") == []  # held, not yet written
        assert session.lifecycle.pending == 2  # start, handshake
        return session.lifecycle.state

    @running.server.on_client_initialized
    def initialized(context, data):
        seen["on_client_initialized"] = held_state(data)

    @running.server.on_request
    def request(context, data):
        seen["on_request"] = state_of_session(data)

    @running.server.on_container_domain_started
    def started(context, data):
        uid = data["container_instance"].getUUID()
        seen["on_container_domain_started"] = journal.entity(uid)["state"]

    @running.server.on_container_domain_stopped
    def stopped(context, data):
        uid = data["container_instance"].getUUID()
        seen["on_container_domain_stopped"] = journal.entity(uid)["state"]

    running.start()
    Client(*running.address, timeout=20).create()
    wait_for(lambda: "on_container_domain_stopped" in seen)
    assert seen == {
        "on_client_initialized": "started_ready",
        "on_request": "started_handling",
        "on_container_domain_started": "started_booting",
        "on_container_domain_stopped": "destroyed",
    }


def test_a_raising_close_handler_is_counted_once_and_the_session_still_ends(make_server):
    running = make_server(start=False)
    calls = []

    @running.server.on_client_closed
    def broken(context, data):
        calls.append(context)
        raise RuntimeError("handler bug")

    running.start()
    assert Client(*running.address, timeout=5).stat()["success"] is True
    journal = running.server.engine.journal
    wait_for(lambda: any(r["dest"] == "destroyed" for r in journal.history(kind="session")))
    assert calls == [seed.CONTEXT_HANDLE_END]
    assert running.server.getRuntimeStatistics()[1] == 1
    assert journal.live_entities(kind="session") == []

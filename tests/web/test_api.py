"""The REST API over a real socket: the verbs, the home, /openapi.json, the HTTP statuses
of what is refused before a session, and HTTP requests as journalled sessions firing the
seed's events."""

from __future__ import annotations

import logging
import threading

import httpx
from serverharness import record_events
from webharness import live_sessions, wait_quiet

from anweddol_actors import __version__
from anweddol_actors.cli.serve import install_policies
from anweddol_actors.config import config_from_mapping
from anweddol_actors.policy.access_tokens import AccessTokenStore
from anweddol_actors.protocol.messages import TOKEN_REGEX, UUID4_REGEX


def post(web, path: str, body: bytes | None = None, **kwargs) -> httpx.Response:
    return httpx.post(web.url + path, content=body, timeout=10, **kwargs)


def test_stat_answers_like_the_tcp_server(make_web):
    web = make_web()
    response = post(web, "/stat")
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True and body["message"] == "OK"
    assert body["data"]["version"] == __version__ and body["data"]["available"] == 0
    # A JSON body with parameters works the same; so does an upper-case path.
    assert post(web, "/STAT", b'{"x": 1}').json()["message"] == "OK"


def test_refused_create_is_200_with_success_false(make_web):
    web = make_web()
    response = post(web, "/create", b"{}")
    assert response.status_code == 200
    assert response.json() == {
        "success": False,
        "message": "Unavailable (The maximum amount of running containers is reached)",
        "data": {},
    }


def test_custom_verbs_any_case(make_web):
    def setup(server):
        def ping(client_instance, **kwargs):
            parameters = client_instance.getStoredRequest()["parameters"]
            assert client_instance.getSocketDescriptor() is None
            client_instance.sendResponse(True, "OK", {"echo": parameters.get("say")})

        server.setRequestHandler("PING", ping)

    web = make_web(setup)
    # Registered before the app was built: its own route; and any case of it.
    assert post(web, "/ping", b'{"say": "hi"}').json()["data"] == {"echo": "hi"}
    assert post(web, "/PiNg", b'{"say": "ho"}').json()["data"] == {"echo": "ho"}
    # Registered after: reached through POST /{verb}.
    web.server.setRequestHandler(
        "LATE", lambda client_instance, **kw: client_instance.sendResponse(True, "OK", {"l": 1})
    )
    assert post(web, "/late").json() == {"success": True, "message": "OK", "data": {"l": 1}}
    # Nobody handles it: the session's unhandled path, as over TCP.
    assert post(web, "/nothing").json() == {
        "success": False,
        "message": "Bad request (Unhandled verb)",
        "data": {},
    }


def test_home_and_openapi(make_web):
    web = make_web(lambda server: server.setRequestHandler("PING", lambda **kw: None))
    home = httpx.get(web.url + "/", timeout=10).json()
    assert home["name"] == "anweddol_actors" and home["version"] == __version__
    assert home["verbs"] == ["CREATE", "DESTROY", "PING", "STAT"]
    assert home["links"] == {"openapi": "/openapi.json"}
    spec = httpx.get(web.url + "/openapi.json", timeout=10).json()
    assert {"/stat", "/create", "/destroy", "/ping", "/{verb}", "/"} <= set(spec["paths"])
    destroy = spec["paths"]["/destroy"]["post"]
    schema = destroy["requestBody"]["content"]["application/json"]["schema"]
    # The engine's own patterns, not a copy.
    assert schema["properties"]["container_uuid"]["pattern"] == UUID4_REGEX
    assert schema["properties"]["client_token"]["pattern"] == TOKEN_REGEX
    assert schema["maxProperties"] == 32
    ok = destroy["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/NormalizedResponse"}
    assert {"403", "404", "405", "413", "429", "503"} <= set(destroy["responses"])


def test_http_requests_are_journalled_sessions_with_events(make_web, caplog):
    seen: list = []
    web = make_web(lambda server: seen.extend([record_events(server)]))
    events = seen[0]
    with caplog.at_level(logging.INFO, logger="anweddol_actors.requests"):
        assert post(web, "/stat").json()["success"] is True
        assert post(web, "/stat", b"{nope").json()["message"].startswith("Bad request")
        assert post(web, "/unknown").json()["message"] == "Bad request (Unhandled verb)"
        wait_quiet()
    names = [name for name, _, _ in events]
    assert names.count("on_client_initialized") == 3
    assert names.count("on_request") == 2  # the malformed one never became a request
    assert names.count("on_malformed_request") == 1
    assert names.count("on_unhandled_verb") == 1
    assert names.count("on_client_closed") == 3
    assert "on_connection_accepted" not in names  # no socket of its own to hand over
    instance = next(data["client_instance"] for n, _, data in events if n == "on_request")
    assert instance.getIP() == "127.0.0.1" and instance.getSocketDescriptor() is None
    # Journalled like TCP sessions, marked as HTTP, and all ended.
    history = web.engine.journal.history(kind="session")
    starts = [row["entity_id"] for row in history if row["trigger"] == "start"]
    assert len(starts) == 3
    for session_id in starts:
        entity = web.engine.journal.entity(session_id, kind="session")
        assert entity["state"] == "destroyed"
        assert entity["data"] == {"peer": "127.0.0.1", "transport": "http"}
    assert [row["trigger"] for row in history if row["entity_id"] == starts[0]] == [
        "start",
        "handshake",
        "request",
        "close",
        "destroy",
    ]
    assert live_sessions(web.engine) == []
    lines = [r for r in caplog.records if r.name == "anweddol_actors.requests"]
    assert [getattr(r, "transport", None) for r in lines] == ["http"] * 3
    assert [r.outcome for r in lines] == ["OK", "Bad request", "Bad request"]


def test_handler_that_closes_without_answering_is_403(make_web):
    def setup(server):
        server.setRequestHandler(
            "SHUT", lambda client_instance, **kw: client_instance.closeConnection()
        )

    web = make_web(setup)
    response = post(web, "/shut")
    assert response.status_code == 403
    assert response.json() == {"success": False, "message": "Refused request", "data": {}}


def test_ip_filter_refuses_with_403_and_no_session(make_web):
    config = config_from_mapping(
        {"ip_filter": {"enabled": True, "denied_ip_list": ["127.0.0.0/8"], "allowed_ip_list": []}}
    )
    holder: list = []
    web = make_web(lambda server: holder.append(install_policies(server, config)))
    try:
        events = record_events(web.server)
        response = post(web, "/stat")
        assert response.status_code == 403
        assert response.json()["message"] == "Refused request"
        assert httpx.get(web.url + "/", timeout=10).status_code == 403
        assert events == []
        assert web.engine.journal.history(kind="session") == []
    finally:
        holder[0].close()


def test_a_forwarded_for_header_does_not_change_the_peer(make_web):
    # The IP filter and the limits judge the socket's peer, never a header the client
    # writes: 127.0.0.1 is denied, and saying it forwards for 127.0.0.5 changes nothing.
    config = config_from_mapping(
        {"ip_filter": {"enabled": True, "denied_ip_list": ["127.0.0.1"], "allowed_ip_list": []}}
    )
    holder: list = []
    web = make_web(lambda server: holder.append(install_policies(server, config)))
    try:
        for header in ("X-Forwarded-For", "Forwarded"):
            value = "127.0.0.5" if header == "X-Forwarded-For" else "for=127.0.0.5"
            response = post(web, "/stat", headers={header: value})
            assert response.status_code == 403, header
        # The other way round: an allowed peer naming the denied address is still allowed.
        with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.5")) as client:
            allowed = client.post(
                web.url + "/stat", timeout=10, headers={"X-Forwarded-For": "127.0.0.1"}
            )
        assert allowed.status_code == 200 and allowed.json()["message"] == "OK"
    finally:
        holder[0].close()


def test_access_tokens_over_http(make_web, tmp_path):
    db = tmp_path / "tokens.sqlite3"
    with AccessTokenStore(db) as store:
        _, token = store.add()
    config = config_from_mapping(
        {"access_token": {"enabled": True, "access_token_database_file_path": str(db)}}
    )
    holder: list = []
    web = make_web(lambda server: holder.append(install_policies(server, config)))
    try:
        missing = post(web, "/stat")
        assert missing.status_code == 200
        assert missing.json()["message"] == "Bad request (Access token is required)"
        wrong = post(web, "/stat", b'{"access_token": "' + b"x" * 124 + b'"}')
        assert wrong.json()["message"] == "Bad authentication (Invalid access token)"
        good = post(web, "/stat", f'{{"access_token": "{token}"}}'.encode())
        assert good.json()["success"] is True
        refused = post(web, "/create", b"{}")
        assert refused.json()["message"] == "Bad request (Access token is required)"
    finally:
        holder[0].close()


def test_connection_limits_shared_with_tcp_give_429(make_web):
    entered, release = threading.Event(), threading.Event()

    def slow(client_instance, **kwargs):
        entered.set()
        release.wait(10)
        client_instance.sendResponse(True, "OK")

    web = make_web(
        lambda server: server.setRequestHandler("SLOW", slow), max_connections_per_address=1
    )
    answers: list = []
    holder = threading.Thread(target=lambda: answers.append(post(web, "/slow")))
    holder.start()
    try:
        assert entered.wait(10)
        crowded = post(web, "/stat")
        assert crowded.status_code == 429
        assert crowded.json()["message"] == "Unavailable (Too many connections)"
        assert web.engine.connection_limits.refused == 1
    finally:
        release.set()
        holder.join(10)
    assert answers[0].json()["success"] is True
    wait_quiet()
    assert web.engine.connection_limits.open == 0
    assert post(web, "/stat").status_code == 200


def test_stopping_engine_gives_503(make_web):
    web = make_web()
    web.running.stop()
    response = post(web, "/stat")
    assert response.status_code == 503
    assert response.json()["message"] == "Unavailable (The server is stopping)"

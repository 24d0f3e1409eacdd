"""The operator's page over a real socket, beside a real server on libvirt's test driver:
its files come from the package, its data has the promised shape and never a secret, its
machines are drawn with the state highlighted, and only the allowed addresses get any of
it."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import pytest
from serverharness import serve_stand_in, serve_web, stand_in_server

import anweddol_actors.web
from anweddol_actors.client import Client
from anweddol_actors.lifecycle.definitions import SPECS
from anweddol_actors.lifecycle.render import HIGHLIGHT
from anweddol_actors.web.server import WebServer

STATIC = Path(anweddol_actors.web.__file__).parent / "static"
# Loopback ports for the stand-in containers' forwarders: away from the other suites'.
FORWARDER_PORTS = (43200, 43299)
REFUSED = {"success": False, "message": "Refused request", "data": {}}
SVG = "{http://www.w3.org/2000/svg}"
TOKEN = "T0k3n" * 51  # 255 characters, as the engine's client tokens
PASSWORD = "s3cr3t-Passw0rd-of-the-client"


@pytest.fixture
def running(rsa, tmp_path):
    """A started server on test:///default (no VM); stopped at teardown."""
    running = stand_in_server(
        rsa, tmp_path, FORWARDER_PORTS, database=str(tmp_path / "journal.sqlite3"), max_lifetime=600
    ).start()
    yield running
    if running.thread.is_alive():
        running.stop()


@pytest.fixture
def web(running):
    """The page of ``running``, for the default list (loopback)."""
    served = serve_web(running.engine, enable_ui=True)
    yield served
    served.stop()


def get(web: WebServer, path: str, source: str | None = None, **options) -> httpx.Response:
    """GET over a fresh connection, from the loopback address ``source`` when given."""
    transport = httpx.HTTPTransport(local_address=source) if source else None
    with httpx.Client(transport=transport, timeout=30) as client:
        return client.get(web.url + path, **options)


def serve_shell_stand_in(engine) -> str:
    """:func:`serverharness.serve_stand_in`, its endpoint shell's rows journalled with the
    secrets a careless journal could hold. Returns its uuid."""

    def shell_rows(container_uuid: str) -> None:
        engine.context.journal.record(
            kind="endpoint_shell",
            entity_id=f"{container_uuid}.shell",
            trigger="destroy",
            source="stopped",
            dest="destroyed",
            terminal=True,
            details={
                "reason": "closed",
                "password": PASSWORD,
                "client_token": TOKEN,
                "private_key": "-----BEGIN RSA PRIVATE KEY-----",
            },
            data={"password": PASSWORD},
        )

    container_uuid, _ = serve_stand_in(engine, token=TOKEN, booted=shell_rows)
    return container_uuid


# -- the page and its files -------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "name", "media_type"),
    [
        ("/ui/", "index.html", "text/html"),
        ("/ui/static/ui.css", "ui.css", "text/css"),
        ("/ui/static/ui.js", "ui.js", "text/javascript"),
    ],
)
def test_the_page_and_its_assets_come_from_the_package(web, path, name, media_type):
    answer = get(web, path)
    assert answer.status_code == 200
    assert answer.content == (STATIC / name).read_bytes()
    assert answer.headers["content-type"].startswith(media_type)
    assert "script-src 'self'" in answer.headers["content-security-policy"]
    assert answer.headers["x-content-type-options"] == "nosniff"


def test_head_answers_without_a_body(web):
    with httpx.Client(timeout=30) as client:
        answer = client.head(web.url + "/ui/")
    assert answer.status_code == 200 and answer.content == b""
    assert answer.headers["content-length"] == str(len((STATIC / "index.html").read_bytes()))


def test_the_page_loads_nothing_from_elsewhere():
    for name in ("index.html", "ui.css", "ui.js"):
        text = (STATIC / name).read_text()
        assert re.search(r"https?://|//[a-z]", text) is None, name
    page = (STATIC / "index.html").read_text()
    assert 'href="static/ui.css"' in page and 'src="static/ui.js"' in page


def test_ui_without_slash_redirects(web):
    answer = get(web, "/ui")
    assert answer.status_code == 307
    assert answer.headers["location"] == "/ui/"


@pytest.mark.parametrize("name", ["index.html", "nothing.js", "..%2Fui.py"])
def test_other_static_names_are_not_found(web, name):
    answer = get(web, f"/ui/static/{name}")
    assert answer.status_code == 404
    assert answer.json().get("success", False) is False  # the API's 404 once it is routed
    assert b"import" not in answer.content and b"<!doctype" not in answer.content


def test_the_page_is_off_by_default(running):
    served = serve_web(running.engine)
    try:
        assert get(served, "/ui/").status_code == 404
        assert get(served, "/ui/api/state").status_code == 404
    finally:
        served.stop()


# -- the state --------------------------------------------------------------------------


def test_state_without_containers(web, running):
    answer = get(web, "/ui/api/state")
    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "no-store"
    body = answer.json()
    assert body["success"] is True
    server = body["data"]["server"]
    assert set(server) == {
        "version",
        "uptime",
        "containers",
        "available",
        "listen",
        "runtime_errors",
        "requests",
        "containers_by_state",
    }
    assert server["containers"] == 0 and server["available"] == 4
    assert server["listen"] == f"127.0.0.1:{running.address[1]}"
    assert server["runtime_errors"] == 0 and server["containers_by_state"] == {}
    assert body["data"]["containers"] == []


def test_requests_count_the_valid_requests_received(web, running):
    before = get(web, "/ui/api/state").json()["data"]["server"]["requests"]
    client = Client(*running.address, timeout=30)
    for _ in range(2):
        assert client.stat()["success"] is True
    after = get(web, "/ui/api/state").json()["data"]["server"]["requests"]
    assert after == before + 2


def test_state_of_a_live_container_shows_no_secret(web, running):
    container_uuid = serve_shell_stand_in(running.engine)
    answer = get(web, "/ui/api/state")
    data = answer.json()["data"]
    assert data["server"]["containers"] == 1
    assert data["server"]["containers_by_state"] == {"started_serving": 1}
    [row] = data["containers"]
    assert set(row) == {
        "uuid",
        "kind",
        "state",
        "age",
        "client",
        "port",
        "expires_at",
        "expires_in",
        "history",
    }
    assert row["uuid"] == container_uuid and row["kind"] == "container"
    assert row["state"] == "started_serving" and row["client"] == "127.0.0.9"
    assert FORWARDER_PORTS[0] <= row["port"] <= FORWARDER_PORTS[1]
    assert 0 < row["expires_in"] <= 600
    steps = [(step["kind"], step["trigger"], step["dest"]) for step in row["history"]]
    assert steps == [
        ("container", "create", "created"),
        ("container", "start", "started_booting"),
        ("endpoint_shell", "destroy", "destroyed"),
        ("container", "administer", "started_administered"),
        ("forwarder", "create", "created"),
        ("forwarder", "start", "started"),
        ("container", "serve", "started_serving"),
    ]
    shell = row["history"][2]
    assert shell["details"] == {"reason": "closed"}
    assert row["history"][3]["details"] == {"username": "user_12345"}
    for step in row["history"]:
        assert set(step) == {
            "id",
            "time",
            "kind",
            "trigger",
            "source",
            "dest",
            "context",
            "details",
        }
    for secret in (TOKEN, PASSWORD, "PRIVATE KEY", "password", "token"):
        assert secret not in answer.text


# -- the machines -----------------------------------------------------------------------


def _fills(svg: bytes) -> dict[str, str]:
    """Each state node's title → the fill of its shape."""
    fills = {}
    for group in ET.fromstring(svg).iter(f"{SVG}g"):
        if group.get("class") != "node":
            continue
        title = group.find(f"{SVG}title").text
        shape = next(iter(group.findall(f"{SVG}path") + group.findall(f"{SVG}polygon")), None)
        if shape is not None:
            fills[title] = shape.get("fill")
    return fills


@pytest.mark.parametrize(
    ("kind", "state"), [(kind, state) for kind, spec in SPECS.items() for state in spec.leaves]
)
def test_each_machine_is_drawn_with_its_state_highlighted(web, kind, state):
    answer = get(web, f"/ui/api/machine/{kind}.svg", params={"state": state})
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "image/svg+xml"
    fills = _fills(answer.content)
    assert set(fills) >= set(SPECS[kind].leaves)
    assert [name for name, fill in fills.items() if fill == HIGHLIGHT] == [state]


def test_a_machine_without_state_highlights_nothing(web):
    answer = get(web, "/ui/api/machine/container.svg")
    assert answer.status_code == 200
    assert HIGHLIGHT not in _fills(answer.content).values()


@pytest.mark.parametrize(
    "path",
    [
        "/ui/api/machine/nothing.svg?state=created",
        "/ui/api/machine/container.svg?state=nowhere",
        "/ui/api/machine/container.svg?state=started",  # a parent: no entity is only there
        "/ui/api/machine/container.svg?state=%3Cscript%3E",
    ],
)
def test_unknown_kind_or_state_is_not_found(web, path):
    answer = get(web, path)
    assert answer.status_code == 404
    body = answer.json()
    assert body["success"] is False and body["data"] == {} and body["message"]


# -- who may see it ---------------------------------------------------------------------

UI_PATHS = [
    "/ui",
    "/ui/",
    "/ui/static/ui.js",
    "/ui/api/state",
    "/ui/api/machine/container.svg?state=created",
    "/ui/no/such/path",
]


@pytest.mark.parametrize("path", UI_PATHS)
def test_an_address_not_allowed_is_refused(web, path):
    # The default list is loopback's 127.0.0.1 and ::1: 127.0.0.3 is another host to it.
    answer = get(web, path, source="127.0.0.3", follow_redirects=False)
    assert answer.status_code == 403
    assert answer.json() == REFUSED


def test_a_forwarded_for_header_does_not_open_the_page(web):
    answer = get(web, "/ui/api/state", source="127.0.0.3", headers={"X-Forwarded-For": "127.0.0.1"})
    assert answer.status_code == 403


def test_the_list_may_hold_networks(running):
    outside = serve_web(running.engine, enable_ui=True, admin_allowed_ip_list=("10.0.0.0/8",))
    inside = serve_web(running.engine, enable_ui=True, admin_allowed_ip_list=("127.0.0.0/29",))
    try:
        for path in UI_PATHS:
            answer = get(outside, path, follow_redirects=False)
            assert (answer.status_code, answer.json()) == (403, REFUSED), path
        assert get(inside, "/ui/api/state", source="127.0.0.3").status_code == 200
        assert get(inside, "/ui/api/state", source="127.0.0.9").status_code == 403
    finally:
        outside.stop()
        inside.stop()


def test_the_list_does_not_guard_other_paths(running):
    served = serve_web(running.engine, enable_ui=True, admin_allowed_ip_list=("10.0.0.0/8",))
    try:
        assert get(served, "/openapi.json").status_code == 200
        # /uix is only the API's POST /{verb} path: a GET there is a wrong method (405),
        # not a refusal by the page's list (403).
        other = get(served, "/uix")
        assert other.status_code == 405 and other.json()["message"].startswith("Bad request")
    finally:
        served.stop()

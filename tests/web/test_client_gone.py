"""An answer that cannot be delivered: the HTTP client hung up, or the web side stopped
waiting (504). The session's send then raises ChannelClosed, as a send to a TCP client
that left does, which is what makes a CREATE unwind (engine/create.py)."""

from __future__ import annotations

import socket
import threading

import httpx
from webharness import Baseline, live_sessions

from anweddol_actors.transport import ChannelClosed


def holding_verb(outcomes: list, entered: threading.Event, go: threading.Event):
    def hold(client_instance, **kwargs):
        entered.set()
        go.wait(10)
        try:
            client_instance.sendResponse(True, "OK", {"late": True})
        except Exception as exc:  # noqa: BLE001 - what the test looks at
            outcomes.append(exc)
        else:
            outcomes.append(None)

    return hold


def test_client_that_hung_up_is_not_answered(make_web):
    outcomes: list = []
    entered, go = threading.Event(), threading.Event()
    web = make_web(lambda s: s.setRequestHandler("HOLD", holding_verb(outcomes, entered, go)))
    assert httpx.post(web.url + "/stat", timeout=10).status_code == 200
    baseline = Baseline()
    sock = socket.create_connection(web.address, timeout=10)
    sock.sendall(b"POST /hold HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
    assert entered.wait(10)
    sock.close()
    # The web side sees the hang-up; the handler's send after it is refused.
    threading.Event().wait(0.5)
    go.set()
    baseline.check()
    [outcome] = outcomes
    assert isinstance(outcome, ChannelClosed), outcome
    assert "gone" in str(outcome)
    assert live_sessions(web.engine) == [] and web.engine.connection_limits.open == 0


def test_no_answer_in_time_is_504_and_the_late_answer_is_refused(make_web):
    outcomes: list = []
    entered, go = threading.Event(), threading.Event()
    web = make_web(
        lambda s: s.setRequestHandler("HOLD", holding_verb(outcomes, entered, go)),
        web={"answer_timeout": 0.5},
    )
    response = httpx.post(web.url + "/hold", timeout=10)
    assert response.status_code == 504
    assert response.json() == {
        "success": False,
        "message": "Unavailable (No answer in time)",
        "data": {},
    }
    go.set()
    Baseline()  # waits until the session ended
    [outcome] = outcomes
    assert isinstance(outcome, ChannelClosed), outcome


def test_answer_to_a_connected_client_is_delivered(make_web):
    outcomes: list = []
    entered, go = threading.Event(), threading.Event()
    go.set()
    web = make_web(lambda s: s.setRequestHandler("HOLD", holding_verb(outcomes, entered, go)))
    answer = httpx.post(web.url + "/hold", timeout=10).json()
    assert answer == {"success": True, "message": "OK", "data": {"late": True}}
    Baseline()
    assert outcomes == [None]

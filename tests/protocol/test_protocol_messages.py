"""Request/response schemas (PROTOCOL.md §3) and response construction."""

from __future__ import annotations

import pytest
from protocol_support import CREATE_DATA, TOKEN, UUID

from anweddol_actors.protocol.messages import (
    RESPONSE_MSG_BAD_REQ,
    RESPONSE_MSG_OK,
    make_request,
    make_response,
    validate_request,
    validate_response,
)


def test_valid_requests():
    assert validate_request(make_request("STAT")) == (True, make_request("STAT"), None)
    request = make_request("DESTROY", {"container_uuid": UUID, "client_token": TOKEN, "x": 1})
    ok, sanitized, errors = validate_request(request)
    assert ok and sanitized == request and errors is None


@pytest.mark.parametrize(
    ("request_", "errors"),
    [
        (
            {"verb": "stat", "parameters": {}},
            {"verb": ["value does not match regex '^[A-Z]{1,}$'"]},
        ),
        ({"verb": "STAT"}, {"parameters": ["required field"]}),
        ({"parameters": {}}, {"verb": ["required field"]}),
        ({"verb": "STAT", "parameters": []}, {"parameters": ["must be of dict type"]}),
        (
            {"verb": "DESTROY", "parameters": {"container_uuid": UUID}},
            {"parameters": [{"container_uuid": ["field 'client_token' is required"]}]},
        ),
        (
            {"verb": "DESTROY", "parameters": {"container_uuid": UUID, "client_token": "short"}},
            {
                "parameters": [
                    {"client_token": ["value does not match regex '^[0-9a-zA-Z-_]{255}$'"]}
                ]
            },
        ),
        ([1, 2], {"request": ["must be of dict type"]}),
        (None, {"request": ["must be of dict type"]}),
    ],
)
def test_invalid_requests(request_, errors):
    assert validate_request(request_) == (False, None, errors)


def test_responses():
    stat = make_response(True, RESPONSE_MSG_OK, {"version": "1", "uptime": 0, "available": 3})
    assert validate_response(stat) == (True, stat, None)
    create = make_response(True, RESPONSE_MSG_OK, CREATE_DATA)
    assert validate_response(create)[0]
    partial = make_response(True, RESPONSE_MSG_OK, {"container_uuid": UUID})
    ok, _, errors = validate_response(partial)
    assert not ok and "container_uuid" in errors["data"][0]
    bad_port = make_response(True, RESPONSE_MSG_OK, {**CREATE_DATA, "container_listen_port": 0})
    assert validate_response(bad_port)[2] == {
        "data": [{"container_listen_port": ["min value is 1"]}]
    }
    assert validate_response({"success": "yes", "message": "OK", "data": {}})[0] is False
    assert validate_response("OK") == (False, None, {"response": ["must be of dict type"]})


def test_make_response_reason():
    assert make_response(False, RESPONSE_MSG_BAD_REQ, reason="Unhandled verb") == {
        "success": False,
        "message": "Bad request (Unhandled verb)",
        "data": {},
    }
    assert make_response(True, RESPONSE_MSG_OK)["message"] == "OK"


# -- bounds (cheap refusals) --------------------------------------------------------------


def test_request_bounds():
    from anweddol_actors.protocol.messages import (
        MAX_PARAMETER_LENGTH,
        MAX_PARAMETER_NAME_LENGTH,
        MAX_PARAMETERS,
        MAX_VERB_LENGTH,
        validate_request,
    )

    def ok(verb="STAT", **parameters):
        return validate_request({"verb": verb, "parameters": parameters})[0]

    assert ok("A" * MAX_VERB_LENGTH) and not ok("A" * (MAX_VERB_LENGTH + 1))
    assert not ok("A" * 1_000_000)
    assert ok(**{f"k{i}": i for i in range(MAX_PARAMETERS)})
    assert not ok(**{f"k{i}": i for i in range(MAX_PARAMETERS + 1)})
    assert ok(**{"k" * MAX_PARAMETER_NAME_LENGTH: 1})
    assert not ok(**{"k" * (MAX_PARAMETER_NAME_LENGTH + 1): 1})
    assert ok(x="v" * MAX_PARAMETER_LENGTH) and not ok(x="v" * (MAX_PARAMETER_LENGTH + 1))
    assert not ok(x=list(range(MAX_PARAMETER_LENGTH + 1)))
    # Values without a length stay free: numbers, booleans, null.
    assert ok(a=1, b=2.5, c=True, d=None)

"""Request/response schemas (PROTOCOL.md §3) and response construction."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from protocol_support import CREATE_DATA, TOKEN, UUID

from anweddol_actors.protocol.messages import (
    REQUEST_SCHEMA,
    RESPONSE_MSG_BAD_REQ,
    RESPONSE_MSG_OK,
    _plainly_valid,
    _validate,
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


# -- the plain-request check beside cerberus ---------------------------------------------

_PLAIN_VALUES = st.one_of(
    st.sampled_from(["", "x", UUID, TOKEN, TOKEN + "\n", UUID.upper(), "STAT\n", "a" * 4097]),
    st.text(max_size=8),
    st.integers(),
    st.none(),
    st.booleans(),
    st.lists(st.integers(), max_size=2),
)
_PLAIN_NAMES = st.one_of(
    st.sampled_from(["container_uuid", "client_token", "access_token", "n" * 65]),
    st.text(max_size=4),
    st.integers(),
)
_REQUESTS = st.one_of(
    st.fixed_dictionaries(
        {
            "verb": st.one_of(
                st.sampled_from(["STAT", "CREATE", "DESTROY", "stat", "", "STAT\n", "A" * 65]),
                st.text(max_size=6),
                st.integers(),
            ),
            "parameters": st.one_of(
                st.dictionaries(_PLAIN_NAMES, _PLAIN_VALUES, max_size=4),
                st.dictionaries(st.text(max_size=3), st.just("v"), min_size=33, max_size=34),
                st.lists(st.integers(), max_size=1),
                st.none(),
            ),
        },
        optional={"extra": st.integers()},
    ),
    st.dictionaries(st.sampled_from(["verb", "parameters", "x"]), st.just("STAT"), max_size=3),
    st.lists(st.integers(), max_size=1),
    st.none(),
)


_CREDENTIAL_REQUESTS = st.fixed_dictionaries(
    {
        "verb": st.sampled_from(["DESTROY", "STAT"]),
        "parameters": st.fixed_dictionaries(
            {},
            optional={
                "container_uuid": st.sampled_from([UUID, UUID + "\n", UUID[1:], 7]),
                "client_token": st.sampled_from([TOKEN, TOKEN + "\n", TOKEN[1:], None]),
                "access_token": st.sampled_from(["t0k", "", None, "a" * 4097, 1.5]),
            },
        ),
    }
)


@settings(max_examples=400, deadline=None)
@given(st.one_of(_REQUESTS, _CREDENTIAL_REQUESTS))
def test_validate_request_judges_as_cerberus_does(request_):
    """The plain-request check (no cerberus for the requests a client library sends) never
    changes a verdict: every request gets cerberus's answer, sanitized copy and errors."""
    assert validate_request(request_) == _validate(REQUEST_SCHEMA, request_, "request")


@pytest.mark.parametrize(
    "request_",
    [
        {"verb": "STAT", "parameters": {}},
        {"verb": "STAT", "parameters": {"access_token": "t0k"}},
        {"verb": "DESTROY", "parameters": {"container_uuid": UUID, "client_token": TOKEN}},
    ],
)
def test_plain_requests_skip_cerberus(request_):
    """The requests of the client libraries are recognised without cerberus (the check can
    fail: a request it does not recognise would go to cerberus)."""
    assert _plainly_valid(request_)
    assert not _plainly_valid({**request_, "verb": "stat"})

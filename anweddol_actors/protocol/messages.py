"""Requests and responses (PROTOCOL.md §3): cerberus schemas, validation, constructors.

The schemas are the original ones (reference/specs/communication.md), open to unknown keys
so that servers can add verbs and fields.

Requests are bounded beyond ``max_message_size`` so that what a request makes the server
hold, log and journal is small whatever the client sends (a refusal must cost little):
a verb is 1 to :data:`MAX_VERB_LENGTH` capital letters; ``parameters`` has at most
:data:`MAX_PARAMETERS` keys, each a string of at most :data:`MAX_PARAMETER_NAME_LENGTH`
characters, and a string, list or dict value holds at most :data:`MAX_PARAMETER_LENGTH`
characters or items (the longest built-in value, a client token, is 255). Past any of
these the request is a ``Bad request``.
"""

from __future__ import annotations

import re
from typing import Any

from cerberus import Validator

__all__ = [
    "CREATE_DATA_KEYS",
    "MAX_PARAMETERS",
    "MAX_PARAMETER_LENGTH",
    "MAX_PARAMETER_NAME_LENGTH",
    "MAX_VERB_LENGTH",
    "REQUEST_SCHEMA",
    "REQUEST_VERB_CREATE",
    "REQUEST_VERB_DESTROY",
    "REQUEST_VERB_STAT",
    "RESPONSE_MESSAGES",
    "RESPONSE_MSG_BAD_AUTH",
    "RESPONSE_MSG_BAD_REQ",
    "RESPONSE_MSG_INTERNAL_ERROR",
    "RESPONSE_MSG_OK",
    "RESPONSE_MSG_REFUSED_REQ",
    "RESPONSE_MSG_UNAVAILABLE",
    "RESPONSE_MSG_UNSPECIFIED",
    "RESPONSE_SCHEMA",
    "TOKEN_REGEX",
    "UUID4_REGEX",
    "VERB_REGEX",
    "make_request",
    "make_response",
    "validate_request",
    "validate_response",
]

REQUEST_VERB_CREATE = "CREATE"
REQUEST_VERB_DESTROY = "DESTROY"
REQUEST_VERB_STAT = "STAT"

RESPONSE_MSG_OK = "OK"
RESPONSE_MSG_BAD_AUTH = "Bad authentication"
RESPONSE_MSG_BAD_REQ = "Bad request"
RESPONSE_MSG_REFUSED_REQ = "Refused request"
RESPONSE_MSG_UNAVAILABLE = "Unavailable"
RESPONSE_MSG_UNSPECIFIED = "Unspecified"
RESPONSE_MSG_INTERNAL_ERROR = "Internal error"
RESPONSE_MESSAGES = (
    RESPONSE_MSG_OK,
    RESPONSE_MSG_BAD_AUTH,
    RESPONSE_MSG_BAD_REQ,
    RESPONSE_MSG_REFUSED_REQ,
    RESPONSE_MSG_UNAVAILABLE,
    RESPONSE_MSG_UNSPECIFIED,
    RESPONSE_MSG_INTERNAL_ERROR,
)

# Public: the HTTP API's OpenAPI description states the same patterns (web/api.py), so
# that its documented constraints are these, not a copy that could drift.
UUID4_REGEX = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
TOKEN_REGEX = r"^[0-9a-zA-Z-_]{255}$"
VERB_REGEX = r"^[A-Z]{1,}$"

MAX_VERB_LENGTH = 64
MAX_PARAMETERS = 32
MAX_PARAMETER_NAME_LENGTH = 64
MAX_PARAMETER_LENGTH = 4096

REQUEST_SCHEMA: dict[str, Any] = {
    # maxlength first: cerberus checks rules in order, so a huge verb is refused on its
    # length without running the regex over it.
    "verb": {
        "type": "string",
        "maxlength": MAX_VERB_LENGTH,
        "regex": VERB_REGEX,
        "required": True,
    },
    "parameters": {
        "type": "dict",
        "required": True,
        "maxlength": MAX_PARAMETERS,
        "keysrules": {"type": "string", "maxlength": MAX_PARAMETER_NAME_LENGTH},
        # Lengths of strings, lists and dicts; numbers and booleans have none.
        "valuesrules": {"nullable": True, "maxlength": MAX_PARAMETER_LENGTH},
        "schema": {
            "container_uuid": {
                "type": "string",
                "regex": UUID4_REGEX,
                "required": False,
                "dependencies": ["client_token"],
            },
            "client_token": {
                "type": "string",
                "regex": TOKEN_REGEX,
                "required": False,
                "dependencies": ["container_uuid"],
            },
        },
    },
}

# The data of a successful CREATE: all six together or none (PROTOCOL.md §3).
CREATE_DATA_KEYS = (
    "container_uuid",
    "client_token",
    "container_iso_sha256",
    "container_username",
    "container_password",
    "container_listen_port",
)


def _create_field(name: str, rule: dict[str, Any]) -> dict[str, Any]:
    return {
        **rule,
        "required": False,
        "dependencies": [key for key in CREATE_DATA_KEYS if key != name],
    }


RESPONSE_SCHEMA: dict[str, Any] = {
    "success": {"type": "boolean", "required": True},
    "message": {"type": "string", "required": True},
    "data": {
        "type": "dict",
        "required": True,
        "schema": {
            "container_uuid": _create_field(
                "container_uuid", {"type": "string", "regex": UUID4_REGEX}
            ),
            "client_token": _create_field("client_token", {"type": "string", "regex": TOKEN_REGEX}),
            "container_iso_sha256": _create_field(
                "container_iso_sha256", {"type": "string", "regex": r"^[a-f0-9]{64}$"}
            ),
            "container_username": _create_field(
                "container_username", {"type": "string", "regex": r"^user_[0-9]{5}$"}
            ),
            "container_password": _create_field(
                "container_password", {"type": "string", "regex": r"^[a-zA-Z0-9]{1,}$"}
            ),
            "container_listen_port": _create_field(
                "container_listen_port", {"type": "integer", "min": 1, "max": 65535}
            ),
            "uptime": {"type": "integer", "required": False, "dependencies": ["version"], "min": 0},
            "version": {"type": "string", "required": False, "dependencies": ["uptime"]},
        },
    },
}

ValidationResult = tuple[bool, dict[str, Any] | None, dict[str, Any] | None]


def _validate(schema: dict[str, Any], document: Any, name: str) -> ValidationResult:
    if not isinstance(document, dict):
        return False, None, {name: ["must be of dict type"]}
    # A Validator keeps per-call state, so one per call: sessions validate concurrently.
    validator = Validator(schema, allow_unknown=True)
    if validator.validate(document):
        return True, validator.document, None
    return False, None, validator.errors


# The request schema's patterns, as cerberus applies them: ``re.match`` with a ``$``
# appended when the pattern lacks one (so a trailing newline passes there too).
_VERB = re.compile(VERB_REGEX)
_UUID4 = re.compile(UUID4_REGEX)
_TOKEN = re.compile(TOKEN_REGEX)
_CREDENTIALS = ("container_uuid", "client_token")


def _plainly_valid(request: Any) -> bool:
    """True only for a request :data:`REQUEST_SCHEMA` accepts, checked without cerberus:
    a verb and a dict of string parameters within the bounds, both credentials or
    neither, each matching its pattern. What it does not recognise (other keys or value
    types, anything out of bounds) goes to cerberus, which judges it and words the errors.

    Cerberus builds and walks its rule set for each document, which cost a tenth of a
    request's CPU; every request a client library sends is of this plain shape.
    """
    if type(request) is not dict or len(request) != 2:
        return False
    verb = request.get("verb")
    parameters = request.get("parameters")
    if type(verb) is not str or len(verb) > MAX_VERB_LENGTH or not _VERB.match(verb):
        return False
    if type(parameters) is not dict or len(parameters) > MAX_PARAMETERS:
        return False
    for name, value in parameters.items():
        if type(name) is not str or len(name) > MAX_PARAMETER_NAME_LENGTH:
            return False
        if type(value) is not str or len(value) > MAX_PARAMETER_LENGTH:
            return False
    uuid, token = (parameters.get(key) for key in _CREDENTIALS)
    if uuid is None and token is None:
        return True
    return (
        uuid is not None and token is not None and bool(_UUID4.match(uuid) and _TOKEN.match(token))
    )


def validate_request(request: Any) -> ValidationResult:
    """``(ok, sanitized, errors)``: sanitized is None unless ok, errors (cerberus's) None if ok."""
    if _plainly_valid(request):
        # What cerberus hands back for such a request (no rule normalises): a copy.
        return True, {"verb": request["verb"], "parameters": dict(request["parameters"])}, None
    return _validate(REQUEST_SCHEMA, request, "request")


def validate_response(response: Any) -> ValidationResult:
    """Same contract as :func:`validate_request`, against :data:`RESPONSE_SCHEMA`."""
    return _validate(RESPONSE_SCHEMA, response, "response")


def make_response(
    success: bool,
    message: str,
    data: dict[str, Any] | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    """A response dict; with a reason the message reads ``"Bad request (Unhandled verb)"``."""
    return {
        "success": success,
        "message": f"{message} ({reason})" if reason else message,
        "data": {} if data is None else data,
    }


def make_request(verb: str, parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    """A request dict (not validated: the caller may want to send a malformed one)."""
    return {"verb": verb, "parameters": {} if parameters is None else parameters}

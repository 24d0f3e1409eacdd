"""The answers every part of the web front end shares: the normalized response shape
with an HTTP status, and the IP filter's refusal."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Request
from fastapi.responses import JSONResponse

from anweddol_actors.protocol.messages import RESPONSE_MSG_REFUSED_REQ, make_response

__all__ = ["client_address", "normalized", "refused"]


def normalized(
    status: int,
    success: bool,
    message: str,
    reason: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """``{"success", "message", "data": {}}`` with ``status`` (PROTOCOL.md §3's shape)."""
    return JSONResponse(
        make_response(success, message, {}, reason), status_code=status, headers=headers
    )


def client_address(request: Request) -> str:
    return request.client.host if request.client is not None else ""


def refused(request: Request, allows: Callable[[str], bool] | None) -> JSONResponse | None:
    """403 ``Refused request`` when ``allows`` (an IP filter's question; None: everyone)
    refuses the request's peer, else None."""
    if allows is None or allows(client_address(request)):
        return None
    return normalized(403, False, RESPONSE_MSG_REFUSED_REQ)

"""Who is calling, and which gateways they may see (README, "Auth: tokens, roles, tenancy";
docs/security.md). Tokens are parsed once, at start-up (app/tokens.py); here they are checked."""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from fastapi import Request

from app.http.errors import ApiError
from app.queries import Scope

if TYPE_CHECKING:
    from app.service import Service

COOKIE = "openclaw_diag_token"  # the status page's sign-in (app/http/page.py)


def authorize(tokens: dict[str, frozenset[str] | None], header: bytes | None) -> tuple[bool, frozenset[str] | None]:
    """Constant-time check of `Authorization: Bearer <token>`; returns (ok, the gateways it is bound to)."""
    if not tokens:
        return True, None
    if not header or not header[:7].lower() == b"bearer ":
        return False, None
    offered = header[7:].strip()
    if not offered:
        return False, None
    match: frozenset[str] | None = None
    ok = False
    for token, gateways in tokens.items():
        if hmac.compare_digest(offered, token.encode()):
            ok, match = True, gateways
    return ok, match


def service_of(request: Request) -> Service:
    return request.app.state.service


def token_from(request: Request) -> bytes | None:
    header = request.headers.get("authorization")
    if header:
        return header.encode()
    cookie = request.cookies.get(COOKIE)
    return f"Bearer {cookie}".encode() if cookie else None




def require_token(request: Request) -> None:
    """A token that may read; its gateways become the request's scope (`scope_of`)."""
    ok, gateways = authorize(service_of(request).reading_tokens, token_from(request))
    if not ok:
        raise ApiError(401, "unauthorized", "a valid bearer token is required")
    request.state.scope = gateways


def scope_of(request: Request) -> Scope:
    return getattr(request.state, "scope", None)



def require_token_for_health(request: Request) -> None:
    if service_of(request).settings.protect_metrics:
        require_token(request)

"""Who is calling, and which gateways they may see (README, "Auth: tokens, roles, tenancy";
docs/security.md). Tokens are parsed once, at start-up (app/tokens.py); here they are checked."""

from __future__ import annotations

import hashlib
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



def csrf_token(token: str) -> str:
    """What the status page sends with an action made with its sign-in cookie: derived from the
    token, so a page of another site (which cannot read ours) cannot know it."""
    return hashlib.sha256(b"openclaw-diagnostics csrf\0" + token.encode()).hexdigest()[:32]


def require_operator(request: Request) -> None:
    """An operator token (OPENCLAW_DIAG_OPERATOR_TOKENS); a token that may only read gets 403.
    Its name becomes the actor of the audit log, its gateways the request's scope. A token that
    came in the page's cookie must come with the page's CSRF token and from this origin."""
    header = request.headers.get("authorization")
    cookie = request.cookies.get(COOKIE)
    offered = header[7:].strip() if header and header[:7].lower() == "bearer " else None
    if offered is None and cookie and not header:
        if not hmac.compare_digest(request.headers.get("x-csrf-token", ""), csrf_token(cookie)) or not _same_origin(request):
            raise ApiError(403, "forbidden", "an action from the page needs its CSRF token and the same origin")
        offered = cookie
    entry = None
    for candidate in service_of(request).operator_entries:
        if offered is not None and hmac.compare_digest(offered.encode(), candidate.token.encode()):
            entry = candidate
    if entry is None:
        may_read, _ = authorize(service_of(request).reading_tokens, f"Bearer {offered}".encode() if offered else None)
        if offered is not None and may_read:
            raise ApiError(403, "forbidden", "acting needs an operator token (OPENCLAW_DIAG_OPERATOR_TOKENS)")
        raise ApiError(401, "unauthorized", "an operator's bearer token is required")
    request.state.scope = entry.gateways
    request.state.actor = entry.name or "operator"


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    return origin is None or origin.split("://", 1)[-1] == request.headers.get("host", "")


def actor_of(request: Request) -> str:
    return getattr(request.state, "actor", "operator")


def require_token_for_health(request: Request) -> None:
    if service_of(request).settings.protect_metrics:
        require_token(request)

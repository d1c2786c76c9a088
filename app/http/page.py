"""The live status page served by the service itself (issue 8): `GET /` and a per-session view.

No build step and nothing from a CDN. The server renders only the shell — title, header,
sign-in form, empty containers — from the Jinja templates in app/http/templates/ (autoescaped),
and embeds the data it would answer on the first poll as a JSON block (`#initial-state`).
app/http/static/app.js is the one renderer of the data: it shows that block at once, then
refreshes every 2 s from `/ui/state.json` (the overview) or `/ui/session.json` (one session),
building the DOM with `textContent` only — session keys, tool names and reasons come from the
network. A strict Content-Security-Policy (scripts and styles from this origin only, no inline
script or style) backs that up. The static files are served by StaticFiles under /ui/static/.

Auth: the same token setting as the read API (`OPENCLAW_DIAG_INGEST_TOKENS`). A request is let
in with `Authorization: Bearer <token>` or the `openclaw_diag_token` cookie (app/http/auth.py,
COOKIE), which the small sign-in form sets (HttpOnly, SameSite=Strict). The cookie is only ever
read by GET routes, and ingest never reads it, so a cross-site page cannot write through it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode

import orjson
from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from app.http import api, auth, fleet
from app.http.auth import COOKIE, authorize
from app.http.errors import ApiError
from app.queries import OVERVIEW_LIMIT, narrowed

if TYPE_CHECKING:
    from app.service import Service

LOGIN_BODY_LIMIT = 8_192
STATIC_PATH = "/ui/static"  # app/http/static/, mounted by install_static_files

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
STATIC_HEADERS = {"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"}

TEMPLATES = Environment(
    loader=PackageLoader("app.http", "templates"),
    autoescape=select_autoescape(),
    trim_blocks=True,
    lstrip_blocks=True,
)
# `|tojson` (the #initial-state block) escapes <, >, & and ' so the data cannot end its script
# element. Keys keep their order, as in the JSON routes (app.js lists event details in it), and
# NaN is refused as JSONResponse refuses it.
TEMPLATES.policies["json.dumps_kwargs"] = {"sort_keys": False, "allow_nan": False, "separators": (",", ":")}
TEMPLATES.globals["static"] = STATIC_PATH

router = APIRouter(include_in_schema=False)


# -- helpers ------------------------------------------------------------------------------------------


def _service(request: Request) -> Service:
    return auth.service_of(request)


def _base(request: Request) -> str:
    return str(request.scope.get("root_path") or "").rstrip("/")


def _authorized(request: Request) -> bool:
    try:
        auth.require_token(request)  # sets the request's scope: a bound token sees its gateways only
    except ApiError:
        return False
    return True


def _signed_in_by_cookie(request: Request) -> bool:
    return bool(_service(request).reading_tokens) and not request.headers.get("authorization") and COOKIE in request.cookies


def _csrf(request: Request) -> dict[str, str]:
    """The token the page's actions carry (app/http/auth.py, require_operator), when signed in
    with the cookie; the page's buttons are there either way, and say what the answer was."""
    cookie = request.cookies.get(auth.COOKIE)
    return {"csrf": auth.csrf_token(cookie)} if cookie else {}


def session_href(base: str, gateway: str, key: str) -> str:
    return f"{base}/ui/session?{urlencode({'gatewayId': gateway, 'sessionKey': key})}"


def _safe_next(value: str | None) -> str:
    """Only a local path: `/...` but not `//host` or `/\\host`."""
    if not value or not value.startswith("/") or value.startswith("//") or value.startswith("/\\"):
        return "/"
    return value


def _page(request: Request, name: str, title: str | None = None, status: int = 200, *,
          data: dict[str, str] | None = None, **context: Any) -> HTMLResponse:
    """app/http/templates/<name>.html, with what every page's header needs; `data` becomes the
    body's data-* attributes (app.js reads them)."""
    html = TEMPLATES.get_template(f"{name}.html").render(
        title=f"{title} · OpenClaw diagnostics" if title else "OpenClaw diagnostics",
        page=name,
        base=_base(request),
        data=data or {},
        unauthenticated=not _service(request).reading_tokens,
        signed_in_by_cookie=_signed_in_by_cookie(request),
        **context,
    )
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


# -- routes -----------------------------------------------------------------------------------------------


def _login_response(request: Request) -> HTMLResponse:
    path = request.url.path
    if request.url.query:
        path += "?" + request.url.query
    response = _page(request, "login", "Sign in", 401, next_path=_safe_next(path))
    response.headers["WWW-Authenticate"] = "Bearer"
    return response


@router.get("/", response_class=HTMLResponse)
async def overview(request: Request, gatewayId: str | None = Query(None, max_length=128)) -> Response:
    """The overview; `?gatewayId=` shows one gateway (the alerts link here: deploy/rules)."""
    if not _authorized(request):
        return _login_response(request)
    return _page(request, "overview", initial_state=await _overview(request, gatewayId), data=_csrf(request))


@router.get("/ui/state.json")
async def state_json(request: Request, gatewayId: str | None = Query(None, max_length=128)) -> Response:
    auth.require_token(request)
    return JSONResponse(await _overview(request, gatewayId), headers={"Cache-Control": "no-store"})


async def _overview(request: Request, gateway: str | None) -> dict[str, Any]:
    """This instance's overview, or with several instances, the fleet's (app/http/fleet.py)."""
    if fleet.is_fleet_read(request):
        return await fleet.overview(request, gateway, OVERVIEW_LIMIT)
    return _service(request).queries.overview(narrowed(auth.scope_of(request), gateway),
                                              with_keys=fleet.wants_keys(request))


@router.get("/ui/session", response_class=HTMLResponse)
async def session_page(
    request: Request,
    sessionKey: str = Query(..., max_length=512),
    gatewayId: str | None = Query(None, max_length=128),
) -> Response:
    if not _authorized(request):
        return _login_response(request)
    try:
        item = await _session_detail(request, sessionKey, gatewayId)
    except ApiError as exc:
        if exc.status == 409:
            base = _base(request)
            choices = [(d["msg"], session_href(base, d["msg"], sessionKey)) for d in exc.details]
            return _page(request, "message", "Which gateway?", 409, heading="Which gateway?",
                         session_key=sessionKey, choices=choices)
        if exc.status == 404:
            return _page(request, "message", "Unknown session", 404, heading="Unknown session",
                         session_key=sessionKey, choices=[])
        raise
    key = item.get("sessionKey") or item.get("sessionId") or ""
    # app.js polls /ui/session.json with these two, and acts with the CSRF token of the sign-in
    return _page(request, "session", key, data={"gateway": item["gatewayId"], "key": key, **_csrf(request)},
                 initial_state=item)


@router.get("/ui/session.json")
async def session_json_route(
    request: Request,
    sessionKey: str = Query(..., max_length=512),
    gatewayId: str | None = Query(None, max_length=128),
) -> Response:
    auth.require_token(request)
    return JSONResponse(await _session_detail(request, sessionKey, gatewayId), headers={"Cache-Control": "no-store"})


async def _session_detail(request: Request, key: str, gateway: str | None) -> dict[str, Any]:
    """The read API's own handler: same lookup (at the gateway's owner, with several
    instances), same 404/409 as an ApiError, same representation."""
    item = await api.get_session(request, sessionKey=key, gatewayId=gateway)
    if isinstance(item, Response):  # another instance's answer, as it gave it
        body = orjson.loads(item.body)
        if item.status_code != 200:
            error = body["error"]
            raise ApiError(item.status_code, error["code"], error["message"], error["details"])
        return body
    return item


@router.post("/ui/login")
async def login(request: Request) -> Response:
    service = _service(request)
    if not service.reading_tokens:
        return RedirectResponse(f"{_base(request)}/", status_code=303)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > LOGIN_BODY_LIMIT:
            return _page(request, "login", "Sign in", 413, next_path="/", error="The form was too large.")
    form = parse_qs(body.decode("utf-8", errors="replace"), max_num_fields=10)
    token = (form.get("token") or [""])[0].strip()
    next_path = _safe_next((form.get("next") or ["/"])[0])
    ok, _ = authorize(service.reading_tokens, f"Bearer {token}".encode()) if token else (False, None)
    if not ok:
        return _page(request, "login", "Sign in", 401, next_path=next_path, error="That token is not accepted.")
    response = RedirectResponse(f"{_base(request)}{next_path}", status_code=303)
    response.set_cookie(
        COOKIE, token, httponly=True, samesite="strict", path="/",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/ui/logout")
async def logout(request: Request) -> Response:
    response = RedirectResponse(f"{_base(request)}/", status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


# -- static files -----------------------------------------------------------------------------------


class _StaticFiles(StaticFiles):
    """Starlette's StaticFiles, with the page's cache lifetime and `nosniff` on every answer."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(STATIC_HEADERS)
        return response


def install_static_files(app: FastAPI) -> None:
    """Serve app/http/static/ (the page's app.css and app.js) under /ui/static/."""
    app.mount(STATIC_PATH, _StaticFiles(packages=[("app.http", "static")]), name="ui-static")


@router.get("/ui/app.css")
@router.get("/ui/app.js")
async def moved_asset(request: Request) -> Response:
    """The files' addresses before they moved under /ui/static/ (a page loaded before an upgrade)."""
    name = request.url.path.rsplit("/", 1)[1]
    return RedirectResponse(f"{_base(request)}{STATIC_PATH}/{name}", status_code=301)

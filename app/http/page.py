"""The live status page served by the service itself (issue 8): `GET /` and a per-session view.

Server-rendered HTML with no build step and nothing from a CDN; a small vanilla script
(`/ui/app.js`) refreshes the dynamic parts every few seconds from JSON (`/ui/state.json` for the
overview, `/ui/session.json` for one session) and rebuilds them with DOM calls and `textContent`
only. Everything shown is escaped on both paths — session keys, tool names and reasons come from
the network — and a strict Content-Security-Policy (scripts and styles from this origin only, no
inline script) backs that up.

Auth: the same token setting as the read API (`OPENCLAW_DIAG_INGEST_TOKENS`). A request is let
in with `Authorization: Bearer <token>` or the `openclaw_diag_token` cookie, which the small
sign-in form sets (HttpOnly, SameSite=Strict). The cookie is only ever read by GET routes, and
ingest never reads it, so a cross-site page cannot write through it.
"""

from __future__ import annotations

import heapq
import html
import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from app.formatting import human_ms
from app.formatting import stamp_ms as clock
from app.http import api, auth
from app.http.auth import authorize
from app.http.errors import ApiError

if TYPE_CHECKING:
    from app.service import Service

COOKIE = "openclaw_diag_token"
OVERVIEW_LIMIT = 200
LOGIN_BODY_LIMIT = 8_192
SEVERITY_CLASS = {"session.stuck": "stuck", "session.stalled": "stalled", "session.long_running": "long"}
SEVERITY_LABEL = {"session.stuck": "Stuck", "session.stalled": "Stalled", "session.long_running": "Long-running"}

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

router = APIRouter(include_in_schema=False)


# -- helpers ------------------------------------------------------------------------------------------


def e(value: Any) -> str:
    """HTML-escape anything (attribute-safe)."""
    return html.escape("" if value is None else str(value), quote=True)


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


def _html(body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers=SECURITY_HEADERS)


def session_href(base: str, gateway: str, key: str) -> str:
    return f"{base}/ui/session?{urlencode({'gatewayId': gateway, 'sessionKey': key})}"


def _safe_next(value: str | None) -> str:
    """Only a local path: `/...` but not `//host` or `/\\host`."""
    if not value or not value.startswith("/") or value.startswith("//") or value.startswith("/\\"):
        return "/"
    return value


# -- the overview's data -----------------------------------------------------------------------------


def overview_state(service: Service, scope: api.Scope = None) -> dict[str, Any]:
    """What the overview shows: counts, the sessions under attention (most severe, oldest first),
    gateways — of the gateways the caller may see. Walks only the candidate index, never every
    session."""
    store = service.store
    settings = service.settings
    now = service.clock.now_ms()
    under = [s for s in list(store.candidates) if s.attention is not None and auth.visible(scope, s.gateway)]
    counts = Counter(SEVERITY_CLASS[s.attention.event_type] for s in under)  # type: ignore[union-attr]
    by_state: Counter[str] = Counter()
    for (gateway, state), count in list(store.state_counts.items()):
        if auth.visible(scope, gateway):
            by_state[state] += count
    gateways = []
    for info in sorted(list(store.gateways.values()), key=lambda g: g.gateway_id):
        if not auth.visible(scope, info.gateway_id):
            continue
        gateways.append({
            "gatewayId": info.gateway_id,
            "silent": service.is_silent(info, now),
            "lastHeardAgoMs": max(0, now - info.last_heard),
            "clockSkewMs": info.skew_ms,
            "sessions": len(info.sessions),
            "eventsAccepted": info.events_accepted,
            "forwarderQueued": info.forwarder_queued,
        })
    monitor = getattr(service, "monitor", None)
    return {
        "now": now,
        "counts": {"stuck": counts["stuck"], "stalled": counts["stalled"], "long_running": counts["long"]},
        "underAttention": len(under),
        "items": [api.session_json(service, s) for s in heapq.nsmallest(OVERVIEW_LIMIT, under, key=api.sort_key)],
        "sessions": {"total": sum(by_state.values()), "byState": {k: by_state[k] for k in ("processing", "waiting", "idle")}},
        "gateways": gateways,
        "monitor": {
            "running": bool(monitor and monitor.running),
            "lastTickAgoMs": max(0, now - monitor.last_tick_at) if monitor and monitor.last_tick_at else None,
            "warnMs": settings.warn_ms,
            "abortMs": settings.abort_ms,
            "scanIntervalMs": settings.scan_interval_ms,
            "recoveryMode": settings.recovery_mode,
        },
    }


# -- rendering (server side; app.js renders the same markup from the same JSON) ---------------------------------


def badge(event_type: str | None) -> str:
    if not event_type:
        return '<span class="badge none">OK</span>'
    return f'<span class="badge {SEVERITY_CLASS.get(event_type, "none")}">{e(SEVERITY_LABEL.get(event_type, event_type))}</span>'


def recovery_text(item: dict[str, Any]) -> tuple[str, str]:
    """(text, css class) of a session's latest recovery."""
    if item.get("recoveryInFlight"):
        return "in flight", "pending"
    last = item.get("lastRecovery")
    if not last:
        return "–", "muted"
    if last.get("kind") == "requested":
        return "requested", "pending"
    text = f"{last.get('status')} / {last.get('action')}"
    if last.get("outcomeReason"):
        text += f" ({last['outcomeReason']})"
    if last.get("stale"):
        text += " · stale"
    return text, ("ok" if last.get("status") in ("aborted", "released") else "muted")


def _classification_note(att: dict[str, Any]) -> str:
    """The classification, unless it only repeats the reason."""
    classification = att.get("classification") or ""
    return "" if classification == att.get("reason") else classification


def _work_text(activity: dict[str, Any]) -> str:
    kind = activity.get("activeWorkKind")
    if not kind:
        return "–"
    text = kind.replace("_", " ")
    if activity.get("activeToolName"):
        text += f" · {activity['activeToolName']} ({human_ms(activity.get('activeToolAgeMs'))})"
    if activity.get("hasActiveEmbeddedRun") and kind != "embedded_run":
        text += " · run active"
    return text


def _progress_text(activity: dict[str, Any]) -> tuple[str, str]:
    if activity.get("lastProgressAgeMs") is None:
        return "–", ""
    return f"{human_ms(activity['lastProgressAgeMs'])} ago", activity.get("lastProgressReason") or ""


def render_cards(state: dict[str, Any]) -> str:
    c = state["counts"]
    s = state["sessions"]
    silent = sum(1 for g in state["gateways"] if g["silent"])
    cards = [
        ("stuck", "Stuck", c["stuck"], "recovery eligible"),
        ("stalled", "Stalled", c["stalled"], "active work without progress"),
        ("long", "Long-running", c["long_running"], "busy past the warn threshold"),
        ("neutral", "Sessions tracked", s["total"],
         f"{s['byState']['processing']} processing · {s['byState']['waiting']} waiting · {s['byState']['idle']} idle"),
        ("neutral" if not silent else "stalled", "Gateways", len(state["gateways"]),
         f"{silent} silent" if silent else "all reporting"),
    ]
    out = []
    for cls, label, value, note in cards:
        active = " active" if cls in ("stuck", "stalled", "long") and value else ""
        out.append(
            f'<div class="card {cls}{active}"><div class="card-label">{e(label)}</div>'
            f'<div class="card-value">{e(value)}</div><div class="card-note">{e(note)}</div></div>'
        )
    return "".join(out)


def render_attention(state: dict[str, Any], base: str) -> str:
    items = state["items"]
    if not items:
        return '<p class="empty">No session needs attention.</p>'
    rows = []
    for item in items:
        att = item["attention"] or {}
        activity = item.get("activity") or {}
        key = item.get("sessionKey") or item.get("sessionId") or ""
        progress, progress_reason = _progress_text(activity)
        recovery, recovery_cls = recovery_text(item)
        href = session_href(base, item["gatewayId"], key)
        rows.append(
            f'<tr class="sev-{SEVERITY_CLASS.get(att.get("eventType"), "none")}">'
            f'<td>{badge(att.get("eventType"))}</td>'
            f'<td class="session"><a class="key" href="{e(href)}">{e(key)}</a>'
            f'<div class="sub">{e(item["gatewayId"])}</div></td>'
            f'<td><span class="mono">{e(att.get("reason"))}</span><div class="sub">{e(_classification_note(att))}</div></td>'
            f'<td class="num">{e(human_ms(att.get("attentionAgeMs")))}</td>'
            f'<td>{e(item["state"])}<div class="sub">queue {e(item["queueDepth"])}</div></td>'
            f'<td>{e(_work_text(activity))}</td>'
            f'<td>{e(progress)}<div class="sub mono">{e(progress_reason)}</div></td>'
            f'<td><span class="rec {recovery_cls}">{e(recovery)}</span></td>'
            "</tr>"
        )
    more = state["underAttention"] - len(items)
    tail = f'<p class="more">… and {e(more)} more (see GET /v1/sessions)</p>' if more > 0 else ""
    return (
        '<table class="grid"><thead><tr><th>Severity</th><th>Session</th><th>Reason</th>'
        '<th class="num">Attention age</th><th>State</th><th>Active work</th><th>Last progress</th>'
        f'<th>Recovery</th></tr></thead><tbody>{"".join(rows)}</tbody></table>{tail}'
    )


def render_gateways(state: dict[str, Any]) -> str:
    if not state["gateways"]:
        return '<p class="empty">No gateway has sent events yet.</p>'
    rows = []
    for g in state["gateways"]:
        status = '<span class="rec warn">silent</span>' if g["silent"] else '<span class="rec ok">reporting</span>'
        rows.append(
            f'<tr><td class="mono">{e(g["gatewayId"])}</td><td>{status}</td>'
            f'<td class="num">{e(human_ms(g["lastHeardAgoMs"]))} ago</td>'
            f'<td class="num">{e(g["clockSkewMs"])} ms</td><td class="num">{e(g["sessions"])}</td>'
            f'<td class="num">{e(g["eventsAccepted"])}</td></tr>'
        )
    return (
        '<table class="grid compact"><thead><tr><th>Gateway</th><th>Status</th><th class="num">Last heard</th>'
        '<th class="num">Clock skew</th><th class="num">Sessions</th><th class="num">Events accepted</th></tr></thead>'
        f'<tbody>{"".join(rows)}</tbody></table>'
    )


def render_footer(state: dict[str, Any]) -> str:
    m = state["monitor"]
    running = "monitor running" if m["running"] else "monitor NOT running"
    return (
        f"warn {e(human_ms(m['warnMs']))} · abort {e(human_ms(m['abortMs']))} · scan every "
        f"{e(human_ms(m['scanIntervalMs']))} · recovery mode {e(m['recoveryMode'])} · {e(running)}"
    )


def _layout(request: Request, title: str, page: str, body: str, data: dict[str, str] | None = None) -> str:
    base = _base(request)
    attrs = "".join(f' data-{name}="{e(value)}"' for name, value in {"page": page, "base": base, **(data or {})}.items())
    signout = ""
    if _signed_in_by_cookie(request):
        signout = (
            f'<form method="post" action="{e(base)}/ui/logout" class="signout">'
            '<button type="submit">Sign out</button></form>'
        )
    # The live indicator only on pages the script refreshes; it says "live" once a poll succeeded.
    live = '<span id="live" class="pill">connecting…</span>' if page in ("overview", "session") else ""
    unauth = ""
    if not _service(request).reading_tokens:
        unauth = '<span class="pill warn" title="OPENCLAW_DIAG_INGEST_TOKENS is not set">unauthenticated</span>'
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<title>{e(title)}</title><link rel="icon" href="data:,">'
        f'<link rel="stylesheet" href="{e(base)}{STATIC_PATH}/app.css"></head>'
        f"<body{attrs}>"
        f'<header class="top"><a class="brand" href="{e(base)}/"><span class="logo">◎</span> OpenClaw diagnostics</a>'
        f'<div class="top-right">{unauth}{live}{signout}</div></header>'
        f"<main>{body}</main>"
        f'<script src="{e(base)}{STATIC_PATH}/app.js"></script></body></html>'
    )


def render_overview(request: Request, state: dict[str, Any]) -> str:
    base = _base(request)
    body = (
        f'<section class="cards" id="cards">{render_cards(state)}</section>'
        '<section class="panel"><div class="panel-head"><h2>Sessions needing attention</h2>'
        '<span class="hint">most severe first, then oldest</span></div>'
        f'<div id="attention">{render_attention(state, base)}</div></section>'
        '<section class="panel"><div class="panel-head"><h2>Gateways</h2></div>'
        f'<div id="gateways">{render_gateways(state)}</div></section>'
        f'<footer id="footer">{render_footer(state)}</footer>'
    )
    return _layout(request, "OpenClaw diagnostics", "overview", body)


def _dl(rows: list[tuple[str, str]]) -> str:
    return '<dl class="facts">' + "".join(f"<dt>{e(k)}</dt><dd>{v}</dd>" for k, v in rows) + "</dl>"


def usage_text(usage: dict[str, Any]) -> str:
    """Tokens and cost summed from model.usage; either may be null (a sum past float range)."""
    total = usage.get("total")
    cost = usage.get("costUsd")
    tokens = "–" if total is None else f"{total:,}"
    dollars = "–" if cost is None else f"${cost:.4f}"
    return f"{tokens} tokens · {dollars}"


def render_detail_body(item: dict[str, Any], base: str) -> str:
    att = item.get("attention")
    activity = item.get("activity") or {}
    usage = item.get("usage") or {}
    key = item.get("sessionKey") or item.get("sessionId") or ""
    head = (
        f'<div class="detail-head">{badge(att["eventType"] if att else None)}'
        f'<h1 class="key">{e(key)}</h1></div>'
        f'<p class="sub">gateway <span class="mono">{e(item["gatewayId"])}</span>'
        f' · session id <span class="mono">{e(item.get("sessionId") or "–")}</span></p>'
    )
    session_rows = [
        ("State", e(item["state"])),
        ("Queue depth", e(item["queueDepth"])),
        ("Generation", e(item["generation"])),
        ("Last activity", f'{e(human_ms(item["ageMs"]))} ago <span class="sub">{e(clock(item["lastActivityAt"]))}</span>'),
        ("Recovery in flight", "yes" if item.get("recoveryInFlight") else "no"),
        ("Usage", e(usage_text(usage))),
    ]
    if att:
        attention_rows = [
            ("Verdict", f'{e(att["eventType"])}'),
            ("Reason", f'<span class="mono">{e(att["reason"])}</span>'),
            ("Classification", e(att["classification"])),
            ("Attention age", e(human_ms(att["attentionAgeMs"]))),
            ("Since", e(clock(att["since"]))),
            ("Recovery eligible", "yes" if att["recoveryEligible"] else "no"),
        ]
    else:
        attention_rows = [("Verdict", '<span class="muted">not under attention</span>')]
    progress, progress_reason = _progress_text(activity)
    activity_rows = [
        ("Active work", e(_work_text(activity))),
        ("Tool call id", f'<span class="mono">{e(activity.get("activeToolCallId") or "–")}</span>'),
        ("Last progress", f'{e(progress)} <span class="sub mono">{e(progress_reason)}</span>'),
    ]
    verdict = item.get("gatewayVerdict")
    if verdict:
        activity_rows.append((
            "Gateway's own verdict",
            f'{e(verdict.get("eventType"))} <span class="mono">{e(verdict.get("reason") or "")}</span> '
            f'<span class="sub">{e(clock(verdict.get("ts")))}</span>',
        ))
    grid = (
        '<section class="cols">'
        f'<div class="panel"><h2>Session</h2>{_dl(session_rows)}</div>'
        f'<div class="panel"><h2>Attention</h2>{_dl(attention_rows)}</div>'
        f'<div class="panel"><h2>Activity</h2>{_dl(activity_rows)}</div>'
        "</section>"
    )
    return head + grid + render_recoveries(item) + render_events(item)


def render_recoveries(item: dict[str, Any]) -> str:
    rows = []
    for entry in item.get("recoveries") or []:
        at = entry.get("completedAt") if entry.get("kind") == "completed" else entry.get("requestedAt")
        if entry.get("kind") == "completed":
            what = f"{entry.get('status')} / {entry.get('action')}"
            if entry.get("outcomeReason"):
                what += f" ({entry['outcomeReason']})"
            if entry.get("stale"):
                what += " · stale"
        else:
            what = "requested" + (" · active abort allowed" if entry.get("allowActiveAbort") else "")
        rows.append(
            f'<tr><td class="nowrap">{e(clock(at))}</td><td>{e(entry.get("kind"))}</td><td>{e(what)}</td>'
            f'<td class="mono">{e(entry.get("reason"))}</td><td class="num">{e(human_ms(entry.get("ageMs")))}</td>'
            f'<td class="num">{e(entry.get("stateGeneration"))}</td></tr>'
        )
    for entry in item.get("gatewayRecoveries") or []:
        what = entry.get("eventType", "").removeprefix("session.recovery.")
        if entry.get("status"):
            what += f": {entry.get('status')} / {entry.get('action')}"
        rows.append(
            f'<tr class="gw"><td class="nowrap">{e(clock(entry.get("ts")))}</td><td>gateway</td><td>{e(what)}</td>'
            f'<td class="mono">{e(entry.get("reason") or entry.get("outcomeReason"))}</td>'
            f'<td class="num">{e(human_ms(entry.get("ageMs")))}</td><td class="num">–</td></tr>'
        )
    if not rows:
        table = '<p class="empty">No recovery requested for this session.</p>'
    else:
        table = (
            '<table class="grid compact"><thead><tr><th>Time</th><th>Kind</th><th>Outcome</th><th>Reason</th>'
            f'<th class="num">Age</th><th class="num">Generation</th></tr></thead><tbody>{"".join(rows)}</tbody></table>'
        )
    return f'<section class="panel"><div class="panel-head"><h2>Recovery history</h2><span class="hint">newest first</span></div>{table}</section>'


EVENT_SKIP = {"type", "ts", "receivedAt", "gatewayId", "sessionKey", "sessionId", "seq", "eventId"}


def event_details(event: dict[str, Any]) -> str:
    parts = []
    for name, value in event.items():
        if name in EVENT_SKIP or value is None:
            continue
        if isinstance(value, (dict, list)):
            value = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        parts.append(f"{name}={value}")
    return " ".join(parts)


def render_events(item: dict[str, Any]) -> str:
    events = item.get("recentEvents") or []
    if not events:
        table = '<p class="empty">No recent events in the journal.</p>'
    else:
        rows = "".join(
            f'<tr><td class="nowrap">{e(clock(ev.get("ts") or ev.get("receivedAt")))}</td>'
            f'<td class="mono nowrap">{e(ev.get("type"))}</td><td class="mono details">{e(event_details(ev))}</td></tr>'
            for ev in events
        )
        table = (
            '<table class="grid compact"><thead><tr><th>Time</th><th>Event</th><th>Details</th></tr></thead>'
            f"<tbody>{rows}</tbody></table>"
        )
    return f'<section class="panel"><div class="panel-head"><h2>Recent events</h2><span class="hint">newest first</span></div>{table}</section>'


def render_detail(request: Request, item: dict[str, Any]) -> str:
    base = _base(request)
    key = item.get("sessionKey") or item.get("sessionId") or ""
    body = (
        f'<p class="crumbs"><a href="{e(base)}/">← All sessions</a></p>'
        f'<div id="detail">{render_detail_body(item, base)}</div>'
    )
    return _layout(request, f"{key} · OpenClaw diagnostics", "session", body,
                   {"gateway": item["gatewayId"], "key": key})


def render_login(request: Request, next_path: str, error: str | None = None) -> str:
    base = _base(request)
    message = f'<p class="error" role="alert">{e(error)}</p>' if error else ""
    body = (
        '<section class="panel login"><h1>Sign in</h1>'
        "<p>This service requires a token (one of <span class=\"mono\">OPENCLAW_DIAG_INGEST_TOKENS</span>). "
        "It is kept in an HttpOnly cookie for this browser session.</p>"
        f"{message}"
        f'<form method="post" action="{e(base)}/ui/login">'
        f'<input type="hidden" name="next" value="{e(next_path)}">'
        '<label for="token">Token</label>'
        '<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>'
        '<button type="submit">Sign in</button></form></section>'
    )
    return _layout(request, "Sign in · OpenClaw diagnostics", "login", body)


def render_message(request: Request, title: str, text: str) -> str:
    base = _base(request)
    body = (
        f'<p class="crumbs"><a href="{e(base)}/">← All sessions</a></p>'
        f'<section class="panel"><h1>{e(title)}</h1><p>{text}</p></section>'
    )
    return _layout(request, f"{title} · OpenClaw diagnostics", "message", body)


# -- routes -----------------------------------------------------------------------------------------------


def _login_response(request: Request) -> HTMLResponse:
    path = request.url.path
    if request.url.query:
        path += "?" + request.url.query
    response = _html(render_login(request, _safe_next(path)), 401)
    response.headers["WWW-Authenticate"] = "Bearer"
    return response


@router.get("/", response_class=HTMLResponse)
async def overview(request: Request) -> Response:
    if not _authorized(request):
        return _login_response(request)
    return _html(render_overview(request, overview_state(_service(request), auth.scope_of(request))))


@router.get("/ui/state.json")
async def state_json(request: Request) -> Response:
    auth.require_token(request)
    return JSONResponse(overview_state(_service(request), auth.scope_of(request)), headers={"Cache-Control": "no-store"})


async def _session_item(request: Request, gateway: str | None, key: str) -> dict[str, Any]:
    # The read API's own handler: same lookup, same 404/409, same representation.
    return await api.get_session(request, sessionKey=key, gatewayId=gateway)


@router.get("/ui/session", response_class=HTMLResponse)
async def session_page(
    request: Request,
    sessionKey: str = Query(..., max_length=512),
    gatewayId: str | None = Query(None, max_length=128),
) -> Response:
    if not _authorized(request):
        return _login_response(request)
    try:
        item = await _session_item(request, gatewayId, sessionKey)
    except ApiError as exc:
        if exc.status == 409:
            base = _base(request)
            links = "".join(
                f'<li><a href="{e(session_href(base, d["msg"], sessionKey))}">{e(d["msg"])}</a></li>'
                for d in exc.details
            )
            text = f"Several gateways have a session <span class=\"mono\">{e(sessionKey)}</span>:<ul>{links}</ul>"
            return _html(render_message(request, "Which gateway?", text), 409)
        text = f"No session <span class=\"mono\">{e(sessionKey)}</span> is tracked (it may have been evicted)."
        return _html(render_message(request, "Unknown session", text), exc.status)
    return _html(render_detail(request, item))


@router.get("/ui/session.json")
async def session_json_route(
    request: Request,
    sessionKey: str = Query(..., max_length=512),
    gatewayId: str | None = Query(None, max_length=128),
) -> Response:
    auth.require_token(request)
    item = await _session_item(request, gatewayId, sessionKey)
    return JSONResponse(item, headers={"Cache-Control": "no-store"})


@router.post("/ui/login")
async def login(request: Request) -> Response:
    service = _service(request)
    if not service.reading_tokens:
        return RedirectResponse(f"{_base(request)}/", status_code=303)
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > LOGIN_BODY_LIMIT:
            return _html(render_login(request, "/", "The form was too large."), 413)
    form = parse_qs(body.decode("utf-8", errors="replace"), max_num_fields=10)
    token = (form.get("token") or [""])[0].strip()
    next_path = _safe_next((form.get("next") or ["/"])[0])
    ok, _ = authorize(service.reading_tokens, f"Bearer {token}".encode()) if token else (False, None)
    if not ok:
        response = _html(render_login(request, next_path, "That token is not accepted."), 401)
        return response
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


STATIC_PATH = "/ui/static"  # app/http/static/, mounted by install_static_files
STATIC_DIR = Path(__file__).with_name("static")
STATIC_HEADERS = {"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"}


class _StaticFiles(StaticFiles):
    """Starlette's StaticFiles, with the page's cache lifetime and `nosniff` on every answer."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(STATIC_HEADERS)
        return response


def install_static_files(app: FastAPI) -> None:
    """Serve app/http/static/ (the page's app.css and app.js) under /ui/static/."""
    app.mount(STATIC_PATH, _StaticFiles(directory=STATIC_DIR), name="ui-static")


@router.get("/ui/app.css")
@router.get("/ui/app.js")
async def moved_asset(request: Request) -> Response:
    """The files' addresses before they moved under /ui/static/ (a page loaded before an upgrade)."""
    name = request.url.path.rsplit("/", 1)[1]
    return RedirectResponse(f"{_base(request)}{STATIC_PATH}/{name}", status_code=301)

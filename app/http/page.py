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
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

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
        f'<link rel="stylesheet" href="{e(base)}/ui/app.css"></head>'
        f"<body{attrs}>"
        f'<header class="top"><a class="brand" href="{e(base)}/"><span class="logo">◎</span> OpenClaw diagnostics</a>'
        f'<div class="top-right">{unauth}{live}{signout}</div></header>'
        f"<main>{body}</main>"
        f'<script src="{e(base)}/ui/app.js"></script></body></html>'
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


_STATIC_HEADERS = {"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"}


@router.get("/ui/app.css")
async def stylesheet() -> Response:
    return Response(CSS, media_type="text/css; charset=utf-8", headers=_STATIC_HEADERS)


@router.get("/ui/app.js")
async def script() -> Response:
    return Response(JS, media_type="text/javascript; charset=utf-8", headers=_STATIC_HEADERS)


CSS = """
:root {
  --bg: #f4f5f7; --panel: #fff; --line: #e3e6ea; --text: #1d2430; --muted: #6b7380;
  --stuck: #c62828; --stuck-bg: #fdecea; --stalled: #b45309; --stalled-bg: #fff4e0;
  --long: #1d5fd1; --long-bg: #e8f0fe; --ok: #1b7f3b; --ok-bg: #e7f5ec; --accent: #2c3e66;
  --mono: ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace;
}
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--text);
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
a { color: var(--long); text-decoration: none; }
a:hover { text-decoration: underline; }
.top { display: flex; align-items: center; justify-content: space-between; padding: 10px 24px;
  background: var(--accent); color: #fff; }
.brand { color: #fff; font-weight: 600; font-size: 15px; letter-spacing: .2px; }
.brand:hover { text-decoration: none; }
.logo { opacity: .8; margin-right: 4px; }
.top-right { display: flex; align-items: center; gap: 10px; }
.pill { font-size: 12px; padding: 2px 10px; border-radius: 999px; background: rgba(255,255,255,.15); color: #fff; }
.pill.live::before { content: ""; display: inline-block; width: 7px; height: 7px; border-radius: 50%;
  background: #4ade80; margin-right: 6px; vertical-align: 1px; }
.pill.down { background: #7f1d1d; }
.pill.warn { background: #92400e; }
.signout button { background: transparent; border: 1px solid rgba(255,255,255,.4); color: #fff;
  border-radius: 6px; padding: 2px 10px; font-size: 12px; cursor: pointer; }
main { max-width: 1320px; margin: 0 auto; padding: 20px 24px 32px; }
.cards { display: grid; grid-template-columns: repeat(5, minmax(0, 1fr)); gap: 12px; margin-bottom: 16px; }
.card { background: var(--panel); border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px;
  border-top: 3px solid var(--line); }
.card.stuck { border-top-color: var(--stuck); }
.card.stalled { border-top-color: var(--stalled); }
.card.long { border-top-color: var(--long); }
.card-label { font-size: 12px; color: var(--muted); text-transform: uppercase; letter-spacing: .5px; }
.card-value { font-size: 26px; font-weight: 600; margin: 2px 0; font-variant-numeric: tabular-nums; }
.card.stuck.active .card-value { color: var(--stuck); }
.card.stalled.active .card-value { color: var(--stalled); }
.card.long.active .card-value { color: var(--long); }
.card-note { font-size: 12px; color: var(--muted); }
.panel { background: var(--panel); border: 1px solid var(--line); border-radius: 8px; padding: 14px 16px;
  margin-bottom: 16px; overflow-x: auto; }
.panel-head { display: flex; align-items: baseline; gap: 12px; margin-bottom: 8px; }
h1 { font-size: 20px; margin: 0 0 6px; }
h2 { font-size: 14px; margin: 0 0 8px; text-transform: uppercase; letter-spacing: .5px; color: var(--muted); }
.panel-head h2 { margin: 0; }
.hint { font-size: 12px; color: var(--muted); }
table.grid { width: 100%; border-collapse: collapse; }
.grid th { text-align: left; font-size: 12px; font-weight: 600; color: var(--muted); padding: 6px 10px;
  border-bottom: 1px solid var(--line); white-space: nowrap; }
.grid td { padding: 7px 10px; border-bottom: 1px solid #eef0f3; vertical-align: top; }
.grid tbody tr:hover { background: #fafbfc; }
.grid.compact td { padding: 5px 10px; }
.grid tr.sev-stuck td:first-child { box-shadow: inset 3px 0 0 var(--stuck); }
.grid tr.sev-stalled td:first-child { box-shadow: inset 3px 0 0 var(--stalled); }
.grid tr.sev-long td:first-child { box-shadow: inset 3px 0 0 var(--long); }
.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
th.num { text-align: right; }
.nowrap { white-space: nowrap; }
.grid td.nowrap { width: 1%; padding-right: 24px; }
.mono, .key { font-family: var(--mono); font-size: 12.5px; }
.session { min-width: 280px; }
.session .key { font-weight: 600; overflow-wrap: anywhere; }
.grid .shrink { width: 1%; white-space: nowrap; }
.sub { font-size: 12px; color: var(--muted); }
.muted { color: var(--muted); }
.details { word-break: break-all; color: #3b4452; }
.badge { display: inline-block; font-size: 11px; font-weight: 700; padding: 2px 8px; border-radius: 4px;
  text-transform: uppercase; letter-spacing: .4px; white-space: nowrap; }
.badge.stuck { color: var(--stuck); background: var(--stuck-bg); }
.badge.stalled { color: var(--stalled); background: var(--stalled-bg); }
.badge.long { color: var(--long); background: var(--long-bg); }
.badge.none { color: var(--ok); background: var(--ok-bg); }
.rec { font-size: 12px; }
.rec.pending { color: var(--stalled); }
.rec.ok { color: var(--ok); }
.rec.warn { color: var(--stalled); font-weight: 600; }
.rec.muted { color: var(--muted); }
.empty { color: var(--muted); margin: 6px 0; }
.more { color: var(--muted); font-size: 12px; }
footer { color: var(--muted); font-size: 12px; text-align: center; margin-top: 8px; }
.crumbs { margin: 0 0 12px; }
.detail-head { display: flex; align-items: center; gap: 12px; }
.detail-head h1 { margin: 0; font-size: 18px; overflow-wrap: anywhere; }
.cols { display: grid; grid-template-columns: repeat(3, minmax(0, 1fr)); gap: 12px; margin-top: 12px; }
.facts { display: grid; grid-template-columns: max-content 1fr; gap: 4px 14px; margin: 0; }
.facts dt { color: var(--muted); font-size: 12.5px; }
.facts dd { margin: 0; word-break: break-word; }
tr.gw td { color: #4b5563; }
.login { max-width: 440px; margin: 48px auto; }
.login label { display: block; font-weight: 600; margin: 14px 0 4px; }
.login input[type=password] { width: 100%; padding: 8px 10px; border: 1px solid #c9ced6; border-radius: 6px; font: inherit; }
.login button { margin-top: 12px; background: var(--accent); color: #fff; border: 0; border-radius: 6px;
  padding: 8px 16px; font: inherit; cursor: pointer; }
.error { color: var(--stuck); background: var(--stuck-bg); padding: 6px 10px; border-radius: 6px; }
@media (max-width: 900px) { .cards { grid-template-columns: repeat(2, minmax(0, 1fr)); } .cols { grid-template-columns: 1fr; } }
"""


JS = r"""
(function () {
  "use strict";
  // Everything below builds DOM nodes and sets textContent: nothing from the server is ever
  // parsed as HTML (session keys, tool names and reasons come from the network).
  var body = document.body;
  var base = body.dataset.base || "";
  var page = body.dataset.page;
  var live = document.getElementById("live");
  var SEV = {"session.stuck": "stuck", "session.stalled": "stalled", "session.long_running": "long"};
  var LABEL = {"session.stuck": "Stuck", "session.stalled": "Stalled", "session.long_running": "Long-running"};
  var DASH = "\u2013";

  function h(tag, attrs) {
    var node = document.createElement(tag);
    if (attrs) for (var name in attrs) {
      if (name === "text") node.textContent = attrs[name];
      else if (name === "cls") node.className = attrs[name];
      else node.setAttribute(name, attrs[name]);
    }
    for (var i = 2; i < arguments.length; i++) {
      var child = arguments[i];
      if (child === null || child === undefined) continue;
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }
  function human(ms) {
    if (ms === null || ms === undefined) return DASH;
    ms = Math.max(0, Math.floor(ms));
    if (ms < 1000) return ms + "ms";
    var s = Math.floor(ms / 1000);
    if (s < 60) return s + "s";
    var pad = function (n) { return (n < 10 ? "0" : "") + n; };
    if (s < 3600) return Math.floor(s / 60) + "m " + pad(s % 60) + "s";
    if (s < 86400) return Math.floor(s / 3600) + "h " + pad(Math.floor(s % 3600 / 60)) + "m";
    return Math.floor(s / 86400) + "d " + Math.floor(s % 86400 / 3600) + "h";
  }
  function stamp(ms) {
    if (ms === null || ms === undefined) return DASH;
    return new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
  }
  function badge(type) {
    if (!type) return h("span", {cls: "badge none", text: "OK"});
    return h("span", {cls: "badge " + (SEV[type] || "none"), text: LABEL[type] || type});
  }
  function sub(text, mono) { return h("div", {cls: mono ? "sub mono" : "sub", text: text}); }
  function sessionHref(gateway, key) {
    return base + "/ui/session?" + new URLSearchParams({gatewayId: gateway, sessionKey: key}).toString();
  }
  function workText(a) {
    if (!a.activeWorkKind) return DASH;
    var text = a.activeWorkKind.replace(/_/g, " ");
    if (a.activeToolName) text += " \u00b7 " + a.activeToolName + " (" + human(a.activeToolAgeMs) + ")";
    if (a.hasActiveEmbeddedRun && a.activeWorkKind !== "embedded_run") text += " \u00b7 run active";
    return text;
  }
  function progress(a) {
    if (a.lastProgressAgeMs === null || a.lastProgressAgeMs === undefined) return [DASH, ""];
    return [human(a.lastProgressAgeMs) + " ago", a.lastProgressReason || ""];
  }
  function recovery(item) {
    if (item.recoveryInFlight) return ["in flight", "pending"];
    var last = item.lastRecovery;
    if (!last) return [DASH, "muted"];
    if (last.kind === "requested") return ["requested", "pending"];
    var text = last.status + " / " + last.action;
    if (last.outcomeReason) text += " (" + last.outcomeReason + ")";
    if (last.stale) text += " \u00b7 stale";
    return [text, (last.status === "aborted" || last.status === "released") ? "ok" : "muted"];
  }
  function table(cls, headers, rows) {
    var head = h("tr");
    headers.forEach(function (col) {
      head.appendChild(h("th", col[1] ? {cls: "num", text: col[0]} : {text: col[0]}));
    });
    var tbody = h("tbody");
    rows.forEach(function (row) { tbody.appendChild(row); });
    return h("table", {cls: cls}, h("thead", null, head), tbody);
  }
  function replace(id, node) {
    var target = document.getElementById(id);
    if (!target) return;
    target.textContent = "";
    if (Array.isArray(node)) node.forEach(function (n) { target.appendChild(n); });
    else target.appendChild(node);
  }

  // -- overview -------------------------------------------------------------------------------
  function cards(state) {
    var c = state.counts, s = state.sessions;
    var silent = state.gateways.filter(function (g) { return g.silent; }).length;
    var list = [
      ["stuck", "Stuck", c.stuck, "recovery eligible"],
      ["stalled", "Stalled", c.stalled, "active work without progress"],
      ["long", "Long-running", c.long_running, "busy past the warn threshold"],
      ["neutral", "Sessions tracked", s.total, s.byState.processing + " processing \u00b7 " +
        s.byState.waiting + " waiting \u00b7 " + s.byState.idle + " idle"],
      [silent ? "stalled" : "neutral", "Gateways", state.gateways.length, silent ? silent + " silent" : "all reporting"]
    ];
    return list.map(function (card) {
      var active = (["stuck", "stalled", "long"].indexOf(card[0]) >= 0 && card[2]) ? " active" : "";
      return h("div", {cls: "card " + card[0] + active},
        h("div", {cls: "card-label", text: card[1]}),
        h("div", {cls: "card-value", text: String(card[2])}),
        h("div", {cls: "card-note", text: card[3]}));
    });
  }
  function attention(state) {
    if (!state.items.length) return h("p", {cls: "empty", text: "No session needs attention."});
    var rows = state.items.map(function (item) {
      var att = item.attention || {}, a = item.activity || {};
      var key = item.sessionKey || item.sessionId || "";
      var p = progress(a), r = recovery(item);
      return h("tr", {cls: "sev-" + (SEV[att.eventType] || "none")},
        h("td", null, badge(att.eventType)),
        h("td", {cls: "session"}, h("a", {cls: "key", href: sessionHref(item.gatewayId, key), text: key}),
          sub(item.gatewayId)),
        h("td", null, h("span", {cls: "mono", text: att.reason || ""}),
          sub(att.classification === att.reason ? "" : (att.classification || ""))),
        h("td", {cls: "num", text: human(att.attentionAgeMs)}),
        h("td", null, item.state, sub("queue " + item.queueDepth)),
        h("td", {text: workText(a)}),
        h("td", null, p[0], sub(p[1], true)),
        h("td", null, h("span", {cls: "rec " + r[1], text: r[0]})));
    });
    var nodes = [table("grid", [["Severity"], ["Session"], ["Reason"], ["Attention age", 1], ["State"],
      ["Active work"], ["Last progress"], ["Recovery"]], rows)];
    var more = state.underAttention - state.items.length;
    if (more > 0) nodes.push(h("p", {cls: "more", text: "\u2026 and " + more + " more (see GET /v1/sessions)"}));
    return nodes;
  }
  function gateways(state) {
    if (!state.gateways.length) return h("p", {cls: "empty", text: "No gateway has sent events yet."});
    var rows = state.gateways.map(function (g) {
      return h("tr", null,
        h("td", {cls: "mono", text: g.gatewayId}),
        h("td", null, g.silent ? h("span", {cls: "rec warn", text: "silent"}) : h("span", {cls: "rec ok", text: "reporting"})),
        h("td", {cls: "num", text: human(g.lastHeardAgoMs) + " ago"}),
        h("td", {cls: "num", text: g.clockSkewMs + " ms"}),
        h("td", {cls: "num", text: String(g.sessions)}),
        h("td", {cls: "num", text: String(g.eventsAccepted)}));
    });
    return table("grid compact", [["Gateway"], ["Status"], ["Last heard", 1], ["Clock skew", 1], ["Sessions", 1],
      ["Events accepted", 1]], rows);
  }
  function footer(state) {
    var m = state.monitor;
    return "warn " + human(m.warnMs) + " \u00b7 abort " + human(m.abortMs) + " \u00b7 scan every " +
      human(m.scanIntervalMs) + " \u00b7 recovery mode " + m.recoveryMode + " \u00b7 " +
      (m.running ? "monitor running" : "monitor NOT running");
  }
  function renderOverview(state) {
    replace("cards", cards(state));
    replace("attention", attention(state));
    replace("gateways", gateways(state));
    document.getElementById("footer").textContent = footer(state);
    var c = state.counts;
    document.title = (c.stuck ? "(" + c.stuck + " stuck) " : "") + "OpenClaw diagnostics";
  }

  // -- one session ----------------------------------------------------------------------------
  function facts(rows) {
    var dl = h("dl", {cls: "facts"});
    rows.forEach(function (row) {
      dl.appendChild(h("dt", {text: row[0]}));
      dl.appendChild(h("dd", null, row[1]));
    });
    return dl;
  }
  function usageText(u) {
    var tokens = (u.total === null || u.total === undefined) ? DASH : Number(u.total).toLocaleString("en-US");
    var cost = (u.costUsd === null || u.costUsd === undefined) ? DASH : "$" + Number(u.costUsd).toFixed(4);
    return tokens + " tokens \u00b7 " + cost;
  }
  function span(cls, text) { return h("span", {cls: cls, text: text}); }
  function frag() {
    var f = document.createDocumentFragment();
    for (var i = 0; i < arguments.length; i++) {
      var c = arguments[i];
      f.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    }
    return f;
  }
  function details(ev) {
    var skip = {type: 1, ts: 1, receivedAt: 1, gatewayId: 1, sessionKey: 1, sessionId: 1, seq: 1, eventId: 1};
    var parts = [];
    Object.keys(ev).forEach(function (name) {
      var v = ev[name];
      if (skip[name] || v === null || v === undefined) return;
      parts.push(name + "=" + (typeof v === "object" ? JSON.stringify(v) : String(v)));
    });
    return parts.join(" ");
  }
  function renderDetail(item) {
    var att = item.attention, a = item.activity || {}, usage = item.usage || {};
    var key = item.sessionKey || item.sessionId || "";
    var p = progress(a);
    var nodes = [];
    nodes.push(h("div", {cls: "detail-head"}, badge(att ? att.eventType : null), h("h1", {cls: "key", text: key})));
    nodes.push(h("p", {cls: "sub"}, "gateway ", span("mono", item.gatewayId), " \u00b7 session id ",
      span("mono", item.sessionId || DASH)));
    var sessionRows = [
      ["State", item.state], ["Queue depth", String(item.queueDepth)], ["Generation", String(item.generation)],
      ["Last activity", frag(human(item.ageMs) + " ago ", span("sub", stamp(item.lastActivityAt)))],
      ["Recovery in flight", item.recoveryInFlight ? "yes" : "no"],
      ["Usage", usageText(usage)]
    ];
    var attRows = att ? [
      ["Verdict", att.eventType], ["Reason", span("mono", att.reason)], ["Classification", att.classification],
      ["Attention age", human(att.attentionAgeMs)], ["Since", stamp(att.since)],
      ["Recovery eligible", att.recoveryEligible ? "yes" : "no"]
    ] : [["Verdict", span("muted", "not under attention")]];
    var actRows = [
      ["Active work", workText(a)], ["Tool call id", span("mono", a.activeToolCallId || DASH)],
      ["Last progress", frag(p[0] + " ", span("sub mono", p[1]))]
    ];
    if (item.gatewayVerdict) {
      var v = item.gatewayVerdict;
      actRows.push(["Gateway's own verdict", frag((v.eventType || "") + " ", span("mono", v.reason || ""), " ",
        span("sub", stamp(v.ts)))]);
    }
    nodes.push(h("section", {cls: "cols"},
      h("div", {cls: "panel"}, h("h2", {text: "Session"}), facts(sessionRows)),
      h("div", {cls: "panel"}, h("h2", {text: "Attention"}), facts(attRows)),
      h("div", {cls: "panel"}, h("h2", {text: "Activity"}), facts(actRows))));

    var recRows = (item.recoveries || []).map(function (r) {
      var at = r.kind === "completed" ? r.completedAt : r.requestedAt;
      var what;
      if (r.kind === "completed") {
        what = r.status + " / " + r.action + (r.outcomeReason ? " (" + r.outcomeReason + ")" : "") + (r.stale ? " \u00b7 stale" : "");
      } else {
        what = "requested" + (r.allowActiveAbort ? " \u00b7 active abort allowed" : "");
      }
      return h("tr", null, h("td", {cls: "nowrap", text: stamp(at)}), h("td", {text: r.kind || ""}), h("td", {text: what}),
        h("td", {cls: "mono", text: r.reason || ""}), h("td", {cls: "num", text: human(r.ageMs)}),
        h("td", {cls: "num", text: r.stateGeneration === undefined ? "" : String(r.stateGeneration)}));
    });
    (item.gatewayRecoveries || []).forEach(function (r) {
      var what = (r.eventType || "").replace("session.recovery.", "") + (r.status ? ": " + r.status + " / " + r.action : "");
      recRows.push(h("tr", {cls: "gw"}, h("td", {cls: "nowrap", text: stamp(r.ts)}), h("td", {text: "gateway"}),
        h("td", {text: what}), h("td", {cls: "mono", text: r.reason || r.outcomeReason || ""}),
        h("td", {cls: "num", text: human(r.ageMs)}), h("td", {cls: "num", text: DASH})));
    });
    var recBody = recRows.length ? table("grid compact", [["Time"], ["Kind"], ["Outcome"], ["Reason"], ["Age", 1],
      ["Generation", 1]], recRows) : h("p", {cls: "empty", text: "No recovery requested for this session."});
    nodes.push(h("section", {cls: "panel"}, h("div", {cls: "panel-head"}, h("h2", {text: "Recovery history"}),
      span("hint", "newest first")), recBody));

    var events = item.recentEvents || [];
    var evBody = events.length ? table("grid compact", [["Time"], ["Event"], ["Details"]], events.map(function (ev) {
      return h("tr", null, h("td", {cls: "nowrap", text: stamp(ev.ts || ev.receivedAt)}),
        h("td", {cls: "mono nowrap", text: ev.type || ""}), h("td", {cls: "mono details", text: details(ev)}));
    })) : h("p", {cls: "empty", text: "No recent events in the journal."});
    nodes.push(h("section", {cls: "panel"}, h("div", {cls: "panel-head"}, h("h2", {text: "Recent events"}),
      span("hint", "newest first")), evBody));
    replace("detail", nodes);
    document.title = key + " \u00b7 OpenClaw diagnostics";
  }

  // -- polling --------------------------------------------------------------------------------
  var INTERVAL = 2000;
  var lastOk = 0;
  function status(text, cls) {
    if (!live) return;
    live.textContent = text;
    live.className = "pill " + cls;
  }
  function tick(url, render) {
    if (document.hidden) { setTimeout(function () { tick(url, render); }, INTERVAL); return; }
    fetch(url, {credentials: "same-origin", cache: "no-store", headers: {"Accept": "application/json"}})
      .then(function (response) {
        if (response.status === 401) { status("signed out \u2013 reload", "down"); return null; }
        if (response.status === 404) { status("session no longer tracked", "down"); return null; }
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (data) {
        if (data === null) return;
        render(data);
        lastOk = Date.now();
        status("live", "live");
        setTimeout(function () { tick(url, render); }, INTERVAL);
      })
      .catch(function () {
        status(lastOk ? "reconnecting\u2026" : "offline", "down");
        setTimeout(function () { tick(url, render); }, INTERVAL * 2);
      });
  }
  if (page === "overview") {
    tick(base + "/ui/state.json", renderOverview);
  } else if (page === "session") {
    var query = new URLSearchParams({sessionKey: body.dataset.key, gatewayId: body.dataset.gateway});
    tick(base + "/ui/session.json?" + query.toString(), renderDetail);
  }
})();
"""

"""Fleet-wide reads: any instance answers for every instance (docs/scale-out.md).

With several instances each holds only its own gateways. A read that is not marked
`X-OpenClaw-Fleet: local` is asked of every instance the registry in PostgreSQL lists as alive
(addresses they registered themselves: never one a client names), with the caller's own
credentials, within a bounded time; the answers are merged, and an instance that owns gateways
but did not answer is named in `instances.missing`, not hidden.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

import httpx
from fastapi import Request, Response

from app.http.auth import service_of, token_from
from app.http.cursors import encode_cursor
from app.http.errors import ApiError
from app.journal.postgres import InstanceEntry
from app.queries import AmbiguousSession, UnknownSession

FLEET_HEADER = "x-openclaw-fleet"
ASK_TIMEOUT_S = 3.0


def is_fleet_read(request: Request) -> bool:
    return service_of(request).ownership.shared and request.headers.get(FLEET_HEADER) != "local"


def wants_keys(request: Request) -> bool:
    """A local answer to a fleet-wide read carries the sort keys the merge orders by."""
    return request.headers.get(FLEET_HEADER) == "local"


async def registry(request: Request) -> tuple[list[InstanceEntry], list[InstanceEntry]]:
    """The instances PostgreSQL lists: (heard from lately, with an address; the others). An
    instance heartbeats every scan interval."""
    entries = await asyncio.to_thread(service_of(request).journal.instances)  # type: ignore[attr-defined]
    live_s = max(5.0, 3 * service_of(request).settings.scan_interval_ms / 1000)
    live = [entry for entry in entries if entry.age_s <= live_s and entry.url]
    return live, [entry for entry in entries if entry not in live]


def forwarded_headers(request: Request) -> dict[str, str]:
    """The caller's credentials, as a bearer token (a page's cookie was checked here, with its
    CSRF token, before anything is forwarded), and the mark of a local answer."""
    headers = {FLEET_HEADER: "local"}
    token = token_from(request)
    if token is not None:
        headers["authorization"] = token.decode("latin-1")
    return headers


async def ask_all(request: Request, path: str, params: dict[str, Any], method: str = "GET",
                  body: Any = None) -> tuple[list[tuple[str, Any]], list[dict[str, Any]]]:
    """(instance, answer) of every live instance, and the instances that did not answer."""
    live, others = await registry(request)
    missing = [{"instance": entry.id, "gateways": len(entry.gateways),
                "reason": f"no heartbeat for {entry.age_s:.0f} s"}
               for entry in others if entry.gateways]
    headers = forwarded_headers(request)
    query = {name: value for name, value in params.items() if value is not None}
    async with httpx.AsyncClient(timeout=ASK_TIMEOUT_S) as client:
        async def one(url: str) -> Any:
            response = await client.request(method, url.rstrip("/") + path, params=query, headers=headers,
                                            json=body)
            response.raise_for_status()
            return response.json()

        results = await asyncio.gather(*(one(entry.url) for entry in live), return_exceptions=True)
    answered = []
    for entry, result in zip(live, results):
        if isinstance(result, BaseException):
            missing.append({"instance": entry.id, "gateways": len(entry.gateways),
                            "reason": type(result).__name__})
        else:
            answered.append((entry.id, result))
    return answered, missing


async def sessions(request: Request, params: dict[str, Any], limit: int) -> dict[str, Any]:
    """Every instance's page after the same cursor, merged in the API's order."""
    answered, missing = await ask_all(request, "/v1/sessions", params)
    items = sorted((item for _, body in answered for item in body["items"]), key=lambda item: item["sortKey"])
    more = len(items) > limit or any(body.get("nextCursor") for _, body in answered)
    page = items[:limit]
    next_cursor = encode_cursor(tuple(page[-1]["sortKey"])) if more and page else None
    for item in page:
        del item["sortKey"]
    return {"items": page, "nextCursor": next_cursor, "total": sum(body["total"] for _, body in answered),
            "instances": {"answered": sorted(name for name, _ in answered), "missing": missing}}


async def gateways(request: Request) -> dict[str, Any]:
    answered, missing = await ask_all(request, "/v1/gateways", {})
    items = sorted((item for _, body in answered for item in body["items"]), key=lambda item: item["gatewayId"])
    return {"items": items, "instances": {"answered": sorted(name for name, _ in answered), "missing": missing}}


async def attention(request: Request) -> dict[str, Any]:
    answered, missing = await ask_all(request, "/v1/attention", {})
    by_type: dict[str, int] = {}
    by_reason: dict[tuple[str, str], int] = {}
    merged: dict[str, Any] = {"total": 0, "needsHuman": [], "perGateway": {}, "oldest": []}
    for _, body in answered:
        merged["total"] += body["total"]
        merged["needsHuman"].extend(body["needsHuman"])
        merged["perGateway"].update(body["perGateway"])  # a gateway is one instance's
        merged["oldest"].extend(body["oldest"])
        for kind, count in body["byEventType"].items():
            by_type[kind] = by_type.get(kind, 0) + count
        for row in body["byReason"]:
            key = (row["eventType"], row["reason"])
            by_reason[key] = by_reason.get(key, 0) + row["count"]
    shown = max((len(body["oldest"]) for _, body in answered), default=0)
    merged["oldest"] = sorted(merged["oldest"], key=lambda item: -(item.get("attention") or {}).get("ageMs", 0))[:shown]
    merged["byEventType"] = by_type
    merged["byReason"] = [{"eventType": kind, "reason": reason, "count": count}
                          for (kind, reason), count in sorted(by_reason.items())]
    merged["instances"] = {"answered": sorted(name for name, _ in answered), "missing": missing}
    return merged


async def overview(request: Request, gateway: str | None, limit: int) -> dict[str, Any]:
    """The status page's overview for the fleet: counts summed, the most severe sessions of
    every instance in one order, every gateway; this instance's own monitor settings."""
    answered, missing = await ask_all(request, "/ui/state.json", {"gatewayId": gateway})
    if not answered:
        raise ApiError(503, "fleet_unavailable", "no instance answered; retry",
                       headers=[(b"retry-after", b"1")])
    mine = service_of(request).journal.instance_id  # type: ignore[attr-defined]
    own = next((body for name, body in answered if name == mine), answered[0][1])
    items = sorted((item for _, body in answered for item in body["items"]), key=lambda item: item["sortKey"])
    for item in items:
        del item["sortKey"]
    by_state = {state: sum(body["sessions"]["byState"][state] for _, body in answered)
                for state in own["sessions"]["byState"]}
    return {
        **own,
        "counts": {label: sum(body["counts"][label] for _, body in answered) for label in own["counts"]},
        "underAttention": sum(body["underAttention"] for _, body in answered),
        "items": items[:limit],
        "sessions": {"total": sum(body["sessions"]["total"] for _, body in answered), "byState": by_state},
        "gateways": sorted((g for _, body in answered for g in body["gateways"]), key=lambda g: g["gatewayId"]),
        "instances": {"answered": sorted(name for name, _ in answered), "missing": missing},
    }


async def recoveries(request: Request, body: dict[str, Any]) -> dict[str, Any]:
    """A bulk recovery fans out: each instance acts on its own sessions, paced per gateway."""
    answered, missing = await ask_all(request, "/v1/recoveries", {}, method="POST", body=body)
    merged: dict[str, Any] = {"dryRun": body.get("dryRun", True), "sessions": [], "truncated": False}
    audits = []
    for _, answer in answered:
        merged["sessions"].extend(answer["sessions"])
        merged["truncated"] = merged["truncated"] or answer["truncated"]
        if answer.get("auditId"):
            audits.append(answer["auditId"])
    if audits:
        merged["auditIds"] = audits
    merged["instances"] = {"answered": sorted(name for name, _ in answered), "missing": missing}
    return merged


async def owner_of(request: Request, gateway: str) -> str | None:
    """The address of the instance that owns `gateway`, when that is another live instance;
    None: this instance answers (it owns the gateway, or nobody does)."""
    service = service_of(request)
    if not service.ownership.shared or service.ownership.owns(gateway):
        return None
    journal = service.journal
    owner = await asyncio.to_thread(journal.owner_of, gateway)  # type: ignore[attr-defined]
    if owner is None or owner == journal.instance_id:  # type: ignore[attr-defined]
        return None
    live, _ = await registry(request)
    for entry in live:
        if entry.id == owner:
            return entry.url
    raise ApiError(503, "owner_unavailable", f"gateway {gateway}'s instance ({owner}) does not answer; retry",
                   headers=[(b"retry-after", b"2")])


async def forward(request: Request, url: str, path: str | None = None) -> Response:
    """The same request (to `path`, if given), to the owner; its answer as it is."""
    headers = forwarded_headers(request)
    if "content-type" in request.headers:
        headers["content-type"] = request.headers["content-type"]
    try:
        async with httpx.AsyncClient(timeout=ASK_TIMEOUT_S) as client:
            answer = await client.request(request.method, url.rstrip("/") + (path or request.url.path),
                                          params=request.query_params, content=await request.body(), headers=headers)
    except httpx.HTTPError as exc:
        raise ApiError(503, "owner_unavailable", f"the gateway's instance did not answer ({type(exc).__name__}); retry",
                       headers=[(b"retry-after", b"2")]) from None
    return Response(answer.content, status_code=answer.status_code,
                    media_type=answer.headers.get("content-type", "application/json"))


def session_path(key: str) -> str:
    """The read API's address of one session (a key may hold any character)."""
    return "/v1/sessions/" + quote(key, safe="")


async def find_session(request: Request, key: str) -> dict[str, Any]:
    """A session named without its gateway, looked for on every live instance: the one that
    holds it answers; none is UnknownSession, several (on one instance or more) AmbiguousSession
    naming their gateways, as a local lookup says it (app/http/api.py answers 404 and 409)."""
    live, _ = await registry(request)
    headers = forwarded_headers(request)
    async with httpx.AsyncClient(timeout=ASK_TIMEOUT_S) as client:
        results = await asyncio.gather(*(client.get(entry.url.rstrip("/") + session_path(key), headers=headers)
                                         for entry in live), return_exceptions=True)
    found: list[dict[str, Any]] = []
    gateways: list[str] = []
    for result in results:
        if not isinstance(result, httpx.Response):
            continue
        if result.status_code == 200:
            found.append(result.json())
            gateways.append(found[-1]["gatewayId"])
        elif result.status_code == 409:  # several on that instance
            gateways.extend(detail["msg"] for detail in result.json()["error"]["details"])
    if len(gateways) == 1 and found:
        return found[0]
    if not gateways:
        raise UnknownSession(key)
    raise AmbiguousSession(sorted(gateways))

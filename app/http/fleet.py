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

import httpx
import orjson
from fastapi import Request, Response

from app.http.auth import service_of, token_from
from app.http.cursors import encode_cursor
from app.http.errors import ApiError

FLEET_HEADER = "x-openclaw-fleet"
ASK_TIMEOUT_S = 3.0


def is_fleet_read(request: Request) -> bool:
    return service_of(request).ownership.shared and request.headers.get(FLEET_HEADER) != "local"


def wants_keys(request: Request) -> bool:
    """A local answer to a fleet-wide read carries the sort keys the merge orders by."""
    return request.headers.get(FLEET_HEADER) == "local"


def live_within_s(request: Request) -> float:
    return max(5.0, 3 * service_of(request).settings.scan_interval_ms / 1000)


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
    journal = service_of(request).journal
    entries = await asyncio.to_thread(journal.instances)  # type: ignore[attr-defined]
    live_s = live_within_s(request)
    live = [entry for entry in entries if entry.age_s <= live_s and entry.url]
    missing = [{"instance": entry.id, "gateways": len(entry.gateways),
                "reason": f"no heartbeat for {entry.age_s:.0f} s"}
               for entry in entries if entry.age_s > live_s and entry.gateways]
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
    entries = await asyncio.to_thread(journal.instances)  # type: ignore[attr-defined]
    live_s = live_within_s(request)
    for entry in entries:
        if entry.id == owner and entry.url and entry.age_s <= live_s:
            return entry.url
    raise ApiError(503, "owner_unavailable", f"gateway {gateway}'s instance ({owner}) does not answer; retry",
                   headers=[(b"retry-after", b"2")])


async def forward(request: Request, url: str) -> Response:
    """The same request, to the owner; its answer as it is."""
    headers = forwarded_headers(request)
    if "content-type" in request.headers:
        headers["content-type"] = request.headers["content-type"]
    try:
        async with httpx.AsyncClient(timeout=ASK_TIMEOUT_S) as client:
            answer = await client.request(request.method, url.rstrip("/") + request.url.path,
                                          params=request.query_params, content=await request.body(), headers=headers)
    except httpx.HTTPError as exc:
        raise ApiError(503, "owner_unavailable", f"the gateway's instance did not answer ({type(exc).__name__}); retry",
                       headers=[(b"retry-after", b"2")]) from None
    return Response(answer.content, status_code=answer.status_code,
                    media_type=answer.headers.get("content-type", "application/json"))


async def find_session(request: Request, key: str) -> Response | None:
    """A session named without its gateway and not held here: the instance that holds it."""
    if not service_of(request).ownership.shared or request.headers.get(FLEET_HEADER) == "local":
        return None
    answered, _ = await ask_all_quietly(request, f"/v1/sessions/{key}")
    if len(answered) == 1:
        return Response(content=orjson.dumps(answered[0]), media_type="application/json")
    if len(answered) > 1:
        raise ApiError(409, "ambiguous_session", f"{len(answered)} gateways have a session {key!r}; name one "
                       "with ?gatewayId=", [{"loc": ["query", "gatewayId"], "msg": item["gatewayId"]}
                                            for item in answered])
    return None


async def ask_all_quietly(request: Request, path: str) -> tuple[list[Any], list[dict[str, Any]]]:
    """Like ask_all, keeping only the 200 answers (a 404 from an instance is no failure here)."""
    journal = service_of(request).journal
    entries = await asyncio.to_thread(journal.instances)  # type: ignore[attr-defined]
    live_s = live_within_s(request)
    me = journal.instance_id  # type: ignore[attr-defined]
    live = [entry for entry in entries if entry.age_s <= live_s and entry.url and entry.id != me]
    headers = forwarded_headers(request)
    async with httpx.AsyncClient(timeout=ASK_TIMEOUT_S) as client:
        results = await asyncio.gather(*(client.get(entry.url.rstrip("/") + path, headers=headers) for entry in live),
                                       return_exceptions=True)
    found = [result.json() for result in results
             if isinstance(result, httpx.Response) and result.status_code == 200]
    return found, []

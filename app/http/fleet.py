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
from fastapi import Request

from app.http.auth import service_of
from app.http.cursors import encode_cursor

FLEET_HEADER = "x-openclaw-fleet"
ASK_TIMEOUT_S = 3.0


def is_fleet_read(request: Request) -> bool:
    return service_of(request).ownership.shared and request.headers.get(FLEET_HEADER) != "local"


def wants_keys(request: Request) -> bool:
    """A local answer to a fleet-wide read carries the sort keys the merge orders by."""
    return request.headers.get(FLEET_HEADER) == "local"


async def ask_all(request: Request, path: str, params: dict[str, Any]) -> tuple[list[tuple[str, Any]], list[dict[str, Any]]]:
    """(instance, answer) of every live instance, and the instances that did not answer."""
    service = service_of(request)
    journal = service.journal
    entries = await asyncio.to_thread(journal.instances)  # type: ignore[attr-defined]
    live_s = max(5.0, 3 * service.settings.scan_interval_ms / 1000)
    live = [entry for entry in entries if entry.age_s <= live_s and entry.url]
    missing = [{"instance": entry.id, "gateways": len(entry.gateways),
                "reason": f"no heartbeat for {entry.age_s:.0f} s"}
               for entry in entries if entry.age_s > live_s and entry.gateways]
    headers = {FLEET_HEADER: "local"}
    if "authorization" in request.headers:
        headers["authorization"] = request.headers["authorization"]
    query = {name: value for name, value in params.items() if value is not None}
    async with httpx.AsyncClient(timeout=ASK_TIMEOUT_S) as client:
        async def one(url: str) -> Any:
            response = await client.get(url.rstrip("/") + path, params=query, headers=headers)
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

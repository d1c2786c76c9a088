"""Reading sessions back through the read API: shared by the service as a process
(tests/support/service_process.py) and in this process (tests/support/inprocess.py)."""

from __future__ import annotations

from typing import Any


class ReadsSessions:
    """Needs a `client` (httpx.Client or Starlette's TestClient) whose token may read."""

    client: Any

    def session(self, key: str, gateway: str | None = None) -> dict[str, Any]:
        """GET /v1/sessions/{key}: the body, asserting 200."""
        params = {"gatewayId": gateway} if gateway else None
        response = self.client.get(f"/v1/sessions/{key}", params=params)
        assert response.status_code == 200, f"GET session {key}: {response.status_code} {response.text}"
        return response.json()

    def sessions(self, **params: Any) -> list[dict[str, Any]]:
        """GET /v1/sessions following nextCursor to the end: every item."""
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            query = {**params, "limit": params.get("limit", 1000)}
            if cursor:
                query["cursor"] = cursor
            response = self.client.get("/v1/sessions", params=query)
            assert response.status_code == 200, response.text
            body = response.json()
            items.extend(body["items"])
            cursor = body["nextCursor"]
            if not cursor:
                return items

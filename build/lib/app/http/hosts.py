"""The `Host` header allow-list (OPENCLAW_DIAG_ALLOWED_HOSTS): a DNS-rebinding page reaches the
service under a name of its own choosing, so only the names the operator expects are answered.

Default: `localhost`, `127.0.0.1`, `[::1]` and the bind address, any port. `*` answers every
name, and only when set explicitly. The health probes answer whatever the Host (a load
balancer's check sends none, and they carry no data).
"""

from __future__ import annotations

import orjson

HEALTH_PROBES = frozenset({"/healthz", "/readyz"})
_DEFAULT = ("localhost", "127.0.0.1", "::1")
_ANY_ADDRESS = frozenset({"0.0.0.0", "::", ""})


class HostAllowList:
    def __init__(self, setting: str, bind_host: str) -> None:
        names = [name.strip().lower() for name in setting.split(",") if name.strip()]
        self.any = "*" in names
        if not names:
            names = [*_DEFAULT, *([] if bind_host in _ANY_ADDRESS else [bind_host.lower()])]
        self.names = frozenset(_bare(name) for name in names)

    def allows(self, host: bytes | None) -> bool:
        if self.any:
            return True
        if not host:
            return False
        return _bare(_without_port(host.decode("latin-1").strip().lower())) in self.names

    async def refuse(self, send) -> None:  # type: ignore[no-untyped-def]
        """The ASGI answer to a Host not on the list: 400 with the error envelope."""
        body = orjson.dumps({"error": {
            "code": "host_not_allowed",
            "message": "this Host is not served here (OPENCLAW_DIAG_ALLOWED_HOSTS)",
            "details": [{"loc": ["header", "host"], "msg": "not on the allow-list"}],
        }})
        await send({"type": "http.response.start", "status": 400,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def _without_port(host: str) -> str:
    if host.startswith("["):
        return host[: host.find("]") + 1] if "]" in host else host
    name, colon, port = host.rpartition(":")
    return name if colon and port.isdigit() and ":" not in name else host


def _bare(name: str) -> str:
    return name[1:-1] if name.startswith("[") and name.endswith("]") else name

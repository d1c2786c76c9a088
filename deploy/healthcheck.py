"""Container healthcheck for the service: GET /readyz on its own port, exit 0 on a 200.

python:3.11-slim ships neither curl nor wget, so the check is a few lines of stdlib. It reads
the same settings the service does, so it follows a changed OPENCLAW_DIAG_PORT, and it sends
the first configured ingest token, so it keeps working with OPENCLAW_DIAG_PROTECT_METRICS=true.
/readyz (journal open, monitor running) rather than /healthz: "healthy" gates the containers
that depend on the service, and a down collector only degrades /readyz, it never fails it.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def target_url() -> str:
    host = os.environ.get("OPENCLAW_DIAG_HOST", "127.0.0.1").strip()
    # A wildcard bind is reachable on loopback; anything else is probed where it is bound.
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    port = os.environ.get("OPENCLAW_DIAG_PORT", "8080").strip() or "8080"
    return f"http://{host}:{port}/readyz"


def first_token() -> str:
    # OPENCLAW_DIAG_INGEST_TOKENS is "token[=gatewayId],..."; any accepted token will do.
    for item in os.environ.get("OPENCLAW_DIAG_INGEST_TOKENS", "").split(","):
        token = item.partition("=")[0].strip()
        if token:
            return token
    return ""


def main() -> int:
    request = urllib.request.Request(target_url())
    token = first_token()
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=3) as response:
            status = response.status
    except (urllib.error.URLError, OSError) as exc:  # HTTPError (4xx/5xx) is a URLError too
        print(f"unhealthy: {exc}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"unhealthy: /readyz answered {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

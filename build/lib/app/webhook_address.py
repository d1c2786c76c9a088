"""Where a recovery request for a gateway goes, and with which secret — never where a client says.

A gateway id comes from the events, so from whoever can send them. The operator's settings
decide every address (docs/security.md):

- `OPENCLAW_DIAG_RECOVERY_WEBHOOK_URLS` (`gw=url,…`) names a gateway's own address;
- else the template `OPENCLAW_DIAG_RECOVERY_WEBHOOK_URL` takes the id in place of `{gatewayId}`,
  but only an id of one safe label (`[A-Za-z0-9_-]{1,63}`: no dot, slash, colon, `@` or `%`),
  so it can leave neither a path segment nor a DNS label; where the template's whole host is
  `{gatewayId}`, the id must also be listed in `OPENCLAW_DIAG_RECOVERY_GATEWAYS`;
- `OPENCLAW_DIAG_RECOVERY_WEBHOOK_TOKENS` (`gw=token,…`) gives a gateway its own secret, else the
  shared `OPENCLAW_DIAG_RECOVERY_WEBHOOK_TOKEN`.

A gateway that cannot be addressed this way gets no request: `failed / unsafe_gateway_id`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

PLACEHOLDER = "{gatewayId}"
SAFE_LABEL = re.compile(r"[A-Za-z0-9_-]{1,63}")


@dataclass(frozen=True, slots=True)
class Address:
    url: str
    token: str  # "" for none


def parse_pairs(text: str) -> dict[str, str]:
    """`gw=value,…`, split at the first `=` (gateway ids hold none; a base64 secret may)."""
    pairs = {}
    for item in text.split(","):
        gateway, equals, value = item.strip().partition("=")
        if not item.strip():
            continue
        if not equals or not gateway.strip() or not value.strip():
            raise ValueError(f"{item.strip()!r} is not gatewayId=value")
        pairs[gateway.strip()] = value.strip()
    return pairs


class AddressBook:
    def __init__(self, template: str, token: str = "", urls: str = "", tokens: str = "",
                 gateways: str = "") -> None:
        self.template = template
        self.token = token
        self.urls = parse_pairs(urls)
        self.tokens = parse_pairs(tokens)
        self.gateways = frozenset(g.strip() for g in gateways.split(",") if g.strip())
        # a template whose whole host is the placeholder lets the id pick the machine
        self.host_is_gateway = urlsplit(template.replace(PLACEHOLDER, "gatewayid")).hostname == "gatewayid" \
            and PLACEHOLDER in template

    def address(self, gateway_id: str) -> Address | None:
        token = self.tokens.get(gateway_id, self.token)
        url = self.urls.get(gateway_id)
        if url is not None:
            return Address(url, token)
        if not self.template:
            return None
        if PLACEHOLDER in self.template:
            if not SAFE_LABEL.fullmatch(gateway_id):
                return None
            if self.host_is_gateway and gateway_id not in self.gateways:
                return None
        return Address(self.template.replace(PLACEHOLDER, gateway_id), token)

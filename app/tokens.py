"""Bearer tokens as the settings write them: `name:token=gw1|gw2`, comma-separated.

One parser for every token variable (README, "Auth: tokens, roles, tenancy"): the binding is the text after the LAST `=`
when that text is a non-empty list of valid gateway ids, so base64 padding stays in the token
(`abc==` is the token `abc==`; `abc==gw-a` is the token `abc=` bound to `gw-a`); the name is the
text before the first `:`. An empty token — `=gw`, or a variable that expanded to nothing — is
an error: it would make the empty bearer token valid.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# What a binding may name: gateway ids as gateways send them, without `=`, `,` or `|`.
_GATEWAY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")


@dataclass(frozen=True, slots=True)
class TokenEntry:
    token: str
    name: str | None  # for the audit log and messages; never the token itself
    gateways: frozenset[str] | None  # None: any gateway


def parse_tokens(text: str) -> list[TokenEntry]:
    """Raises ValueError (the message names no token) on an empty token."""
    entries = []
    for position, raw in enumerate(text.split(","), 1):
        item = raw.strip()
        if not item:
            continue
        name = None
        head, colon, rest = item.partition(":")
        if colon and "=" not in head:
            name, item = head.strip() or None, rest.strip()
        token, equals, binding = item.rpartition("=")
        gateways = None
        if equals and binding and all(_GATEWAY_ID.fullmatch(g.strip()) for g in binding.split("|")):
            gateways = frozenset(g.strip() for g in binding.split("|"))
        else:
            token = item
        if not token.strip().strip("="):  # `=gw`, or `=` alone: both variables unset
            raise ValueError(f"entry {position} has an empty token (an unset variable?): every token must be "
                             "non-empty")
        entries.append(TokenEntry(token.strip(), name, gateways))
    return entries

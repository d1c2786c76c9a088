"""The listing cursor: a sort key, opaque to the client (one instance's or the fleet's: the same)."""

from __future__ import annotations

import base64

import orjson

from app.http.errors import ApiError
from app.queries import SortKey



def encode_cursor(key: SortKey) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(list(key))).decode().rstrip("=")


def decode_cursor(cursor: str) -> SortKey:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        rank, age, key, gateway = orjson.loads(base64.urlsafe_b64decode(padded))
        if not (isinstance(rank, int) and isinstance(age, int) and isinstance(key, str) and isinstance(gateway, str)):
            raise ValueError
        return (rank, age, key, gateway)
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise ApiError(422, "validation_failed", "invalid cursor",
                       [{"loc": ["query", "cursor"], "msg": "not a cursor this service issued"}]) from None

"""Decoding a request body into events (README, "HTTP API"; docs/security.md).

A body is split into its events without building them (so a count over the limit costs a syntax
scan), then decoded event by event in slices: a typed decode on the happy path, and for an event
that fails it, a slow path that names the bad field, so one bad event never drops the good ones.
The decoders are step generators: the ingest path yields to the event loop between steps, and
everything else (replay, tests, benchmarks) runs them to the end in one go.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import msgspec

from app.events import (
    KNOWN_TYPES,
    REQUIRED_FIELDS,
    SESSION_SCOPED_TYPES,
    SESSION_STATES,
    Event,
)

_ID_FIELDS = ("eventId", "gatewayId", "sessionKey", "sessionId", "runId")


@dataclass(slots=True)
class Rejection:
    index: int
    errors: list[dict[str, Any]]
    # for the events counter: the event's type when it names a known one, and its gateway
    type: str = "other"
    gateway: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"index": self.index, "errors": self.errors}


@dataclass(slots=True)
class Decoded:
    """A body split into valid events (with their index) and rejections."""

    events: list[tuple[int, Event]] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    total: int = 0


class BodyError(Exception):
    """The body as a whole cannot be parsed (400)."""


class TooManyEvents(Exception):
    """The body holds more events than a request may (413); found before decoding them."""

    def __init__(self, count: int) -> None:
        super().__init__(count)
        self.count = count


# How many events are decoded and checked between two yields of a step generator: a small step
# (well under a millisecond even on the slow path), so that the ingest path, which looks at the
# clock between steps (app/http/ingest.py, DECODE_SLICE_S), gives the event loop back within ~1 ms.
DECODE_SLICE = 64

_raw_items = msgspec.json.Decoder(list[msgspec.Raw])
_event_decoder = msgspec.json.Decoder(Event)
_loc_re = re.compile(r" - at `\$((?:\[\d+\])?)((?:\.[A-Za-z0-9_]+|\[\d+\])*)`$")


def _error_loc(message: str, index: int, skip_index: bool) -> tuple[list[Any], str]:
    """Turn msgspec's "... - at `$[3].usage.input`" into (["body", 3, "usage", "input"], "...")."""
    loc: list[Any] = ["body", index]
    match = _loc_re.search(message)
    if not match:
        missing = re.search(r"missing required field `([^`]+)`", message)
        if missing:
            return [*loc, missing.group(1)], "field required"
        return loc, message
    msg = message[: match.start()]
    path = match.group(2) if skip_index else match.group(1) + match.group(2)
    for part in re.findall(r"\.([A-Za-z0-9_]+)|\[(\d+)\]", path):
        name, idx = part
        loc.append(name if name else int(idx))
    if not skip_index and match.group(1):
        loc.pop()  # the batch index is already the loc's second element
    if "missing required field" in msg:
        name = re.search(r"`([^`]+)`", msg)
        if name:
            loc.append(name.group(1))
            msg = "field required"
    return loc, msg


def _is_known_type_dict(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("type"), str) and value["type"].strip() in KNOWN_TYPES


def _trimmed(value: str) -> str | None:
    if value and value[0] > " " and value[-1] > " ":
        return value  # the common case: nothing to trim, no new string
    return value.strip() or None


def check_event(index: int, event: Event) -> Event | Rejection:
    """Normalise ids and check the per-type rules a schema cannot express."""
    for name in _ID_FIELDS:
        value = getattr(event, name)
        if value is not None and (not value or value[0] <= " " or value[-1] <= " "):
            setattr(event, name, value.strip() or None)
    kind = _trimmed(event.type)
    if kind is None:
        return Rejection(index, [{"loc": ["body", index, "type"], "msg": "field required"}])
    event.type = kind
    required = REQUIRED_FIELDS.get(kind)
    errors: list[dict[str, Any]] | None = None
    if required:
        for name in required:
            value = getattr(event, name)
            if isinstance(value, str):
                value = _trimmed(value)
                setattr(event, name, value)
            if not value:
                errors = errors or []
                errors.append({"loc": ["body", index, name], "msg": "field required"})
    if kind == "session.state" and event.state is not None and event.state not in SESSION_STATES:
        errors = errors or []
        errors.append({"loc": ["body", index, "state"], "msg": "must be one of idle, processing, waiting"})
    if (
        kind in SESSION_SCOPED_TYPES
        and event.sessionKey is None
        and event.sessionId is None
        and event.runId is None
    ):
        errors = errors or []
        errors.append({"loc": ["body", index], "msg": "sessionKey, sessionId or runId is required"})
    if errors:
        return Rejection(index, errors, kind if kind in KNOWN_TYPES else "other", event.gatewayId)
    return event


def _check_value(index: int, value: Any) -> Event | Rejection:
    """Validate one already-parsed JSON value."""
    if isinstance(value, dict) and isinstance(value.get("type"), str) and not _is_known_type_dict(value):
        value = _envelope(value)
    try:
        event = msgspec.convert(value, Event)
    except msgspec.ValidationError as exc:
        loc, msg = _error_loc(str(exc), index, skip_index=True)
        if "_OutOfRange" in msg:
            msg = "number out of range (int64 / finite float)"
        if loc == ["body", index] and "Expected `object`" in msg:
            msg = "event must be a JSON object"
        fields = value if isinstance(value, dict) else {}
        kind, gateway = fields.get("type"), fields.get("gatewayId")
        known = kind.strip() if isinstance(kind, str) and kind.strip() in KNOWN_TYPES else "other"
        gateway = gateway.strip() or None if isinstance(gateway, str) and len(gateway) <= 128 else None
        return Rejection(index, [{"loc": loc, "msg": msg}], known, gateway)
    return check_event(index, event)


def _envelope(value: dict[str, Any]) -> dict[str, Any]:
    """An unknown type's own fields are not ours to check; its envelope still is."""
    return {name: value[name] for name in ("type", "ts", "seq", "eventId", "gatewayId") if name in value}


def _collect(decoded: Decoded, index: int, result: Event | Rejection) -> None:
    if isinstance(result, Rejection):
        decoded.rejected.append(result)
    else:
        decoded.events.append((index, result))


def _decode_one(decoded: Decoded, index: int, item: bytes | msgspec.Raw, body: bytes | None) -> None:
    """One event's bytes: the typed decode, or, when that fails, the slow path that names the bad
    field and lets an unknown type keep fields that are not ours. With `body` given, bytes that
    are not JSON fail the whole body (400); without it (an NDJSON line) only their line."""
    try:
        event = _event_decoder.decode(item)
    except msgspec.ValidationError:
        event = None
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        if not _is_out_of_range(exc):
            if body is not None:
                raise BodyError(_describe_decode_error(exc, body)) from None
            decoded.rejected.append(Rejection(index, [{"loc": ["body", index], "msg": _describe_decode_error(exc, item)}]))
            return
        event = None
    if event is not None:
        _collect(decoded, index, check_event(index, event))
        return
    try:
        value = _parse(bytes(item), BodyError)  # an array item is a msgspec.Raw, which json.loads cannot read
    except BodyError as exc:
        if body is not None:
            raise
        decoded.rejected.append(Rejection(index, [{"loc": ["body", index], "msg": str(exc)}]))
        return
    _collect(decoded, index, _check_value(index, value))


DecodeSteps = Generator[None, None, Decoded]


def run_steps(steps: DecodeSteps) -> Decoded:
    """Runs a step generator to its end in one go (the CLI, replay, tests)."""
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


def json_steps(body: bytes, max_events: int | None = None) -> DecodeSteps:
    """A single event object or a JSON array of them (at most `max_events`), decoded in slices.

    The array is first split into its items without building them (msgspec's `Raw`, a syntax
    scan): the count is refused before any event exists, and each slice then decodes its items.
    """
    if not body.strip():
        raise BodyError("the body is empty: send an event, an array of events, or NDJSON")
    if body.lstrip()[:1] == b"[":
        try:
            items: list[Any] = _raw_items.decode(body)  # checks the syntax, not UTF-8 or numbers
        except (msgspec.DecodeError, RecursionError) as exc:
            raise BodyError(_describe_decode_error(exc, body)) from None
        if max_events is not None and len(items) > max_events:
            raise TooManyEvents(len(items))
    else:
        items = [body]
    decoded = Decoded(total=len(items))
    for index, item in enumerate(items):
        if index and not index % DECODE_SLICE:
            yield
        _decode_one(decoded, index, item, body)
    return decoded


def decode_json(body: bytes, max_events: int | None = None) -> Decoded:
    return run_steps(json_steps(body, max_events))


def split_ndjson(body: bytes) -> list[tuple[int, bytes]]:
    """Non-blank lines with their 0-based line index."""
    return [(i, line) for i, line in enumerate(body.split(b"\n")) if line.strip()]


def ndjson_steps(body: bytes, max_events: int | None = None) -> DecodeSteps:
    """One event per line; a line that is not JSON is rejected alone. Decoded in slices."""
    lines = split_ndjson(body)
    if max_events is not None and len(lines) > max_events:
        raise TooManyEvents(len(lines))
    decoded = Decoded(total=len(lines))
    for position, (index, line) in enumerate(lines):
        if position and not position % DECODE_SLICE:
            yield
        _decode_one(decoded, index, line, None)
    return decoded


def decode_ndjson(body: bytes, max_events: int | None = None) -> Decoded:
    return run_steps(ndjson_steps(body, max_events))


def _is_out_of_range(exc: BaseException) -> bool:
    return isinstance(exc, (msgspec.DecodeError, msgspec.ValidationError)) and "out of range" in str(exc)


def _parse(body: bytes, error: type[Exception]) -> Any:
    try:
        return msgspec.json.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        if not _is_out_of_range(exc):
            raise error(_describe_decode_error(exc, body)) from None
    try:
        return _parse_wide(body)
    except (ValueError, RecursionError) as exc:  # pragma: no cover - msgspec already accepted the syntax
        raise error(_describe_decode_error(exc, body)) from None


def _describe_decode_error(exc: BaseException, body: bytes) -> str:
    if isinstance(exc, RecursionError):
        return "JSON nesting is deeper than the parser allows"
    # Which exception (and wording) msgspec uses for bad UTF-8 differs between its releases, so the
    # body is checked here; the body's own offset also helps more than one inside a string token.
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as whole:
        return f"invalid UTF-8 at byte offset {whole.start}"
    return str(exc)


class _OutOfRange:
    """Stands for a JSON number no float or int64 can hold, so that only its event is rejected."""


def _out_of_range(_: str) -> _OutOfRange:
    return _OutOfRange()


def _parse_wide(body: bytes) -> Any:
    """The slow-path parse: like msgspec's, but a number out of range becomes a marker value."""
    value = json.loads(body, parse_constant=_out_of_range,
                       parse_float=lambda text: _finite(float(text)))
    return value


def _finite(number: float) -> float | _OutOfRange:
    return number if math.isfinite(number) else _OutOfRange()

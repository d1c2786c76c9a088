"""The `openclaw-diagnostics` console script: serve, replay, sessions, the operator's actions
(recover, dismiss, maintenance), check-config.

Exit codes: 0 success; 1 the command ran but something was wrong with its input or the service
(replay skipped invalid lines, the service could not be reached or refused the token); 2 usage
or configuration errors (an invalid environment names the variable).

It runs past 400 lines because it is one console script with seven commands, each with the few
lines that print its output; what the commands do lives elsewhere (app/replay.py, the read API,
the actions' API, app/settings.py), and how values read for people is app/formatting.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Iterator
from enum import Enum
from typing import Any, Optional
from urllib.parse import quote

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from app.formatting import compact_ms as human_ms
from app.formatting import iso_ms as _iso
from app.formatting import safe
from app.settings import ENV_PREFIX, Settings, SettingsError, load_settings
from app.tokens import parse_tokens

app = typer.Typer(
    name="openclaw-diagnostics",
    help="Watch OpenClaw gateway sessions from the outside: run the service, replay captures, list sessions.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

EXIT_INPUT = 1
EXIT_CONFIG = 2

SEVERITY_STYLE = {
    "session.stuck": "bold red",
    "session.stalled": "yellow",
    "session.long_running": "cyan",
}
SHORT_NAME = {"session.stuck": "stuck", "session.stalled": "stalled", "session.long_running": "long_running"}


def _console(stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    # Piped output is for grep and files: never wrap or truncate it at 80 columns.
    width = None if stream.isatty() else 1_000
    return Console(stderr=stderr, highlight=False, soft_wrap=True, width=width)


def _stdout() -> Console:
    return _console()


def _stderr() -> Console:
    return _console(stderr=True)


def fail(message: str, code: int) -> typer.Exit:
    _stderr().print(Text(message, style="red"))
    return typer.Exit(code)


def load_or_exit(**overrides: Any) -> Settings:
    try:
        return load_settings(**overrides)
    except SettingsError as exc:
        raise fail(f"invalid configuration: {exc}", EXIT_CONFIG) from None


# -- formatting helpers ------------------------------------------------------------------------------


def _print_json(console_file: Any, obj: Any) -> None:
    console_file.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n")


# -- serve ---------------------------------------------------------------------------------------------


@app.command()
def serve(
    host: Optional[str] = typer.Option(None, help="Bind address (default: OPENCLAW_DIAG_HOST, 127.0.0.1)."),
    port: Optional[int] = typer.Option(None, help="Port (default: OPENCLAW_DIAG_PORT, 8080)."),
    log_level: str = typer.Option("info", help="uvicorn log level."),
) -> None:
    """Run the service (uvicorn, one worker) with the settings from the environment.

    An invalid environment exits 2 with a message naming the variable."""
    overrides: dict[str, Any] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    settings = load_or_exit(**overrides)
    # One process per data directory: say so plainly instead of a start-up traceback.
    from app.journal import DataDirLocked, acquire_lock

    try:
        fd = acquire_lock(settings.data_dir)
    except DataDirLocked as exc:
        raise fail(str(exc), EXIT_INPUT) from None
    except OSError as exc:
        raise fail(f"cannot use the data directory {settings.data_dir} (OPENCLAW_DIAG_DATA_DIR): {exc}", EXIT_CONFIG) from None
    os.close(fd)

    import uvicorn

    if host is not None:
        os.environ[f"{ENV_PREFIX}HOST"] = host
    if port is not None:
        os.environ[f"{ENV_PREFIX}PORT"] = str(port)
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=1,
        log_level=log_level,
        proxy_headers=False,
        access_log=False,  # request paths name sessions: they stay out of the logs
        # SIGTERM: requests still open after this are cut (a client trickling its body must not
        # hold the stop forever); the lifespan's final checkpoint runs after it.
        timeout_graceful_shutdown=settings.shutdown_timeout_ms / 1000,
    )


# -- replay ----------------------------------------------------------------------------------------------


def _verdict_parts(verdict: Any) -> list[tuple[str, str]]:
    """One timeline line as (text, style) pieces: styled on a terminal, plain when piped."""
    p = verdict.payload
    event_type = p["eventType"]
    parts: list[tuple[str, str]] = [
        (_iso(verdict.at), "dim"),
        (" ", ""),
        (event_type, SEVERITY_STYLE.get(event_type, "")),
        (f" {safe(p['gatewayId'])} ", ""),
        (safe(p.get("sessionKey") or p.get("sessionId")), "bold"),
    ]
    text = (f" reason={p['reason']} class={p['classification']}"
            f" state={p['state']} queue={p['queueDepth']} age={human_ms(p['ageMs'])}")
    progress = human_ms(p.get("lastProgressAgeMs"))
    if p.get("lastProgressReason"):
        progress += f"({safe(p['lastProgressReason'])})"
    text += f" progress={progress}"
    if p.get("activeWorkKind"):
        text += f" work={p['activeWorkKind']}"
    if p.get("activeToolName"):
        text += f" tool={safe(p['activeToolName'])}({human_ms(p.get('activeToolAgeMs'))})"
    parts.append((text, ""))
    flags = [name for name, on in (("gateway-silent", p.get("gatewaySilent")), ("warming-up", p.get("warmingUp"))) if on]
    if flags:
        parts.append((" " + " ".join(flags), "magenta"))
    request = verdict.recovery
    if request is None:
        parts.append((" recovery=none", "dim"))
    else:
        text = " recovery=requested" + ("[active-abort]" if request.get("allowActiveAbort") else "")
        outcome = verdict.outcome
        if outcome is not None:
            text += f"->{outcome['status']}/{outcome['action']}"
            if outcome.get("outcomeReason"):
                text += f"({outcome['outcomeReason']})"
            if outcome.get("stale"):
                text += "[stale]"
        parts.append((text, "green"))
    return parts


def verdict_line(verdict: Any) -> str:
    """The plain timeline line of a verdict."""
    return "".join(text for text, _ in _verdict_parts(verdict))


def _summary_lines(summary: Any, config: Any) -> Iterator[Text]:
    s = summary.as_json()
    yield Text("")
    yield Text("Summary", style="bold")
    yield Text(
        f"  input: {s['lines']} lines, {s['events']} events ({s['accepted']} applied, {s['ignored']} ignored, "
        f"{s['duplicates']} duplicates), {s['invalidLines']} invalid lines skipped"
    )
    if s["firstTs"] is not None:
        span = (s["lastTs"] or s["firstTs"]) - s["firstTs"]
        yield Text(
            f"  time: {_iso(s['firstTs'])} .. {_iso(s['lastTs'] or s['firstTs'])} ({human_ms(span)}), "
            f"replayed until {_iso(s['endedAt'])} (tail {human_ms(config.effective_tail_ms)}); "
            f"{s['ticks']} ticks every {human_ms(config.monitor.scan_interval_ms)}; "
            f"warn {human_ms(config.monitor.warn_ms)}, abort {human_ms(config.monitor.abort_ms)}"
        )
    yield Text(f"  sessions seen: {s['sessionsSeen']}")
    total = sum(s["verdicts"].values())
    by_type = ", ".join(f"{SHORT_NAME.get(k, k)} {v}" for k, v in s["verdicts"].items())
    yield Text(f"  verdicts: {total}" + (f" ({by_type})" if by_type else ""))
    for row in s["verdictsByReason"]:
        yield Text(f"    {row['eventType']} {row['reason']}: {row['count']}")
    outcomes = ", ".join(f"{k} {v}" for k, v in s["recoveryOutcomes"].items())
    yield Text(f"  recoveries requested: {s['recoveriesRequested']}" + (f" ({outcomes})" if outcomes else ""))
    if s["underAttentionAtEnd"]:
        yield Text(f"  still under attention at the end: {s['underAttentionAtEndTotal']}")
        for item in s["underAttentionAtEnd"][:20]:
            yield Text(
                f"    {SHORT_NAME.get(item['eventType'], item['eventType'])} {safe(item['gatewayId'])} "
                f"{safe(item['sessionKey'] or item['sessionId'])} {item['reason']} ({human_ms(item['attentionAgeMs'])})"
            )
        if s["underAttentionAtEndTotal"] > 20:
            yield Text(f"    ... and {s['underAttentionAtEndTotal'] - 20} more (--json lists up to 100)")
    else:
        yield Text("  still under attention at the end: none")


@app.command()
def replay(
    file: str = typer.Argument(..., metavar="FILE", help="NDJSON capture, one event per line; '-' for stdin; gzip accepted."),
    warn_ms: Optional[int] = typer.Option(None, "--warn-ms", help="Warn threshold (default: OPENCLAW_DIAG_STUCK_SESSION_WARN_MS, 120000)."),
    abort_ms: Optional[int] = typer.Option(None, "--abort-ms", help="Abort threshold (default: max(300000, 3*warn))."),
    scan_interval_ms: Optional[int] = typer.Option(None, "--scan-interval-ms", help="Monitor tick (default: OPENCLAW_DIAG_SCAN_INTERVAL_MS, 5000)."),
    profile: Optional[str] = typer.Option(None, "--profile", help="Classifier profile: seed, openclaw-2026.9 or auto (default: OPENCLAW_DIAG_CLASSIFIER_PROFILE, auto: by the gatewayVersion in the capture's keepalives)."),
    tail_ms: Optional[int] = typer.Option(None, "--tail-ms", min=0, help="Keep ticking this long after the last event (default: 2*warn)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per line: verdicts, invalid lines, a final summary."),
    progress: Optional[bool] = typer.Option(None, "--progress/--no-progress", help="Progress bar on stderr (default: when stderr is a terminal and the file is large)."),
) -> None:
    """Replay a capture with a simulated clock and print the attention timeline.

    The capture goes through the service's own store, monitor, classifier and recovery coordinator (observe executor, no data directory); the clock is driven by the events' ts and ticks every scan interval.

    Exit code 1 when invalid lines were skipped, 0 otherwise; 2 on a usage or configuration error.
    """
    from app.replay import ReplayConfig, Source, replay_source

    overrides: dict[str, Any] = {}
    if warn_ms is not None:
        overrides["stuck_session_warn_ms"] = warn_ms
    if abort_ms is not None:
        overrides["stuck_session_abort_ms"] = abort_ms
    if scan_interval_ms is not None:
        overrides["scan_interval_ms"] = scan_interval_ms
    if profile is not None:
        overrides["classifier_profile"] = profile
    try:
        settings = load_settings(**overrides)
    except SettingsError as exc:
        message = str(exc)
        for option, field in (("--warn-ms", "stuck_session_warn_ms"), ("--abort-ms", "stuck_session_abort_ms"),
                              ("--scan-interval-ms", "scan_interval_ms"), ("--profile", "classifier_profile")):
            if field in overrides:  # the value came from the option, not the environment
                message = message.replace(f"{ENV_PREFIX}{field.upper()}", option)
        raise fail(f"invalid configuration: {message}", EXIT_CONFIG) from None
    config = ReplayConfig(settings, tail_ms)
    try:
        source = Source(file)
    except OSError as exc:
        raise fail(f"cannot read {file}: {exc.strerror or exc}", EXIT_CONFIG) from None

    out = _stdout()
    err = _stderr()
    stdout = sys.stdout

    styled = out.is_terminal

    def on_verdict(verdict: Any) -> None:
        if as_json:
            _print_json(stdout, verdict.as_json())
        elif styled:
            out.print(Text.assemble(*_verdict_parts(verdict)))
        else:  # piped: plain lines, fast (rich rendering costs more than the replay itself)
            stdout.write(verdict_line(verdict) + "\n")

    def on_invalid(invalid: Any) -> None:
        if as_json:
            _print_json(stdout, invalid.as_json())
        else:
            err.print(Text(f"line {invalid.line}: skipped: {safe(invalid.message())}", style="yellow"))

    show_progress = progress
    if show_progress is None:
        show_progress = err.is_terminal and (source.total_bytes is None or source.total_bytes > 1_048_576)
    try:
        if show_progress:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            with Progress(
                TextColumn("replaying"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                console=err, transient=True,
            ) as bar:
                task = bar.add_task("replay", total=source.total_bytes)
                summary = asyncio.run(replay_source(
                    source, config, on_verdict, on_invalid, lambda done: bar.update(task, completed=done),
                ))
        else:
            summary = asyncio.run(replay_source(source, config, on_verdict, on_invalid))
    except BrokenPipeError:
        raise  # `replay ... | head`: click exits quietly
    except (OSError, EOFError) as exc:  # a truncated gzip, a vanished file
        raise fail(f"cannot read {file}: {exc}", EXIT_CONFIG) from None
    finally:
        source.close()
    if as_json:
        _print_json(stdout, {**summary.as_json(), "warnMs": config.monitor.warn_ms, "abortMs": config.monitor.abort_ms,
                             "scanIntervalMs": config.monitor.scan_interval_ms, "tailMs": config.effective_tail_ms})
    else:
        for line in _summary_lines(summary, config):
            out.print(line)
    stdout.flush()
    if summary.invalid:
        raise typer.Exit(EXIT_INPUT)


# -- sessions ---------------------------------------------------------------------------------------------


class AttentionFilter(str, Enum):
    stuck = "stuck"
    stalled = "stalled"
    long_running = "long_running"
    none = "none"


def default_url() -> str:
    host = os.environ.get(f"{ENV_PREFIX}HOST", "127.0.0.1").strip() or "127.0.0.1"
    if host in ("0.0.0.0", "::", "[::]"):
        host = "127.0.0.1"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    port = os.environ.get(f"{ENV_PREFIX}PORT", "8080").strip() or "8080"
    return f"http://{host}:{port}"


def token_from_env() -> str | None:
    """OPENCLAW_DIAG_TOKEN, else the first of OPENCLAW_DIAG_INGEST_TOKENS (its name and binding removed)."""
    token = os.environ.get(f"{ENV_PREFIX}TOKEN", "").strip()
    if token:
        return token
    try:
        entries = parse_tokens(os.environ.get(f"{ENV_PREFIX}INGEST_TOKENS", ""))
    except ValueError:
        return None  # the service refuses that list too; `check-config` says why
    return entries[0].token if entries else None


def _recovery_cell(item: dict[str, Any]) -> str:
    if item.get("recoveryInFlight"):
        return "in flight"
    last = item.get("lastRecovery")
    if not last:
        return "-"
    if last.get("kind") == "requested":
        return "requested"
    text = f"{last.get('status')}/{last.get('action')}"
    if last.get("outcomeReason"):
        text += f" ({last['outcomeReason']})"
    return text


@app.command()
def sessions(
    url: Optional[str] = typer.Option(None, help="Service URL (default: http://OPENCLAW_DIAG_HOST:OPENCLAW_DIAG_PORT)."),
    attention: Optional[AttentionFilter] = typer.Option(None, help="Only sessions with this attention."),
    state: Optional[str] = typer.Option(None, help="Only sessions in this state (idle, processing, waiting)."),
    gateway: Optional[str] = typer.Option(None, "--gateway", help="Only this gateway's sessions."),
    limit: int = typer.Option(100, min=1, help="At most this many sessions (pages are followed)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per session per line, as the API returns it."),
) -> None:
    """List the running service's sessions, most severe and oldest attention first.

    The order is the one of GET /v1/sessions. The token comes from OPENCLAW_DIAG_TOKEN or the first of OPENCLAW_DIAG_INGEST_TOKENS.
    """
    import httpx

    base = (url or default_url()).rstrip("/")
    headers = {"Accept": "application/json"}
    token = token_from_env()
    if token:
        headers["Authorization"] = f"Bearer {token}"
    params: dict[str, Any] = {"limit": min(limit, 1000)}
    if attention is not None:
        params["attention"] = attention.value
    if state is not None:
        params["state"] = state
    if gateway is not None:
        params["gatewayId"] = gateway
    items: list[dict[str, Any]] = []
    total = 0
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=10.0) as client:
            while True:
                response = client.get("/v1/sessions", params=params)
                if response.status_code == 401:
                    hint = "set OPENCLAW_DIAG_TOKEN" if not token else "the token in OPENCLAW_DIAG_TOKEN was refused"
                    raise fail(f"{base} requires a token: {hint}", EXIT_INPUT)
                if response.status_code != 200:
                    raise fail(f"{base}/v1/sessions answered HTTP {response.status_code}: {_error_message(response)}", EXIT_INPUT)
                body = response.json()
                total = body.get("total", 0)
                items.extend(body["items"])
                cursor = body.get("nextCursor")
                if not cursor or len(items) >= limit:
                    break
                params["cursor"] = cursor
                params["limit"] = min(1000, limit - len(items))
    except httpx.HTTPError as exc:
        raise fail(f"cannot reach the service at {base}: {exc}", EXIT_INPUT) from None
    items = items[:limit]
    if as_json:
        for item in items:
            _print_json(sys.stdout, item)
        return
    out = _stdout()
    if not items:
        out.print("no sessions" + (" matching the filter" if len(params) > 1 else ""))
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("attention", "gateway", "session", "state", "queue", "reason", "attention age",
                   "active work", "last progress", "recovery"):
        table.add_column(column, overflow="fold")
    for item in items:
        att = item.get("attention")
        activity = item.get("activity") or {}
        if att:
            label = Text(SHORT_NAME.get(att["eventType"], att["eventType"]), style=SEVERITY_STYLE.get(att["eventType"], ""))
            reason, age = att["reason"], human_ms(att.get("attentionAgeMs"))
        else:
            label, reason, age = Text("-", style="dim"), "-", "-"
        work = activity.get("activeWorkKind") or "-"
        if activity.get("activeToolName"):
            work += f" {safe(activity['activeToolName'])} ({human_ms(activity.get('activeToolAgeMs'))})"
        progress = human_ms(activity.get("lastProgressAgeMs"))
        if activity.get("lastProgressReason"):
            progress += f" {safe(activity['lastProgressReason'])}"
        table.add_row(
            label, Text(safe(item["gatewayId"])), Text(safe(item.get("sessionKey") or item.get("sessionId"))),
            item["state"], str(item["queueDepth"]), reason, age, Text(work), Text(progress), _recovery_cell(item),
        )
    out.print(table)
    shown = f"{len(items)} of {total} sessions" if total > len(items) else f"{total} sessions"
    out.print(Text(shown, style="dim"))


def _error_message(response: Any) -> str:
    try:
        return str(response.json()["error"]["message"])
    except Exception:
        return response.text[:200]


# -- check-config -------------------------------------------------------------------------------------------

_SECRET_FIELDS = {"ingest_tokens", "read_tokens", "operator_tokens", "recovery_webhook_token", "recovery_webhook_tokens",
                  "session_hash_key"}


def _describe_tokens(settings: Settings) -> str:
    tokens = settings.tokens()
    if not tokens:
        return "(none: the API is unauthenticated)"
    bound = sum(1 for gateway in tokens.values() if gateway)
    text = f"{len(tokens)} token{'s' if len(tokens) != 1 else ''} (redacted)"
    if bound:
        text += f", {bound} bound to a gateway"
    return text


def effective_settings(settings: Settings) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for name, field in Settings.model_fields.items():
        variable = f"{ENV_PREFIX}{name.upper()}"
        value: Any = getattr(settings, name)
        if name == "ingest_tokens":
            shown: Any = _describe_tokens(settings)
        elif name in _SECRET_FIELDS:
            shown = "(set, redacted)" if value else None
        elif value is None or value == "":
            shown = None
        else:
            shown = str(value) if not isinstance(value, (int, float, bool)) else value
        rows.append({
            "variable": variable,
            "value": shown,
            "source": "environment" if variable in os.environ else "default",
            "description": field.description or "",
        })
    rows.append({
        "variable": "(derived) abort threshold",
        "value": settings.abort_ms,
        "source": "max(warn, OPENCLAW_DIAG_STUCK_SESSION_ABORT_MS)" if settings.stuck_session_abort_ms is not None
        else "max(300000, 3 * warn)",
        "description": "Stalled runs older than this may be actively aborted.",
    })
    return rows


# -- actions: recover, dismiss, maintenance (an operator token: OPENCLAW_DIAG_TOKEN) ---------------------


def _act(url: str | None, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """One audited action on the running service (README, "Actions"); its answer, or exit 1 saying why."""
    import httpx

    base = (url or default_url()).rstrip("/")
    token = token_from_env()
    headers = {"Accept": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    try:
        with httpx.Client(base_url=base, headers=headers, timeout=10.0) as client:
            response = client.request(method, path, json=body)
    except httpx.HTTPError as exc:
        raise fail(f"cannot reach the service at {base}: {exc}", EXIT_INPUT) from None
    if response.status_code in (401, 403):
        raise fail(f"{base} refused: an operator token is needed in OPENCLAW_DIAG_TOKEN ({_error_message(response)})",
                   EXIT_INPUT)
    if response.status_code >= 300:
        raise fail(f"{path}: HTTP {response.status_code}: {_error_message(response)}", EXIT_INPUT)
    return response.json()


def _done(answer: dict[str, Any], what: str) -> None:
    audit = answer.get("audit", {})
    _stdout().print(f"{what} (audit {answer.get('requestId') or answer.get('auditId')}, by {safe(audit.get('actor'))})")


@app.command()
def recover(
    session_key: str = typer.Argument(..., metavar="SESSION_KEY"),
    reason: str = typer.Option(..., "--reason", help="Why: recorded in the audit log."),
    action: str = typer.Option("auto", "--action", help="auto, abort (may abort its active work) or release (only the lane)."),
    gateway: Optional[str] = typer.Option(None, "--gateway", help="When several gateways have this key."),
    url: Optional[str] = typer.Option(None, help="Service URL (default: http://OPENCLAW_DIAG_HOST:OPENCLAW_DIAG_PORT)."),
) -> None:
    """Ask the gateway to recover one session now, through the service (audited)."""
    if action not in ("auto", "abort", "release"):
        raise fail("--action must be auto, abort or release", EXIT_CONFIG)
    answer = _act(url, "POST", f"/v1/sessions/{quote(session_key, safe='')}/recover",
                  {"reason": reason, "action": action, "gatewayId": gateway})
    _done(answer, f"recovery of {safe(session_key)} requested ({action})")


@app.command()
def dismiss(
    session_key: str = typer.Argument(..., metavar="SESSION_KEY"),
    reason: str = typer.Option(..., "--reason", help="Why: recorded in the audit log."),
    gateway: Optional[str] = typer.Option(None, "--gateway", help="When several gateways have this key."),
    url: Optional[str] = typer.Option(None, help="Service URL (default: http://OPENCLAW_DIAG_HOST:OPENCLAW_DIAG_PORT)."),
) -> None:
    """Take a session off the needs-human list (audited)."""
    answer = _act(url, "POST", f"/v1/sessions/{quote(session_key, safe='')}/dismiss",
                  {"reason": reason, "gatewayId": gateway})
    _done(answer, f"{safe(session_key)} taken off the needs-human list")


@app.command()
def maintenance(
    gateway: str = typer.Argument(..., metavar="GATEWAY_ID"),
    reason: str = typer.Option(..., "--reason", help="Why: recorded in the audit log."),
    minutes: Optional[int] = typer.Option(None, "--minutes", min=1, max=1440, help="Begin it, for this long (at most 24 h)."),
    end: bool = typer.Option(False, "--end", help="End it now."),
    url: Optional[str] = typer.Option(None, help="Service URL (default: http://OPENCLAW_DIAG_HOST:OPENCLAW_DIAG_PORT)."),
) -> None:
    """Put a gateway in maintenance (no recovery, silence expected) or end it (audited)."""
    if end == (minutes is not None):
        raise fail("give either --minutes (begin) or --end", EXIT_CONFIG)
    path = f"/v1/gateways/{quote(gateway, safe='')}/maintenance"
    if end:
        _done(_act(url, "DELETE", path, {"reason": reason}), f"maintenance of {safe(gateway)} ended")
        return
    until = int(time.time() * 1000) + minutes * 60_000  # type: ignore[operator]
    _done(_act(url, "PUT", path, {"until": until, "reason": reason}),
          f"{safe(gateway)} in maintenance until {_iso(until)}")


@app.command("check-config")
def check_config(
    as_json: bool = typer.Option(False, "--json", help="Print the settings as one JSON object."),
) -> None:
    """Print the effective settings, including the derived abort threshold.

    Secrets are redacted. Exits 2 on an invalid environment, naming the variable.
    """
    settings = load_or_exit()
    rows = effective_settings(settings)
    if as_json:
        body: dict[str, Any] = {row["variable"]: row["value"] for row in rows[:-1]}
        body["derived"] = {"abortMs": settings.abort_ms, "abortRule": rows[-1]["source"]}
        _print_json(sys.stdout, body)
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("setting", no_wrap=True)
    table.add_column("value", overflow="fold")
    table.add_column("source", style="dim")
    for row in rows:
        value = "(unset)" if row["value"] is None else str(row["value"])
        table.add_row(row["variable"], Text(value), row["source"])
    out = _stdout()
    out.print(table)
    if not settings.tokens():
        out.print(Text("warning: no OPENCLAW_DIAG_INGEST_TOKENS: the API and the page are unauthenticated", style="yellow"))


def main() -> None:
    app()


if __name__ == "__main__":  # pragma: no cover
    main()

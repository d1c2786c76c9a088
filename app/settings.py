"""Service settings: environment variables prefixed OPENCLAW_DIAG_ (README, "Configuration")."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.notify import parse_targets
from app.tokens import TokenEntry, parse_tokens
from app.webhook_address import parse_pairs

ENV_PREFIX = "OPENCLAW_DIAG_"


class SettingsError(Exception):
    """A setting is wrong; the message names the environment variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", frozen=True)

    host: str = Field("127.0.0.1", description="Address to bind.")
    port: int = Field(8080, ge=1, le=65535, description="Port to bind.")
    data_dir: Path = Field(Path("./data"), description="Journal and lock live here.")

    ingest_tokens: str = Field(
        "",
        description="Comma-separated bearer tokens; `token=gatewayId` binds a token to one gateway.",
    )
    allowed_hosts: str = Field(
        "", description="Host header values answered (comma-separated, any port); unset: localhost, 127.0.0.1, "
                        "[::1] and the bind address; * answers every name.",
    )
    read_tokens: str = Field(
        "", description="Tokens for the read endpoints and the page, as INGEST_TOKENS (name:token=gw1|gw2).",
    )
    operator_tokens: str = Field(
        "", description="Tokens for reading and (with the operator actions) acting, as INGEST_TOKENS.",
    )
    protect_metrics: bool = Field(False, description="Require a token on /healthz, /readyz, /metrics.")

    stuck_session_warn_ms: int = Field(120_000, description="Warn threshold (stale_ms).")
    stuck_session_abort_ms: int | None = Field(
        None, description="Abort threshold; unset: max(300000, 3*warn); set: max(warn, value)."
    )
    scan_interval_ms: int = Field(5_000, ge=10, le=3_600_000, description="Monitor tick interval.")
    stalled_report_interval_ms: int = Field(30_000, ge=0, description="Minimum gap between stalled reports.")
    recovery_retry_interval_ms: int | None = Field(
        None, ge=0, description="Automatic recovery of one session at most this often; unset: min(30000, warn).",
    )
    gateway_silence_ms: int = Field(90_000, ge=1_000, description="A gateway quiet this long is silent.")
    session_idle_ttl_ms: int = Field(1_800_000, ge=1_000, description="Idle sessions unchanged this long are evicted.")
    max_gateways: int = Field(
        10_000, ge=1, description="Past this, a new gateway evicts the least recently heard one without sessions; "
                                  "if all have sessions, its events are rejected (gateway_limit).",
    )
    max_sessions: int = Field(1_000_000, ge=1, description="Past this, the least recently active are evicted.")
    max_clock_skew_ms: int = Field(60_000, ge=0, description="Future ts beyond this is clamped.")

    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="Largest body, after decompression.")
    max_batch_events: int = Field(10_000, ge=1, description="Most events in one request.")
    body_timeout_ms: int = Field(
        30_000, ge=100, description="An ingest body must arrive within this (slow clients are cut: 408).",
    )

    recovery_mode: Literal["observe", "webhook"] = Field("observe", description="Recovery executor.")
    recovery_webhook_url: str = Field("", description="URL template; {gatewayId} is replaced.")
    recovery_webhook_token: str = Field("", description="Bearer token sent to the webhook (every gateway).")
    recovery_webhook_urls: str = Field("", description="Per-gateway webhook addresses: gw=url,...")
    recovery_webhook_tokens: str = Field("", description="Per-gateway webhook secrets: gw=token,...")
    recovery_gateways: str = Field(
        "", description="Gateway ids a template whose host is {gatewayId} may address (comma-separated).",
    )
    recovery_timeout_ms: int = Field(10_000, ge=100, description="Webhook timeout.")
    recovery_concurrency: int = Field(16, ge=1, description="Recoveries running at once.")
    recovery_verify_ms: int = Field(
        60_000, ge=1_000, description="An applied recovery must show, by an event from the gateway, that the session "
                                      "moved within this (gateway clock), else it was ineffective.",
    )
    recovery_max_attempts: int = Field(
        3, ge=1, description="Automatic recoveries of one session per attempt window; then it needs a human.",
    )
    recovery_attempt_window_ms: int = Field(1_800_000, ge=1_000, description="The attempt budget's window.")
    bulk_recovery_per_s: float = Field(
        10.0, gt=0, le=1000, description="An operator's bulk recovery asks each gateway at most this often per second.",
    )

    gateway_attribute: bool = Field(True, description="Add openclaw.gateway to metric attributes.")
    metric_cardinality_limit: int = Field(2048, ge=16, description="Distinct attribute sets per instrument.")
    metric_name_prefix: str | None = Field(
        None, pattern=r"^$|^[A-Za-z][A-Za-z0-9_.\-/]{0,127}$",
        description="Replaces `openclaw.` in every metric name (upstream's metricNamePrefix); empty: no prefix.",
    )
    classifier_profile: Literal["seed", "openclaw-2026.9", "auto"] = Field(
        "auto", description="Decision table: the seed's, the 2026.9 gateways', or per gateway by its reported version.",
    )
    export_session_ids: Literal["hash", "raw", "off"] = Field(
        "hash", description="Session ids on exported log records and spans: a keyed hash, as they are, or none.",
    )
    session_hash_key: str = Field(
        "", description="Key of the session-id hash; unset: generated once and kept in the data directory.",
    )

    public_url: str = Field(
        "", pattern=r"^$|^https?://[^\s]+$",
        description="The address people open the service at: links in notifications (and, in the stack, alerts).",
    )
    notify: str = Field(
        "", description='Notification targets, JSON: [{"url", "format": "json"|"slack", "secret"?, "events"?: [...]}].',
    )

    checkpoint_interval_ms: int = Field(30_000, ge=100, description="How often the store is checkpointed.")
    journal_retention_ms: int = Field(6 * 3_600_000, ge=3_600_000, description="Event history kept for reads and dedupe.")
    journal_max_rows: int = Field(5_000_000, ge=1_000_000, description="Cap on journaled event rows.")
    journal_max_bytes: int = Field(
        2 * 1024**3, ge=1024 * 1024,
        description="Byte budget of the journal and checkpoint files; at it, covered history is compacted "
                    "first, then ingest answers 503 journal_full.",
    )
    journal_url: str = Field(
        "", pattern=r"^$|^postgres(ql)?://\S+$",
        description="Unset: the embedded SQLite journal in DATA_DIR. postgresql://...: the shared journal of "
                    "several instances, which own gateways by advisory lock (docs/scale-out.md).",
    )
    instance_id: str = Field(
        "", max_length=64, description="This instance's name among several (PostgreSQL mode); unset: host:port.",
    )
    instance_url: str = Field(
        "", pattern=r"^$|^https?://[^\s]+$",
        description="Where the other instances reach this one, for fleet-wide reads (PostgreSQL mode); "
                    "unset: http://HOST:PORT.",
    )

    shutdown_timeout_ms: int = Field(
        10_000, ge=0, description="On SIGTERM, requests still running after this are cut; then the final checkpoint.",
    )

    @field_validator("stuck_session_warn_ms", mode="before")
    @classmethod
    def _floor_warn(cls, value: object) -> int:
        number = _floored(value)
        if not 1_000 <= number <= 86_400_000:
            raise ValueError("must be between 1000 and 86400000")
        return number

    @field_validator("stuck_session_abort_ms", mode="before")
    @classmethod
    def _floor_abort(cls, value: object) -> int | None:
        if value is None or value == "":
            return None
        number = _floored(value)
        if number < 0:
            raise ValueError("must be >= 0")
        return number

    @field_validator("ingest_tokens", "read_tokens", "operator_tokens")
    @classmethod
    def _parse_tokens(cls, value: str) -> str:
        parse_tokens(value)  # an empty token is an error naming the variable
        return value

    @field_validator("notify")
    @classmethod
    def _parse_notify(cls, value: str) -> str:
        parse_targets(value)  # raises ValueError with what is wrong
        return value

    @field_validator("recovery_webhook_urls", "recovery_webhook_tokens")
    @classmethod
    def _parse_pairs(cls, value: str) -> str:
        parse_pairs(value)
        return value

    @model_validator(mode="after")
    def _webhook_needs_url(self) -> Settings:
        if self.recovery_mode == "webhook" and not (self.recovery_webhook_url or self.recovery_webhook_urls):
            raise ValueError(f"{ENV_PREFIX}RECOVERY_WEBHOOK_URL or {ENV_PREFIX}RECOVERY_WEBHOOK_URLS is required "
                             "when RECOVERY_MODE=webhook")
        return self

    @property
    def shared(self) -> bool:
        """Several instances share the gateways (the PostgreSQL journal)."""
        return bool(self.journal_url)

    @property
    def instance_name(self) -> str:
        if self.instance_id:
            return self.instance_id
        return f"{socket.gethostname()}:{self.port}"

    @property
    def instance_address(self) -> str:
        return self.instance_url or f"http://{self.host}:{self.port}"

    @property
    def warn_ms(self) -> int:
        return self.stuck_session_warn_ms

    @property
    def abort_ms(self) -> int:
        if self.stuck_session_abort_ms is None:
            return max(300_000, 3 * self.warn_ms)
        return max(self.warn_ms, self.stuck_session_abort_ms)

    @property
    def retry_interval_ms(self) -> int:
        """The gateway's own 30 s heartbeat, shorter only when warn is (README, "How it decides")."""
        if self.recovery_retry_interval_ms is None:
            return min(30_000, self.warn_ms)
        return self.recovery_retry_interval_ms

    def tokens(self) -> dict[str, frozenset[str] | None]:
        """Ingest token -> the gateways it is bound to (None: any gateway)."""
        return {entry.token: entry.gateways for entry in parse_tokens(self.ingest_tokens)}

    def operator_entries(self) -> list[TokenEntry]:
        """The tokens that may act (app/http/actions.py), with their names for the audit log."""
        return parse_tokens(self.operator_tokens)

    def reading_tokens(self) -> dict[str, frozenset[str] | None]:
        """Every token that may read (ingest tokens read what they may write) -> its gateways."""
        return {entry.token: entry.gateways
                for text in (self.ingest_tokens, self.read_tokens, self.operator_tokens)
                for entry in parse_tokens(text)}


def _floored(value: object) -> int:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError("must be a number") from None
    if number != number or number in (float("inf"), float("-inf")):
        raise ValueError("must be a finite number")
    return int(number // 1)


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment; errors name the variable (OPENCLAW_DIAG_...)."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"])
            name = f"{ENV_PREFIX}{field.upper()}" if field else "settings"
            problems.append(f"{name}: {error['msg'].removeprefix('Value error, ')}")
        raise SettingsError("; ".join(problems)) from None

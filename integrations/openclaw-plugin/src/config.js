// Resolves the forwarder's settings: plugin config (plugins.entries.<id>.config) first, then
// OPENCLAW_DIAG_FORWARD_* environment variables, then defaults. A bad value never throws into
// the gateway: it is reported as a warning and the default is used instead.

import os from "node:os";

export const ENV_PREFIX = "OPENCLAW_DIAG_FORWARD_";

// Free-text fields of OpenClaw 2026.9.6 diagnostic events that can carry message content:
// `log.record.message`, `tool.loop.message`, and the `error` strings of `webhook.error`,
// `message.processed` and `message.dispatch.completed`. Everything else is ids, enums, counts.
export const CONTENT_TYPES = Object.freeze(["log.record"]);
export const CONTENT_FIELDS = Object.freeze(["message", "error"]);

export const DEFAULTS = Object.freeze({
  serviceUrl: "",
  token: "",
  gatewayId: "",
  batchSize: 500,
  flushIntervalMs: 1000,
  maxQueue: 10000,
  keepaliveIntervalMs: 15000,
  requestTimeoutMs: 10000,
  baseBackoffMs: 500,
  maxBackoffMs: 30000,
  shutdownFlushMs: 5000,
  includeTypes: Object.freeze([]),
  excludeTypes: Object.freeze([]),
  allowContent: false,
  recoveryToken: "",
  recoveryPath: "/openclaw-diagnostics/recovery",
  recoverySettleMs: 5000,
});

// name -> [env suffix, kind, min, max]
const FIELDS = {
  serviceUrl: ["URL", "url"],
  token: ["TOKEN", "string"],
  gatewayId: ["GATEWAY_ID", "string"],
  // + 1 keepalive stays under the service's 10,000 events per request
  batchSize: ["BATCH_SIZE", "int", 1, 5000],
  flushIntervalMs: ["FLUSH_INTERVAL_MS", "int", 10, 60000],
  maxQueue: ["MAX_QUEUE", "int", 1, 1000000],
  // The service calls a gateway silent after 90 s without events; 30 s is the contract ceiling.
  keepaliveIntervalMs: ["KEEPALIVE_INTERVAL_MS", "int", 100, 30000],
  requestTimeoutMs: ["REQUEST_TIMEOUT_MS", "int", 100, 120000],
  baseBackoffMs: ["BASE_BACKOFF_MS", "int", 1, 60000],
  maxBackoffMs: ["MAX_BACKOFF_MS", "int", 1, 600000],
  shutdownFlushMs: ["SHUTDOWN_FLUSH_MS", "int", 0, 60000],
  includeTypes: ["INCLUDE_TYPES", "list"],
  excludeTypes: ["EXCLUDE_TYPES", "list"],
  allowContent: ["ALLOW_CONTENT", "bool"],
  recoveryToken: ["RECOVERY_TOKEN", "string"],
  recoveryPath: ["RECOVERY_PATH", "path"],
  recoverySettleMs: ["RECOVERY_SETTLE_MS", "int", 0, 60000],
};

const MAX_GATEWAY_ID = 128; // the service's limit for gatewayId

// What an HTTP header value may hold (node refuses anything else, and the service reads the
// header as latin-1): tab, printable ASCII and latin-1's upper half.
const HEADER_VALUE = /^[\t\x20-\x7e\x80-\xff]+$/;

/**
 * The `X-OpenClaw-Gateway` value for a gateway id — the id itself — or "" when the id cannot be
 * sent as a header (characters beyond latin-1, control characters): the request then goes
 * without it, which a single instance accepts and several instances answer with 400.
 */
export function gatewayHeaderValue(gatewayId) {
  return typeof gatewayId === "string" && HEADER_VALUE.test(gatewayId) ? gatewayId : "";
}

function parseValue(kind, raw, min, max) {
  switch (kind) {
    case "string":
      return typeof raw === "string" ? { value: raw.trim() } : { error: "must be a string" };
    case "url": {
      if (typeof raw !== "string") return { error: "must be a string" };
      const text = raw.trim();
      if (!text) return { value: "" };
      try {
        const url = new URL(text);
        if (url.protocol !== "http:" && url.protocol !== "https:") return { error: "must be an http(s) URL" };
        return { value: text };
      } catch {
        return { error: "must be an http(s) URL" };
      }
    }
    case "path":
      return typeof raw === "string" && raw.startsWith("/") ? { value: raw.trim() } : { error: "must start with /" };
    case "int": {
      const n = typeof raw === "number" ? raw : typeof raw === "string" && raw.trim() !== "" ? Number(raw) : NaN;
      if (!Number.isInteger(n)) return { error: "must be an integer" };
      if (n < min || n > max) return { error: `must be between ${min} and ${max}` };
      return { value: n };
    }
    case "bool":
      if (typeof raw === "boolean") return { value: raw };
      if (typeof raw === "string" && /^(1|true|yes|on)$/i.test(raw.trim())) return { value: true };
      if (typeof raw === "string" && /^(0|false|no|off|)$/i.test(raw.trim())) return { value: false };
      return { error: "must be a boolean" };
    case "list": {
      const items = Array.isArray(raw) ? raw : typeof raw === "string" ? raw.split(",") : null;
      if (!items || items.some((item) => typeof item !== "string")) return { error: "must be a list of event types" };
      return { value: Object.freeze(items.map((item) => item.trim()).filter(Boolean)) };
    }
    default:
      return { error: "unknown setting" };
  }
}

/**
 * @returns {{config: object, warnings: string[]}} a frozen config and what was wrong with the input.
 */
export function resolveConfig(pluginConfig, env = process.env, hostname = safeHostname()) {
  const source = pluginConfig && typeof pluginConfig === "object" ? pluginConfig : {};
  const warnings = [];
  const config = { ...DEFAULTS };
  for (const [name, [suffix, kind, min, max]] of Object.entries(FIELDS)) {
    const fromConfig = source[name] !== undefined && source[name] !== null;
    const envName = ENV_PREFIX + suffix;
    const raw = fromConfig ? source[name] : env[envName];
    if (raw === undefined) continue;
    const parsed = parseValue(kind, raw, min, max);
    if (parsed.error) {
      warnings.push(`${fromConfig ? `config ${name}` : envName} ${parsed.error}; using the default`);
      continue;
    }
    config[name] = parsed.value;
  }
  if (!config.gatewayId) config.gatewayId = hostname || "default";
  if (config.gatewayId.length > MAX_GATEWAY_ID) {
    warnings.push(`gatewayId is longer than ${MAX_GATEWAY_ID} characters; truncated`);
    config.gatewayId = config.gatewayId.slice(0, MAX_GATEWAY_ID);
  }
  if (!gatewayHeaderValue(config.gatewayId)) {
    warnings.push(
      "gatewayId has characters an HTTP header cannot carry (beyond latin-1, or control characters); " +
        "requests go without X-OpenClaw-Gateway, which a service running several instances refuses",
    );
  }
  if (config.maxQueue < config.batchSize) {
    warnings.push("maxQueue is smaller than batchSize; raised to batchSize");
    config.maxQueue = config.batchSize;
  }
  if (config.maxBackoffMs < config.baseBackoffMs) config.maxBackoffMs = config.baseBackoffMs;
  config.eventsUrl = config.serviceUrl ? eventsUrl(config.serviceUrl) : "";
  return { config: Object.freeze(config), warnings };
}

// Accept the service's base URL (the usual case) or the full ingest URL.
export function eventsUrl(serviceUrl) {
  const url = new URL(serviceUrl);
  if (!url.pathname.replace(/\/+$/, "").endsWith("/v1/events")) {
    url.pathname = url.pathname.replace(/\/+$/, "") + "/v1/events";
  }
  return url.toString();
}

function safeHostname() {
  try {
    return os.hostname();
  } catch {
    return "";
  }
}

/** A type filter: `a.b` matches exactly, `a.*` matches a prefix, `*` everything. */
export function compileTypeFilter(config) {
  const include = config.includeTypes.map(compilePattern);
  const exclude = config.excludeTypes.map(compilePattern);
  if (!config.allowContent) exclude.push(...CONTENT_TYPES.map(compilePattern));
  return (type) => {
    if (typeof type !== "string") return false;
    if (include.length > 0 && !include.some((match) => match(type))) return false;
    return !exclude.some((match) => match(type));
  };
}

/** The exact type lists the gateway's dispatcher can use to skip events nobody wants. */
export function dispatcherInterest(config) {
  const exact = (list) => list.filter((pattern) => !pattern.includes("*"));
  const exclude = [...exact(config.excludeTypes), ...(config.allowContent ? [] : CONTENT_TYPES)];
  const interest = {};
  const includeIsExact = config.includeTypes.length > 0 && exact(config.includeTypes).length === config.includeTypes.length;
  if (includeIsExact) interest.include = [...config.includeTypes];
  if (exclude.length > 0) interest.exclude = [...new Set(exclude)];
  return interest;
}

function compilePattern(pattern) {
  if (pattern === "*") return () => true;
  if (pattern.endsWith("*")) {
    const prefix = pattern.slice(0, -1);
    return (type) => type.startsWith(prefix);
  }
  return (type) => type === pattern;
}

// The forwarder: a bounded in-memory queue of diagnostic events, flushed in batches to the
// service's `POST /v1/events`. It runs inside the gateway process, so the rules are strict:
// `push` is synchronous, cheap and never throws; a slow or dead service costs at most
// `maxQueue` events of memory (oldest dropped first, counted and reported); nothing here ever
// waits on the network from the gateway's own call paths.

import { CONTENT_FIELDS, compileTypeFilter, gatewayHeaderValue } from "./config.js";
import { postJson } from "./http.js";

export const KEEPALIVE_TYPE = "forwarder.keepalive";
const USER_AGENT = "openclaw-diagnostics-forwarder/0.1.0";
const MAX_LOGGED_BODY = 2000;
const DROP_REPORT_INTERVAL_MS = 60000;
// The header a service running several instances behind HAProxy routes on (consistent hash) and
// requires: one request carries one gateway's events.
export const GATEWAY_HEADER = "x-openclaw-gateway";
// A gateway moving between instances takes a second or two; still moving after this long is
// worth a warning (a proxy that does not hash on the header would keep it "moving" forever).
const MOVING_WARN_AFTER_MS = 60000;

export const systemClock = Object.freeze({
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const timer = setTimeout(fn, ms);
    // Never keep a process alive just to forward diagnostics.
    timer.unref?.();
    return timer;
  },
  clearTimeout: (timer) => clearTimeout(timer),
});

/** A FIFO with O(1) push and drop-oldest, bounded by `capacity`. */
export class BoundedQueue {
  constructor(capacity) {
    this.capacity = capacity;
    this.items = [];
    this.head = 0;
  }

  get length() {
    return this.items.length - this.head;
  }

  /** Adds an item; returns how many old items had to be dropped to make room. */
  push(item) {
    this.items.push(item);
    return this.trim();
  }

  /** Takes up to `n` items from the front. */
  take(n) {
    const taken = this.items.slice(this.head, this.head + n);
    this.head += taken.length;
    this.compact();
    return taken;
  }

  /** Puts items back at the front (a failed batch); returns how many had to be dropped. */
  unshiftAll(items) {
    this.items = items.concat(this.items.slice(this.head));
    this.head = 0;
    return this.trim();
  }

  trim() {
    const excess = this.length - this.capacity;
    if (excess <= 0) return 0;
    this.head += excess;
    this.compact();
    return excess;
  }

  compact() {
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
  }
}

function bySeq(a, b) {
  return a.seq - b.seq;
}

function truncate(text) {
  return text.length > MAX_LOGGED_BODY ? `${text.slice(0, MAX_LOGGED_BODY)}…` : text;
}

/**
 * A `Retry-After` value — delta-seconds or an HTTP-date — as milliseconds from `nowMs`, or null
 * when absent or unreadable. A date in the past is 0.
 */
export function parseRetryAfter(value, nowMs) {
  if (Array.isArray(value)) value = value[0];
  if (typeof value !== "string") return null;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  if (!/[a-z]/i.test(text)) return null; // "-1", "1.5": neither seconds nor a date
  const at = Date.parse(text);
  return Number.isNaN(at) ? null : Math.max(0, at - nowMs);
}

/** A response header by name, whatever the transport gave: node's object, a Headers, or none. */
function headerOf(result, name) {
  const headers = result.headers;
  if (!headers || typeof headers !== "object") return undefined;
  if (typeof headers.get === "function") return headers.get(name) ?? undefined;
  if (headers[name] !== undefined) return headers[name];
  const key = Object.keys(headers).find((k) => k.toLowerCase() === name);
  return key === undefined ? undefined : headers[key];
}

/** The service's `503 {"error": {"code": "gateway_moving"}}`: the gateway is changing instance. */
export function isGatewayMoving(result) {
  if (result.status !== 503 || typeof result.body !== "string" || !result.body.includes("gateway_moving")) return false;
  try {
    return JSON.parse(result.body)?.error?.code === "gateway_moving";
  } catch {
    return false;
  }
}

/** Why a response or error means "try again later" (5xx, network, timeout, 408, 429). */
export function isRetryable(result) {
  if (result.error) return true;
  return result.status >= 500 || result.status === 408 || result.status === 429;
}

export class Forwarder {
  /**
   * @param {object} config resolved by `resolveConfig`
   * @param {object} [deps] injectable clock, transport, logger, random and process start time
   */
  constructor(config, deps = {}) {
    this.config = config;
    this.clock = deps.clock ?? systemClock;
    this.post = deps.post ?? postJson;
    this.logger = deps.logger ?? console;
    this.gatewayVersion = typeof deps.gatewayVersion === "string" ? deps.gatewayVersion.slice(0, 64) : null;
    this.random = deps.random ?? Math.random;
    // The process's start time, not the forwarder's: stable across forwarder restarts (config
    // reloads) in one gateway process, whose seq keeps counting.
    this.processStart = deps.processStart ?? Math.floor(performance.timeOrigin);
    // Every request names the one gateway it is for (events carry the same configured id).
    this.gatewayHeader = gatewayHeaderValue(config.gatewayId);
    this.accepts = compileTypeFilter(config);
    this.stripFields = config.allowContent ? [] : CONTENT_FIELDS;
    this.queue = new BoundedQueue(config.maxQueue);
    this.localSeq = 0; // for events without an upstream seq
    this.keepaliveSeq = 0;
    this.attempt = 0;
    this.backoffUntil = 0;
    this.flushTimer = null;
    this.flushDue = Infinity;
    this.keepaliveTimer = null;
    this.keepaliveDue = false;
    this.inFlight = null;
    this.started = false;
    this.closed = false;
    this.warned = new Set(); // what was logged once already (see warnOnce, infoOnce)
    this.movingSince = null; // when the service first answered gateway_moving, until delivered
    this.lastDropReport = -Infinity;
    this.stats = {
      received: 0,
      filtered: 0,
      invalid: 0,
      dropped: 0,
      sentEvents: 0,
      sentBatches: 0,
      rejectedEvents: 0,
      rejectedBatches: 0,
      retries: 0,
      gatewayMoving: 0,
      keepalives: 0,
      sendErrors: 0,
    };
  }

  /** Starts the keepalive clock; the first keepalive goes out at once so the service knows us. */
  start() {
    if (this.started || this.closed) return;
    this.started = true;
    this.keepaliveDue = true;
    this.scheduleKeepalive();
    this.schedule(0);
  }

  /**
   * Accepts one gateway diagnostic event. Synchronous and exception-free by contract: it runs
   * on the gateway's dispatcher path.
   */
  push(event) {
    try {
      this.stats.received += 1;
      if (this.closed || !event || typeof event !== "object" || !this.accepts(event.type)) {
        this.stats.filtered += 1;
        return;
      }
      const record = this.toRecord(event);
      if (!record) return;
      const dropped = this.queue.push(record);
      if (dropped > 0) this.noteDropped(dropped);
      if (this.started) this.schedule(this.queue.length >= this.config.batchSize ? 0 : this.config.flushIntervalMs);
    } catch (err) {
      this.stats.invalid += 1;
      this.warnOnce("push", `openclaw-diagnostics: could not queue an event: ${err?.message ?? err}`);
    }
  }

  /** Copy, strip content fields, add gateway id and idempotency key; serialize once, now. */
  toRecord(event) {
    const copy = { ...event };
    for (const field of this.stripFields) delete copy[field];
    const hasSeq = Number.isSafeInteger(copy.seq) && copy.seq >= 0;
    const seq = hasSeq ? copy.seq : Number.MAX_SAFE_INTEGER;
    const key = hasSeq ? String(copy.seq) : `l${++this.localSeq}`;
    // Upstream's own eventId (security.event) is kept under another name: ours is the dedupe key.
    if (copy.eventId !== undefined) copy.sourceEventId = copy.eventId;
    copy.gatewayId = this.config.gatewayId;
    copy.eventId = `${this.config.gatewayId}:${this.processStart}:${key}`;
    let json;
    try {
      json = JSON.stringify(copy);
    } catch (err) {
      this.stats.invalid += 1;
      this.warnOnce("serialize", `openclaw-diagnostics: skipped an event that cannot be serialized (${copy.type}): ${err?.message ?? err}`);
      return null;
    }
    return { seq, json };
  }

  keepaliveRecord() {
    this.keepaliveSeq += 1;
    this.stats.keepalives += 1;
    return JSON.stringify({
      type: KEEPALIVE_TYPE,
      queued: this.queue.length,
      dropped: this.stats.dropped,
      // the version of the gateway we run in: the service picks its classifier profile by it
      ...(this.gatewayVersion ? { gatewayVersion: this.gatewayVersion } : {}),
      ts: this.clock.now(),
      gatewayId: this.config.gatewayId,
      eventId: `${this.config.gatewayId}:${this.processStart}:k${this.keepaliveSeq}`,
    });
  }

  noteDropped(count) {
    this.stats.dropped += count;
    const now = this.clock.now();
    if (now - this.lastDropReport >= DROP_REPORT_INTERVAL_MS) {
      this.lastDropReport = now;
      this.logger.warn?.(
        `openclaw-diagnostics: queue full (${this.config.maxQueue}); dropped the oldest events, ${this.stats.dropped} so far`,
      );
    }
  }

  warnOnce(key, message) {
    if (this.warned.has(key)) return;
    this.warned.add(key);
    this.logger.warn?.(message);
  }

  infoOnce(key, message) {
    if (this.warned.has(key)) return;
    this.warned.add(key);
    this.logger.info?.(message);
  }

  /** Arms the flush timer for `delayMs` from now unless it is already due sooner. */
  schedule(delayMs) {
    if (this.closed) return;
    const now = this.clock.now();
    const due = Math.max(now + delayMs, this.backoffUntil);
    if (this.flushTimer && this.flushDue <= due) return;
    if (this.flushTimer) this.clock.clearTimeout(this.flushTimer);
    this.flushDue = due;
    this.flushTimer = this.clock.setTimeout(() => {
      this.flushTimer = null;
      this.flushDue = Infinity;
      this.flush();
    }, due - now);
  }

  scheduleKeepalive() {
    if (this.closed) return;
    this.keepaliveTimer = this.clock.setTimeout(() => {
      this.keepaliveTimer = null;
      this.keepaliveDue = true;
      this.schedule(0);
      this.scheduleKeepalive();
    }, this.config.keepaliveIntervalMs);
  }

  /** Sends one batch if none is in flight. Resolves when that batch has settled. */
  flush() {
    if (this.inFlight) return this.inFlight;
    const batch = this.nextBatch();
    if (!batch) return Promise.resolve();
    // Never a rejected promise: nobody awaits a timer's flush, and an unhandled rejection
    // could take the gateway process down.
    this.inFlight = this.send(batch)
      .catch((err) => {
        this.stats.sendErrors += 1;
        try {
          this.warnOnce("send", `openclaw-diagnostics: sending a batch failed: ${err?.message ?? err}`);
        } catch {
          // even a broken logger must not turn this into an unhandled rejection
        }
      })
      .finally(() => {
        this.inFlight = null;
      });
    return this.inFlight;
  }

  /**
   * Up to batchSize events sorted by seq (async dispatch can reorder them), then the keepalive
   * when one is due. The keepalive does not take an event's place, so it never splits events
   * that arrived together across two batches.
   */
  nextBatch() {
    const records = this.queue.take(this.config.batchSize).sort(bySeq);
    const parts = records.map((record) => record.json);
    if (this.keepaliveDue) {
      this.keepaliveDue = false;
      parts.push(this.keepaliveRecord());
    }
    if (parts.length === 0) return null;
    return { records, body: `[${parts.join(",")}]`, count: parts.length };
  }

  async send(batch) {
    const result = await this.deliver(batch.body);
    if (result.status >= 200 && result.status < 300) {
      this.onDelivered(batch, result);
    } else if (!isRetryable(result)) {
      this.onRejected(batch, result);
    } else if (this.closed) {
      this.onAbandoned(batch, result); // shutting down: no more retries
    } else {
      this.onRetryable(batch, result);
      return;
    }
    // A keepalive that fell due while this request was in flight goes out now, not a period late.
    if (this.keepaliveDue || this.queue.length >= this.config.batchSize) this.schedule(0);
    else if (this.queue.length > 0) this.schedule(this.config.flushIntervalMs);
  }

  async deliver(body) {
    if (!this.config.eventsUrl) return { status: 0, error: new Error("no service URL configured") };
    const headers = { "content-type": "application/json", "user-agent": USER_AGENT };
    if (this.config.token) headers.authorization = `Bearer ${this.config.token}`;
    if (this.gatewayHeader) headers[GATEWAY_HEADER] = this.gatewayHeader;
    try {
      return await this.post(this.config.eventsUrl, body, headers, this.config.requestTimeoutMs);
    } catch (err) {
      return { status: 0, error: err };
    }
  }

  onDelivered(batch, result) {
    this.attempt = 0;
    this.backoffUntil = 0;
    this.stats.sentBatches += 1;
    this.stats.sentEvents += batch.count;
    this.movingSince = null;
    this.warned.delete("moving");
    if (this.warned.has("retrying") || this.warned.has("moving-long")) {
      this.warned.delete("retrying");
      this.warned.delete("moving-long");
      this.logger.info?.("openclaw-diagnostics: the service is reachable again");
    }
    // A 202 may still list events the service rejected; retrying them cannot help.
    let rejected = [];
    try {
      rejected = JSON.parse(result.body || "{}").rejected ?? [];
    } catch {
      rejected = [];
    }
    if (Array.isArray(rejected) && rejected.length > 0) {
      this.stats.rejectedEvents += rejected.length;
      this.warnOnce("rejected", `openclaw-diagnostics: the service rejected ${rejected.length} event(s): ${truncate(JSON.stringify(rejected))}`);
    }
  }

  onRetryable(batch, result) {
    const dropped = this.queue.unshiftAll(batch.records);
    if (dropped > 0) this.noteDropped(dropped);
    if (batch.count > batch.records.length) this.keepaliveDue = true; // resend a fresh one
    this.attempt += 1;
    this.stats.retries += 1;
    const now = this.clock.now();
    // The service's Retry-After (503, 429) replaces the computed backoff, within maxBackoffMs.
    const retryAfter = result.status === 503 || result.status === 429 ? parseRetryAfter(headerOf(result, "retry-after"), now) : null;
    const delay = retryAfter === null ? this.backoffDelay(this.attempt) : Math.min(retryAfter, this.config.maxBackoffMs);
    this.backoffUntil = now + delay;
    if (isGatewayMoving(result)) {
      this.noteMoving(now);
    } else {
      const why = result.error ? String(result.error?.message ?? result.error) : `HTTP ${result.status}`;
      this.warnOnce("retrying", `openclaw-diagnostics: delivery failed (${why}); retrying with backoff`);
    }
    this.schedule(0);
  }

  /**
   * A gateway moving between instances is routine when the service runs several: the same batch
   * is retried (it lands on the new owner) and that is logged at info, once per move. Only a
   * move that never ends is worth a warning.
   */
  noteMoving(now) {
    this.stats.gatewayMoving += 1;
    if (this.movingSince === null) this.movingSince = now;
    this.infoOnce("moving", `openclaw-diagnostics: gateway ${this.config.gatewayId} is moving between service instances; retrying`);
    if (now - this.movingSince >= MOVING_WARN_AFTER_MS) {
      this.warnOnce(
        "moving-long",
        `openclaw-diagnostics: the service has answered gateway_moving for ${Math.round((now - this.movingSince) / 1000)} s; ` +
          `does the proxy route on ${GATEWAY_HEADER}? still retrying`,
      );
    }
  }

  onAbandoned(batch, result) {
    this.noteDropped(batch.records.length);
    const why = result.error ? String(result.error?.message ?? result.error) : `HTTP ${result.status}`;
    this.logger.warn?.(`openclaw-diagnostics: shutting down; ${batch.records.length} event(s) not delivered (${why})`);
  }

  onRejected(batch, result) {
    this.attempt = 0;
    this.backoffUntil = 0;
    this.movingSince = null;
    this.warned.delete("moving");
    this.stats.rejectedBatches += 1;
    this.stats.rejectedEvents += batch.count;
    this.warnOnce(
      `status:${result.status}`,
      `openclaw-diagnostics: the service answered ${result.status}; dropping the batch (not retried): ${truncate(result.body ?? "")}`,
    );
  }

  /** Exponential backoff with jitter: a random delay in [d/2, d], d = min(max, base * 2^(n-1)). */
  backoffDelay(attempt) {
    const exp = Math.min(this.config.maxBackoffMs, this.config.baseBackoffMs * 2 ** Math.min(attempt - 1, 30));
    return Math.round(exp / 2 + this.random() * (exp / 2));
  }

  /**
   * Flushes what is queued within `timeoutMs` and stops the timers. Failures are not retried
   * any more: a dead service must not hold up the gateway's shutdown.
   */
  async close(timeoutMs = this.config.shutdownFlushMs) {
    if (this.closed) return;
    this.closed = true;
    if (this.flushTimer) this.clock.clearTimeout(this.flushTimer);
    if (this.keepaliveTimer) this.clock.clearTimeout(this.keepaliveTimer);
    this.flushTimer = null;
    this.keepaliveTimer = null;
    const deadline = Date.now() + timeoutMs;
    const drain = async () => {
      if (this.inFlight) await this.inFlight;
      while (Date.now() < deadline && this.queue.length > 0) await this.flush();
      // The last word: a keepalive with the final queued/dropped counts.
      if (this.started && Date.now() < deadline) {
        this.keepaliveDue = true;
        await this.flush();
      }
    };
    let timer;
    const timeout = new Promise((resolve) => {
      timer = setTimeout(resolve, Math.max(0, timeoutMs));
      timer.unref?.();
    });
    await Promise.race([drain().catch(() => {}), timeout]);
    clearTimeout(timer);
    if (this.queue.length > 0) {
      const left = this.queue.length;
      this.noteDropped(left);
      this.queue.take(left);
      this.logger.warn?.(`openclaw-diagnostics: ${left} event(s) not delivered before shutdown`);
    }
  }

  snapshot() {
    return { ...this.stats, queued: this.queue.length, attempt: this.attempt };
  }
}

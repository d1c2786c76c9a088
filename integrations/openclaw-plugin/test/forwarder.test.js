import assert from "node:assert/strict";
import { afterEach, describe, it } from "node:test";

import { resolveConfig } from "../src/config.js";
import { BoundedQueue, Forwarder, KEEPALIVE_TYPE, isGatewayMoving, parseRetryAfter } from "../src/forwarder.js";
import { FakeClock, event, pumpUntil, recordingLogger, settle, startReceiver } from "./helpers.js";

const PROCESS_START = 1_799_999_999_000;
const receivers = [];

async function receiver(respond) {
  const r = await startReceiver(respond);
  receivers.push(r);
  return r;
}

afterEach(async () => {
  while (receivers.length) await receivers.pop().close();
});

function makeForwarder(url, overrides = {}, deps = {}) {
  const { config, warnings } = resolveConfig(
    { serviceUrl: url, gatewayId: "gw-test", keepaliveIntervalMs: 30000, ...overrides },
    {},
    "host",
  );
  assert.deepEqual(warnings, []);
  const clock = deps.clock ?? new FakeClock();
  const logger = deps.logger ?? recordingLogger();
  const forwarder = new Forwarder(config, { clock, logger, random: () => 0, processStart: PROCESS_START, ...deps });
  return { forwarder, clock, logger, config };
}

/** Starts the forwarder and consumes the start-up keepalive. */
async function started(rx, setup) {
  setup.forwarder.start();
  await pumpUntil(setup.clock, () => rx.requests.length >= 1);
  await settle(10);
  return setup;
}

const nonKeepalive = (events) => events.filter((e) => e.type !== KEEPALIVE_TYPE);

describe("batching", () => {
  it("sends a full batch at once, sorted by seq, with gatewayId and an idempotency eventId", async () => {
    const rx = await receiver();
    const { forwarder, clock } = await started(rx, makeForwarder(rx.url, { batchSize: 3 }));
    for (const seq of [12, 10, 11]) forwarder.push(event(seq));
    await pumpUntil(clock, () => rx.requests.length >= 2);
    const batch = rx.requests[1].body;
    assert.deepEqual(batch.map((e) => e.seq), [10, 11, 12]);
    for (const e of batch) {
      assert.equal(e.gatewayId, "gw-test");
      assert.equal(e.eventId, `gw-test:${PROCESS_START}:${e.seq}`);
    }
    assert.equal(rx.requests[1].url, "/v1/events");
    assert.equal(rx.requests[1].headers["content-type"], "application/json");
  });

  it("holds a partial batch for flushIntervalMs, then sends it", async () => {
    const rx = await receiver();
    const { forwarder, clock } = await started(rx, makeForwarder(rx.url, { batchSize: 100, flushIntervalMs: 1000 }));
    forwarder.push(event(1));
    forwarder.push(event(2));
    clock.advance(999);
    await settle();
    assert.equal(rx.requests.length, 1, "nothing before the flush interval");
    await pumpUntil(clock, () => rx.requests.length >= 2, { stepMs: 1 });
    assert.deepEqual(rx.requests[1].body.map((e) => e.seq), [1, 2]);
  });

  it("splits a large queue into batches of batchSize, all in seq order", async () => {
    const rx = await receiver();
    const { forwarder, clock } = await started(rx, makeForwarder(rx.url, { batchSize: 4 }));
    for (let seq = 0; seq < 10; seq += 1) forwarder.push(event(seq));
    await pumpUntil(clock, () => nonKeepalive(rx.events()).length >= 10, { stepMs: 1000 });
    const sizes = rx.requests.slice(1).map((r) => nonKeepalive(r.body).length);
    assert.deepEqual(sizes.slice(0, 3), [4, 4, 2]);
    assert.deepEqual(nonKeepalive(rx.events()).map((e) => e.seq), [...Array(10).keys()]);
  });

  it("sends the bearer token when configured", async () => {
    const rx = await receiver();
    await started(rx, makeForwarder(rx.url, { token: "s3cret" }));
    assert.equal(rx.requests[0].headers.authorization, "Bearer s3cret");
  });

  it("keeps upstream's own eventId as sourceEventId and uses its own idempotency key", async () => {
    const rx = await receiver();
    const { forwarder, clock } = await started(rx, makeForwarder(rx.url, { batchSize: 1 }));
    forwarder.push({ type: "security.event", eventId: "upstream-uuid", seq: 7, ts: 1 });
    await pumpUntil(clock, () => rx.requests.length >= 2);
    const [sent] = rx.requests[1].body;
    assert.equal(sent.sourceEventId, "upstream-uuid");
    assert.equal(sent.eventId, `gw-test:${PROCESS_START}:7`);
  });
});

describe("content and type filters", () => {
  it("drops log.record and strips free-text message/error fields by default", async () => {
    const rx = await receiver();
    const { forwarder, clock } = await started(rx, makeForwarder(rx.url, { batchSize: 2 }));
    forwarder.push({ type: "log.record", level: "info", message: "user said hello", seq: 1 });
    forwarder.push({ type: "tool.loop", toolName: "x", message: "repeated args: secret", seq: 2 });
    forwarder.push({ type: "webhook.error", channel: "tg", error: "body: secret", seq: 3 });
    await pumpUntil(clock, () => rx.requests.length >= 2);
    const sent = rx.requests[1].body;
    assert.deepEqual(sent.map((e) => e.type), ["tool.loop", "webhook.error"]);
    assert.ok(sent.every((e) => !("message" in e) && !("error" in e)));
    assert.equal(sent[0].toolName, "x");
  });

  it("forwards content only when allowContent is set", async () => {
    const rx = await receiver();
    const { forwarder, clock } = await started(rx, makeForwarder(rx.url, { batchSize: 1, allowContent: true }));
    forwarder.push({ type: "log.record", message: "hello", seq: 1 });
    await pumpUntil(clock, () => rx.requests.length >= 2);
    assert.equal(rx.requests[1].body[0].message, "hello");
  });

  it("applies includeTypes and excludeTypes with prefix patterns", async () => {
    const rx = await receiver();
    const { forwarder, clock } = await started(
      rx,
      makeForwarder(rx.url, { batchSize: 2, includeTypes: ["session.*", "run.*"], excludeTypes: ["run.progress"] }),
    );
    forwarder.push({ type: "run.progress", reason: "x", seq: 1 });
    forwarder.push({ type: "gateway.event_loop.sample", seq: 2 });
    forwarder.push({ type: "session.state", state: "idle", seq: 3 });
    forwarder.push({ type: "run.started", runId: "r", seq: 4 });
    await pumpUntil(clock, () => rx.requests.length >= 2);
    assert.deepEqual(rx.requests[1].body.map((e) => e.type), ["session.state", "run.started"]);
    assert.equal(forwarder.stats.filtered, 2);
  });
});

describe("retry and backoff", () => {
  it("retries a 5xx with exponential backoff, resending the same events in order", async () => {
    const rx = await receiver((_req, i) => (i >= 1 && i <= 3 ? { status: 503, body: { error: "busy" } } : { status: 202, body: {} }));
    const setup = await started(rx, makeForwarder(rx.url, { batchSize: 2, baseBackoffMs: 400, maxBackoffMs: 10000 }));
    const { forwarder, clock } = setup;
    forwarder.push(event(2));
    forwarder.push(event(1));
    await pumpUntil(clock, () => rx.requests.length >= 2);
    // random() = 0 gives the lower end of each jitter window: 200, 400, 800 ms.
    for (const [attempt, expected] of [[1, 200], [2, 400], [3, 800]]) {
      await pumpUntil(clock, () => forwarder.stats.retries >= attempt && !forwarder.inFlight);
      assert.equal(clock.nextDelay(), expected, `backoff before attempt ${attempt + 1}`);
      clock.advance(expected - 1);
      await settle();
      assert.equal(rx.requests.length, attempt + 1, "no request before the backoff has passed");
      await pumpUntil(clock, () => rx.requests.length >= attempt + 2, { stepMs: 1 });
    }
    const bodies = rx.requests.slice(1).map((r) => nonKeepalive(r.body).map((e) => e.eventId));
    assert.equal(new Set(bodies.map((b) => b.join())).size, 1, "every attempt carries the same events");
    assert.deepEqual(nonKeepalive(rx.requests[4].body).map((e) => e.seq), [1, 2]);
    await pumpUntil(clock, () => !forwarder.inFlight);
    assert.equal(forwarder.attempt, 0, "a success resets the backoff");
    assert.equal(setup.logger.lines.warn.filter((l) => l.includes("retrying")).length, 1);
  });

  it("retries network errors (connection reset) too", async () => {
    const rx = await receiver((_req, i) => (i === 1 ? "reset" : { status: 202, body: {} }));
    const { forwarder, clock } = await started(rx, makeForwarder(rx.url, { batchSize: 1, baseBackoffMs: 100 }));
    forwarder.push(event(5));
    await pumpUntil(clock, () => rx.requests.length >= 3, { stepMs: 10 });
    assert.equal(forwarder.stats.retries, 1);
    assert.deepEqual(rx.requests[2].body.map((e) => e.seq), [5]);
  });

  it("keeps the backoff delay within [d/2, d] and under maxBackoffMs", () => {
    const { config } = resolveConfig({ baseBackoffMs: 1000, maxBackoffMs: 5000 }, {}, "h");
    const low = new Forwarder(config, { random: () => 0, clock: new FakeClock() });
    const high = new Forwarder(config, { random: () => 0.999999, clock: new FakeClock() });
    assert.deepEqual([1, 2, 3, 4, 10].map((n) => low.backoffDelay(n)), [500, 1000, 2000, 2500, 2500]);
    assert.deepEqual([1, 2, 3, 4, 10].map((n) => high.backoffDelay(n)), [1000, 2000, 4000, 5000, 5000]);
  });
});

describe("several service instances (X-OpenClaw-Gateway, gateway_moving, Retry-After)", () => {
  const ok = { status: 202, body: {} };
  const moving = {
    status: 503,
    body: { error: { code: "gateway_moving", message: "gateway gw-test is moving between instances: nothing was applied; retry" } },
    headers: { "retry-after": "1" },
  };
  const isKeepalive = (request) => request.body.every((e) => e.type === KEEPALIVE_TYPE);

  it("names the gateway in X-OpenClaw-Gateway on every request: keepalives, batches, the shutdown flush", async () => {
    const rx = await receiver();
    const { forwarder, clock } = await started(rx, makeForwarder(rx.url, { batchSize: 2, keepaliveIntervalMs: 15000 }));
    forwarder.push(event(1));
    forwarder.push(event(2)); // a full batch, at once
    await pumpUntil(clock, () => rx.requests.length >= 2);
    await settle(10);
    forwarder.push(event(3)); // a partial one, after flushIntervalMs
    await pumpUntil(clock, () => rx.requests.length >= 3, { stepMs: 100 });
    await pumpUntil(clock, () => rx.requests.length >= 4, { stepMs: 1000 }); // a quiet period's keepalive
    await forwarder.close(2000); // and the last keepalive
    assert.ok(rx.requests.length >= 5);
    assert.ok(isKeepalive(rx.requests[0]) && isKeepalive(rx.requests[3]) && isKeepalive(rx.requests.at(-1)));
    assert.deepEqual(nonKeepalive(rx.events()).map((e) => e.seq), [1, 2, 3]);
    for (const request of rx.requests) {
      assert.equal(request.headers["x-openclaw-gateway"], "gw-test");
      assert.ok(request.body.every((e) => e.gatewayId === "gw-test"), "the header names the events' own gateway");
    }
  });

  it("sends the gateway id derived from the host name when none is configured", async () => {
    const rx = await receiver();
    const { config } = resolveConfig({ serviceUrl: rx.url }, {}, "host-a");
    const clock = new FakeClock();
    const forwarder = new Forwarder(config, { clock, logger: recordingLogger(), random: () => 0, processStart: PROCESS_START });
    forwarder.start();
    await pumpUntil(clock, () => rx.requests.length >= 1);
    assert.equal(rx.requests[0].headers["x-openclaw-gateway"], "host-a");
    assert.equal(rx.requests[0].body[0].gatewayId, "host-a");
    await forwarder.close(1000);
  });

  it("goes without the header, and still delivers, when the gateway id cannot be a header value", async () => {
    const rx = await receiver();
    const { config, warnings } = resolveConfig({ serviceUrl: rx.url, gatewayId: "网关-1" }, {}, "h");
    assert.equal(warnings.length, 1);
    const clock = new FakeClock();
    const forwarder = new Forwarder(config, { clock, logger: recordingLogger(), random: () => 0, processStart: PROCESS_START });
    forwarder.start();
    await pumpUntil(clock, () => rx.requests.length >= 1);
    assert.equal(rx.requests[0].headers["x-openclaw-gateway"], undefined);
    assert.equal(rx.requests[0].body[0].gatewayId, "网关-1");
    await forwarder.close(1000);
  });

  it("retries a 503 gateway_moving after its Retry-After (1 s), then delivers the batch exactly once", async () => {
    // requests 1 and 2 (the batch and its first retry) meet a gateway in the middle of a move
    const rx = await receiver((_req, i) => (i === 1 || i === 2 ? moving : ok));
    // the computed backoff would be 2500 ms, then 5000 ms (random() = 0): Retry-After wins
    const { forwarder, clock, logger } = await started(rx, makeForwarder(rx.url, { batchSize: 3, baseBackoffMs: 5000 }));
    for (const seq of [3, 1, 2]) forwarder.push(event(seq));
    await pumpUntil(clock, () => rx.requests.length >= 2);
    for (const attempt of [1, 2]) {
      await pumpUntil(clock, () => forwarder.stats.retries >= attempt && !forwarder.inFlight);
      assert.equal(clock.nextDelay(), 1000, `Retry-After: 1 before retry ${attempt}`);
      const sentBefore = rx.requests.length;
      clock.advance(999);
      await settle();
      assert.equal(rx.requests.length, sentBefore, "nothing before the Retry-After has passed");
      await pumpUntil(clock, () => rx.requests.length > sentBefore, { stepMs: 1 });
    }
    await pumpUntil(clock, () => !forwarder.inFlight && forwarder.stats.sentBatches >= 2);
    assert.deepEqual(rx.requests.map((r) => r.status), [202, 503, 503, 202]);
    const attempts = rx.requests.slice(1).map((r) => nonKeepalive(r.body).map((e) => e.eventId).join());
    assert.equal(new Set(attempts).size, 1, "every attempt carries the same batch");
    const delivered = rx.requests.filter((r) => r.status === 202).flatMap((r) => nonKeepalive(r.body));
    assert.deepEqual(delivered.map((e) => e.seq), [1, 2, 3], "delivered exactly once, in order");
    assert.equal(forwarder.stats.dropped, 0);
    assert.equal(forwarder.queue.length, 0);
    assert.equal(forwarder.stats.sendErrors, 0);
    assert.equal(forwarder.stats.gatewayMoving, 2);
    assert.equal(forwarder.attempt, 0, "delivery resets the backoff");
    assert.deepEqual(logger.lines.warn, [], "a move is routine: no warning");
    assert.equal(logger.lines.info.filter((line) => line.includes("moving")).length, 1, "logged once, not per retry");
  });

  it("warns once when a gateway stays 'moving' for over a minute, and says so when it is over", async () => {
    const rx = await receiver((_req, i) => (i >= 1 && i <= 62 ? moving : ok));
    const { forwarder, clock, logger } = await started(rx, makeForwarder(rx.url, { batchSize: 1, keepaliveIntervalMs: 30000 }));
    forwarder.push(event(1));
    await pumpUntil(clock, () => forwarder.stats.retries >= 55 && !forwarder.inFlight, { stepMs: 1000, timeoutMs: 20000 });
    assert.deepEqual(logger.lines.warn, [], "under a minute: no warning");
    await pumpUntil(clock, () => forwarder.stats.sentBatches >= 2 && !forwarder.inFlight, { stepMs: 1000, timeoutMs: 20000 });
    assert.equal(logger.lines.warn.filter((line) => line.includes("gateway_moving")).length, 1);
    assert.ok(logger.lines.info.some((line) => line.includes("reachable again")));
    assert.deepEqual(nonKeepalive(rx.requests.filter((r) => r.status === 202).flatMap((r) => r.body)).map((e) => e.seq), [1]);
  });

  it("caps a Retry-After beyond maxBackoffMs at maxBackoffMs", async () => {
    const rx = await receiver((_req, i) => (i === 1 ? { ...moving, headers: { "retry-after": "120" } } : ok));
    const { forwarder, clock } = await started(rx, makeForwarder(rx.url, { batchSize: 1, baseBackoffMs: 100, maxBackoffMs: 5000 }));
    forwarder.push(event(1));
    await pumpUntil(clock, () => forwarder.stats.retries >= 1 && !forwarder.inFlight);
    assert.equal(clock.nextDelay(), 5000);
    clock.advance(4999);
    await settle();
    assert.equal(rx.requests.length, 2);
    await pumpUntil(clock, () => rx.requests.length >= 3, { stepMs: 1 });
    await pumpUntil(clock, () => !forwarder.inFlight);
    assert.deepEqual(rx.requests[2].body.map((e) => e.seq), [1]);
    assert.equal(rx.requests[2].status, 202);
  });

  it("honours an HTTP-date Retry-After on a 429, and ignores Retry-After on other statuses", async () => {
    const clock = new FakeClock();
    const date = new Date(clock.now() + 3000).toUTCString();
    const rx = await receiver((_req, i) => {
      if (i === 1) return { status: 429, body: { error: { code: "rate_limited" } }, headers: { "retry-after": date } };
      if (i === 2) return { status: 502, body: "bad gateway", headers: { "retry-after": "1" } };
      return ok;
    });
    const { forwarder, logger } = await started(rx, makeForwarder(rx.url, { batchSize: 1, baseBackoffMs: 8000 }, { clock }));
    forwarder.push(event(1));
    await pumpUntil(clock, () => forwarder.stats.retries >= 1 && !forwarder.inFlight);
    assert.equal(clock.nextDelay(), 3000, "the date, as a delay on the forwarder's clock");
    await pumpUntil(clock, () => forwarder.stats.retries >= 2 && !forwarder.inFlight, { stepMs: 100 });
    assert.equal(clock.nextDelay(), 8000, "a 502's Retry-After is not the service's: computed backoff (attempt 2)");
    assert.equal(logger.lines.warn.filter((line) => line.includes("retrying")).length, 1, "other retryable answers still warn once");
  });

  it("parses Retry-After as seconds or an HTTP-date, and nothing else", () => {
    const now = Date.parse("Wed, 21 Oct 2026 07:28:00 GMT");
    assert.equal(parseRetryAfter("1", now), 1000);
    assert.equal(parseRetryAfter(" 7 ", now), 7000);
    assert.equal(parseRetryAfter(["2"], now), 2000);
    assert.equal(parseRetryAfter("Wed, 21 Oct 2026 07:28:05 GMT", now), 5000);
    assert.equal(parseRetryAfter("Wed, 21 Oct 2026 07:27:00 GMT", now), 0, "a date in the past: now");
    for (const bad of [undefined, "", "soon", "-1", "1.5", "2026-10-21"]) assert.equal(parseRetryAfter(bad, now), null, String(bad));
  });

  it("tells gateway_moving from other 503s", () => {
    assert.equal(isGatewayMoving({ status: 503, body: JSON.stringify(moving.body) }), true);
    assert.equal(isGatewayMoving({ status: 503, body: '{"error": {"code": "journal_unavailable"}}' }), false);
    assert.equal(isGatewayMoving({ status: 503, body: "gateway_moving" }), false);
    assert.equal(isGatewayMoving({ status: 500, body: JSON.stringify(moving.body) }), false);
    assert.equal(isGatewayMoving({ status: 0, error: new Error("reset") }), false);
  });
});

describe("4xx handling", () => {
  it("drops a 4xx batch without retrying and logs the service's error body once", async () => {
    const errorBody = { error: { code: "validation_failed", message: "every event was rejected", details: [] } };
    const rx = await receiver((_req, i) => (i === 0 ? { status: 202, body: {} } : { status: 422, body: errorBody }));
    const { forwarder, clock, logger } = await started(rx, makeForwarder(rx.url, { batchSize: 1 }));
    forwarder.push(event(1));
    forwarder.push(event(2));
    await pumpUntil(clock, () => rx.requests.length >= 3 && !forwarder.inFlight, { stepMs: 1000 });
    clock.advance(20000);
    await settle();
    assert.equal(rx.requests.length, 3, "no retry of a 4xx");
    assert.equal(forwarder.stats.rejectedBatches, 2);
    assert.equal(forwarder.stats.retries, 0);
    const logged = logger.lines.warn.filter((line) => line.includes("422"));
    assert.equal(logged.length, 1);
    assert.match(logged[0], /every event was rejected/);
  });

  it("logs a 401 once and goes on with the next batch", async () => {
    const rx = await receiver((_req, i) => (i === 0 || i === 3 ? { status: 202, body: {} } : { status: 401, body: { error: { code: "unauthorized" } } }));
    const { forwarder, clock, logger } = await started(rx, makeForwarder(rx.url, { batchSize: 1 }));
    for (const seq of [1, 2, 3]) forwarder.push(event(seq));
    await pumpUntil(clock, () => rx.requests.length >= 4, { stepMs: 1000 });
    assert.equal(logger.lines.warn.filter((line) => line.includes("401")).length, 1);
    assert.deepEqual(rx.requests.slice(1).map((r) => r.body[0].seq), [1, 2, 3]);
  });

  it("logs events rejected inside a 202 once, without retrying them", async () => {
    const rx = await receiver((_req, i) =>
      i === 0 ? { status: 202, body: {} } : { status: 202, body: { accepted: 0, rejected: [{ index: 0, errors: [{ loc: ["body", 0, "ts"], msg: "bad" }] }] } },
    );
    const { forwarder, clock, logger } = await started(rx, makeForwarder(rx.url, { batchSize: 1 }));
    forwarder.push(event(1));
    forwarder.push(event(2));
    await pumpUntil(clock, () => rx.requests.length >= 3 && !forwarder.inFlight, { stepMs: 1000 });
    assert.equal(forwarder.stats.rejectedEvents, 2);
    assert.equal(logger.lines.warn.filter((line) => line.includes("rejected")).length, 1);
  });
});

describe("bounded queue", () => {
  it("tells the service the gateway's version in its keepalive, when the gateway gave one", async () => {
    const rx = await receiver();
    const setup = makeForwarder(rx.url, {}, { gatewayVersion: "2026.9.6" });
    await started(rx, setup);
    const keepalive = rx.events().find((e) => e.type === KEEPALIVE_TYPE);
    assert.equal(keepalive.gatewayVersion, "2026.9.6");
    const rx2 = await receiver();
    const unversioned = makeForwarder(rx2.url);
    await started(rx2, unversioned);
    assert.equal("gatewayVersion" in rx2.events().find((e) => e.type === KEEPALIVE_TYPE), false);
    await setup.forwarder.close();
    await unversioned.forwarder.close();
  });

  it("drops the oldest events beyond maxQueue and reports the count in the keepalive", async () => {
    const rx = await receiver();
    const { forwarder, clock, logger } = makeForwarder(rx.url, { batchSize: 5, maxQueue: 5 });
    for (let seq = 0; seq < 12; seq += 1) forwarder.push(event(seq));
    assert.equal(forwarder.stats.dropped, 7);
    assert.equal(forwarder.queue.length, 5);
    assert.equal(logger.lines.warn.filter((line) => line.includes("queue full")).length, 1, "reported, not per event");
    forwarder.start();
    await pumpUntil(clock, () => rx.requests.length >= 1);
    const first = rx.requests[0].body;
    const keepalive = first.at(-1);
    assert.equal(keepalive.type, KEEPALIVE_TYPE);
    assert.equal(keepalive.dropped, 7);
    assert.equal(keepalive.queued, 0, "what is still waiting after this batch");
    assert.equal(first.length, 6, "a full batch plus the keepalive");
    assert.deepEqual(nonKeepalive(rx.events()).map((e) => e.seq), [7, 8, 9, 10, 11]);
  });

  it("stays bounded while the service is down (requeued batches count against the bound)", async () => {
    const rx = await receiver(() => ({ status: 503, body: {} }));
    const { forwarder, clock } = makeForwarder(rx.url, { batchSize: 2, maxQueue: 4, baseBackoffMs: 10, maxBackoffMs: 10 });
    forwarder.start();
    for (let seq = 0; seq < 50; seq += 1) {
      forwarder.push(event(seq));
      if (seq % 5 === 0) await pumpUntil(clock, () => !forwarder.inFlight, { stepMs: 20 });
    }
    assert.ok(forwarder.queue.length <= 4);
    assert.equal(forwarder.stats.dropped + forwarder.queue.length + (forwarder.inFlight ? 2 : 0), 50);
  });

  it("BoundedQueue keeps order across take, unshiftAll and trimming", () => {
    const q = new BoundedQueue(3);
    for (const x of [1, 2, 3, 4]) q.push(x);
    assert.deepEqual(q.take(2), [2, 3]);
    assert.equal(q.unshiftAll([2, 3]), 0);
    assert.equal(q.push(5), 1);
    assert.deepEqual(q.take(10), [3, 4, 5]);
    assert.equal(q.length, 0);
  });
});

describe("keepalive", () => {
  it("sends forwarder.keepalive at start and every keepaliveIntervalMs while quiet", async () => {
    const rx = await receiver();
    const { clock } = await started(rx, makeForwarder(rx.url, { keepaliveIntervalMs: 15000 }));
    assert.deepEqual(rx.requests[0].body.map((e) => e.type), [KEEPALIVE_TYPE]);
    clock.advance(14999);
    await settle();
    assert.equal(rx.requests.length, 1);
    await pumpUntil(clock, () => rx.requests.length >= 2, { stepMs: 1 });
    await pumpUntil(clock, () => rx.requests.length >= 3, { stepMs: 1000 });
    const keepalives = rx.events().filter((e) => e.type === KEEPALIVE_TYPE);
    assert.equal(keepalives.length, 3);
    assert.deepEqual(Object.keys(keepalives[1]).sort(), ["dropped", "eventId", "gatewayId", "queued", "ts", "type"]);
    assert.equal(keepalives[1].ts - keepalives[0].ts, 15000);
    assert.equal(new Set(keepalives.map((k) => k.eventId)).size, 3);
  });

  it("sends a keepalive that fell due during a slow request right after it, not a period late", async () => {
    let release;
    const held = new Promise((resolve) => {
      release = resolve;
    });
    const rx = await receiver(async (_req, i) => {
      if (i === 1) await held;
      return { status: 202, body: {} };
    });
    const { forwarder, clock } = await started(rx, makeForwarder(rx.url, { batchSize: 1, keepaliveIntervalMs: 15000 }));
    forwarder.push(event(1));
    await pumpUntil(clock, () => rx.requests.length >= 2); // the event's request, held by the server
    clock.advance(15000); // the keepalive falls due while that request is in flight
    await settle();
    assert.equal(rx.requests.length, 2);
    release();
    await pumpUntil(clock, () => rx.requests.length >= 3);
    assert.deepEqual(rx.requests[2].body.map((e) => e.type), [KEEPALIVE_TYPE]);
  });
});

describe("never blocks, never throws", () => {
  it("push ignores junk and unserializable events without throwing", async () => {
    const rx = await receiver();
    const { forwarder } = makeForwarder(rx.url);
    assert.doesNotThrow(() => {
      forwarder.push(null);
      forwarder.push("text");
      forwarder.push({ type: 5 });
      forwarder.push({ type: "run.progress", seq: 1, big: 10n });
      const cyclic = { type: "run.progress", seq: 2 };
      cyclic.self = cyclic;
      forwarder.push(cyclic);
    });
    assert.equal(forwarder.queue.length, 0);
    assert.equal(forwarder.stats.invalid, 2);
  });

  it("a failure inside the send path never becomes an unhandled rejection", async () => {
    const rejections = [];
    const onRejection = (reason) => rejections.push(reason);
    process.on("unhandledRejection", onRejection);
    try {
      const rx = await receiver(() => ({ status: 422, body: {} }));
      const throwing = { info() {}, warn() { throw new Error("logger broke"); } };
      const { forwarder, clock } = makeForwarder(rx.url, { batchSize: 1 }, { logger: throwing });
      forwarder.start();
      forwarder.push(event(1));
      await pumpUntil(clock, () => forwarder.stats.sendErrors >= 1, { stepMs: 100 });
      await settle();
      assert.deepEqual(rejections, []);
    } finally {
      process.off("unhandledRejection", onRejection);
    }
  });

  it("push returns before any network I/O", async () => {
    const rx = await receiver();
    const { forwarder } = await started(rx, makeForwarder(rx.url, { batchSize: 1 }));
    forwarder.push(event(1));
    assert.equal(rx.requests.length, 1, "the batch is sent later, from a timer");
  });
});

describe("shutdown", () => {
  it("close flushes everything queued and a final keepalive", async () => {
    const rx = await receiver();
    const { forwarder } = await started(rx, makeForwarder(rx.url, { batchSize: 4, flushIntervalMs: 60000 }));
    for (let seq = 0; seq < 10; seq += 1) forwarder.push(event(seq));
    await forwarder.close(5000);
    assert.deepEqual(nonKeepalive(rx.events()).map((e) => e.seq), [...Array(10).keys()]);
    assert.equal(rx.events().at(-1).type, KEEPALIVE_TYPE);
    forwarder.push(event(99));
    assert.equal(forwarder.queue.length, 0, "closed: nothing more is queued");
  });

  it("close gives up on a dead service within its deadline and counts the loss", async () => {
    const rx = await receiver(() => ({ status: 503, body: {} }));
    const { forwarder } = makeForwarder(rx.url, { batchSize: 2 });
    for (let seq = 0; seq < 5; seq += 1) forwarder.push(event(seq));
    const t0 = Date.now();
    await forwarder.close(1000);
    assert.ok(Date.now() - t0 < 3000);
    assert.equal(forwarder.stats.dropped, 5);
    assert.equal(forwarder.queue.length, 0);
  });
});

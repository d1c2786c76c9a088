import assert from "node:assert/strict";
import http from "node:http";
import { after, before, beforeEach, describe, it } from "node:test";

import { Recovery, bearerMatches, validateRequest } from "../src/recovery.js";
import { recordingLogger } from "./helpers.js";

/** A stand-in for `openclaw/plugin-sdk/agent-harness` with one active run per session key. */
function fakeSdk() {
  const sdk = {
    active: new Map(),
    aborts: [],
    abortResult: { aborted: true, drained: true, forceCleared: false },
    abortDelayMs: 0,
    resolveActiveEmbeddedRunSessionId: (key) => sdk.active.get(key),
    abortAndDrainAgentHarnessRun: async (params) => {
      sdk.aborts.push(params);
      if (sdk.abortDelayMs) await new Promise((resolve) => setTimeout(resolve, sdk.abortDelayMs));
      return sdk.abortResult;
    },
  };
  return sdk;
}

let server;
let baseUrl;
let sdk;
let recovery;

before(async () => {
  server = http.createServer((req, res) => recovery.handler("hook-token")(req, res));
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  baseUrl = `http://127.0.0.1:${server.address().port}/openclaw-diagnostics/recovery`;
});

after(() => new Promise((resolve) => server.close(resolve)));

beforeEach(() => {
  sdk = fakeSdk();
  recovery = new Recovery({ gatewayId: "gw-1", settleMs: 1234, loadSdk: async () => sdk, logger: recordingLogger() });
});

async function call(body, { token = "hook-token", method = "POST" } = {}) {
  const res = await fetch(baseUrl, {
    method,
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: method === "POST" ? (typeof body === "string" ? body : JSON.stringify(body)) : undefined,
  });
  return { status: res.status, body: await res.json() };
}

// The shape the service POSTs (monitor.md, recovery decision).
function request(extra = {}) {
  return {
    gatewayId: "gw-1",
    sessionKey: "agent:main:hung",
    sessionId: "sess-1",
    ageMs: 40000,
    queueDepth: 0,
    expectedState: "processing",
    stateGeneration: 3,
    reason: "active_work_without_progress",
    activeWorkKind: "model_call",
    allowActiveAbort: true,
    requestedAt: 1_800_000_000_000,
    ...extra,
  };
}

describe("recovery webhook: HTTP contract", () => {
  it("refuses a missing or wrong bearer token with 401", async () => {
    assert.equal((await call(request(), { token: null })).status, 401);
    assert.equal((await call(request(), { token: "nope" })).status, 401);
    assert.equal(sdk.aborts.length, 0);
  });

  it("answers 405 to anything but POST, 400 to bad JSON, 422 to a bad shape", async () => {
    assert.equal((await call(null, { method: "GET" })).status, 405);
    assert.equal((await call("{not json")).status, 400);
    const bad = await call(request({ allowActiveAbort: "yes" }));
    assert.equal(bad.status, 422);
    assert.equal(bad.body.error.code, "validation_failed");
  });

  it("refuses a request meant for another gateway with 409", async () => {
    const res = await call(request({ gatewayId: "gw-2" }));
    assert.equal(res.status, 409);
    assert.match(res.body.error.message, /gw-1/);
  });
});

describe("recovery webhook: outcomes", () => {
  it("aborts the active embedded run when the service allows an active abort", async () => {
    sdk.active.set("agent:main:hung", "sess-live");
    const res = await call(request());
    assert.equal(res.status, 200);
    assert.deepEqual(res.body, { status: "aborted", action: "abort_embedded_run", activeWorkKind: "embedded_run", aborted: true, drained: true, forceCleared: false });
    assert.deepEqual(sdk.aborts, [
      { sessionId: "sess-live", sessionKey: "agent:main:hung", settleMs: 1234, forceClear: true, reason: "stuck_recovery" },
    ]);
  });

  it("observes, and does not abort, a live run without allowActiveAbort", async () => {
    sdk.active.set("agent:main:hung", "sess-live");
    const res = await call(request({ allowActiveAbort: false, reason: "stale_session_state" }));
    assert.deepEqual(res.body, { status: "skipped", action: "observe_only", outcomeReason: "active_embedded_run" });
    assert.equal(sdk.aborts.length, 0);
  });

  it("reports no_active_work when the gateway has no run for the session", async () => {
    const res = await call(request());
    assert.deepEqual(res.body, { status: "noop", action: "none", outcomeReason: "no_active_work" });
    assert.equal(sdk.aborts.length, 0);
  });

  it("reports a run that would not abort as still active", async () => {
    sdk.active.set("agent:main:hung", "sess-live");
    sdk.abortResult = { aborted: false, drained: false, forceCleared: false };
    const res = await call(request());
    assert.deepEqual(res.body, { status: "skipped", action: "observe_only", outcomeReason: "active_embedded_run" });
  });

  it("needs a sessionKey: a sessionId alone is missing_session_ref", async () => {
    const res = await call(request({ sessionKey: undefined }));
    assert.deepEqual(res.body, { status: "skipped", action: "observe_only", outcomeReason: "missing_session_ref" });
  });

  it("answers already_in_flight to a second request for the same session", async () => {
    sdk.active.set("agent:main:hung", "sess-live");
    sdk.abortDelayMs = 200;
    const [first, second] = await Promise.all([call(request()), new Promise((r) => setTimeout(r, 50)).then(() => call(request()))]);
    assert.equal(first.body.status, "aborted");
    assert.deepEqual(second.body, { status: "skipped", action: "observe_only", outcomeReason: "already_in_flight" });
    assert.equal(sdk.aborts.length, 1);
  });

  it("turns an SDK without the abort helpers into failed / exception", async () => {
    recovery = new Recovery({ gatewayId: "gw-1", settleMs: 10, loadSdk: async () => ({}), logger: recordingLogger() });
    const res = await call(request());
    assert.equal(res.status, 200);
    assert.equal(res.body.status, "failed");
    assert.equal(res.body.action, "none");
    assert.equal(res.body.outcomeReason, "exception");
    assert.match(res.body.error, /abort helpers/);
  });
});

describe("helpers", () => {
  it("bearerMatches compares tokens exactly", () => {
    assert.equal(bearerMatches("Bearer abc", "abc"), true);
    assert.equal(bearerMatches("bearer abc", "abc"), true);
    assert.equal(bearerMatches("Bearer abcd", "abc"), false);
    assert.equal(bearerMatches("Basic abc", "abc"), false);
    assert.equal(bearerMatches(undefined, "abc"), false);
    assert.equal(bearerMatches("Bearer ", ""), false, "no token configured: nothing matches");
  });

  it("validateRequest accepts the service's request and names a bad field", () => {
    assert.equal(validateRequest(request()), null);
    assert.match(validateRequest({ sessionKey: 5 }), /sessionKey/);
    assert.match(validateRequest([]), /object/);
  });
});

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { DEFAULTS, compileTypeFilter, dispatcherInterest, eventsUrl, gatewayHeaderValue, resolveConfig } from "../src/config.js";

describe("resolveConfig", () => {
  it("uses the defaults and the host name as gateway id", () => {
    const { config, warnings } = resolveConfig({}, {}, "gw-host");
    assert.deepEqual(warnings, []);
    assert.equal(config.gatewayId, "gw-host");
    assert.equal(config.batchSize, DEFAULTS.batchSize);
    assert.equal(config.keepaliveIntervalMs, 15000);
    assert.equal(config.eventsUrl, "", "no URL: forwarding is off");
    assert.ok(Object.isFrozen(config));
  });

  it("falls back to OPENCLAW_DIAG_FORWARD_* env vars, and plugin config wins over them", () => {
    const env = {
      OPENCLAW_DIAG_FORWARD_URL: "http://127.0.0.1:9000",
      OPENCLAW_DIAG_FORWARD_TOKEN: "env-token",
      OPENCLAW_DIAG_FORWARD_BATCH_SIZE: "50",
      OPENCLAW_DIAG_FORWARD_EXCLUDE_TYPES: "diagnostic.gc, gateway.event_loop.sample",
      OPENCLAW_DIAG_FORWARD_ALLOW_CONTENT: "false",
    };
    const fromEnv = resolveConfig({}, env, "h").config;
    assert.equal(fromEnv.eventsUrl, "http://127.0.0.1:9000/v1/events");
    assert.equal(fromEnv.token, "env-token");
    assert.equal(fromEnv.batchSize, 50);
    assert.deepEqual(fromEnv.excludeTypes, ["diagnostic.gc", "gateway.event_loop.sample"]);
    const fromConfig = resolveConfig({ token: "cfg-token", batchSize: 7 }, env, "h").config;
    assert.equal(fromConfig.token, "cfg-token");
    assert.equal(fromConfig.batchSize, 7);
    assert.equal(fromConfig.eventsUrl, "http://127.0.0.1:9000/v1/events");
  });

  it("reports bad values as warnings and keeps the defaults instead of throwing", () => {
    const { config, warnings } = resolveConfig(
      { serviceUrl: "ftp://x", batchSize: 0, keepaliveIntervalMs: 60000, includeTypes: "a,b", allowContent: "maybe" },
      { OPENCLAW_DIAG_FORWARD_MAX_QUEUE: "lots" },
      "h",
    );
    assert.equal(config.eventsUrl, "");
    assert.equal(config.batchSize, DEFAULTS.batchSize);
    assert.equal(config.keepaliveIntervalMs, DEFAULTS.keepaliveIntervalMs, "the keepalive can never exceed 30 s");
    assert.deepEqual(config.includeTypes, ["a", "b"], "a comma string is a list");
    assert.equal(config.allowContent, false);
    assert.equal(warnings.length, 5);
    assert.ok(warnings.some((w) => w.includes("OPENCLAW_DIAG_FORWARD_MAX_QUEUE")));
  });

  it("truncates a gateway id over the service's 128 characters and keeps maxQueue >= batchSize", () => {
    const { config, warnings } = resolveConfig({ gatewayId: "g".repeat(200), batchSize: 100, maxQueue: 10 }, {}, "h");
    assert.equal(config.gatewayId.length, 128);
    assert.equal(config.maxQueue, 100);
    assert.equal(warnings.length, 2);
  });

  it("warns when the gateway id cannot travel in the X-OpenClaw-Gateway header", () => {
    assert.equal(gatewayHeaderValue("gw-1.example"), "gw-1.example");
    assert.equal(gatewayHeaderValue("passerelle-é"), "passerelle-é", "latin-1 is a valid header value");
    assert.equal(gatewayHeaderValue("网关"), "");
    assert.equal(gatewayHeaderValue("a\nb"), "");
    assert.deepEqual(resolveConfig({ gatewayId: "passerelle-é" }, {}, "h").warnings, []);
    const { config, warnings } = resolveConfig({ gatewayId: "网关" }, {}, "h");
    assert.equal(config.gatewayId, "网关", "the id itself is kept: a single instance does not need the header");
    assert.equal(warnings.length, 1);
    assert.match(warnings[0], /X-OpenClaw-Gateway/);
  });
});

describe("eventsUrl", () => {
  it("accepts the service's base URL or the full ingest URL", () => {
    assert.equal(eventsUrl("http://h:8080"), "http://h:8080/v1/events");
    assert.equal(eventsUrl("http://h:8080/"), "http://h:8080/v1/events");
    assert.equal(eventsUrl("https://h/diag/"), "https://h/diag/v1/events");
    assert.equal(eventsUrl("http://h:8080/v1/events"), "http://h:8080/v1/events");
  });
});

describe("type filters", () => {
  it("always keeps log.record out unless content is allowed", () => {
    const base = resolveConfig({}, {}, "h").config;
    assert.equal(compileTypeFilter(base)("log.record"), false);
    assert.equal(compileTypeFilter(base)("session.state"), true);
    const open = resolveConfig({ allowContent: true }, {}, "h").config;
    assert.equal(compileTypeFilter(open)("log.record"), true);
  });

  it("matches exact names and trailing-* prefixes", () => {
    const cfg = resolveConfig({ includeTypes: ["model.call.*", "session.state"], excludeTypes: ["model.call.error"] }, {}, "h").config;
    const accepts = compileTypeFilter(cfg);
    assert.deepEqual(
      ["model.call.started", "model.call.error", "session.state", "session.stalled", 5].map(accepts),
      [true, false, true, false, false],
    );
  });

  it("tells the gateway's dispatcher which exact types to skip", () => {
    assert.deepEqual(dispatcherInterest(resolveConfig({}, {}, "h").config), { exclude: ["log.record"] });
    assert.deepEqual(dispatcherInterest(resolveConfig({ allowContent: true }, {}, "h").config), {});
    assert.deepEqual(
      dispatcherInterest(resolveConfig({ includeTypes: ["run.*"], excludeTypes: ["run.progress", "x.*"] }, {}, "h").config),
      { exclude: ["run.progress", "log.record"] },
      "a prefix include cannot be expressed: filter ourselves",
    );
    assert.deepEqual(dispatcherInterest(resolveConfig({ includeTypes: ["session.state"] }, {}, "h").config), {
      include: ["session.state"],
      exclude: ["log.record"],
    });
  });
});

import assert from "node:assert/strict";
import { afterEach, beforeEach, describe, it } from "node:test";

import { PLUGIN_ID, SERVICE_ID, createPluginEntry } from "../src/plugin.js";
import { FakeClock, event, pumpUntil, recordingLogger, startReceiver } from "./helpers.js";

/** Records subscriptions the way the SDK's onInternalDiagnosticEvent takes them. */
function fakeDispatcher() {
  const dispatcher = {
    listeners: new Map(),
    subscribe: (listener, filter) => {
      dispatcher.listeners.set(listener, filter);
      return () => dispatcher.listeners.delete(listener);
    },
    emit: (evt) => {
      for (const listener of dispatcher.listeners.keys()) listener(evt, { trusted: true });
    },
  };
  return dispatcher;
}

function fakeApi(mode, pluginConfig, logger = recordingLogger()) {
  const api = {
    registrationMode: mode,
    pluginConfig,
    logger,
    services: [],
    routes: [],
    registerService: (service) => api.services.push(service),
    registerHttpRoute: (route) => api.routes.push(route),
  };
  return api;
}

let rx;
let dispatcher;
let clock;
let entry;

beforeEach(async () => {
  rx = await startReceiver();
  dispatcher = fakeDispatcher();
  clock = new FakeClock();
  entry = createPluginEntry({
    subscribe: dispatcher.subscribe,
    loadAgentHarness: async () => ({}),
    env: {},
    hostname: "gw-host",
    processState: {},
    forwarderDeps: { clock },
  });
});

afterEach(async () => {
  await entry.stop();
  await rx.close();
});

describe("plugin entry", () => {
  it("exports the manifest's id", () => {
    assert.equal(entry.id, PLUGIN_ID);
    assert.equal(typeof entry.register, "function");
  });

  it("starts nothing in discovery and tool-discovery registrations", () => {
    for (const mode of ["discovery", "tool-discovery", "cli-metadata"]) {
      const api = fakeApi(mode, { serviceUrl: rx.url, recoveryToken: "t" });
      entry.register(api);
      assert.equal(api.services.length + api.routes.length, 0, mode);
    }
    assert.equal(dispatcher.listeners.size, 0);
  });

  it("subscribes once per process however often it is registered, excluding log.record at the source", () => {
    entry.register(fakeApi("full", { serviceUrl: rx.url }));
    entry.register(fakeApi("discovery", { serviceUrl: rx.url }));
    entry.register(fakeApi("full", { serviceUrl: rx.url }));
    assert.equal(dispatcher.listeners.size, 1);
    assert.deepEqual([...dispatcher.listeners.values()][0], { exclude: ["log.record"] });
  });

  it("forwards dispatched events to the service under the host name as gateway id", async () => {
    entry.register(fakeApi("full", { serviceUrl: rx.url, batchSize: 2 }));
    dispatcher.emit(event(2));
    dispatcher.emit(event(1));
    await pumpUntil(clock, () => rx.events().filter((e) => e.type === "run.progress").length === 2, { stepMs: 100 });
    const sent = rx.events().filter((e) => e.type === "run.progress");
    assert.deepEqual(sent.map((e) => e.seq), [1, 2]);
    assert.ok(sent.every((e) => e.gatewayId === "gw-host"));
  });

  it("flushes on the service's stop() and unsubscribes", async () => {
    const api = fakeApi("full", { serviceUrl: rx.url, flushIntervalMs: 60000 });
    entry.register(api);
    const [service] = api.services;
    assert.equal(service.id, SERVICE_ID);
    dispatcher.emit(event(1));
    await service.stop();
    assert.equal(dispatcher.listeners.size, 0);
    assert.ok(rx.events().some((e) => e.seq === 1), "queued event delivered at shutdown");
    // A restart of the service after a failed replacement brings forwarding back.
    service.start();
    assert.equal(dispatcher.listeners.size, 1);
  });

  it("does not forward without a service URL, and says so once", () => {
    const logger = recordingLogger();
    entry.register(fakeApi("full", {}, logger));
    entry.register(fakeApi("full", {}, logger));
    assert.equal(dispatcher.listeners.size, 0);
    assert.equal(logger.lines.warn.filter((l) => l.includes("no serviceUrl")).length, 1);
  });

  it("registers the recovery webhook only when a recovery token is configured", () => {
    const without = fakeApi("full", { serviceUrl: rx.url });
    entry.register(without);
    assert.equal(without.routes.length, 0);
    const withToken = fakeApi("full", { serviceUrl: rx.url, recoveryToken: "t" });
    entry.register(withToken);
    assert.equal(withToken.routes.length, 1);
    assert.equal(withToken.routes[0].path, "/openclaw-diagnostics/recovery");
    assert.equal(withToken.routes[0].auth, "plugin");
  });

  it("never throws into the gateway: a failing registrar is logged", () => {
    const logger = recordingLogger();
    const api = fakeApi("full", { serviceUrl: rx.url, recoveryToken: "t" }, logger);
    api.registerHttpRoute = () => {
      throw new Error("route registry closed");
    };
    assert.doesNotThrow(() => entry.register(api));
    assert.ok(logger.lines.warn.some((l) => l.includes("route registry closed")));
  });

  it("a listener call never throws, whatever the event", () => {
    entry.register(fakeApi("full", { serviceUrl: rx.url }));
    assert.doesNotThrow(() => {
      dispatcher.emit(undefined);
      dispatcher.emit({ type: "x", seq: 1, bad: 1n });
    });
  });
});

// The plugin entry, with its OpenClaw dependencies injected so it can be tested without a
// gateway. `index.js` wires in the real SDK.
//
// OpenClaw calls `register(api)` several times per process (modes full, discovery,
// tool-discovery). Only the "full" registration of a gateway starts anything, and the event
// subscription and the forwarder live once per process (a globalThis slot), whatever the
// number of registrations or module evaluations.

import { dispatcherInterest, resolveConfig } from "./config.js";
import { Forwarder } from "./forwarder.js";
import { Recovery } from "./recovery.js";

export const PLUGIN_ID = "diagnostics-forwarder";
export const SERVICE_ID = "diagnostics-forwarder";
const STATE_KEY = Symbol.for("openclaw-diagnostics.forwarder.state.v1");

/**
 * @param {object} deps
 * @param {(listener: Function, filter?: object) => () => void} deps.subscribe
 *   `onInternalDiagnosticEvent` from `openclaw/plugin-sdk/diagnostic-runtime`
 * @param {() => Promise<object>} deps.loadAgentHarness `import("openclaw/plugin-sdk/agent-harness")`
 */
export function createPluginEntry(deps) {
  const { subscribe, loadAgentHarness, env = process.env, hostname, processState = globalThis, forwarderDeps = {} } = deps;

  function state() {
    processState[STATE_KEY] ??= { forwarder: null, unsubscribe: null, configKey: null, exitHook: false, warned: new Set() };
    return processState[STATE_KEY];
  }

  function warnOnce(logger, key, message) {
    const s = state();
    if (s.warned.has(key)) return;
    s.warned.add(key);
    logger?.warn?.(message);
  }

  /** Starts (or restarts after a config change or a service stop) the one forwarder. */
  function ensureForwarder(config, logger, gatewayVersion) {
    const s = state();
    const key = JSON.stringify(config);
    if (s.forwarder && !s.forwarder.closed && s.configKey === key) return s.forwarder;
    stopForwarder();
    const forwarder = new Forwarder(config, { logger, gatewayVersion, ...forwarderDeps });
    s.forwarder = forwarder;
    s.configKey = key;
    // The listener runs on the gateway's dispatcher path: hand off and return, never throw.
    s.unsubscribe = subscribe((event) => {
      try {
        forwarder.push(event);
      } catch {
        // push() does not throw; this is belt and braces for the gateway's sake.
      }
    }, dispatcherInterest(config));
    forwarder.start();
    logger?.info?.(`openclaw-diagnostics: forwarding diagnostic events to ${config.eventsUrl} as gateway ${config.gatewayId}`);
    installExitHook();
    return forwarder;
  }

  /** Unsubscribes and flushes; resolves when the flush is done or timed out. */
  function stopForwarder() {
    const s = state();
    const forwarder = s.forwarder;
    try {
      s.unsubscribe?.();
    } catch {
      // an unsubscribe failing must not stop the shutdown
    }
    s.unsubscribe = null;
    s.forwarder = null;
    s.configKey = null;
    return forwarder ? forwarder.close() : Promise.resolve();
  }

  // For processes that end by draining their event loop (CLI turns) rather than through the
  // gateway's service shutdown: one last best-effort flush.
  function installExitHook() {
    const s = state();
    if (s.exitHook || typeof process?.once !== "function") return;
    s.exitHook = true;
    process.once("beforeExit", () => {
      void state().forwarder?.close();
    });
  }

  function registerRecoveryRoute(api, config, logger) {
    if (!config.recoveryToken) return;
    if (typeof api.registerHttpRoute !== "function") {
      warnOnce(logger, "no-routes", "openclaw-diagnostics: this gateway cannot register HTTP routes; recovery webhook disabled");
      return;
    }
    const recovery = new Recovery({
      gatewayId: config.gatewayId,
      settleMs: config.recoverySettleMs,
      loadSdk: loadAgentHarness,
      logger,
    });
    api.registerHttpRoute({
      path: config.recoveryPath,
      // The route checks its own bearer token (the service's webhook token), not gateway auth.
      auth: "plugin",
      match: "exact",
      handler: recovery.handler(config.recoveryToken),
    });
    logger?.info?.(`openclaw-diagnostics: recovery webhook at ${config.recoveryPath}`);
  }

  function register(api) {
    const mode = api?.registrationMode ?? "full";
    if (mode !== "full") return; // discovery loads must not open sockets or start timers
    const logger = api.logger ?? console;
    const { config, warnings } = resolveConfig(api.pluginConfig, env, hostname);
    for (const warning of warnings) warnOnce(logger, `config:${warning}`, `openclaw-diagnostics: ${warning}`);
    registerRecoveryRoute(api, config, logger);
    if (!config.eventsUrl) {
      warnOnce(logger, "no-url", "openclaw-diagnostics: no serviceUrl configured (plugin config or OPENCLAW_DIAG_FORWARD_URL); forwarding is off");
      return;
    }
    // `api.runtime.version`: the OpenClaw product version the gateway reports (its SDK docs).
    const gatewayVersion = api.runtime?.version;
    // Subscribe now, not in the service's start(), so the gateway's start-up events are kept.
    ensureForwarder(config, logger, gatewayVersion);
    api.registerService?.({
      id: SERVICE_ID,
      start: () => {
        ensureForwarder(config, logger, gatewayVersion);
      },
      // The gateway calls stop() on shutdown: deliver what is queued (bounded by shutdownFlushMs).
      stop: () => stopForwarder(),
    });
  }

  return {
    id: PLUGIN_ID,
    name: "OpenClaw diagnostics forwarder",
    description: "Forwards the gateway's diagnostic events to an openclaw-diagnostics service and serves its recovery webhook.",
    register(api) {
      try {
        register(api);
      } catch (err) {
        // Never throw into the gateway's plugin loader: a broken forwarder must not stop it.
        api?.logger?.warn?.(`openclaw-diagnostics: not started: ${err?.message ?? err}`);
      }
    },
    // for tests and for operators poking at a live process
    stats: () => state().forwarder?.snapshot() ?? null,
    stop: () => stopForwarder(),
  };
}

// OpenClaw plugin entry: forwards the gateway's diagnostic events to openclaw-diagnostics.
// Plain ESM, no build step, no dependencies beyond Node and the OpenClaw plugin SDK.

// onInternalDiagnosticEvent, not the documented onDiagnosticEvent: the latter drops every
// trusted core event (run.*, model.call.*, model.usage, harness.run.*), which the service's
// classifier needs.
import { onInternalDiagnosticEvent } from "openclaw/plugin-sdk/diagnostic-runtime";
import { createPluginEntry } from "./src/plugin.js";

export default createPluginEntry({
  subscribe: onInternalDiagnosticEvent,
  // Loaded only when the recovery webhook is called: it is a large, experimental SDK surface.
  loadAgentHarness: () => import("openclaw/plugin-sdk/agent-harness"),
});

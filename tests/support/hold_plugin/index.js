// Test-only OpenClaw plugin (tests/e2e/gateway): a `before_dispatch` hook that holds an inbound
// message containing the configured marker until a release file appears. The gateway marks the
// session processing before it runs this hook, so the session stays processing with no run, no
// model call and no tool: what the gateway's own monitor calls stuck.
import { access } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";

async function released(path) {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

export default {
  id: "e2e-hold-dispatch",
  name: "e2e: hold dispatch",
  description: "Holds the dispatch of marked inbound messages.",
  register(api) {
    if ((api?.registrationMode ?? "full") !== "full") return;
    const { marker = "hold-dispatch", releaseFile } = api.pluginConfig ?? {};
    api.on(
      "before_dispatch",
      async (event) => {
        const text = JSON.stringify(event ?? {});
        if (!text.includes(marker)) return undefined;
        api.logger?.info?.("e2e-hold-dispatch: holding a dispatch");
        while (!releaseFile || !(await released(releaseFile))) await sleep(200);
        api.logger?.info?.("e2e-hold-dispatch: released");
        return undefined;
      },
      { timeoutMs: 600000 },
    );
  },
};

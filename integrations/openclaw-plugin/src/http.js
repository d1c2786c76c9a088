// A minimal JSON POST over node:http/https. We do not use the global fetch: the gateway may
// install its own dispatcher (proxies, request capture) on it, and diagnostics must not be
// routed through — or show up in — the gateway's own outbound traffic handling.

import http from "node:http";
import https from "node:https";

const MAX_RESPONSE_BYTES = 64 * 1024;

/**
 * Resolves `{status, body, headers}` (`headers` as node gives them: lower-case names); rejects
 * on network errors and on timeout.
 */
export function postJson(url, body, headers, timeoutMs) {
  return new Promise((resolve, reject) => {
    const target = new URL(url);
    const transport = target.protocol === "https:" ? https : http;
    const payload = Buffer.from(body, "utf8");
    const req = transport.request(
      target,
      {
        method: "POST",
        headers: { ...headers, "content-length": String(payload.length) },
        agent: false, // no pooled sockets left behind to keep the process alive
        timeout: timeoutMs,
      },
      (res) => {
        const chunks = [];
        let size = 0;
        res.on("data", (chunk) => {
          // Keep only the start of a large answer: it is for the log, not for parsing a body.
          if (size < MAX_RESPONSE_BYTES) chunks.push(chunk);
          size += chunk.length;
        });
        res.on("end", () =>
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8"), headers: res.headers ?? {} }),
        );
        res.on("error", reject);
      },
    );
    req.on("timeout", () => req.destroy(new Error(`request timed out after ${timeoutMs} ms`)));
    req.on("error", reject);
    req.end(payload);
  });
}

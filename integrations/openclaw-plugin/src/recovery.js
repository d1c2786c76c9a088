// The service's recovery webhook (monitor.md, `webhook` executor), served inside the gateway.
//
// What the OpenClaw 2026.9.6 plugin SDK offers for this: `openclaw/plugin-sdk/agent-harness`
// (documented as an experimental trusted-plugin surface with "active-run steer/abort helpers")
// exports `resolveActiveEmbeddedRunSessionId(sessionKey)` and
// `abortAndDrainAgentHarnessRun({sessionId, sessionKey, settleMs, forceClear, reason})` — the
// same abort-and-drain the gateway's own stuck-session recovery calls. It does NOT export the
// command-lane helpers (`resetCommandLane`, lane snapshots): a plugin cannot release a session
// lane or see queued lane tasks. So this webhook can abort an active embedded run (the
// `allowActiveAbort` requests) and report that nothing is active; it never answers
// `released / release_lane`.

import crypto from "node:crypto";

const MAX_BODY_BYTES = 64 * 1024;

function outcome(status, action, outcomeReason, extra = {}) {
  return { status, action, ...(outcomeReason ? { outcomeReason } : {}), ...extra };
}

/** Validates the service's request JSON; returns an error string or null. */
export function validateRequest(request) {
  if (!request || typeof request !== "object" || Array.isArray(request)) return "the body must be a JSON object";
  for (const field of ["gatewayId", "sessionKey", "sessionId", "reason", "expectedState"]) {
    if (request[field] !== undefined && request[field] !== null && typeof request[field] !== "string") {
      return `${field} must be a string`;
    }
  }
  if (request.allowActiveAbort !== undefined && typeof request.allowActiveAbort !== "boolean") {
    return "allowActiveAbort must be a boolean";
  }
  return null;
}

export class Recovery {
  /**
   * @param {object} options
   * @param {string} options.gatewayId this gateway's id: requests for another are refused
   * @param {number} options.settleMs how long an abort may wait for the run to end; keep it
   *   below the service's webhook timeout (10 s by default)
   * @param {() => Promise<object>} options.loadSdk resolves the agent-harness SDK module
   */
  constructor({ gatewayId, settleMs, loadSdk, logger = console }) {
    this.gatewayId = gatewayId;
    this.settleMs = settleMs;
    this.loadSdk = loadSdk;
    this.logger = logger;
    this.inFlight = new Set();
  }

  async sdk() {
    const mod = await this.loadSdk();
    if (typeof mod?.abortAndDrainAgentHarnessRun !== "function" || typeof mod?.resolveActiveEmbeddedRunSessionId !== "function") {
      throw new Error("this OpenClaw version does not export the agent-harness abort helpers");
    }
    return mod;
  }

  /** Runs one recovery request; always resolves to an outcome object. */
  async recover(request) {
    // The SDK finds a session's active run by key only; a request with just a sessionId
    // cannot be acted on safely.
    const sessionKey = request.sessionKey || undefined;
    if (!sessionKey) return outcome("skipped", "observe_only", "missing_session_ref");
    if (this.inFlight.has(sessionKey)) return outcome("skipped", "observe_only", "already_in_flight");
    this.inFlight.add(sessionKey);
    try {
      const sdk = await this.sdk();
      const activeSessionId = sdk.resolveActiveEmbeddedRunSessionId(sessionKey);
      if (!activeSessionId) {
        // No embedded run owns this session in the gateway: the service's picture is stale.
        return outcome("noop", "none", "no_active_work");
      }
      if (request.allowActiveAbort !== true) {
        // A live run is not ours to abort unless the service's active-abort rules allowed it.
        return outcome("skipped", "observe_only", "active_embedded_run");
      }
      const result = await sdk.abortAndDrainAgentHarnessRun({
        sessionId: activeSessionId,
        sessionKey,
        settleMs: this.settleMs,
        forceClear: true,
        reason: "stuck_recovery",
      });
      if (result?.aborted || result?.forceCleared) {
        this.logger.warn?.(
          `openclaw-diagnostics: recovery aborted the embedded run of ${sessionKey} (aborted=${!!result.aborted} drained=${!!result.drained} forceCleared=${!!result.forceCleared})`,
        );
        return outcome("aborted", "abort_embedded_run", undefined, {
          activeWorkKind: "embedded_run", // the work found and aborted, as 2026.9's own outcome says
          aborted: !!result.aborted,
          drained: !!result.drained,
          forceCleared: !!result.forceCleared,
        });
      }
      if (!sdk.resolveActiveEmbeddedRunSessionId(sessionKey)) return outcome("noop", "none", "no_active_work");
      return outcome("skipped", "observe_only", "active_embedded_run");
    } catch (err) {
      return outcome("failed", "none", "exception", { error: String(err?.message ?? err) });
    } finally {
      this.inFlight.delete(sessionKey);
    }
  }

  /** A gateway HTTP route handler: `(req, res) => true` (the request was handled). */
  handler(token) {
    return async (req, res) => {
      try {
        await this.serve(req, res, token);
      } catch (err) {
        if (!res.headersSent) reply(res, 500, { error: { code: "internal", message: String(err?.message ?? err) } });
      }
      return true;
    };
  }

  async serve(req, res, token) {
    if (req.method !== "POST") {
      res.setHeader("allow", "POST");
      return reply(res, 405, { error: { code: "method_not_allowed", message: "use POST" } });
    }
    if (!bearerMatches(req.headers?.authorization, token)) {
      return reply(res, 401, { error: { code: "unauthorized", message: "missing or wrong bearer token" } });
    }
    let request;
    try {
      request = JSON.parse(await readBody(req));
    } catch (err) {
      const tooLarge = err?.code === "too_large";
      return reply(res, tooLarge ? 413 : 400, { error: { code: tooLarge ? "too_large" : "bad_json", message: String(err?.message ?? err) } });
    }
    const invalid = validateRequest(request);
    if (invalid) return reply(res, 422, { error: { code: "validation_failed", message: invalid } });
    if (request.gatewayId && request.gatewayId !== this.gatewayId) {
      return reply(res, 409, {
        error: { code: "wrong_gateway", message: `this is gateway ${this.gatewayId}, not ${request.gatewayId}` },
      });
    }
    return reply(res, 200, await this.recover(request));
  }
}

export function bearerMatches(header, token) {
  if (!token || typeof header !== "string") return false;
  const match = /^Bearer\s+(.+)$/i.exec(header.trim());
  if (!match) return false;
  // Compare digests so the comparison is constant-time whatever the lengths.
  const digest = (text) => crypto.createHash("sha256").update(text, "utf8").digest();
  return crypto.timingSafeEqual(digest(match[1]), digest(token));
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on("data", (chunk) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        const err = new Error(`body over ${MAX_BODY_BYTES} bytes`);
        err.code = "too_large";
        reject(err);
        req.destroy?.();
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

function reply(res, status, body) {
  const raw = JSON.stringify(body);
  res.statusCode = status;
  res.setHeader("content-type", "application/json");
  res.setHeader("content-length", Buffer.byteLength(raw));
  res.end(raw);
}

// Test helpers: a manual clock for the forwarder's timers, and a real local HTTP receiver.

import http from "node:http";
import { setTimeout as realDelay } from "node:timers/promises";

/** A clock whose timers only fire when the test advances it. */
export class FakeClock {
  constructor(start = 1_800_000_000_000) {
    this.t = start;
    this.timers = new Map();
    this.nextId = 1;
  }

  now() {
    return this.t;
  }

  setTimeout(fn, ms) {
    const id = this.nextId++;
    this.timers.set(id, { at: this.t + Math.max(0, ms), fn });
    return id;
  }

  clearTimeout(id) {
    this.timers.delete(id);
  }

  /** Moves time forward by `ms`, firing every timer that falls due, in order. */
  advance(ms) {
    const end = this.t + ms;
    for (;;) {
      let nextId = null;
      let next = null;
      for (const [id, timer] of this.timers) {
        if (timer.at <= end && (next === null || timer.at < next.at)) {
          nextId = id;
          next = timer;
        }
      }
      if (next === null) break;
      this.timers.delete(nextId);
      this.t = Math.max(this.t, next.at);
      next.fn();
    }
    this.t = end;
  }

  /** Milliseconds until the earliest pending timer, or null. */
  nextDelay() {
    let at = null;
    for (const timer of this.timers.values()) at = at === null ? timer.at : Math.min(at, timer.at);
    return at === null ? null : at - this.t;
  }
}

/**
 * A real HTTP server on 127.0.0.1 recording every request. `respond(request, index)` returns
 * (or resolves to) `{status, body, headers?}`, or `"reset"` to destroy the connection (a network
 * error for the client). `requests[i].status` is what request i was answered.
 */
export async function startReceiver(respond = () => ({ status: 202, body: { accepted: 0, duplicates: 0, ignored: 0, rejected: [] } })) {
  const requests = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on("data", (chunk) => chunks.push(chunk));
    req.on("end", async () => {
      const raw = Buffer.concat(chunks).toString("utf8");
      let body;
      try {
        body = JSON.parse(raw);
      } catch {
        body = raw;
      }
      const request = { method: req.method, url: req.url, headers: req.headers, body };
      const index = requests.length;
      requests.push(request);
      const answer = await receiver.respond(request, index);
      if (answer === "reset") {
        req.socket.destroy();
        return;
      }
      const payload = typeof answer.body === "string" ? answer.body : JSON.stringify(answer.body ?? {});
      request.status = answer.status;
      res.writeHead(answer.status, { "content-type": "application/json", ...(answer.headers ?? {}) });
      res.end(payload);
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const receiver = {
    respond,
    requests,
    url: `http://127.0.0.1:${server.address().port}`,
    /** All events received so far, in arrival order. */
    events: () => requests.flatMap((request) => (Array.isArray(request.body) ? request.body : [])),
    close: () => new Promise((resolve) => server.close(resolve)),
  };
  return receiver;
}

/**
 * Lets real I/O happen while advancing the fake clock by `stepMs` per turn, until `done()`
 * holds. Fails after a real-time deadline instead of hanging.
 */
export async function pumpUntil(clock, done, { stepMs = 0, timeoutMs = 5000 } = {}) {
  const deadline = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > deadline) throw new Error("condition not reached before the deadline");
    clock.advance(stepMs);
    await realDelay(2);
  }
}

/** Lets pending real I/O settle without moving the fake clock. */
export async function settle(ms = 50) {
  await realDelay(ms);
}

export function recordingLogger() {
  const lines = { info: [], warn: [], error: [], debug: [] };
  return {
    lines,
    info: (msg) => lines.info.push(msg),
    warn: (msg) => lines.warn.push(msg),
    error: (msg) => lines.error.push(msg),
    debug: (msg) => lines.debug.push(msg),
  };
}

export function event(seq, extra = {}) {
  return { type: "run.progress", sessionKey: "agent:main:t", reason: "model_call:stream_progress", seq, ts: 1_800_000_000_000 + seq, ...extra };
}

// The status page's one renderer. The server sends only the shell (app/http/templates/) with the
// data of the first poll in <script type="application/json" id="initial-state">; this script
// renders that at once, then fetches the same JSON (/ui/state.json, /ui/session.json: app/http/page.py)
// whenever the change stream (/v1/stream) says something changed, or every 2 s while the stream is
// cut, and renders each answer. No build step: the file is served as it is.
(function () {
  "use strict";
  // Everything below builds DOM nodes and sets textContent: nothing from the server is ever
  // parsed as HTML (session keys, tool names and reasons come from the network).
  var body = document.body;
  var base = body.dataset.base || "";
  var page = body.dataset.page;
  var live = document.getElementById("live");
  var SEV = {"session.stuck": "stuck", "session.stalled": "stalled", "session.long_running": "long"};
  var LABEL = {"session.stuck": "Stuck", "session.stalled": "Stalled", "session.long_running": "Long-running"};
  var DASH = "\u2013";

  function h(tag, attrs) {
    var node = document.createElement(tag);
    if (attrs) for (var name in attrs) {
      if (name === "text") node.textContent = attrs[name];
      else if (name === "cls") node.className = attrs[name];
      else node.setAttribute(name, attrs[name]);
    }
    for (var i = 2; i < arguments.length; i++) {
      var child = arguments[i];
      if (child === null || child === undefined) continue;
      node.appendChild(typeof child === "string" ? document.createTextNode(child) : child);
    }
    return node;
  }
  // The same strings as human_ms in app/formatting.py (tests/e2e/test_page_browser.py compares them).
  function human(ms) {
    if (ms === null || ms === undefined) return DASH;
    ms = Math.max(0, Math.floor(ms));
    if (ms < 1000) return ms + "ms";
    var s = Math.floor(ms / 1000);
    if (s < 60) return s + "s";
    var pad = function (n) { return (n < 10 ? "0" : "") + n; };
    if (s < 3600) return Math.floor(s / 60) + "m " + pad(s % 60) + "s";
    if (s < 86400) return Math.floor(s / 3600) + "h " + pad(Math.floor(s % 3600 / 60)) + "m";
    return Math.floor(s / 86400) + "d " + Math.floor(s % 86400 / 3600) + "h";
  }
  // The same as stamp_ms in app/formatting.py: 2026-11-25 03:04:54Z.
  function stamp(ms) {
    if (ms === null || ms === undefined) return DASH;
    return new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
  }
  function badge(type) {
    if (!type) return h("span", {cls: "badge none", text: "OK"});
    return h("span", {cls: "badge " + (SEV[type] || "none"), text: LABEL[type] || type});
  }
  function sub(text, mono) { return h("div", {cls: mono ? "sub mono" : "sub", text: text}); }
  function sessionHref(gateway, key) {
    return base + "/ui/session?" + new URLSearchParams({gatewayId: gateway, sessionKey: key}).toString();
  }
  function workText(a) {
    if (!a.activeWorkKind) return DASH;
    var text = a.activeWorkKind.replace(/_/g, " ");
    if (a.activeToolName) text += " \u00b7 " + a.activeToolName + " (" + human(a.activeToolAgeMs) + ")";
    if (a.hasActiveEmbeddedRun && a.activeWorkKind !== "embedded_run") text += " \u00b7 run active";
    return text;
  }
  function progress(a) {
    if (a.lastProgressAgeMs === null || a.lastProgressAgeMs === undefined) return [DASH, ""];
    return [human(a.lastProgressAgeMs) + " ago", a.lastProgressReason || ""];
  }
  function recovery(item) {
    if (item.recoveryInFlight) return ["in flight", "pending"];
    var last = item.lastRecovery;
    if (!last) return [DASH, "muted"];
    if (last.kind === "requested") return ["requested", "pending"];
    var text = last.status + " / " + last.action;
    if (last.outcomeReason) text += " (" + last.outcomeReason + ")";
    if (last.stale) text += " \u00b7 stale";
    return [text, (last.status === "aborted" || last.status === "released") ? "ok" : "muted"];
  }
  function table(cls, headers, rows) {
    var head = h("tr");
    headers.forEach(function (col) {
      head.appendChild(h("th", col[1] ? {cls: "num", text: col[0]} : {text: col[0]}));
    });
    var tbody = h("tbody");
    rows.forEach(function (row) { tbody.appendChild(row); });
    return h("table", {cls: cls}, h("thead", null, head), tbody);
  }
  function replace(id, node) {
    var target = document.getElementById(id);
    if (!target) return;
    target.textContent = "";
    if (Array.isArray(node)) node.forEach(function (n) { target.appendChild(n); });
    else target.appendChild(node);
  }

  // -- overview -------------------------------------------------------------------------------
  function cards(state) {
    var c = state.counts, s = state.sessions;
    var silent = state.gateways.filter(function (g) { return g.silent; }).length;
    var list = [
      ["stuck", "Stuck", c.stuck, "recovery eligible"],
      ["stalled", "Stalled", c.stalled, "active work without progress"],
      ["long", "Long-running", c.long_running, "busy past the warn threshold"],
      ["neutral", "Sessions tracked", s.total, s.byState.processing + " processing \u00b7 " +
        s.byState.waiting + " waiting \u00b7 " + s.byState.idle + " idle"],
      [silent ? "stalled" : "neutral", "Gateways", state.gateways.length, silent ? silent + " silent" : "all reporting"]
    ];
    return list.map(function (card) {
      var active = (["stuck", "stalled", "long"].indexOf(card[0]) >= 0 && card[2]) ? " active" : "";
      return h("div", {cls: "card " + card[0] + active},
        h("div", {cls: "card-label", text: card[1]}),
        h("div", {cls: "card-value", text: String(card[2])}),
        h("div", {cls: "card-note", text: card[3]}));
    });
  }
  function attention(state) {
    if (!state.items.length) return h("p", {cls: "empty", text: "No session needs attention."});
    var rows = state.items.map(function (item) {
      var att = item.attention || {}, a = item.activity || {};
      var key = item.sessionKey || item.sessionId || "";
      var p = progress(a), r = recovery(item);
      return h("tr", {cls: "sev-" + (SEV[att.eventType] || "none")},
        h("td", null, badge(att.eventType || null),
          item.needsHuman ? h("div", {cls: "needs-human", text: "needs a human: " + item.needsHuman.cause}) : null),
        h("td", {cls: "session"}, h("a", {cls: "key", href: sessionHref(item.gatewayId, key), text: key}),
          sub(item.gatewayId)),
        h("td", null, h("span", {cls: "mono", text: att.reason || ""}),
          sub(att.classification === att.reason ? "" : (att.classification || ""))),
        h("td", {cls: "num", text: human(att.attentionAgeMs)}),
        h("td", null, item.state, sub("queue " + item.queueDepth)),
        h("td", {text: workText(a)}),
        h("td", null, p[0], sub(p[1], true)),
        h("td", null, h("span", {cls: "rec " + r[1], text: r[0]})));
    });
    var nodes = [table("grid", [["Severity"], ["Session"], ["Reason"], ["Attention age", 1], ["State"],
      ["Active work"], ["Last progress"], ["Recovery"]], rows)];
    var more = state.underAttention - state.items.length;
    if (more > 0) nodes.push(h("p", {cls: "more", text: "\u2026 and " + more + " more (see GET /v1/sessions)"}));
    return nodes;
  }
  function gateways(state) {
    if (!state.gateways.length) return h("p", {cls: "empty", text: "No gateway has sent events yet."});
    var rows = state.gateways.map(function (g) {
      return h("tr", null,
        h("td", {cls: "mono", text: g.gatewayId}),
        h("td", null, g.silent ? h("span", {cls: "rec warn", text: "silent"}) : h("span", {cls: "rec ok", text: "reporting"})),
        h("td", {cls: "num", text: human(g.lastHeardAgoMs) + " ago"}),
        h("td", {cls: "num", text: g.clockSkewMs + " ms"}),
        h("td", {cls: "mono", text: (g.gatewayVersion || "unknown") + " \u00b7 " + g.profile}),
        h("td", {cls: "num", text: String(g.sessions)}),
        h("td", {cls: "num", text: String(g.eventsAccepted)}),
        h("td", null, maintenanceButton(g)));
    });
    var reason = reasonInput();
    return [h("p", {cls: "act"}, reason, h("span", {id: "act-note", cls: "sub", text: actionNote || ""})),
      table("grid compact", [["Gateway"], ["Status"], ["Last heard", 1], ["Clock skew", 1], ["Version \u00b7 profile"],
        ["Sessions", 1], ["Events accepted", 1], ["Maintenance"]], rows)];
  }
  function maintenanceButton(g) {
    var path = "/v1/gateways/" + encodeURIComponent(g.gatewayId) + "/maintenance";
    var on = g.maintenance;
    var b = h("button", {type: "button", cls: "act", text: on ? "End maintenance" : "Maintenance 1 h"});
    b.addEventListener("click", function () {
      var why = needReason(document.getElementById("act-reason"));
      if (!why) return;
      if (on) act("DELETE", path, {reason: why}, "maintenance of " + g.gatewayId + " ended");
      else act("PUT", path, {reason: why, until: Date.now() + 3600000}, g.gatewayId + " in maintenance for 1 h");
    });
    return on ? h("span", null, span("rec warn", "until " + stamp(on.until)), " ", b) : b;
  }
  function footer(state) {
    var m = state.monitor;
    return "warn " + human(m.warnMs) + " \u00b7 abort " + human(m.abortMs) + " \u00b7 scan every " +
      human(m.scanIntervalMs) + " \u00b7 recovery mode " + m.recoveryMode + " \u00b7 " +
      (m.running ? "monitor running" : "monitor NOT running");
  }
  function renderOverview(state) {
    replace("cards", cards(state));
    replace("attention", attention(state));
    replace("gateways", gateways(state));
    document.getElementById("footer").textContent = footer(state);
    var c = state.counts;
    document.title = (c.stuck ? "(" + c.stuck + " stuck) " : "") + "OpenClaw diagnostics";
  }

  // -- one session ----------------------------------------------------------------------------
  function facts(rows) {
    var dl = h("dl", {cls: "facts"});
    rows.forEach(function (row) {
      dl.appendChild(h("dt", {text: row[0]}));
      dl.appendChild(h("dd", null, row[1]));
    });
    return dl;
  }
  function usageText(u) {
    var tokens = (u.total === null || u.total === undefined) ? DASH : Number(u.total).toLocaleString("en-US");
    var cost = (u.costUsd === null || u.costUsd === undefined) ? DASH : "$" + Number(u.costUsd).toFixed(4);
    return tokens + " tokens \u00b7 " + cost;
  }
  function span(cls, text) { return h("span", {cls: cls, text: text}); }
  function frag() {
    var f = document.createDocumentFragment();
    for (var i = 0; i < arguments.length; i++) {
      var c = arguments[i];
      f.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    }
    return f;
  }
  function details(ev) {
    var skip = {type: 1, ts: 1, receivedAt: 1, gatewayId: 1, sessionKey: 1, sessionId: 1, seq: 1, eventId: 1};
    var parts = [];
    Object.keys(ev).forEach(function (name) {
      var v = ev[name];
      if (skip[name] || v === null || v === undefined) return;
      parts.push(name + "=" + (typeof v === "object" ? JSON.stringify(v) : String(v)));
    });
    return parts.join(" ");
  }
  function renderDetail(item) {
    var att = item.attention, a = item.activity || {}, usage = item.usage || {};
    var key = item.sessionKey || item.sessionId || "";
    var p = progress(a);
    var nodes = [];
    nodes.push(h("div", {cls: "detail-head"}, badge(att ? att.eventType : null), h("h1", {cls: "key", text: key})));
    // sessionHash: what exported log records carry in place of the key (app/session_ids.py)
    nodes.push(h("p", {cls: "sub"}, "gateway ", span("mono", item.gatewayId), " \u00b7 session id ",
      span("mono", item.sessionId || DASH), " \u00b7 hash ", span("mono", item.sessionHash || DASH)));
    var sessionRows = [
      ["State", item.state], ["Queue depth", String(item.queueDepth)], ["Generation", String(item.generation)],
      ["Last activity", frag(human(item.ageMs) + " ago ", span("sub", stamp(item.lastActivityAt)))],
      ["Recovery in flight", item.recoveryInFlight ? "yes" : "no"],
      ["Usage", usageText(usage)]
    ];
    var attRows = att ? [
      ["Verdict", att.eventType], ["Reason", span("mono", att.reason)], ["Classification", att.classification],
      ["Attention age", human(att.attentionAgeMs)], ["Since", stamp(att.since)],
      ["Recovery eligible", att.recoveryEligible ? "yes" : "no"]
    ] : [["Verdict", span("muted", "not under attention")]];
    var actRows = [
      ["Active work", workText(a)], ["Tool call id", span("mono", a.activeToolCallId || DASH)],
      ["Last progress", frag(p[0] + " ", span("sub mono", p[1]))]
    ];
    if (item.gatewayVerdict) {
      var v = item.gatewayVerdict;
      actRows.push(["Gateway's own verdict", frag((v.eventType || "") + " ", span("mono", v.reason || ""), " ",
        span("sub", stamp(v.ts)))]);
    }
    if (item.needsHuman) {
      nodes.push(h("p", {cls: "needs-human"}, "Needs a human: ", span("mono", item.needsHuman.cause),
        " since " + stamp(item.needsHuman.since)));
    }
    nodes.push(actPanel(item, key));
    nodes.push(h("section", {cls: "cols"},
      h("div", {cls: "panel"}, h("h2", {text: "Session"}), facts(sessionRows)),
      h("div", {cls: "panel"}, h("h2", {text: "Attention"}), facts(attRows)),
      h("div", {cls: "panel"}, h("h2", {text: "Activity"}), facts(actRows))));

    var recRows = (item.recoveries || []).map(function (r) {
      var at = r.kind === "completed" ? r.completedAt : r.requestedAt;
      var what;
      if (r.kind === "completed") {
        what = r.status + " / " + r.action + (r.outcomeReason ? " (" + r.outcomeReason + ")" : "") + (r.stale ? " \u00b7 stale" : "");
      } else {
        what = "requested" + (r.allowActiveAbort ? " \u00b7 active abort allowed" : "");
      }
      return h("tr", null, h("td", {cls: "nowrap", text: stamp(at)}), h("td", {text: r.kind || ""}), h("td", {text: what}),
        h("td", {cls: "mono", text: r.reason || ""}), h("td", {cls: "num", text: human(r.ageMs)}),
        h("td", {cls: "num", text: r.stateGeneration === undefined ? "" : String(r.stateGeneration)}));
    });
    (item.gatewayRecoveries || []).forEach(function (r) {
      var what = (r.eventType || "").replace("session.recovery.", "") + (r.status ? ": " + r.status + " / " + r.action : "");
      recRows.push(h("tr", {cls: "gw"}, h("td", {cls: "nowrap", text: stamp(r.ts)}), h("td", {text: "gateway"}),
        h("td", {text: what}), h("td", {cls: "mono", text: r.reason || r.outcomeReason || ""}),
        h("td", {cls: "num", text: human(r.ageMs)}), h("td", {cls: "num", text: DASH})));
    });
    var recBody = recRows.length ? table("grid compact", [["Time"], ["Kind"], ["Outcome"], ["Reason"], ["Age", 1],
      ["Generation", 1]], recRows) : h("p", {cls: "empty", text: "No recovery requested for this session."});
    nodes.push(h("section", {cls: "panel"}, h("div", {cls: "panel-head"}, h("h2", {text: "Recovery history"}),
      span("hint", "newest first")), recBody));

    var events = item.recentEvents || [];
    var evBody = events.length ? table("grid compact", [["Time"], ["Event"], ["Details"]], events.map(function (ev) {
      return h("tr", null, h("td", {cls: "nowrap", text: stamp(ev.ts || ev.receivedAt)}),
        h("td", {cls: "mono nowrap", text: ev.type || ""}), h("td", {cls: "mono details", text: details(ev)}));
    })) : h("p", {cls: "empty", text: "No recent events in the journal."});
    nodes.push(h("section", {cls: "panel"}, h("div", {cls: "panel-head"}, h("h2", {text: "Recent events"}),
      span("hint", "newest first")), evBody));
    replace("detail", nodes);
    document.title = key + " \u00b7 OpenClaw diagnostics";
  }

  // -- acting: POST to the actions' API with the reason and the sign-in's CSRF token ------------
  var actionNote = null;  // what the last action answered: kept across re-renders
  function act(method, path, payload, done) {
    fetch(base + path, {method: method, credentials: "same-origin", body: JSON.stringify(payload),
                        headers: {"Content-Type": "application/json", "Accept": "application/json",
                                  "X-CSRF-Token": body.dataset.csrf || ""}})
      .then(function (response) {
        return response.json().catch(function () { return {}; }).then(function (answer) {
          actionNote = response.ok ? done : "refused (" + response.status + "): " +
            ((answer.error && answer.error.message) || "no answer");
          var note = document.getElementById("act-note");
          if (note) note.textContent = actionNote;
        });
      })
      .catch(function () { actionNote = "the service could not be reached"; });
  }
  var reasonDraft = "";  // what was typed: kept across re-renders
  function reasonInput() {
    var input = h("input", {id: "act-reason", type: "text", maxlength: "500", placeholder: "why (recorded in the audit log)"});
    input.value = reasonDraft;
    input.addEventListener("input", function () { reasonDraft = input.value; });
    return input;
  }
  function needReason(input) {
    if (input.value.trim()) return input.value.trim();
    actionNote = "a reason is needed";
    var note = document.getElementById("act-note");
    if (note) note.textContent = actionNote;
    return null;
  }
  function actPanel(item, key) {
    var reason = reasonInput();
    function button(label, cls, handler) {
      var b = h("button", {type: "button", cls: cls, text: label});
      b.addEventListener("click", function () {
        var why = needReason(reason);
        if (why) handler(why);
      });
      return b;
    }
    var path = "/v1/sessions/" + encodeURIComponent(key);
    var recover = function (mode) {
      return function (why) {
        act("POST", path + "/recover", {reason: why, action: mode, gatewayId: item.gatewayId},
            "recovery requested (" + mode + ")");
      };
    };
    var buttons = [button("Recover", "act", recover("auto")), button("Release lane", "act", recover("release")),
                   button("Abort work", "act danger", recover("abort"))];
    if (item.needsHuman) {
      buttons.push(button("Dismiss", "act", function (why) {
        act("POST", path + "/dismiss", {reason: why, gatewayId: item.gatewayId}, "taken off the needs-human list");
      }));
    }
    return h("section", {cls: "panel act"}, h("h2", {text: "Act"}), reason, h("span", null, buttons[0], buttons[1],
      buttons[2], buttons[3] || null), h("p", {id: "act-note", cls: "sub", text: actionNote || ""}));
  }

  // -- live updates: the change stream, polling when it is cut ---------------------------------
  // The page follows GET /v1/stream (app/http/stream.py): a change there makes it fetch its JSON
  // at once. While the stream is up it still fetches every STREAMING_INTERVAL, to keep the shown
  // ages current; when the stream is cut it polls every INTERVAL until the stream is back.
  var INTERVAL = 2000;
  var STREAMING_INTERVAL = 15000;
  var CHANGES = ["attention.opened", "attention.changed", "attention.cleared", "recovery.requested",
                 "recovery.completed", "recovery.verified", "recovery.ineffective", "session.needs_human",
                 "gateway.silent", "gateway.back", "maintenance.began", "maintenance.ended", "reset"];
  var lastOk = 0;
  var streaming = false;
  function status(text, cls) {
    if (!live) return;
    live.textContent = text;
    live.className = "pill " + cls;
  }
  function mode() { return streaming ? "live \u00b7 streaming" : "live \u00b7 polling"; }
  function load(url, render) {
    // one fetch and render; true when it worked
    return fetch(url, {credentials: "same-origin", cache: "no-store", headers: {"Accept": "application/json"}})
      .then(function (response) {
        if (response.status === 401) { status("signed out \u2013 reload", "down"); return null; }
        if (response.status === 404) { status("session no longer tracked", "down"); return null; }
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (data) {
        if (data === null) return false;
        render(data);
        lastOk = Date.now();
        status(mode(), "live");
        return true;
      })
      .catch(function () {
        status(lastOk ? "reconnecting\u2026" : "offline", "down");
        return false;
      });
  }
  function tick(url, render) {
    var next = function (ok) {
      var wait = streaming ? STREAMING_INTERVAL : (ok === false ? INTERVAL * 2 : INTERVAL);
      setTimeout(function () { tick(url, render); }, wait);
    };
    if (document.hidden) { next(true); return; }
    load(url, render).then(next);
  }
  function follow(url, render) {
    if (!window.EventSource) return;
    var source = new EventSource(base + "/v1/stream");  // the sign-in cookie goes with it
    var pending = null;
    function changed() {
      if (pending) return;  // a burst of changes is one fetch
      pending = setTimeout(function () { pending = null; load(url, render); }, 150);
    }
    source.onopen = function () { streaming = true; if (lastOk) status(mode(), "live"); };
    source.onerror = function () {
      // EventSource comes back by itself (with Last-Event-ID); until then the page polls
      streaming = false;
      if (lastOk) status(mode(), "live");
      if (source.readyState === 2) setTimeout(function () { follow(url, render); }, INTERVAL * 5);
    };
    CHANGES.forEach(function (name) { source.addEventListener(name, changed); });
  }
  function start(url, render) {
    // What the server answered with the page is shown at once; the first fetch follows after one
    // interval. The pill says "live" only once a fetch succeeded.
    var initial = document.getElementById("initial-state");
    follow(url, render);
    if (!initial) { tick(url, render); return; }
    setTimeout(function () { tick(url, render); }, INTERVAL);
    render(JSON.parse(initial.textContent));
  }
  if (page === "overview") {
    start(base + "/ui/state.json" + location.search, renderOverview);  // ?gatewayId= filters
  } else if (page === "session") {
    var query = new URLSearchParams({sessionKey: body.dataset.key, gatewayId: body.dataset.gateway});
    start(base + "/ui/session.json?" + query.toString(), renderDetail);
  }
})();

-- wrk script: POST /v1/events bodies of mixed OpenClaw diagnostic events (mirrors bench/workload.py).
--   wrk -t1 -c32 -d10s -s bench/wrk_events.lua URL -- <run prefix> <events per request> <sessions> <token> \
--       [per-gateway [<gateways>]]
-- Every event has a unique eventId and seq (the run prefix keeps runs on one server apart), so
-- the dedupe window never short-circuits. Sessions advance through one realistic cycle each:
-- queued -> processing -> model call -> tool call -> progress -> idle, ACTIVE of them at a
-- time, interleaved, over a pool of <sessions> session keys spread over <gateways> gateways (8).
-- `per-gateway` (bench/scaleout.py): each request carries one gateway's events and its
-- X-OpenClaw-Gateway header, each gateway with its own share of the pool.

local ACTIVE = 64
local prefix, batch, sessions, token = "r", 100, 20000, ""
local gateways, per_gateway = 8, false
local counter = 0
local counters = {}  -- per gateway, in per-gateway mode
local headers = nil  -- per gateway, in per-gateway mode
local requests = 0
local thread_id = 0
local next_thread = 0

function setup(thread)
  thread:set("thread_id", next_thread)
  next_thread = next_thread + 1
end

function init(args)
  prefix = args[1] or prefix
  batch = tonumber(args[2] or batch)
  sessions = tonumber(args[3] or sessions)
  token = args[4] or token
  per_gateway = args[5] == "per-gateway"
  gateways = tonumber(args[6] or gateways)
  wrk.headers["Content-Type"] = "application/json"
  if token ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. token
  end
  for g = 0, gateways - 1 do counters[g] = 0 end
end

local floor = math.floor
local concat = table.concat

-- The n-th event of the stream; `gw` set (per-gateway mode): of that gateway's own sessions,
-- with its name in the ids; nil: of the whole pool, its gateway from the session.
local function event(n, ts, gw)
  local slot = n % ACTIVE
  local round = floor(n / ACTIVE)
  local step = round % 8
  local cycle = floor(round / 8)
  local tid = thread_id or 0
  local label, idx, gateway_id
  if gw then
    label = gw .. "-"
    idx = (cycle * ACTIVE + slot) % floor(sessions / gateways)
    gateway_id = gw
  else
    label = ""
    idx = (cycle * ACTIVE + slot) % sessions
    gateway_id = "gw-" .. (idx % gateways)
  end
  local head = '{"eventId":"' .. prefix .. "-" .. tid .. "-" .. label .. n .. '","seq":' .. n ..
    ',"ts":' .. ts .. ',"gatewayId":"' .. gateway_id ..
    '","sessionKey":"agent:main:' .. label .. "t" .. tid .. "-s" .. idx .. '","sessionId":"sid-' .. label .. "t" .. tid .. "-" .. idx .. '"'
  local run = ',"runId":"run-' .. label .. tid .. "-" .. idx .. "-" .. cycle .. '"'
  if step == 0 then
    return head .. ',"type":"message.queued","source":"telegram","channel":"telegram","queueDepth":1}'
  elseif step == 1 then
    return head .. ',"type":"session.state","state":"processing","prevState":"idle","reason":"run_started","queueDepth":1}'
  elseif step == 2 then
    return head .. run .. ',"type":"model.call.started","provider":"anthropic","model":"claude-sonnet-4","api":"messages","transport":"http"}'
  elseif step == 3 then
    return head .. run .. ',"type":"model.call.completed","provider":"anthropic","model":"claude-sonnet-4","api":"messages","transport":"http","durationMs":1834,"timeToFirstByteMs":412,"requestPayloadBytes":18211,"responseStreamBytes":5120}'
  elseif step == 4 then
    return head .. run .. ',"type":"tool.execution.started","toolName":"exec","toolCallId":"call-' .. cycle .. '","toolSource":"builtin"}'
  elseif step == 5 then
    return head .. run .. ',"type":"tool.execution.completed","toolName":"exec","toolCallId":"call-' .. cycle .. '","toolSource":"builtin","durationMs":270,"outcome":"ok"}'
  elseif step == 6 then
    return head .. run .. ',"type":"run.progress","reason":"tool:exec:completed"}'
  else
    return head .. ',"type":"session.state","state":"idle","prevState":"processing","reason":"run_completed","queueDepth":0}'
  end
end

-- Per-gateway mode: every request carries one gateway's events (round robin over the gateways,
-- offset per thread) and names it in X-OpenClaw-Gateway, as a forwarder does.
local function gateway_request(ts)
  if headers == nil then
    headers = {}
    for g = 0, gateways - 1 do
      local t = {}
      for k, v in pairs(wrk.headers) do t[k] = v end
      t["X-OpenClaw-Gateway"] = "gw-" .. g
      headers[g] = t
    end
  end
  local g = (requests + (thread_id or 0) * 17) % gateways
  requests = requests + 1
  local n = counters[g]
  local parts = {}
  for i = 1, batch do
    parts[i] = event(n, ts, "gw-" .. g)
    n = n + 1
  end
  counters[g] = n
  return wrk.format("POST", nil, headers[g], "[" .. concat(parts, ",") .. "]")
end

function request()
  local ts = os.time() * 1000
  if per_gateway then
    return gateway_request(ts)
  end
  local body
  if batch == 1 then
    body = event(counter, ts)
    counter = counter + 1
  else
    local parts = {}
    for i = 1, batch do
      parts[i] = event(counter, ts)
      counter = counter + 1
    end
    body = "[" .. concat(parts, ",") .. "]"
  end
  return wrk.format("POST", nil, nil, body)
end

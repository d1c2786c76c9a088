-- wrk script: POST /v1/events bodies of mixed OpenClaw diagnostic events (mirrors bench/workload.py).
--   wrk -t1 -c32 -d10s -s bench/wrk_events.lua URL -- <run prefix> <events per request> <sessions> <token>
-- Every event has a unique eventId and seq (the run prefix keeps runs on one server apart), so
-- the dedupe window never short-circuits. Sessions advance through one realistic cycle each:
-- queued -> processing -> model call -> tool call -> progress -> idle, ACTIVE of them at a
-- time, interleaved, over a pool of SESSIONS session keys spread over GATEWAYS gateways.

local ACTIVE, GATEWAYS = 64, 8
local prefix, batch, sessions, token = "r", 100, 20000, ""
local counter = 0
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
  wrk.headers["Content-Type"] = "application/json"
  if token ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. token
  end
end

local floor = math.floor
local concat = table.concat

local function event(n, ts)
  local slot = n % ACTIVE
  local round = floor(n / ACTIVE)
  local step = round % 8
  local cycle = floor(round / 8)
  local idx = (cycle * ACTIVE + slot) % sessions
  local tid = thread_id or 0
  local head = '{"eventId":"' .. prefix .. "-" .. tid .. "-" .. n .. '","seq":' .. n ..
    ',"ts":' .. ts .. ',"gatewayId":"gw-' .. (idx % GATEWAYS) ..
    '","sessionKey":"agent:main:t' .. tid .. "-s" .. idx .. '","sessionId":"sid-t' .. tid .. "-" .. idx .. '"'
  local run = ',"runId":"run-' .. tid .. "-" .. idx .. "-" .. cycle .. '"'
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

function request()
  local ts = os.time() * 1000
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

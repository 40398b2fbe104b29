-- wrk script: POST one JSON body to the URL given on the command line.
--
-- Environment (set by bench/intake_post.py):
--   WRK_BODY   the JSON body, sent as application/json
--   WRK_VARY   optional substring of WRK_BODY; when set, each request replaces it
--              with "<WRK_VARY>+<WRK_RUN>.<thread>.<n>" so every request comes from a
--              distinct sender (intake's R9 flags repeated content or floods from one
--              sender); WRK_RUN keeps senders distinct across runs (warm-up, then measure)
-- At the end it prints one line "WRK_JSON {...}" that intake_post.py parses.

local body = os.getenv("WRK_BODY") or error("WRK_BODY is not set")
local vary = os.getenv("WRK_VARY") or ""
local run = os.getenv("WRK_RUN") or "0"
local headers = { ["Content-Type"] = "application/json" }

wrk.method = "POST"
wrk.body = body
wrk.headers["Content-Type"] = "application/json"

-- Each wrk thread runs its own copy of this script; setup() numbers them.
local next_id = 0

function setup(thread)
  next_id = next_id + 1
  thread:set("thread_id", next_id)
end

local counter = 0

if vary ~= "" then
  local first, last = string.find(body, vary, 1, true)
  if not first then
    error("WRK_VARY not found in WRK_BODY")
  end
  local head, tail = string.sub(body, 1, last), string.sub(body, last + 1)

  function request()
    counter = counter + 1
    local unique = head .. "+" .. run .. "." .. thread_id .. "." .. counter .. tail
    return wrk.format(nil, nil, headers, unique)
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,'
      .. '"connect":%d,"read":%d,"write":%d,"timeout":%d,"status":%d,'
      .. '"p50_us":%d,"p75_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.timeout, e.status,
    latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean))
end

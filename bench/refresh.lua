-- wrk script: every request is a real grant_type=refresh_token with rotation.
--
-- Usage: wrk -t2 -c32 -d10s -s bench/refresh.lua http://127.0.0.1:PORT -- /tmp/dir/tokens
-- Thread i reads <stem>.<i>.txt (one live refresh token per line, one per session).
-- Each thread keeps a FIFO of live tokens: request() takes the oldest, response()
-- puts the rotated successor from the answer back. wrk calls response() before the
-- next request() on the same connection, so with at least as many sessions as
-- connections per thread the queue never runs dry, and every session is refreshed
-- round-robin (each token is presented exactly once).
-- done() prints one line "WRKJSON {...}" that bench/_common.py parses.

local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

local queue, head, tail = {}, 1, 0
bad, dry = 0, 0  -- globals: done() reads them with thread:get
local headers = { ["Content-Type"] = "application/x-www-form-urlencoded" }

function init(args)
  local path = args[1] .. "." .. id .. ".txt"
  for line in io.lines(path) do
    if #line > 0 then
      tail = tail + 1
      queue[tail] = line
    end
  end
end

function request()
  if head > tail then
    dry = dry + 1
    -- Nothing live to present: an invalid token, so the miss shows as an error.
    return wrk.format("POST", "/oauth/token", headers,
      "grant_type=refresh_token&client_id=default&refresh_token=none")
  end
  local token = queue[head]
  queue[head] = nil
  head = head + 1
  return wrk.format("POST", "/oauth/token", headers,
    "grant_type=refresh_token&client_id=default&refresh_token=" .. token)
end

function response(status, hdrs, body)
  local token = string.match(body, '"refresh_token":%s*"(ftr_[%w_%-]+)"')
  if status ~= 200 or token == nil then
    bad = bad + 1
    return
  end
  tail = tail + 1
  queue[tail] = token
end

function done(summary, latency, requests)
  local bad_total, dry_total = 0, 0
  for _, t in ipairs(threads) do
    bad_total = bad_total + (t:get("bad") or 0)
    dry_total = dry_total + (t:get("dry") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d, "status": %d, ' ..
    '"bad_answer": %d, "queue_dry": %d}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.timeout, e.status, bad_total, dry_total))
end

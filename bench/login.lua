-- wrk script: every request is a real password login (argon2id verification).
-- Usage: wrk ... -s bench/login.lua URL -- <username> <password>
-- done() prints one line "WRKJSON {...}" that bench/_common.py parses.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

bad = 0  -- global: done() reads it with thread:get

local req

function init(args)
  req = wrk.format("POST", "/oauth/token",
    { ["Content-Type"] = "application/x-www-form-urlencoded" },
    "grant_type=password&client_id=default&username=" .. args[1] .. "&password=" .. args[2])
end

function request()
  return req
end

function response(status, hdrs, body)
  if status ~= 200 or not string.find(body, '"refresh_token"', 1, true) then
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local bad_total = 0
  for _, t in ipairs(threads) do
    bad_total = bad_total + (t:get("bad") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d, "status": %d, ' ..
    '"bad_answer": %d}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.timeout, e.status, bad_total))
end

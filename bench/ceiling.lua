-- wrk script for the baseline: GET /healthz, a trivial JSON endpoint served by the
-- same server process (same ASGI server, workers and middleware) as the refresh run.
-- done() prints one line "WRKJSON {...}" that bench/_common.py parses.

wrk.method = "GET"
wrk.path = "/healthz"

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d, "status": %d}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.timeout, e.status))
end

-- wrk script for bench/run.sh.
-- With BENCH_BODY set, every request is a POST of that body as application/json (a workflow run);
-- without it, a plain GET (the nginx baselines). The done hook prints one machine-readable line
-- that run.sh parses, so the numbers do not depend on the layout of wrk's own report.
local body = os.getenv("BENCH_BODY")
-- BENCH_CLOSE=1: every request asks for `Connection: close`, so wrk connects anew for each one
-- (the connect-heavy load: accept, a fresh libmicrohttpd connection and its teardown per request)
if os.getenv("BENCH_CLOSE") == "1" then
  wrk.headers["Connection"] = "close"
end
-- BENCH_HEADER="Name: value": one more header on every request (credentials for the auth loads)
local header = os.getenv("BENCH_HEADER")
if header and header ~= "" then
  local name, value = header:match("^([^:]+):%s*(.*)$")
  wrk.headers[name] = value
end
if body and body ~= "" then
  wrk.method = "POST"
  wrk.body = body
  wrk.headers["Content-Type"] = "application/json"
end

-- BENCH_VARY=N: each request's body has "n" drawn from 1..N instead of the fixed body (the L2 load:
-- more distinct requests than L1 holds)
local vary = tonumber(os.getenv("BENCH_VARY") or "")
if vary and vary > 0 then
  request = function()
    return wrk.format(nil, nil, nil, string.format('{"inputs":{"user":"bench","n":%d}}', math.random(vary)))
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  local secs = summary.duration / 1e6
  -- wrk counts a status > 399 in errors.status; those are the "non-2xx" answers here
  local ok = summary.requests - e.status
  io.write(string.format(
    "BENCH requests=%d ok=%d secs=%.3f rps=%.1f ok_rps=%.1f p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f " ..
    "non2xx=%d connect_err=%d read_err=%d write_err=%d timeouts=%d\n",
    summary.requests, ok, secs, summary.requests / secs, ok / secs,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, e.status, e.connect, e.read, e.write, e.timeout))
end

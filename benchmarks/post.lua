-- wrk script for benchmarks/run.py: POST a JSON body, then print a machine-readable summary.
--
-- Parameters (environment variables):
--   BENCH_BODY  the request body (JSON), required
--   BENCH_AUTH  the Authorization header value, optional (e.g. "Bearer sk-...")
--
-- The done() hook prints one line "BENCH_JSON {...}" with exact counts and latency
-- percentiles in microseconds (wrk's own text output rounds them to 10 us).

wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY") or error("BENCH_BODY is not set")
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
local auth = os.getenv("BENCH_AUTH")
if auth ~= nil and auth ~= "" then
  wrk.headers["Authorization"] = auth
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"min":%.1f,"mean":%.1f,"max":%.1f,"stdev":%.1f,' ..
    '"p50":%.1f,"p75":%.1f,"p90":%.1f,"p99":%.1f,"p999":%.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.max, latency.stdev,
    latency:percentile(50), latency:percentile(75), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9)))
end

-- wrk script of the server benchmarks: POSTs $WRK_BODY as JSON when it is set (else GETs),
-- and prints one machine-readable line at the end:
--   RESULT <req/s> <p50 µs> <p99 µs> <errors (non-2xx/3xx, socket)> <requests>
local body = os.getenv("WRK_BODY")
if body and #body > 0 then
  wrk.method = "POST"
  wrk.body = body
  wrk.headers["Content-Type"] = "application/json"
end

done = function(summary, latency, requests)
  local e = summary.errors
  local errors = e.connect + e.read + e.write + e.status + e.timeout
  io.write(string.format("RESULT %.1f %.1f %.1f %d %d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99), errors, summary.requests))
end

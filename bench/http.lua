-- wrk script: GET (or POST with BODY) with an optional bearer token (TOKEN env var).
-- Prints one RESULT line; non-2xx answers count as errors so a broken run cannot pass for a
-- fast one.
local token = os.getenv("TOKEN")
if token and token ~= "" then wrk.headers["Authorization"] = "Bearer " .. token end
local body = os.getenv("BODY")
if body and body ~= "" then
  wrk.method = "POST"
  wrk.body = body
  wrk.headers["Content-Type"] = "application/json"
end

local bad = 0
response = function(status, headers, body)
  if status < 200 or status > 299 or string.find(body, '"errors"', 1, true) then bad = bad + 1 end
end
done = function(summary, latency, requests)
  io.write(string.format("RESULT rps=%.0f p50_ms=%.3f p99_ms=%.3f requests=%d errors=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, summary.requests, summary.errors.status + bad))
end

-- Shared by the wrk scripts: counts bad answers (not 2xx, or a GraphQL `errors` member) and
-- prints one RESULT line, so a broken run cannot pass for a fast one. Each wrk thread runs its
-- own Lua state and `done` another: a thread's count is a global of its state, summed in
-- `done` through the threads kept by `setup`.
bad = 0
local threads = {}
setup = function(thread)
  table.insert(threads, thread)
  thread:set("thread_index", #threads)
end
response = function(status, headers, body)
  if status < 200 or status > 299 or string.find(body, '"errors"', 1, true) then bad = bad + 1 end
end
done = function(summary, latency, requests)
  local failed = 0
  for _, thread in ipairs(threads) do failed = failed + thread:get("bad") end
  local errors = summary.errors
  io.write(string.format("RESULT rps=%.0f p50_ms=%.3f p99_ms=%.3f requests=%d errors=%d\n",
    summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000,
    latency:percentile(99) / 1000, summary.requests,
    failed + errors.connect + errors.read + errors.write + errors.timeout))
end

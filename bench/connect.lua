-- wrk script: createConnection with API-key credentials for a new consumer on every request
-- (`RUN`-thread-count, so that runs and threads never share one), a bearer token (TOKEN) and
-- the service (SERVICE). Prints one RESULT line (bench/result.lua).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
dofile("bench/result.lua")
local run, service = os.getenv("RUN"), os.getenv("SERVICE")
local count = 0
request = function()
  count = count + 1
  local body = string.format('{"query":"mutation { createConnection(input: {consumerId: \\"%s-%d-%d\\", '
    .. 'serviceId: \\"%s\\", credentials: {fields: {api_key: \\"bench-key\\"}}}) { id state } }"}',
    run, thread_index, count, service)
  return wrk.format(nil, nil, nil, body)
end

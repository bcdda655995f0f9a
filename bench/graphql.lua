-- wrk script: POST one GraphQL request (BODY env var) with a bearer token (TOKEN env var).
-- Prints one RESULT line (bench/result.lua).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. os.getenv("TOKEN")
wrk.body = os.getenv("BODY")
dofile("bench/result.lua")

-- wrk script: GET (or POST with BODY) with an optional bearer token (TOKEN env var).
-- Prints one RESULT line (bench/result.lua).
local token = os.getenv("TOKEN")
if token and token ~= "" then wrk.headers["Authorization"] = "Bearer " .. token end
local body = os.getenv("BODY")
if body and body ~= "" then
  wrk.method = "POST"
  wrk.body = body
  wrk.headers["Content-Type"] = "application/json"
end
dofile("bench/result.lua")

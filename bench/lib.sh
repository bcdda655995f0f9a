# Shared helpers of the GraphQL benchmarks: build, start/stop the release server, GraphQL
# calls, and one wrk measurement (with a warm-up) printed as a RESULT line.
# Sourced by bench/consumers.sh and bench/connections.sh.

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-8}
PORT=${PORT:-18181}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }

cargo build --release --quiet --bin keyway --example seed
# Every benchmark runs far past the default per-key GraphQL rate limit (3,000 root fields a
# minute): a limited run would measure 429s.
export KEYWAY_GRAPHQL_RATE_LIMIT_PER_MINUTE=0
RELEASE=${CARGO_TARGET_DIR:-target}/release # cargo's own output directory (CARGO_TARGET_DIR if set)
# BENCH_BIN runs another build of keyway (one copied aside before a change, say).
BIN=${BENCH_BIN:-$RELEASE/keyway}
SEED=$RELEASE/examples/seed
WORK=$(mktemp -d)
SERVER=
# A command the server runs under (bench/proxy_instructions.sh: valgrind), or nothing.
SERVE_WRAP=${SERVE_WRAP:-}
trap '[ -n "$SERVER" ] && kill $SERVER 2>/dev/null; rm -rf "$WORK"' EXIT

now_ms() { date +%s%3N; }

gql() { # token, json body
  curl -sf -X POST "http://127.0.0.1:$PORT/graphql" -H "authorization: Bearer $1" \
    -H 'content-type: application/json' -d "$2"
}

start_server() { # sets SERVER and READY_MS (start-to-ready milliseconds)
  local t0; t0=$(now_ms)
  KEYWAY_LOG_LEVEL=warn $SERVE_WRAP "$BIN" serve --listen "127.0.0.1:$PORT" >"$WORK/serve.log" 2>&1 &
  SERVER=$!
  until curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null; do sleep 0.005; done
  READY_MS=$(( $(now_ms) - t0 ))
}

stop_server() { kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=; }

global_id() { printf '%s:%s' "$1" "$2" | base64 -w0 | tr '+/' '-_' | tr -d '='; }

# Sets up a fresh store for a backend: KEYWAY_DATA_DIR, DATABASE_URL, SEED_URL, OP (operator
# token), APP_ID (uuid) and KEY (secret key of a new application).
new_store() { # label, DATABASE_URL or empty
  export KEYWAY_DATA_DIR="$WORK/$1"
  if [ -n "$2" ]; then export DATABASE_URL=$2; else unset DATABASE_URL; fi
  SEED_URL=${2:-"sqlite://$KEYWAY_DATA_DIR/keyway.db"}
  mkdir -p "$KEYWAY_DATA_DIR"
  "$BIN" migrate 2>/dev/null
  OP=$("$BIN" admin token --label bench 2>/dev/null)
  start_server
  # A plan with limits far above what a run sends, so every call is counted against it, as a
  # tenant's are (an application without limits skips the counting).
  APP_ID=$(gql "$OP" '{"query":"mutation { createApplication(input: {name: \"bench\", requestsPerMinute: 1000000000, requestsPerMonth: 1000000000}) { id } }"}' \
    | python3 -c 'import sys,json,base64; i=json.load(sys.stdin)["data"]["createApplication"]["id"]; print(base64.urlsafe_b64decode(i+"==").decode().split(":")[1])')
  KEY=$(gql "$OP" "{\"query\":\"mutation { createApiKey(input: {applicationId: \\\"$(global_id Application "$APP_ID")\\\", label: \\\"bench\\\"}) { secret } }\"}" \
    | python3 -c 'import sys,json; print(json.load(sys.stdin)["data"]["createApiKey"]["secret"])')
}

# measure LABEL BODY [EXPECTED_EDGES|any]: checks one answer, warms up, then prints wrk's RESULT.
measure() {
  local label=$1 body=$2 expected=${3:-50}
  gql "$KEY" "$body" | python3 -c "import sys,json; d=json.load(sys.stdin); assert 'errors' not in d, d; x='$expected'; x=='any' or len(list(d['data'].values())[0]['edges'])==int(x) or sys.exit('wrong edge count')"
  TOKEN=$KEY BODY=$body wrk -t2 -c"$CONNECTIONS" -d2s -s bench/graphql.lua "http://127.0.0.1:$PORT/graphql" >/dev/null
  local out
  out=$(TOKEN=$KEY BODY=$body wrk -t2 -c"$CONNECTIONS" -d"$DURATION" -s bench/graphql.lua \
    "http://127.0.0.1:$PORT/graphql" | grep RESULT)
  echo "$label: ${out#RESULT }"
  # A run with failed answers measured the failure, not the query: stop rather than report it.
  if ! grep -q ' errors=0$' <<<"$out"; then
    echo "$label: some answers failed (errors= above); the figures are not a measurement" >&2
    return 1
  fi
}

# Starts an nginx of one worker, its files under $WORK/$1, answering every request on port $2
# with 200 and the body $3; stop it with `nginx -c "$WORK/$1/nginx.conf" -s stop`.
fixed_answer_nginx() { # dir port body
  mkdir -p "$WORK/$1"
  cat >"$WORK/$1/nginx.conf" <<CONF
worker_processes 1;
pid $WORK/$1/nginx.pid;
error_log $WORK/$1/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $WORK/$1/body;
  server { listen 127.0.0.1:$2; default_type application/json; location / { return 200 '$3'; } }
}
CONF
  nginx -c "$WORK/$1/nginx.conf"
}

# Prints the id of a new connection of KEY's application to a custom API-key provider whose
# base URL is the local upstream on port $1 (the raw proxy benchmarks' target).
proxy_connection() { # upstream port
  local integration
  integration=$(python3 - "$1" <<'PY'
import json, sys
provider = {
    "service_id": "benchapi", "name": "Bench API", "unified_api": "crm", "auth_type": "api_key",
    "base_url": f"http://127.0.0.1:{sys.argv[1]}/api",
    "credential_fields": [{"id": "api_key", "label": "Key", "type": "password", "required": True}],
    "injection": {"type": "header", "name": "X-Api-Key", "field": "api_key"},
}
print(json.dumps({"query": 'mutation($p: JSON) { createIntegration(input: {serviceId: "benchapi", customProvider: $p}) { id } }',
                  "variables": {"p": provider}}))
PY
  )
  gql "$KEY" "$integration" >/dev/null
  gql "$KEY" '{"query":"mutation { createConnection(input: {consumerId: \"bench\", serviceId: \"benchapi\", credentials: {fields: {api_key: \"upstream-key\"}}}) { id } }"}' \
    | python3 -c 'import sys,json; print(json.load(sys.stdin)["data"]["createConnection"]["id"])'
}

# With BENCH_DATABASE_URL=postgres://…/db, runs "$1 postgres <fresh database url>" too.
with_postgres() {
  [ -n "${BENCH_DATABASE_URL:-}" ] || return 0
  local db="keyway_bench_$$"
  psql "$BENCH_DATABASE_URL" -qc "CREATE DATABASE $db" >/dev/null
  "$1" postgres "${BENCH_DATABASE_URL%/*}/$db"
  psql "$BENCH_DATABASE_URL" -qc "DROP DATABASE $db WITH (FORCE)" >/dev/null
}

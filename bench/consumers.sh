#!/usr/bin/env bash
# Benchmark (issue 2): start-to-ready, idle RSS, and `consumers(first: 50)` over 100,000 stored
# consumers — first page and a page deep in the list — driven by wrk against the release
# binary on SQLite (and on PostgreSQL too when BENCH_DATABASE_URL=postgres://… is set).
#
#   bench/consumers.sh            # DURATION=10s CONNECTIONS=8 COUNT=100000 by default
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-8}
COUNT=${COUNT:-100000}
PORT=${PORT:-18181}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }

cargo build --release --quiet --bin keyway --example seed
BIN=target/release/keyway
SEED=target/release/examples/seed
WORK=$(mktemp -d)
SERVER=
trap '[ -n "$SERVER" ] && kill $SERVER 2>/dev/null; rm -rf "$WORK"' EXIT

now_ms() { date +%s%3N; }

gql() { # token, json body
  curl -sf -X POST "http://127.0.0.1:$PORT/graphql" -H "authorization: Bearer $1" \
    -H 'content-type: application/json' -d "$2"
}

start_server() { # sets SERVER and READY_MS (start-to-ready milliseconds)
  local t0; t0=$(now_ms)
  KEYWAY_LOG_LEVEL=warn "$BIN" serve --listen "127.0.0.1:$PORT" >"$WORK/serve.log" 2>&1 &
  SERVER=$!
  until curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null; do sleep 0.005; done
  READY_MS=$(( $(now_ms) - t0 ))
}

stop_server() { kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=; }

run_backend() { # label, DATABASE_URL or empty
  local label=$1
  export KEYWAY_DATA_DIR="$WORK/$label"
  if [ -n "$2" ]; then export DATABASE_URL=$2; else unset DATABASE_URL; fi
  local url=${2:-"sqlite://$KEYWAY_DATA_DIR/keyway.db"}
  mkdir -p "$KEYWAY_DATA_DIR"
  "$BIN" migrate 2>/dev/null
  local op; op=$("$BIN" admin token --label bench 2>/dev/null)

  start_server
  local app_id key
  app_id=$(gql "$op" '{"query":"mutation { createApplication(input: {name: \"bench\"}) { id } }"}' \
    | python3 -c 'import sys,json,base64; i=json.load(sys.stdin)["data"]["createApplication"]["id"]; print(base64.urlsafe_b64decode(i+"==").decode().split(":")[1])')
  key=$(gql "$op" "{\"query\":\"mutation { createApiKey(input: {applicationId: \\\"$(printf 'Application:%s' "$app_id" | base64 -w0 | tr '+/' '-_' | tr -d '=')\\\", label: \\\"bench\\\"}) { secret } }\"}" \
    | python3 -c 'import sys,json; print(json.load(sys.stdin)["data"]["createApiKey"]["secret"])')
  stop_server

  "$SEED" "$url" "$app_id" "$COUNT"

  # Start-to-ready and idle RSS, on a store that already holds the rows.
  start_server
  local ready_ms=$READY_MS
  sleep 1
  local rss_kb; rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$SERVER/status")
  echo "[$label] start-to-ready: ${ready_ms} ms   idle RSS: $((rss_kb / 1024)) MB"

  local fields='edges { cursor node { consumerId metadata { email } } } pageInfo { hasNextPage endCursor }'
  local deep; deep=$(printf 'consumer-%06d' $((COUNT * 9 / 10)) | base64 -w0 | tr '+/' '-_' | tr -d '=')
  for page in first deep; do
    local after=""
    [ "$page" = deep ] && after=", after: \\\"$deep\\\""
    local body="{\"query\":\"{ consumers(first: 50$after) { $fields } }\"}"
    gql "$key" "$body" | python3 -c 'import sys,json; d=json.load(sys.stdin); assert "errors" not in d, d; assert len(d["data"]["consumers"]["edges"])==50'
    # A short warm-up, so caches and query plans are settled before measuring.
    TOKEN=$key BODY=$body wrk -t2 -c"$CONNECTIONS" -d2s -s bench/graphql.lua \
      "http://127.0.0.1:$PORT/graphql" >/dev/null
    local out
    out=$(TOKEN=$key BODY=$body wrk -t2 -c"$CONNECTIONS" -d"$DURATION" -s bench/graphql.lua \
      "http://127.0.0.1:$PORT/graphql" | grep RESULT)
    echo "[$label] consumers(first: 50) $page page: ${out#RESULT }"
  done
  stop_server
}

echo "keyway consumers benchmark: $COUNT consumers, wrk -t2 -c$CONNECTIONS -d$DURATION, $(nproc) cores"
run_backend sqlite ""
if [ -n "${BENCH_DATABASE_URL:-}" ]; then
  db="keyway_bench_$$"
  psql "$BENCH_DATABASE_URL" -qc "CREATE DATABASE $db" >/dev/null
  run_backend postgres "${BENCH_DATABASE_URL%/*}/$db"
  psql "$BENCH_DATABASE_URL" -qc "DROP DATABASE $db WITH (FORCE)" >/dev/null
fi

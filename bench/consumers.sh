#!/usr/bin/env bash
# Benchmark (issue 2): start-to-ready, idle RSS, and `consumers(first: 50)` over 100,000 stored
# consumers — first page, a page 90% deep, and the first page with each consumer's connections
# (two each) and with each one's request counts — driven by wrk against the release binary on SQLite (and PostgreSQL too with
# BENCH_DATABASE_URL=postgres://…/db).
#
#   bench/consumers.sh            # DURATION=10s CONNECTIONS=8 COUNT=100000
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${COUNT:-100000}
source bench/lib.sh

run() { # label, DATABASE_URL or empty
  local label=$1
  new_store "$label" "$2"
  stop_server
  "$SEED" consumers "$SEED_URL" "$APP_ID" "$COUNT"
  # Two connections each for the first tenth of the consumers (every one on the first page).
  "$SEED" connections "$SEED_URL" "$APP_ID" "$((COUNT / 5))" "$KEYWAY_DATA_DIR" 0 >/dev/null

  start_server
  sleep 1
  local rss_kb; rss_kb=$(awk '/VmRSS/ {print $2}' "/proc/$SERVER/status")
  echo "[$label] start-to-ready: ${READY_MS} ms   idle RSS: $((rss_kb / 1024)) MB"

  local fields='edges { cursor node { consumerId metadata { email } } } pageInfo { hasNextPage endCursor }'
  local deep; deep=$(printf 'consumer-%06d' $((COUNT * 9 / 10)) | base64 -w0 | tr '+/' '-_' | tr -d '=')
  measure "[$label] consumers(first: 50) first page" "{\"query\":\"{ consumers(first: 50) { $fields } }\"}"
  measure "[$label] consumers(first: 50) deep page " "{\"query\":\"{ consumers(first: 50, after: \\\"$deep\\\") { $fields } }\"}"
  measure "[$label] consumers(first: 50) with their connections" \
    "{\"query\":\"{ consumers(first: 50) { edges { node { consumerId connections { id serviceId state } } } } }\"}"
  measure "[$label] consumers(first: 50) with their request counts" \
    "{\"query\":\"{ consumers(first: 50) { edges { node { consumerId requestCounts { unify proxy vault } } } } }\"}"
  stop_server
}

echo "keyway consumers benchmark: $COUNT consumers, wrk -t2 -c$CONNECTIONS -d$DURATION, $(nproc) cores"
run sqlite ""
with_postgres run

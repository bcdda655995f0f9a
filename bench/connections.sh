#!/usr/bin/env bash
# Benchmark (issue 3): `connections(first: 50, filter: {status: "callable"})` over 100,000
# stored connections (sealed credentials, mixed states and services) — first page and a page
# 90% deep — and the cost of the case-insensitive `userEmail` substring filter at half and at
# all of the rows, so its growth shows. SQLite, and PostgreSQL with BENCH_DATABASE_URL.
#
#   bench/connections.sh          # DURATION=10s CONNECTIONS=8 COUNT=100000
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${COUNT:-100000}
source bench/lib.sh

run() { # label, DATABASE_URL or empty
  local label=$1
  new_store "$label" "$2"
  for service in stripe hubspot salesforce zendesk slack; do
    gql "$KEY" "{\"query\":\"mutation { createIntegration(input: {serviceId: \\\"$service\\\"}) { id } }\"}" >/dev/null
  done
  stop_server
  local half=$((COUNT / 2))
  "$SEED" connections "$SEED_URL" "$APP_ID" "$half" "$KEYWAY_DATA_DIR" 0 >/dev/null

  local fields='edges { cursor node { id consumerId serviceId state userEmail } } pageInfo { hasNextPage endCursor }'
  local email="{\"query\":\"{ connections(first: 50, filter: {userEmail: \\\"USER1234@company234\\\"}) { $fields } }\"}"
  start_server
  measure "[$label] userEmail substring, $half rows      " "$email" 1
  stop_server

  local deep
  deep=$("$SEED" connections "$SEED_URL" "$APP_ID" "$((COUNT - half))" "$KEYWAY_DATA_DIR" "$half")
  start_server
  measure "[$label] userEmail substring, $COUNT rows     " "$email" 1
  local status="filter: {status: \\\"callable\\\"}"
  measure "[$label] connections(first: 50, callable) first" "{\"query\":\"{ connections(first: 50, $status) { $fields } }\"}"
  measure "[$label] connections(first: 50, callable) deep " "{\"query\":\"{ connections(first: 50, after: \\\"$deep\\\", $status) { $fields } }\"}"
  stop_server
}

echo "keyway connections benchmark: $COUNT connections, wrk -t2 -c$CONNECTIONS -d$DURATION, $(nproc) cores"
run sqlite ""
with_postgres run

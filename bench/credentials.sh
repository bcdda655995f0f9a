#!/usr/bin/env bash
# Benchmark (issue 4): `connectionCredentials` of a connection whose token is fresh (no
# refresh: the read, the key check, the decryption), driven by wrk against the release
# binary. SQLite, and PostgreSQL with BENCH_DATABASE_URL. The exactly-once refresh figures
# (200 concurrent readers → 1 token request, one process and two replicas) are asserted by
# `cargo test refresh`.
#
#   bench/credentials.sh          # DURATION=10s CONNECTIONS=8
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/lib.sh

run() { # label, DATABASE_URL or empty
  local label=$1
  new_store "$label" "$2"
  gql "$KEY" '{"query":"mutation { createIntegration(input: {serviceId: \"google\", clientId: \"c\", clientSecret: \"s\"}) { id } }"}' >/dev/null
  local id
  id=$(gql "$KEY" '{"query":"mutation { createConnection(input: {consumerId: \"bench\", serviceId: \"google\", credentials: {accessToken: \"ya29.bench\", refreshToken: \"1//bench\", expiresAt: \"2099-01-01T00:00:00Z\"}}) { id } }"}' \
    | python3 -c 'import sys,json; print(json.load(sys.stdin)["data"]["createConnection"]["id"])')
  measure "[$label] connectionCredentials, fresh token" \
    "{\"query\":\"{ connectionCredentials(id: \\\"$id\\\") { accessToken expiresAt } }\"}" any
  stop_server
}

echo "keyway credentials benchmark: wrk -t2 -c$CONNECTIONS -d$DURATION, $(nproc) cores"
run sqlite ""
with_postgres run

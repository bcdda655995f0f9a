#!/usr/bin/env bash
# Benchmark: `createConnection` with API-key credentials, each call for a new consumer (the
# integration read, the consumer's insert, the connection's, its `created` and `callable`
# events with their webhook queueing and, on PostgreSQL, their NOTIFY), driven by wrk against
# the release binary at one client and at CONNECTIONS. Its latency is mostly round trips to
# the database, so PostgreSQL (with BENCH_DATABASE_URL) is the store that shows a change.
#
#   bench/connect.sh                                   # DURATION=10s CONNECTIONS=8
#   BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test bench/connect.sh
#   BENCH_BIN=/tmp/keyway.before bench/connect.sh     # another build, for a before/after
set -euo pipefail
cd "$(dirname "$0")/.."
UPSTREAM_PORT=${UPSTREAM_PORT:-18191} # the custom provider's base URL; never called here
export KEYWAY_ALLOWED_PRIVATE_HOSTS="127.0.0.1:$UPSTREAM_PORT"
source bench/lib.sh

run() { # label, DATABASE_URL or empty
  local label=$1 out clients threads
  new_store "$label" "$2"
  proxy_connection "$UPSTREAM_PORT" >/dev/null # the `benchapi` integration (and one connection)
  for clients in 1 "$CONNECTIONS"; do
    threads=$((clients < 2 ? 1 : 2))
    RUN="$label-warm-$clients" SERVICE=benchapi TOKEN=$KEY wrk -t"$threads" -c"$clients" -d2s \
      -s bench/connect.lua "http://127.0.0.1:$PORT/graphql" >/dev/null
    out=$(RUN="$label-$clients" SERVICE=benchapi TOKEN=$KEY wrk -t"$threads" -c"$clients" \
      -d"$DURATION" -s bench/connect.lua "http://127.0.0.1:$PORT/graphql" | grep RESULT)
    echo "[$label] createConnection c$clients: ${out#RESULT }"
    grep -q ' errors=0$' <<<"$out" || { echo "[$label] some answers failed" >&2; return 1; }
  done
  stop_server
}

echo "keyway connect benchmark: $BIN, wrk -d$DURATION, $(nproc) cores"
run sqlite ""
with_postgres run

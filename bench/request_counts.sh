#!/usr/bin/env bash
# Benchmark: a consumer's request counts once it has a long history. FILL of raw proxy calls
# (through a fixed-answer nginx) give the consumer that many log rows; then, side by side in
# one run, `consumer { requestCounts }` (all time: the running totals) and `consumerStats`
# with a `start` before any call (counted from the log rows, as every all-time count was
# before the totals). SQLite, and PostgreSQL too with BENCH_DATABASE_URL.
#
#   bench/request_counts.sh       # FILL=20s DURATION=5s CONNECTIONS=8
#   BENCH_BIN=/tmp/keyway.before bench/request_counts.sh   # another build
set -euo pipefail
cd "$(dirname "$0")/.."
UPSTREAM_PORT=${UPSTREAM_PORT:-18191}
FILL=${FILL:-20s}
export KEYWAY_ALLOWED_PRIVATE_HOSTS="127.0.0.1:$UPSTREAM_PORT"
source bench/lib.sh
fixed_answer_nginx upstream "$UPSTREAM_PORT" '{"ok":true}'
trap 'nginx -c "$WORK/upstream/nginx.conf" -s stop 2>/dev/null; [ -n "$SERVER" ] && kill $SERVER 2>/dev/null; rm -rf "$WORK"' EXIT

run() { # label, DATABASE_URL or empty
  local label=$1 id out
  new_store "$label" "$2"
  id=$(proxy_connection "$UPSTREAM_PORT")
  out=$(TOKEN=$KEY wrk -t2 -c32 -d"$FILL" -s bench/http.lua "http://127.0.0.1:$PORT/proxy/$id/items" | grep RESULT)
  echo "[$label] history: ${out#RESULT }"
  sleep 1 # the writer's last flush (every 250 ms)
  measure "[$label] consumer { requestCounts } (totals)   " \
    '{"query":"{ consumer(consumerId: \"bench\") { requestCounts { proxy } } }"}' any
  measure "[$label] consumerStats(start) (log rows)       " \
    '{"query":"{ consumerStats(consumerId: \"bench\", start: \"2000-01-01T00:00:00Z\") { requestCounts { proxy } } }"}' any
  gql "$KEY" '{"query":"{ consumer(consumerId: \"bench\") { requestCounts { proxy } } consumerStats(consumerId: \"bench\", start: \"2000-01-01T00:00:00Z\") { requestCounts { proxy } } }"}'
  echo
  stop_server
}

echo "keyway request counts benchmark: $BIN, wrk -t2 -c$CONNECTIONS -d$DURATION, $(nproc) cores"
run sqlite ""
with_postgres run

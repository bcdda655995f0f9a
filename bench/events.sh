#!/usr/bin/env bash
# Benchmarks of issue 6, on the release binary with SQLite:
#  - SUBSCRIBERS (10,000) open `connectionEvents` subscriptions on one instance: the server's
#    RSS, and the fan-out latency from a mutation's answer to each subscriber's receipt
#    (EVENTS events, 200 ms apart; bench/subscribers.rs), ROUNDS (3) times over with fresh
#    sockets, then the median of the rounds' p99;
#  - webhook deliveries per second: WEBHOOKS connections created at once, each making
#    `connection.created` + `connection.callable`, delivered to a local receiver (nginx
#    answering 200), timed until every delivery succeeded.
#
#   bench/events.sh        # SUBSCRIBERS=10000 EVENTS=20 ROUNDS=3 WEBHOOKS=1000
#   CLIENT_WRAP="taskset -c 1" bench/events.sh   # runs the load client under a wrapper (pinned)
set -euo pipefail
cd "$(dirname "$0")/.."
SUBSCRIBERS=${SUBSCRIBERS:-10000}
EVENTS=${EVENTS:-20}
ROUNDS=${ROUNDS:-3}
WEBHOOKS=${WEBHOOKS:-1000}
RECEIVER_PORT=${RECEIVER_PORT:-18193}
ulimit -n "$(ulimit -Hn)" # each side needs one descriptor per subscription
command -v nginx >/dev/null || { apt-get update -qq && apt-get install -y -qq nginx >/dev/null; }
command -v sqlite3 >/dev/null || { apt-get update -qq && apt-get install -y -qq sqlite3 >/dev/null; }
export KEYWAY_ALLOWED_PRIVATE_HOSTS="127.0.0.1:$RECEIVER_PORT"
source bench/lib.sh
cargo build --release --quiet --example subscribers

fixed_answer_nginx nginx "$RECEIVER_PORT" '"ok"'
trap 'nginx -c "$WORK/nginx/nginx.conf" -s stop 2>/dev/null; [ -n "$SERVER" ] && kill $SERVER 2>/dev/null; rm -rf "$WORK"' EXIT

new_store sqlite ""
gql "$KEY" '{"query":"mutation { createIntegration(input: {serviceId: \"stripe\"}) { id } }"}' >/dev/null
echo "keyway events benchmark: $(nproc) cores"
echo "idle server $(grep VmRSS /proc/$SERVER/status)"
for round in $(seq 0 $((ROUNDS - 1))); do
  ${CLIENT_WRAP:-} "$RELEASE/examples/subscribers" "http://127.0.0.1:$PORT" "$KEY" "$SERVER" \
    "$SUBSCRIBERS" "$EVENTS" $((round * EVENTS)) | tee -a "$WORK/fanout"
  sleep 2 # the last round's sockets close
done
python3 - "$WORK/fanout" <<'PY'
import re, statistics, sys
p99 = [float(m.group(1)) for m in re.finditer(r"p99 ([0-9.]+) ms", open(sys.argv[1]).read())]
print(f"fan-out p99 over {len(p99)} rounds: median {statistics.median(p99):.1f} ms ({', '.join(f'{x:.1f}' for x in p99)})")
PY
stop_server
start_server

gql "$KEY" "{\"query\":\"mutation { createWebhook(input: {url: \\\"http://127.0.0.1:$RECEIVER_PORT/hook\\\"}) { secret } }\"}" >/dev/null
mkdir -p "$WORK/bodies"
for i in $(seq "$WEBHOOKS"); do
  echo "{\"query\":\"mutation { createConnection(input: {consumerId: \\\"hook-$i\\\", serviceId: \\\"stripe\\\", credentials: {fields: {api_key: \\\"sk_test_x\\\"}}}) { id } }\"}" >"$WORK/bodies/$i.json"
done
t0=$(now_ms)
ls "$WORK"/bodies/*.json | xargs -P 8 -I{} curl -sf -o /dev/null -X POST "http://127.0.0.1:$PORT/graphql" \
  -H "authorization: Bearer $KEY" -H 'content-type: application/json' -d @{}
t1=$(now_ms)
expected=$((WEBHOOKS * 2))
until [ "$(sqlite3 "$KEYWAY_DATA_DIR/keyway.db" "select count(*) from webhook_deliveries where status = 'succeeded'")" -ge "$expected" ]; do
  sleep 0.05
done
t2=$(now_ms)
echo "webhooks: $expected deliveries; created in $((t1 - t0)) ms, all delivered $((t2 - t0)) ms after the first: $(( expected * 1000 / (t2 - t0) )) deliveries/s"
stop_server

#!/usr/bin/env bash
# What Keyway costs while it serves nothing: each binary given runs on a fresh store (SQLite,
# and PostgreSQL when BENCH_POSTGRES names a server), with one application, one webhook
# endpoint and nothing else, for IDLE seconds; then the same again under strace. Prints, per
# binary and store, the CPU time per second of idling, the threads' context switches per
# second (wake-ups), the resident memory, and the system calls per second that reach the
# database: file locks and reads for SQLite (every statement takes a lock), socket sends for
# PostgreSQL (one per query). Binaries alternate, so machine noise lands on each alike.
#
# Measuring starts SETTLE seconds after the server is ready: a new server's key store sweeps for
# values under older keys at every reload for its first 30 s (service/keys.rs).
#
#   bench/idle.sh BINARY [BINARY...]      # IDLE=20 ROUNDS=2 SETTLE=35
#   BENCH_POSTGRES=postgres://postgres@127.0.0.1:5432 bench/idle.sh OLD NEW
set -euo pipefail
cd "$(dirname "$0")/.."
IDLE=${IDLE:-20}
SETTLE=${SETTLE:-35}
ROUNDS=${ROUNDS:-2}
PORT=${PORT:-18181}
BENCH_POSTGRES=${BENCH_POSTGRES:-}
command -v strace >/dev/null || { apt-get update -qq && apt-get install -y -qq strace >/dev/null; }
WORK=$(mktemp -d)
SERVER=
DATABASES=()
cleanup() {
  [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null
  for db in "${DATABASES[@]}"; do psql -q "$BENCH_POSTGRES/postgres" -c "DROP DATABASE IF EXISTS $db" 2>/dev/null; done
  rm -rf "$WORK"
}
trap cleanup EXIT

gql() { # token, json body
  curl -sf -X POST "http://127.0.0.1:$PORT/graphql" -H "authorization: Bearer $1" \
    -H 'content-type: application/json' -d "$2"
}

# start BINARY STORE RUN: a fresh store with an application, a key and a webhook endpoint
# (so the webhook worker has an endpoint to serve), server running as SERVER.
start() {
  local bin=$1 store=$2 dir=$WORK/$3
  mkdir -p "$dir"
  export KEYWAY_DATA_DIR=$dir KEYWAY_LOG_LEVEL=warn
  if [ "$store" = postgres ]; then
    local db="keyway_idle_$$_$3"
    psql -q "$BENCH_POSTGRES/postgres" -c "CREATE DATABASE $db"
    DATABASES+=("$db")
    export DATABASE_URL="$BENCH_POSTGRES/$db"
  else
    unset DATABASE_URL
  fi
  "$bin" migrate >/dev/null 2>&1
  local op app key
  op=$("$bin" admin token --label idle 2>/dev/null)
  "$bin" serve --listen "127.0.0.1:$PORT" >"$dir/serve.log" 2>&1 &
  SERVER=$!
  until curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null; do sleep 0.05; done
  app=$(gql "$op" '{"query":"mutation { createApplication(input: {name: \"idle\"}) { id } }"}' \
    | python3 -c 'import sys,json; print(json.load(sys.stdin)["data"]["createApplication"]["id"])')
  key=$(gql "$op" "{\"query\":\"mutation { createApiKey(input: {applicationId: \\\"$app\\\", label: \\\"idle\\\"}) { secret } }\"}" \
    | python3 -c 'import sys,json; print(json.load(sys.stdin)["data"]["createApiKey"]["secret"])')
  gql "$key" '{"query":"mutation { createWebhook(input: {url: \"https://hooks.example.com/idle\"}) { secret } }"}' \
    | grep -q whsec_ || { echo "idle: the webhook endpoint was not created" >&2; exit 1; }
  sleep "$SETTLE" # start-up work settles
}

stop() { kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=; }

# CPU clock ticks (user + system) and context switches of every thread so far.
counters() {
  local ticks switches
  ticks=$(cut -d' ' -f14,15 "/proc/$SERVER/stat" | awk '{print $1 + $2}')
  switches=$(cat /proc/"$SERVER"/task/*/status 2>/dev/null \
    | awk '/^(non)?voluntary_ctxt_switches/ {s += $2} END {print s}')
  echo "$ticks $switches"
}

measure() { # binary store run
  local before after rss calls
  start "$1" "$2" "$3"
  before=$(counters)
  sleep "$IDLE"
  after=$(counters)
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$SERVER/status")
  # The database's share of the system calls, from a second window (strace slows what it
  # traces, so the CPU figures come from the first).
  timeout -s INT "$IDLE" strace -f -c -q -p "$SERVER" -o "$WORK/strace.$3" >/dev/null 2>&1 || true
  calls=$(awk -v idle="$IDLE" '
    $NF ~ /^(fcntl|pread64|sendto|total)$/ {n[$NF] = $4}
    END {printf "syscalls_per_s=%.1f fcntl_per_s=%.1f pread_per_s=%.1f sendto_per_s=%.1f",
      n["total"] / idle, n["fcntl"] / idle, n["pread64"] / idle, n["sendto"] / idle}' "$WORK/strace.$3")
  stop
  python3 - "$1" "$2" "$IDLE" "$(getconf CLK_TCK)" $before $after "$rss" "$calls" <<'PY'
import sys
binary, store, idle, tck, t0, s0, t1, s1, rss, calls = sys.argv[1:]
idle, tck = float(idle), int(tck)
cpu_ms = (int(t1) - int(t0)) * 1000 / tck / idle
print(f"{binary} {store}: cpu_ms_per_s={cpu_ms:.1f} switches_per_s={(int(s1) - int(s0)) / idle:.1f} "
      f"rss_mb={int(rss) / 1024:.0f} {calls}")
PY
}

stores="sqlite"
[ -n "$BENCH_POSTGRES" ] && stores="sqlite postgres"
echo "keyway idle: ${IDLE}s per measurement, $ROUNDS rounds, $(nproc) cores"
run=0
for round in $(seq "$ROUNDS"); do
  for store in $stores; do
    for bin in "$@"; do
      run=$((run + 1))
      measure "$(realpath "$bin")" "$store" "r$run" | tee -a "$WORK/results"
    done
  done
done

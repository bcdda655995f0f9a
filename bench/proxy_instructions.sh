#!/usr/bin/env bash
# Instructions per proxied call: Keyway's raw proxy and the floor (bench/floor.rs, the same
# stack with no Keyway logic) each run under valgrind's callgrind and serve the same wrk load
# against one local upstream; the counts start after a warm-up and stop after the last request
# log flush. Callgrind counts instructions, not time, so a busy machine barely moves the
# request path's figure, where req/s on this machine moves 10–30% between runs: it is the tool
# for judging a small change to the hot path, which bench/proxy_ab.sh cannot tell from noise.
# Prints the totals per call, the request path apart from the request-log writer's thread
# (whose cost per row depends on how many rows each flush holds, so on the request rate),
# and Keyway's own frames per call (inclusive). The counts are user space only
# (system calls are not counted), and `rep`-prefixed copies and fills count once per
# element, which inflates memset/memcpy against their real cost (the floor pays the same).
#
#   bench/proxy_instructions.sh      # DURATION=15s CONNECTIONS=4 TOP=25
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind >/dev/null; }
command -v nginx >/dev/null || { apt-get update -qq && apt-get install -y -qq nginx >/dev/null; }
# A build of its own, so the release build stays as it is: no LTO and line tables, so frames
# keep their names and their lines.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/callgrind}
export CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
export CARGO_PROFILE_RELEASE_DEBUG=line-tables-only
DURATION=${DURATION:-15s}
CONNECTIONS=${CONNECTIONS:-4}
TOP=${TOP:-25}
UPSTREAM_PORT=${UPSTREAM_PORT:-18191}
FLOOR_PORT=${FLOOR_PORT:-18194}
source bench/lib.sh
cargo build --release --quiet --example floor
export KEYWAY_ALLOWED_PRIVATE_HOSTS="127.0.0.1:$UPSTREAM_PORT"

fixed_answer_nginx upstream "$UPSTREAM_PORT" \
  '{"data":[{"id":"1","name":"Ada Lovelace","email":"ada@example.com"},{"id":"2","name":"Alan Turing","email":"alan@example.com"}],"next":null}'
CALLGRIND="valgrind --tool=callgrind --compress-strings=no --compress-pos=no"
FLOOR=
trap 'nginx -c "$WORK/upstream/nginx.conf" -s stop 2>/dev/null; [ -n "$FLOOR" ] && kill $FLOOR 2>/dev/null; [ -n "$SERVER" ] && kill $SERVER 2>/dev/null; rm -rf "$WORK"' EXIT
$CALLGRIND --callgrind-out-file="$WORK/floor.cg" \
  "$RELEASE/examples/floor" "127.0.0.1:$FLOOR_PORT" "http://127.0.0.1:$UPSTREAM_PORT" 2>"$WORK/floor.log" &
FLOOR=$!
SERVE_WRAP="$CALLGRIND --callgrind-out-file=$WORK/keyway.cg" new_store sqlite ""
ID=$(proxy_connection "$UPSTREAM_PORT")
KEYWAY="http://127.0.0.1:$PORT/proxy/$ID/items"
FLOOR_URL="http://127.0.0.1:$FLOOR_PORT/api/items"
curl -sf -H "authorization: Bearer $KEY" "$KEYWAY" | grep -q Lovelace || { echo "the Keyway proxy does not answer"; exit 1; }
until curl -sf "$FLOOR_URL" | grep -q Lovelace; do sleep 0.1; done

count() { # label pid url token: zero, load, dump; prints "label requests instructions"
  TOKEN=$4 wrk -t1 -c"$CONNECTIONS" -d3s -s bench/http.lua "$3" >/dev/null # warm-up
  sleep 1
  callgrind_control -z "$2" >/dev/null 2>&1
  local out
  out=$(TOKEN=$4 wrk -t1 -c"$CONNECTIONS" -d"$DURATION" -s bench/http.lua "$3" | grep RESULT)
  sleep 2 # the request-log writer flushes every 250 ms (slower under valgrind)
  callgrind_control -d "$2" >/dev/null 2>&1
  sleep 1
  grep -q 'errors=0' <<<"$out" || { echo "$1: $out"; exit 1; }
  echo "$1 $(sed 's/.*requests=\([0-9]*\).*/\1/' <<<"$out") $(grep -h '^summary:' "$WORK/$1.cg".* | awk '{t += $2} END {print t}')"
}
{
  count keyway "$SERVER" "$KEYWAY" "$KEY"
  count floor "$FLOOR" "$FLOOR_URL" ""
} >"$WORK/counts"
callgrind_annotate --inclusive=yes --threshold=100 "$WORK"/keyway.cg.* 2>/dev/null >"$WORK/keyway.txt"
[ -n "${KEEP_PROFILE:-}" ] && mkdir -p "$KEEP_PROFILE" && cp "$WORK"/keyway.cg.* "$WORK"/floor.cg.* "$KEEP_PROFILE"/

python3 - "$WORK/counts" "$WORK/keyway.txt" "$TOP" <<'PY'
import re, sys
counts = {}
for line in open(sys.argv[1]):
    label, requests, total = line.split()
    counts[label] = (int(requests), int(total))
per = {label: total / requests for label, (requests, total) in counts.items()}
print(f"{'':8} {'requests':>9} {'instructions/call':>18}")
for label, (requests, _) in counts.items():
    print(f"{label:8} {requests:>9} {per[label]:>18,.0f}")
print(f"keyway/floor {per['keyway'] / per['floor']:.2f}; Keyway's own work {per['keyway'] - per['floor']:,.0f} per call")
calls = counts["keyway"][0]
frames, seen, writer = [], set(), 0
for line in open(sys.argv[2]):
    m = re.match(r"\s*([\d,]+) \([\s\d.]+%\)\s+(\S+?):(.+?)(?: \[.*\])?$", line)
    if not m:
        continue
    total, source, name = int(m.group(1).replace(",", "")), m.group(2), m.group(3)
    # The request-log writer's thread (sqlx's SQLite worker), and Keyway's own frames.
    if "sqlx-sqlite" in source and "__rust_begin_short_backtrace" in name:
        writer = max(writer, total)
        continue
    if not name.startswith("keyway::") or name in seen or name.startswith("keyway::Server::start"):
        continue
    seen.add(name)
    frames.append((total / calls, name))
# The writer's share per row depends on how many rows each 250 ms flush holds, so on the
# request rate valgrind allowed this run; the request path does not.
print(f"keyway, request path only (without the SQLite writer thread): {per['keyway'] - writer / calls:,.0f}"
      f" per call; the writer thread: {writer / calls:,.0f} per row")
print(f"\nKeyway frames, inclusive instructions per call (top {sys.argv[3]}):")
for per_call, name in sorted(frames, reverse=True)[: int(sys.argv[3])]:
    print(f"{per_call:>10,.0f}  {name[:150]}")
PY

#!/usr/bin/env bash
# Headline benchmark (issue 5): Keyway's raw proxy against nginx `proxy_pass`, both in front
# of the same local upstream (a separate nginx answering a fixed JSON body), driven by the same wrk for
# the same duration, interleaved in ROUNDS rounds on this machine. Prints every run, then the
# medians and the ratios: throughput Keyway/nginx and the p50 latency Keyway adds over calling
# the upstream directly (at CONNECTIONS clients, and unloaded at 1 client). Also the `proxy`
# GraphQL mutation. Keyway runs on SQLite with its default settings (request logs, plan
# counting, credential cache all on). `floor` is bench/floor.rs: the same two libraries
# (actix-web serving, Keyway's own proxy client calling) forwarding with no Keyway logic at
# all, the most this stack could reach; keyway/floor is the cost of Keyway's own work.
# `hyperfloor` is the same forwarder served by hyper's HTTP/1 server instead of actix-web.
# `nginxlog` is the same nginx proxy writing its access log (Debian's default: one `combined`
# line per request to a file, unbuffered), as Keyway records every call; the headline ratio
# stays against `nginx`, which logs nothing.
#
#   bench/proxy.sh        # DURATION=10s CONNECTIONS=32 ROUNDS=3 
#   PROFILE='perf record -g -o /tmp/perf.data -p' bench/proxy.sh   # profile the keyway run
#   WORKERS=1 bench/proxy.sh   # every proxy (nginx, the floors, Keyway) with that many workers
set -euo pipefail
cd "$(dirname "$0")/.."
CONNECTIONS=${CONNECTIONS:-32}
ROUNDS=${ROUNDS:-3}
UPSTREAM_PORT=${UPSTREAM_PORT:-18191}
NGINX_PORT=${NGINX_PORT:-18192}
FLOOR_PORT=${FLOOR_PORT:-18194}
HYPER_FLOOR_PORT=${HYPER_FLOOR_PORT:-18195}
NGINX_LOG_PORT=${NGINX_LOG_PORT:-18196}
# Worker threads (processes for nginx) of each proxy under test; the upstream keeps one per core.
WORKERS=${WORKERS:-$(nproc)}
export KEYWAY_HTTP_WORKERS=$WORKERS FLOOR_WORKERS=$WORKERS
command -v nginx >/dev/null || { apt-get update -qq && apt-get install -y -qq nginx >/dev/null; }
export KEYWAY_ALLOWED_PRIVATE_HOSTS="127.0.0.1:$UPSTREAM_PORT"
source bench/lib.sh
cargo build --release --quiet --example floor

# The upstream (nginx answering a fixed JSON body) and nginx as the reverse proxy in front of
# it run as two separate nginx instances, as an upstream and its proxy would: in one instance a
# worker would serve both ends of a proxied call in its own event loop, which no proxy in front
# of another server can do. (PROXY_SAME_PROCESS=1 puts both in one instance, as before.)
mkdir -p "$WORK/upstream" "$WORK/nginx" "$WORK/nginxlog"
upstream_server='
  server {
    listen 127.0.0.1:'$UPSTREAM_PORT';
    default_type application/json;
    location / { return 200 '"'"'{"data":[{"id":"1","name":"Ada Lovelace","email":"ada@example.com"},{"id":"2","name":"Alan Turing","email":"alan@example.com"}],"next":null}'"'"'; }
  }'
nginx_conf() { # dir, workers, servers[, access_log directive]
  cat <<CONF
worker_processes $2;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections 4096; }
http {
  ${4:-access_log off;}
  client_body_temp_path $1/body;
  proxy_temp_path $1/proxy;
  $3
}
CONF
}
proxy_server() { # port
  echo '
  upstream api { server 127.0.0.1:'$UPSTREAM_PORT'; keepalive 256; }
  server {
    listen 127.0.0.1:'$1';
    location / {
      proxy_pass http://api;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }'
}
if [ -n "${PROXY_SAME_PROCESS:-}" ]; then
  nginx_conf "$WORK/nginx" "$WORKERS" "$upstream_server $(proxy_server "$NGINX_PORT")" >"$WORK/nginx/nginx.conf"
  : >"$WORK/upstream/nginx.conf"
else
  nginx_conf "$WORK/upstream" "$(nproc)" "$upstream_server" >"$WORK/upstream/nginx.conf"
  nginx -c "$WORK/upstream/nginx.conf"
  nginx_conf "$WORK/nginx" "$WORKERS" "$(proxy_server "$NGINX_PORT")" >"$WORK/nginx/nginx.conf"
fi
nginx -c "$WORK/nginx/nginx.conf"
nginx_conf "$WORK/nginxlog" "$WORKERS" "$(proxy_server "$NGINX_LOG_PORT")" "access_log $WORK/nginxlog/access.log;" \
  >"$WORK/nginxlog/nginx.conf"
nginx -c "$WORK/nginxlog/nginx.conf"
"$RELEASE/examples/floor" "127.0.0.1:$FLOOR_PORT" "http://127.0.0.1:$UPSTREAM_PORT" &
FLOOR=$!
"$RELEASE/examples/floor" "127.0.0.1:$HYPER_FLOOR_PORT" "http://127.0.0.1:$UPSTREAM_PORT" hyper &
HYPER_FLOOR=$!
trap 'for d in nginx nginxlog upstream; do [ -s "$WORK/$d/nginx.conf" ] && nginx -c "$WORK/$d/nginx.conf" -s stop 2>/dev/null; done; kill $FLOOR $HYPER_FLOOR 2>/dev/null; [ -n "$SERVER" ] && kill $SERVER 2>/dev/null; rm -rf "$WORK"' EXIT

new_store sqlite ""
ID=$(proxy_connection "$UPSTREAM_PORT")
DIRECT="http://127.0.0.1:$UPSTREAM_PORT/api/items"
NGINX="http://127.0.0.1:$NGINX_PORT/api/items"
NGINX_LOG="http://127.0.0.1:$NGINX_LOG_PORT/api/items"
FLOOR_URL="http://127.0.0.1:$FLOOR_PORT/api/items"
HYPER_FLOOR_URL="http://127.0.0.1:$HYPER_FLOOR_PORT/api/items"
KEYWAY="http://127.0.0.1:$PORT/proxy/$ID/items"
curl -sf "$NGINX" >/dev/null
curl -sf "$NGINX_LOG" >/dev/null
for url in "$FLOOR_URL" "$HYPER_FLOOR_URL"; do
  until curl -sf "$url" | grep -q Lovelace; do sleep 0.05; done
done
curl -sf -H "authorization: Bearer $KEY" "$KEYWAY" | grep -q Lovelace || { echo "the Keyway proxy does not answer"; exit 1; }

# CPU time (clock ticks, user + system) used so far by the processes serving a label: the
# upstream nginx for direct, the proxy nginx for nginx, the server for keyway and mutation.
cpu_ticks() { # label
  local pids
  case $1 in
    direct) pids="$(cat "$WORK/upstream/nginx.pid" 2>/dev/null || cat "$WORK/nginx/nginx.pid")";;
    nginx) pids="$(cat "$WORK/nginx/nginx.pid")";;
    nginxlog) pids="$(cat "$WORK/nginxlog/nginx.pid")";;
    floor) pids=$FLOOR;;
    hyperfloor) pids=$HYPER_FLOOR;;
    *) pids=$SERVER;;
  esac
  pids="$pids $(for p in $pids; do pgrep -P "$p"; done)"
  for p in $pids; do cut -d' ' -f14,15 "/proc/$p/stat"; done | awk '{t += $1 + $2} END {print t}'
}

# Nanoseconds each of the Keyway server's threads has run (the scheduler's own count, exact
# per thread), one "name nanoseconds" line per thread.
thread_ns() {
  local t
  for t in /proc/"$SERVER"/task/*; do
    printf '%s %s\n' "$(tr ' ' _ <"$t/comm")" "$(cut -d' ' -f1 "$t/schedstat")"
  done 2>/dev/null
}

# Keyway's CPU per request by kind of thread: the HTTP workers (the request path), sqlx's
# SQLite threads (request-log inserts, plus the once-a-second counter and poll queries) and
# the background runtime (building those inserts, timers).
by_thread() { # before-file after-file requests
  python3 - "$@" <<'PY'
import collections, sys
def load(path):
    total = collections.Counter()
    for line in open(path):
        name, ns = line.split()
        for kind, prefix in (("workers_us", "actix-server_wo"), ("sqlite_us", "sqlx-sqlite"),
                             ("runtime_us", "tokio-rt")):
            if name.startswith(prefix):
                total[kind] += int(ns)
    return total
before, after, n = load(sys.argv[1]), load(sys.argv[2]), max(int(sys.argv[3]), 1)
print(" ".join(f"{k}={(after[k] - before[k]) / 1e3 / n:.1f}" for k in ("workers_us", "sqlite_us", "runtime_us")))
PY
}

# The whole machine's counters so far, as "busy idle switches segments": CPU time in clock
# ticks (busy: user, nice, system, irq, softirq, steal; idle: idle, iowait), context switches
# and TCP segments sent. wrk, the upstream and the kernel's own threads are in them too: what a
# proxy costs the machine beyond its own process, and whether it leaves the cores idle.
machine_ticks() {
  awk '/^cpu / {busy = $2 + $3 + $4 + $7 + $8 + $9; idle = $5 + $6} /^ctxt / {print busy, idle, $2}' /proc/stat
  # TCP segments sent (loopback: every one is also received): a proxy that splits its writes
  # or acknowledges eagerly makes the kernel handle more packets per request.
  awk '/^Tcp:/ {if (!names) {for (i = 1; i <= NF; i++) if ($i == "OutSegs") col = i; names = 1} else print $col}' /proc/net/snmp
}

run_wrk() { # label url clients token body; also the serving processes' CPU per request
  local out before after requests machine_before machine_after
  before=$(cpu_ticks "$1")
  machine_before=$(machine_ticks)
  [ "$1" = keyway ] && thread_ns >"$WORK/threads.before"
  out=$(TOKEN=$4 BODY=${5:-} wrk -t2 -c"$3" -d"$DURATION" -s bench/http.lua "$2" | grep RESULT)
  after=$(cpu_ticks "$1")
  machine_after=$(machine_ticks)
  requests=$(sed 's/.*requests=\([0-9]*\).*/\1/' <<<"$out")
  out="$out cpu_us=$(python3 -c "import sys; t,n=map(int,sys.argv[1:]); print(round(t*1e6/$(getconf CLK_TCK)/max(n,1),1))" \
    "$((after - before))" "$requests")"
  out="$out $(python3 -c "import sys; b0,i0,s0,g0,b1,i1,s1,g1,n=map(int,sys.argv[1:]); t=$(getconf CLK_TCK); n=max(n,1); print(f'machine_us={(b1-b0)*1e6/t/n:.1f} idle_pct={100*(i1-i0)/max(b1-b0+i1-i0,1):.1f} switches={(s1-s0)/n:.2f} segments={(g1-g0)/n:.2f}')" \
    $machine_before $machine_after "$requests")"
  if [ "$1" = keyway ]; then
    thread_ns >"$WORK/threads.after"
    out="$out $(by_thread "$WORK/threads.before" "$WORK/threads.after" "$requests")"
  fi
  echo "$1 c$3: ${out#RESULT }" | tee -a "$WORK/results"
}

run_wrk1() { # label url token: one client, one thread (unloaded latency)
  local out
  out=$(TOKEN=${3:-} wrk -t1 -c1 -d"$DURATION" -s bench/http.lua "$2" | grep RESULT)
  echo "$1 c1: ${out#RESULT }" | tee -a "$WORK/results"
}

echo "keyway proxy benchmark: wrk -t2 -d$DURATION, $ROUNDS rounds, $(nproc) cores, $WORKERS workers per proxy"
for target in "direct $DIRECT" "nginx $NGINX" "nginxlog $NGINX_LOG" "floor $FLOOR_URL" "hyperfloor $HYPER_FLOOR_URL" "keyway $KEYWAY"; do # warm-up
  set -- $target; TOKEN=$KEY wrk -t2 -c"$CONNECTIONS" -d2s -s bench/http.lua "$2" >/dev/null
done
for round in $(seq "$ROUNDS"); do
  run_wrk direct "$DIRECT" "$CONNECTIONS" ""
  run_wrk nginx "$NGINX" "$CONNECTIONS" ""
  run_wrk nginxlog "$NGINX_LOG" "$CONNECTIONS" ""
  run_wrk floor "$FLOOR_URL" "$CONNECTIONS" ""
  run_wrk hyperfloor "$HYPER_FLOOR_URL" "$CONNECTIONS" ""
  if [ -n "${PROFILE:-}" ]; then # a command that takes the server's pid, run during the keyway run
    $PROFILE "$SERVER" 2>/dev/null & PERF=$!
  fi
  run_wrk keyway "$KEYWAY" "$CONNECTIONS" "$KEY"
  [ -n "${PROFILE:-}" ] && { kill -INT $PERF; wait $PERF || true; }
  run_wrk1 direct "$DIRECT"
  run_wrk1 nginx "$NGINX"
  run_wrk1 keyway "$KEYWAY" "$KEY"
done
MUTATION="{\"query\":\"mutation { proxy(input: {connectionId: \\\"$ID\\\", path: \\\"/items\\\"}) { status body } }\"}"
run_wrk mutation "http://127.0.0.1:$PORT/graphql" 8 "$KEY" "$MUTATION"
stop_server

python3 - "$WORK/results" <<'PY'
import re, statistics, sys
runs = {}
for line in open(sys.argv[1]):
    label, clients, rest = re.match(r"(\w+) c(\d+): (.*)", line).groups()
    fields = dict(kv.split("=") for kv in rest.split())
    assert fields["errors"] == "0", line
    runs.setdefault((label, int(clients)), []).append({k: float(v) for k, v in fields.items()})
med = lambda key, field: statistics.median(r[field] for r in runs[key])
print("\nmedians                 req/s     p50 ms    p99 ms   server CPU us/req")
for key in sorted(runs, key=lambda k: (-k[1], k[0])):
    cpu = f"{med(key,'cpu_us'):>12.1f}" if all('cpu_us' in r for r in runs[key]) else ""
    print(f"{key[0]:>9} c{key[1]:<4}  {med(key,'rps'):>10.0f} {med(key,'p50_ms'):>10.3f} {med(key,'p99_ms'):>9.3f} {cpu}")
c = max(k[1] for k in runs if k[0] == "keyway")
print(f"\nthroughput keyway/nginx at c{c}: {med(('keyway',c),'rps')/med(('nginx',c),'rps'):.2f}  (target >= 0.8)")
print(f"throughput keyway/nginxlog at c{c}: {med(('keyway',c),'rps')/med(('nginxlog',c),'rps'):.2f}  (nginx writing its access log, as Keyway records every call)")
print(f"throughput floor/nginx at c{c}: {med(('floor',c),'rps')/med(('nginx',c),'rps'):.2f}, keyway/floor: {med(('keyway',c),'rps')/med(('floor',c),'rps'):.2f}; hyperfloor/nginx: {med(('hyperfloor',c),'rps')/med(('nginx',c),'rps'):.2f}")
if all('cpu_us' in r for k in (('keyway',c),('nginx',c)) for r in runs[k]):
    print(f"server CPU per request at c{c}: keyway {med(('keyway',c),'cpu_us'):.1f} us, nginx {med(('nginx',c),'cpu_us'):.1f} us")
k = ('keyway', c)
print(f"keyway CPU per request by thread at c{c}: HTTP workers {med(k,'workers_us'):.1f} us,"
      f" SQLite threads {med(k,'sqlite_us'):.1f} us, background runtime {med(k,'runtime_us'):.1f} us;"
      f" floor {med(('floor',c),'cpu_us'):.1f} us")
print("machine CPU per request at c%d (every process and the kernel), idle share of the cores,"
      " context switches and TCP segments sent per request:" % c)
for label in ("direct", "nginx", "nginxlog", "floor", "hyperfloor", "keyway"):
    print(f"  {label:>10} {med((label,c),'machine_us'):6.1f} us  idle {med((label,c),'idle_pct'):4.1f}%"
          f"  rest of machine {med((label,c),'machine_us') - med((label,c),'cpu_us'):5.1f} us"
          f"  switches {med((label,c),'switches'):5.2f}  TCP segments {med((label,c),'segments'):5.2f}")
print(f"added p50 over direct at c{c}: keyway {med(('keyway',c),'p50_ms')-med(('direct',c),'p50_ms'):.3f} ms, nginx {med(('nginx',c),'p50_ms')-med(('direct',c),'p50_ms'):.3f} ms")
print(f"added p50 over direct at c1: keyway {med(('keyway',1),'p50_ms')-med(('direct',1),'p50_ms'):.3f} ms, nginx {med(('nginx',1),'p50_ms')-med(('direct',1),'p50_ms'):.3f} ms  (target < 1 ms)")
PY

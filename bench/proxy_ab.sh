#!/usr/bin/env bash
# Paired A/B of two Keyway binaries' raw proxy: both serve the same kind of connection to one
# local upstream (nginx answering a fixed JSON body), and wrk drives them alternately, ROUNDS
# pairs of DURATION each, so machine noise lands on both sides alike. Prints every run, the
# medians, their ratio and how many pairs B won. Used to judge one change (a build setting, a
# hot-path edit) where single runs of bench/proxy.sh are too noisy. Each run also reports the
# server's CPU time per request (user + system), which a busy machine disturbs less than req/s.
#
#   bench/proxy_ab.sh OLD_BINARY NEW_BINARY     # ROUNDS=4 DURATION=5s
#   A_ENV='KEYWAY_HTTP_WORKERS=2' B_ENV='KEYWAY_HTTP_WORKERS=1' bench/proxy_ab.sh BIN BIN
#                                               # one binary, two settings (each side's server env)
#   B_DATA_ROOT=/dev/shm bench/proxy_ab.sh BIN BIN  # one binary, B's SQLite store in memory
set -euo pipefail
cd "$(dirname "$0")/.."
A=$(realpath "$1"); B=$(realpath "$2"); ROUNDS=${ROUNDS:-4}; DURATION=${DURATION:-5s}
A_ENV=${A_ENV:-}; B_ENV=${B_ENV:-}
A_DATA_ROOT=${A_DATA_ROOT:-}; B_DATA_ROOT=${B_DATA_ROOT:-}
# Two copies of one build with one setting would "measure" noise as a difference (see the
# README on shared target directories).
if [ "$A_ENV" = "$B_ENV" ] && [ "$A_DATA_ROOT" = "$B_DATA_ROOT" ] && cmp -s "$A" "$B"; then echo "proxy_ab: $1 and $2 are the same binary" >&2; exit 1; fi
UP=${UPSTREAM_PORT:-18191}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
command -v nginx >/dev/null || { apt-get update -qq && apt-get install -y -qq nginx >/dev/null; }
WORK=$(mktemp -d)
# Each side's data directory (its SQLite store): under the work directory unless a root is given.
A_DIR=$(mktemp -d "${A_DATA_ROOT:-$WORK}/a.XXXX"); B_DIR=$(mktemp -d "${B_DATA_ROOT:-$WORK}/b.XXXX")
cat >"$WORK/nginx.conf" <<CONF
worker_processes $(nproc);
pid $WORK/nginx.pid;
error_log $WORK/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $WORK/body;
  server {
    listen 127.0.0.1:$UP;
    default_type application/json;
    location / { return 200 '{"data":[{"id":"1","name":"Ada Lovelace","email":"ada@example.com"}],"next":null}'; }
  }
}
CONF
nginx -c "$WORK/nginx.conf"
export KEYWAY_ALLOWED_PRIVATE_HOSTS="127.0.0.1:$UP"
trap 'pkill -f "serve --listen 127.0.0.1:1820[12]"; nginx -c "$WORK/nginx.conf" -s stop; rm -rf "$WORK" "$A_DIR" "$B_DIR"' EXIT
setup() { # bin port dir env -> prints url key
  local bin=$1 port=$2 dir=$3 settings=$4
  rm -rf "$dir"; mkdir -p "$dir"
  export KEYWAY_DATA_DIR=$dir; unset DATABASE_URL
  "$bin" migrate 2>/dev/null
  local op; op=$("$bin" admin token --label bench 2>/dev/null)
  env KEYWAY_LOG_LEVEL=warn $settings "$bin" serve --listen "127.0.0.1:$port" >"$dir/serve.log" 2>&1 &
  until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do sleep 0.02; done
  gq() { curl -sf -X POST "http://127.0.0.1:$port/graphql" -H "authorization: Bearer $1" -H 'content-type: application/json' -d "$2"; }
  local app; app=$(gq "$op" '{"query":"mutation { createApplication(input: {name: \"bench\"}) { id } }"}' | python3 -c 'import sys,json; print(json.load(sys.stdin)["data"]["createApplication"]["id"])')
  local key; key=$(gq "$op" "{\"query\":\"mutation { createApiKey(input: {applicationId: \\\"$app\\\", label: \\\"bench\\\"}) { secret } }\"}" | python3 -c 'import sys,json; print(json.load(sys.stdin)["data"]["createApiKey"]["secret"])')
  local integ; integ=$(python3 - "$UP" <<'PY'
import json, sys
provider = {"service_id": "benchapi", "name": "Bench API", "unified_api": "crm", "auth_type": "api_key",
    "base_url": f"http://127.0.0.1:{sys.argv[1]}/api",
    "credential_fields": [{"id": "api_key", "label": "Key", "type": "password", "required": True}],
    "injection": {"type": "header", "name": "X-Api-Key", "field": "api_key"}}
print(json.dumps({"query": 'mutation($p: JSON) { createIntegration(input: {serviceId: "benchapi", customProvider: $p}) { id } }', "variables": {"p": provider}}))
PY
)
  gq "$key" "$integ" >/dev/null
  local id; id=$(gq "$key" '{"query":"mutation { createConnection(input: {consumerId: \"bench\", serviceId: \"benchapi\", credentials: {fields: {api_key: \"upstream-key\"}}}) { id } }"}' | python3 -c 'import sys,json; print(json.load(sys.stdin)["data"]["createConnection"]["id"])')
  echo "http://127.0.0.1:$port/proxy/$id/items $key"
}
read UA KA <<<"$(setup "$A" 18201 "$A_DIR" "$A_ENV")"
read UB KB <<<"$(setup "$B" 18202 "$B_DIR" "$B_ENV")"
curl -sf -H "authorization: Bearer $KA" "$UA" | grep -q Lovelace
curl -sf -H "authorization: Bearer $KB" "$UB" | grep -q Lovelace
for u in "$UA $KA" "$UB $KB"; do set -- $u; TOKEN=$2 wrk -t2 -c32 -d2s -s bench/http.lua "$1" >/dev/null; done
: > "$WORK/results"
PA=$(pgrep -f "serve --listen 127.0.0.1:18201"); PB=$(pgrep -f "serve --listen 127.0.0.1:18202")
ticks() { cut -d' ' -f14,15 "/proc/$1/stat" | awk '{print $1 + $2}'; }
for r in $(seq $ROUNDS); do
  for u in "A $UA $KA $PA" "B $UB $KB $PB"; do set -- $u
    before=$(ticks "$4")
    out=$(TOKEN=$3 wrk -t2 -c32 -d$DURATION -s bench/http.lua "$2" | grep RESULT)
    after=$(ticks "$4")
    n=$(sed 's/.*requests=\([0-9]*\).*/\1/' <<<"$out")
    cpu=$(python3 -c "print(round(($after - $before) * 1e6 / $(getconf CLK_TCK) / max($n, 1), 1))")
    echo "$1 $out cpu_us=$cpu" | tee -a "$WORK/results"
  done
done
python3 - "$WORK/results" <<'PY'
import re, statistics, sys
r={}; c={}
for l in open(sys.argv[1]):
    k=l.split()[0]
    r.setdefault(k,[]).append(float(re.search(r'rps=(\d+)',l).group(1)))
    c.setdefault(k,[]).append(float(re.search(r'cpu_us=([\d.]+)',l).group(1)))
a,b=statistics.median(r['A']),statistics.median(r['B'])
wins=sum(1 for x,y in zip(r['A'],r['B']) if y>x)
print(f"median A {a:.0f}  B {b:.0f}  B/A {b/a:.3f}  B won {wins}/{len(r['A'])} pairs")
ca,cb=statistics.median(c['A']),statistics.median(c['B'])
cheaper=sum(1 for x,y in zip(c['A'],c['B']) if y<x)
print(f"server CPU us/request: median A {ca:.1f}  B {cb:.1f}  B/A {cb/ca:.3f}  B cheaper in {cheaper}/{len(c['A'])} pairs")
PY

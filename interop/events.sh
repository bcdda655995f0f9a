#!/usr/bin/env bash
# Interoperability check (manual, not part of CI): Keyway's events through clients nobody here
# wrote. The `graphql-ws` npm client (the one SPEC §3 names) subscribes over
# graphql-transport-ws: a wrong key is closed with 4403, events arrive filtered and in order,
# keep-alive pings do not drop the socket. A webhook receiver checks every delivery with the
# `standardwebhooks` npm package (the Standard Webhooks reference verifier).
#   interop/events.sh
# Needs node (18+) and npm.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=$(mktemp -d)
KW_PORT=${KW_PORT:-18481} RECEIVER_PORT=${RECEIVER_PORT:-18491}
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$WORK"' EXIT

cargo build --quiet --bin keyway
BIN=${CARGO_TARGET_DIR:-target}/debug/keyway
(cd "$WORK" && npm init -y >/dev/null && npm install --silent graphql-ws@6 graphql@16 ws@8 standardwebhooks@1 >/dev/null)
cp interop/events.mjs interop/keyway.mjs "$WORK/"

KEYWAY_DATA_DIR="$WORK/data" KEYWAY_LISTEN="127.0.0.1:$KW_PORT" KEYWAY_LOG_LEVEL=warn \
  KEYWAY_ALLOWED_PRIVATE_HOSTS="127.0.0.1:$RECEIVER_PORT" "$BIN" serve >"$WORK/keyway.log" 2>&1 &
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$KW_PORT/healthz" >/dev/null && break
  sleep 0.2
done
OPERATOR_TOKEN=$(KEYWAY_DATA_DIR="$WORK/data" "$BIN" admin token --label interop 2>/dev/null)
(cd "$WORK" && KEYWAY="http://127.0.0.1:$KW_PORT" OPERATOR_TOKEN=$OPERATOR_TOKEN \
  RECEIVER_PORT=$RECEIVER_PORT node events.mjs)

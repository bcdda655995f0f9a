#!/usr/bin/env bash
# Interoperability check (manual, not part of CI): graphql-http's server audit, the GraphQL over
# HTTP specification's conformance suite (npm), against Keyway's /graphql with a secret key.
# Fails on any MUST or SHOULD that does not pass; lists the optional items left.
#   interop/graphql_http.sh
# Needs node (18+) and npm.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=$(mktemp -d)
KW_PORT=${KW_PORT:-18482}
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$WORK"' EXIT

cargo build --quiet --bin keyway
BIN=${CARGO_TARGET_DIR:-target}/debug/keyway
(cd "$WORK" && npm init -y >/dev/null && npm install --silent graphql-http@1 >/dev/null)
cp interop/graphql_http.mjs interop/keyway.mjs "$WORK/"

KEYWAY_DATA_DIR="$WORK/data" KEYWAY_LISTEN="127.0.0.1:$KW_PORT" KEYWAY_LOG_LEVEL=warn \
  "$BIN" serve >"$WORK/keyway.log" 2>&1 &
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$KW_PORT/healthz" >/dev/null && break
  sleep 0.2
done
OPERATOR_TOKEN=$(KEYWAY_DATA_DIR="$WORK/data" "$BIN" admin token --label interop 2>/dev/null)
(cd "$WORK" && KEYWAY="http://127.0.0.1:$KW_PORT" OPERATOR_TOKEN=$OPERATOR_TOKEN node graphql_http.mjs)

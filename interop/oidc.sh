#!/usr/bin/env bash
# Interoperability check (manual, not part of CI): Keyway against a real authorization server,
# panva's oidc-provider (npm), mounted under a path as a Keycloak realm is. Runs connect (PKCE,
# the provider's login and consent pages, RFC 9207 iss), a proxied call, a provider-side
# revocation (401 -> one refresh -> retry), 50 concurrent calls once the token is half-way
# through its life, and revocation; then counts the token requests the provider saw.
#   interop/oidc.sh                          # client_secret_basic, 20-second access tokens
#   CLIENT_AUTH=request_body interop/oidc.sh # client_secret_post
# Needs node/npm and python3 (it makes its own venv for `requests`).
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=$(mktemp -d)
KW_PORT=${KW_PORT:-18480} AS_PORT=${AS_PORT:-18490}
export AT_TTL=${AT_TTL:-20} CLIENT_AUTH=${CLIENT_AUTH:-basic}
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$WORK"' EXIT

cargo build --quiet --bin keyway
BIN=${CARGO_TARGET_DIR:-target}/debug/keyway
(cd "$WORK" && npm init -y >/dev/null && npm install --silent oidc-provider@8 >/dev/null)
python3 -m venv "$WORK/venv" && "$WORK/venv/bin/pip" install --quiet requests

AUTH_METHOD=client_secret_basic
[ "$CLIENT_AUTH" = request_body ] && AUTH_METHOD=client_secret_post
cp interop/oidc-provider.mjs "$WORK/"
(cd "$WORK" && PORT=$AS_PORT AUTH=$AUTH_METHOD CALLBACK="http://127.0.0.1:$KW_PORT/oauth/callback" \
  exec node oidc-provider.mjs >"$WORK/provider.log" 2>&1) &
KEYWAY_DATA_DIR="$WORK/data" KEYWAY_LISTEN="127.0.0.1:$KW_PORT" KEYWAY_LOG_LEVEL=warn \
  KEYWAY_ALLOWED_PRIVATE_HOSTS="127.0.0.1:$AS_PORT" "$BIN" serve >"$WORK/keyway.log" 2>&1 &
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$KW_PORT/healthz" >/dev/null && grep -q issuer "$WORK/provider.log" && break
  sleep 0.2
done
OPERATOR_TOKEN=$(KEYWAY_DATA_DIR="$WORK/data" "$BIN" admin token --label interop 2>/dev/null)
KEYWAY="http://127.0.0.1:$KW_PORT" ISSUER="http://127.0.0.1:$AS_PORT/realms/acme" \
  OPERATOR_TOKEN=$OPERATOR_TOKEN "$WORK/venv/bin/python" interop/oidc_drive.py
TOKEN_REQUESTS=$(grep -c '^POST /realms/acme/token$' "$WORK/provider.log" || true)
echo "token requests the provider saw: $TOKEN_REQUESTS (expected 3: the code exchange, the" \
  "refresh after the provider-side revocation, one refresh for the 50 calls)"
[ "$TOKEN_REQUESTS" = 3 ]

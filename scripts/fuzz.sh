#!/usr/bin/env bash
# Fuzzes every documented route with schemathesis (PyPI), generated from our own /openapi.json,
# against a throwaway local worker: no 5xx, responses match the documented schemas.
# usage: scripts/fuzz.sh [max-examples]   (run `make build` first; `make fuzz` does both)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
EXAMPLES=${1:-30}
WR="$ROOT/node_modules/.bin/wrangler"
DIR=$(mktemp -d /tmp/tenantry-fuzz-XXXX)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false

# Both Workers' configs side by side in $DIR, so both read $DIR/.dev.vars.
python3 "$ROOT/scripts/local_configs.py" "$DIR"
MOCK_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 "$ROOT/scripts/dev_vars.py" "$DIR/.dev.vars" --mock-url "http://127.0.0.1:$MOCK_PORT" > /dev/null
# Raised budgets: the fuzzer is one tenant sending thousands of requests.
cat >> "$DIR/.dev.vars" <<VARS
RATE_LIMIT_PREMIUM_CUSTOM="1000000"
RATE_LIMIT_PLATFORM="1000000"
AUTH_RATE_LIMIT="1000000"
AUTH_ACCOUNT_RATE_LIMIT="1000000"
REGISTER_RATE_LIMIT="1000000"
VARS
"$WR" d1 migrations apply DB --local --persist-to "$DIR/state" -c "$DIR/wrangler.toml" > /dev/null
python3 "$ROOT/scripts/seed.py" --vars "$DIR/.dev.vars" > "$DIR/seed.sql"
"$WR" d1 execute DB --local --persist-to "$DIR/state" -c "$DIR/wrangler.toml" --file "$DIR/seed.sql" > /dev/null

set -m
# The local stand-ins (Stripe, Graph API, OCR) the routes call, as `make dev` starts them.
python3 "$ROOT/scripts/mock_upstream.py" --port "$MOCK_PORT" > "$DIR/mock.log" 2>&1 &
M=$!
"$WR" dev -c "$DIR/wrangler.toml" -c "$DIR/jobs.toml" --port "$PORT" --ip 127.0.0.1 --persist-to "$DIR/state" > "$DIR/wrangler.log" 2>&1 &
W=$!
trap 'kill -- -$W 2>/dev/null || true; kill $M 2>/dev/null || true; rm -rf "$DIR"' EXIT
for _ in $(seq 120); do curl -sf "http://127.0.0.1:$PORT/health/ready" > /dev/null && break; sleep 0.5; done

set -a; . "$DIR/.dev.vars"; set +a
login() {
  curl -s "http://127.0.0.1:$PORT/api/v1/auth/login" -H 'Content-Type: application/json' \
    -d "{\"email\":\"$1\",\"password\":\"$2\"}" | python3 -c 'import sys,json; print(json.load(sys.stdin)["data"]["access_token"])'
}
# The platform admin reaches every route (its own tenant for tenant routes).
TOKEN=$(login "$ADMIN_EMAIL" "$ADMIN_PASSWORD")
schemathesis run "http://127.0.0.1:$PORT/openapi.json" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance \
  --header "Authorization: Bearer $TOKEN" \
  --max-examples "$EXAMPLES" --seed 1 --no-color

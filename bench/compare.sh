#!/usr/bin/env bash
# Side by side with the Hono/TypeScript peer (../shared/bench/peer-hono): starts the peer and
# both Tenantry Workers on free local ports with fresh state and rate limits out of the way,
# runs ../shared/bench/compare.py (wrk, route by route, alternating), and stops both.
# usage: bench/compare.sh [seconds] [connections]   (after `make build`; `make compare` does both)
# Output: the compare.py table, also written to bench/results/compare.txt, and its figures with
# the targets (issue: trivial ≥ 0.9×, auth/me and users ≥ 1.0×, login ≥ 0.9×) in compare.json.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${SHARED:-$ROOT/../shared}
SECONDS_PER_ROUTE=${1:-5}
CONNS=${2:-8}
WR="$ROOT/node_modules/.bin/wrangler"
DIR=$(mktemp -d /tmp/tenantry-compare-XXXX)
export WRANGLER_SEND_METRICS=false CLOUDFLARE_CF_FETCH_ENABLED=false
command -v wrk > /dev/null || { echo "wrk is missing: apt-get install -y wrk"; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ready() {
  for _ in $(seq 1 240); do curl -fsS "$1" > /dev/null 2>&1 && return 0; sleep 0.5; done
  echo "not ready: $1"; exit 1
}

# The peer, as its README runs it, from a writable copy (shared/ is read-only).
cp -r "$SHARED/bench/peer-hono" "$DIR/peer" && chmod -R u+w "$DIR/peer"
(cd "$DIR/peer" && npm ci --no-audit --no-fund > /dev/null 2>&1 \
  && npx wrangler d1 migrations apply DB --local --persist-to "$DIR/peer-state" > /dev/null)

# Tenantry: both Workers, the way `make dev` runs them, with budgets the run cannot reach.
python3 "$ROOT/scripts/local_configs.py" "$DIR/product"
python3 "$ROOT/scripts/dev_vars.py" "$DIR/product/.dev.vars" > /dev/null
for v in RATE_LIMIT_FREE RATE_LIMIT_STARTER RATE_LIMIT_PRO RATE_LIMIT_PREMIUM_CUSTOM RATE_LIMIT_PLATFORM AUTH_RATE_LIMIT AUTH_ACCOUNT_RATE_LIMIT REGISTER_RATE_LIMIT; do
  echo "$v=\"100000000\"" >> "$DIR/product/.dev.vars"
done
"$WR" d1 migrations apply DB --local --persist-to "$DIR/state" -c "$DIR/product/wrangler.toml" > /dev/null

PEER_PORT=$(free_port); PORT=$(free_port)
set -m
(cd "$DIR/peer" && exec npx wrangler dev --port "$PEER_PORT" --ip 127.0.0.1 --persist-to "$DIR/peer-state" \
  --inspector-port "$(free_port)" --log-level warn > "$DIR/peer.log" 2>&1) &
P=$!
"$WR" dev -c "$DIR/product/wrangler.toml" -c "$DIR/product/jobs.toml" --port "$PORT" --ip 127.0.0.1 \
  --persist-to "$DIR/state" --inspector-port "$(free_port)" --log-level warn > "$DIR/product.log" 2>&1 &
W=$!
trap 'kill -- -$W -$P 2>/dev/null || true; rm -rf "$DIR"' EXIT
wait_ready "http://127.0.0.1:$PEER_PORT/hello"
wait_ready "http://127.0.0.1:$PORT/health/ready"

mkdir -p "$ROOT/bench/results"
python3 "$SHARED/bench/compare.py" --product "http://127.0.0.1:$PORT" --peer "http://127.0.0.1:$PEER_PORT" \
  --seconds "$SECONDS_PER_ROUTE" --conns "$CONNS" | tee "$ROOT/bench/results/compare.txt"
python3 - "$ROOT/bench/results/compare.txt" "$ROOT/bench/results/compare.json" <<'PY'
import json, sys
targets = {"trivial": 0.9, "auth/me": 1.0, "users list": 1.0, "login": 0.9}
rows = {}
for line in open(sys.argv[1]):
    parts = line.split()
    name = " ".join(parts[:2]) if parts[:2] == ["users", "list"] else (parts[0] if parts else "")
    if name not in targets:
        continue
    rest = parts[2:] if name == "users list" else parts[1:]
    prod, peer, ratio = float(rest[0]), float(rest[1]), float(rest[2])
    p50, p99 = rest[3].split("/"), rest[4].split("/")
    rows[name] = {"product_rps": prod, "peer_rps": peer, "ratio": ratio, "target": targets[name],
                  "met": ratio >= targets[name], "p50_ms": [float(p50[0]), float(p50[1])],
                  "p99_ms": [float(p99[0]), float(p99[1])]}
json.dump(rows, open(sys.argv[2], "w"), indent=2)
print("targets:", ", ".join(f"{k} {v['ratio']}x {'met' if v['met'] else 'missed'} (≥ {v['target']}x)" for k, v in rows.items()))
PY

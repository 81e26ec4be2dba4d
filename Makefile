# Tenantry: `make dev` sets everything up and serves on :8787; `make test` runs every test tier.
# Only Rust, Node/npm and Python are assumed; every other tool is installed here, pinned.

SHELL := /bin/bash
.DEFAULT_GOAL := help

WORKER_BUILD_VERSION := 0.8.7
# wasm-bindgen CLI must match the wasm-bindgen crate in Cargo.lock exactly.
WASM_BINDGEN_VERSION := $(shell awk '/^name = "wasm-bindgen"$$/{getline; gsub(/"/,"",$$3); print $$3}' Cargo.lock)
CARGO_BIN := $(HOME)/.cargo/bin
STATE := .state
PORT ?= 8787
# The mock upstream the demo workflows' http steps call (scripts/mock_upstream.py).
MOCK_PORT ?= 8790

export WRANGLER_SEND_METRICS := false
# Offline: use the placeholder `Request.cf` instead of fetching it from the internet.
export CLOUDFLARE_CF_FETCH_ENABLED := false
export WASM_BINDGEN_BIN := $(CARGO_BIN)/wasm-bindgen
export ESBUILD_BIN := $(CURDIR)/node_modules/.bin/esbuild
export WASM_OPT_BIN := $(CURDIR)/node_modules/.bin/wasm-opt
WRANGLER := $(CURDIR)/node_modules/.bin/wrangler
SWAGGER_UI_FILES := swagger-ui-bundle.js swagger-ui.css favicon-32x32.png LICENSE
# The TypeScript client (@tenantry/client) and how its types are generated.
CLIENT := clients/typescript
OPENAPI_TS := $(CURDIR)/$(CLIENT)/node_modules/.bin/openapi-typescript

.PHONY: help tools build dev-vars migrate seed dev test unit integration browser client client-deps client-check check bench bench-tools compare fuzz deploy-check admin clean

help:
	@echo "make dev    set up (tools, secrets, build, migrate, seed) and serve on http://localhost:$(PORT)"
	@echo "make test   set up, then unit, integration and browser tests against fresh local state"
	@echo "make check  cargo fmt --check and clippy -D warnings"
	@echo "make client regenerate the TypeScript client's types (clients/typescript) from the routes"
	@echo "make bench  bundle size and throughput ratios (writes bench/results/latest.json)"
	@echo "make admin  create the first platform admin in the deployed D1 (EMAIL=you@example.com)"

## tools: the pinned toolchain pieces, installed only when missing or at another version.
tools:
	@rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
	@if ! $(CARGO_BIN)/worker-build --version 2>/dev/null | grep -q "$(WORKER_BUILD_VERSION)"; then \
	  echo "installing worker-build $(WORKER_BUILD_VERSION) (once per machine, a few minutes)"; \
	  cargo install worker-build --version $(WORKER_BUILD_VERSION) --locked; fi
	@if ! $(WASM_BINDGEN_BIN) --version 2>/dev/null | grep -q "$(WASM_BINDGEN_VERSION)"; then \
	  echo "installing wasm-bindgen-cli $(WASM_BINDGEN_VERSION) (once per machine, a few minutes)"; \
	  cargo install wasm-bindgen-cli --version $(WASM_BINDGEN_VERSION) --force; fi
	@if [ ! -x $(WRANGLER) ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then \
	  npm ci --no-audit --no-fund; fi
	@# The browser tier drives Debian's Chromium (playwright-core never downloads a browser).
	@command -v chromium > /dev/null || { echo "installing Debian's chromium (once per machine)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium > /dev/null; }

## build: both release Workers, offline — tenantry-api (build/api) and tenantry-jobs
## (build/jobs), one crate built with one feature each — and the API Worker's static assets.
build: tools
	$(CARGO_BIN)/worker-build --release --out-dir build/api . --no-default-features --features api
	$(CARGO_BIN)/worker-build --release --out-dir build/jobs . --no-default-features --features jobs
	@# worker-build keeps the wasm name section (~180 KB); the runtime does not need it.
	@for w in api jobs; do $(WASM_OPT_BIN) --strip-debug --strip-producers build/$$w/index_bg.wasm -o build/$$w/index_bg.wasm; done
	@# /docs: Swagger UI from the pinned npm package, served through the Worker (wrangler.toml [assets]).
	@rm -rf build/assets && mkdir -p build/assets/docs
	@cp $(addprefix node_modules/swagger-ui-dist/,$(SWAGGER_UI_FILES)) src/docs/init.js build/assets/docs/

dev-vars:
	@python3 scripts/dev_vars.py .dev.vars --mock-url http://127.0.0.1:$(MOCK_PORT)

migrate: tools
	$(WRANGLER) d1 migrations apply DB --local --persist-to $(STATE)

seed: dev-vars migrate
	@mkdir -p $(STATE)
	@python3 scripts/seed.py --vars .dev.vars --provider-url http://127.0.0.1:$(MOCK_PORT) > $(STATE)/seed.sql
	@$(WRANGLER) d1 execute DB --local --persist-to $(STATE) --file $(STATE)/seed.sql > /dev/null
	@python3 scripts/seed.py --r2-objects | while IFS=$$'\t' read -r key file type; do \
	  $(WRANGLER) r2 object put "tenantry-media/$$key" --file "$$file" --content-type "$$type" \
	    --local --persist-to $(STATE) > /dev/null || exit 1; done
	@echo "seeded demo data"

dev: build seed
	@set -a; . ./.dev.vars; set +a; \
	echo ""; \
	echo "Tenantry is starting on http://localhost:$(PORT)  (docs: http://localhost:$(PORT)/docs)"; \
	echo "Development log-ins (local only; from .dev.vars):"; \
	echo "  platform admin   $$ADMIN_EMAIL / $$ADMIN_PASSWORD"; \
	echo "  agency client    owner@northwind.demo / $$DEMO_PASSWORD  (member@northwind.demo too)"; \
	echo "  inbox tenant     owner@blueharbor.demo / $$DEMO_PASSWORD  (agent@blueharbor.demo too)"; \
	echo "  shop tenant      owner@aldershop.demo / $$DEMO_PASSWORD"; \
	echo "  Stripe tenant    owner@cedar.demo / $$DEMO_PASSWORD  (pro via Stripe; scripts/stripe_event.py signs test events)"; \
	echo "  prompt tenant    owner@refinery.demo / $$DEMO_PASSWORD  (member@refinery.demo too; openai on the mock)"; \
	echo "  near its quota   owner@littlelamp.demo / $$DEMO_PASSWORD  (free, 995 of 1000 optimisations used)"; \
	echo "Mock upstream (demo workflows' provider, WhatsApp Graph API, OCR, Stripe, LLM providers, e-mail at /_calls/email): http://127.0.0.1:$(MOCK_PORT)"; \
	echo ""
	@python3 scripts/mock_upstream.py --port $(MOCK_PORT) > $(STATE)/mock-upstream.log 2>&1 & \
	MOCK=$$!; trap 'kill $$MOCK 2>/dev/null' EXIT INT TERM; \
	$(WRANGLER) dev -c wrangler.toml -c queues/wrangler.toml --port $(PORT) --persist-to $(STATE) --test-scheduled

## test: unit tests natively, then the integration suite against a worker it starts itself
## (fresh --persist-to state in a temp dir, migrated and seeded by the harness).
test: build dev-vars client-check unit integration browser

unit:
	cargo test --lib

integration:
	cargo test --test api -- --test-threads 4
	cargo test --test jobs

## client: the TypeScript client regenerated from the current routes: the OpenAPI document built
## natively with no server (examples/openapi.rs), then its types (openapi-typescript, pinned).
client: client-deps
	cargo run --quiet --example openapi > $(CLIENT)/openapi.json
	cd $(CLIENT) && $(OPENAPI_TS) openapi.json --output src/schema.ts

client-deps:
	@if [ ! -x $(OPENAPI_TS) ] || [ $(CLIENT)/package-lock.json -nt $(CLIENT)/node_modules/.package-lock.json ]; then \
	  cd $(CLIENT) && npm ci --no-audit --no-fund; fi

## client-check: the committed client is what `make client` makes from today's routes (a route
## whose schema changed without `make client` fails here), and the package and its example
## type-check. Its tests against a worker are tests/api/ts_client.rs.
client-check: client-deps
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	cargo run --quiet --example openapi > "$$tmp/openapi.json" && \
	(cd $(CLIENT) && $(OPENAPI_TS) "$$tmp/openapi.json" --output "$$tmp/schema.ts" > /dev/null) && \
	if ! diff -u $(CLIENT)/openapi.json "$$tmp/openapi.json" || ! diff -u $(CLIENT)/src/schema.ts "$$tmp/schema.ts"; then \
	  echo "$(CLIENT) is out of date with the routes: run 'make client' and commit the result"; exit 1; fi
	cd $(CLIENT) && node_modules/.bin/tsc --noEmit -p tsconfig.json

## browser: the served pages (/docs) in Debian's Chromium, against a worker of their own.
browser:
	cargo test --test browser

check:
	cargo fmt --all -- --check
	@# The core sits underneath, entry points on top: no module cycle but the docs page and the
	@# route table it documents.
	python3 scripts/module_cycles.py --allow docs,routes
	cargo clippy --all-targets -- -D warnings
	cargo clippy --lib --target wasm32-unknown-unknown -- -D warnings
	cargo clippy --lib --target wasm32-unknown-unknown --no-default-features --features api -- -D warnings
	cargo clippy --lib --target wasm32-unknown-unknown --no-default-features --features jobs -- -D warnings

bench: build bench-tools
	node bench/run.mjs
	bench/compare.sh

## compare: side by side with the Hono peer in ../shared/bench (wrk, from Debian's packages).
compare: build bench-tools
	bench/compare.sh

bench-tools:
	@command -v wrk > /dev/null || { echo "installing Debian's wrk (once per machine)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk > /dev/null; }

## fuzz: schemathesis against our own OpenAPI document (needs PyPI's schemathesis, pinned here).
fuzz: build
	@python3 -m pip install -q "schemathesis==4.32.5"
	scripts/fuzz.sh

## deploy-check: `wrangler deploy --dry-run` of both Workers' current build (run `make build` first).
deploy-check: tools
	@test -f build/api/worker/shim.mjs -a -f build/jobs/worker/shim.mjs || { echo "no build: run make build"; exit 1; }
	$(WRANGLER) deploy --dry-run --outdir build/dry-run/api
	$(WRANGLER) deploy --dry-run --outdir $(CURDIR)/build/dry-run/jobs -c queues/wrangler.toml

## admin: the first platform admin in the deployed D1 (asks for the password; refuses if one
## exists). EMAIL=…, LOCAL=1 for the local state (.state), PASSWORD_ENV=VAR to read the
## password from $VAR instead of asking, CONFIG=… for another wrangler config.
admin: tools
	@python3 scripts/create_admin.py $(if $(EMAIL),'$(EMAIL)') $(if $(LOCAL),--local --persist-to $(STATE),--remote) \
	  $(if $(PASSWORD_ENV),--password-env $(PASSWORD_ENV)) $(if $(CONFIG),-c '$(CONFIG)') --wrangler $(WRANGLER)

clean:
	rm -rf build target/wasm32-unknown-unknown $(STATE)

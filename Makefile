# mcpauthz — the two commands a newcomer needs (README "Set-up"):
#   make demo   the main job end to end, in one process (dev IdP, mcpauthz, an MCP server, an Envoy stand-in)
#   make test   everything CI runs (.ci/run calls exactly this)
# and then:
#   make run    the service alone on embedded defaults; prints tokens and a first request to send
# Every target says what it does as it starts. The first build compiles a few hundred
# packages (several minutes on a small machine; `go build -v` lists each one); later
# builds come from Go's cache.
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
FUZZTIME ?= 10s
PKGS := ./...

.PHONY: run demo test build lint unit policy-test envoy-check deploy-check fuzz bench loadtest e2e test-browser test-postgres screenshots clean

run: build
	@echo "==> run: bin/mcpauthz serve (embedded development defaults; Ctrl-C stops it)"
	bin/mcpauthz serve

demo: build
	@echo "==> demo: bin/mcpauthz demo"
	bin/mcpauthz demo

# -v lists each package as it compiles: the first build takes minutes, the
# next ones come from the cache and list nothing.
build:
	@echo "==> build: bin/mcpauthz (first build: several minutes, one line per package compiled)"
	$(GO) build -v -buildvcs=auto -o bin/mcpauthz ./cmd/mcpauthz

test: lint unit policy-test envoy-check deploy-check fuzz
	@echo "==> test: all passed (lint, unit, policy-test, envoy-check, deploy-check, fuzz)"

lint:
	@echo "==> [1/6] lint: gofmt, then go vet (lists each package it compiles)"
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet -v $(PKGS)

# The race-instrumented build first, listing packages as they compile (the
# first time this is the longest silent stretch of make test); then the
# tests, one line per package as each finishes.
unit:
	@echo "==> [2/6] unit: compiling with the race detector (first run: several minutes)"
	$(GO) build -race -v $(PKGS)
	@echo "==> [2/6] unit: go test -race ./... (one line per package as it finishes; the slowest take a few minutes)"
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

# Every shipped bundle's Rego tests, with coverage (>= 90% per bundle).
policy-test: build
	@echo "==> [3/6] policy-test: every bundle's Rego tests, coverage >= 90%"
	@for b in bundles/*/; do \
	  out=$$(bin/mcpauthz test --coverage --threshold 90 $$b 2>&1) || { echo "$$out"; exit 1; }; \
	  echo "$$b: $$(echo "$$out" | grep -E '^PASS') coverage $$(echo "$$out" | grep -E 'total' | awk '{print $$4}')"; \
	done

# Every shipped Envoy bootstrap, and one generated from the example config,
# through go-control-plane's proto validation plus mcpauthz's security checks.
envoy-check: build
	@echo "==> [4/6] envoy-check: shipped and generated Envoy bootstraps, --strict"
	bin/mcpauthz envoy validate --strict envoy/envoy.yaml envoy/envoy-mtls.yaml deploy/compose/envoy.yaml
	bin/mcpauthz envoy generate --config cmd/mcpauthz/config.example.yaml -o bin/envoy-generated.yaml
	bin/mcpauthz envoy validate --strict --config cmd/mcpauthz/config.example.yaml bin/envoy-generated.yaml

# The deployment examples decoded strictly into the Kubernetes, Gateway API,
# Envoy Gateway and Istio Go types: a module of its own (deploy/schema), so
# those dependencies stay out of mcpauthz's build. The first run downloads
# and compiles them (a few minutes).
deploy-check:
	@echo "==> [5/6] deploy-check: deploy/ examples against the Kubernetes, Gateway API, Envoy Gateway and Istio types (first run compiles them: minutes)"
	cd deploy/schema && $(GO) vet ./... && $(GO) test -count=1 ./...

# Each fuzz target runs briefly on top of its committed seed corpus
# (.ci/fuzz-one: a real finding fails at once; Go 1.26's end-of-fuzztime
# race, go.dev/issue/75804, is retried once).
FUZZ = GO=$(GO) bash .ci/fuzz-one
fuzz:
	@echo "==> [6/6] fuzz: each target for $(FUZZTIME) on its committed corpus"
	$(FUZZ) FuzzParse ./server/mcp $(FUZZTIME)
	$(FUZZ) FuzzFromCheckRequest ./envoy $(FUZZTIME)
	$(FUZZ) FuzzValidateBootstrapYAML ./envoy $(FUZZTIME)
	$(FUZZ) FuzzParse ./server/config $(FUZZTIME)
	$(FUZZ) FuzzMask ./server/decisionlog $(FUZZTIME)
	$(FUZZ) FuzzSanitize ./credentials/exchange $(FUZZTIME)
	$(FUZZ) FuzzBuildPrincipal ./credentials/identity $(FUZZTIME)
	$(FUZZ) FuzzQualifiedSubject ./credentials/identity $(FUZZTIME)
	$(FUZZ) FuzzActorToken ./credentials/outbound $(FUZZTIME)
	$(FUZZ) FuzzSessionID ./server $(FUZZTIME)
	$(FUZZ) FuzzSSEFilter ./server/extproc $(FUZZTIME)
	$(FUZZ) FuzzParse ./credentials/jwks $(FUZZTIME)
	$(FUZZ) FuzzDecodeClaims ./credentials/identity $(FUZZTIME)
	$(FUZZ) FuzzAppend ./internal/jsonstr $(FUZZTIME)

e2e:
	@echo "==> e2e: the end-to-end suite (set ENVOY_BIN to run it through a real Envoy)"
	$(GO) test -race -count=1 -v ./e2e/...

# The browser tests (headless Chromium through chromedp): the connect pages,
# and per-user connections end to end (issue 8). Without Chromium on PATH
# they say so and skip the browser steps (apt-get install -y chromium).
test-browser:
	@echo "==> test-browser: connect pages and individual connections in headless Chromium"
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || command -v google-chrome >/dev/null || \
		echo "    no Chromium on PATH: the browser steps skip (install it: apt-get install -y chromium)"
	$(GO) test -race -count=1 -v -run '^(TestConnectFlowInChromium|TestIndividualConnectionsEndToEnd)$$' ./e2e/

# PostgreSQL for real (issue 9): the store conformance suite and the
# three-replica e2e on a throwaway cluster (initdb + postgres from the
# Debian package postgresql, found in PATH or /usr/lib/postgresql/*/bin),
# or on MCPAUTHZ_TEST_POSTGRES (a DSN whose role may create databases).
# Without either the tests say so and skip; MCPAUTHZ_TEST_POSTGRES_REQUIRED=1
# makes that a failure.
test-postgres:
	@echo "==> test-postgres: store conformance suite and three replicas on one PostgreSQL"
	@command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || [ -n "$$MCPAUTHZ_TEST_POSTGRES" ] || \
		echo "    no PostgreSQL (initdb) and no MCPAUTHZ_TEST_POSTGRES: the tests skip (install it: apt-get install -y postgresql)"
	$(GO) test -race -count=1 -v ./internal/pgtest/ ./credentials/store/
	$(GO) test -race -count=1 -v -run '^TestReplicasEndToEnd$$' ./e2e/

# Screenshots of the connect, connections and admin pages, taken by the
# browser tests in headless Chromium, kept in docs/screenshots (the tests
# run in ./e2e, hence the absolute path).
screenshots:
	@echo "==> screenshots: browser tests writing PNGs to docs/screenshots"
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || command -v google-chrome >/dev/null || \
		{ echo "    no Chromium on PATH: no screenshots (install it: apt-get install -y chromium)"; exit 1; }
	mkdir -p docs/screenshots
	MCPAUTHZ_SCREENSHOT_DIR=$(CURDIR)/docs/screenshots $(GO) test -race -count=1 -v \
		-run '^(TestConnectFlowInChromium|TestConnectAdminInChromium|TestIndividualConnectionsEndToEnd)$$' ./e2e/
	@ls docs/screenshots

bench:
	@echo "==> bench: Check pipeline, policy, parser and credential benchmarks"
	$(GO) test -run '^$$' -bench . -benchmem ./server ./policy ./server/mcp ./credentials/...

loadtest: build
	@echo "==> loadtest: 5s of gRPC Checks beside an empty ext_authz handler"
	bin/mcpauthz loadtest --duration 5s --concurrency 32

clean:
	rm -rf bin

# mcpauthz — the two commands a newcomer needs:
#   make run    start mcpauthz on embedded defaults (example config + bundle, built-in dev IdP)
#   make test   everything CI runs (.ci/run calls exactly this)
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
FUZZTIME ?= 10s
PKGS := ./...

.PHONY: run demo test build lint unit policy-test envoy-check fuzz bench loadtest e2e clean

run:
	$(GO) run ./cmd/mcpauthz serve

demo:
	$(GO) run ./cmd/mcpauthz demo

build:
	$(GO) build -o bin/mcpauthz ./cmd/mcpauthz

test: lint unit policy-test envoy-check fuzz

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet $(PKGS)

unit:
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

# Every shipped bundle's Rego tests, with coverage (>= 90% per bundle).
policy-test:
	$(GO) build -o bin/mcpauthz ./cmd/mcpauthz
	@for b in bundles/*/; do \
	  out=$$(bin/mcpauthz test --coverage --threshold 90 $$b 2>&1) || { echo "$$out"; exit 1; }; \
	  echo "$$b: $$(echo "$$out" | grep -E '^PASS') coverage $$(echo "$$out" | grep -E 'total' | awk '{print $$4}')"; \
	done

# Every shipped Envoy bootstrap, and one generated from the example config,
# through go-control-plane's proto validation plus mcpauthz's security checks.
envoy-check:
	$(GO) build -o bin/mcpauthz ./cmd/mcpauthz
	bin/mcpauthz envoy validate --strict envoy/envoy.yaml envoy/envoy-mtls.yaml deploy/compose/envoy.yaml
	bin/mcpauthz envoy generate --config cmd/mcpauthz/config.example.yaml -o bin/envoy-generated.yaml
	bin/mcpauthz envoy validate --strict --config cmd/mcpauthz/config.example.yaml bin/envoy-generated.yaml

# Each fuzz target runs briefly on top of its committed seed corpus.
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./server/mcp
	$(GO) test -run '^$$' -fuzz '^FuzzFromCheckRequest$$' -fuzztime $(FUZZTIME) ./envoy
	$(GO) test -run '^$$' -fuzz '^FuzzValidateBootstrapYAML$$' -fuzztime $(FUZZTIME) ./envoy
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./server/config
	$(GO) test -run '^$$' -fuzz '^FuzzMask$$' -fuzztime $(FUZZTIME) ./server/decisionlog
	$(GO) test -run '^$$' -fuzz '^FuzzSanitize$$' -fuzztime $(FUZZTIME) ./credentials/exchange
	$(GO) test -run '^$$' -fuzz '^FuzzBuildPrincipal$$' -fuzztime $(FUZZTIME) ./credentials/identity
	$(GO) test -run '^$$' -fuzz '^FuzzQualifiedSubject$$' -fuzztime $(FUZZTIME) ./credentials/identity
	$(GO) test -run '^$$' -fuzz '^FuzzActorToken$$' -fuzztime $(FUZZTIME) ./credentials/outbound
	$(GO) test -run '^$$' -fuzz '^FuzzSessionID$$' -fuzztime $(FUZZTIME) ./server

e2e:
	$(GO) test -race -count=1 -v ./e2e/...

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./server ./policy ./server/mcp ./credentials/...

loadtest:
	$(GO) run ./cmd/mcpauthz loadtest --duration 5s --concurrency 32

clean:
	rm -rf bin

# mcpauthz — the two commands a newcomer needs:
#   make run    start mcpauthz on embedded defaults (example config + bundle, built-in dev IdP)
#   make test   everything CI runs (.ci/run calls exactly this)
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
FUZZTIME ?= 10s
PKGS := ./...

.PHONY: run test build lint unit fuzz bench loadtest e2e clean

run:
	$(GO) run ./cmd/mcpauthz serve

build:
	$(GO) build -o bin/mcpauthz ./cmd/mcpauthz

test: lint unit fuzz

lint:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet $(PKGS)

unit:
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

# Each fuzz target runs briefly on top of its committed seed corpus.
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./server/mcp
	$(GO) test -run '^$$' -fuzz '^FuzzFromCheckRequest$$' -fuzztime $(FUZZTIME) ./envoy
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./server/config

e2e:
	$(GO) test -race -count=1 -v ./e2e/...

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./server ./policy ./server/mcp ./credentials/...

loadtest:
	$(GO) run ./cmd/mcpauthz loadtest --duration 5s --concurrency 32

clean:
	rm -rf bin

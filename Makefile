# The targets CI and people run. `make test` is the whole suite (README).
GO ?= go
# A count, not a duration: with a duration Go 1.26's fuzz coordinator can
# report a spurious "context deadline exceeded" when the time runs out
# while a worker is busy (golang/go#75804, fixed in Go 1.27); it failed one
# CI run here with no crasher written. 50,000 inputs take 2-7 s per target.
FUZZTIME ?= 50000x
# Every fuzz target, as package:Target. A new target must be listed here so CI runs it.
FUZZ_TARGETS := $(shell grep -ho '^func Fuzz[A-Za-z0-9_]*' internal/wire/*_test.go 2>/dev/null | sed 's/func //')

.PHONY: test check unit load fuzz others cluster interop-deps bench compare demo

test: check unit load fuzz others cluster

# Formatting and vet: cheap, so first.
check:
	@out=$$(gofmt -l . | grep -v node_modules); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# Every test under the race detector, in random order; load tests apart.
unit: interop-deps
	$(GO) test -race -shuffle=on -timeout 15m -skip '^TestLoad' ./...

# Load tests (TestLoad*): no race detector, one package at a time, since
# their figures mean nothing otherwise. SOCKHOP_LOAD_SECS=60 for the long run.
load:
	$(GO) test -count 1 -p 1 -run '^TestLoad' -v ./...


# A short run of each fuzz target (the seed corpus already runs in `unit`).
fuzz:
	@for t in $(FUZZ_TARGETS); do \
		echo "fuzz $$t ($(FUZZTIME))"; \
		$(GO) test ./internal/wire/ -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) || exit 1; \
	done

# The other systems of bench/compare.sh (gRPC, NATS, net/rpc): a module of
# their own, so their dependencies stay out of the library's go.mod. A
# smoke run of every scenario through the real binaries.
others:
	cd bench/others && $(GO) vet ./... && $(GO) test -count 1 ./...

# The cluster module (cluster/, servers joined over NATS): a module of its
# own so that nats.go stays out of the library's go.mod. Its tests start
# nats-server embedded and real Node 1.8.4 clients.
cluster: interop-deps
	cd cluster && $(GO) vet ./... && $(GO) test -race -shuffle=on -count 1 -timeout 10m ./...

# The real Node Sockhop 1.8.4 that interop tests talk to.
interop-deps:
	@[ -d internal/interop/node/node_modules/sockhop ] || npm ci --prefix internal/interop/node --no-audit --no-fund

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

# Median table against Node Sockhop 1.8.4 and raw Go sockets (a few minutes).
compare: interop-deps
	bench/compare.sh

demo:
	$(GO) run ./cmd/sockhop demo

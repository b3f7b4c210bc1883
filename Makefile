# The two entry points of the README: `make demo` and `make test`.
GO ?= go
BIN := bin/ukernel
DEMO := demo/hello

.PHONY: demo test test-short fuzz build clean

build:
	$(GO) build -o $(BIN) ./cmd/ukernel

# Sets up a fresh machine, creates the demo project and boots it in a microVM.
demo: build
	scripts/deps.sh
	scripts/demo.sh $(BIN) $(DEMO)

# Everything, VM boots included. CI runs exactly this.
test:
	scripts/deps.sh --tests
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 80m ./...

# The quick loop for developers: no VM boots, no network fetches.
test-short:
	$(GO) test -short ./...

# Every fuzz target for FUZZTIME each (default 30s), one after the other. FUZZ=regexp picks
# targets; FUZZFLAGS=-parallel=1 leaves cores to others.
fuzz:
	scripts/fuzz.sh

clean:
	rm -rf bin demo

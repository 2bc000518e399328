# Ferry's make targets. `make demo` and `make test` are the two a newcomer needs.
GO        ?= go
BIN       := bin/ferry
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X github.com/ferrysync/ferry/internal/buildinfo.Version=$(VERSION)
# -race finds data races in the concurrent reader/writer code; tests are sized for it.
# -p 1: one package at a time. The tests start real servers and measure rates, latencies and
# memory (throttles, precheck rates, peak RSS); two packages' clusters competing for 2 cores
# made those measurements lie. About 9 minutes on 2 cores.
TESTFLAGS ?= -race -count=1 -timeout 25m -p 1

.PHONY: all build test lint fuzz-smoke demo deps bench soak clean

all: build

deps:
	@scripts/ensure-deps.sh

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/ferry

test: deps
	$(GO) test $(TESTFLAGS) ./...

lint:
	@scripts/lint.sh

fuzz-smoke:
	@scripts/fuzz-smoke.sh

demo: deps build
	@scripts/demo.sh

# Ferry against ideal clients on this machine (docs/performance.md); e.g. BENCHFLAGS="-scale 0.25".
bench: build
	$(GO) run ./bench -ferry $(BIN) $(BENCHFLAGS)

clean:
	rm -rf bin

# Fanout developer targets. `make test` is what CI runs (see .ci/run).
GO ?= go
STATICCHECK ?= $(shell $(GO) env GOPATH)/bin/staticcheck

.PHONY: test deps lint race fuzz fuzz-long bench interop

test: deps lint race fuzz

# What the tests need beyond Go: staticcheck, Node's ws and express (interop tests, the hooks' backend, and
# the Node peer), uWebSockets.js (its peer), playwright-core (browser test),
# Debian's python3-websockets, redis-server and redis-tools (redis-cli makes the Redis Cluster tests' cluster), rabbitmq-server (the RabbitMQ
# broker's tests start their own node), nats-server (the NATS broker's), haproxy and nginx-light (deploy
# tests) and chromium (each installed only when missing).
deps:
	@test -x $(STATICCHECK) || $(GO) install honnef.co/go/tools/cmd/staticcheck@latest
	@test -d cmd/fanout/testdata/interop/node_modules/express || npm ci --prefix cmd/fanout/testdata/interop --no-audit --no-fund
	@test -d bench/peers/node/node_modules/ws || npm ci --prefix bench/peers/node --no-audit --no-fund
	@test -d bench/peers/uws/node_modules/uwebsockets || npm ci --prefix bench/peers/uws --no-audit --no-fund
	@test -d cmd/fanout/testdata/e2e/node_modules/playwright-core || npm ci --prefix cmd/fanout/testdata/e2e --no-audit --no-fund
	@missing=; \
	/usr/bin/python3 -c 'import websockets' 2>/dev/null || missing="$$missing python3-websockets"; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v redis-cli >/dev/null || missing="$$missing redis-tools"; \
	test -x /usr/lib/rabbitmq/bin/rabbitmq-server || missing="$$missing rabbitmq-server"; \
	command -v nats-server >/dev/null || missing="$$missing nats-server"; \
	test -x /usr/sbin/haproxy || missing="$$missing haproxy"; \
	test -x /usr/sbin/nginx || missing="$$missing nginx-light"; \
	test -x /usr/bin/chromium || missing="$$missing chromium"; \
	test -z "$$missing" || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; }

# The benchmark peers (bench/peers: nbio, gorilla) and the chart drawer
# (bench/plot: gonum) are modules of their own, so the library's module
# graph holds none of them; lint covers every module, and go mod tidy must
# change nothing in any. cmd/fanout-bench's tests build both.
MODULES = . bench/peers bench/plot

lint:
	@test -z "$$(gofmt -l .)" || (gofmt -l .; echo "gofmt needed"; exit 1)
	@for m in $(MODULES); do \
		echo "lint $$m"; \
		$(GO) -C $$m mod tidy -diff && $(GO) -C $$m vet ./... && (cd $$m && $(STATICCHECK) ./...) || exit 1; \
	done
	@echo "lint GOOS=darwin (the engine builds, and says unsupported, off Linux)"
	@GOOS=darwin $(GO) build ./... && GOOS=darwin $(GO) vet ./server/... ./poller/...

race:
	$(GO) test -race -shuffle=on -count=1 -timeout 20m ./...

# One target per go test -fuzz call: Go fuzzes a single target at a time.
# Each is package:target:executions, the executions about 30 s of this
# 2-vCPU machine. Budgets are counts, not durations: with a duration, Go
# 1.26's coordinator can report its own deadline as a failure when a
# worker is mid-call as it passes (golang/go#75804, fixed in Go 1.27), and
# on a loaded CI machine it did; a count has no deadline to race.
FUZZ_TARGETS = frame:FuzzParser:400000 frame:FuzzInflate:300000 server/internal/tlsrec:FuzzOpen:600000 server/internal/tlsrec:FuzzOpenInner:600000

fuzz: FUZZ_SCALE = 1
fuzz-long: FUZZ_SCALE = 20
fuzz fuzz-long:
	@for t in $(FUZZ_TARGETS); do pkg=$${t%%:*} rest=$${t#*:}; target=$${rest%%:*} n=$${rest#*:}; \
		$(GO) test -run='^$$' -fuzz="^$$target$$" -fuzztime=$$((n * $(FUZZ_SCALE)))x -fuzzminimizetime=10s ./$$pkg || exit 1; done

bench:
	$(GO) test -run='^$$' -bench=. -benchmem ./...

interop:
	$(GO) test -run=Interop -v -count=1 ./cmd/fanout

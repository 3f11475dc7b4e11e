# Fanout developer targets. `make test` is what CI runs (see .ci/run).
GO ?= go
STATICCHECK ?= $(shell $(GO) env GOPATH)/bin/staticcheck

.PHONY: test lint race fuzz fuzz-long bench interop

test: lint race fuzz

lint:
	@test -z "$$(gofmt -l .)" || (gofmt -l .; echo "gofmt needed"; exit 1)
	$(GO) vet ./...
	$(STATICCHECK) ./...

race:
	$(GO) test -race -shuffle=on -count=1 -timeout 20m ./...

fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzParser -fuzztime=30s ./frame

fuzz-long:
	$(GO) test -run='^$$' -fuzz=FuzzParser -fuzztime=10m ./frame

bench:
	$(GO) test -run='^$$' -bench=. -benchmem ./...

interop:
	$(GO) test -run=Interop -v -count=1 ./cmd/fanout

# Ringfence. Run as root on Debian 12.
GO ?= $(shell command -v go || echo /usr/local/go/bin/go)
export PATH := $(PATH):/usr/local/go/bin

.PHONY: all build deps install image demo test test-unit test-e2e fuzz bench clean

all: build

build:
	$(GO) build -o bin/ringfence ./cmd/ringfence
	$(GO) build -o bin/ringfence-launch ./cmd/ringfence-launch

deps:
	./scripts/deps.sh

install: deps build
	install -m 0755 bin/ringfence /usr/local/sbin/ringfence
	install -m 0755 bin/ringfence-launch /usr/local/sbin/ringfence-launch

image: install
	/usr/local/sbin/ringfence image default --dir /var/lib/ringfence/images/default

# The main job: daemon + default guest booted, console to the ready line, list.
demo: image
	./scripts/demo.sh

# Everything: unit tests, e2e tests on real QEMU, a short fuzz run.
test: image
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 30m ./...
	$(GO) test -run '^$$' -fuzz FuzzDecode -fuzztime 20s ./internal/config/

test-unit:
	$(GO) test -count=1 ./internal/... ./tests/arch/

bench: image
	$(GO) run ./bench/boot -runs 15
	$(GO) test -run '^$$' -bench . -benchmem ./bench/resources/
	RINGFENCE_BENCH=1 $(GO) test -count=1 -run TestTopRefresh200 -v -timeout 20m ./bench/resources/
	$(GO) run ./bench/migrate
	$(GO) run ./bench/clone
	$(GO) run ./bench/export
	$(GO) run ./bench/net
	$(GO) run ./bench/overhead

clean:
	rm -rf bin

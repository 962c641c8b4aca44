# Ringfence. Run as root on Debian 12.
GO ?= $(shell command -v go || echo /usr/local/go/bin/go)
export PATH := $(PATH):/usr/local/go/bin

VERSION ?= $(shell sed -n 's/^const Release = "\(.*\)"/\1/p' internal/api/paths.go)
SBINDIR ?= /usr/local/sbin
SYSTEMD_DIR ?= /etc/systemd/system

.PHONY: all build deps install install-service image demo test test-host test-host-short test-unit test-e2e fuzz bench bench-ui bench-neighbours bench-neighbours-short bench-provision bench-failover soak soak-ha soak-ha-lossy clean deb

all: build

build:
	$(GO) build -o bin/ringfence ./cmd/ringfence
	$(GO) build -o bin/ringfence-launch ./cmd/ringfence-launch
	$(GO) build -o bin/ringfence-guard ./cmd/ringfence-guard

deps:
	./scripts/deps.sh

install: deps build
	install -m 0755 bin/ringfence $(SBINDIR)/ringfence
	install -m 0755 bin/ringfence-launch $(SBINDIR)/ringfence-launch
	install -m 0755 bin/ringfence-guard $(SBINDIR)/ringfence-guard
	$(MAKE) --no-print-directory install-service

# Units, settings and docs. The settings files are never overwritten; the
# units are only enabled where systemd runs (`systemctl enable --now
# ringfence` then starts the daemon).
install-service:
	install -d $(SYSTEMD_DIR) /etc/ringfence /etc/ringfence/auto /etc/default
	sed 's|@SBINDIR@|$(SBINDIR)|g' packaging/systemd/ringfence.service > $(SYSTEMD_DIR)/ringfence.service
	sed 's|@SBINDIR@|$(SBINDIR)|g' packaging/systemd/ringfence-guests.service > $(SYSTEMD_DIR)/ringfence-guests.service
	sed 's|@SBINDIR@|$(SBINDIR)|g' packaging/ringfence-guests-stop > $(SBINDIR)/ringfence-guests-stop
	chmod 0755 $(SBINDIR)/ringfence-guests-stop
	[ -e /etc/ringfence/ringfence.conf ] || install -m 0644 packaging/ringfence.conf /etc/ringfence/ringfence.conf
	[ -e /etc/default/ringfence-guests ] || install -m 0644 packaging/default/ringfence-guests /etc/default/ringfence-guests
	if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi

# The Debian package a hosting admin installs on a fleet: binaries, units,
# man pages, bash/zsh/fish completion, default settings. Installing, upgrading or
# removing it leaves running guests alone.
deb: build
	rm -rf dist/pkg && mkdir -p dist/pkg/DEBIAN dist/pkg/usr/sbin dist/pkg/lib/systemd/system \
		dist/pkg/etc/ringfence/auto dist/pkg/etc/default dist/pkg/usr/share/man \
		dist/pkg/usr/share/bash-completion/completions dist/pkg/usr/share/zsh/vendor-completions \
		dist/pkg/usr/share/fish/vendor_completions.d dist/pkg/usr/share/doc/ringfence
	install -m 0755 bin/ringfence bin/ringfence-launch bin/ringfence-guard dist/pkg/usr/sbin/
	sed 's|@SBINDIR@|/usr/sbin|g' packaging/ringfence-guests-stop > dist/pkg/usr/sbin/ringfence-guests-stop
	chmod 0755 dist/pkg/usr/sbin/ringfence-guests-stop
	for u in ringfence.service ringfence-guests.service; do \
		sed 's|@SBINDIR@|/usr/sbin|g' packaging/systemd/$$u > dist/pkg/lib/systemd/system/$$u; done
	install -m 0644 packaging/ringfence.conf dist/pkg/etc/ringfence/ringfence.conf
	install -m 0644 packaging/default/ringfence-guests dist/pkg/etc/default/ringfence-guests
	bin/ringfence gen man dist/pkg/usr/share/man && gzip -9n dist/pkg/usr/share/man/man*/*
	bin/ringfence gen completion bash > dist/pkg/usr/share/bash-completion/completions/ringfence
	bin/ringfence gen completion zsh > dist/pkg/usr/share/zsh/vendor-completions/_ringfence
	bin/ringfence gen completion fish > dist/pkg/usr/share/fish/vendor_completions.d/ringfence.fish
	install -m 0644 README.md docs/design.md dist/pkg/usr/share/doc/ringfence/
	sed 's|@VERSION@|$(VERSION)|' packaging/debian/control > dist/pkg/DEBIAN/control
	install -m 0644 packaging/debian/conffiles dist/pkg/DEBIAN/conffiles
	install -m 0755 packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm dist/pkg/DEBIAN/
	dpkg-deb --root-owner-group --build -Zxz dist/pkg dist/ringfence_$(VERSION)_amd64.deb
	rm -rf dist/pkg

image: install
	/usr/local/sbin/ringfence image default --dir /var/lib/ringfence/images/default

# The main job: daemon + default guest booted, console to the ready line, list.
demo: image
	./scripts/demo.sh

# Everything: unit tests, e2e tests on real QEMU, a short fuzz run.
test: image
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 75m ./...
	$(GO) test -run '^$$' -fuzz FuzzDecode -fuzztime 20s ./internal/config/

# The proof on a real host (issue 15): a Debian 12 VM with systemd and pure
# cgroup v2 under QEMU, the .deb installed in it, guests under nested TCG
# (tests/host). test-host waits for every nested guest to boot (slow);
# test-host-short, which CI runs, checks the same without waiting.
test-host: image deb
	RINGFENCE_HOST_TEST=1 RINGFENCE_DEB=$(CURDIR)/dist/ringfence_$(VERSION)_amd64.deb \
		$(GO) test -count=1 -v -timeout 90m -run TestHostSystemdCgroupV2 ./tests/host/

test-host-short: image deb
	RINGFENCE_HOST_TEST=short RINGFENCE_DEB=$(CURDIR)/dist/ringfence_$(VERSION)_amd64.deb \
		$(GO) test -count=1 -v -timeout 30m -run TestHostSystemdCgroupV2 ./tests/host/

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
	$(GO) run ./bench/neighbours

# create --image to ssh, against bare QEMU on the same image (builds the
# debian-12 image into the e2e cache first if needed: ~10 min).
bench-provision:
	$(GO) run ./bench/provision

bench-events:
	$(GO) run ./bench/events

# The web admin: 1,000 domains listed in headless chromium, and what an
# idle page costs the daemon (two idle windows of 60 s).
bench-ui:
	$(GO) run ./bench/ui

# The proof of the ring-fence (docs/guarantees.md): a victim guest beside a
# misbehaving neighbour, Ringfence's controls vs bare QEMU; ~10 min on 2
# cores. The short form, which CI runs, checks that every control held
# (a few minutes).
bench-neighbours: image
	$(GO) run ./bench/neighbours

bench-neighbours-short: image
	$(GO) run ./bench/neighbours -short

# HA's failover (issue 21): a host powered off and a host cut off, each
# phase timed against the 15 s target and the lease TTL (~6 min).
bench-failover: image
	$(GO) run ./bench/failover

clean:
	rm -rf bin dist

# Long runs CI leaves out: the usage ledger through 100 kill -9 of the
# daemon and QEMU (CI runs 15).
soak:
	RINGFENCE_USAGE_KILLS=100 $(GO) test -count=1 -timeout 60m -run 'TestUsage$$' ./tests/e2e/

# HA's proof (issue 21, docs/cluster.md "How we know"): 200 random faults
# on a three-host cluster with the HA writer, its disk verified, no two
# QEMUs of it at once (~3 h; CI runs 6 through TestClusterHASoakShort);
# and 10 minutes on a lossy cluster link with no fence (CI runs 60 s).
soak-ha: image
	RINGFENCE_HA_FAULTS=200 $(GO) test -count=1 -v -timeout 300m -run 'TestClusterHASoakShort$$' ./tests/e2e/

soak-ha-lossy: image
	RINGFENCE_HA_LOSSY=10m $(GO) test -count=1 -v -timeout 40m -run 'TestClusterHALossy$$' ./tests/e2e/

#!/bin/sh
# Installs what Ringfence needs on Debian 12. Idempotent; run as root.
set -eu
PKGS="qemu-system-x86 qemu-utils busybox-static e2fsprogs cpio iproute2 iputils-ping zstd nftables debootstrap chromium genisoimage openssh-client"
if [ "$(id -u)" != 0 ]; then echo "deps: run as root (sudo make ...)" >&2; exit 1; fi
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "==> apt-get install$missing"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
# The guest kernel comes from apt-get download, which needs fresh lists.
if ! apt-cache show linux-image-cloud-amd64 >/dev/null 2>&1; then apt-get update -qq; fi
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then export PATH=$PATH:/usr/local/go/bin; fi
v=$(go env GOVERSION 2>/dev/null || echo none)
case "$v" in
  go1.2[6-9]*|go1.[3-9]*) ;;
  *) echo "deps: Go >= 1.26 is needed (found $v); install it to /usr/local/go" >&2; exit 1 ;;
esac

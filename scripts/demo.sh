#!/bin/sh
# The main job: start the daemon on the default state dir and boot the
# default guest, printing its console up to the ready line, then `list`.
set -eu
RF=/usr/local/sbin/ringfence
SOCK=/run/ringfence/ringfence.sock
IMG=/var/lib/ringfence/images/default
$RF image default --dir $IMG >/dev/null
if ! $RF info >/dev/null 2>&1; then
  if [ -d /run/systemd/system ]; then
    echo "==> systemctl enable --now ringfence (make install put the units in place)"
    systemctl enable --now ringfence ringfence-guests
  else
    # No systemd here: a detached daemon; SIGHUP reopens its log.
    echo "==> starting ringfence serve (log: /var/log/ringfence.log)"
    setsid $RF serve --log /var/log/ringfence.log >>/var/log/ringfence.log 2>&1 < /dev/null &
  fi
  i=0; until [ -S $SOCK ] && $RF info >/dev/null 2>&1; do
    i=$((i+1)); [ $i -gt 100 ] && { echo "daemon did not start; see /var/log/ringfence.log" >&2; exit 1; }
    sleep 0.1
  done
fi
$RF info | grep -E '^(accelerator|qemu_version)'
if $RF list default >/dev/null 2>&1; then
  echo "==> destroying the previous default guest"
  $RF destroy default
fi
echo "==> ringfence create $IMG/default.cfg"
$RF create $IMG/default.cfg
$RF console default --until "ringfence: guest ready" --timeout 120
echo
echo "==> ringfence list"
$RF list
echo
echo "Attach with: ringfence console default   (Ctrl-] detaches)"

#!/bin/sh
# Copies the pinned front-end libraries (package-lock.json) and their
# licences into the web admin's embedded vendor directory, and axe-core
# into the browser tests' testdata. Run after `npm ci --ignore-scripts`
# in web/; the copies are committed, so go build and CI never need Node.
set -eu
cd "$(dirname "$0")"
nm=node_modules
out=../internal/webui/static/vendor
rm -rf "$out" && mkdir -p "$out/xterm" "$out/novnc"
cp $nm/@xterm/xterm/lib/xterm.mjs $nm/@xterm/xterm/css/xterm.css "$out/xterm/"
cp $nm/@xterm/xterm/LICENSE "$out/xterm/LICENSE"
cp $nm/@xterm/addon-fit/lib/addon-fit.mjs "$out/xterm/"
cp $nm/@xterm/addon-fit/LICENSE "$out/xterm/LICENSE.addon-fit"
cp -r $nm/@novnc/novnc/core $nm/@novnc/novnc/vendor "$out/novnc/"
cp $nm/@novnc/novnc/LICENSE.txt "$out/novnc/LICENSE.txt"
find "$out" -name '*.map' -delete
mkdir -p ../tests/e2e/testdata
cp $nm/axe-core/axe.min.js ../tests/e2e/testdata/axe.min.js
cp $nm/axe-core/LICENSE ../tests/e2e/testdata/axe.LICENSE
echo "vendored into $out (and axe-core into tests/e2e/testdata)"

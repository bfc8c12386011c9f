#!/usr/bin/env bash
# The whole test suite: installs what the tests run for real when it is missing (Debian's
# prometheus, chromium, podman and musl-tools, the Rust musl target; the test control plane
# and helm build themselves from Go modules on first use),
# then cargo test, and ends with one line adding up every test binary's result. Extra
# arguments go to cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."
tests/prometheus/setup.sh
tests/browser/setup.sh
tests/image/setup.sh
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
rm -f target/image-size.txt
cargo test --locked "$@" 2>&1 | tee "$log" || status=$?
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log" | tee target/test-summary.txt
cat target/image-size.txt 2>/dev/null || true
exit "$status"

#!/usr/bin/env bash
# The whole test suite: installs what the tests run for real when it is missing (Debian's
# prometheus and chromium; the test control plane builds itself from Go modules on first use),
# then cargo test. Extra arguments go to cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."
tests/prometheus/setup.sh
tests/browser/setup.sh
cargo test --locked "$@"

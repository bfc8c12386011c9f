#!/usr/bin/env bash
# Runs each fuzz target for SECONDS (at least 60) on nightly; exits non-zero on the first crash,
# leaving the input under fuzz/artifacts/<target>/. Seeds are fuzz/corpus/<target>/seed-*;
# what libFuzzer adds next to them stays out of git.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${1:-}"
if ! [[ "$seconds" =~ ^[0-9]+$ ]] || (( seconds < 60 )); then
    echo "usage: fuzz/run.sh SECONDS   (per target, at least 60)" >&2
    exit 2
fi

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

# The fuzz crate's lock is committed: fail here rather than resolve dependencies anew and leave
# the tree dirty (cargo fuzz has no --locked of its own).
cargo +nightly metadata --locked --format-version 1 >/dev/null

for target in admission inventory watch; do
    echo "== fuzz $target for ${seconds}s"
    cargo +nightly fuzz run "$target" -- -max_total_time="$seconds" -timeout=10
done

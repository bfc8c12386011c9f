#!/usr/bin/env bash
# Installs what tests/image.rs needs when it is missing: podman and runc (Debian's packages),
# musl-tools (ring compiles C for the static binary) and the Rust target
# x86_64-unknown-linux-musl.
set -euo pipefail
missing=()
for pair in podman:podman runc:runc musl-gcc:musl-tools; do
  command -v "${pair%%:*}" >/dev/null || missing+=("${pair#*:}")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing ${missing[*]}; run as root or: apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if ! rustup target list --installed | grep -qx x86_64-unknown-linux-musl; then
  rustup target add x86_64-unknown-linux-musl
fi

#!/usr/bin/env bash
# Builds the static mtls-guard binary and the container image around it, and prints the image
# reference. Usage: scripts/build-image.sh [TAG]   (default mtls-guard:<version in Cargo.toml>)
#
# Needs the Rust target x86_64-unknown-linux-musl and a musl C compiler (ring compiles C):
#   rustup target add x86_64-unknown-linux-musl; apt-get install musl-tools
# and podman, or docker when there is no podman (CONTAINER_ENGINE overrides).
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
tag=${1:-mtls-guard:$version}
target=x86_64-unknown-linux-musl
engine=${CONTAINER_ENGINE:-$(command -v podman || command -v docker || true)}
[ -n "$engine" ] || { echo "build-image: neither podman nor docker is installed" >&2; exit 1; }

export CC_x86_64_unknown_linux_musl=${CC_x86_64_unknown_linux_musl:-musl-gcc}
echo "build-image: building the static binary ($target)" >&2
cargo build --release --locked --target "$target" --bin mtls-guard >&2

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
cp "target/$target/release/mtls-guard" "$context/mtls-guard"
strip "$context/mtls-guard"
cp Dockerfile "$context/Dockerfile"
echo "build-image: building $tag with $engine" >&2
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
"$engine" build --quiet --build-arg "VERSION=$version" --build-arg "REVISION=$revision" -t "$tag" "$context" >&2
echo "$tag"

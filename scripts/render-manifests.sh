#!/usr/bin/env bash
# Renders charts/mtls-guard with its default values (release mtls-guard, namespace mtls-guard)
# into manifests/base/install.yaml, and the chart's cert-manager Issuer and Certificate into
# manifests/components/cert-manager/certificate.yaml, so kubectl users install what Helm users
# install. The chart is the source; never edit those two files by hand.
#
# Usage: scripts/render-manifests.sh [--check]
#   --check  render to a temporary directory and exit 1 with a diff if a file differs
#
# helm comes from KUBEBUILDER_ASSETS when set (as the tests' binaries do), else from the test
# control plane's directory .cache/k8s-<version>, where tests/cluster/build-binaries.sh builds it
# on first use (helm v3.22.0 from the Go module proxy; a pinned helm keeps the render stable).
set -euo pipefail
cd "$(dirname "$0")/.."

check=false
case "${1:-}" in
  --check) check=true ;;
  "") ;;
  *) echo "usage: scripts/render-manifests.sh [--check]" >&2; exit 2 ;;
esac

K8S_VERSION=${K8S_VERSION:-1.34.4}
if [ -n "${KUBEBUILDER_ASSETS:-}" ]; then
  helm=$KUBEBUILDER_ASSETS/helm
  [ -x "$helm" ] || { echo "render-manifests: no helm in KUBEBUILDER_ASSETS ($KUBEBUILDER_ASSETS)" >&2; exit 1; }
else
  bin=${MTLS_GUARD_TEST_BIN_DIR:-.cache/k8s-$K8S_VERSION}
  if [ ! -x "$bin/helm" ]; then
    K8S_VERSION=$K8S_VERSION bash tests/cluster/build-binaries.sh "$bin"
  fi
  helm=$bin/helm
fi

chart=charts/mtls-guard
header="# Generated from $chart by scripts/render-manifests.sh; edit the chart, then run the script."

# render OUT [helm template args...]: the chart's objects without helm's "# Source:" lines.
render() {
  local out=$1
  shift
  { echo "$header"
    "$helm" template mtls-guard "$chart" --namespace mtls-guard "$@" | grep -v '^# Source: '
  } >"$out"
}

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
render "$out/install.yaml"
render "$out/certificate.yaml" --set certificates.mode=cert-manager --show-only templates/certificate.yaml

status=0
for pair in install.yaml:manifests/base/install.yaml \
            certificate.yaml:manifests/components/cert-manager/certificate.yaml; do
  src=$out/${pair%%:*} dst=${pair#*:}
  if $check; then
    if ! diff -u "$dst" "$src" >&2; then
      echo "render-manifests: $dst is not the chart's render; run scripts/render-manifests.sh" >&2
      status=1
    fi
  else
    mkdir -p "$(dirname "$dst")"
    cp "$src" "$dst"
    echo "render-manifests: wrote $dst" >&2
  fi
done
exit "$status"

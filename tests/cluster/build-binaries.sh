#!/usr/bin/env bash
# Builds kube-apiserver, kubectl, etcd and helm from the Go module proxy into DEST, once.
# Later runs find the binaries and return at once. Usage: build-binaries.sh DEST
# (helm renders charts/mtls-guard for scripts/render-manifests.sh.)
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-1.34.4}
ETCD_VERSION=${ETCD_VERSION:-3.6.5}
HELM_VERSION=${HELM_VERSION:-3.22.0}
dest=${1:?usage: build-binaries.sh DEST}
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)

have() { [ -x "$dest/$1" ]; }
if have kube-apiserver && have kubectl && have etcd && have helm; then
  exit 0
fi
command -v go >/dev/null || { echo "build-binaries: Go is needed to build the test control plane" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export GOFLAGS=-mod=mod

if ! have kube-apiserver || ! have kubectl; then
  echo "build-binaries: building kube-apiserver and kubectl v$K8S_VERSION from k8s.io/kubernetes (first time only: several minutes)" >&2
  mkdir "$work/k8s" && cd "$work/k8s"
  go mod init mtls-guard.test/k8s >/dev/null 2>&1
  gomod=$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
  # k8s.io/kubernetes replaces its staging modules with local paths; use their published v0.x.y.
  staging=$(sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$gomod")
  for m in $staging; do
    go mod edit -replace "$m=$m@v0.${K8S_VERSION#1.}"
  done
  go mod edit -require "k8s.io/kubernetes@v$K8S_VERSION"
  v=k8s.io/component-base/version
  ldflags="-s -w -X $v.gitVersion=v$K8S_VERSION -X $v.gitMajor=${K8S_VERSION%%.*} -X $v.gitMinor=$(echo "$K8S_VERSION" | cut -d. -f2)"
  go build -ldflags "$ldflags" -o "$dest/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
  go build -ldflags "$ldflags" -o "$dest/kubectl" k8s.io/kubernetes/cmd/kubectl
fi

if ! have etcd; then
  echo "build-binaries: building etcd v$ETCD_VERSION from go.etcd.io/etcd/server/v3" >&2
  mkdir "$work/etcd" && cd "$work/etcd"
  go mod init mtls-guard.test/etcd >/dev/null 2>&1
  go mod edit -require "go.etcd.io/etcd/server/v3@v$ETCD_VERSION"
  go build -ldflags "-s -w" -o "$dest/etcd" go.etcd.io/etcd/server/v3
fi
if ! have helm; then
  echo "build-binaries: building helm v$HELM_VERSION from helm.sh/helm/v3" >&2
  mkdir "$work/helm" && cd "$work/helm"
  go mod init mtls-guard.test/helm >/dev/null 2>&1
  go mod edit -require "helm.sh/helm/v3@v$HELM_VERSION"
  go build -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION" \
    -o "$dest/helm" helm.sh/helm/v3/cmd/helm
fi
echo "build-binaries: ready in $dest" >&2

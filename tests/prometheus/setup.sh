#!/usr/bin/env bash
# Installs Debian's prometheus package (prometheus and promtool) for tests/evidence_prometheus.rs,
# only when it is missing. The package's own service is not wanted: the tests start their own
# server on a loopback port.
set -euo pipefail
if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "prometheus/promtool missing; run as root or: apt-get install -y prometheus" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# policy-rc.d keeps the package's init script from starting a server of its own.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get install -y -qq --no-install-recommends prometheus >/dev/null
prometheus --version | head -1

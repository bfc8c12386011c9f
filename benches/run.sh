#!/usr/bin/env bash
# Reproduces BENCHMARKS.md: the offline commands (benches/offline.sh), engine latency, index
# build, RSS, HTTPS throughput against the bare server and OPA, and the live-watch figures on
# a real API server, one after the other on this machine.
# Usage: benches/run.sh [OUT_DIR]   (about 40 minutes on 2 cores with its tools built, 55 from scratch)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/bench-run}
mkdir -p "$out"
out=$(cd "$out" && pwd)
export CARGO_TERM_COLOR=never

tools=$out/tools
if ! command -v oha >/dev/null && [ ! -x "$tools/bin/oha" ]; then
  echo "== installing oha (load generator) into $tools"
  cargo install oha --locked --root "$tools" >/dev/null
fi
OHA=$(command -v oha || echo "$tools/bin/oha")

echo "== building"
cargo build --release --quiet
cargo bench --no-run --quiet 2>/dev/null
bench_bin() { ls -t target/release/deps/"$1"-* | grep -v '\.d$' | head -n1; }
GUARD=target/release/mtls-guard
# The image's static binary (scripts/build-image.sh), for the live-watch memory figures: musl's
# allocator, not glibc's, is what a cluster runs.
IMAGE_GUARD=target/x86_64-unknown-linux-musl/release/mtls-guard
targets=$(rustup target list --installed 2>/dev/null || true)
if ! grep -qx x86_64-unknown-linux-musl <<<"$targets" || ! command -v musl-gcc >/dev/null; then
  echo "(no musl target or musl-gcc: the live watch measures the glibc build only)"
  IMAGE_GUARD=
elif ! CC_x86_64_unknown_linux_musl=musl-gcc cargo build --release --quiet --locked \
  --target x86_64-unknown-linux-musl --bin mtls-guard; then
  echo "(the musl build failed: the live watch measures the glibc build only)"
  IMAGE_GUARD=
fi
BARE=$(bench_bin bare_server)

echo "== machine"
echo "cores: $(nproc), memory: $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -sr)"

for n in 1000 10000 100000; do
  "$(bench_bin gen_inventory)" "$n" "$out/inventory-$n.json" 2>/dev/null
done

benches/offline.sh "$out" || echo "!! benches/offline.sh failed; the other figures follow"

echo "== engine and admission latency (cargo bench --bench latency)"
"$(bench_bin latency)"
echo "== the same at 100k pods, each DestinationRule also disabling TLS on a port no Service uses"
MTLS_GUARD_BENCH_PODS=100000 MTLS_GUARD_BENCH_PLAINTEXT_RULE=1 "$(bench_bin latency)"

echo "== resident memory with the 100k-pod inventory loaded"
"$GUARD" certs --dns 127.0.0.1 --out "$out/certs" >/dev/null 2>&1
CERT=$out/certs/tls.crt KEY=$out/certs/tls.key
wait_ready() { for _ in $(seq 1 600); do curl -sf "http://127.0.0.1:$1/readyz" >/dev/null && return 0; sleep 0.1; done; return 1; }
start=$(date +%s.%N)
"$GUARD" serve --listen 127.0.0.1:18443 --metrics-listen 127.0.0.1:19090 --tls-cert "$CERT" --tls-key "$KEY" --inventory "$out/inventory-100000.json" 2>/dev/null &
guard=$!
wait_ready 19090
echo "ready after $(echo "$(date +%s.%N) - $start" | bc) s"
grep -E 'VmRSS|VmHWM' "/proc/$guard/status"

review=$out/inventory-100000.json.review.json
"$BARE" 127.0.0.1:18444 "$CERT" "$KEY" &
bare=$!
echo "== mtls-guard at a fixed 1,000 req/s (4 connections, 10 s), before OPA starts"
"$OHA" --no-tui -z 10s -c 4 -q 1000 -m POST -T application/json -D "$review" --insecure --output-format json \
  "https://127.0.0.1:18443/validate" > "$out/fixed-rate.json"
python3 - "$out/fixed-rate.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); s = r["summary"]; p = r["latencyPercentiles"]
print(f"rate {s['requestsPerSec']:.0f} req/s  p50={p['p50']*1000:.3f} ms  p99={p['p99']*1000:.3f} ms  p99.9={p['p99.9']*1000:.3f} ms  status={r.get('statusCodeDistribution')}")
PY
grep -E 'VmRSS|VmHWM' "/proc/$guard/status"

trap 'kill $guard $bare 2>/dev/null || true' EXIT
curl -sk -o /dev/null --retry 50 --retry-connrefused --retry-delay 0 "https://127.0.0.1:18444/"
load() { # name url body
  "$OHA" --no-tui -z 10s -c 16 -m POST -T application/json -D "$3" --insecure --output-format json "$2" > "$out/$1.json"
  python3 - "$out/$1.json" "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); s = r["summary"]; p = r["latencyPercentiles"]
codes = r.get("statusCodeDistribution", {}); errors = r.get("errorDistribution", {})
ms = lambda v: "-" if v is None else f"{v*1000:.3f} ms"
print(f"{sys.argv[2]:<28} {s['requestsPerSec'] or 0:>10.0f} req/s  p50={ms(p['p50'])}  p99={ms(p['p99'])}  status={codes} errors={errors}")
PY
}
ratio() { # guard-run bare-run: their answers per second, divided; nan when one is missing
  python3 - "$out/$1.json" "$out/$2.json" <<'PY' || echo nan
import json, sys
guard, bare = (json.load(open(f))["summary"]["requestsPerSec"] or 0 for f in sys.argv[1:3])
print(guard / bare if bare else float("nan"))
PY
}
# Four rounds, the order swapped every round: whichever server runs second in a round measured
# a few percent faster on this machine, so each one takes each slot twice.
alternate() { # review-name body
  local ratios=()
  for round in 1 2 3 4; do
    if [ $((round % 2)) = 1 ]; then
      load "bare-server-$1-$round" "https://127.0.0.1:18444/validate" "$2"
      load "mtls-guard-$1-$round" "https://127.0.0.1:18443/validate" "$2"
    else
      load "mtls-guard-$1-$round" "https://127.0.0.1:18443/validate" "$2"
      load "bare-server-$1-$round" "https://127.0.0.1:18444/validate" "$2"
    fi
    ratios+=("$(ratio "mtls-guard-$1-$round" "bare-server-$1-$round")")
  done
  python3 -c 'import sys; r = [float(x) for x in sys.argv[1:]]; print("against the bare server, round by round: " + " ".join(f"{x:.3f}" for x in r) + f"; mean {sum(r) / len(r):.3f}")' "${ratios[@]}"
}
echo "== HTTPS /validate, keep-alive, 16 connections, 10 s each, the same review (a denied workload lock-down)"
echo "   (bare server and mtls-guard alternate four times, as the machine is shared and noisy)"
alternate denied-100k "$review"
echo "== the same, allowed: the lock-down's policy PERMISSIVE (an answer as short as the bare server's)"
sed 's/"STRICT"/"PERMISSIVE"/' "$review" > "$out/allowed.review.json"
alternate allowed-100k "$out/allowed.review.json"
curl -s http://127.0.0.1:19090/metrics | grep '^mtls_guard_reviews_offloaded_total'
kill "$guard" "$bare" 2>/dev/null || true
wait "$guard" "$bare" 2>/dev/null || true
trap - EXIT
echo "== against OPA on the same rule, at 1k, 10k and 100k pods (benches/opa.sh)"
benches/opa.sh "$out" || echo "!! benches/opa.sh failed; the other figures follow"

echo "== live watch: 20k pods on a real kube-apiserver (cargo bench --bench watch)"
"$(bench_bin watch)"
echo "== live watch: 100k pods, then 10k of them deleted by one kubectl call (about 12 minutes)"
if [ -n "$IMAGE_GUARD" ]; then echo "   (the glibc build, then the image's static build, which takes the burst)"; fi
MTLS_GUARD_BENCH_PODS=100000 MTLS_GUARD_BENCH_BIN="$PWD/$GUARD${IMAGE_GUARD:+,$PWD/$IMAGE_GUARD}" "$(bench_bin watch)"

echo "== through the API server: dry-run policy writes with and without the guard (cargo bench --bench apiserver)"
"$(bench_bin apiserver)"

echo "== adversarial reviews, and the inline attempt within its budget (cargo bench --bench adversarial)"
"$(bench_bin adversarial)"

echo "== criterion means (cargo bench --bench engine)"
cargo bench --quiet --bench engine -- --warm-up-time 1 --measurement-time 3 2>/dev/null \
  | grep -E '^(index_build|evaluate)/|time:'

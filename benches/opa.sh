#!/usr/bin/env bash
# mtls-guard against OPA evaluating the same rule, at 1k, 10k and 100k pods, each server started
# and measured alone. OPA runs in two setups: benches/opa/policy.rego over the inventory List, and
# the best one found, the inventory as Gatekeeper's sync lays it out with
# benches/opa/policy-gatekeeper.rego and OPA's store optimised for reads
# (--optimize-store-for-read-speed). Both deny the same clients.
# Usage: benches/opa.sh [OUT_DIR]   (about 8 minutes; run.sh calls it with its own OUT_DIR)
# OPA holds up to about 10 GB with the 100k-pod List.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-target/bench-run}
mkdir -p "$out"
out=$(cd "$out" && pwd)
OPA_VERSION=v1.22.3

tools=$out/tools
if ! command -v oha >/dev/null && [ ! -x "$tools/bin/oha" ]; then
  cargo install oha --locked --root "$tools" >/dev/null
fi
OHA=$(command -v oha || echo "$tools/bin/oha")
if [ ! -x "$tools/bin/opa-$OPA_VERSION" ]; then
  echo "== installing opa $OPA_VERSION from its Go module"
  GOFLAGS= GOBIN="$tools/gobin" go install "github.com/open-policy-agent/opa@$OPA_VERSION"
  mkdir -p "$tools/bin"
  mv "$tools/gobin/opa" "$tools/bin/opa-$OPA_VERSION"
fi
OPA=$tools/bin/opa-$OPA_VERSION

cargo build --release --quiet
cargo bench --no-run --quiet --bench gen_inventory 2>/dev/null
GUARD=target/release/mtls-guard
GEN=$(ls -t target/release/deps/gen_inventory-* | grep -v '\.d$' | head -n1)
[ -f "$out/certs/tls.crt" ] || "$GUARD" certs --dns 127.0.0.1 --out "$out/certs" >/dev/null 2>&1
CERT=$out/certs/tls.crt KEY=$out/certs/tls.key

# One review for every size: the 100k mesh's workload lock-down, whose namespace and workload
# exist in the 1k and 10k meshes too.
for n in 1000 10000 100000; do
  [ -f "$out/inventory-$n.json" ] || "$GEN" "$n" "$out/inventory-$n.json" 2>/dev/null
  [ "$out/inventory-$n.gatekeeper.json" -nt "$out/inventory-$n.json" ] ||
    python3 benches/opa/gatekeeper_layout.py "$out/inventory-$n.json" "$out/inventory-$n.gatekeeper.json"
done
review=$out/inventory-100000.json.review.json
python3 -c "import json,sys; json.dump({'input': json.load(open(sys.argv[1]))}, open(sys.argv[2],'w'))" "$review" "$out/opa-input.json"

server=""
trap '[ -n "$server" ] && kill "$server" 2>/dev/null || true' EXIT
# measure NAME PODS URL BODY CONNECTIONS SECONDS: answers (status 200) per second, latency, and
# the server's CPU per answer. oha's own req/s also counts requests cut off at the deadline.
measure() {
  local cpu0 cpu1
  kill -0 "$server" 2>/dev/null || { echo "!! $1 at $2 pods is not running"; return 1; }
  cpu0=$(awk '{print $14 + $15}' "/proc/$server/stat")
  "$OHA" --no-tui -z "$6s" -c "$5" -m POST -T application/json -D "$4" --insecure --output-format json "$3" > "$out/opa-bench-$1-$2.json"
  cpu1=$(awk '{print $14 + $15}' "/proc/$server/stat")
  python3 - "$out/opa-bench-$1-$2.json" "$1" "$2" "$5" "$6" "$((cpu1 - cpu0))" "$(getconf CLK_TCK)" \
    "$(awk '/VmHWM/ {print $2}' "/proc/$server/status")" <<'PY'
import json, sys
r = json.load(open(sys.argv[1])); p = r["latencyPercentiles"]
name, pods, conns, secs, ticks, hz, hwm = sys.argv[2:9]
answers = r.get("statusCodeDistribution", {}).get("200", 0)
ms = lambda v: "-" if v is None or answers == 0 else f"{v*1000:.3f} ms"
cpu = f"{int(ticks) / int(hz) * 1000 / answers:.3f} ms" if answers else "-"
print(f"{name:<16} {pods:>7} pods  -c {conns:<2} {secs}s  {answers / int(secs):>10.1f} answers/s  "
      f"p50={ms(p['p50'])}  p99={ms(p['p99'])}  CPU per answer {cpu}  peak RSS {int(hwm) // 1024} MB")
PY
}
ready() {
  for _ in $(seq 1 3000); do
    curl -sfk -o /dev/null "$1" && return 0
    kill -0 "$server" 2>/dev/null || break
    sleep 0.1
  done
  echo "!! no answer from $1"
  return 1
}
stop() { kill "$server" && wait "$server" 2>/dev/null || true; server=""; }

echo "== the same review, each server alone (answers/s counts only completed answers)"
for n in 1000 10000 100000; do
  # OPA at 100k pods takes most of a second per answer: two connections for 30 s, one per core,
  # so that what it answers is counted; every server is measured the same way at that size.
  if [ "$n" = 100000 ]; then c=2 z=30; else c=16 z=10; fi
  "$GUARD" serve --listen 127.0.0.1:18443 --metrics-listen 127.0.0.1:19090 --tls-cert "$CERT" --tls-key "$KEY" \
    --inventory "$out/inventory-$n.json" 2>/dev/null &
  server=$!
  ready http://127.0.0.1:19090/readyz
  measure mtls-guard "$n" https://127.0.0.1:18443/validate "$review" "$c" "$z"
  stop
  for setup in list gatekeeper; do
    if [ "$setup" = list ]; then
      args=("inventory:$out/inventory-$n.json" benches/opa/policy.rego)
    else
      args=(--optimize-store-for-read-speed "inventory:$out/inventory-$n.gatekeeper.json" benches/opa/policy-gatekeeper.rego)
    fi
    start=$(date +%s.%N)
    "$OPA" run --server --log-level error --shutdown-grace-period 1 --addr 127.0.0.1:18445 \
      --tls-cert-file "$CERT" --tls-private-key-file "$KEY" "${args[@]}" 2>>"$out/opa.log" &
    server=$!
    ready https://127.0.0.1:18445/health
    echo "opa-$setup at $n pods: ready after $(echo "$(date +%s.%N) - $start" | bc) s"
    curl -sk --max-time 120 -H 'Content-Type: application/json' --data @"$out/opa-input.json" \
      https://127.0.0.1:18445/v1/data/mtls/deny |
      python3 -c "import json,sys; [print(c) for c in sorted(json.load(sys.stdin)['result'])]" > "$out/opa-deny-$setup-$n.txt"
    measure "opa-$setup" "$n" https://127.0.0.1:18445/v1/data/mtls/deny "$out/opa-input.json" "$c" "$z"
    stop
  done
  if cmp -s "$out/opa-deny-list-$n.txt" "$out/opa-deny-gatekeeper-$n.txt"; then
    echo "both OPA setups deny the same $(wc -l < "$out/opa-deny-list-$n.txt") clients"
  else
    echo "!! the OPA setups' deny sets differ at $n pods"
  fi
done

#!/usr/bin/env bash
# The offline commands on a 100k-pod List beside Python's json.load of the same file, the same
# content as YAML, and the reviews' instruction counts under callgrind. Called by
# benches/run.sh, which builds first; alone: `cargo build --release && cargo bench --no-run`,
# then benches/offline.sh OUT_DIR (about 8 minutes; the inventory and its YAML copy are made
# once and kept in OUT_DIR). Needs python3 with PyYAML, and valgrind (installed if missing).
set -euo pipefail
out=${1:?usage: benches/offline.sh OUT_DIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$(dirname "$0")/.."
inv=$out/inventory-100000.json
bench_bin() { ls -t target/release/deps/"$1"-* | grep -v '\.d$' | head -n1; }
if [ ! -f "$inv" ]; then
  "$(bench_bin gen_inventory)" 100000 "$inv.tmp" 2>/dev/null
  mv "$inv.tmp.review.json" "$inv.review.json"
  mv "$inv.tmp" "$inv"
fi
GUARD=target/release/mtls-guard
python3 -c "import json,sys; json.dump(json.load(open(sys.argv[1]))['request']['object'], open(sys.argv[2],'w'))" \
  "$inv.review.json" "$out/lockdown.json"
run() { # label command...
  local label=$1; shift
  /usr/bin/time -f "%e s %M KB, exit %x" -o "$out/time.txt" "$@" > "$out/stdout.txt" 2>/dev/null || true
  printf '%-22s %s  %s bytes out\n' "$label" "$(tail -n1 "$out/time.txt")" "$(stat -c %s "$out/stdout.txt")"
}
echo "== offline, the 100k-pod List ($(stat -L -c %s "$inv") bytes of JSON), alternating with json.load"
for round in 1 2; do
  run review "$GUARD" review --inventory "$inv" "$inv.review.json"
  run check "$GUARD" check --inventory "$inv" -f "$out/lockdown.json"
  run "report -o json" "$GUARD" report --inventory "$inv" -o json
  run "report -o html" "$GUARD" report --inventory "$inv" -o html
  run json.load python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$inv"
done

yaml=$out/inventory-100000.yaml
if [ ! -f "$yaml" ]; then
  python3 -c "
import json, sys, yaml
yaml.dump(json.load(open(sys.argv[1])), open(sys.argv[2], 'w'), Dumper=yaml.CSafeDumper, sort_keys=False)" "$inv" "$yaml.tmp"
  mv "$yaml.tmp" "$yaml"
fi
echo "== the same content as YAML ($(stat -L -c %s "$yaml") bytes)"
run "review (YAML)" "$GUARD" review --inventory "$yaml" "$inv.review.json"
run "json.load (JSON)" python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$inv"

echo "== instructions of one review at 100k pods (callgrind, counting only the review)"
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind >/dev/null; }
for which in mesh workload admission; do
  valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*counted_review*' \
    --callgrind-out-file="$out/callgrind.$which" "$(bench_bin instructions)" "$inv" "$which" 2>/dev/null
  echo "  $(grep '^summary:' "$out/callgrind.$which" | cut -d' ' -f2) instructions"
done

#!/usr/bin/env bash
# What serve's heap holds while its webhook receiver is down: `sluice serve` (one SMPP channel
# to a `sluice sim`, receipts to webhook_sink.py switched to answer 503 throughout) takes RATE
# msg/s over HTTP for SECS under heaptrack, sampling VmRSS and smaps (anonymous vs file-backed)
# every minute, and is SIGKILLed at the end, so heaptrack's "leaked" is the live heap while the
# outage still lasts. Build with the system allocator first, or heaptrack sees nothing of
# mimalloc's heap: `cargo build --release -p sluice --features system-alloc`. Then e.g.
#   heaptrack_print -f OUTDIR/ht.zst -F OUTDIR/leaked.folded --flamegraph-cost-type leaked
# and sum the folded stacks by crate (RELIABILITY.md, "Soak"). WRAP=" " runs without heaptrack.
# Not part of any test run.
#
# Usage: loadtest/peers/outage_heap.sh SLUICE_BIN SECS RATE OUTDIR
set -euo pipefail
SLUICE=$1; SECS=$2; RATE=$3; W=$4
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$W
mkdir -p "$W"
. "$ROOT/loadtest/peers/lib.sh"
SIM_PORT=$(pick_port); HTTP_PORT=$(pick_port); METRICS_PORT=$(pick_port); HOOK_PORT=$(pick_port)
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done' EXIT
"$SLUICE" sim --smpp "127.0.0.1:$SIM_PORT" --cmpp 127.0.0.1:0 >"$W/sim.log" 2>&1 &
PIDS+=($!); wait_port "$SIM_PORT" 20 $! "$W/sim.log"
python3 "$ROOT/loadtest/peers/webhook_sink.py" "$HOOK_PORT" secret-secret-secret-1 >"$W/sink.log" 2>&1 &
PIDS+=($!); wait_port "$HOOK_PORT" 20 $! "$W/sink.log"
curl -s "http://127.0.0.1:$HOOK_PORT/down" >/dev/null
cat >"$W/sluice.toml" <<TOML
timezone = "Asia/Shanghai"
[listeners]
http = "127.0.0.1:$HTTP_PORT"
metrics = "127.0.0.1:$METRICS_PORT"
[storage]
path = "$W/data"
backend = "redb"
[simulator]
enabled = false
[[accounts]]
name = "a"
api_keys = ["$(printf %s key | sha256sum | cut -d' ' -f1)"]
rate = 1000000
burst = 1000000
default_sender = "10690000"
webhook_url = "http://127.0.0.1:$HOOK_PORT/receipts"
webhook_secret = "secret-secret-secret-1"
webhook_batch = 100
webhook_linger_ms = 50
[[channels]]
name = "sim"
kind = "smpp"
host = "127.0.0.1"
port = $SIM_PORT
system_id = "sluice"
password = "sim"
bind_mode = "transceiver"
binds = 2
window = 64
rate = 100000
burst = 10000
[[routes]]
channel = "sim"
TOML
${WRAP:-heaptrack -o $W/ht} "$SLUICE" serve --config "$W/sluice.toml" --no-campaign >"$W/serve.log" 2>&1 &
HT=$!; PIDS+=($HT)
wait_port "$HTTP_PORT" 120 "$HT" "$W/serve.log"
SP=$(pgrep -f -- "serve --config $W/sluice.toml" | while read p; do [ "$(readlink /proc/$p/exe)" = "$(readlink -f "$SLUICE")" ] && echo $p; done | head -1)
echo "serve pid $SP"
"$SLUICE" loadtest --target http --url "http://127.0.0.1:$HTTP_PORT/v1/messages" --api-key key \
  --batch "$RATE" -c 1 --rate "$RATE" -d "$SECS" --quiet --json "$W/load.json" >"$W/load.txt" 2>&1 &
PIDS+=($!)
START=$SECONDS
while [ $((SECONDS - START)) -lt "$SECS" ]; do
  echo "t=$((SECONDS - START)) rss_kb=$(awk '/^VmRSS:/ {print $2}' /proc/$SP/status) anon_kb=$(awk '/^Anonymous:/ {print $2}' /proc/$SP/smaps_rollup) file_kb=$(awk '/^Rss:/ {r=$2} /^Anonymous:/ {a=$2} END {print r-a}' /proc/$SP/smaps_rollup) store=$(du -sb $W/data | cut -f1) sink=$(curl -s http://127.0.0.1:$HOOK_PORT/count | tr ' ' ,) backlog=$([ "${NO_SCRAPE:-0}" = 1 ] && echo - || metric_sum sluice_webhook_backlog)" | tee -a "$W/samples.txt"
  sleep 60
done
kill -9 "$SP"
wait "$HT" 2>/dev/null || true
echo done

#!/usr/bin/env bash
# A city campaign through `sluice serve`, end to end, durable, with receipts to a webhook:
# the issue-19 sustained case (accept → fsync'd store → SMPP → simulator → receipt →
# outbox → batched webhook).
#
#   simulator: `sluice-loadtest sim` in its own process (SMPP, receipts on as by default),
#     rewriting its tally file every 20 ms (--tally-every).
#   gateway: a release `sluice serve --no-campaign`, embedded simulator off, one SMPP channel
#     of 2 transceiver binds × window WINDOW to the simulator, data in the work dir, the
#     account's receipts POSTed to the receiver in batches (webhook_batch HOOK_BATCH,
#     webhook_linger_ms HOOK_LINGER_MS).
#   receiver: loadtest/peers/webhook_sink.py (python3 standard library) on 127.0.0.1: it
#     verifies every signature and counts receipts per id.
#   load: `sluice-loadtest loadtest --target http`, N messages in HTTP batches of BATCH,
#     CONNS requests in flight.
#
# From the start of the load generator it measures:
#   accepted  = until the load generator had all N messages accepted (202);
#   submitted = until the simulator's tally holds all N messages;
#   receipted = until the webhook receiver holds N distinct receipts (the rate "to the last
#               receipt");
# and prints the rates, the gateway's CPU (user + system from /proc/PID/stat) per message,
# its peak RSS (VmHWM), the receiver's POST / duplicate counts and the simulator's unique /
# duplicate counts. Bounded (every wait has a deadline), cleans up its processes on exit.
# Not part of the default test run.
#
# Usage: loadtest/peers/campaign.sh [N=200000] [BATCH=1000] [CONNS=4]
#   The 2 M sustained case of issue 19: loadtest/peers/campaign.sh 2000000 (a quiet machine).
# Environment: WINDOW (window per bind, 256), LEASE_BATCH (channel lease_batch, 256),
# HOOK_BATCH (webhook_batch, 1000), HOOK_LINGER_MS (50), PHASE_TIMEOUT (1200 s),
# RATE (messages per second offered by the load generator; 0, the default, = as fast as it
# can: `RATE=3000 loadtest/peers/campaign.sh 60000 100` is issue 19's low-rate case, where the
# CPU per message shows what small commits and wake-ups cost),
# REDO_LOG (storage.redo_log, true; false: every commit durable in the engine itself),
# STORAGE (more [storage] lines for the generated config, e.g.
# STORAGE='commit_max_spacing_ms = 15' to try a store setting without a rebuild),
# WORKERS (the gateway's [runtime] worker_threads; default: the gateway's own, cores - 1),
# SKIP_BUILD=1 (use the binaries already built; PROFILE=debug for a quick check of the
# script itself — its figures mean nothing), KEEP_WORK=1 keeps the data dir;
# SIM_PORT, HTTP_PORT, METRICS_PORT, HOOK_PORT (default: free ports picked at start).
set -euo pipefail
N=${1:-200000}
BATCH=${2:-1000}
CONNS=${3:-4}
WINDOW=${WINDOW:-256}
LEASE_BATCH=${LEASE_BATCH:-256}
HOOK_BATCH=${HOOK_BATCH:-1000}
HOOK_LINGER_MS=${HOOK_LINGER_MS:-50}
RATE=${RATE:-0}
REDO_LOG=${REDO_LOG:-true}
STORAGE=${STORAGE:-}
WORKERS=${WORKERS:-}
case "$WORKERS" in '' | [1-9] | [1-9][0-9]) ;; *) echo "WORKERS must be a whole number from 1 to 99" >&2; exit 1 ;; esac
case "$REDO_LOG" in true | false) ;; *) echo "REDO_LOG must be true or false" >&2; exit 1 ;; esac
case "$RATE" in '' | *[!0-9]*) echo "RATE must be a whole number of messages per second" >&2; exit 1 ;; esac
if [ "$RATE" = 0 ]; then OFFERED="full speed"; else OFFERED="$RATE msg/s"; fi
PHASE_TIMEOUT=${PHASE_TIMEOUT:-1200}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/sluice-campaign.XXXXXX)
. "$ROOT/loadtest/peers/lib.sh"
SIM_PORT=${SIM_PORT:-$(pick_port)}; PICKED="$PICKED$SIM_PORT "
HTTP_PORT=${HTTP_PORT:-$(pick_port)}; PICKED="$PICKED$HTTP_PORT "
METRICS_PORT=${METRICS_PORT:-$(pick_port)}; PICKED="$PICKED$METRICS_PORT "
HOOK_PORT=${HOOK_PORT:-$(pick_port)}
for p in "$SIM_PORT" "$HTTP_PORT" "$METRICS_PORT" "$HOOK_PORT"; do
  case "$p" in '' | *[!0-9]*) echo "bad port '$p'" >&2; exit 1 ;; esac
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "port $p is already in use: choose other ports (SIM_PORT, HTTP_PORT, METRICS_PORT, HOOK_PORT)" >&2
    exit 1
  fi
done
command -v python3 >/dev/null || { echo "python3 is needed for the webhook receiver" >&2; exit 1; }
API_KEY="campaign-bench-key"
HOOK_SECRET=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
PIDS=()

cleanup() {
  stop_pids
  [ "${KEEP_WORK:-0}" = 1 ] || rm -rf "$WORK/data"
}
trap cleanup EXIT

build_release

"$BIN" sim --smpp "127.0.0.1:$SIM_PORT" --cmpp 127.0.0.1:0 --tally-out "$WORK/tally.json" \
  --tally-every 0.02 >"$WORK/sim.log" 2>&1 &
SIM_PID=$!
PIDS+=($SIM_PID)
wait_port "$SIM_PORT" 20 "$SIM_PID" "$WORK/sim.log"

python3 "$ROOT/loadtest/peers/webhook_sink.py" "$HOOK_PORT" "$HOOK_SECRET" >"$WORK/sink.log" 2>&1 &
SINK_PID=$!
PIDS+=($SINK_PID)
wait_port "$HOOK_PORT" 20 "$SINK_PID" "$WORK/sink.log"
# unique duplicates posts refused last_unix_s
sink() { curl -s "http://127.0.0.1:$HOOK_PORT/count" || echo "0 0 0 0 0"; }
hook_unique() { local v; v=$(sink | cut -d' ' -f1); echo "${v:-0}"; }

KEY_SHA=$(printf %s "$API_KEY" | sha256sum | cut -d' ' -f1)
cat >"$WORK/sluice.toml" <<TOML
timezone = "Asia/Shanghai"

[listeners]
http = "127.0.0.1:$HTTP_PORT"
metrics = "127.0.0.1:$METRICS_PORT"

[storage]
path = "$WORK/data"
backend = "redb"
redo_log = $REDO_LOG
$STORAGE

[simulator]
enabled = false
${WORKERS:+
[runtime]
worker_threads = $WORKERS
}
[[accounts]]
name = "city"
api_keys = ["$KEY_SHA"]
rate = 1000000
burst = 1000000
default_sender = "10690000"
webhook_url = "http://127.0.0.1:$HOOK_PORT/receipts"
webhook_secret = "$HOOK_SECRET"
webhook_batch = $HOOK_BATCH
webhook_linger_ms = $HOOK_LINGER_MS

[[channels]]
name = "sim"
kind = "smpp"
host = "127.0.0.1"
port = $SIM_PORT
system_id = "sluice"
password = "sim"
bind_mode = "transceiver"
binds = 2
window = $WINDOW
lease_batch = $LEASE_BATCH
rate = 1000000
burst = 10000
interface_version = 0x34
concatenation = "udh8"

[[routes]]
channel = "sim"
TOML

start_sluice
end=$((SECONDS + 30))
until [ "$(metric_sum sluice_channel_binds_up_total)" -ge 2 ]; do
  [ $SECONDS -lt $end ] || { echo "sluice channel binds not up" >&2; tail "$WORK/sluice.log" >&2; exit 1; }
  sleep 0.2
done
sim_unique() { tally unique_messages; }

echo "== $N messages through sluice serve (HTTP batches of $BATCH, $CONNS in flight, offered at $OFFERED; 2 binds × window $WINDOW; webhook batches of $HOOK_BATCH, linger $HOOK_LINGER_MS ms)"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
C0=$(cpu_secs "$SLUICE_PID")
START=$(now)
"$BIN" loadtest --target http --url "http://127.0.0.1:$HTTP_PORT/v1/messages" \
  --api-key "$API_KEY" --batch "$BATCH" -c "$CONNS" -n "$N" --rate "$RATE" --run campaign --quiet \
  --json "$WORK/load.json" >"$WORK/load.txt"
ACCEPT=$(since "$START")
SUB=$(wait_for "$START" "$N" sim_unique)
HOOK=$(wait_for "$START" "$N" hook_unique)
CPU=$(awk -v a="$(cpu_secs "$SLUICE_PID")" -v b="$C0" 'BEGIN { printf "%.2f", a - b }')
RSS=$(peak_rss_mb "$SLUICE_PID")
sleep 0.5 # let stragglers (duplicates) show up before reading the counts
read -r H_UNIQUE H_DUPS H_POSTS H_REFUSED _ <<<"$(sink)"
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
curl -s "http://127.0.0.1:$METRICS_PORT/metrics" >"$WORK/metrics.txt"
kill "$SIM_PID" 2>/dev/null || true
for _ in $(seq 100); do kill -0 "$SIM_PID" 2>/dev/null || break; sleep 0.1; done

num() { case "$1" in timeout) echo 0 ;; *) echo "$1" ;; esac; }
us_per_msg() { awk -v n="$N" -v c="$1" 'BEGIN { printf "%.1f", c * 1e6 / n }'; }
echo
echo "N = $N; load average at start $LOAD_START, at end $LOAD_END (a shared machine shows it here)"
printf '%-34s %10s s %10s msg/s\n' "accepted (HTTP 202 for all N)" "$ACCEPT" "$(rate "$N" "$(num "$ACCEPT")")"
printf '%-34s %10s s %10s msg/s\n' "submitted (simulator has all N)" "$SUB" "$(rate "$N" "$(num "$SUB")")"
printf '%-34s %10s s %10s msg/s\n' "to the last receipt (at webhook)" "$HOOK" "$(rate "$N" "$(num "$HOOK")")"
echo "gateway CPU (user + system): $CPU s = $(us_per_msg "$CPU") µs per message; peak RSS (VmHWM) $RSS MB"
echo "webhook receiver: $H_UNIQUE distinct receipts in $H_POSTS POSTs, $H_DUPS duplicates, $H_REFUSED refused signatures"
echo "simulator tally: unique $(tally unique_messages), duplicates $(tally duplicates), dlrs sent $(tally dlrs_sent)"
echo "logs, config and JSON in $WORK"
ok=1
[ "$SUB" != timeout ] && [ "$HOOK" != timeout ] || ok=0
[ "$H_UNIQUE" = "$N" ] && [ "$H_REFUSED" = 0 ] || ok=0
[ $ok = 1 ] || { echo "CHECK FAILED: messages or receipts missing, or a phase timed out" >&2; exit 1; }

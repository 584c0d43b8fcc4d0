#!/usr/bin/env bash
# Kannel vs `sluice serve` on the same simulator, same machine, same run.
#
# One simulator (`sluice-loadtest sim`, SMPP, receipts on as by default) serves both phases and
# rewrites its tally file every 20 ms (--tally-every), which is how this script knows when the
# center has received everything. The phases run one after the other (ORDER), each gateway
# stopped before the other starts, so they never share the CPU.
#
#   Kannel phase, Kannel 1.4.x: bearerbox + smsbox, KANNEL_BINDS SMPP transceiver binds to the
#     simulator. The load generator pushes N messages through smsbox's HTTP sendsms (one GET
#     per message, HTTP_WORKERS in parallel), each asking for a final receipt (dlr-mask=3,
#     dlr-url to a closed local port: the receipt is correlated by bearerbox and handed to
#     smsbox, whose fetch of the URL then fails; nothing is retried).
#   sluice phase: a release `sluice serve --no-campaign` with its embedded simulator off and
#     one SMPP channel (2 transceiver binds, window 256) to the SAME simulator, data in the
#     work dir, account rate raised. The load generator pushes N messages through the HTTP
#     batch API (batches of BATCH, SLUICE_CONNS requests in flight).
#
# For each phase, from the start of the load generator:
#   submitted  = until the simulator's tally holds all N messages of the phase;
#   receipted  = until the gateway has correlated N final receipts (Kannel: bearerbox status
#                `DLR: received`; sluice: the sum of `sluice_receipts_total` on /metrics).
# Prints both rates per phase, the sluice / Kannel ratios, and the simulator's unique and
# duplicate counts per phase. Bounded (every wait has a deadline), cleans up its processes on
# exit. Not part of the default test run.
#
# Usage: loadtest/peers/kannel.sh [N=50000] [HTTP_WORKERS=32] [BATCH=1000] [SLUICE_CONNS=4]
# Environment: KANNEL_BINDS (2), KANNEL_PENDING (max-pending-submits per bind, 256),
# SLUICE_WINDOW (window per bind, 256), SLUICE_LEASE_BATCH (channel lease_batch, 256), PHASE_TIMEOUT (600 s), ORDER ("kannel sluice" or
# "sluice kannel": which phase runs first), KEEP_WORK=1 keeps the sluice data dir,
# SKIP_BUILD=1 (use the binaries already built under CARGO_TARGET_DIR);
# SIM_PORT, ADMIN_PORT, BOX_PORT, SENDSMS_PORT, HTTP_PORT, METRICS_PORT (default: free ports
# picked at start; the script refuses ports something already listens on).
set -euo pipefail
N=${1:-50000}
WORKERS=${2:-32}
BATCH=${3:-1000}
SLUICE_CONNS=${4:-4}
KANNEL_BINDS=${KANNEL_BINDS:-2}
KANNEL_PENDING=${KANNEL_PENDING:-256}
SLUICE_WINDOW=${SLUICE_WINDOW:-256}
SLUICE_LEASE_BATCH=${SLUICE_LEASE_BATCH:-256}
PHASE_TIMEOUT=${PHASE_TIMEOUT:-600}
ORDER=${ORDER:-kannel sluice}
case "$ORDER" in "kannel sluice" | "sluice kannel") ;; *) echo "ORDER must be 'kannel sluice' or 'sluice kannel'" >&2; exit 1 ;; esac
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/sluice-kannel.XXXXXX)
# Shared with campaign.sh: pick_port, wait_port, tally, wait_for, cpu_secs, now/since/rate.
. "$ROOT/loadtest/peers/lib.sh"
SIM_PORT=${SIM_PORT:-$(pick_port)}; PICKED="$PICKED$SIM_PORT "
ADMIN_PORT=${ADMIN_PORT:-$(pick_port)}; PICKED="$PICKED$ADMIN_PORT "
BOX_PORT=${BOX_PORT:-$(pick_port)}; PICKED="$PICKED$BOX_PORT "
SENDSMS_PORT=${SENDSMS_PORT:-$(pick_port)}; PICKED="$PICKED$SENDSMS_PORT "
HTTP_PORT=${HTTP_PORT:-$(pick_port)}; PICKED="$PICKED$HTTP_PORT "
METRICS_PORT=${METRICS_PORT:-$(pick_port)}
for p in "$SIM_PORT" "$ADMIN_PORT" "$BOX_PORT" "$SENDSMS_PORT" "$HTTP_PORT" "$METRICS_PORT"; do
  case "$p" in '' | *[!0-9]*) echo "bad port '$p'" >&2; exit 1 ;; esac
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "port $p is already in use: choose other ports (SIM_PORT, ADMIN_PORT, BOX_PORT, SENDSMS_PORT, HTTP_PORT, METRICS_PORT)" >&2
    exit 1
  fi
done
# Nothing listens here: Kannel's receipt fetches fail fast (sluice, too, keeps receipts in
# its outbox without pushing them anywhere in this run).
DLR_SINK_PORT=${DLR_SINK_PORT:-9}
API_KEY="kannel-bench-key"
PIDS=()

cleanup() {
  stop_pids
  [ "${KEEP_WORK:-0}" = 1 ] || rm -rf "$WORK/data"
}
trap cleanup EXIT

if ! [ -x /usr/sbin/bearerbox ]; then
  echo "installing kannel" >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kannel >/dev/null
fi

build_release


"$BIN" sim --smpp "127.0.0.1:$SIM_PORT" --cmpp 127.0.0.1:0 --tally-out "$WORK/tally.json" \
  --tally-every 0.02 >"$WORK/sim.log" 2>&1 &
SIM_PID=$!
PIDS+=($SIM_PID)
wait_port "$SIM_PORT" 20 "$SIM_PID" "$WORK/sim.log"

# Stops every process but the simulator, so the next phase never shares the CPU with it.
stop_all_but_sim() {
  for p in "${PIDS[@]:1}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]:1}"; do
    for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  PIDS=("$SIM_PID")
}
sim_unique() { tally unique_messages; }


# ---------------------------------------------------------------- phase: Kannel
# Logging as a production box would: warnings and up, to the log files and (-v 2) to stderr.
# Kannel's stderr default is DEBUG, several KB per message, which alone halves its rate.
phase_kannel() {
{
  cat <<CONF
group = core
admin-port = $ADMIN_PORT
admin-password = adm
smsbox-port = $BOX_PORT
box-allow-ip = 127.0.0.1
log-file = "$WORK/bearerbox.log"
log-level = 2
access-log = "$WORK/access.log"
CONF
  for i in $(seq "$KANNEL_BINDS"); do
    cat <<CONF

group = smsc
smsc = smpp
smsc-id = sim
smsc-admin-id = sim$i
host = 127.0.0.1
port = $SIM_PORT
transceiver-mode = true
smsc-username = kannel
smsc-password = secret
system-type = ""
interface-version = 34
max-pending-submits = $KANNEL_PENDING
source-addr-ton = 1
source-addr-npi = 1
dest-addr-ton = 1
dest-addr-npi = 1
CONF
  done
  cat <<CONF

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = $BOX_PORT
sendsms-port = $SENDSMS_PORT
sendsms-interface = 127.0.0.1
global-sender = 10690001
log-file = "$WORK/smsbox.log"
log-level = 2
access-log = "$WORK/smsbox-access.log"

group = sendsms-user
username = tester
password = foobar
max-messages = 10
concatenation = true
CONF
} >"$WORK/kannel.conf"

/usr/sbin/bearerbox -v 2 "$WORK/kannel.conf" >"$WORK/bearerbox.out" 2>&1 &
BB_PID=$!
PIDS+=($!)
wait_port "$BOX_PORT" 30 $! "$WORK/bearerbox.out"
/usr/sbin/smsbox -v 2 "$WORK/kannel.conf" >"$WORK/smsbox.out" 2>&1 &
SB_PID=$!
PIDS+=($!)
wait_port "$SENDSMS_PORT" 30 $! "$WORK/smsbox.out"

kstatus() { curl -s "http://127.0.0.1:$ADMIN_PORT/status.txt?password=adm"; }
end=$((SECONDS + 30))
until [ "$(kstatus | grep -c '(online')" -ge "$KANNEL_BINDS" ]; do
  [ $SECONDS -lt $end ] || { echo "kannel smsc binds not online" >&2; kstatus >&2; tail -5 "$WORK/bearerbox.log" >&2; exit 1; }
  sleep 0.5
done
# Receipts bearerbox matched to a stored submit and passed on ("DLR: received R, sent S").
kannel_dlrs() {
  local v
  v=$(kstatus | sed -n 's/^DLR: received \([0-9]*\).*/\1/p' | head -1)
  echo "${v:-0}"
}

echo "== Kannel: $N messages through sendsms ($WORKERS HTTP workers, $KANNEL_BINDS binds, max-pending-submits $KANNEL_PENDING, dlr-mask 3)"
U0=$(tally unique_messages); D0=$(tally duplicates); C0=$(cpu_secs "$BB_PID" "$SB_PID")
START=$(now)
"$BIN" loadtest --target kannel --url "http://127.0.0.1:$SENDSMS_PORT/cgi-bin/sendsms" \
  --system-id tester --password foobar -c "$WORKERS" -n "$N" --run kannel --quiet \
  --kannel-dlr-url "http://127.0.0.1:$DLR_SINK_PORT/dlr?id=%i&s=%d" \
  --json "$WORK/kannel.json" >"$WORK/kannel-load.txt"
K_ACCEPT=$(since "$START")
K_SUB=$(wait_for "$START" $((U0 + N)) sim_unique)
K_DLR=$(wait_for "$START" "$N" kannel_dlrs)
sleep 0.5 # let stragglers (duplicates) show up before reading the tally
K_UNIQUE=$(( $(tally unique_messages) - U0 )); K_DUPS=$(( $(tally duplicates) - D0 ))
K_DLR_COUNT=$(kannel_dlrs)
K_CPU=$(awk -v a="$(cpu_secs "$BB_PID" "$SB_PID")" -v b="$C0" 'BEGIN { printf "%.2f", a - b }')
kstatus >"$WORK/kannel-status.txt"
stop_all_but_sim
}

# ---------------------------------------------------------------- phase: sluice serve
phase_sluice() {
KEY_SHA=$(printf %s "$API_KEY" | sha256sum | cut -d' ' -f1)
cat >"$WORK/sluice.toml" <<TOML
timezone = "Asia/Shanghai"

[listeners]
http = "127.0.0.1:$HTTP_PORT"
metrics = "127.0.0.1:$METRICS_PORT"

[storage]
path = "$WORK/data"
backend = "redb"

[simulator]
enabled = false

[[accounts]]
name = "bench"
api_keys = ["$KEY_SHA"]
rate = 1000000
burst = 1000000
default_sender = "10690000"

[[channels]]
name = "sim"
kind = "smpp"
host = "127.0.0.1"
port = $SIM_PORT
system_id = "sluice"
password = "sim"
bind_mode = "transceiver"
binds = 2
window = $SLUICE_WINDOW
lease_batch = $SLUICE_LEASE_BATCH
rate = 1000000
burst = 10000
interface_version = 0x34
concatenation = "udh8"

[[routes]]
channel = "sim"
TOML

start_sluice
sluice_binds() { metric_sum sluice_channel_binds_up_total; }
sluice_receipts() { metric_sum sluice_receipts_total; }
end=$((SECONDS + 30))
until [ "$(sluice_binds)" -ge 2 ]; do
  [ $SECONDS -lt $end ] || { echo "sluice channel binds not up" >&2; tail "$WORK/sluice.log" >&2; exit 1; }
  sleep 0.2
done

echo "== sluice: $N messages through sluice serve (HTTP batches of $BATCH, $SLUICE_CONNS in flight, 2 binds, window $SLUICE_WINDOW, lease batch $SLUICE_LEASE_BATCH)"
U0=$(tally unique_messages); D0=$(tally duplicates); R0=$(sluice_receipts)
C0=$(cpu_secs "$SLUICE_PID")
START=$(now)
"$BIN" loadtest --target http --url "http://127.0.0.1:$HTTP_PORT/v1/messages" \
  --api-key "$API_KEY" --batch "$BATCH" -c "$SLUICE_CONNS" -n "$N" --run sluice --quiet \
  --json "$WORK/sluice.json" >"$WORK/sluice-load.txt"
S_ACCEPT=$(since "$START")
S_SUB=$(wait_for "$START" $((U0 + N)) sim_unique)
S_DLR=$(wait_for "$START" $((R0 + N)) sluice_receipts)
sleep 0.5
S_UNIQUE=$(( $(tally unique_messages) - U0 )); S_DUPS=$(( $(tally duplicates) - D0 ))
S_DLR_COUNT=$(( $(sluice_receipts) - R0 ))
S_CPU=$(awk -v a="$(cpu_secs "$SLUICE_PID")" -v b="$C0" 'BEGIN { printf "%.2f", a - b }')
curl -s "http://127.0.0.1:$METRICS_PORT/metrics" >"$WORK/sluice-metrics.txt"
stop_all_but_sim
}

LOAD_START_UPTIME=$(cut -d' ' -f1-3 /proc/loadavg)
for phase in $ORDER; do
  case "$phase" in
    kannel) phase_kannel ;;
    sluice) phase_sluice ;;
    *) echo "ORDER: unknown phase '$phase' (kannel, sluice)" >&2; exit 1 ;;
  esac
done
LOAD_END_UPTIME=$(cut -d' ' -f1-3 /proc/loadavg)

# Stop the simulator (SIGTERM writes its final tally) and check the whole run.
kill "$SIM_PID" 2>/dev/null || true
for _ in $(seq 100); do kill -0 "$SIM_PID" 2>/dev/null || break; sleep 0.1; done

num() { case "$1" in timeout) echo 0 ;; *) echo "$1" ;; esac; }
K_SUB_RATE=$(rate "$N" "$(num "$K_SUB")"); K_DLR_RATE=$(rate "$N" "$(num "$K_DLR")")
S_SUB_RATE=$(rate "$N" "$(num "$S_SUB")"); S_DLR_RATE=$(rate "$N" "$(num "$S_DLR")")
ratio() { awk -v s="$1" -v k="$2" 'BEGIN { if (k > 0) printf "%.1fx", s / k; else print "n/a" }'; }

echo
echo "N = $N per phase, order: $ORDER; load average at start $LOAD_START_UPTIME, at end $LOAD_END_UPTIME"
printf '%-8s %-26s %-26s %-22s %s\n' "" "submitted (sim has all N)" "receipted (N final DLRs)" "HTTP accepted all N" "simulator tally"
printf '%-8s %8s s %9s msg/s   %8s s %9s msg/s   %8s s                unique %s, duplicates %s; receipts %s\n' \
  kannel "$K_SUB" "$K_SUB_RATE" "$K_DLR" "$K_DLR_RATE" "$K_ACCEPT" "$K_UNIQUE" "$K_DUPS" "$K_DLR_COUNT"
printf '%-8s %8s s %9s msg/s   %8s s %9s msg/s   %8s s                unique %s, duplicates %s; receipts %s\n' \
  sluice "$S_SUB" "$S_SUB_RATE" "$S_DLR" "$S_DLR_RATE" "$S_ACCEPT" "$S_UNIQUE" "$S_DUPS" "$S_DLR_COUNT"
echo "ratio sluice / kannel: submitted $(ratio "$S_SUB_RATE" "$K_SUB_RATE"), receipted $(ratio "$S_DLR_RATE" "$K_DLR_RATE")"
per_cpu() { awk -v n="$N" -v c="$1" 'BEGIN { if (c > 0) printf "%.0f", n / c; else print "n/a" }'; }
echo "gateway CPU for the phase (user + system; kannel = bearerbox + smsbox): kannel $K_CPU s ($(per_cpu "$K_CPU") msg per CPU-s), sluice $S_CPU s ($(per_cpu "$S_CPU") msg per CPU-s); ratio $(ratio "$(per_cpu "$S_CPU")" "$(per_cpu "$K_CPU")")"
echo "final simulator tally: unique $(tally unique_messages) (expected $((2 * N))), duplicates $(tally duplicates), dlrs sent $(tally dlrs_sent)"
echo "logs, configs and JSON in $WORK"
ok=1
[ "$K_UNIQUE" = "$N" ] && [ "$S_UNIQUE" = "$N" ] || ok=0
[ "$K_DLR" != timeout ] && [ "$S_DLR" != timeout ] && [ "$K_SUB" != timeout ] && [ "$S_SUB" != timeout ] || ok=0
[ $ok = 1 ] || { echo "CHECK FAILED: a phase lost messages or timed out" >&2; exit 1; }

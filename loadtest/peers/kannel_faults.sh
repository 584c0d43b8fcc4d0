#!/usr/bin/env bash
# Kannel and `sluice serve` under the same faults, one after the other, same machine, same run.
#
# For each fault (FAULTS, in this order by default):
#   kill        SIGKILL of the gateway process KILLS times while the load runs, restarted each
#               time on the same data: Kannel's bearerbox (store-type spool in the phase dir,
#               so queued messages survive a restart; receipts' correlation in memory, Kannel's
#               default, or in sqlite3 with KANNEL_DLR_STORAGE=sqlite3, which fdatasyncs every
#               row and ran at ≈ 13 msg/s on the shared development disk), sluice
#               serve (redb store). Kills are spread over the run by the simulator's progress
#               (the k-th once the center holds k * N / (KILLS + 1) of the phase's messages);
#               both loads are paced at KILL_RATE msg/s here, or sluice would have sent
#               everything between two kills.
#   disconnect  the center drops the connection right after accepting a submit
#               (`disconnect_probability` DISCONNECT_P, its response lost).
#   throttle    the center takes THROTTLE_RATE submits/s (burst THROTTLE_BURST) and answers the
#               rest ESME_RTHROTTLED.
#   dlr         every receipt is sent twice (`dlr.duplicate`) and DLR_EARLY of them before the
#               submit response (`dlr.early_share`).
# the same N messages go through Kannel (bearerbox + smsbox, HTTP sendsms, one GET per message,
# HTTP_WORKERS in parallel, dlr-mask=3 and a dlr-url to the local receiver) and then through a
# release `sluice serve --no-campaign` (HTTP batch API, receipts to the same receiver by signed
# webhook, one receipt per POST as Kannel's one GET per receipt). Each fault gets its own
# simulator process (`sluice-loadtest sim --config`, SMPP, receipts on), so the tally of one
# fault never mixes with another's; the phases share it one after the other.
#
# Counted per fault and gateway:
#   acked      messages the client got a 2xx for (the load generator's `messages_accepted`);
#   unique     distinct messages the simulator received during the phase; lost = acked − unique
#              (a message that reached the center without being acknowledged hides a lost one,
#              so this is a lower bound when the client saw errors: see `failed`);
#   dups       copies the simulator received beyond the first (duplicates to the center);
#   receipts   distinct message ids the receiver got a receipt for (Kannel: the handset number
#              in the dlr-url, unique per message in this load; sluice: the webhook's `id`),
#              missing = acked − receipts, and duplicate receipts (same id again);
#   per kill   dups / kills and duplicate receipts / kills (kill fault).
# Prints a Markdown table (also in $WORK/results.md) and keeps logs and configs in $WORK.
# Bounded: every wait has a deadline (PHASE_TIMEOUT), settling waits end once nothing has
# changed for SETTLE seconds; processes are cleaned up on exit. Not part of any test run.
#
# Usage: loadtest/peers/kannel_faults.sh [N=20000]
# Environment: FAULTS ("kill disconnect throttle dlr"), GATEWAYS ("kannel sluice"), KILLS (4),
# KILL_RATE (1000), HTTP_WORKERS (32), BATCH (500), SLUICE_CONNS (4), DISCONNECT_P (0.001),
# THROTTLE_RATE (1000), THROTTLE_BURST (10), DLR_EARLY (0.5), KANNEL_DLR_STORAGE (internal |
# sqlite3), KANNEL_RESEND_FREQ (sms-resend-freq, 5 s; Kannel's default is 60), PHASE_TIMEOUT
# (900 s), SETTLE (15 s), SKIP_BUILD=1 (use the release binaries already in CARGO_TARGET_DIR),
# KEEP_WORK=1 keeps the stores; SIM_PORT, ADMIN_PORT, BOX_PORT, SENDSMS_PORT, HTTP_PORT,
# METRICS_PORT (default: free ports picked at start; the receiver's port is picked anew for
# each phase).
set -eEuo pipefail
N=${1:-20000}
FAULTS=${FAULTS:-kill disconnect throttle dlr}
GATEWAYS=${GATEWAYS:-kannel sluice}
KILLS=${KILLS:-4}
KILL_RATE=${KILL_RATE:-1000}
WORKERS=${HTTP_WORKERS:-32}
BATCH=${BATCH:-500}
SLUICE_CONNS=${SLUICE_CONNS:-4}
DISCONNECT_P=${DISCONNECT_P:-0.001}
THROTTLE_RATE=${THROTTLE_RATE:-1000}
THROTTLE_BURST=${THROTTLE_BURST:-10}
DLR_EARLY=${DLR_EARLY:-0.5}
KANNEL_DLR_STORAGE=${KANNEL_DLR_STORAGE:-internal}
KANNEL_RESEND_FREQ=${KANNEL_RESEND_FREQ:-5}
PHASE_TIMEOUT=${PHASE_TIMEOUT:-900}
SETTLE=${SETTLE:-15}
case "$KANNEL_DLR_STORAGE" in sqlite3 | internal) ;; *) echo "KANNEL_DLR_STORAGE must be sqlite3 or internal" >&2; exit 1 ;; esac
for g in $GATEWAYS; do
  case "$g" in kannel | sluice) ;; *) echo "unknown gateway '$g' (kannel sluice)" >&2; exit 1 ;; esac
done
for f in $FAULTS; do
  case "$f" in kill | disconnect | throttle | dlr) ;; *) echo "unknown fault '$f' (kill disconnect throttle dlr)" >&2; exit 1 ;; esac
done
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/sluice-kannel-faults.XXXXXX)
# Shared with kannel.sh: pick_port, wait_port, tally, now/since.
. "$ROOT/loadtest/peers/lib.sh"
SIM_PORT=${SIM_PORT:-$(pick_port)}; PICKED="$PICKED$SIM_PORT "
ADMIN_PORT=${ADMIN_PORT:-$(pick_port)}; PICKED="$PICKED$ADMIN_PORT "
BOX_PORT=${BOX_PORT:-$(pick_port)}; PICKED="$PICKED$BOX_PORT "
SENDSMS_PORT=${SENDSMS_PORT:-$(pick_port)}; PICKED="$PICKED$SENDSMS_PORT "
HTTP_PORT=${HTTP_PORT:-$(pick_port)}; PICKED="$PICKED$HTTP_PORT "
METRICS_PORT=${METRICS_PORT:-$(pick_port)}; PICKED="$PICKED$METRICS_PORT "
for p in "$SIM_PORT" "$ADMIN_PORT" "$BOX_PORT" "$SENDSMS_PORT" "$HTTP_PORT" "$METRICS_PORT"; do
  case "$p" in '' | *[!0-9]*) echo "bad port '$p'" >&2; exit 1 ;; esac
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "port $p is already in use: choose other ports (SIM_PORT, ADMIN_PORT, BOX_PORT, SENDSMS_PORT, HTTP_PORT, METRICS_PORT)" >&2
    exit 1
  fi
done
command -v python3 >/dev/null || { echo "python3 is needed for the receipt receiver" >&2; exit 1; }
API_KEY="kannel-faults-key"
HOOK_SECRET=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
PIDS=()

stop_pid() { # pid: SIGTERM, up to 10 s, then SIGKILL
  kill "$1" 2>/dev/null || true
  for _ in $(seq 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}
cleanup() {
  stop_pids
  [ "${KEEP_WORK:-0}" = 1 ] || rm -rf "$WORK"/*/data "$WORK"/*/spool "$WORK"/*/dlr.db
}
trap cleanup EXIT
# set -e stops the run at the first failing command: say which.
trap 'echo "stopped: line $LINENO: $BASH_COMMAND exited $?" >&2' ERR

if ! [ -x /usr/sbin/bearerbox ]; then
  echo "installing kannel" >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kannel >/dev/null
fi
if [ "${SKIP_BUILD:-0}" = 1 ]; then
  target=${CARGO_TARGET_DIR:-$ROOT/target}
  BIN="$target/release/sluice-loadtest"
  SLUICE="$target/release/sluice"
  [ -x "$BIN" ] && [ -x "$SLUICE" ] || { echo "SKIP_BUILD=1 but no release binaries in $target" >&2; exit 1; }
else
  build_release
fi

# ------------------------------------------------------------------ shared probes
sim_unique() { tally unique_messages; }
sink_line() { curl -s -m 5 "http://127.0.0.1:$HOOK_PORT/count" || echo "0 0 0 0 0"; }
sink_unique() { sink_line | awk '{ print $1 + 0 }'; }
json_field() { # file field
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get(sys.argv[2], 0))' "$1" "$2" 2>/dev/null || echo 0
}

# Waits until `probe` reaches `target`, or has not changed for SETTLE seconds, or PHASE_TIMEOUT.
settle() { # target probe
  local target=$1 probe=$2 end=$((SECONDS + PHASE_TIMEOUT)) last=-1 v same_since=$SECONDS
  while :; do
    v=$($probe)
    [ "$v" -ge "$target" ] && return 0
    if [ "$v" != "$last" ]; then last=$v; same_since=$SECONDS; fi
    [ $((SECONDS - same_since)) -ge "$SETTLE" ] && return 0
    [ $SECONDS -lt $end ] || return 0
    tend_gateway
    sleep 0.2
  done
}

# The k-th kill (1-based) of the phase once the center holds k * N / (KILLS + 1) messages of
# it and has received at least one since the last restart (so every kill finds the gateway
# sending); no kill once the center holds all N, or once the load has ended and the center has
# not moved for SETTLE seconds. `kill_gateway`, `restart_gateway` and `tend_gateway` are the
# phase's.
# Sets KILLED (kills done).
kill_loop() { # load_pid u0
  local load_pid=$1 u0=$2 k at v last same_since end base=-1
  KILLED=0
  for k in $(seq "$KILLS"); do
    at=$((u0 + k * N / (KILLS + 1)))
    end=$((SECONDS + PHASE_TIMEOUT)) last=-1 same_since=$SECONDS
    while :; do
      v=$(sim_unique)
      [ "$v" -ge $((u0 + N)) ] && return 0
      [ "$v" -ge "$at" ] && [ "$v" -gt "$base" ] && break
      if [ "$v" != "$last" ]; then last=$v; same_since=$SECONDS; fi
      if ! kill -0 "$load_pid" 2>/dev/null && [ $((SECONDS - same_since)) -ge "$SETTLE" ]; then return 0; fi
      [ $SECONDS -lt $end ] || return 0
      tend_gateway
      sleep 0.02
    done
    kill_gateway
    KILLED=$((KILLED + 1))
    echo "   kill $k at $((v - u0)) messages at the center" >&2
    sleep 0.3
    restart_gateway
    base=$(sim_unique)
  done
}

# Keeps the gateway's helper processes up between kills (Kannel: smsbox); a no-op otherwise.
tend_gateway() { :; }

pace() { [ "$1" = kill ] && echo "--rate $KILL_RATE" || true; }

# ------------------------------------------------------------------ simulator per fault
start_sim() { # fault dir
  local f=$1 d=$2 extra=""
  case "$f" in
    disconnect) extra="disconnect_probability = $DISCONNECT_P" ;;
    throttle) extra="throughput = $THROTTLE_RATE
burst = $THROTTLE_BURST" ;;
    dlr) extra="dlr = { duplicate = true, early_share = $DLR_EARLY }" ;;
  esac
  cat >"$d/sim.toml" <<TOML
seed = 18

[[listener]]
name = "smsc"
protocol = "smpp"
addr = "127.0.0.1:$SIM_PORT"
$extra
TOML
  rm -f "$WORK/tally.json"
  "$BIN" sim --config "$d/sim.toml" --tally-out "$WORK/tally.json" --tally-every 0.05 >"$d/sim.log" 2>&1 &
  SIM_PID=$!
  PIDS+=($SIM_PID)
  wait_port "$SIM_PORT" 20 "$SIM_PID" "$d/sim.log"
}

# Each receiver gets a port of its own: in one run, 9 of Kannel's dlr-url GETs reached the
# receiver of the sluice phase that followed on the same port, after bearerbox and smsbox had
# been stopped, and counted there.
start_sink() { # dir
  HOOK_PORT=$(pick_port); PICKED="$PICKED$HOOK_PORT "
  python3 "$ROOT/loadtest/peers/webhook_sink.py" "$HOOK_PORT" "$HOOK_SECRET" "$1/receipts.ndjson" >"$1/sink.log" 2>&1 &
  SINK_PID=$!
  PIDS+=($SINK_PID)
  wait_port "$HOOK_PORT" 20 "$SINK_PID" "$1/sink.log"
}

# ------------------------------------------------------------------ Kannel
write_kannel_conf() { # dir
  local d=$1 i
  mkdir -p "$d/spool"
  {
    cat <<CONF
group = core
admin-port = $ADMIN_PORT
admin-password = adm
smsbox-port = $BOX_PORT
box-allow-ip = 127.0.0.1
log-file = "$d/bearerbox.log"
log-level = 2
access-log = "$d/access.log"
store-type = spool
store-location = "$d/spool"
dlr-storage = $KANNEL_DLR_STORAGE
# A message the center refused for now (throttled, queue full) or lost with its connection is
# queued again after sms-resend-freq seconds; the default 60 s only makes the run longer.
sms-resend-freq = $KANNEL_RESEND_FREQ
CONF
    for i in 1 2; do
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
max-pending-submits = 256
source-addr-ton = 1
source-addr-npi = 1
dest-addr-ton = 1
dest-addr-npi = 1
CONF
    done
    if [ "$KANNEL_DLR_STORAGE" = sqlite3 ]; then
      cat <<CONF

group = sqlite3-connection
id = dlrdb
database = "$d/dlr.db"
max-connections = 1

group = dlr-db
id = dlrdb
table = dlr
field-smsc = smsc
field-timestamp = ts
field-destination = destination
field-source = source
field-service = service
field-url = url
field-mask = mask
field-status = status
field-boxc-id = boxc
CONF
    fi
    cat <<CONF

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = $BOX_PORT
sendsms-port = $SENDSMS_PORT
sendsms-interface = 127.0.0.1
global-sender = 10690001
log-file = "$d/smsbox.log"
log-level = 2
access-log = "$d/smsbox-access.log"

group = sendsms-user
username = tester
password = foobar
max-messages = 10
concatenation = true
CONF
  } >"$d/kannel.conf"
  if [ "$KANNEL_DLR_STORAGE" = sqlite3 ]; then
    python3 - "$d/dlr.db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("CREATE TABLE IF NOT EXISTS dlr (smsc VARCHAR(40), ts VARCHAR(40), destination VARCHAR(40),"
           " source VARCHAR(40), service VARCHAR(40), url VARCHAR(255), mask INT, status INT, boxc VARCHAR(40))")
db.commit()
PY
  fi
}

kstatus() { curl -s -m 5 "http://127.0.0.1:$ADMIN_PORT/status.txt?password=adm"; }
start_bearerbox() {
  /usr/sbin/bearerbox -v 2 "$KD/kannel.conf" >>"$KD/bearerbox.out" 2>&1 &
  BB_PID=$!
  PIDS+=($BB_PID)
  wait_port "$BOX_PORT" 30 "$BB_PID" "$KD/bearerbox.out"
}
# smsbox sometimes panics while it (re)connects to a bearerbox that was just killed or
# restarted ("mutex_lock_real: Mutex failure"), so a start is tried up to 5 times.
start_smsbox() {
  local try end
  for try in 1 2 3 4 5; do
    /usr/sbin/smsbox -v 2 "$KD/kannel.conf" >>"$KD/smsbox.out" 2>&1 &
    SB_PID=$!
    PIDS+=($SB_PID)
    end=$((SECONDS + 30))
    until (exec 3<>"/dev/tcp/127.0.0.1/$SENDSMS_PORT") 2>/dev/null; do
      kill -0 "$SB_PID" 2>/dev/null && [ $SECONDS -lt $end ] || break
      sleep 0.1
    done
    sleep 0.2
    kill -0 "$SB_PID" 2>/dev/null && return 0
    echo "   smsbox start $try failed" >&2
  done
  echo "smsbox would not start:" >&2
  tail -5 "$KD/smsbox.out" >&2
  exit 1
}
wait_kannel_binds() {
  local end=$((SECONDS + 30))
  until [ "$(kstatus | grep -c '(online')" -ge 2 ]; do
    [ $SECONDS -lt $end ] || { echo "kannel smsc binds not online" >&2; tail -5 "$KD/bearerbox.log" >&2; return 1; }
    sleep 0.2
  done
}
kill_kannel() { kill -9 "$BB_PID" 2>/dev/null || true; wait "$BB_PID" 2>/dev/null || true; }
# smsbox reconnects to bearerbox by itself, or panics doing so: then it is started again, as
# Debian's init script would (its boxes run under run_kannel_box, which starts them again).
# An smsbox can also hang after a kill (alive, not connected to bearerbox, its sendsms port
# closed; seen after the 4th kill of a run): one not listening for 10 s is killed and started
# again, as an HTTP health check would, and counted (SMSBOX_HUNG).
tend_kannel() {
  if kill -0 "$SB_PID" 2>/dev/null && ! (exec 3<>"/dev/tcp/127.0.0.1/$SENDSMS_PORT") 2>/dev/null; then
    if [ -z "${SB_DEAF_SINCE:-}" ]; then
      SB_DEAF_SINCE=$SECONDS
    elif [ $((SECONDS - SB_DEAF_SINCE)) -ge 10 ]; then
      echo "   smsbox alive but not listening for 10 s: killed" >&2
      SMSBOX_HUNG=$((SMSBOX_HUNG + 1))
      kill -9 "$SB_PID" 2>/dev/null || true
      wait "$SB_PID" 2>/dev/null || true
    fi
  else
    SB_DEAF_SINCE=""
  fi
  if ! kill -0 "$SB_PID" 2>/dev/null; then
    SB_DEAF_SINCE=""
    echo "   smsbox exited; started again" >&2
    SMSBOX_RESTARTS=$((SMSBOX_RESTARTS + 1))
    start_smsbox
  fi
}
restart_kannel() {
  start_bearerbox
  tend_kannel
}

# Pushes N messages through smsbox's sendsms. The load generator gives up after about 5 s of
# refused connections, and smsbox, when its bearerbox is killed, restarts itself or panics and
# is started again, which can take longer: then a new load generator sends the rest (up to 10
# in all, kill fault only). Messages it had started but not got an answer for are abandoned
# (never acknowledged). Each one's receipt ids carry its number (`%p-<i>`: the handset alone
# repeats from one generator to the next).
kannel_load() { # fault
  local f=$1 i=1 sent=0 end
  while :; do
    "$BIN" loadtest --target kannel --url "http://127.0.0.1:$SENDSMS_PORT/cgi-bin/sendsms" \
      --system-id tester --password foobar -c "$WORKERS" -n $((N - sent)) --run "k$f$i" --quiet \
      $(pace "$f") --kannel-dlr-url "http://127.0.0.1:$HOOK_PORT/dlr?id=%p-$i&s=%d" \
      --json "$KD/load-$i.json" >"$KD/load-$i.txt" 2>&1 || true
    sent=$((sent + $(json_field "$KD/load-$i.json" messages_accepted)))
    [ "$sent" -lt "$N" ] && [ "$f" = kill ] && [ "$i" -lt 10 ] || return 0
    echo "   load generator $i gave up at $sent acknowledged; starting another for the rest" >&2
    i=$((i + 1))
    end=$((SECONDS + 30))
    until (exec 3<>"/dev/tcp/127.0.0.1/$SENDSMS_PORT") 2>/dev/null || [ $SECONDS -ge $end ]; do sleep 0.2; done
  done
}

phase_kannel() { # fault
  local f=$1
  KD="$WORK/$f/kannel"; mkdir -p "$KD"
  SMSBOX_RESTARTS=0 SMSBOX_HUNG=0 SB_DEAF_SINCE=""
  write_kannel_conf "$KD"
  start_sink "$KD"
  start_bearerbox
  start_smsbox
  wait_kannel_binds
  echo "== $f / Kannel: $N messages through sendsms ($WORKERS HTTP workers, dlr-mask 3, store spool, dlr-storage $KANNEL_DLR_STORAGE)" >&2
  local u0 d0
  u0=$(tally unique_messages); d0=$(tally duplicates); PHASE_START=$(now)
  kannel_load "$f" &
  local load=$!
  KILLED=0
  if [ "$f" = kill ]; then
    kill_gateway() { kill_kannel; }
    restart_gateway() { restart_kannel; }
    tend_gateway() { tend_kannel; }
    kill_loop "$load" "$u0"
    while kill -0 "$load" 2>/dev/null; do tend_gateway; sleep 0.1; done
  fi
  wait "$load" || echo "   (load generator exited $?)" >&2
  record kannel "$f" "$KD" "$u0" "$d0"
  tend_gateway() { :; }
  kstatus >"$KD/status.txt" || true
  stop_pid "$SB_PID"; stop_pid "$BB_PID"; stop_pid "$SINK_PID"
}

# ------------------------------------------------------------------ sluice
write_sluice_conf() { # dir
  local d=$1 key_sha
  key_sha=$(printf %s "$API_KEY" | sha256sum | cut -d' ' -f1)
  cat >"$d/sluice.toml" <<TOML
timezone = "Asia/Shanghai"

[listeners]
http = "127.0.0.1:$HTTP_PORT"
metrics = "127.0.0.1:$METRICS_PORT"

[storage]
path = "$d/data"
backend = "redb"

[simulator]
enabled = false

[[accounts]]
name = "bench"
api_keys = ["$key_sha"]
rate = 1000000
burst = 1000000
default_sender = "10690000"
webhook_url = "http://127.0.0.1:$HOOK_PORT/receipts"
webhook_secret = "$HOOK_SECRET"

[[channels]]
name = "sim"
kind = "smpp"
host = "127.0.0.1"
port = $SIM_PORT
system_id = "sluice"
password = "sim"
bind_mode = "transceiver"
binds = 2
window = 256
rate = 1000000
burst = 10000
interface_version = 0x34
concatenation = "udh8"

[[routes]]
channel = "sim"
TOML
}

start_serve() {
  "$SLUICE" serve --config "$SD/sluice.toml" --no-campaign >>"$SD/sluice.log" 2>&1 &
  SLUICE_PID=$!
  PIDS+=($SLUICE_PID)
  wait_port "$HTTP_PORT" 30 "$SLUICE_PID" "$SD/sluice.log"
  wait_port "$METRICS_PORT" 30 "$SLUICE_PID" "$SD/sluice.log"
}
wait_sluice_binds() {
  local end=$((SECONDS + 30))
  until [ "$(metric_sum sluice_channel_binds_up_total)" -ge 2 ]; do
    [ $SECONDS -lt $end ] || { echo "sluice channel binds not up" >&2; tail "$SD/sluice.log" >&2; return 1; }
    sleep 0.2
  done
}

phase_sluice() { # fault
  local f=$1
  SD="$WORK/$f/sluice"; mkdir -p "$SD"
  SMSBOX_RESTARTS=0
  start_sink "$SD"
  write_sluice_conf "$SD"
  start_serve
  wait_sluice_binds
  echo "== $f / sluice: $N messages through sluice serve (HTTP batches of $BATCH, $SLUICE_CONNS in flight, 2 binds, window 256, receipts by webhook)" >&2
  local u0 d0
  u0=$(tally unique_messages); d0=$(tally duplicates); PHASE_START=$(now)
  "$BIN" loadtest --target http --url "http://127.0.0.1:$HTTP_PORT/v1/messages" \
    --api-key "$API_KEY" --batch "$BATCH" -c "$SLUICE_CONNS" -n "$N" --run "s$f" --quiet $(pace "$f") \
    --json "$SD/load-1.json" >"$SD/load-1.txt" 2>&1 &
  local load=$!
  KILLED=0
  if [ "$f" = kill ]; then
    kill_gateway() { kill -9 "$SLUICE_PID" 2>/dev/null || true; wait "$SLUICE_PID" 2>/dev/null || true; }
    restart_gateway() { start_serve; }
    kill_loop "$load" "$u0"
  fi
  wait "$load" || echo "   (load generator exited $?)" >&2
  record sluice "$f" "$SD" "$u0" "$d0"
  curl -s "http://127.0.0.1:$METRICS_PORT/metrics" >"$SD/metrics.txt" || true
  stop_pid "$SLUICE_PID"; stop_pid "$SINK_PID"
}

# ------------------------------------------------------------------ counting
# Waits for the center and the receiver to settle, then appends one TSV row to results.tsv.
record() { # gateway fault dir u0 d0
  local g=$1 f=$2 d=$3 u0=$4 d0=$5 acked failed unique dups rline runique rdups
  local j loads=0
  acked=0 failed=0
  for j in "$d"/load-*.json; do
    acked=$((acked + $(json_field "$j" messages_accepted)))
    failed=$((failed + $(json_field "$j" messages_failed)))
    loads=$((loads + 1))
  done
  settle $((u0 + acked)) sim_unique
  local took
  took=$(since "$PHASE_START")
  unique=$(( $(sim_unique) - u0 ))
  settle "$unique" sink_unique
  sleep 1 # stragglers: duplicates to the center and duplicate receipts
  unique=$(( $(sim_unique) - u0 )); dups=$(( $(tally duplicates) - d0 ))
  rline=$(sink_line); runique=$(echo "$rline" | awk '{ print $1 + 0 }'); rdups=$(echo "$rline" | awk '{ print $2 + 0 }')
  local notes
  if [ "$g" = kannel ]; then
    # What Kannel's own logs say about the receipts it could not pass on.
    notes="DLR not found $(cat "$d"/bearerbox.log | grep -c 'DLR from SMSC.*not found' || true)"
    notes="$notes; smsbox_list empty $(cat "$d"/bearerbox.log | grep -c 'smsbox_list empty' || true)"
    notes="$notes; smsbox PANIC $(cat "$d"/smsbox.log | grep -c 'PANIC: gwlib' || true)"
    # Still queued at the end (not lost yet, not delivered either): "sent S (Q queued), store size Z".
    notes="$notes; load generators $loads; smsbox hung and killed ${SMSBOX_HUNG:-0}"
    notes="$notes; still queued $(kstatus | sed -n 's/^SMS: .*sent [0-9]* (\([0-9]*\) queued).*/\1/p' | head -1)"
  else
    notes="receipts unmatched (last process) $(metric_sum sluice_receipts_unmatched_total)"
    # A client_ref the gateway stored under two ids (its idempotency failed): should be 0.
    notes="$notes; client_refs with 2+ ids $(python3 -c 'import collections, json, sys
ids = collections.defaultdict(set)
for line in open(sys.argv[1]):
    r = json.loads(line)
    ids[r.get("client_ref")].add(r.get("id"))
print(sum(1 for k, v in ids.items() if k is not None and len(v) > 1))' "$d/receipts.ndjson" 2>/dev/null || echo "?")"
    # Kannel-style GETs that reached this receiver (nobody here should send one): should be 0.
    notes="$notes; unsigned /dlr GETs $(grep -vc client_ref "$d/receipts.ndjson" || true)"
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$f" "$g" "$KILLED" "$acked" "$failed" "$unique" \
    "$dups" "$runique" "$rdups" "${SMSBOX_RESTARTS:-0}" "$notes" "$took" >>"$WORK/results.tsv"
  echo "   acked $acked (failed $failed), center unique $unique, duplicates $dups; receipts $runique, duplicate receipts $rdups; kills $KILLED" >&2
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
STARTED=$(now)
: >"$WORK/results.tsv"
for f in $FAULTS; do
  mkdir -p "$WORK/$f"
  start_sim "$f" "$WORK/$f"
  for g in $GATEWAYS; do "phase_$g" "$f"; done
  stop_pid "$SIM_PID"
  cp "$WORK/tally.json" "$WORK/$f/tally.json" 2>/dev/null || true
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

{
  echo "N = $N per gateway and fault; kills $KILLS at $KILL_RATE msg/s (kill fault); Kannel store spool, dlr-storage $KANNEL_DLR_STORAGE;"
  echo "disconnect_probability $DISCONNECT_P; throttle $THROTTLE_RATE/s burst $THROTTLE_BURST; dlr duplicate, early_share $DLR_EARLY."
  echo "load average at start $LOAD_START, at end $LOAD_END; $(since "$STARTED") s in all"
  echo
  echo "| fault | gateway | kills | acked (failed) | at center (s to it) | lost | duplicates to the center (per kill) | receipts | receipts missing | duplicate receipts (per kill) | gateway's own counts |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|"
  awk -F'\t' '{
    lost = $4 - $6; if (lost < 0) lost = 0
    miss = $4 - $8; if (miss < 0) miss = 0
    pk = ($3 > 0) ? sprintf(" (%.1f)", $7 / $3) : ""
    rk = ($3 > 0) ? sprintf(" (%.1f)", $9 / $3) : ""
    sb = ($10 > 0) ? sprintf(", smsbox restarted %d", $10) : ""
    printf "| %s | %s | %s%s | %s (%s) | %s | %d | %s%s | %s | %d | %s%s | %s |\n", $1, $2, $3, sb, $4, $5, $6 " (" $12 ")", lost, $7, pk, $8, miss, $9, rk, $11
  }' "$WORK/results.tsv"
  echo
  echo "logs, configs, load summaries and tallies in $WORK"
} | tee "$WORK/results.md"

#!/usr/bin/env bash
# The soak of issue 18: `sluice serve` at a steady rate for SECS with the center, receiver and
# crash faults mixed in, sampling what must stay flat.
#
#   centers: two `sluice sim` processes (their own processes, configs in the work dir):
#     an SMSC (SMPP) and an ISMG (CMPP 3.0). Both drop the connection after a submit with a
#     probability that makes about one disconnect a minute over the two, throttle above 1.3 ×
#     their share of RATE (burst 50: catch-up after a drop or a restart is answered
#     ESME_RTHROTTLED / Result 8), keep a share (DROP_SHARE, 0.0005) of submits unanswered,
#     and send receipts with faults: the SMSC 5 % before the submit response and 1 % followed
#     by one for an unknown id, the ISMG every receipt twice and 2 % early.
#   gateway: a release `sluice serve --no-campaign`, two accounts (one routed to each
#     channel), receipts of both to one webhook (batches of 100, linger 50 ms). SIGKILLed and
#     restarted on the same data directory every KILL_EVERY s (first at KILL_AT).
#   receiver: webhook_sink.py, which answers 503 for HOOK_DOWN_SECS every HOOK_EVERY s (first
#     at HOOK_AT) — its /down and /up switches, so its per-id counts survive the outage.
#   load: two `sluice loadtest --target http --rate RATE/2` (one per account) for SECS; a
#     batch refused by a killed gateway is sent again with the same client_refs, which the
#     gateway deduplicates.
#
# Every SAMPLE_EVERY s (30) a CSV row: serve's RSS (VmRSS) and open fds, the data dir's size,
# the webhook backlog, the store's ready queue and in-flight, receipts at the webhook and
# messages at the centers. After SECS the receiver is left up and the run waits (PHASE_TIMEOUT)
# until the centers hold every accepted message and the webhook a receipt for each; then it
# prints the totals, duplicates per kill and the slopes over the second half (soak_verdict.py).
# Exits non-zero when a message or receipt is missing. Not part of any test run.
#
# Usage: loadtest/peers/soak.sh [SECS=3600] [RATE=500]
# Environment: KILL_EVERY (900), KILL_AT (450), HOOK_EVERY (600), HOOK_AT (400),
# HOOK_DOWN_SECS (120), RETENTION_HOURS (storage.retention_hours, 72; 1 for a soak longer than
# the retention, whose store size must level off), SAMPLE_EVERY (30), DROP_SHARE (0.0005), PHASE_TIMEOUT (900),
# LOAD_CONNS (HTTP workers per load generator, 2),
# OUT (CSV path; default $WORK/soak.csv), SKIP_BUILD=1 (use the built binary; PROFILE=debug for
# a check of the script itself), KEEP_WORK=1 keeps the data dir.
set -euo pipefail
SECS=${1:-3600}
RATE=${2:-500}
KILL_EVERY=${KILL_EVERY:-900}
KILL_AT=${KILL_AT:-450}
HOOK_EVERY=${HOOK_EVERY:-600}
HOOK_AT=${HOOK_AT:-400}
HOOK_DOWN_SECS=${HOOK_DOWN_SECS:-120}
SAMPLE_EVERY=${SAMPLE_EVERY:-30}
DROP_SHARE=${DROP_SHARE:-0.0005}
PHASE_TIMEOUT=${PHASE_TIMEOUT:-900}
LOAD_CONNS=${LOAD_CONNS:-2}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/sluice-soak.XXXXXX)
OUT=${OUT:-$WORK/soak.csv}
. "$ROOT/loadtest/peers/lib.sh"
SMSC_PORT=$(pick_port)
ISMG_PORT=$(pick_port)
HTTP_PORT=$(pick_port)
METRICS_PORT=$(pick_port)
HOOK_PORT=$(pick_port)
command -v python3 >/dev/null || { echo "python3 is needed for the webhook receiver" >&2; exit 1; }
KEY_A="soak-key-smpp"
KEY_B="soak-key-cmpp"
HOOK_SECRET=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
PIDS=()
LOAD_PIDS=()

cleanup() {
  stop_pids
  [ "${KEEP_WORK:-0}" = 1 ] || rm -rf "$WORK/data"
}
trap cleanup EXIT

if [ "${SKIP_BUILD:-0}" = 1 ]; then
  SLUICE=${CARGO_TARGET_DIR:-$ROOT/target}/${PROFILE:-release}/sluice
else
  (cd "$ROOT" && cargo build --release -q -p sluice)
  SLUICE=${CARGO_TARGET_DIR:-$ROOT/target}/release/sluice
fi

# Per-center figures: each center takes half of RATE.
SHARE=$(awk -v r="$RATE" 'BEGIN { print r / 2 }')
THROUGHPUT=$(awk -v r="$SHARE" 'BEGIN { print r * 1.3 }')
# One disconnect a minute over both centers: each sees RATE/2 submits a second.
DISCONNECT_P=$(awk -v r="$RATE" 'BEGIN { printf "%.8f", 1 / (60 * r) }')

# center NAME PROTOCOL PORT DLR → a simulator config in the work dir.
center() {
  cat >"$WORK/$1.toml" <<TOML
seed = $((RANDOM + 1))

[[listener]]
name = "$1"
protocol = "$2"
addr = "127.0.0.1:$3"
window = 0
throughput = $THROUGHPUT
burst = 50
disconnect_probability = $DISCONNECT_P
drop_response_share = $DROP_SHARE
resend_unanswered = true
dlr = $4
TOML
}
center smsc smpp "$SMSC_PORT" '{ early_share = 0.05, unknown_share = 0.01 }'
center ismg cmpp "$ISMG_PORT" '{ early_share = 0.02, duplicate = true }'
for c in smsc ismg; do
  "$SLUICE" sim --config "$WORK/$c.toml" --tally-out "$WORK/$c.tally.json" --tally-every 1 \
    >"$WORK/$c.log" 2>&1 &
  PIDS+=($!)
  eval "${c^^}_PID=$!"
done
wait_port "$SMSC_PORT" 20 "$SMSC_PID" "$WORK/smsc.log"
wait_port "$ISMG_PORT" 20 "$ISMG_PID" "$WORK/ismg.log"

python3 "$ROOT/loadtest/peers/webhook_sink.py" "$HOOK_PORT" "$HOOK_SECRET" >"$WORK/sink.log" 2>&1 &
SINK_PID=$!
PIDS+=($SINK_PID)
wait_port "$HOOK_PORT" 20 "$SINK_PID" "$WORK/sink.log"
# unique duplicates posts refused last_unix_s down_refused
sink() { curl -s "http://127.0.0.1:$HOOK_PORT/${1:-count}" || echo "0 0 0 0 0 0"; }

account() { # name key channel-sender
  cat <<TOML
[[accounts]]
name = "$1"
api_keys = ["$(printf %s "$2" | sha256sum | cut -d' ' -f1)"]
rate = 1000000
burst = 1000000
default_sender = "$3"
webhook_url = "http://127.0.0.1:$HOOK_PORT/receipts"
webhook_secret = "$HOOK_SECRET"
webhook_batch = 100
webhook_linger_ms = 50

TOML
}
{
  cat <<TOML
timezone = "Asia/Shanghai"

[listeners]
http = "127.0.0.1:$HTTP_PORT"
metrics = "127.0.0.1:$METRICS_PORT"

[storage]
path = "$WORK/data"
backend = "redb"
retention_hours = ${RETENTION_HOURS:-72}

[simulator]
enabled = false

TOML
  account smpp "$KEY_A" 10690000
  account cmpp "$KEY_B" 10658000
  cat <<TOML
[[channels]]
name = "smsc"
kind = "smpp"
host = "127.0.0.1"
port = $SMSC_PORT
system_id = "sluice"
password = "sim"
bind_mode = "transceiver"
binds = 2
window = 64
rate = 100000
burst = 10000

[[channels]]
name = "ismg"
kind = "cmpp"
host = "127.0.0.1"
port = $ISMG_PORT
source_addr = "901234"
shared_secret = "secret"
version = "3.0"
service_id = "MSGTEST"
src_id = "10658000"
binds = 2
window = 64
rate = 100000
burst = 10000

[[routes]]
accounts = ["smpp"]
channel = "smsc"

[[routes]]
accounts = ["cmpp"]
channel = "ismg"
TOML
} >"$WORK/sluice.toml"

# serve's log is appended across restarts (start_sluice truncates it).
start_serve() {
  "$SLUICE" serve --config "$WORK/sluice.toml" --no-campaign >>"$WORK/sluice.log" 2>&1 &
  SLUICE_PID=$!
  PIDS+=($SLUICE_PID)
  # Opening a store left by SIGKILL may take a while: give it minutes, not seconds.
  wait_port "$HTTP_PORT" 300 "$SLUICE_PID" "$WORK/sluice.log"
  wait_port "$METRICS_PORT" 30 "$SLUICE_PID" "$WORK/sluice.log"
}
start_serve
end=$((SECONDS + 60))
until [ "$(metric_sum sluice_channel_binds_up_total)" -ge 4 ]; do
  [ $SECONDS -lt $end ] || { echo "binds not up" >&2; tail "$WORK/sluice.log" >&2; exit 1; }
  sleep 0.2
done

RUN=$(date +%s)
for a in "smpp:$KEY_A" "cmpp:$KEY_B"; do
  "$SLUICE" loadtest --target http --url "http://127.0.0.1:$HTTP_PORT/v1/messages" \
    --api-key "${a#*:}" --batch 25 -c "$LOAD_CONNS" --rate "$SHARE" -d "$SECS" --run "soak$RUN${a%%:*}" \
    --quiet --json "$WORK/load-${a%%:*}.json" >"$WORK/load-${a%%:*}.txt" 2>&1 &
  PIDS+=($!)
  LOAD_PIDS+=($!)
done

center_sum() { # tally key
  echo $(($(tally_of smsc "$1") + $(tally_of ismg "$1")))
}
tally_of() { # center key
  local v
  v=$(sed -n "s/.*\"$2\": \([0-9]*\).*/\1/p" "$WORK/$1.tally.json" 2>/dev/null | head -1)
  echo "${v:-0}"
}
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$SLUICE_PID/status" 2>/dev/null || echo 0; }
fds() { ls "/proc/$SLUICE_PID/fd" 2>/dev/null | wc -l; }

KILLS=0
HOOK_DOWN=0
echo "t_s,pid,rss_kb,fds,store_bytes,webhook_backlog,store_queued,store_inflight,hook_unique,hook_dups,center_unique,center_dups,hook_down,kills" >"$OUT"
sample() {
  read -r h_unique h_dups _ <<<"$(sink)"
  echo "$1,$SLUICE_PID,$(rss_kb),$(fds),$(du -sb "$WORK/data" | cut -f1),$(metric_sum sluice_webhook_backlog),$(metric_sum sluice_store_queue_depth),$(metric_sum sluice_store_inflight),$h_unique,$h_dups,$(center_sum unique_messages),$(center_sum duplicates),$HOOK_DOWN,$KILLS" >>"$OUT"
}

echo "== soak: $SECS s at $RATE msg/s; kill every $KILL_EVERY s from $KILL_AT; webhook down $HOOK_DOWN_SECS s every $HOOK_EVERY s from $HOOK_AT; work dir $WORK"
START=$SECONDS
next_sample=0
next_kill=$KILL_AT
next_down=$HOOK_AT
up_at=-1
while :; do
  t=$((SECONDS - START))
  [ "$t" -lt "$SECS" ] || break
  if [ "$t" -ge "$next_down" ]; then
    sink down >/dev/null; HOOK_DOWN=1; up_at=$((t + HOOK_DOWN_SECS)); next_down=$((next_down + HOOK_EVERY))
    echo "t=$t webhook down"
  fi
  if [ "$up_at" -ge 0 ] && [ "$t" -ge "$up_at" ]; then
    sink up >/dev/null; HOOK_DOWN=0; up_at=-1
    echo "t=$t webhook up"
  fi
  if [ "$t" -ge "$next_kill" ]; then
    kill -9 "$SLUICE_PID"
    wait "$SLUICE_PID" 2>/dev/null || true
    KILLS=$((KILLS + 1)); next_kill=$((next_kill + KILL_EVERY))
    t0=$SECONDS
    start_serve
    echo "t=$t SIGKILL $KILLS; serve back in $((SECONDS - t0)) s (pid $SLUICE_PID)"
  fi
  if [ "$t" -ge "$next_sample" ]; then
    sample "$t"; next_sample=$((next_sample + SAMPLE_EVERY))
  fi
  sleep 1
done
[ "$HOOK_DOWN" = 0 ] || { sink up >/dev/null; HOOK_DOWN=0; }

for p in "${LOAD_PIDS[@]}"; do wait "$p" || echo "load generator $p exited $?" >&2; done
json_num() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }
ACCEPTED=$(($(json_num "$WORK/load-smpp.json" messages_accepted) + $(json_num "$WORK/load-cmpp.json" messages_accepted)))
FAILED=$(($(json_num "$WORK/load-smpp.json" messages_failed) + $(json_num "$WORK/load-cmpp.json" messages_failed)))
echo "load done: $ACCEPTED accepted, $FAILED failed; waiting for the centers and the webhook"
end=$((SECONDS + PHASE_TIMEOUT))
while [ $SECONDS -lt $end ]; do
  read -r h_unique _ <<<"$(sink)"
  [ "$(center_sum unique_messages)" -ge "$ACCEPTED" ] && [ "$h_unique" -ge "$ACCEPTED" ] && break
  if [ $((SECONDS - START)) -ge "$next_sample" ]; then
    sample $((SECONDS - START)); next_sample=$((next_sample + SAMPLE_EVERY))
  fi
  sleep 1
done
sleep 5 # stragglers (duplicates) before the final counts
sample $((SECONDS - START))
read -r H_UNIQUE H_DUPS H_POSTS H_REFUSED _ H_DOWN_REFUSED <<<"$(sink)"
curl -s "http://127.0.0.1:$METRICS_PORT/metrics" >"$WORK/metrics.txt" || true
for c in SMSC ISMG; do
  p=${c}_PID
  kill "${!p}" 2>/dev/null || true
done
for _ in $(seq 100); do
  kill -0 "$SMSC_PID" 2>/dev/null || kill -0 "$ISMG_PID" 2>/dev/null || break
  sleep 0.1
done
sleep 1

C_UNIQUE=$(center_sum unique_messages)
echo
echo "messages: $ACCEPTED accepted by the gateway ($FAILED failed), $C_UNIQUE distinct at the centers"
for c in smsc ismg; do
  echo "  $c: unique $(tally_of $c unique_messages), duplicates $(tally_of $c duplicates), disconnects $(tally_of $c disconnects), responses dropped $(tally_of $c responses_dropped), resent receipts $(tally_of $c resent), unknown receipts $(tally_of $c unknown_receipts), duplicate receipts $(tally_of $c duplicate_receipts)"
done
echo "webhook: $H_UNIQUE distinct receipts, $H_DUPS duplicates, $H_POSTS POSTs, $H_REFUSED bad signatures, $H_DOWN_REFUSED refused while down"
echo "kills: $KILLS; webhook duplicates per kill: $(awk -v d="$H_DUPS" -v k="$KILLS" 'BEGIN { if (k) printf "%.1f", d / k; else print "-" }')"
python3 "$ROOT/loadtest/peers/soak_verdict.py" "$OUT" "$SECS"
echo "CSV: $OUT; logs and configs in $WORK"
ok=1
[ "$C_UNIQUE" -ge "$ACCEPTED" ] || { echo "LOST: $((ACCEPTED - C_UNIQUE)) accepted messages never reached a center" >&2; ok=0; }
[ "$H_UNIQUE" -ge "$ACCEPTED" ] || { echo "LOST: $((ACCEPTED - H_UNIQUE)) receipts never reached the webhook" >&2; ok=0; }
[ "$H_REFUSED" = 0 ] || { echo "bad signatures at the webhook: $H_REFUSED" >&2; ok=0; }
[ $ok = 1 ] || exit 1

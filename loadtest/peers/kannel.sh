#!/usr/bin/env bash
# Kannel vs. direct throughput on the same simulator and machine.
#
# Starts the sluice simulator (SMPP on 127.0.0.1), Kannel's bearerbox + smsbox with an SMPP
# smsc pointing at it, pushes N messages through Kannel's HTTP sendsms with the load
# generator's Kannel mode, waits until bearerbox reports all N sent to the SMSC, then pushes
# the same N straight at the simulator with the load generator, and prints both rates and
# their ratio. Bounded (every wait has a deadline) and cleans up its processes on exit.
# Not part of the default test run.
#
# Usage: loadtest/peers/kannel.sh [N=20000] [HTTP_WORKERS=32]
set -euo pipefail
N=${1:-20000}
WORKERS=${2:-32}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/sluice-kannel.XXXXXX)
SIM_PORT=${SIM_PORT:-27750}
ADMIN_PORT=${ADMIN_PORT:-23000}
BOX_PORT=${BOX_PORT:-23001}
SENDSMS_PORT=${SENDSMS_PORT:-23013}
PIDS=()

cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

if ! [ -x /usr/sbin/bearerbox ]; then
  echo "installing kannel" >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kannel >/dev/null
fi

(cd "$ROOT" && cargo build --release -q -p sluice-loadtest)
BIN="$ROOT/target/release/sluice-loadtest"

wait_port() { # port deadline_s
  local end=$((SECONDS + $2))
  until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
    [ $SECONDS -lt $end ] || { echo "port $1 not up after $2 s" >&2; exit 1; }
    sleep 0.2
  done
}

"$BIN" sim --smpp "127.0.0.1:$SIM_PORT" --cmpp 127.0.0.1:0 --tally-out "$WORK/tally.json" >"$WORK/sim.log" 2>&1 &
SIM_PID=$!
PIDS+=($SIM_PID)
wait_port "$SIM_PORT" 20

cat >"$WORK/kannel.conf" <<CONF
group = core
admin-port = $ADMIN_PORT
admin-password = adm
smsbox-port = $BOX_PORT
box-allow-ip = 127.0.0.1
log-file = "$WORK/bearerbox.log"
log-level = 2
access-log = "$WORK/access.log"

group = smsc
smsc = smpp
smsc-id = sim
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

/usr/sbin/bearerbox "$WORK/kannel.conf" >"$WORK/bearerbox.out" 2>&1 &
PIDS+=($!)
wait_port "$BOX_PORT" 30
/usr/sbin/smsbox "$WORK/kannel.conf" >"$WORK/smsbox.out" 2>&1 &
PIDS+=($!)
wait_port "$SENDSMS_PORT" 30
# Let the SMPP bind come up.
end=$((SECONDS + 30))
until curl -s "http://127.0.0.1:$ADMIN_PORT/status.txt?password=adm" | grep -q "online"; do
  [ $SECONDS -lt $end ] || { echo "kannel smsc not online" >&2; cat "$WORK/bearerbox.log" >&2; exit 1; }
  sleep 0.5
done

sent_count() {
  curl -s "http://127.0.0.1:$ADMIN_PORT/status.txt?password=adm" | sed -n 's/^SMS: received [0-9]* ([0-9]* queued), sent \([0-9]*\).*/\1/p' | head -1
}

echo "== $N messages through Kannel sendsms ($WORKERS HTTP workers)"
START=$(date +%s.%N)
"$BIN" loadtest --target kannel --url "http://127.0.0.1:$SENDSMS_PORT/cgi-bin/sendsms" \
  --system-id tester --password foobar -c "$WORKERS" -n "$N" --run kannel --quiet --json "$WORK/kannel.json"
end=$((SECONDS + 600))
while [ "$(sent_count)" -lt "$N" ]; do
  [ $SECONDS -lt $end ] || { echo "kannel did not send all $N within 600 s" >&2; break; }
  sleep 0.2
done
KANNEL_S=$(awk -v a="$(date +%s.%N)" -v b="$START" 'BEGIN { print a - b }')
KANNEL_RATE=$(awk -v n="$N" -v s="$KANNEL_S" 'BEGIN { print n / s }')

echo "== $N messages straight at the simulator (load generator, 2 binds, window 256)"
"$BIN" loadtest --target smpp --addr "127.0.0.1:$SIM_PORT" -c 2 -w 256 -n "$N" --run direct --quiet --json "$WORK/direct.json"
DIRECT_RATE=$(sed -n 's/.*"accepted_per_s": \([0-9.]*\).*/\1/p' "$WORK/direct.json")

# Stop the simulator (SIGTERM writes its tally) and check nothing was lost or doubled.
kill "$SIM_PID" 2>/dev/null || true
for _ in $(seq 50); do [ -s "$WORK/tally.json" ] && break; sleep 0.1; done
UNIQUE=$(sed -n 's/.*"unique_messages": \([0-9]*\).*/\1/p' "$WORK/tally.json")
DUPS=$(sed -n 's/.*"duplicates": \([0-9]*\).*/\1/p' "$WORK/tally.json")
echo "simulator tally: unique $UNIQUE (expected $((2 * N))), duplicates $DUPS"

printf 'kannel (HTTP sendsms -> SMPP -> simulator, end to end): %.0f msg/s (%.2f s)\n' "$KANNEL_RATE" "$KANNEL_S"
printf 'direct (load generator -> simulator):                    %.0f msg/s\n' "$DIRECT_RATE"
printf 'ratio direct / kannel: %.1fx\n' "$(awk -v d="$DIRECT_RATE" -v k="$KANNEL_RATE" 'BEGIN { print d / k }')"
echo "logs and JSON in $WORK"

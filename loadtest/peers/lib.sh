# Helpers shared by the peer scripts (kannel.sh, kannel_faults.sh, campaign.sh, soak.sh,
# outage_heap.sh); sourced, not run. The caller sets ROOT (repository), WORK (work dir) and
# PHASE_TIMEOUT (seconds) before using them.

PICKED=" "
# Ports are picked below the kernel's ephemeral range, so no outgoing connection of this run
# can be holding one when a server binds it later.
EPHEMERAL_LOW=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
PORT_BASE=20000
[ "$EPHEMERAL_LOW" -gt $((PORT_BASE + 1000)) ] || PORT_BASE=10000
PORT_SPAN=$((EPHEMERAL_LOW - PORT_BASE))
# A port nothing listens on now (random in PORT_BASE..EPHEMERAL_LOW-1, not picked before by
# this script). Fixed defaults collided with other gateways on shared machines: a load
# generator then drives the wrong server, so every port is picked unless given.
pick_port() {
  local p
  for _ in $(seq 200); do
    p=$((PORT_BASE + RANDOM % PORT_SPAN))
    case "$PICKED" in *" $p "*) continue ;; esac
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      PICKED="$PICKED$p "
      echo "$p"
      return
    fi
  done
  echo "no free port found" >&2
  exit 1
}

# Release build of the gateway and the load generator; sets BIN and SLUICE. Honours
# CARGO_TARGET_DIR (shared machines give each checkout its own), and SKIP_BUILD=1 (use the
# binaries already under it, in PROFILE, default release: comparing builds side by side
# without a relink, which takes minutes with LTO).
build_release() {
  local target=${CARGO_TARGET_DIR:-$ROOT/target}/${PROFILE:-release}
  if [ "${SKIP_BUILD:-0}" != 1 ]; then
    (cd "$ROOT" && cargo build --release -q -p sluice-loadtest -p sluice)
    target=${CARGO_TARGET_DIR:-$ROOT/target}/release
  fi
  BIN="$target/sluice-loadtest"
  SLUICE="$target/sluice"
}

# Stops every process in PIDS: SIGTERM (sluice drains on it), up to 5 s for all to exit, then
# SIGKILL for any left, and reaps them. For the scripts' EXIT traps.
stop_pids() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  for _ in $(seq 50); do
    alive=0
    for p in "${PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && break
    sleep 0.1
  done
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}

now() { date +%s.%N; }
since() { awk -v a="$(now)" -v b="$1" 'BEGIN { printf "%.3f", a - b }'; }
rate() { awk -v n="$1" -v s="$2" 'BEGIN { if (s > 0) printf "%.0f", n / s; else print 0 }'; }

# Starts `sluice serve --no-campaign` on $WORK/sluice.toml (log: $WORK/sluice.log), records
# its pid in SLUICE_PID and PIDS, and waits for its HTTP_PORT and METRICS_PORT.
start_sluice() {
  "$SLUICE" serve --config "$WORK/sluice.toml" --no-campaign >"$WORK/sluice.log" 2>&1 &
  SLUICE_PID=$!
  PIDS+=($SLUICE_PID)
  wait_port "$HTTP_PORT" 30 "$SLUICE_PID" "$WORK/sluice.log"
  wait_port "$METRICS_PORT" 30 "$SLUICE_PID" "$WORK/sluice.log"
}

# The sum of a metric's samples over all its label sets, from the gateway on METRICS_PORT.
metric_sum() { # name
  curl -s "http://127.0.0.1:$METRICS_PORT/metrics" | awk -v m="$1" '
    index($0, m) == 1 && (substr($0, length(m) + 1, 1) == "{" || substr($0, length(m) + 1, 1) == " ") { s += $NF }
    END { printf "%d\n", s }'
}

wait_port() { # port deadline_s pid log
  local end=$((SECONDS + $2))
  until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
    kill -0 "$3" 2>/dev/null || { echo "process $3 exited before listening on $1:" >&2; tail -5 "$4" >&2; exit 1; }
    [ $SECONDS -lt $end ] || { echo "port $1 not up after $2 s" >&2; exit 1; }
    sleep 0.2
  done
  # Still ours: a process that failed to bind must not leave us talking to someone else.
  sleep 0.2
  kill -0 "$3" 2>/dev/null || { echo "process $3 exited after port $1 came up:" >&2; tail -5 "$4" >&2; exit 1; }
}

# A counter from the simulator's live tally file (0 before the first write).
tally() {
  local v
  v=$(sed -n "s/.*\"$1\": \([0-9]*\).*/\1/p" "$WORK/tally.json" 2>/dev/null | head -1)
  echo "${v:-0}"
}

# Polls `probe` (a function printing a number) every 20 ms until it reaches `target`;
# prints the elapsed seconds since `start`, or "timeout".
wait_for() { # start target probe
  local start=$1 target=$2 probe=$3 end=$((SECONDS + PHASE_TIMEOUT))
  while [ "$($probe)" -lt "$target" ]; do
    if [ $SECONDS -ge $end ]; then echo timeout; return; fi
    sleep 0.02
  done
  since "$start"
}

# CPU seconds (user + system) the given processes have used so far, from /proc. Other work on
# a shared machine changes wall-clock rates a lot but CPU per message much less.
CLK_TCK=$(getconf CLK_TCK)
cpu_secs() { # pid...
  local p t=0 v
  for p in "$@"; do
    v=$(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0)
    t=$((t + v))
  done
  awk -v t="$t" -v h="$CLK_TCK" 'BEGIN { printf "%.2f", t / h }'
}

# Peak resident set size of a process (VmHWM), MB.
peak_rss_mb() { # pid
  awk '/^VmHWM:/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status" 2>/dev/null || echo 0
}

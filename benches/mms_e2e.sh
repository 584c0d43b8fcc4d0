#!/usr/bin/env bash
# MM7 channel end to end, with delivery reports: N MMS (one 50 KiB JPEG + a text, one content
# for every recipient, as a campaign sends it) POSTed to `sluice serve`, which sends them over
# its MM7 channel (one recipient per SubmitReq) to the simulator's MMSC running in its own
# process (`sluice sim --mm7`); the MMSC sends one DeliveryReportReq per recipient back to
# serve's /mm7/mmsc. The clock runs from the first POST until the MMSC has had every report
# answered by serve (answered only after the receipt layer's store commit), read from the
# simulator's tally file. Two runs of the clock: (1) "pipelined": sending starts while the
# batches are still being POSTed, so ingress (JSON with 68 KB of base64 per message, MIME
# build, SHA-256) bounds it; (2) "drain": the channel is paused while everything is POSTed and
# resumed at once, and the clock runs from the resume — the MM7 channel's own rate.
#
#   benches/mms_e2e.sh [N] [BATCH] [WINDOW]     (defaults 5000 100 32)
#
# Needs a release build (`cargo build --release -p sluice --bin sluice`; SLUICE_BIN overrides
# the binary), curl and python3. Ports 127.0.0.1:18480 (HTTP API) and :18488 (MMSC) must be
# free. Figures go in BENCHMARKS.md ("MM7 channel end to end").
set -euo pipefail

N=${1:-5000}
BATCH=${2:-100}
WINDOW=${3:-32}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${SLUICE_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/sluice}
HTTP=127.0.0.1:18480
MMSC=127.0.0.1:18488
WORK=$(mktemp -d)
trap 'kill $SIM_PID $SERVE_PID 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT

# SHA-256 of the development key "sluice-dev-key" (config/sluice.toml).
cat > "$WORK/sluice.toml" <<EOF
timezone = "Asia/Shanghai"
[listeners]
http = "$HTTP"
[storage]
path = "$WORK/data"
[simulator]
enabled = false
[[accounts]]
name = "bench"
api_keys = ["f8f3fb39d80a5e70db8cf57f3592d6ad263ea2e049f6c0cc09bf0ad75deb41c4"]
rate = 1000000
burst = 1000000
default_sender = "10658000"
operator = true
[[channels]]
name = "mmsc"
kind = "mm7"
url = "http://$MMSC/mm7"
vasp_id = "901234"
vas_id = "9012340001"
max_recipients = 1
window = $WINDOW
rate = 100000
burst = 1000
response_timeout_ms = 10000
[[routes]]
kinds = ["mms"]
channel = "mmsc"
EOF

"$BIN" sim --smpp 127.0.0.1:0 --cmpp 127.0.0.1:0 --mm7 "$MMSC" \
    --vasp-url "http://$HTTP/mm7/mmsc" --tally-out "$WORK/tally.json" --tally-every 0.05 \
    >"$WORK/sim.log" 2>&1 &
SIM_PID=$!
RUST_LOG=warn "$BIN" serve --config "$WORK/sluice.toml" >"$WORK/serve.log" 2>&1 &
SERVE_PID=$!
for _ in $(seq 200); do
    curl -sf "http://$HTTP/healthz" >/dev/null && break
    sleep 0.05
done

# Two runs (a, b) of batches of BATCH messages: the same 50 KiB image and text, distinct
# recipients.
python3 - "$WORK" "$N" "$BATCH" <<'EOF'
import base64, json, os, sys
work, n, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
img = base64.b64encode(b"\xff\xd8\xff\xe0" + os.urandom(50 * 1024 - 6) + b"\xff\xd9").decode()
for run in "ab":
    first = 13_000_000_000 + (0 if run == "a" else n)
    for b in range(0, n, batch):
        msgs = [{"kind": "mms", "to": "86%011d" % (first + i), "subject": "Bench",
                 "parts": [{"content_type": "image/jpeg", "name": "a.jpg", "base64": img},
                           {"text": "50 KB MMS bench"}]} for i in range(b, min(b + batch, n))]
        with open(f"{work}/batch-{run}-{b // batch:06d}.json", "w") as f:
            json.dump({"messages": msgs}, f)
EOF

post_all() {
    for f in "$WORK"/batch-"$1"-*.json; do
        code=$(curl -s -o "$WORK/answer.json" -w '%{http_code}' -H 'Authorization: Bearer sluice-dev-key' \
            -H 'Content-Type: application/json' --data-binary @"$f" "http://$HTTP/v1/messages")
        [ "$code" = 202 ] || { echo "POST $f: $code $(cat "$WORK/answer.json")" >&2; exit 1; }
    done
}
channel() {
    curl -sf -X POST -H 'Authorization: Bearer sluice-dev-key' "http://$HTTP/v1/channels/mmsc/$1" >/dev/null
}
# Waits until the MMSC's tally shows $1 reports answered; prints the figures from $2 (start).
wait_reports() {
    python3 - "$WORK/tally.json" "$1" "$2" "$3" <<'PY'
import json, sys, time
path, want, start, label = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
last, last_change, t = None, time.time(), {}
while True:
    try:
        with open(path) as f:
            t = json.load(f)
    except (OSError, ValueError):
        pass
    done = t.get("deliver_resps_received", 0)
    if done >= want:
        break
    if done != last:
        last, last_change = done, time.time()
    if time.time() - last_change > 60:
        sys.exit(f"stalled at {done} of {want} reports answered: {t}")
    time.sleep(0.02)
end = time.time()
n = want // 2 if label == "drain" else want
print(f"{label}: {n} MMS submitted and every delivery report answered in {end - start:.2f} s: "
      f"{n / (end - start):.0f} msg/s")
print(f"  MMSC tally so far: {t['submits_received']} SubmitReqs, {t['unique_messages']} unique, "
      f"{t['duplicates']} duplicates, {t['dlrs_sent']} reports, {t['resent']} resent, "
      f"{t['content_bytes'] / 1e6:.0f} MB content decoded, rejected {t['rejected']}")
PY
}

START=$(date +%s.%N)
post_all a
ACCEPTED=$(date +%s.%N)
python3 -c "print(f'pipelined: {$N} MMS (50 KiB JPEG + text) accepted in {$ACCEPTED - $START:.2f} s ({$N / ($ACCEPTED - $START):.0f} msg/s)')"
wait_reports "$N" "$START" pipelined

# As many again (the same content, other recipients), the channel paused meanwhile.
channel pause
post_all b
sleep 1
RESUMED=$(date +%s.%N)
channel resume
wait_reports "$((2 * N))" "$RESUMED" drain
uptime

#!/usr/bin/env bash
# Allocations per message: campaign.sh N through a gateway built with the system allocator
# and run under heaptrack, counted by the part of the gateway that made them.
#
# Why: at full speed the allocator is a sixth of the gateway's samples, spread over many
# small allocations a message; a count per site says which copies a change removed, exactly,
# where the CPU figures move inside the machine's noise (BENCHMARKS.md, "Allocations per
# message counted and cut").
#
#   build: `cargo build --release -p sluice --features system-alloc` (heaptrack hooks malloc;
#     mimalloc's own allocations never reach it) into CARGO_TARGET_DIR (default
#     target/alloc-census, so the usual release build is not relinked), plus sluice-loadtest;
#   run: campaign.sh N 1000 with a wrapper as the gateway that runs `serve` under heaptrack
#     (the simulator, load generator and receiver as campaign.sh runs them);
#   report: allocations per message, all and by part (store writer, HTTP ingress, SMPP binds,
#     channel worker, dispatch, outbox pump, receipt layer, other), then the 25 largest
#     sites by the deepest sluice frame.
#
# Usage: loadtest/peers/alloc_census.sh [N=100000]
# Needs heaptrack (Debian: apt-get install heaptrack) and python3. SKIP_BUILD=1 uses the
# binaries already under CARGO_TARGET_DIR. Not part of the default test run.
set -euo pipefail
N=${1:-100000}
case "$N" in '' | *[!0-9]*) echo "N must be a whole number of messages" >&2; exit 1 ;; esac
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
command -v heaptrack >/dev/null || { echo "heaptrack is needed (apt-get install heaptrack)" >&2; exit 1; }
command -v heaptrack_print >/dev/null || { echo "heaptrack_print is needed (apt-get install heaptrack)" >&2; exit 1; }
TARGET=${CARGO_TARGET_DIR:-$ROOT/target/alloc-census}
if [ "${SKIP_BUILD:-0}" != 1 ]; then
  (cd "$ROOT" && CARGO_TARGET_DIR="$TARGET" cargo build --release -q -p sluice -p sluice-loadtest --features sluice/system-alloc)
fi
for b in sluice sluice-loadtest; do
  [ -x "$TARGET/release/$b" ] || { echo "no $TARGET/release/$b (build it, or unset SKIP_BUILD)" >&2; exit 1; }
done
WORK=$(mktemp -d /tmp/sluice-alloc.XXXXXX)
mkdir -p "$WORK/release"
ln -s "$TARGET/release/sluice-loadtest" "$WORK/release/sluice-loadtest"
# The gateway campaign.sh starts: `serve` under heaptrack, stopped with SIGINT (a clean
# shutdown, so heaptrack writes everything) when campaign.sh stops it.
cat > "$WORK/release/sluice" <<EOF
#!/usr/bin/env bash
if [ "\$1" != serve ]; then exec "$TARGET/release/sluice" "\$@"; fi
heaptrack -o "$WORK/heap" "$TARGET/release/sluice" "\$@" > "$WORK/heaptrack.log" 2>&1 &
H=\$!
trap 'pkill -INT -f "^$TARGET/release/sluice serve" || true; wait \$H; exit 0' TERM INT
wait \$H
EOF
chmod +x "$WORK/release/sluice"
echo "== allocations per message: campaign.sh $N 1000 with the gateway under heaptrack (work dir $WORK)"
CARGO_TARGET_DIR="$WORK" SKIP_BUILD=1 "$ROOT/loadtest/peers/campaign.sh" "$N" 1000 > "$WORK/campaign.txt" 2>&1 || {
  echo "campaign.sh failed:" >&2; tail -20 "$WORK/campaign.txt" >&2; exit 1; }
grep -E "^to the last receipt|^webhook receiver|^simulator tally" "$WORK/campaign.txt"
# heaptrack finishes writing after the gateway exits (campaign.sh may have stopped waiting).
for _ in $(seq 300); do pgrep -f "heaptrack -o $WORK/heap" >/dev/null || break; sleep 0.2; done
[ -s "$WORK/heap.zst" ] || { echo "heaptrack wrote nothing:" >&2; tail -5 "$WORK/heaptrack.log" >&2; exit 1; }
heaptrack_print -f "$WORK/heap.zst" --flamegraph-cost-type allocations -F "$WORK/stacks.txt" > /dev/null
python3 - "$WORK/stacks.txt" "$N" <<'PY'
import collections, re, sys
path, n = sys.argv[1], int(sys.argv[2])
def clean(s):
    s = re.sub(r'::h[0-9a-f]{16}', '', s); s = re.sub(r' \(.*\)$', '', s)
    for a, b in (('$LT$', '<'), ('$GT$', '>'), ('$u20$', ' '), ('..', '::'), ('$u7b$', '{'),
                 ('$u7d$', '}'), ('$RF$', '&'), ('$C$', ','), ('$u5b$', '['), ('$u5d$', ']')):
        s = s.replace(a, b)
    return s
PARTS = [('store writer', ('store::writer', 'open_inner')),
         ('HTTP ingress', ('ingress', 'http_listener', 'hyper')),
         ('SMPP binds', ('channel::driver', 'smpp::bind')),
         ('channel worker', ('channel::worker',)),
         ('outbox pump', ('OutboxPump',)),
         ('dispatch', ('dispatch::',)),
         ('receipt layer', ('receipt::',))]
total = 0; parts = collections.Counter(); sites = collections.Counter()
for line in open(path):
    stack, count = line.rsplit(' ', 1); count = int(count); total += count
    frames = [clean(f) for f in stack.split(';')]
    joined = ';'.join(frames)
    parts[next((p for p, keys in PARTS if any(k in joined for k in keys)), 'other')] += count
    ours = [f for f in frames if 'sluice' in f]
    sites[ours[-1][:110] if ours else '(no sluice frame)'] += count
print(f"allocations per message: {total / n:.1f}")
for p, c in parts.most_common():
    print(f"  {p:15} {c / n:6.1f}")
print("largest sites (deepest sluice frame):")
for s, c in sites.most_common(25):
    print(f"  {c / n:6.2f}  {s}")
PY
[ "${KEEP_WORK:-0}" = 1 ] || rm -rf "$WORK"

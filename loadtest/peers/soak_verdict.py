#!/usr/bin/env python3
"""Reads the CSV soak.sh writes and prints the soak's figures and a verdict on flatness.

Serve is SIGKILLed and restarted during the soak, so its RSS starts over with every process:
RSS is judged per process lifetime (a least-squares slope over the samples of one pid that
fall in the second half of the run), open fds and the store's size over the whole second
half. RSS includes the store's page cache (redb, capped at 64 MiB), which fills as the store
file grows: growth up to that cap is the cache, not a leak. The store keeps every message
for `retention_hours` (at least 1 hour), so within a one-hour run it grows with the messages
taken; its figure is bytes per message, which is flat when the store is.

Usage: soak_verdict.py CSV SECS
"""
import csv
import sys

PAGE_CACHE_MB = 64


def slope(points):
    """Least-squares slope of (x, y) points, y per x; None for fewer than 3 points."""
    if len(points) < 3:
        return None
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((x - mx) ** 2 for x, _ in points)
    if var == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in points) / var


def main():
    path, secs = sys.argv[1], int(sys.argv[2])
    rows = [{k: int(float(v)) for k, v in r.items()} for r in csv.DictReader(open(path))]
    run = [r for r in rows if r["t_s"] < secs and r["rss_kb"] > 0]
    if not run:
        print("verdict: no samples")
        return
    half = [r for r in run if r["t_s"] >= secs // 2]
    mb = lambda kb: kb / 1024
    rss = [mb(r["rss_kb"]) for r in run]
    fds = [r["fds"] for r in run]
    store = [r["store_bytes"] / 1e6 for r in run]
    print("figures over the run (%d samples, %d s):" % (len(run), secs))
    print("  RSS MB: start %.1f, end %.1f, min %.1f, max %.1f" % (rss[0], rss[-1], min(rss), max(rss)))
    print("  open fds: start %d, end %d, min %d, max %d" % (fds[0], fds[-1], min(fds), max(fds)))
    print("  store MB: start %.1f, end %.1f, min %.1f, max %.1f" % (store[0], store[-1], min(store), max(store)))
    last = run[-1]
    if last["center_unique"]:
        print("  store bytes per message at the end: %.0f" % (last["store_bytes"] / last["center_unique"]))
    up = [r for r in half if r["hook_down"] == 0]
    if up:
        print("  second half, webhook up: backlog max %d, store queue max %d, in flight max %d"
              % (max(r["webhook_backlog"] for r in up), max(r["store_queued"] for r in up),
                 max(r["store_inflight"] for r in up)))

    print("per serve process (RSS MB first → last sample, slope over its samples in the second half):")
    flat = True
    pids = []
    for r in run:
        if r["pid"] not in pids:
            pids.append(r["pid"])
    for pid in pids:
        mine = [r for r in run if r["pid"] == pid]
        late = [(r["t_s"] / 60, mb(r["rss_kb"])) for r in mine if r["t_s"] >= secs // 2]
        s = slope(late)
        grew = mb(mine[-1]["rss_kb"]) - mb(mine[0]["rss_kb"])
        print("  pid %d, t %d–%d s: %.1f → %.1f MB (+%.1f), slope %s"
              % (pid, mine[0]["t_s"], mine[-1]["t_s"], mb(mine[0]["rss_kb"]), mb(mine[-1]["rss_kb"]),
                 grew, "%.2f MB/min" % s if s is not None else "-"))
        if grew > PAGE_CACHE_MB + 32:
            flat = False
    fd_slope = slope([(r["t_s"] / 60, r["fds"]) for r in half])
    store_slope = slope([(r["t_s"] / 60, r["store_bytes"] / 1e6) for r in half])
    per_msg = [(r["t_s"] / 60, r["store_bytes"] / r["center_unique"]) for r in half if r["center_unique"]]
    per_msg_slope = slope(per_msg)
    print("second half: fds slope %s/min; store %s MB/min; store bytes per message %s/min"
          % ("%.2f" % fd_slope if fd_slope is not None else "-",
             "%.2f" % store_slope if store_slope is not None else "-",
             "%.2f" % per_msg_slope if per_msg_slope is not None else "-"))
    if fd_slope is not None and max(r["fds"] for r in half) > min(r["fds"] for r in half) + 20:
        flat = False
    print("verdict: RSS growth per process %s the page cache (%d MiB) + 32 MiB; fds %s"
          % ("within" if flat else "ABOVE", PAGE_CACHE_MB,
             "flat" if flat else "see above"))


if __name__ == "__main__":
    main()

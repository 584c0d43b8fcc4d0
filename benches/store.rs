//! Durable store throughput, redb vs sled vs fjall in one run (sled and fjall only with their
//! cargo features).
//!
//! - `insert/single`: one message per commit (one producer): the fsync floor.
//! - `insert/batch100`, `insert/batch1000`: one producer, one request of N messages.
//! - `insert/group16x10`: 16 producer threads, requests of 10: the writer merges whatever
//!   queued during the previous fsync into one commit (the ingress case).
//! - `lease_submit/100`: lease 100 due messages and record their submit responses
//!   (201 ops per cycle: 1 lease + 100 submitted, in two commits).
//!
//! - `lifecycle/1000`: the whole store path of 1000 messages — insert, lease, submitted,
//!   delivered receipt (outbox event), outbox ack — in 5 group commits, of which 3 wait for
//!   the fsync (lease and ack are crash-harmless, see `Store::submit`). This is the store's
//!   share of the end-to-end target (≥ 50 k msg/s durable). With this sequential shape the
//!   wall time holds 3 fsyncs, so on a disk whose fsync takes ~3.5 ms (this VM under load)
//!   the fsyncs alone cap it near 95 k msg/s before any CPU is spent.
//!
//! - `lifecycle_scale` (printed, not timed by criterion): the full life of every message —
//!   insert batch → lease → submitted → receipt (final, outbox event) → outbox ack → purge —
//!   in passes of 1000 behind a standing backlog, over `SLUICE_BENCH_MESSAGES` messages
//!   (default 200 000; the comparison runs 10 000 000). Prints msg/s, CPU per message
//!   and the engine calls per message (gets, puts, deletes, scans; `WriterConfig::count_kv_ops`);
//!   CPU and msg/s per slice of the run (every million messages, or a tenth of a shorter run:
//!   whether an engine slows as tombstones pile up at the queue's head); the data directory's
//!   size on disk at the end, after draining the backlog (everything purged), and after closing
//!   and reopening the store (space coming back?). `SLUICE_BENCH_ENGINES` (e.g. `fjall` or
//!   `redb,sled`) picks the engines; each engine runs twice (on a shared machine the second
//!   run tells how much the first was noise). `SLUICE_BENCH_REDO_LOG=1` opens the store as
//!   `serve` does, with its redo log (groups durable in the log, the engine's durable commit
//!   per checkpoint, the writer's memories in play): the shape to price a store change in,
//!   e.g. under `valgrind --tool=callgrind`. `SLUICE_BENCH_PURGE_LAG=N` leaves N ended
//!   messages unpurged before the purge takes the oldest (default 0: each pass purges what
//!   it ended, while the writer's memories still hold it); 200000 purges what checkpoints
//!   wrote and memory let go, as a gateway does after its retention.
//! - `paced` (printed): the gateway's shape at a steady low rate (`SLUICE_BENCH_RATE`, default
//!   3000 msg/s, for `SLUICE_BENCH_PACED_SECS`, default 5): ingress requests of 10, a
//!   dispatcher leasing every millisecond and settling each message as its own request, each
//!   receipt its own request, outbox acks every 10 ms. Prints CPU per message (utime + stime of
//!   the whole process, as getrusage counts them), commits per second and p99 of the ingress
//!   requests' latency, for no spacing, the fixed 5 ms (`commit_min_spacing_ms = 5`) and the
//!   default adaptive spacing (`commit_max_spacing_ms`). `SLUICE_BENCH_PACED_SECS=0` skips it.
//!
//! Messages are ~460 bytes as JSON (printed at start), about half that in the stored binary
//! form. `lifecycle` also prints CPU time per 1000 messages: on a loaded machine that is the
//! figure to compare, since wall time there mostly measures the scheduler. Data lives under the system temp dir
//! (must be a real disk for fsync to mean anything).
//!
//! Run: `cargo bench -p sluice --features sled,fjall --bench store -- --warm-up-time 1 --measurement-time 3`

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sluice::store::{
    AnyBackend, BackendKind, Lane, Message, Op, PartState, Payload, Store, WriterConfig,
};

const NOW: u64 = 1_700_000_000_000;

/// The compiled-in engines, narrowed to those `SLUICE_BENCH_ENGINES` names (comma list) if set.
fn backends() -> Vec<BackendKind> {
    let mut v = vec![BackendKind::Redb];
    if cfg!(feature = "sled") {
        v.push(BackendKind::Sled);
    }
    if cfg!(feature = "fjall") {
        v.push(BackendKind::Fjall);
    }
    if let Ok(only) = std::env::var("SLUICE_BENCH_ENGINES") {
        v.retain(|k| only.split(',').any(|n| n.trim() == name(*k)));
    }
    v
}

fn name(k: BackendKind) -> &'static str {
    match k {
        BackendKind::Redb => "redb",
        BackendKind::Sled => "sled",
        BackendKind::Fjall => "fjall",
    }
}

/// Bytes the files under `dir` occupy on disk (allocated blocks, so sparse or preallocated
/// files count as what they really take).
fn disk_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => disk_bytes(&e.path()),
            Ok(m) => m.blocks() * 512,
            Err(_) => 0,
        })
        .sum()
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn open(kind: BackendKind, dir: &Path) -> Store<AnyBackend> {
    open_with(kind, dir, WriterConfig::default())
}

fn open_with(kind: BackendKind, dir: &Path, cfg: WriterConfig) -> Store<AnyBackend> {
    Store::open(AnyBackend::open(kind, dir).expect("open backend"), cfg, NOW).expect("open store")
}

/// [`open_with`], or with `SLUICE_BENCH_REDO_LOG=1` in the gateway's shape: groups made
/// durable in the redo log under `dir`, the engine's durable commit once per checkpoint, so
/// the writer's memories (lease keys, state records, outbox entries held until a durable
/// commit) work as they do in `serve`.
fn open_shaped(kind: BackendKind, dir: &Path, cfg: WriterConfig) -> Store<AnyBackend> {
    if std::env::var("SLUICE_BENCH_REDO_LOG").is_ok_and(|v| v == "1") {
        let backend = AnyBackend::open(kind, dir).expect("open backend");
        Store::open_logged(backend, cfg, NOW, &dir.join("content"), &dir.join("redo"))
            .expect("open store")
    } else {
        open_with(kind, dir, cfg)
    }
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn message(store: &Store<AnyBackend>) -> Message {
    let id = store.ids().next(NOW);
    let payload = Payload::Text {
        text: "Your verification code is 123456. It expires in 5 minutes. Do not share it with anyone. Reply STOP to opt out of marketing messages from ACME.".into(),
        encoding: Default::default(),
    };
    let mut m = Message::new(id, "acme", "+8613800138000", payload, "smsc1", NOW, NOW);
    m.from = Some("10690000".into());
    m.client_ref = Some(format!("ref-{}", id.0));
    m
}

fn inserts(store: &Store<AnyBackend>, n: usize) -> Vec<Op> {
    (0..n)
        .map(|_| Op::Insert(Box::new(message(store))))
        .collect()
}

fn bench_insert(c: &mut Criterion) {
    {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(BackendKind::Redb, dir.path());
        let bytes = serde_json::to_vec(&message(&store)).map_or(0, |v| v.len());
        eprintln!("store bench: message is {bytes} bytes as JSON (stored binary, about half)");
    }
    let mut g = c.benchmark_group("insert");
    g.sample_size(10);
    for kind in backends() {
        for batch in [1usize, 100, 1000] {
            let label = if batch == 1 {
                "single".to_owned()
            } else {
                format!("batch{batch}")
            };
            g.throughput(Throughput::Elements(batch as u64));
            g.bench_function(BenchmarkId::new(label, name(kind)), |b| {
                let dir = tempfile::tempdir().expect("tempdir");
                let store = open(kind, dir.path());
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let ops = inserts(&store, batch);
                        let t = Instant::now();
                        store.submit_blocking(ops).expect("insert");
                        total += t.elapsed();
                    }
                    total
                });
            });
        }
        // 16 concurrent producers, 10 messages per request.
        g.throughput(Throughput::Elements(160));
        g.bench_function(BenchmarkId::new("group16x10", name(kind)), |b| {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = open(kind, dir.path());
            b.iter_custom(|iters| {
                let before = (store.stats().commits(), store.stats().requests());
                let t = Instant::now();
                std::thread::scope(|s| {
                    for _ in 0..16 {
                        s.spawn(|| {
                            for _ in 0..iters {
                                store.submit_blocking(inserts(&store, 10)).expect("insert");
                            }
                        });
                    }
                });
                let elapsed = t.elapsed();
                let commits = store.stats().commits() - before.0;
                let reqs = store.stats().requests() - before.1;
                if commits > 0 && iters >= 10 {
                    eprintln!(
                        "  {}: {reqs} requests in {commits} commits ({:.1} requests/commit)",
                        name(kind),
                        reqs as f64 / commits as f64
                    );
                }
                elapsed
            });
        });
    }
    g.finish();
}

fn bench_lease(c: &mut Criterion) {
    let mut g = c.benchmark_group("lease_submit");
    g.sample_size(10);
    g.throughput(Throughput::Elements(100));
    for kind in backends() {
        g.bench_function(BenchmarkId::new("100", name(kind)), |b| {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = open(kind, dir.path());
            let mut center = 0u64;
            b.iter_custom(|iters| {
                // Untimed: stock the ready queue.
                for _ in 0..iters {
                    store.submit_blocking(inserts(&store, 100)).expect("stock");
                }
                let t = Instant::now();
                for _ in 0..iters {
                    let leased = futures::executor::block_on(store.lease(
                        "smsc1",
                        Lane::Notification,
                        NOW,
                        100,
                        60_000,
                    ))
                    .expect("lease");
                    let acks = leased
                        .messages
                        .iter()
                        .map(|m| {
                            center += 1;
                            Op::Submitted {
                                id: m.id,
                                part: 1,
                                parts: 1,
                                center_id: compact_str::format_compact!("{center:016X}"),
                                now_ms: NOW,
                            }
                        })
                        .collect();
                    store.submit_blocking(acks).expect("submitted");
                }
                t.elapsed()
            });
        });
    }
    g.finish();
}

/// CPU time (user + system, all threads) this process has used, from `/proc/self/stat`
/// (Linux; `None` elsewhere). With other builds loading the machine, wall time mostly
/// measures the scheduler; CPU time per message is the figure that moves with the code.
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut f = rest.split_ascii_whitespace().skip(11);
    let ticks: u64 = f.next()?.parse::<u64>().ok()? + f.next()?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every Linux ABI this runs on.
    Some(Duration::from_millis(ticks * 10))
}

/// One pass of the whole life cycle for `n` messages.
fn lifecycle_pass(store: &Store<AnyBackend>, n: usize, center: &mut u64, outbox_seq: &mut u64) {
    store.submit_blocking(inserts(store, n)).expect("insert");
    let leased =
        futures::executor::block_on(store.lease_lanes("smsc1", &Lane::ALL, NOW, n, 60_000))
            .expect("lease");
    assert_eq!(leased.messages.len(), n, "every inserted message is leased");
    let mut submitted = Vec::with_capacity(n);
    let mut receipts = Vec::with_capacity(n);
    for m in &leased.messages {
        *center += 1;
        let cid = format!("{center:016X}");
        submitted.push(Op::Submitted {
            id: m.id,
            part: 1,
            parts: 1,
            center_id: cid.as_str().into(),
            now_ms: NOW,
        });
        receipts.push(Op::Receipt {
            channel: "smsc1".into(),
            center_id: cid.into(),
            part_state: PartState::Delivered,
            stat: "DELIVRD".into(),
            err: "000".into(),
            now_ms: NOW,
        });
    }
    store.submit_blocking(submitted).expect("submitted");
    store.submit_blocking(receipts).expect("receipts");
    *outbox_seq += leased.messages.len() as u64;
    let acked = futures::executor::block_on(store.outbox_ack("acme", *outbox_seq)).expect("ack");
    assert_eq!(acked, n, "every message left one receipt event");
}

fn bench_lifecycle(c: &mut Criterion) {
    const N: usize = 1000;
    let mut g = c.benchmark_group("lifecycle");
    g.sample_size(10);
    g.throughput(Throughput::Elements(N as u64));
    for kind in backends() {
        let (mut cpu, mut passes) = (Duration::ZERO, 0u64);
        g.bench_function(BenchmarkId::new("1000", name(kind)), |b| {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = open(kind, dir.path());
            let mut center = 0u64;
            let mut outbox_seq = 0u64;
            b.iter_custom(|iters| {
                let cpu0 = process_cpu();
                let t = Instant::now();
                for _ in 0..iters {
                    lifecycle_pass(&store, N, &mut center, &mut outbox_seq);
                }
                let elapsed = t.elapsed();
                if let (Some(a), Some(b)) = (cpu0, process_cpu()) {
                    cpu += b.saturating_sub(a);
                    passes += iters;
                }
                elapsed
            });
        });
        if passes > 0 {
            let per_pass = cpu / u32::try_from(passes).unwrap_or(u32::MAX);
            eprintln!(
                "  {}: CPU {:.1} ms per {N} messages over {passes} passes (≈ {:.0} msg/s per core)",
                name(kind),
                per_pass.as_secs_f64() * 1e3,
                N as f64 / per_pass.as_secs_f64().max(1e-9),
            );
        }
    }
    g.finish();
}

/// Engine calls so far: (gets, puts, deletes, scans).
fn kv_calls(store: &Store<AnyBackend>) -> [u64; 4] {
    let k = store.stats().kv();
    [k.gets(), k.puts(), k.deletes(), k.scans()]
}

/// The whole life of `n` messages behind a standing backlog of `backlog` queued ones: every
/// pass inserts 1000 new messages and takes the 1000 oldest through lease, submitted,
/// receipt, outbox ack and purge (retention zero), so the queue indexes hold `backlog`
/// entries throughout, as a gateway with a queue does.
fn lifecycle_scale(_c: &mut Criterion) {
    const PASS: usize = 1000;
    let total = env_usize("SLUICE_BENCH_MESSAGES", 200_000);
    let backlog = env_usize("SLUICE_BENCH_BACKLOG", 100_000);
    // Progress lines: every million messages, or every tenth of a shorter run.
    let slice = (total / 10).clamp(PASS, 1_000_000) / PASS;
    // Two runs per engine: on a shared machine the second tells how much the first was noise.
    let runs = backends()
        .into_iter()
        .flat_map(|kind| [(kind, "run 1"), (kind, "run 2")]);
    for (kind, label) in runs {
        let dir = tempfile::tempdir().expect("tempdir");
        let cfg = WriterConfig {
            count_kv_ops: true,
            ..WriterConfig::default()
        };
        let store = open_shaped(kind, dir.path(), cfg);
        for _ in 0..backlog.div_ceil(PASS) {
            store
                .submit_blocking(inserts(&store, PASS))
                .expect("backlog");
        }
        let mut retiring = Retiring {
            purge_lag: env_usize("SLUICE_BENCH_PURGE_LAG", 0),
            ..Retiring::default()
        };
        // The lag's ended messages are made before the timing starts (the backlog kept),
        // so every timed pass purges as many messages as it ends.
        for _ in 0..retiring.purge_lag.div_ceil(PASS) {
            store
                .submit_blocking(inserts(&store, PASS))
                .expect("backlog");
            retire_oldest(&store, PASS, &mut retiring, &mut Phases::default());
        }
        let calls0 = kv_calls(&store);
        let commits0 = store.stats().commits();
        let cpu0 = process_cpu();
        let t = Instant::now();
        let passes = total.div_ceil(PASS);
        let (mut slice_cpu, mut slice_t) = (cpu0, Instant::now());
        let mut phases = Phases::default();
        for pass in 1..=passes {
            let batch = inserts(&store, PASS);
            phases.time(0, || store.submit_blocking(batch).expect("insert"));
            let done = retire_oldest(&store, PASS, &mut retiring, &mut phases);
            assert_eq!(done, PASS, "the backlog is never drained mid-run");
            if pass % slice == 0 {
                let now_cpu = process_cpu();
                let n = (slice * PASS) as f64;
                let cpu = now_cpu
                    .zip(slice_cpu)
                    .map_or(f64::NAN, |(b, a)| b.saturating_sub(a).as_secs_f64());
                eprintln!(
                    "  {} ({label}) messages {}..{}: CPU {:.1} µs/msg, {:.0} msg/s wall, {:.0} MiB on disk",
                    name(kind),
                    (pass - slice) * PASS,
                    pass * PASS,
                    cpu * 1e6 / n,
                    n / slice_t.elapsed().as_secs_f64(),
                    mib(disk_bytes(dir.path())),
                );
                (slice_cpu, slice_t) = (now_cpu, Instant::now());
            }
        }
        let wall = t.elapsed();
        let at_end = disk_bytes(dir.path());
        let n = (passes * PASS) as f64;
        let calls = kv_calls(&store);
        let per = |i: usize| (calls[i] - calls0[i]) as f64 / n;
        let cpu = process_cpu()
            .zip(cpu0)
            .map_or(f64::NAN, |(b, a)| b.saturating_sub(a).as_secs_f64());
        eprintln!(
            "lifecycle_scale {} ({label}): {n} messages behind a backlog of {backlog}: {:.0} msg/s wall, \
             CPU {:.1} µs/msg, {:.2} commits per 1000; engine calls per message: \
             {:.2} gets, {:.2} puts, {:.2} deletes, {:.3} scans",
            name(kind),
            n / wall.as_secs_f64(),
            cpu * 1e6 / n,
            (store.stats().commits() - commits0) as f64 * 1000.0 / n,
            per(0),
            per(1),
            per(2),
            per(3),
        );
        // Space: take the standing backlog through its life too (nothing left but the outbox
        // counter), then close and reopen (what a restart gives back).
        eprintln!(
            "lifecycle_scale {} ({label}) per phase, CPU (wall) µs per message: {}",
            name(kind),
            phases.line(n)
        );
        let mut rest = Phases::default();
        retiring.purge_lag = 0;
        while retire_oldest(&store, PASS, &mut retiring, &mut rest) > 0 {}
        while retiring.ended > 0 {
            retiring.purge(&store, retiring.ended.min(PASS), &mut rest);
        }
        let drained = disk_bytes(dir.path());
        drop(store);
        let closed = disk_bytes(dir.path());
        let store = open_shaped(kind, dir.path(), WriterConfig::default());
        let reopened = disk_bytes(dir.path());
        drop(store);
        eprintln!(
            "lifecycle_scale {} ({label}) on disk: {:.1} MiB at the end (backlog {backlog}), \
             {:.1} MiB with everything purged, {:.1} MiB after close, {:.1} MiB after reopen",
            name(kind),
            mib(at_end),
            mib(drained),
            mib(closed),
            mib(reopened),
        );
    }
}

/// The lifecycle's phases, in order, as `Phases` reports them.
const PHASES: [&str; 6] = ["insert", "lease", "submitted", "receipt", "ack", "purge"];

/// Process CPU and wall time per lifecycle phase: where a message's store time goes. CPU is
/// read in 10 ms ticks, so one phase's reading is coarse; summed over thousands of passes the
/// rounding averages out (a tick lands in a phase in proportion to its time).
#[derive(Default)]
struct Phases {
    cpu: [Duration; PHASES.len()],
    wall: [Duration; PHASES.len()],
}

impl Phases {
    fn time<T>(&mut self, phase: usize, f: impl FnOnce() -> T) -> T {
        let (cpu0, t) = (process_cpu(), Instant::now());
        let out = f();
        self.wall[phase] += t.elapsed();
        if let (Some(b), Some(a)) = (process_cpu(), cpu0) {
            self.cpu[phase] += b.saturating_sub(a);
        }
        out
    }

    /// One line: CPU (and wall) µs per message of each phase over `n` messages.
    fn line(&self, n: f64) -> String {
        PHASES
            .iter()
            .zip(self.cpu.iter().zip(&self.wall))
            .map(|(name, (c, w))| {
                format!(
                    "{name} {:.1} ({:.1})",
                    c.as_secs_f64() * 1e6 / n,
                    w.as_secs_f64() * 1e6 / n
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Takes up to `n` of the oldest queued messages through lease, submitted, receipt, outbox
/// ack and purge; returns how many.
fn retire_oldest(
    store: &Store<AnyBackend>,
    n: usize,
    r: &mut Retiring,
    phases: &mut Phases,
) -> usize {
    let leased = phases.time(1, || {
        futures::executor::block_on(store.lease_lanes("smsc1", &Lane::ALL, NOW, n, 60_000))
            .expect("lease")
    });
    if leased.messages.is_empty() {
        return 0;
    }
    let (submitted, receipts) = settle_ops(&leased.messages, &mut r.center);
    phases.time(2, || store.submit_blocking(submitted).expect("submitted"));
    phases.time(3, || store.submit_blocking(receipts).expect("receipts"));
    r.outbox_seq += leased.messages.len() as u64;
    phases.time(4, || {
        futures::executor::block_on(store.outbox_ack("acme", r.outbox_seq)).expect("ack")
    });
    r.ended += leased.messages.len();
    let due = r.ended.saturating_sub(r.purge_lag).min(n);
    if due > 0 {
        r.purge(store, due, phases);
    }
    leased.messages.len()
}

/// What `retire_oldest` carries from pass to pass.
#[derive(Default)]
struct Retiring {
    center: u64,
    outbox_seq: u64,
    /// Ended messages not purged yet.
    ended: usize,
    /// Ended messages left waiting before the purge takes the oldest
    /// (`SLUICE_BENCH_PURGE_LAG`, made before the timing starts). 0: each pass purges what
    /// it ended, moments after the receipt, while the writer's memories still hold much of
    /// it. A gateway purges after its retention, hours later, when everything is in the
    /// engine: a lag past a few checkpoints and the retired center ids' generations
    /// (200 000 messages) prices that.
    purge_lag: usize,
}

impl Retiring {
    fn purge(&mut self, store: &Store<AnyBackend>, n: usize, phases: &mut Phases) {
        let purged = phases.time(5, || {
            futures::executor::block_on(store.purge(NOW + 1, n)).expect("purge")
        });
        assert_eq!(purged, n, "the oldest ended messages are purged");
        self.ended -= n;
    }
}

/// The submit responses and delivered receipts of `messages`, with fresh center ids.
fn settle_ops(messages: &[Message], center: &mut u64) -> (Vec<Op>, Vec<Op>) {
    let mut submitted = Vec::with_capacity(messages.len());
    let mut receipts = Vec::with_capacity(messages.len());
    for m in messages {
        *center += 1;
        let cid = format!("{center:016X}");
        submitted.push(Op::Submitted {
            id: m.id,
            part: 1,
            parts: 1,
            center_id: cid.as_str().into(),
            now_ms: NOW,
        });
        receipts.push(Op::Receipt {
            channel: "smsc1".into(),
            center_id: cid.into(),
            part_state: PartState::Delivered,
            stat: "DELIVRD".into(),
            err: "000".into(),
            now_ms: NOW,
        });
    }
    (submitted, receipts)
}

/// One paced run at `rate` msg/s for `secs`: (CPU µs per message, commits per second, p99
/// of the ingress requests' latency).
fn paced_run(cfg: WriterConfig, rate: usize, secs: u64) -> (f64, f64, Duration) {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::mpsc;

    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_with(BackendKind::Redb, dir.path(), cfg);
    let stop = AtomicBool::new(false);
    let finals = AtomicU64::new(0);
    let (cid_tx, cid_rx) = mpsc::channel::<String>();
    let commits0 = store.stats().commits();
    let cpu0 = process_cpu().unwrap_or_default();
    let t0 = Instant::now();
    let mut accept = Vec::new();
    let mut inserted = 0usize;
    std::thread::scope(|s| {
        // Dispatcher: lease what is due every millisecond, settle each message alone.
        s.spawn(|| {
            let mut center = 0u64;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(1));
                let leased = futures::executor::block_on(store.lease_lanes(
                    "smsc1",
                    &Lane::ALL,
                    NOW,
                    256,
                    60_000,
                ))
                .expect("lease");
                let settles = leased.messages.iter().map(|m| {
                    center += 1;
                    let cid = format!("{center:016X}");
                    let _ = cid_tx.send(cid.clone());
                    store.submit(vec![Op::Submitted {
                        id: m.id,
                        part: 1,
                        parts: 1,
                        center_id: cid.into(),
                        now_ms: NOW,
                    }])
                });
                let settles: Vec<_> = settles.collect();
                futures::executor::block_on(futures::future::join_all(settles));
            }
        });
        // Receipt layer: each DLR its own request; acks the outbox every 10 ms.
        let (stop_r, finals_r, store_r) = (&stop, &finals, &store);
        s.spawn(move || {
            let (stop, finals, store) = (stop_r, finals_r, store_r);
            let mut last_ack = Instant::now();
            let mut acked = 0u64;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(1));
                let dlrs: Vec<_> = cid_rx
                    .try_iter()
                    .map(|cid| {
                        store.submit(vec![Op::Receipt {
                            channel: "smsc1".into(),
                            center_id: cid.into(),
                            part_state: PartState::Delivered,
                            stat: "DELIVRD".into(),
                            err: "000".into(),
                            now_ms: NOW,
                        }])
                    })
                    .collect();
                let n = dlrs.len() as u64;
                futures::executor::block_on(futures::future::join_all(dlrs));
                finals.fetch_add(n, Ordering::Relaxed);
                if last_ack.elapsed() >= Duration::from_millis(10) {
                    last_ack = Instant::now();
                    let through = finals.load(Ordering::Relaxed);
                    if through > acked {
                        futures::executor::block_on(store.outbox_ack("acme", through))
                            .expect("ack");
                        acked = through;
                    }
                }
            }
        });
        // Ingress: requests of 10 at the paced rate.
        let every = Duration::from_secs_f64(10.0 / rate as f64);
        let mut next = Instant::now();
        while t0.elapsed() < Duration::from_secs(secs) {
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            }
            next += every;
            let batch = inserts(&store, 10);
            let t = Instant::now();
            store.submit_blocking(batch).expect("insert");
            accept.push(t.elapsed());
            inserted += 10;
        }
        stop.store(true, Ordering::Relaxed);
    });
    let cpu = process_cpu().unwrap_or_default().saturating_sub(cpu0);
    let wall = t0.elapsed();
    accept.sort_unstable();
    let p99 = accept
        .get(accept.len().saturating_mul(99) / 100)
        .copied()
        .unwrap_or_default();
    (
        cpu.as_secs_f64() * 1e6 / inserted.max(1) as f64,
        (store.stats().commits() - commits0) as f64 / wall.as_secs_f64(),
        p99,
    )
}

fn paced(_c: &mut Criterion) {
    let rate = env_usize("SLUICE_BENCH_RATE", 3000);
    let secs = env_usize("SLUICE_BENCH_PACED_SECS", 5) as u64;
    if secs == 0 {
        return;
    }
    let none = WriterConfig {
        max_spacing: Duration::ZERO,
        ..WriterConfig::default()
    };
    let fixed = WriterConfig {
        min_spacing: Duration::from_millis(5),
        max_spacing: Duration::ZERO,
        ..WriterConfig::default()
    };
    let adaptive = WriterConfig::default();
    let label = format!(
        "adaptive ≤ {} ms (default)",
        adaptive.max_spacing.as_millis()
    );
    for (label, cfg) in [
        ("no spacing", none),
        ("fixed 5 ms", fixed),
        (label.as_str(), adaptive),
    ] {
        let (cpu, commits, p99) = paced_run(cfg, rate, secs);
        eprintln!(
            "paced {rate} msg/s, writer {label}: CPU {cpu:.1} µs/msg, {commits:.0} commits/s, \
             ingress p99 {:.2} ms",
            p99.as_secs_f64() * 1e3
        );
    }
}

criterion_group!(
    benches,
    bench_insert,
    bench_lease,
    bench_lifecycle,
    lifecycle_scale,
    paced
);
criterion_main!(benches);

//! The group-commit writer: one thread owns every write transaction.
//!
//! Producers send a request (a batch of ops + a oneshot for the answer). The writer takes the
//! first request, then drains whatever else is queued — up to `max_ops` ops, lingering at most
//! `max_wait` for more — applies them all in ONE transaction, commits durably, and answers every
//! producer. While one fsync runs, new requests pile up and go into the next commit, so commit
//! cost is shared by everyone who arrived meanwhile (the shape of TiKV raftstore's
//! `async_io/write.rs` worker).
//!
//! With the redo log (`wal.rs`, [`run_log`] + [`run_logged`]) the gathering moves to a log
//! thread, which appends each group to the log and fsyncs it; the writer applies the groups
//! in log order, each in one engine commit that waits for no disk, answers, and checkpoints
//! (one durable engine commit) every [`CHECKPOINT_OPS`] ops or [`CHECKPOINT_EVERY`]. There
//! "durable" below means "in the log", and a failed batch is recorded as aborted (fsync'd)
//! before its producer hears it, so no replay applies it.
//!
//! Invariants:
//! - a producer's batch is atomic and is answered `Ok` only after its commit is durable —
//!   except a group made only of ops whose loss a crash makes harmless (lease, recover,
//!   purge: `ops::needs_fsync`), which commits without waiting for the fsync and
//!   becomes durable with the next durable commit — unless applying it ended a message (a
//!   lease that expired messages, `ops::finalized_something`), when the writer follows it
//!   with a durable commit before answering;
//! - a batch is never split across commits (so one batch may exceed `max_ops`);
//! - if a group commit fails, each batch is retried alone, so one bad batch (e.g. a corrupt
//!   record it touches) fails only its own producer;
//! - every transaction runs through the queue counters (`depth::DepthKv`), which commit with
//!   it; their new values are published to the `depth::Board` before any producer of the
//!   commit is answered, so a caller sees its own changes in `Store::queue_depths`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::backend::{Backend, KvRead};
use super::body_cache::{self, BodyCache, BodyCacheKv};
use super::counting::{CountingKv, KvCounts};
use super::depth::{self, Board, DepthKv, Slot};
use super::error::StoreError;
use super::in_flight::{self, InFlight, InFlightKv};
use super::keys;
use super::live::{self, Live, LiveKv};
use super::ops::{self, Op, OpResult};
use super::outbox_memo::{self, OutboxMemo, OutboxMemoKv};
use super::seq_cache::SeqCache;
use super::short_lived::{self, ShortLived, ShortLivedKv};
use super::spacing::{Cycle, Spacing};
use super::terminal_runs::TerminalRuns;
use super::wal::{self, LogWriter};

/// Group-commit tuning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WriterConfig {
    /// Stop gathering once a group holds this many ops.
    pub max_ops: usize,
    /// Longest the writer waits for more requests after the first one. Zero means "take only
    /// what is already queued" — enough under load, since requests queue during every fsync.
    pub max_wait: Duration,
    /// Ops that may be queued or in a commit at once; producers wait beyond that
    /// (backpressure instead of unbounded memory).
    pub queue_ops: usize,
    /// Least time between the starts of two commits. A quiet gateway otherwise commits for
    /// every trickle of ops, and every commit rewrites whole B-tree paths: spacing them lets
    /// the ops of a few milliseconds share one commit (at 3 k msg/s, 5 ms cut the gateway's
    /// CPU ≈ 3.6×). The price is latency on every store round trip (leases, submit
    /// responses), which caps a busy channel (≈ 35 k instead of ≈ 50 k msg/s with 5 ms in
    /// `benches/pipeline.rs`), so the default is 0: a fixed floor for deployments with modest
    /// steady rates. The spacing that follows the load is `max_spacing`.
    pub min_spacing: Duration,
    /// Most spacing the writer adds on its own when it is idle (`spacing.rs`): the spacing
    /// shrinks from this to `min_spacing` as the writer's busy share rises, and is gone at
    /// half of its time spent applying ops. At a steady 3 k msg/s it lets one commit
    /// gather what a few milliseconds bring (BENCHMARKS.md, "Store", the paced rows); at full
    /// load it adds nothing. Zero: only the fixed `min_spacing`. The default, 15 ms, was
    /// chosen end to end through `serve` at 3 k msg/s: 105 µs of gateway CPU per message
    /// at 4 ms, 64 at 10, 47 at 20, with the HTTP accept's p99 at 5.5, 10.6 and 18.4 ms;
    /// 15 gave 54–56 µs with the p99 at 15–16 ms, inside the 20 ms the accept promises,
    /// and still the whole offer at 15 k and 30 k msg/s (BENCHMARKS.md, "Sleeping through
    /// the spacing").
    pub max_spacing: Duration,
    /// Write the destination index (one more key per insert) that operators' lookup by
    /// number reads (`GET /v1/lookup/messages?to=`). On by default; a deployment that never
    /// looks numbers up can save the write (BENCHMARKS.md, "The destination index").
    pub index_by_number: bool,
    /// Count the engine calls of every commit into [`WriterStats::kv`] (benches and tests:
    /// puts, deletes and gets per message). Off by default: the gateway does not pay for it.
    pub count_kv_ops: bool,
    /// Make groups durable in the redo log (`wal.rs`, when the store is opened with one)
    /// instead of in the engine's own commit, so the next group is applied while the last one
    /// is fsync'd, and the engine's durable commit (two fsyncs with quick repair) runs once
    /// every [`CHECKPOINT_OPS`] ops or [`CHECKPOINT_EVERY`]. On by default; off: every
    /// commit is durable in the engine.
    pub redo_log: bool,
    /// This gateway's node number, written into every message id it makes (`id.rs`), so
    /// gateways that will share a clustered store never make the same id. 0 for a single
    /// gateway, whose ids are then those of the layout without node bits.
    pub node: u8,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            max_ops: 4096,
            max_wait: Duration::ZERO,
            queue_ops: 65_536,
            min_spacing: Duration::ZERO,
            max_spacing: Duration::from_millis(15),
            index_by_number: true,
            count_kv_ops: false,
            redo_log: true,
            node: 0,
        }
    }
}

/// Answer to one request.
pub(crate) type Reply = Result<Vec<OpResult>, StoreError>;

/// One producer's batch.
pub(crate) struct Request {
    pub(crate) ops: Vec<Op>,
    pub(crate) reply: oneshot::Sender<Reply>,
    /// Told when the ops are durable before they are applied: with the redo log on, once
    /// the log thread fsync'd their group (`Store::submit_durable`). Dropped untold
    /// otherwise; the reply then says it.
    pub(crate) durable: Option<oneshot::Sender<()>>,
}

/// Counters for benches and ops dashboards.
#[derive(Debug, Default)]
pub struct WriterStats {
    commits: AtomicU64,
    ops: AtomicU64,
    requests: AtomicU64,
    kv: KvCounts,
    /// Durable engine commits made as checkpoints of the redo log.
    checkpoints: AtomicU64,
    /// Nanoseconds of the writer thread's wall time, by [`WriterPhase`].
    nanos: [AtomicU64; 4],
    /// Receipt outbox reads answered from the writer's memory of the newest entries
    /// (`outbox_memo.rs`), and by the engine.
    outbox_reads: [AtomicU64; 2],
}

/// Where the writer thread's wall time goes. The writer is one thread: when `waiting` is
/// near zero it is saturated, and every store round trip (leases, submit responses,
/// receipts, ingress) queues behind it; `applying` against `committing` then says whether
/// fewer keys per message or fewer commits (larger groups, fewer fsyncs) would help more.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WriterPhase {
    /// Waiting for requests, and gathering a group (its spacing included).
    Waiting = 0,
    /// Applying the group's ops inside the transaction.
    Applying = 1,
    /// Committing: page writes, fsync (two with quick repair), answering the producers.
    /// With the redo log on, the engine commit makes nothing durable (no fsync): a
    /// checkpoint's durable commit (every [`CHECKPOINT_OPS`] ops, at most a second apart)
    /// is counted here too.
    Committing = 2,
    /// The log thread writing and fsyncing groups to the redo log (`wal.rs`). It runs
    /// beside the writer, so this overlaps the three phases above.
    Logging = 3,
}

impl WriterPhase {
    /// Every phase, in label order.
    pub const ALL: [Self; 4] = [
        Self::Waiting,
        Self::Applying,
        Self::Committing,
        Self::Logging,
    ];

    /// The metric label.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Applying => "applying",
            Self::Committing => "committing",
            Self::Logging => "logging",
        }
    }
}

impl WriterStats {
    /// Group commits made (durable ones without the redo log; with it, commits that wait for
    /// no disk: see [`checkpoints`](Self::checkpoints)).
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }
    /// Ops applied.
    pub fn ops(&self) -> u64 {
        self.ops.load(Ordering::Relaxed)
    }
    /// Checkpoints made (durable engine commits that let the redo log's segments go).
    pub fn checkpoints(&self) -> u64 {
        self.checkpoints.load(Ordering::Relaxed)
    }
    /// Receipt outbox reads ([`Store::outbox`](super::Store::outbox)) answered from the
    /// writer's memory of the newest entries, and by the engine: the pumps read the engine
    /// only after a restart or while they are far behind.
    pub fn outbox_reads(&self) -> (u64, u64) {
        (
            self.outbox_reads[0].load(Ordering::Relaxed),
            self.outbox_reads[1].load(Ordering::Relaxed),
        )
    }
    pub(crate) fn count_outbox_read(&self, from_memory: bool) {
        self.outbox_reads[usize::from(!from_memory)].fetch_add(1, Ordering::Relaxed);
    }
    /// Producer requests answered.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
    /// Engine calls made by commits (only with `WriterConfig::count_kv_ops`).
    pub fn kv(&self) -> &KvCounts {
        &self.kv
    }
    /// Wall time the writer thread spent in `phase` so far.
    pub fn time_in(&self, phase: WriterPhase) -> Duration {
        Duration::from_nanos(self.nanos[phase as usize].load(Ordering::Relaxed))
    }
    fn add_time(&self, phase: WriterPhase, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.nanos[phase as usize].fetch_add(nanos, Ordering::Relaxed);
    }
}

/// Takes `first` and whatever else is queued into one group: up to `max_ops` ops, gathered
/// until `max_wait` after now or `spacing` after the previous group's start, whichever is
/// later.
///
/// It sleeps until then rather than waiting on the queue: a thread waiting on the queue is
/// woken by every request that arrives, only to take it and wait again, and each wake-up
/// costs both sides a futex call (at 3 k msg/s in HTTP batches of 100, sending to the
/// waiting thread was 2 µs of the gateway's CPU per message, BENCHMARKS.md, "Sleeping
/// through the spacing"). Asleep, requests just queue; a group past `max_ops` leaves the
/// rest to the next one.
fn gather(
    rx: &Receiver<Request>,
    first: Request,
    cfg: &WriterConfig,
    spacing: Duration,
    last_start: Option<Instant>,
) -> Vec<Request> {
    let mut n = first.ops.len();
    let mut group = vec![first];
    let now = Instant::now();
    let deadline = (now + cfg.max_wait).max(last_start.map_or(now, |t| t + spacing));
    if deadline > now && n < cfg.max_ops {
        std::thread::sleep(deadline - now);
    }
    while n < cfg.max_ops {
        let Ok(next) = rx.try_recv() else { break };
        n += next.ops.len();
        group.push(next);
    }
    submit_responses_first(&mut group);
    group
}

/// Puts the requests that carry submit responses before the others of the group (each
/// request's own ops keep their order). The requests of one group were all waiting at once,
/// so any order is a valid one; this one lets a receipt that arrived in the same group as
/// its message's submit response find the center id, instead of being held and applied by
/// the response (four more engine calls and a round trip through the receipt layer).
fn submit_responses_first(group: &mut [Request]) {
    group.sort_by_key(|r| !r.ops.iter().any(|op| matches!(op, Op::Submitted { .. })));
}

/// What the writer keeps in memory beside the engine, each part changed only by
/// transactions that committed, and read by the store's readers.
#[derive(Debug, Default)]
pub(crate) struct Memory {
    /// State records of leased messages (`in_flight.rs`).
    pub(crate) in_flight: InFlight,
    /// The newest receipt outbox entries (`outbox_memo.rs`).
    pub(crate) outbox: OutboxMemo,
    /// Lease keys and held receipts not yet in the engine (`short_lived.rs`; redo log on).
    pub(crate) short_lived: ShortLived,
    /// Message bodies read lately (`body_cache.rs`).
    pub(crate) bodies: BodyCache,
    /// Messages saved lately, decoded (`live.rs`).
    pub(crate) live: Live,
}

/// What one transaction changed in the writer's [`Memory`].
struct Pending {
    in_flight: in_flight::Pending,
    outbox: outbox_memo::Pending,
    short_lived: short_lived::Pending,
    bodies: body_cache::Pending,
    live: live::Pending,
    /// The engine's reopen count the transaction ran against.
    reopens: u64,
}

impl Memory {
    /// Takes in the changes of a transaction that committed.
    fn apply(&self, pending: Pending) {
        self.in_flight.apply(pending.in_flight);
        self.outbox.apply(pending.outbox, pending.reopens);
        self.short_lived.apply(pending.short_lived);
        self.bodies.apply(pending.bodies, pending.reopens);
        self.live.apply(pending.live);
    }

    /// A durable commit of the logged writer: writes the held short-lived keys, the state
    /// records and the receipt outbox entries the engine is owed first, so the log position
    /// it records never covers a write the engine lacks (`short_lived.rs`, `in_flight.rs`,
    /// `outbox_memo.rs`).
    fn durable_commit<B: Backend, R>(
        &self,
        backend: &B,
        f: impl FnOnce(&mut dyn super::backend::Kv) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let r = backend.write(|kv| {
            self.short_lived.flush_into(kv)?;
            self.in_flight.flush_into(kv)?;
            self.outbox.flush_into(kv)?;
            f(kv)
        });
        self.outbox.flushed(r.is_ok());
        let r = r?;
        self.short_lived.flushed();
        self.in_flight.flushed();
        Ok(r)
    }
}

/// The writer loop without the redo log: every group that needs it is durable in the
/// engine's own commit. Returns when every sender is gone and the queue is empty.
pub(crate) fn run<B: Backend>(
    backend: &B,
    rx: &Receiver<Request>,
    cfg: WriterConfig,
    stats: &WriterStats,
    board: &Board,
    memory: &Memory,
) {
    let cycle = Cycle::default();
    let ctx = Ctx::new(&cfg, stats, &cycle, memory, board);
    let mut spacing = Spacing::new(cfg.min_spacing, cfg.max_spacing);
    let mut last_record = Instant::now();
    let mut last_start: Option<Instant> = None;
    let mut idle_since = Instant::now();
    while let Ok(first) = rx.recv() {
        let group = gather(rx, first, &cfg, spacing.current(), last_start);
        let start = Instant::now();
        last_start = Some(start);
        stats.add_time(WriterPhase::Waiting, start - idle_since);
        cycle.begin();
        let ctx = Ctx {
            quiet: spacing.has_slack(),
            ..ctx
        };
        commit_group(backend, group, stats, ctx);
        let now = cycle.end();
        let applying = cycle.busy.get();
        stats.add_time(WriterPhase::Applying, applying);
        stats.add_time(
            WriterPhase::Committing,
            (now - start).saturating_sub(applying),
        );
        idle_since = now;
        spacing.record(&cycle, now - last_record);
        last_record = now;
    }
}

/// Longest the engine goes without a durable commit while the redo log is on (a quiet
/// gateway's checkpoints): a restart after a crash replays at most this much traffic.
pub(crate) const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Ops after which the writer checkpoints sooner than [`CHECKPOINT_EVERY`]. redb keeps the
/// pages of commits that waited for no disk in memory, and a checkpoint writes them all and
/// fsyncs while the writer waits: at full speed a second's worth took up to 110 ms, and
/// every producer queued behind it (p99 batch accept 114 ms against 29 ms without the log).
/// Bounding the work per checkpoint bounds that stall: at full speed about one every 50 ms
/// of 4–15 ms (BENCHMARKS.md, "The redo log"), while a gateway at 3 k msg/s still
/// checkpoints about once a second.
pub(crate) const CHECKPOINT_OPS: u64 = 8192;

/// A group the log thread wrote to the redo log, on its way to the writer.
pub(crate) struct Logged {
    /// Its sequence in the log.
    pub(crate) seq: u64,
    pub(crate) group: Vec<Request>,
    /// Whether the log fsync'd it (a group of crash-harmless ops only is not waited for).
    pub(crate) synced: bool,
}

/// What the log thread and the writer share.
#[derive(Debug)]
pub(crate) struct LogShared {
    /// Where the segments are.
    pub(crate) dir: std::path::PathBuf,
    /// The last group the engine holds durably (the last checkpoint): older segments may go.
    durable: AtomicU64,
    /// The gathering spacing: the writer records its busy time, the log thread gathers by it.
    spacing: Mutex<Spacing>,
}

impl LogShared {
    pub(crate) fn new(dir: std::path::PathBuf, cfg: &WriterConfig, durable: u64) -> Self {
        Self {
            dir,
            durable: AtomicU64::new(durable),
            spacing: Mutex::new(Spacing::new(cfg.min_spacing, cfg.max_spacing)),
        }
    }

    fn spacing(&self) -> std::sync::MutexGuard<'_, Spacing> {
        self.spacing.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The log thread: gathers groups as the writer would, appends each to the redo log (fsync'd
/// unless it holds only crash-harmless ops), and hands it to the writer, which applies it
/// while the next group is being written. A group the log refuses (a full disk) is answered
/// with the error here and never applied. Returns when every producer is gone.
pub(crate) fn run_log(
    rx: &Receiver<Request>,
    cfg: WriterConfig,
    mut log: LogWriter,
    mut seq: u64,
    shared: &LogShared,
    to_writer: &SyncSender<Logged>,
    stats: &WriterStats,
) {
    let mut last_start: Option<Instant> = None;
    let mut pruned = shared.durable.load(Ordering::Acquire);
    let mut buf = Vec::new();
    while let Ok(first) = rx.recv() {
        let spacing = shared.spacing().current();
        let mut group = gather(rx, first, &cfg, spacing, last_start);
        let start = Instant::now();
        last_start = Some(start);
        let sync = group.iter().flat_map(|r| &r.ops).any(ops::needs_fsync);
        buf.clear();
        let written = wal::group_record(&mut buf, seq + 1, group.iter().map(|r| r.ops.as_slice()))
            .and_then(|()| log.append(&buf, sync));
        stats.add_time(WriterPhase::Logging, start.elapsed());
        match written {
            Ok(()) => {
                if sync {
                    // On disk in the log: a crash replays them. Whoever waits only for that
                    // need not wait for the writer too.
                    for r in &mut group {
                        if let Some(durable) = r.durable.take() {
                            let _ = durable.send(());
                        }
                    }
                }
                seq += 1;
                let logged = Logged {
                    seq,
                    group,
                    synced: sync,
                };
                if to_writer.send(logged).is_err() {
                    return;
                }
            }
            Err(e) => {
                // Nothing of it is in the log (the segment was cut back): the producers
                // hear the error.
                tracing::warn!(error = %e, requests = group.len(), "Redo-log write failed; the group is refused.");
                stats
                    .requests
                    .fetch_add(group.len() as u64, Ordering::Relaxed);
                for r in group {
                    let _ = r.reply.send(Err(e.again()));
                }
            }
        }
        let durable = shared.durable.load(Ordering::Acquire);
        if durable > pruned {
            match log.checkpointed(durable, seq + 1) {
                Ok(()) => pruned = durable,
                Err(e) => tracing::warn!(error = %e, "Cannot start a new redo-log segment."),
            }
        }
    }
}

/// The last redo-log group the engine's state holds (0: none).
pub(crate) fn logged_through(kv: &dyn KvRead) -> Result<u64, StoreError> {
    let key = [keys::LOG_SEQ];
    Ok(kv.get(&key)?.and_then(|v| keys::be_u64(&v, 0)).unwrap_or(0))
}

/// The writer loop with the redo log on: applies the groups the log thread wrote, in their
/// order, each in one engine commit that waits for no disk; makes a durable checkpoint
/// every [`CHECKPOINT_OPS`] or [`CHECKPOINT_EVERY`], whichever comes first; after an engine
/// failure that reopened the engine, applies the log again from its last durable commit
/// before going on.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_logged<B: Backend>(
    backend: &B,
    from_log: &Receiver<Logged>,
    cfg: WriterConfig,
    stats: &WriterStats,
    board: &Board,
    memory: &Memory,
    shared: &LogShared,
    (mut applied, aborts): (u64, wal::AbortLog),
) {
    let cycle = Cycle::default();
    let base = Ctx::new(&cfg, stats, &cycle, memory, board);
    let mut durable = applied;
    let mut last_checkpoint = Instant::now();
    let mut ops_since: u64 = 0;
    let mut closing = false;
    let mut last_record = Instant::now();
    let mut idle_since = Instant::now();
    let mut restore = Restore {
        reopens: backend.reopens(),
        aborts,
    };
    loop {
        let next = if applied > durable {
            from_log.recv_timeout(CHECKPOINT_EVERY.saturating_sub(last_checkpoint.elapsed()))
        } else {
            from_log.recv().map_err(|_| RecvTimeoutError::Disconnected)
        };
        match next {
            Ok(Logged { seq, group, synced }) => {
                let start = Instant::now();
                stats.add_time(WriterPhase::Waiting, start - idle_since);
                cycle.begin();
                let ctx = Ctx {
                    logged: Some((seq, synced)),
                    log_reopens: restore.reopens,
                    quiet: shared.spacing().has_slack(),
                    ..base
                };
                ops_since += group.iter().map(|r| r.ops.len() as u64).sum::<u64>();
                commit_logged(backend, seq, group, stats, ctx, shared, &mut restore);
                applied = seq;
                let now = cycle.end();
                let applying = cycle.busy.get();
                stats.add_time(WriterPhase::Applying, applying);
                stats.add_time(
                    WriterPhase::Committing,
                    (now - start).saturating_sub(applying),
                );
                idle_since = now;
                shared.spacing().record(&cycle, now - last_record);
                last_record = now;
            }
            Err(RecvTimeoutError::Timeout) => {}
            // The last checkpoint, below, then the end.
            Err(RecvTimeoutError::Disconnected) => closing = true,
        }
        if applied > durable
            && (closing
                || ops_since >= CHECKPOINT_OPS
                || last_checkpoint.elapsed() >= CHECKPOINT_EVERY)
        {
            ops_since = 0;
            let start = Instant::now();
            checkpoint(
                backend,
                applied,
                &mut durable,
                stats,
                base,
                shared,
                &mut restore,
            );
            last_checkpoint = Instant::now();
            stats.add_time(WriterPhase::Committing, last_checkpoint - start);
            idle_since += last_checkpoint - start;
        }
        if closing {
            return;
        }
    }
}

/// The error of a logged transaction that found the engine reopened: not `Io`, which would
/// mark the engine for yet another reopen.
fn reopened() -> StoreError {
    StoreError::Backend("the engine was reopened: the redo log is applied again first".into())
}

/// `Ok` while the engine's reopen count is still `expected`, else [`reopened`]: run inside a
/// transaction, it says whether the state it works on is complete.
fn not_reopened<B: Backend>(backend: &B, expected: u64) -> Result<(), StoreError> {
    if backend.reopens() == expected {
        Ok(())
    } else {
        Err(reopened())
    }
}

/// One durable engine commit, which holds every group applied so far — unless the engine
/// was reopened since (it went back to its last durable commit): then the commit is refused
/// and the log is applied again instead, so a checkpoint never claims groups the engine
/// lost (the log thread deletes the segments a checkpoint covers).
fn checkpoint<B: Backend>(
    backend: &B,
    applied: u64,
    durable: &mut u64,
    stats: &WriterStats,
    ctx: Ctx<'_>,
    shared: &LogShared,
    restore: &mut Restore,
) {
    let expected = restore.reopens;
    // What the checkpoint holds is what the engine says it holds, read in the same
    // transaction: normally every group applied, but never more (segments and abort records
    // are let go on its word).
    let done = ctx.memory.durable_commit(backend, |kv| {
        not_reopened(backend, expected)?;
        logged_through(kv)
    });
    match done {
        Ok(held) => {
            if held < applied {
                tracing::warn!(
                    held,
                    applied,
                    "The engine holds fewer groups than were applied; the log keeps them."
                );
            }
            *durable = applied;
            shared.durable.store(held, Ordering::Release);
            restore.aborts.checkpointed(held);
            stats.checkpoints.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => {
            tracing::warn!(error = %e, "Store checkpoint failed; the redo log keeps the groups.");
            let none = |_: u64, _: usize| false;
            if let Err(e) = restore_if_reopened(backend, applied, &none, ctx, shared, restore) {
                tracing::warn!(error = %e, "Cannot apply the redo log again yet; the next group tries.");
            }
        }
    }
}

/// What bringing the engine back after a reopen needs.
struct Restore {
    /// The engine's reopen count when its state was last known complete.
    reopens: u64,
    /// Batches that failed (durable before their producers hear it).
    aborts: wal::AbortLog,
}

/// If the engine was reopened since its state was last complete (an I/O error latched it:
/// it went back to its last durable commit), applies the log again from there through group
/// `through`, skipping the batches `skip` names as well as the failed ones.
fn restore_if_reopened<B: Backend>(
    backend: &B,
    through: u64,
    skip: &dyn Fn(u64, usize) -> bool,
    ctx: Ctx<'_>,
    shared: &LogShared,
    restore: &mut Restore,
) -> Result<(), StoreError> {
    // A read reopens a latched engine first.
    let after = backend.read(logged_through)?;
    let reopens = backend.reopens();
    if reopens == restore.reopens {
        return Ok(());
    }
    let (groups, _) = wal::read(&shared.dir, after, Some(through))?;
    // Held keys are changes after the commit the engine went back to: the replay makes them
    // again.
    ctx.memory.short_lived.clear();
    ctx.memory.outbox.clear();
    tracing::warn!(
        from = after,
        through,
        groups = groups.len(),
        "Store engine reopened; applying the redo log again."
    );
    replay(
        backend,
        groups,
        skip,
        Ctx {
            log_reopens: reopens,
            ..ctx
        },
    )?;
    restore.reopens = reopens;
    Ok(())
}

/// Applies groups read back from the log, each as the writer applied it the first time
/// (one commit, or batch by batch where the group failed), answering no one. A batch that
/// fails again is skipped, as it was then.
fn replay<B: Backend>(
    backend: &B,
    groups: Vec<wal::LoggedGroup>,
    skip: &dyn Fn(u64, usize) -> bool,
    ctx: Ctx<'_>,
) -> Result<(), StoreError> {
    for g in groups {
        let seq = g.seq;
        let batches: Vec<Request> = g
            .batches
            .into_iter()
            .enumerate()
            .filter(|(i, _)| !skip(seq, *i))
            .filter_map(|(_, ops)| {
                ops.map(|ops| Request {
                    ops,
                    reply: oneshot::channel().0,
                    durable: None,
                })
            })
            .collect();
        let ctx = Ctx {
            logged: Some((seq, true)),
            ..ctx
        };
        if write_group(backend, &batches, ctx).is_ok() {
            continue;
        }
        for req in &batches {
            if let Err(e) = write_group(backend, std::slice::from_ref(req), ctx) {
                if matches!(e, StoreError::Io(_) | StoreError::NoSpace(_)) {
                    return Err(e);
                }
                // Not recorded as aborted, so it applied the first time (or its abort record
                // could not be written): skipping it may lose what its producer was told is
                // stored, which is worth an operator's look; refusing to open would stop
                // everything else instead.
                tracing::error!(error = %e, group = seq, "A logged batch failed when applied again; skipped.");
            }
        }
    }
    Ok(())
}

/// Replays what the log under `dir` holds past the engine's last durable commit, before the
/// store starts (crash recovery), and makes it durable. Returns the last group in the log.
/// In-flight records of leases replayed are dropped with this writer's memory, as a crash
/// drops them: the store's open returns those messages to their queues.
pub(crate) fn replay_at_open<B: Backend>(
    backend: &B,
    dir: &std::path::Path,
    cfg: &WriterConfig,
) -> Result<u64, StoreError> {
    let after = backend.read(logged_through)?;
    let (groups, last) = wal::read(dir, after, None)?;
    if groups.is_empty() {
        return Ok(last);
    }
    let n = groups.len();
    let cycle = Cycle::default();
    let board = Board::new(depth::QueueDepths::default());
    let memory = Memory::default();
    let stats = WriterStats::default();
    let ctx = Ctx {
        log_reopens: backend.reopens(),
        ..Ctx::new(cfg, &stats, &cycle, &memory, &board)
    };
    replay(backend, groups, &|_, _| false, ctx)?;
    // Durable, with the lease keys and held receipts of the replay, which the lease
    // recovery at open reads from the engine.
    memory.durable_commit(backend, |_| Ok(()))?;
    tracing::info!(
        groups = n,
        from = after,
        through = last,
        "Store: redo log applied again after a crash."
    );
    Ok(last)
}

/// Publishes a committed group's counters and answers its producers.
fn answer(
    requests: Vec<Request>,
    (results, depths): GroupResults,
    stats: &WriterStats,
    ctx: Ctx<'_>,
) {
    let n_ops: usize = requests.iter().map(|r| r.ops.len()).sum();
    ctx.board.publish(depths);
    stats.commits.fetch_add(1, Ordering::Relaxed);
    stats.ops.fetch_add(n_ops as u64, Ordering::Relaxed);
    stats
        .requests
        .fetch_add(requests.len() as u64, Ordering::Relaxed);
    ctx.cycle.answered.set(Some(Instant::now()));
    for (req, res) in requests.into_iter().zip(results) {
        // A producer that stopped waiting has nothing to be told.
        let _ = req.reply.send(Ok(res));
    }
}

/// Applies logged group `seq` in one relaxed engine commit and answers it; where that fails,
/// batch by batch, each failed batch recorded as aborted so a replay skips it too.
fn commit_logged<B: Backend>(
    backend: &B,
    seq: u64,
    group: Vec<Request>,
    stats: &WriterStats,
    ctx: Ctx<'_>,
    shared: &LogShared,
    restore: &mut Restore,
) {
    // The engine's state is complete through `seq - 1` unless it was reopened, which the
    // transaction itself checks (`Ctx::log_reopens`).
    let together = write_group(backend, &group, ctx);
    match together {
        Ok(results) => answer(group, results, stats, ctx),
        Err(e) => {
            tracing::warn!(error = %e, batches = group.len(), "Group commit failed; retrying batches alone.");
            let mut done: Vec<usize> = Vec::new();
            for (i, req) in group.into_iter().enumerate() {
                // If the engine was reopened meanwhile, it is brought back to this group's
                // start plus the batches of it already answered.
                let skip = |s: u64, b: usize| s == seq && !done.contains(&b);
                let res =
                    restore_if_reopened(backend, seq, &skip, ctx, shared, restore).and_then(|()| {
                        let ctx = Ctx {
                            log_reopens: restore.reopens,
                            ..ctx
                        };
                        write_alone(backend, &req, stats, ctx)
                    });
                match &res {
                    Ok(_) => done.push(i),
                    Err(e) => {
                        // Durable before the producer hears it: no replay applies it.
                        if let Err(why) = restore.aborts.record(seq, i) {
                            tracing::error!(error = %why, group = seq, batch = i, failed = %e, "Cannot record a failed batch as aborted; a replay after a crash may apply it.");
                        }
                    }
                }
                stats.requests.fetch_add(1, Ordering::Relaxed);
                let _ = req.reply.send(res);
            }
        }
    }
}

fn apply_all(
    kv: &mut dyn super::backend::Kv,
    ops: &[Op],
    index_by_number: bool,
) -> Result<Vec<OpResult>, StoreError> {
    ops.iter()
        .map(|op| ops::apply(kv, op, index_by_number))
        .collect()
}

/// One result list per request, and the queue counters' new values.
type GroupResults = (Vec<Vec<OpResult>>, Vec<(Slot, u64)>);

/// What every commit of one writer shares: its settings and its counters.
#[derive(Clone, Copy)]
struct Ctx<'a> {
    index_by_number: bool,
    /// Where engine calls are counted (`WriterConfig::count_kv_ops`), if anywhere.
    counts: Option<&'a KvCounts>,
    /// What the current cycle tells the spacing (`spacing.rs`): time spent applying ops,
    /// and whether a lease found a backlog.
    cycle: &'a Cycle,
    /// What the writer keeps in memory: changed by a commit only once it committed.
    memory: &'a Memory,
    /// The published queue counters, read again from the engine after it was reopened.
    board: &'a Board,
    /// With the redo log on: the group's log sequence (written into the engine with it, see
    /// `keys::LOG_SEQ`) and whether the log fsync'd it.
    logged: Option<(u64, bool)>,
    /// With the redo log on: the engine's reopen count its state is complete for. A
    /// transaction that finds the engine reopened since (it went back to its last durable
    /// commit: an I/O error, the writer's or a reader's, latched it) refuses to apply, so the
    /// writer applies the log again first.
    log_reopens: u64,
    /// The writer has time to spare (`Spacing::has_slack`): the bodies its inserts write are
    /// kept for the leases that follow them (`body_cache.rs`).
    quiet: bool,
}

impl<'a> Ctx<'a> {
    /// A writer's context outside any logged group.
    fn new(
        cfg: &WriterConfig,
        stats: &'a WriterStats,
        cycle: &'a Cycle,
        memory: &'a Memory,
        board: &'a Board,
    ) -> Self {
        Self {
            index_by_number: cfg.index_by_number,
            counts: cfg.count_kv_ops.then_some(&stats.kv),
            cycle,
            memory,
            board,
            logged: None,
            log_reopens: 0,
            quiet: false,
        }
    }
}

/// Applies every request's ops in one transaction, through the in-flight records, the
/// terminal index runs, the outbox-counter cache and the queue counters (and the call counter, when on). Returns
/// the in-flight records' changes, to take in once the transaction committed.
fn apply_group(
    kv: &mut dyn super::backend::Kv,
    group: &[Request],
    ctx: Ctx<'_>,
    reopens: u64,
) -> Result<(GroupResults, Pending), StoreError> {
    let start = Instant::now();
    if ctx.logged.is_some() && reopens != ctx.log_reopens {
        return Err(reopened());
    }
    if ctx.memory.in_flight.check_after_reopen(reopens, kv)? {
        // The reopened engine went back to its last durable commit, counters included: the
        // board may show relaxed commits that are gone.
        ctx.board.reset(depth::persisted(kv)?);
    }
    let res = match ctx.counts {
        None => apply_counted(kv, group, ctx, reopens),
        Some(counts) => {
            let mut counting = CountingKv::new(kv);
            let res = apply_counted(&mut counting, group, ctx, reopens);
            counting.finish(counts);
            res
        }
    };
    ctx.cycle.busy.set(ctx.cycle.busy.get() + start.elapsed());
    res
}

fn apply_counted(
    kv: &mut dyn super::backend::Kv,
    group: &[Request],
    ctx: Ctx<'_>,
    reopens: u64,
) -> Result<(GroupResults, Pending), StoreError> {
    // Lease keys and held receipts stay in memory only while the redo log can make them again.
    let mut short_lived = None;
    let kv: &mut dyn super::backend::Kv = if ctx.logged.is_some() {
        short_lived.insert(ShortLivedKv::new(kv, &ctx.memory.short_lived))
    } else {
        kv
    };
    let mut bodies = BodyCacheKv::new(kv, &ctx.memory.bodies, reopens, ctx.quiet);
    let mut depth = DepthKv::new(&mut bodies);
    let mut cache = SeqCache::new(&mut depth);
    let mut runs = TerminalRuns::new(&mut cache);
    let mut in_flight = InFlightKv::new(&mut runs, &ctx.memory.in_flight, ctx.logged.is_some());
    // New receipt entries wait in memory for a durable commit while the log can make them.
    let mut outbox = OutboxMemoKv::new(&mut in_flight, &ctx.memory.outbox, ctx.logged.is_some());
    // A message's next op takes it decoded from memory.
    let mut live = LiveKv::new(&mut outbox, &ctx.memory.live, reopens);
    let results = group
        .iter()
        .map(|r| apply_all(&mut live, &r.ops, ctx.index_by_number))
        .collect::<Result<Vec<_>, _>>()?;
    let live = live.into_pending();
    if group.iter().zip(&results).any(|(r, res)| {
        r.ops
            .iter()
            .zip(res)
            .any(|(op, res)| ops::leased_full(op, res))
    }) {
        ctx.cycle.backlog.set(true);
    }
    if let Some((seq, _)) = ctx.logged {
        super::backend::Kv::put(&mut outbox, &[keys::LOG_SEQ], &seq.to_be_bytes())?;
    }
    let outbox = outbox.into_pending();
    let in_flight = in_flight.into_pending();
    runs.flush()?;
    cache.flush()?;
    let depths = depth.flush()?;
    let pending = Pending {
        bodies: bodies.into_pending(),
        in_flight,
        outbox,
        short_lived: short_lived
            .map(ShortLivedKv::into_pending)
            .unwrap_or_default(),
        live,
        reopens,
    };
    Ok(((results, depths), pending))
}

/// Commits `group` in one transaction: durably if any of its ops needs it, else relaxed
/// (see `ops::needs_fsync`). The in-flight records take in the group's changes once it
/// committed (a failed group's are dropped with it).
fn write_group<B: Backend>(
    backend: &B,
    group: &[Request],
    ctx: Ctx<'_>,
) -> Result<GroupResults, StoreError> {
    // With the redo log on, the log made the group durable (or it needs no durability).
    let durable = ctx.logged.is_none() && group.iter().flat_map(|r| &r.ops).any(ops::needs_fsync);
    let log_synced = ctx.logged.is_some_and(|(_, synced)| synced);
    // Read inside the transaction: the engine reopens (if an I/O error latched it) before
    // the transaction begins, so the count seen there covers the state it works on.
    let reopens = || backend.reopens();
    if durable {
        let (results, pending) = backend.write(|kv| apply_group(kv, group, ctx, reopens()))?;
        ctx.memory.apply(pending);
        Ok(results)
    } else {
        let (results, pending) =
            backend.write_relaxed(|kv| apply_group(kv, group, ctx, reopens()))?;
        // Committed and visible: what follows only adds durability.
        ctx.memory.apply(pending);
        if !log_synced && results.0.iter().flatten().any(ops::finalized_something) {
            // A relaxed op turned out to end messages (a lease that expired some): that
            // queued receipts and advanced outbox sequences, which a crash must not roll back
            // (the sequence would be handed out again for another receipt). Commits are
            // durable in order, so one durable commit after it makes it durable before any
            // producer is answered.
            match ctx.logged {
                Some(_) => ctx
                    .memory
                    .durable_commit(backend, |_| not_reopened(backend, ctx.log_reopens))?,
                None => backend.write(|_| Ok(()))?,
            }
        }
        Ok(results)
    }
}

fn commit_group<B: Backend>(backend: &B, group: Vec<Request>, stats: &WriterStats, ctx: Ctx<'_>) {
    let together = write_group(backend, &group, ctx);
    match together {
        Ok(results) => answer(group, results, stats, ctx),
        Err(e) if group.len() == 1 => {
            tracing::warn!(error = %e, "store commit failed");
            stats.requests.fetch_add(1, Ordering::Relaxed);
            if let Some(req) = group.into_iter().next() {
                let _ = req.reply.send(Err(e));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, batches = group.len(), "group commit failed; retrying batches alone");
            for req in group {
                let res = write_alone(backend, &req, stats, ctx);
                stats.requests.fetch_add(1, Ordering::Relaxed);
                let _ = req.reply.send(res);
            }
        }
    }
}

/// Commits one batch of a group that failed as a whole, on its own: publishes its counters
/// and counts the commit when it succeeds. The caller answers its producer.
fn write_alone<B: Backend>(
    backend: &B,
    req: &Request,
    stats: &WriterStats,
    ctx: Ctx<'_>,
) -> Result<Vec<OpResult>, StoreError> {
    let (mut results, depths) = write_group(backend, std::slice::from_ref(req), ctx)?;
    ctx.board.publish(depths);
    stats.commits.fetch_add(1, Ordering::Relaxed);
    stats.ops.fetch_add(req.ops.len() as u64, Ordering::Relaxed);
    Ok(results.pop().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::id::MessageId;
    use crate::store::model::PartState;

    fn request(ops: Vec<Op>) -> Request {
        Request {
            ops,
            reply: oneshot::channel().0,
            durable: None,
        }
    }

    fn submitted(id: u64) -> Op {
        Op::Submitted {
            id: MessageId(id),
            part: 1,
            parts: 1,
            center_id: compact_str::format_compact!("C{id}"),
            now_ms: 1,
        }
    }

    #[test]
    fn submit_responses_go_first_in_a_group_and_keep_their_order() {
        let receipt = Op::Receipt {
            channel: "sim".into(),
            center_id: "C1".into(),
            part_state: PartState::Delivered,
            stat: "DELIVRD".into(),
            err: "000".into(),
            now_ms: 2,
        };
        let requeue = Op::Requeue {
            id: MessageId(9),
            due_ms: 5,
        };
        let mut group = vec![
            request(vec![receipt]),
            request(vec![submitted(1)]),
            request(vec![requeue.clone()]),
            request(vec![requeue, submitted(2)]),
        ];
        submit_responses_first(&mut group);
        let shape: Vec<String> = group
            .iter()
            .map(|r| {
                r.ops
                    .iter()
                    .map(|op| match op {
                        Op::Submitted { id, .. } => format!("S{}", id.0),
                        Op::Receipt { .. } => "R".into(),
                        _ => "Q".into(),
                    })
                    .collect::<Vec<_>>()
                    .join("+")
            })
            .collect();
        assert_eq!(shape, ["S1", "Q+S2", "R", "Q"]);
    }
}

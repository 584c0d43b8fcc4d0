//! The group-commit writer: one thread owns every write transaction.
//!
//! Producers send a request (a batch of ops + a oneshot for the answer). The writer takes the
//! first request, then drains whatever else is queued — up to `max_ops` ops, lingering at most
//! `max_wait` for more — applies them all in ONE transaction, commits durably, and answers every
//! producer. While one fsync runs, new requests pile up and go into the next commit, so commit
//! cost is shared by everyone who arrived meanwhile (the shape of TiKV raftstore's
//! `async_io/write.rs` worker).
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

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::backend::Backend;
use super::counting::{CountingKv, KvCounts};
use super::depth::{self, Board, DepthKv, Slot};
use super::error::StoreError;
use super::in_flight::{InFlight, InFlightKv, Pending};
use super::ops::{self, Op, OpResult};
use super::seq_cache::SeqCache;
use super::spacing::Spacing;

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
    /// load it adds nothing. Zero: only the fixed `min_spacing`. The default, 10 ms, was
    /// chosen end to end through `serve` at 3 k msg/s: 105 µs of gateway CPU per message
    /// at 4 ms, 64 at 10, 47 at 20, with the HTTP accept's p99 at 5.5, 10.6 and 18.4 ms —
    /// 10 keeps a quiet gateway's p99 well inside the 20 ms the accept promises.
    pub max_spacing: Duration,
    /// Write the destination index (one more key per insert) that operators' lookup by
    /// number reads (`GET /v1/lookup/messages?to=`). On by default; a deployment that never
    /// looks numbers up can save the write (BENCHMARKS.md, "The destination index").
    pub index_by_number: bool,
    /// Count the engine calls of every commit into [`WriterStats::kv`] (benches and tests:
    /// puts, deletes and gets per message). Off by default: the gateway does not pay for it.
    pub count_kv_ops: bool,
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
            max_spacing: Duration::from_millis(10),
            index_by_number: true,
            count_kv_ops: false,
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
}

/// Counters for benches and ops dashboards.
#[derive(Debug, Default)]
pub struct WriterStats {
    commits: AtomicU64,
    ops: AtomicU64,
    requests: AtomicU64,
    kv: KvCounts,
    /// Nanoseconds of the writer thread's wall time, by [`WriterPhase`].
    nanos: [AtomicU64; 3],
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
    Committing = 2,
}

impl WriterPhase {
    /// Every phase, in label order.
    pub const ALL: [Self; 3] = [Self::Waiting, Self::Applying, Self::Committing];

    /// The metric label.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Waiting => "waiting",
            Self::Applying => "applying",
            Self::Committing => "committing",
        }
    }
}

impl WriterStats {
    /// Durable commits made.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }
    /// Ops applied.
    pub fn ops(&self) -> u64 {
        self.ops.load(Ordering::Relaxed)
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

/// The writer loop; returns when every sender is gone and the queue is empty.
pub(crate) fn run<B: Backend>(
    backend: &B,
    rx: &Receiver<Request>,
    cfg: WriterConfig,
    stats: &WriterStats,
    board: &Board,
    in_flight: &InFlight,
) {
    let busy = Cell::new(Duration::ZERO);
    let ctx = Ctx {
        index_by_number: cfg.index_by_number,
        counts: cfg.count_kv_ops.then_some(&stats.kv),
        busy: &busy,
        in_flight,
        board,
    };
    let mut spacing = Spacing::new(cfg.min_spacing, cfg.max_spacing);
    let mut last_record = Instant::now();
    let mut last_start: Option<Instant> = None;
    let mut idle_since = Instant::now();
    while let Ok(first) = rx.recv() {
        let mut n = first.ops.len();
        let mut group = vec![first];
        let now = Instant::now();
        let deadline = (now + cfg.max_wait).max(last_start.map_or(now, |t| t + spacing.current()));
        while n < cfg.max_ops {
            let next = match rx.try_recv() {
                Ok(r) => r,
                Err(TryRecvError::Disconnected) => break,
                Err(TryRecvError::Empty) => {
                    let now = Instant::now();
                    if now >= deadline {
                        break;
                    }
                    match rx.recv_timeout(deadline - now) {
                        Ok(r) => r,
                        Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                    }
                }
            };
            n += next.ops.len();
            group.push(next);
        }
        let start = Instant::now();
        last_start = Some(start);
        stats.add_time(WriterPhase::Waiting, start - idle_since);
        ctx.busy.set(Duration::ZERO);
        commit_group(backend, group, stats, board, ctx);
        let now = Instant::now();
        let applying = ctx.busy.get();
        stats.add_time(WriterPhase::Applying, applying);
        stats.add_time(
            WriterPhase::Committing,
            (now - start).saturating_sub(applying),
        );
        idle_since = now;
        spacing.record(applying, now - last_record);
        last_record = now;
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
    /// Time spent applying ops in the current cycle (`spacing.rs` reads it).
    busy: &'a Cell<Duration>,
    /// State records of leased messages (`in_flight.rs`): changed by a commit only once it
    /// committed.
    in_flight: &'a InFlight,
    /// The published queue counters, read again from the engine after it was reopened.
    board: &'a Board,
}

/// Applies every request's ops in one transaction, through the in-flight records, the
/// outbox-counter cache and the queue counters (and the call counter, when on). Returns
/// the in-flight records' changes, to take in once the transaction committed.
fn apply_group(
    kv: &mut dyn super::backend::Kv,
    group: &[Request],
    ctx: Ctx<'_>,
    reopens: u64,
) -> Result<(GroupResults, Pending), StoreError> {
    let start = Instant::now();
    if ctx.in_flight.check_after_reopen(reopens, kv)? {
        // The reopened engine went back to its last durable commit, counters included: the
        // board may show relaxed commits that are gone.
        ctx.board.reset(depth::persisted(kv)?);
    }
    let res = match ctx.counts {
        None => apply_counted(kv, group, ctx),
        Some(counts) => {
            let mut counting = CountingKv::new(kv);
            let res = apply_counted(&mut counting, group, ctx);
            counting.finish(counts);
            res
        }
    };
    ctx.busy.set(ctx.busy.get() + start.elapsed());
    res
}

fn apply_counted(
    kv: &mut dyn super::backend::Kv,
    group: &[Request],
    ctx: Ctx<'_>,
) -> Result<(GroupResults, Pending), StoreError> {
    let mut depth = DepthKv::new(kv);
    let mut cache = SeqCache::new(&mut depth);
    let mut in_flight = InFlightKv::new(&mut cache, ctx.in_flight);
    let results = group
        .iter()
        .map(|r| apply_all(&mut in_flight, &r.ops, ctx.index_by_number))
        .collect::<Result<Vec<_>, _>>()?;
    let pending = in_flight.into_pending();
    cache.flush()?;
    Ok(((results, depth.flush()?), pending))
}

/// Commits `group` in one transaction: durably if any of its ops needs it, else relaxed
/// (see `ops::needs_fsync`). The in-flight records take in the group's changes once it
/// committed (a failed group's are dropped with it).
fn write_group<B: Backend>(
    backend: &B,
    group: &[Request],
    ctx: Ctx<'_>,
) -> Result<GroupResults, StoreError> {
    let durable = group.iter().flat_map(|r| &r.ops).any(ops::needs_fsync);
    // Read inside the transaction: the engine reopens (if an I/O error latched it) before
    // the transaction begins, so the count seen there covers the state it works on.
    let reopens = || backend.reopens();
    if durable {
        let (results, pending) = backend.write(|kv| apply_group(kv, group, ctx, reopens()))?;
        ctx.in_flight.apply(pending);
        Ok(results)
    } else {
        let (results, pending) =
            backend.write_relaxed(|kv| apply_group(kv, group, ctx, reopens()))?;
        // Committed and visible: what follows only adds durability.
        ctx.in_flight.apply(pending);
        if results.0.iter().flatten().any(ops::finalized_something) {
            // A relaxed op turned out to end messages (a lease that expired some): that
            // queued receipts and advanced outbox sequences, which a crash must not roll back
            // (the sequence would be handed out again for another receipt). Commits are
            // durable in order, so one durable commit after it makes it durable before any
            // producer is answered.
            backend.write(|_| Ok(()))?;
        }
        Ok(results)
    }
}

fn commit_group<B: Backend>(
    backend: &B,
    group: Vec<Request>,
    stats: &WriterStats,
    board: &Board,
    ctx: Ctx<'_>,
) {
    let n_ops: usize = group.iter().map(|r| r.ops.len()).sum();
    let together = write_group(backend, &group, ctx);
    match together {
        Ok((results, depths)) => {
            board.publish(depths);
            stats.commits.fetch_add(1, Ordering::Relaxed);
            stats.ops.fetch_add(n_ops as u64, Ordering::Relaxed);
            stats
                .requests
                .fetch_add(group.len() as u64, Ordering::Relaxed);
            for (req, res) in group.into_iter().zip(results) {
                // A producer that stopped waiting has nothing to be told.
                let _ = req.reply.send(Ok(res));
            }
        }
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
                let res =
                    write_group(backend, std::slice::from_ref(&req), ctx).map(|(mut r, depths)| {
                        board.publish(depths);
                        r.pop().unwrap_or_default()
                    });
                if res.is_ok() {
                    stats.commits.fetch_add(1, Ordering::Relaxed);
                    stats.ops.fetch_add(req.ops.len() as u64, Ordering::Relaxed);
                }
                stats.requests.fetch_add(1, Ordering::Relaxed);
                let _ = req.reply.send(res);
            }
        }
    }
}

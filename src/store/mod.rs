//! Durable message store: one trait ([`Backend`]), engines behind it, and the [`Store`] handle
//! that funnels every write through a single group-commit writer thread.
//!
//! - `backend.rs`: the engine trait (names no engine crate).
//! - `redb_backend.rs` (default), `sled_backend.rs` (`--features sled`), `fjall_backend.rs`
//!   (`--features fjall`), `any.rs`: engines and the config-selected enum of them.
//! - `keys.rs`: key layout; `model.rs`: records; `codec.rs`: their binary on-disk format;
//!   `id.rs`: message ids.
//! - `ops.rs`: every state change, written once for all engines; `reads.rs`: pure lookups.
//! - `content.rs`: content-addressed MMS bodies (files, once per digest) and their
//!   reference counts, kept in the same commits as the messages that reference them.
//! - `stop.rs`: emergency stops (durable filters checked by every lease, swept through the
//!   tag index) and pause switches.
//! - `message_store.rs`: [`MessageStore`], the operation-level trait every caller outside the
//!   store holds (as [`GatewayStore`]); [`Store`] implements it. Its docs say how a clustered
//!   implementation fits.
//! - `writer.rs`: the group-commit writer; `counting.rs`: its optional count of engine calls
//!   (benches, tests); `spacing.rs`: the time between its commits, adapted to its load; `seq_cache.rs`:
//!   its per-group cache of outbox counters; `depth.rs`: exact
//!   queue-depth counters kept in every write transaction; `in_flight.rs` and
//!   `outbox_memo.rs`: what it keeps in memory beside the engine (leased messages' state
//!   records; the newest receipt outbox entries with their events, which `outbox` answers
//!   from).
//!
//! Writes (including leasing, which moves messages from ready to in flight) go through the
//! writer; pure reads (`get`, `by_center`, `outbox`, …) open a read transaction directly. They
//! are short synchronous calls; from async code they may be called inline for single lookups.
//!
//! How the gateway drives it through [`MessageStore`] (the store never reads a clock; every op
//! carries `now`):
//! - **ingress**: `store.ids().next(now)` per message, route + schedule to fill `channel` and
//!   `due_ms`, then one `insert_batch` per HTTP request; answer 202 after it resolves
//!   (`Duplicate(id)` → `duplicate: true`). A message with no route can be inserted with a
//!   final state so the client still gets a receipt.
//! - **channel worker**: sleep until `next_due(channel, lane)` (see `schedule::Scheduler`),
//!   `lease(channel, lane, now, k, lease_ms)`, submit, then one `submit` with
//!   `Op::Submitted` per part (center ids normalised), `Op::Requeue` for retryable failures,
//!   `Op::Finish` for permanent ones. Call `recover(now)` every few seconds.
//! - **receipts**: `Op::Receipt` per DLR (a DLR that beats its submit response is held,
//!   `ReceiptHeld`, and applied by the later `Submitted`, which answers `ReceiptApplied`);
//!   final states put a `ReceiptEvent` in the account's
//!   outbox in the same commit. Deliver from `outbox(account, after, n)`, then `outbox_ack`.
//! - **replies**: `Op::MoEnqueue` keeps an MO in the account's MO outbox (answer the center
//!   only after that commit); deliver from `mo_outbox(account, after, n)`, then `Op::MoDelete`.
//! - **housekeeping**: `purge(now - retention, n)` until it returns less than `n` (it also
//!   removes the content files no message references any more).
//! - **MMS content**: `put_content(body)` (durable file, pinned) before the insert that
//!   references its digest; drop the pin after that commit. `load_content(digest)` to send.
//! - **emergency stop**: `stop(account, filter, now, hold)` records the stop durably (from
//!   that commit no lease hands out a match), then `stop_step` until the record is `done`;
//!   `stop_epoch()` changes after every stop, so a dispatcher can give back what it buffered.
//!   `retire_stops(now)` periodically. Pauses: `set_pause`, `pauses`, `unpark` on resume.
//! - **metrics**: `queue_depths()` — exact ready and in-flight counts kept by the writer in
//!   every commit, read from memory — copied into gauges every second.

mod any;
mod backend;
mod body_cache;
mod codec;
pub mod content;
mod counting;
mod depth;
mod error;
#[cfg(feature = "fjall")]
mod fjall_backend;
mod generations;
mod id;
mod in_flight;
mod keys;
mod live;
mod message_store;
mod model;
mod ops;
mod outbox_memo;
mod reads;
mod redb_backend;
mod seq_cache;
mod short_lived;
#[cfg(feature = "sled")]
mod sled_backend;
mod spacing;
mod stop;
mod terminal_runs;
mod wal;
mod writer;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

use tokio::sync::{Semaphore, oneshot};

/// How many times a lookup reads when its snapshot raced the start or end of a lease
/// (`InFlightRead::load`); the last read is answered whatever it shows.
const READS_AFTER_A_LEASE: u32 = 3;

/// Groups the log thread may have written ahead of the writer: enough that the next group's
/// fsync runs while the writer applies the last one, few enough that a slow writer makes the
/// log thread gather larger groups instead of queueing small ones.
const LOG_AHEAD: usize = 2;

pub use any::{AnyBackend, BackendKind};
pub use backend::{Backend, Kv, KvRead};
pub use content::{ContentPin, ContentStore};
pub use counting::KvCounts;
pub use depth::QueueDepths;
pub use error::{StoreError, is_no_space};
#[cfg(feature = "fjall")]
pub use fjall_backend::FjallBackend;
pub use id::{ID_TEXT_LEN, IdGenerator, MessageId, NODE_BITS, ParseIdError, SEQ_BITS};
pub use message_store::{GatewayStore, MessageStore};
pub use model::{
    EncodingHint, Lane, Message, MessageKind, MessageState, MoEvent, OutboxEntry, Part, PartState,
    Payload, Receipt, ReceiptEvent, ReceiptOriginal, SMPP_RECEIPT_TAG,
};
pub use ops::{EARLY_RECEIPT_FOR_MS, Op, OpResult};
pub use redb_backend::RedbBackend;
#[cfg(feature = "sled")]
pub use sled_backend::SledBackend;
pub use stop::{PauseTarget, StopCounts, StopFilter, StopRecord};
pub use writer::{WriterConfig, WriterPhase, WriterStats};

/// Result of leasing: messages now in flight, and those that expired instead.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Leased {
    /// Messages leased to the caller, due-time order.
    pub messages: Vec<Message>,
    /// Messages that ended as `expired` (their receipt is in the outbox).
    pub expired: Vec<MessageId>,
    /// Messages that ended as `cancelled` by an active stop (their receipt is in the outbox).
    pub cancelled: Vec<MessageId>,
}

struct Inner<B: Backend> {
    backend: Arc<B>,
    tx: Option<mpsc::Sender<writer::Request>>,
    permits: Arc<Semaphore>,
    queue_ops: usize,
    ids: IdGenerator,
    stats: Arc<WriterStats>,
    depths: Arc<depth::Board>,
    /// Bumped after every committed stop: dispatchers compare it (one atomic load per
    /// message) to learn that what they buffered may have to go back to be filtered.
    stop_epoch: AtomicU64,
    /// MMS bodies; `None` for a store opened without a content directory.
    content: Option<Arc<ContentStore>>,
    /// Whether inserts write the destination index (`WriterConfig::index_by_number`).
    index_by_number: bool,
    /// What the writer keeps in memory: state records of leased messages (`in_flight.rs`),
    /// the newest receipt outbox entries (`outbox_memo.rs`).
    memory: Arc<writer::Memory>,
    thread: Option<JoinHandle<()>>,
    /// The redo log's thread, when the log is on (`wal.rs`).
    log_thread: Option<JoinHandle<()>>,
}

impl<B: Backend> Drop for Inner<B> {
    fn drop(&mut self) {
        // Closing the channel lets the writer finish queued requests and exit; joining means
        // the engine is released (file lock dropped) when the last handle goes.
        self.tx.take();
        // The log thread goes first: its end closes the writer's queue.
        let threads = [
            ("log", self.log_thread.take()),
            ("writer", self.thread.take()),
        ];
        for (name, t) in threads {
            if let Some(t) = t
                && t.join().is_err()
            {
                tracing::error!(thread = name, "Store thread panicked.");
            }
        }
    }
}

/// Where the writer thread takes its groups from.
enum WriterSource {
    /// The producers' queue: the writer gathers groups itself (no redo log).
    Producers(mpsc::Receiver<writer::Request>),
    /// The log thread, which gathered and logged them.
    Log {
        /// Its queue of logged groups.
        from_log: mpsc::Receiver<writer::Logged>,
        /// What the two threads share.
        shared: Arc<writer::LogShared>,
        /// The last group the engine holds at start.
        last: u64,
        /// The record of failed batches, the writer's to keep.
        aborts: wal::AbortLog,
    },
}

/// Handle to the store. Cheap to clone; the writer stops when the last clone is dropped.
pub struct Store<B: Backend> {
    inner: Arc<Inner<B>>,
}

impl<B: Backend> Clone for Store<B> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<B: Backend> std::fmt::Debug for Store<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.inner.backend.name())
            .finish_non_exhaustive()
    }
}

impl<B: Backend> Store<B> {
    /// Opens the store on `backend`: returns every lease of the previous run to its ready
    /// queue (crash recovery), loads the queue counters (seeding them by one scan if the data
    /// directory predates them), seeds the id generator past the newest stored id, starts the
    /// writer. `_now_ms` is kept for callers; recovery no longer depends on the time (it used
    /// to recover only leases expired by then).
    pub fn open(backend: B, cfg: WriterConfig, now_ms: u64) -> Result<Self, StoreError> {
        Self::open_inner(backend, cfg, now_ms, None, None)
    }

    /// [`open`](Self::open) with MMS content files under `content_dir`: files no committed
    /// message references (an insert that never committed, a release a crash interrupted)
    /// are removed before the store is handed out.
    ///
    /// # Errors
    /// As [`open`](Self::open), and the content directory cannot be created or swept.
    pub fn open_with_content(
        backend: B,
        cfg: WriterConfig,
        now_ms: u64,
        content_dir: &std::path::Path,
    ) -> Result<Self, StoreError> {
        let content = Arc::new(ContentStore::open(content_dir)?);
        Self::open_inner(backend, cfg, now_ms, Some(content), None)
    }

    /// [`open_with_content`](Self::open_with_content) with the redo log under `log_dir`
    /// (`wal.rs`): groups it holds past the engine's last durable commit are applied first
    /// (crash recovery, whatever `cfg.redo_log` says), and with `cfg.redo_log` every group is
    /// made durable there instead of by its engine commit.
    ///
    /// # Errors
    /// As [`open_with_content`](Self::open_with_content), and the log cannot be read (a gap
    /// in its groups is [`StoreError::Corrupt`]) or written.
    pub fn open_logged(
        backend: B,
        cfg: WriterConfig,
        now_ms: u64,
        content_dir: &std::path::Path,
        log_dir: &std::path::Path,
    ) -> Result<Self, StoreError> {
        let content = Arc::new(ContentStore::open(content_dir)?);
        Self::open_inner(backend, cfg, now_ms, Some(content), Some(log_dir))
    }

    fn open_inner(
        backend: B,
        cfg: WriterConfig,
        _now_ms: u64,
        content: Option<Arc<ContentStore>>,
        log_dir: Option<&std::path::Path>,
    ) -> Result<Self, StoreError> {
        let backend = Arc::new(backend);
        // First of all, what the redo log acknowledged past the engine's last durable commit:
        // the content sweep and lease recovery below must see it.
        let logged = match log_dir {
            Some(dir) => Some((dir, writer::replay_at_open(&*backend, dir, &cfg)?)),
            None => None,
        };
        if let Some(c) = &content {
            let n = backend.write(|kv| c.sweep_orphans(kv))?;
            if n > 0 {
                tracing::info!(files = n, "store: unreferenced content files removed");
            }
        }
        // Every lease, not only expired ones: the engine's file lock makes this process the
        // only owner, so whatever was in flight belonged to a process that is gone, and a
        // restart within the lease time must not leave those messages stuck until expiry.
        let (recovered, depths) = backend.write(depth::open)?;
        let depths = Arc::new(depth::Board::new(depths));
        if let OpResult::Count(n) = recovered
            && n > 0
        {
            tracing::info!(
                requeued = n,
                "store: leases of the previous run returned to ready queues"
            );
        }
        let last = backend.read(|kv| reads::last_id(kv))?;
        let (tx, rx) = mpsc::channel();
        let stats = Arc::new(WriterStats::default());
        let index_by_number = cfg.index_by_number;
        let node = cfg.node;
        let memory = Arc::new(writer::Memory::default());
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(f)
                .map_err(|source| StoreError::Open {
                    path: format!("{name} thread"),
                    source,
                })
        };
        let writer = {
            let backend = Arc::clone(&backend);
            let stats = Arc::clone(&stats);
            let depths = Arc::clone(&depths);
            let memory = Arc::clone(&memory);
            move |source: WriterSource| {
                move || match source {
                    WriterSource::Log {
                        from_log,
                        shared,
                        last,
                        aborts,
                    } => writer::run_logged(
                        &*backend,
                        &from_log,
                        cfg,
                        &stats,
                        &depths,
                        &memory,
                        &shared,
                        (last, aborts),
                    ),
                    WriterSource::Producers(rx) => {
                        writer::run(&*backend, &rx, cfg, &stats, &depths, &memory);
                    }
                }
            }
        };
        let (thread, log_thread) = match logged {
            Some((dir, last)) if cfg.redo_log => {
                let mut log = wal::LogWriter::open(dir, last + 1)?;
                // Everything through `last` is in the engine durably now.
                log.checkpointed(last, last + 1)?;
                let shared = Arc::new(writer::LogShared::new(dir.to_owned(), &cfg, last));
                let (to_writer, from_log) = mpsc::sync_channel(LOG_AHEAD);
                let log_thread = {
                    let shared = Arc::clone(&shared);
                    let stats = Arc::clone(&stats);
                    spawn(
                        "sluice-store-log",
                        Box::new(move || {
                            writer::run_log(&rx, cfg, log, last, &shared, &to_writer, &stats);
                        }),
                    )?
                };
                let source = WriterSource::Log {
                    from_log,
                    shared,
                    last,
                    aborts: wal::AbortLog::open(dir)?,
                };
                let thread = spawn("sluice-store-writer", Box::new(writer(source)))?;
                (thread, Some(log_thread))
            }
            other => {
                if let Some((dir, last)) = other {
                    // The log is off: what it held is in the engine durably now, and so are
                    // the groups its aborted batches belong to.
                    for (_, path) in wal::segments(dir)? {
                        std::fs::remove_file(&path).map_err(StoreError::from_io)?;
                    }
                    wal::AbortLog::open(dir)?.checkpointed(last);
                }
                let source = WriterSource::Producers(rx);
                (
                    spawn("sluice-store-writer", Box::new(writer(source)))?,
                    None,
                )
            }
        };
        let queue_ops = cfg.queue_ops.max(1);
        Ok(Self {
            inner: Arc::new(Inner {
                backend,
                tx: Some(tx),
                permits: Arc::new(Semaphore::new(queue_ops)),
                queue_ops,
                ids: IdGenerator::for_node(last, node),
                stats,
                depths,
                memory,
                stop_epoch: AtomicU64::new(0),
                content,
                index_by_number,
                thread: Some(thread),
                log_thread,
            }),
        })
    }

    /// The engine's name.
    pub fn backend_name(&self) -> &'static str {
        self.inner.backend.name()
    }

    /// Gives out message ids (strictly increasing, past every stored id).
    pub fn ids(&self) -> &IdGenerator {
        &self.inner.ids
    }

    /// Group-commit counters.
    pub fn stats(&self) -> &WriterStats {
        &self.inner.stats
    }

    /// Messages in each (channel, lane)'s ready index and in flight per channel, as of the
    /// last commit. Cheap: read from memory (the writer publishes the counters it keeps in
    /// every transaction), never from the engine. A queue that emptied while this handle was
    /// open stays listed at 0.
    pub fn queue_depths(&self) -> QueueDepths {
        self.inner.depths.snapshot()
    }

    /// The same depths counted the slow way, by scanning every ready and lease key (leases
    /// attributed through their message records) in one read snapshot: O(queued messages).
    /// For tests and consistency checks of [`queue_depths`](Self::queue_depths); zeros are
    /// not listed.
    pub fn recount_queue_depths(&self) -> Result<QueueDepths, StoreError> {
        // With the writer's lease keys not yet in the engine (`short_lived.rs`).
        let held = &self.inner.memory.short_lived;
        self.inner.backend.read(|kv| depth::recount(&held.over(kv)))
    }

    /// Applies `ops` atomically and durably; resolves after the fsync'd commit, with one
    /// result per op. Waits (without blocking a thread) when too many ops are queued.
    ///
    /// One exception: a batch made only of ops that are harmless to lose in a crash (`Lease`,
    /// `Recover`, `Purge`) resolves once committed, before the fsync; it becomes durable with
    /// the next durable commit. A crash may therefore undo a lease (the message is sent again,
    /// as it would be after the lease expired). Outbox retirements (`OutboxAck`,
    /// `OutboxDelete`, `OutboxDeleteRun`, `MoDelete`) are durable like everything else.
    pub async fn submit(&self, ops: Vec<Op>) -> Result<Vec<OpResult>, StoreError> {
        self.submit_with(ops, None).await
    }

    /// [`submit`](Self::submit) that also tells `durable` as soon as the ops are durable,
    /// which with the redo log on comes before they are applied: when the log thread has
    /// fsync'd them. Why: a caller that holds something only until its ops survive a crash
    /// (a channel's send credits) can let go then, without waiting for the writer's turn.
    /// Without the log, or for a batch that needs no fsync, `durable` is dropped untold and
    /// the answer comes after the commit as usual.
    pub async fn submit_durable(
        &self,
        ops: Vec<Op>,
        durable: oneshot::Sender<()>,
    ) -> Result<Vec<OpResult>, StoreError> {
        self.submit_with(ops, Some(durable)).await
    }

    async fn submit_with(
        &self,
        ops: Vec<Op>,
        durable: Option<oneshot::Sender<()>>,
    ) -> Result<Vec<OpResult>, StoreError> {
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        let want = u32::try_from(ops.len().min(self.inner.queue_ops)).unwrap_or(u32::MAX);
        let _permit = Arc::clone(&self.inner.permits)
            .acquire_many_owned(want)
            .await
            .map_err(|_| StoreError::Closed)?;
        let (reply, rx) = oneshot::channel();
        self.inner
            .tx
            .as_ref()
            .ok_or(StoreError::Closed)?
            .send(writer::Request {
                ops,
                reply,
                durable,
            })
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// [`submit`](Self::submit) for synchronous callers (tests, benches, CLI tools). Do not call
    /// it from inside an async task: it blocks the thread until the commit.
    pub fn submit_blocking(&self, ops: Vec<Op>) -> Result<Vec<OpResult>, StoreError> {
        futures::executor::block_on(self.submit(ops))
    }

    /// Inserts a batch of messages in one atomic, durable commit. One result per message:
    /// `Inserted`, `Duplicate` (idempotency key or id seen before) or `Invalid`.
    pub async fn insert_batch(&self, messages: Vec<Message>) -> Result<Vec<OpResult>, StoreError> {
        self.submit(
            messages
                .into_iter()
                .map(|m| Op::Insert(Box::new(m)))
                .collect(),
        )
        .await
    }

    /// Leases up to `limit` due messages of (channel, lane) until `now_ms + lease_ms`.
    pub async fn lease(
        &self,
        channel: &str,
        lane: Lane,
        now_ms: u64,
        limit: usize,
        lease_ms: u64,
    ) -> Result<Leased, StoreError> {
        self.lease_lanes(channel, &[lane], now_ms, limit, lease_ms)
            .await
    }

    /// Leases up to `limit` due messages of `channel`, draining `lanes` in order (pass
    /// [`Lane::ALL`] for strict priority: OTP, then notifications, then marketing).
    pub async fn lease_lanes(
        &self,
        channel: &str,
        lanes: &[Lane],
        now_ms: u64,
        limit: usize,
        lease_ms: u64,
    ) -> Result<Leased, StoreError> {
        let op = Op::Lease {
            channel: channel.to_owned(),
            lanes: lanes.to_vec(),
            now_ms,
            limit,
            lease_ms,
        };
        match self.submit(vec![op]).await?.pop() {
            Some(OpResult::Leased {
                messages,
                expired,
                cancelled,
            }) => Ok(Leased {
                messages,
                expired,
                cancelled,
            }),
            other => Err(StoreError::Backend(format!("lease answered {other:?}"))),
        }
    }

    /// Ends up to `limit` waiting messages whose validity ended by `now_ms` (EXPIRED receipt),
    /// without waiting for a lease: run it periodically so a down channel or a closed window
    /// does not hold back EXPIRED receipts. Returns how many were ended (durable commit).
    ///
    /// # Errors
    /// As [`Store::submit`].
    pub async fn sweep_expired(&self, now_ms: u64, limit: usize) -> Result<usize, StoreError> {
        self.count(Op::SweepExpired { now_ms, limit }).await
    }

    /// Returns leases expired at `now_ms` to the ready queues; run it periodically. Returns
    /// how many messages were requeued.
    pub async fn recover(&self, now_ms: u64) -> Result<usize, StoreError> {
        self.count(Op::Recover { now_ms }).await
    }

    /// One compaction step: deletes up to `limit` final messages that ended before
    /// `before_ms` (now − retention). Run it periodically until it returns less than `limit`.
    /// Content files whose last reference went are removed after the purge's commit.
    pub async fn purge(&self, before_ms: u64, limit: usize) -> Result<usize, StoreError> {
        let n = self.count(Op::Purge { before_ms, limit }).await?;
        self.collect_content(limit).await?;
        Ok(n)
    }

    /// Removes the files of up to `limit` released contents that are still unreferenced.
    async fn collect_content(&self, limit: usize) -> Result<(), StoreError> {
        let Some(cs) = &self.inner.content else {
            return Ok(());
        };
        let backend = &self.inner.backend;
        let released = backend.read(|kv| content::released(kv, limit.max(1)))?;
        if released.is_empty() {
            return Ok(());
        }
        let done = cs.collect(&released, |d| {
            backend.read(|kv| content::refs(kv, d)).map(|n| n > 0)
        })?;
        if !done.is_empty() {
            self.count(Op::ContentForget { digests: done }).await?;
        }
        Ok(())
    }

    /// The content store, when the store was opened with one.
    pub fn content(&self) -> Option<&Arc<ContentStore>> {
        self.inner.content.as_ref()
    }

    /// Writes an MMS body durably (once per distinct digest) and pins it until the pin is
    /// dropped: insert the messages that reference `pin.digest()` before dropping it.
    /// Blocking file I/O.
    ///
    /// # Errors
    /// No content store, or the file could not be written.
    pub fn put_content(&self, body: &[u8]) -> Result<ContentPin, StoreError> {
        self.content_store()?.put(body)
    }

    /// The MMS body stored under `digest` (`None`: no such file). Blocking file I/O.
    ///
    /// # Errors
    /// No content store, or the file could not be read.
    pub fn load_content(&self, digest: &[u8; 32]) -> Result<Option<Vec<u8>>, StoreError> {
        self.content_store()?.load(digest)
    }

    /// Drops `pins` of content written for a batch that was not stored, removing the files
    /// nothing references (blocking file I/O; failures are logged — the next open sweeps
    /// what is left).
    pub fn discard_content(&self, pins: Vec<ContentPin>) {
        let Some(cs) = &self.inner.content else {
            return;
        };
        let backend = &self.inner.backend;
        for pin in pins {
            let d = *pin.digest();
            drop(pin);
            let gone = cs.collect(&[d], |d| {
                backend.read(|kv| content::refs(kv, d)).map(|n| n > 0)
            });
            if let Err(e) = gone {
                tracing::warn!(error = %e, "store: unreferenced content not removed");
            }
        }
    }

    /// How many stored messages reference `digest`.
    ///
    /// # Errors
    /// Engine failure.
    pub fn content_refs(&self, digest: &[u8; 32]) -> Result<u64, StoreError> {
        self.inner.backend.read(|kv| content::refs(kv, digest))
    }

    fn content_store(&self) -> Result<&Arc<ContentStore>, StoreError> {
        self.inner
            .content
            .as_ref()
            .ok_or_else(|| StoreError::Backend("store opened without a content directory".into()))
    }

    /// Acknowledges the account's outbox through `seq`; returns how many entries went.
    pub async fn outbox_ack(&self, account: &str, through_seq: u64) -> Result<usize, StoreError> {
        self.count(Op::OutboxAck {
            account: account.to_owned(),
            through_seq,
        })
        .await
    }

    async fn count(&self, op: Op) -> Result<usize, StoreError> {
        match self.submit(vec![op]).await?.pop() {
            Some(OpResult::Count(n)) => Ok(n),
            other => Err(StoreError::Backend(format!(
                "expected a count, got {other:?}"
            ))),
        }
    }

    /// Records an emergency stop of `account`'s messages matching `filter` in one durable
    /// commit: from that commit on no lease hands out a match. An id stop is settled by
    /// this call (its counts are final but for `in_flight`); a tag stop then needs
    /// [`stop_step`](Self::stop_step) until it is `done`. `hold_ms`: how long it keeps
    /// filtering leases after its sweep ends. `Ok(Err(reason))` when the request is invalid.
    ///
    /// # Errors
    /// As [`Store::submit`].
    pub async fn stop(
        &self,
        account: &str,
        filter: StopFilter,
        now_ms: u64,
        hold_ms: u64,
    ) -> Result<Result<StopRecord, String>, StoreError> {
        let op = Op::Stop {
            account: account.to_owned(),
            filter,
            now_ms,
            hold_ms,
        };
        let r = match self.submit(vec![op]).await?.pop() {
            Some(OpResult::Stopped(r)) => Ok(*r),
            Some(OpResult::Invalid(reason)) => Err(reason),
            other => return Err(StoreError::Backend(format!("stop answered {other:?}"))),
        };
        self.inner.stop_epoch.fetch_add(1, Ordering::AcqRel);
        Ok(r)
    }

    /// One sweep step of stop `id` (up to `limit` messages of its tag in one durable
    /// commit); the record after it, `None` if there is no such stop.
    ///
    /// # Errors
    /// As [`Store::submit`].
    pub async fn stop_step(
        &self,
        id: u64,
        now_ms: u64,
        limit: usize,
    ) -> Result<Option<StopRecord>, StoreError> {
        match self
            .submit(vec![Op::StopStep {
                stop: id,
                now_ms,
                limit,
            }])
            .await?
            .pop()
        {
            Some(OpResult::Stopped(r)) => Ok(Some(*r)),
            Some(OpResult::NotFound) => Ok(None),
            other => Err(StoreError::Backend(format!("stop step answered {other:?}"))),
        }
    }

    /// Retires the stops whose hold ended by `now_ms`; returns how many.
    ///
    /// # Errors
    /// As [`Store::submit`].
    pub async fn retire_stops(&self, now_ms: u64) -> Result<usize, StoreError> {
        self.count(Op::StopRetire { now_ms }).await
    }

    /// Sets the tag names the tag index covers, i.e. what a tag stop may name (config
    /// `storage.stop_tags`; default `task`). Messages already stored keep the entries they
    /// have.
    ///
    /// # Errors
    /// As [`Store::submit`]; an empty name or one with NUL is [`StoreError::Backend`].
    pub async fn set_stop_tags(&self, names: Vec<String>) -> Result<(), StoreError> {
        match self.submit(vec![Op::IndexTags { names }]).await?.pop() {
            Some(OpResult::Count(_)) => Ok(()),
            other => Err(StoreError::Backend(format!("stop tags answered {other:?}"))),
        }
    }

    /// The tag names a tag stop may name.
    ///
    /// # Errors
    /// Engine failure.
    pub fn stop_tags(&self) -> Result<Vec<String>, StoreError> {
        self.inner.backend.read(stop::indexed)
    }

    /// How many of `account`'s messages tagged `key = value` a tag stop would end now
    /// (waiting or in flight; not submitted or final), counted through the stops' tag index.
    /// `Ok(Err(reason))`: the tag name is not indexed, so a stop on it would be refused.
    ///
    /// # Errors
    /// Engine or decoding failure.
    pub fn would_cancel(
        &self,
        account: &str,
        key: &str,
        value: &str,
    ) -> Result<Result<u64, String>, StoreError> {
        self.inner
            .backend
            .read(|kv| stop::would_cancel(&self.overlay(kv), account, key, value))
    }

    /// Changes whenever a stop or an account pause was committed through this handle.
    pub fn stop_epoch(&self) -> u64 {
        self.inner.stop_epoch.load(Ordering::Acquire)
    }

    /// A stop by id (active or retired).
    ///
    /// # Errors
    /// Engine or decoding failure.
    pub fn stop_status(&self, id: u64) -> Result<Option<StopRecord>, StoreError> {
        self.inner.backend.read(|kv| stop::get(kv, id))
    }

    /// Ids of the stops whose sweep has not ended (to resume after a restart).
    ///
    /// # Errors
    /// Engine or decoding failure.
    pub fn unswept_stops(&self) -> Result<Vec<u64>, StoreError> {
        self.inner.backend.read(stop::unswept)
    }

    /// Every stop leases still check (sweeping or holding).
    ///
    /// # Errors
    /// Engine or decoding failure.
    pub fn active_stops(&self) -> Result<Vec<StopRecord>, StoreError> {
        self.inner.backend.read(stop::active)
    }

    /// Turns a pause switch on or off durably; `true` if it changed. Resuming an account
    /// does not unpark its messages: call [`unpark`](Self::unpark) until it returns 0.
    ///
    /// # Errors
    /// As [`Store::submit`]; an empty name is [`StoreError::Backend`].
    pub async fn set_pause(&self, target: PauseTarget, paused: bool) -> Result<bool, StoreError> {
        let account = matches!(target, PauseTarget::Account(_));
        match self.submit(vec![Op::Pause { target, paused }]).await?.pop() {
            Some(OpResult::Count(n)) => {
                if account && paused {
                    // Leases park the account's messages from now on; dispatchers must give
                    // back what they already hold, exactly as after a stop.
                    self.inner.stop_epoch.fetch_add(1, Ordering::AcqRel);
                }
                Ok(n > 0)
            }
            other => Err(StoreError::Backend(format!("pause answered {other:?}"))),
        }
    }

    /// The pause switches that are on.
    ///
    /// # Errors
    /// Engine failure.
    pub fn pauses(&self) -> Result<Vec<PauseTarget>, StoreError> {
        self.inner.backend.read(stop::pauses)
    }

    /// Puts up to `limit` parked messages of `account` back in their ready queues; returns
    /// how many entries it visited (0: none left).
    ///
    /// # Errors
    /// As [`Store::submit`].
    pub async fn unpark(&self, account: &str, limit: usize) -> Result<usize, StoreError> {
        self.count(Op::Unpark {
            account: account.to_owned(),
            limit,
        })
        .await
    }

    /// A message by id. A leased message reads as in flight (its state record is in the
    /// writer's memory, `in_flight.rs`); a read that raced the end of a lease is made again.
    pub fn get(&self, id: MessageId) -> Result<Option<Message>, StoreError> {
        let mut tries = 0;
        loop {
            tries += 1;
            let (m, stale) = self.inner.backend.read(|kv| self.overlay(kv).load(id))?;
            if !stale || tries == READS_AFTER_A_LEASE {
                return Ok(m);
            }
        }
    }

    /// `kv` with the writer's in-memory state records of leased messages over it.
    fn overlay<'a>(&'a self, kv: &'a dyn KvRead) -> in_flight::InFlightRead<'a> {
        in_flight::InFlightRead {
            inner: kv,
            committed: &self.inner.memory.in_flight,
        }
    }

    /// Whether this store writes the destination index [`by_destination`](Self::by_destination)
    /// reads (`WriterConfig::index_by_number`).
    pub fn indexes_by_number(&self) -> bool {
        self.inner.index_by_number
    }

    /// Up to `limit` messages to `to`, newest first (the destination index: messages stored
    /// from the version that writes it on, while it is on, until purged).
    ///
    /// # Errors
    /// Engine or decoding failure.
    pub fn by_destination(&self, to: &str, limit: usize) -> Result<Vec<Message>, StoreError> {
        let mut tries = 0;
        loop {
            tries += 1;
            let (out, stale) = self.inner.backend.read(|kv| {
                let (mut out, mut stale) = (Vec::new(), false);
                for id in reads::by_destination(kv, to, limit)? {
                    let (m, s) = self.overlay(kv).load(id)?;
                    stale |= s;
                    out.extend(m);
                }
                Ok((out, stale))
            })?;
            if !stale || tries == READS_AFTER_A_LEASE {
                return Ok(out);
            }
        }
    }

    /// The message and part a center id on `channel` belongs to: while the part waits for
    /// its receipt, and for a while after its message ended (`short_lived.rs`).
    pub fn by_center(
        &self,
        channel: &str,
        center_id: &str,
    ) -> Result<Option<(MessageId, u16)>, StoreError> {
        // With the writer's center-id entries not yet in the engine.
        let held = &self.inner.memory.short_lived;
        self.inner
            .backend
            .read(|kv| reads::by_center(&held.over(kv), channel, center_id))
    }

    /// Up to `limit` outbox entries of `account` after sequence `after` (0 = from the start).
    /// The newest come from the writer's memory with their events (`outbox_memo.rs`), the
    /// rest from the engine.
    pub fn outbox(
        &self,
        account: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let reopens = self.inner.backend.reopens();
        if let Some(entries) = self
            .inner
            .memory
            .outbox
            .read(account, after, limit, reopens)
        {
            self.inner.stats.count_outbox_read(true);
            return Ok(entries);
        }
        self.inner.stats.count_outbox_read(false);
        // The memo first, then the engine below the memo's `from`: the memo holds every
        // entry from `from` on (some only it has: `outbox_memo.rs`), and what is below
        // `from` is in the engine, whenever it is read.
        let tail = self.inner.memory.outbox.tail(account, limit, reopens);
        let engine = self.outbox_in_engine(account, after, limit)?;
        Ok(outbox_memo::OutboxMemo::merge_tail(
            engine, tail, after, limit,
        ))
    }

    /// [`outbox`](Self::outbox) as the engine alone has it.
    fn outbox_in_engine(
        &self,
        account: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        self.inner
            .backend
            .read(|kv| reads::outbox(kv, account, after, limit))
    }

    /// Up to `limit` MO outbox entries of `account` after sequence `after` (0 = from the start).
    pub fn mo_outbox(
        &self,
        account: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        self.inner
            .backend
            .read(|kv| reads::outbox_of(kv, keys::Outbox::Mo, account, after, limit))
    }

    /// Receipt outbox entries held in the writer's memory since start, and of them those a
    /// durable commit wrote to the engine (`outbox_memo.rs`); the rest never reached it.
    pub fn outbox_held(&self) -> (u64, u64) {
        self.inner.memory.outbox.held_counts()
    }

    /// How many entries `account`'s receipt outbox holds, and its oldest (for the outbox
    /// gauges; costs a scan of the outbox in chunks).
    pub fn outbox_depth(&self, account: &str) -> Result<(u64, Option<OutboxEntry>), StoreError> {
        // The engine's count plus the entries only the writer's memory holds, both taken
        // between two equal readings of the flush count: a flush in between moves entries
        // from one to the other (`outbox_memo.rs`). A few tries, then the last reading.
        let memo = &self.inner.memory.outbox;
        let mut tries = 0;
        loop {
            let flushes = memo.flushes();
            let (held, held_oldest) = memo.unwritten(account, self.inner.backend.reopens());
            let (count, oldest) = self
                .inner
                .backend
                .read(|kv| reads::outbox_depth(kv, keys::Outbox::Receipts, account))?;
            tries += 1;
            let steady = flushes.is_multiple_of(2) && memo.flushes() == flushes;
            if steady || tries == 4 {
                return Ok((count + held, oldest.or(held_oldest)));
            }
            std::thread::yield_now();
        }
    }

    /// [`outbox_depth`](Self::outbox_depth) of `account`'s MO outbox.
    pub fn mo_outbox_depth(&self, account: &str) -> Result<(u64, Option<OutboxEntry>), StoreError> {
        self.inner
            .backend
            .read(|kv| reads::outbox_depth(kv, keys::Outbox::Mo, account))
    }

    /// The id stored under an idempotency key.
    pub fn by_client_ref(
        &self,
        account: &str,
        client_ref: &str,
    ) -> Result<Option<MessageId>, StoreError> {
        self.inner
            .backend
            .read(|kv| reads::by_client_ref(kv, account, client_ref))
    }

    /// Due time (ms) of the earliest message in (channel, lane)'s ready queue — what a
    /// channel worker's scheduler sleeps until.
    pub fn next_due(&self, channel: &str, lane: Lane) -> Result<Option<u64>, StoreError> {
        self.inner
            .backend
            .read(|kv| reads::next_due(kv, channel, lane))
    }
}

/// Opens the engine named by `kind` under `dir` and the store on it, with MMS content files
/// under `dir/content` and the redo log under `dir/log`.
pub fn open_store(
    kind: BackendKind,
    dir: &std::path::Path,
    cfg: WriterConfig,
    now_ms: u64,
) -> Result<Store<AnyBackend>, StoreError> {
    Store::open_logged(
        AnyBackend::open(kind, dir)?,
        cfg,
        now_ms,
        &dir.join("content"),
        &dir.join("log"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insert(store: &Store<RedbBackend>) -> (MessageId, Op) {
        let payload = Payload::Text {
            text: "hi".into(),
            encoding: Default::default(),
        };
        let m = Message::new(store.ids().next(0), "acme", "+861", payload, "smsc1", 0, 0);
        (m.id, Op::Insert(Box::new(m)))
    }

    /// With the redo log, `submit_durable` is told durable once the log holds the batch; a
    /// batch that needs no fsync, or a store without the log, is answered without it.
    #[test]
    fn durable_is_told_once_the_log_holds_the_batch() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let store = Store::open_logged(
            RedbBackend::open(dir.path()).unwrap(),
            WriterConfig::default(),
            0,
            &dir.path().join("content"),
            &log,
        )
        .unwrap();
        let (id, op) = insert(&store);
        let (durable, on_disk) = oneshot::channel();
        let (logged, answer) = futures::executor::block_on(futures::future::join(
            async {
                on_disk.await.expect("told durable");
                // Read the moment it is told: the log must hold the insert already.
                let (groups, _) = wal::read(&log, 0, None).unwrap();
                groups
                    .iter()
                    .flat_map(|g| g.batches.iter().flatten().flatten())
                    .any(|op| matches!(op, Op::Insert(m) if m.id == id))
            },
            store.submit_durable(vec![op], durable),
        ));
        assert!(logged, "told durable before the log held the batch");
        assert!(matches!(answer.unwrap()[..], [OpResult::Inserted(i)] if i == id));

        let lease = Op::Lease {
            channel: "smsc1".into(),
            lanes: Lane::ALL.to_vec(),
            now_ms: 0,
            limit: 1,
            lease_ms: 1_000,
        };
        let (durable, on_disk) = oneshot::channel();
        futures::executor::block_on(store.submit_durable(vec![lease], durable)).unwrap();
        assert!(
            futures::executor::block_on(on_disk).is_err(),
            "a lease needs no fsync: nothing to tell"
        );

        let plain_dir = tempfile::tempdir().unwrap();
        let cfg = WriterConfig {
            redo_log: false,
            ..WriterConfig::default()
        };
        let plain = Store::open(RedbBackend::open(plain_dir.path()).unwrap(), cfg, 0).unwrap();
        let (_, op) = insert(&plain);
        let (durable, on_disk) = oneshot::channel();
        futures::executor::block_on(plain.submit_durable(vec![op], durable)).unwrap();
        assert!(futures::executor::block_on(on_disk).is_err());
    }
}

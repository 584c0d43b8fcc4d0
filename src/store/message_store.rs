//! The store as the rest of the gateway sees it: one operation-level trait, [`MessageStore`].
//!
//! Ingress, dispatch, the receipt layer, the stop machinery and `serve` hold a
//! [`GatewayStore`] (`Arc<dyn MessageStore>`) and never name an engine, so the engine (today
//! [`Store`] over redb or sled) is chosen in one place — where the store is opened — and a
//! different implementation of the same operations can replace it without touching callers.
//!
//! # The operations
//! Writes are [`Op`]s: a message's whole life is `Insert` → `Lease` → `Submitted` /
//! `Requeue` / `Release` → `Receipt` → `Finish`, with `OutboxAck` / `OutboxDelete` /
//! `OutboxDeleteRun`, `MoEnqueue` / `MoDelete` for the outboxes, `Purge` for retention,
//! `Stop` / `StopStep` / `Pause` / `Unpark` for emergency stops and pauses.
//! [`MessageStore::submit`] applies a batch
//! of them atomically (one durable commit, results in order), which is why callers that must
//! write several facts together (a receipt and its outbox entry; a batch of settle outcomes)
//! go through it; the named methods ([`insert_batch`](MessageStore::insert_batch),
//! [`lease`](MessageStore::lease), [`purge`](MessageStore::purge), [`outbox_ack`](MessageStore::outbox_ack),
//! [`stop`](MessageStore::stop), [`set_pause`](MessageStore::set_pause), …) are the single-op
//! cases with typed answers. Reads are by key or by index (`get`, `by_center`, `outbox`,
//! `by_destination`, …) and see committed state only.
//!
//! Async methods return boxed futures so the trait stays `dyn`-compatible; one allocation per
//! call is noise next to the commit (an fsync) every write waits for.
//!
//! # A clustered backend later (NATS JetStream), and what this trait already assumes
//! - **No process owns the data.** Nothing above the trait caches store state as the truth:
//!   results come from the store's answers, reads are committed state, and counters
//!   ([`queue_depths`](MessageStore::queue_depths)) are gauges, not facts callers decide on.
//!   Crash recovery of leases at open (every lease goes back to ready) is an implementation
//!   detail of the single-process [`Store`], whose engine file lock makes it the only owner;
//!   a clustered backend would instead expire leases by their `lease_ms` deadline.
//! - **Leases are owned per node.** `Op::Lease` carries the lease time; a clustered store would
//!   record the leasing node with each lease (a JetStream consumer per channel and lane, the
//!   message acked on a final state and nak'd on `Requeue`/`Release`), and only the owner's
//!   `Submitted`/`Requeue` would apply; another node's answer would be `Stale`.
//!   [`stop_epoch`](MessageStore::stop_epoch) is per process and only tells local dispatchers
//!   to re-check what they buffered; the stop filter itself is applied inside lease and requeue
//!   on the store side, where every node would see it.
//! - **Ids from many nodes.** [`MessageId`] is `unix_ms << 20 | counter`, and the counter's
//!   top [`NODE_BITS`](super::NODE_BITS) carry the gateway's node number (`WriterConfig::node`,
//!   0 by default), so gateways sharing a clustered store never make the same id; ids stay
//!   sortable by time and the text form (a ULID) is unchanged. Nothing above the trait parses
//!   an id's bits.
//! - **Receipts may reach any node.** A receipt is correlated by `(channel, center id)` inside
//!   the store (`Op::Receipt`), not in the process that sent the message, so the node that took
//!   the deliver_sm can apply it.
//! - **Content files** are local files today ([`ContentStore`]); a clustered store would keep
//!   them in an object store keyed by the same digest (`put_content` / `load_content`).

use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::sync::oneshot;

use super::backend::Backend;
use super::content::{ContentPin, ContentStore};
use super::depth::QueueDepths;
use super::error::StoreError;
use super::id::{IdGenerator, MessageId};
use super::model::{Lane, Message, OutboxEntry};
use super::ops::{Op, OpResult};
use super::stop::{PauseTarget, StopFilter, StopRecord};
use super::writer::WriterStats;
use super::{Leased, Store};

/// The store handle the gateway passes around: any [`MessageStore`], shared.
pub type GatewayStore = Arc<dyn MessageStore>;

/// The durable message queue at the level of its operations. See the module docs for what
/// each group does and how a clustered implementation fits.
pub trait MessageStore: Send + Sync + std::fmt::Debug + 'static {
    /// Name of the engine underneath, for logs and `/metrics`.
    fn backend_name(&self) -> &'static str;

    /// The message id generator (ids are made by ingress before the insert commit).
    fn ids(&self) -> &IdGenerator;

    /// Writer counters (commits, ops, busy time) for metrics.
    fn stats(&self) -> &WriterStats;

    /// Queue counters as of the last commit (gauges; one load each).
    fn queue_depths(&self) -> QueueDepths;

    /// Receipt outbox entries held in memory since start, and of them those written to the
    /// engine later (metrics); `(0, 0)` for a store that holds none back.
    fn outbox_held(&self) -> (u64, u64) {
        (0, 0)
    }

    /// Counts the queues by a scan (operators' check of the counters).
    ///
    /// # Errors
    /// The engine failed to read.
    fn recount_queue_depths(&self) -> Result<QueueDepths, StoreError>;

    /// Applies `ops` atomically in one durable commit; results in the order of `ops`.
    /// Resolves only after the commit is on disk.
    fn submit(&self, ops: Vec<Op>) -> BoxFuture<'_, Result<Vec<OpResult>, StoreError>>;

    /// [`submit`](Self::submit) that tells `durable` once the ops would survive a crash, which
    /// may come before they are applied (a redo log written ahead of the engine). A store that
    /// cannot tell sooner drops it untold and answers after the durable commit, as `submit`.
    fn submit_durable(
        &self,
        ops: Vec<Op>,
        durable: oneshot::Sender<()>,
    ) -> BoxFuture<'_, Result<Vec<OpResult>, StoreError>> {
        drop(durable);
        self.submit(ops)
    }

    /// [`submit`](Self::submit) from a thread outside the async runtime.
    ///
    /// # Errors
    /// As `submit`.
    fn submit_blocking(&self, ops: Vec<Op>) -> Result<Vec<OpResult>, StoreError>;

    /// Inserts a batch of new messages in one commit (`Inserted` or `Duplicate` per message).
    fn insert_batch(
        &self,
        messages: Vec<Message>,
    ) -> BoxFuture<'_, Result<Vec<OpResult>, StoreError>>;

    /// Leases up to `limit` due messages of `channel` in `lane` for `lease_ms`.
    fn lease<'a>(
        &'a self,
        channel: &'a str,
        lane: Lane,
        now_ms: u64,
        limit: usize,
        lease_ms: u64,
    ) -> BoxFuture<'a, Result<Leased, StoreError>>;

    /// Leases across `lanes` in the order given (one commit).
    fn lease_lanes<'a>(
        &'a self,
        channel: &'a str,
        lanes: &'a [Lane],
        now_ms: u64,
        limit: usize,
        lease_ms: u64,
    ) -> BoxFuture<'a, Result<Leased, StoreError>>;

    /// Ends up to `limit` queued messages past their expiry; returns how many.
    fn sweep_expired(&self, now_ms: u64, limit: usize) -> BoxFuture<'_, Result<usize, StoreError>>;

    /// Returns leases past their deadline to the ready queues; returns how many.
    fn recover(&self, now_ms: u64) -> BoxFuture<'_, Result<usize, StoreError>>;

    /// Retention: removes up to `limit` final messages older than `before_ms`, releasing their
    /// content references; returns how many.
    fn purge(&self, before_ms: u64, limit: usize) -> BoxFuture<'_, Result<usize, StoreError>>;

    /// Deletes `account`'s receipt outbox entries up to `through_seq`; returns how many.
    fn outbox_ack<'a>(
        &'a self,
        account: &'a str,
        through_seq: u64,
    ) -> BoxFuture<'a, Result<usize, StoreError>>;

    /// Records an emergency stop (`Err(reason)` when the filter is refused).
    fn stop<'a>(
        &'a self,
        account: &'a str,
        filter: StopFilter,
        now_ms: u64,
        hold_ms: u64,
    ) -> BoxFuture<'a, Result<Result<StopRecord, String>, StoreError>>;

    /// Sweeps one step of stop `id` over the tag index (`None`: no such stop).
    fn stop_step(
        &self,
        id: u64,
        now_ms: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Option<StopRecord>, StoreError>>;

    /// Retires stops whose hold time is over; returns how many.
    fn retire_stops(&self, now_ms: u64) -> BoxFuture<'_, Result<usize, StoreError>>;

    /// Sets the tag names indexed for stops.
    fn set_stop_tags(&self, names: Vec<String>) -> BoxFuture<'_, Result<(), StoreError>>;

    /// Switches a pause; `true` when it changed.
    fn set_pause(
        &self,
        target: PauseTarget,
        paused: bool,
    ) -> BoxFuture<'_, Result<bool, StoreError>>;

    /// Returns up to `limit` of `account`'s parked messages to the ready queues.
    fn unpark<'a>(
        &'a self,
        account: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<usize, StoreError>>;

    /// The content files, when this store keeps MMS content.
    fn content(&self) -> Option<&Arc<ContentStore>>;

    /// Writes an MMS body durably (once per digest) and pins it until the insert commit.
    ///
    /// # Errors
    /// No content directory, or the file could not be written.
    fn put_content(&self, body: &[u8]) -> Result<ContentPin, StoreError>;

    /// Reads an MMS body by digest (`None` when absent).
    ///
    /// # Errors
    /// No content directory, or the file could not be read.
    fn load_content(&self, digest: &[u8; 32]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Drops pins of content whose insert did not commit, removing unreferenced files.
    fn discard_content(&self, pins: Vec<ContentPin>);

    /// References to `digest` from stored messages.
    ///
    /// # Errors
    /// The engine failed to read.
    fn content_refs(&self, digest: &[u8; 32]) -> Result<u64, StoreError>;

    /// Tag names indexed for stops.
    ///
    /// # Errors
    /// The engine failed to read.
    fn stop_tags(&self) -> Result<Vec<String>, StoreError>;

    /// How many queued messages a tag stop would cancel (`Err(reason)` if not indexed).
    ///
    /// # Errors
    /// The engine failed to read.
    fn would_cancel(
        &self,
        account: &str,
        key: &str,
        value: &str,
    ) -> Result<Result<u64, String>, StoreError>;

    /// Bumped after every committed stop or account pause in this process.
    fn stop_epoch(&self) -> u64;

    /// A stop's record.
    ///
    /// # Errors
    /// The engine failed to read.
    fn stop_status(&self, id: u64) -> Result<Option<StopRecord>, StoreError>;

    /// Stops whose sweep is not finished.
    ///
    /// # Errors
    /// The engine failed to read.
    fn unswept_stops(&self) -> Result<Vec<u64>, StoreError>;

    /// Stops still filtering.
    ///
    /// # Errors
    /// The engine failed to read.
    fn active_stops(&self) -> Result<Vec<StopRecord>, StoreError>;

    /// Pause switches that are on.
    ///
    /// # Errors
    /// The engine failed to read.
    fn pauses(&self) -> Result<Vec<PauseTarget>, StoreError>;

    /// A message by id.
    ///
    /// # Errors
    /// The engine failed to read.
    fn get(&self, id: MessageId) -> Result<Option<Message>, StoreError>;

    /// Whether inserts keep the destination index.
    fn indexes_by_number(&self) -> bool;

    /// Newest messages to `to`, up to `limit`.
    ///
    /// # Errors
    /// The engine failed to read.
    fn by_destination(&self, to: &str, limit: usize) -> Result<Vec<Message>, StoreError>;

    /// The message and part a center id on `channel` belongs to: while the part waits for
    /// its receipt, and for a while after its message ended; after a restart, an ended
    /// message's center ids may be gone.
    ///
    /// # Errors
    /// The engine failed to read.
    fn by_center(
        &self,
        channel: &str,
        center_id: &str,
    ) -> Result<Option<(MessageId, u16)>, StoreError>;

    /// `account`'s receipt outbox entries after `after`, up to `limit`.
    ///
    /// # Errors
    /// The engine failed to read.
    fn outbox(
        &self,
        account: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError>;

    /// `account`'s MO outbox entries after `after`, up to `limit`.
    ///
    /// # Errors
    /// The engine failed to read.
    fn mo_outbox(
        &self,
        account: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError>;

    /// Length and oldest entry of `account`'s receipt outbox.
    ///
    /// # Errors
    /// The engine failed to read.
    fn outbox_depth(&self, account: &str) -> Result<(u64, Option<OutboxEntry>), StoreError>;

    /// Length and oldest entry of `account`'s MO outbox.
    ///
    /// # Errors
    /// The engine failed to read.
    fn mo_outbox_depth(&self, account: &str) -> Result<(u64, Option<OutboxEntry>), StoreError>;

    /// The message `account` sent with `client_ref`.
    ///
    /// # Errors
    /// The engine failed to read.
    fn by_client_ref(
        &self,
        account: &str,
        client_ref: &str,
    ) -> Result<Option<MessageId>, StoreError>;

    /// Due time of the next ready message of `channel` in `lane`.
    ///
    /// # Errors
    /// The engine failed to read.
    fn next_due(&self, channel: &str, lane: Lane) -> Result<Option<u64>, StoreError>;
}

impl<B: Backend> From<Store<B>> for GatewayStore {
    fn from(store: Store<B>) -> Self {
        Arc::new(store)
    }
}

/// The single-process store: each method is the inherent one of the same name.
impl<B: Backend> MessageStore for Store<B> {
    fn backend_name(&self) -> &'static str {
        Self::backend_name(self)
    }
    fn ids(&self) -> &IdGenerator {
        Self::ids(self)
    }
    fn stats(&self) -> &WriterStats {
        Self::stats(self)
    }
    fn queue_depths(&self) -> QueueDepths {
        Self::queue_depths(self)
    }
    fn outbox_held(&self) -> (u64, u64) {
        Self::outbox_held(self)
    }
    fn recount_queue_depths(&self) -> Result<QueueDepths, StoreError> {
        Self::recount_queue_depths(self)
    }
    fn submit(&self, ops: Vec<Op>) -> BoxFuture<'_, Result<Vec<OpResult>, StoreError>> {
        Box::pin(Self::submit(self, ops))
    }
    fn submit_durable(
        &self,
        ops: Vec<Op>,
        durable: oneshot::Sender<()>,
    ) -> BoxFuture<'_, Result<Vec<OpResult>, StoreError>> {
        Box::pin(Self::submit_durable(self, ops, durable))
    }
    fn submit_blocking(&self, ops: Vec<Op>) -> Result<Vec<OpResult>, StoreError> {
        Self::submit_blocking(self, ops)
    }
    fn insert_batch(
        &self,
        messages: Vec<Message>,
    ) -> BoxFuture<'_, Result<Vec<OpResult>, StoreError>> {
        Box::pin(Self::insert_batch(self, messages))
    }
    fn lease<'a>(
        &'a self,
        channel: &'a str,
        lane: Lane,
        now_ms: u64,
        limit: usize,
        lease_ms: u64,
    ) -> BoxFuture<'a, Result<Leased, StoreError>> {
        Box::pin(Self::lease(self, channel, lane, now_ms, limit, lease_ms))
    }
    fn lease_lanes<'a>(
        &'a self,
        channel: &'a str,
        lanes: &'a [Lane],
        now_ms: u64,
        limit: usize,
        lease_ms: u64,
    ) -> BoxFuture<'a, Result<Leased, StoreError>> {
        Box::pin(Self::lease_lanes(
            self, channel, lanes, now_ms, limit, lease_ms,
        ))
    }
    fn sweep_expired(&self, now_ms: u64, limit: usize) -> BoxFuture<'_, Result<usize, StoreError>> {
        Box::pin(Self::sweep_expired(self, now_ms, limit))
    }
    fn recover(&self, now_ms: u64) -> BoxFuture<'_, Result<usize, StoreError>> {
        Box::pin(Self::recover(self, now_ms))
    }
    fn purge(&self, before_ms: u64, limit: usize) -> BoxFuture<'_, Result<usize, StoreError>> {
        Box::pin(Self::purge(self, before_ms, limit))
    }
    fn outbox_ack<'a>(
        &'a self,
        account: &'a str,
        through_seq: u64,
    ) -> BoxFuture<'a, Result<usize, StoreError>> {
        Box::pin(Self::outbox_ack(self, account, through_seq))
    }
    fn stop<'a>(
        &'a self,
        account: &'a str,
        filter: StopFilter,
        now_ms: u64,
        hold_ms: u64,
    ) -> BoxFuture<'a, Result<Result<StopRecord, String>, StoreError>> {
        Box::pin(Self::stop(self, account, filter, now_ms, hold_ms))
    }
    fn stop_step(
        &self,
        id: u64,
        now_ms: u64,
        limit: usize,
    ) -> BoxFuture<'_, Result<Option<StopRecord>, StoreError>> {
        Box::pin(Self::stop_step(self, id, now_ms, limit))
    }
    fn retire_stops(&self, now_ms: u64) -> BoxFuture<'_, Result<usize, StoreError>> {
        Box::pin(Self::retire_stops(self, now_ms))
    }
    fn set_stop_tags(&self, names: Vec<String>) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(Self::set_stop_tags(self, names))
    }
    fn set_pause(
        &self,
        target: PauseTarget,
        paused: bool,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(Self::set_pause(self, target, paused))
    }
    fn unpark<'a>(
        &'a self,
        account: &'a str,
        limit: usize,
    ) -> BoxFuture<'a, Result<usize, StoreError>> {
        Box::pin(Self::unpark(self, account, limit))
    }
    fn content(&self) -> Option<&Arc<ContentStore>> {
        Self::content(self)
    }
    fn put_content(&self, body: &[u8]) -> Result<ContentPin, StoreError> {
        Self::put_content(self, body)
    }
    fn load_content(&self, digest: &[u8; 32]) -> Result<Option<Vec<u8>>, StoreError> {
        Self::load_content(self, digest)
    }
    fn discard_content(&self, pins: Vec<ContentPin>) {
        Self::discard_content(self, pins);
    }
    fn content_refs(&self, digest: &[u8; 32]) -> Result<u64, StoreError> {
        Self::content_refs(self, digest)
    }
    fn stop_tags(&self) -> Result<Vec<String>, StoreError> {
        Self::stop_tags(self)
    }
    fn would_cancel(
        &self,
        account: &str,
        key: &str,
        value: &str,
    ) -> Result<Result<u64, String>, StoreError> {
        Self::would_cancel(self, account, key, value)
    }
    fn stop_epoch(&self) -> u64 {
        Self::stop_epoch(self)
    }
    fn stop_status(&self, id: u64) -> Result<Option<StopRecord>, StoreError> {
        Self::stop_status(self, id)
    }
    fn unswept_stops(&self) -> Result<Vec<u64>, StoreError> {
        Self::unswept_stops(self)
    }
    fn active_stops(&self) -> Result<Vec<StopRecord>, StoreError> {
        Self::active_stops(self)
    }
    fn pauses(&self) -> Result<Vec<PauseTarget>, StoreError> {
        Self::pauses(self)
    }
    fn get(&self, id: MessageId) -> Result<Option<Message>, StoreError> {
        Self::get(self, id)
    }
    fn indexes_by_number(&self) -> bool {
        Self::indexes_by_number(self)
    }
    fn by_destination(&self, to: &str, limit: usize) -> Result<Vec<Message>, StoreError> {
        Self::by_destination(self, to, limit)
    }
    fn by_center(
        &self,
        channel: &str,
        center_id: &str,
    ) -> Result<Option<(MessageId, u16)>, StoreError> {
        Self::by_center(self, channel, center_id)
    }
    fn outbox(
        &self,
        account: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        Self::outbox(self, account, after, limit)
    }
    fn mo_outbox(
        &self,
        account: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        Self::mo_outbox(self, account, after, limit)
    }
    fn outbox_depth(&self, account: &str) -> Result<(u64, Option<OutboxEntry>), StoreError> {
        Self::outbox_depth(self, account)
    }
    fn mo_outbox_depth(&self, account: &str) -> Result<(u64, Option<OutboxEntry>), StoreError> {
        Self::mo_outbox_depth(self, account)
    }
    fn by_client_ref(
        &self,
        account: &str,
        client_ref: &str,
    ) -> Result<Option<MessageId>, StoreError> {
        Self::by_client_ref(self, account, client_ref)
    }
    fn next_due(&self, channel: &str, lane: Lane) -> Result<Option<u64>, StoreError> {
        Self::next_due(self, channel, lane)
    }
}

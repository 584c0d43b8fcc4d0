//! The outbox pump: deliver each account's durable outbox entries by webhook.
//!
//! Job: read a per-account outbox of the store, POST its entries to their URLs — one per
//! POST, or batched per account — and delete them only after a 2xx. Failures are retried
//! for as long as it takes: an entry is kept until delivered. One pump runs per kind of
//! entry ([`EntryKind`]):
//! - [`ReceiptOutbox`]: receipt events, written in the same commit as the message's final
//!   state (so no receipt is lost between state change and outbox). Each is published to
//!   in-process subscribers when first read, then POSTed to the message's `callback_url` or
//!   else the account's `webhook_url`.
//! - [`super::mo::MoOutbox`]: replies, written in the commit that answers the center's
//!   deliver_sm; POSTed to the account's `mo_url`. Subscribers already saw them on arrival.
//!
//! Rules shared by both kinds:
//! - Entries an account's SMPP binds take ([`EntryKind::owned_by_smpp`]: receipts of SMPP
//!   submits that asked for one, and every MO of an account with an SMPP login) are only
//!   published here; the SMPP server's pump delivers and deletes them.
//! - An entry with no URL (no callback, no account webhook; for MO: the account's `mo_url`
//!   was removed from the config since it was stored) is deleted (receipts: once published):
//!   there is nobody else to keep it for. Entries of an account removed from the config
//!   altogether are not visited (the pump knows configured accounts only) and stay stored.
//! - **Batches** ([`Batching`], the account's `webhook_batch` / `webhook_linger_ms`): with a
//!   batch size above 1, entries of one round going to the same URL are POSTed together as
//!   one JSON array of the usual objects (an array even when it holds one), signed over the
//!   whole body; a 2xx deletes them all in one durable commit, anything else retries the
//!   whole batch. A batch that is not full waits up to the linger time for more entries
//!   once the scan has reached the end of the outbox. Batch size 1 (the default) POSTs each
//!   entry alone as a JSON object.
//! - Delivery is at-least-once: a crash between the POST and the delete re-sends the entry.
//!   That window is bounded: an entry's delete is committed durably as soon as its POST is
//!   answered (answers that arrive together share one group commit), and each entry holds
//!   one permit of the pump's **in-flight limit** ([`OutboxPump::in_flight_limit`]:
//!   [`WebhookConfig::concurrency`] entries, raised to the largest batch of the pump's
//!   accounts so a full batch fits) from before its POST until that commit — so a crash
//!   re-sends at most that many entries per pump. Unbatched, the limit is `concurrency`.
//! - Per receiver (URL origin), [`super::receiver`] paces requests: an adaptive concurrency
//!   limit and a shared backoff after failures. While a receiver backs off, the scan skips
//!   its entries; one dead URL does not block the rest (the scan moves on with a cursor).
//!   An entry refused with a 4xx other than 429 also gets its own backoff, kept for at most
//!   [`ENTRY_RETRY_CAP`] entries per account, so one poisoned entry is not re-sent on every
//!   scan while the rest go through.
//! - A pass over an outbox reads each entry once: the next round resumes after the last
//!   entry read, and a batch lingering for more stays in memory. Only a pass that left an
//!   entry in the store (a retry not yet due, a receiver backing off, a failed POST or
//!   round) starts over from the first entry once it reaches the end.
//! - Memory does not grow with the backlog: the scan reads `scan` entries at a time from a
//!   cursor, receivers are counted per origin and entry backoffs are capped. A receiver down
//!   for an hour leaves its entries in the store, visible in the gauges `OUTBOX_DEPTH` and
//!   `OUTBOX_OLDEST_AGE` (measured every [`WebhookConfig::stats_every`], or less often when
//!   the outbox is so deep that counting it would cost more than 5 % of the pump's time).
//! - http and https URLs (rustls, see [`super::client`]), over the client's pooled
//!   keep-alive connections.
//! - The pump sleeps until woken ([`tokio::sync::Notify`], signalled when entries are added)
//!   or for `idle_poll` (to pick up entries added elsewhere, e.g. expiries), or until a
//!   lingering batch is due.

use std::collections::{BTreeMap, HashMap};
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, broadcast, watch};

use sluice_campaign::signature::{self, WebhookSecret};

use super::Notification;
use super::receiver::{self, Answer, Pacer, PacerStats, Slot};
use crate::metrics as m;
use crate::store::{
    GatewayStore, MessageId, MessageStore, Op, OutboxEntry, ReceiptEvent, StoreError,
};

/// Entries with their own backoff (refused by a 4xx) kept per account; past it, a refused
/// entry is paced by its receiver's backoff only.
pub const ENTRY_RETRY_CAP: usize = 1024;
/// Most bytes of a webhook answer read (and thrown away) so its connection can be reused.
const ANSWER_READ_LIMIT: usize = 64 * 1024;

/// Webhook delivery settings.
#[derive(Debug, Clone, Copy)]
pub struct WebhookConfig {
    /// Per-request timeout.
    pub timeout: Duration,
    /// First retry delay.
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// The webhook in-flight limit: entries POSTed and not yet durably deleted, at once (so
    /// also the most a crash can re-send per pump); raised to the largest batch of the
    /// pump's accounts ([`OutboxPump::in_flight_limit`]). Also the most requests in flight
    /// to one receiver (its adaptive limit's ceiling).
    pub concurrency: usize,
    /// Entries read per account and round (at least two batches of the account).
    pub scan: usize,
    /// Sleep when idle and not woken.
    pub idle_poll: Duration,
    /// How often the outbox gauges (depth, oldest age) are measured per account.
    pub stats_every: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            concurrency: 32,
            scan: 512,
            idle_poll: Duration::from_millis(250),
            stats_every: Duration::from_secs(5),
        }
    }
}

impl WebhookConfig {
    /// Delay before retry number `attempt` (1-based): base × 2^(attempt−1), capped.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.backoff_base
            .checked_mul(factor)
            .unwrap_or(self.backoff_max)
            .min(self.backoff_max)
    }
}

/// How an account's entries are grouped into POSTs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    /// Most entries per POST; 1 = one JSON object per POST, more = a JSON array.
    pub max: usize,
    /// How long a batch that is not full may wait for more entries.
    pub linger: Duration,
}

impl Default for Batching {
    fn default() -> Self {
        Self {
            max: 1,
            linger: Duration::ZERO,
        }
    }
}

impl Batching {
    /// From an account's `webhook_batch` and `webhook_linger_ms`.
    pub fn from_config(batch: u32, linger_ms: u64) -> Self {
        Self {
            max: usize::try_from(batch).unwrap_or(1).max(1),
            linger: Duration::from_millis(linger_ms),
        }
    }

    /// True when POST bodies are JSON arrays.
    pub fn batched(&self) -> bool {
        self.max > 1
    }
}

/// An account's destination for one kind of entry.
#[derive(Debug, Clone)]
pub struct OutboxAccount {
    /// Account name.
    pub name: String,
    /// Default webhook of this kind (receipts: `webhook_url`; MO: `mo_url`).
    pub webhook_url: Option<Arc<str>>,
    /// The account's `webhook_secret`: every POST carries its signature
    /// ([`sluice_campaign::signature`]). Config refuses a webhook URL without one; an entry
    /// whose URL came with the message (`callback_url`) of an account without one is
    /// deleted unsent, never POSTed unsigned.
    pub webhook_secret: Option<WebhookSecret>,
    /// The account has an SMPP login: entries meant for its SMPP binds are left to the SMPP
    /// server's pump (`ingress::smpp_server`), see [`EntryKind::owned_by_smpp`].
    pub smpp: bool,
    /// How its entries are grouped into POSTs.
    pub batching: Batching,
}

/// What differs between the outboxes one pump can drain. Implemented by zero-sized markers.
pub trait EntryKind: Send + Sync + 'static {
    /// A decoded entry.
    type Event: Send + Sync;
    /// Name for logs and the `kind` label.
    const NAME: &'static str;

    /// Up to `limit` entries of `account` after sequence `after`.
    ///
    /// # Errors
    /// When the store cannot be read.
    fn read(
        store: &dyn MessageStore,
        account: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError>;

    /// How many entries `account`'s outbox holds, and its oldest.
    ///
    /// # Errors
    /// When the store cannot be read.
    fn depth(
        store: &dyn MessageStore,
        account: &str,
    ) -> Result<(u64, Option<OutboxEntry>), StoreError>;

    /// The op that removes entry `seq` of `account`.
    fn delete(account: &str, seq: u64) -> Op;

    /// The ops that remove the entries `seqs` of `account`, delivered together (default:
    /// one [`delete`](Self::delete) each).
    fn delete_all(account: &str, seqs: &[u64], out: &mut Vec<Op>) {
        out.extend(seqs.iter().map(|&seq| Self::delete(account, seq)));
    }

    /// Decodes a stored entry; `None` for an undecodable one (it is dropped and logged).
    fn decode(body: &[u8]) -> Option<Self::Event>;

    /// The event of an entry read: the one the store handed over with it (read from the
    /// writer's memory, no decoding), else its body decoded.
    fn event_of(entry: &mut OutboxEntry) -> Option<Self::Event> {
        Self::decode(&entry.body)
    }

    /// When the entry was made (RFC 3339), for the oldest-entry age.
    fn made_at(event: &Self::Event) -> &str;

    /// What subscribers get when the entry is first read in this process (the event itself,
    /// taken once the pump has what it needs from it); `None` when they were told some
    /// other way.
    fn notification(event: Self::Event) -> Option<Notification>;

    /// Where the entry goes: its own URL, else the account's default.
    fn url(event: &Self::Event, account: &OutboxAccount) -> Option<Arc<str>>;

    /// The POST body (alone), or the entry's element of a batch's JSON array.
    fn body(event: &Self::Event, stored: Vec<u8>) -> Vec<u8>;

    /// True when the entry goes to the account's SMPP binds instead of a webhook: this pump
    /// publishes it to subscribers but neither POSTs nor deletes it.
    fn owned_by_smpp(event: &Self::Event, account: &OutboxAccount) -> bool;
}

pub use crate::store::SMPP_RECEIPT_TAG;

/// `seqs` (in any order, no repeats) as runs of consecutive sequences, `(first, last)` each,
/// in ascending order.
fn runs(seqs: &[u64]) -> Vec<(u64, u64)> {
    let mut sorted = seqs.to_vec();
    sorted.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::new();
    for seq in sorted {
        match out.last_mut() {
            Some((_, last)) if last.checked_add(1) == Some(seq) => *last = seq,
            _ => out.push((seq, seq)),
        }
    }
    out
}

/// Receipt events (`Store::outbox`).
#[derive(Debug, Clone, Copy)]
pub struct ReceiptOutbox;

impl EntryKind for ReceiptOutbox {
    /// Shared: with the subscribers, and with the store's memory of the newest entries.
    type Event = Arc<ReceiptEvent>;
    const NAME: &'static str = "receipt";

    fn read(
        store: &dyn MessageStore,
        account: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        store.outbox(account, after, limit)
    }

    fn depth(
        store: &dyn MessageStore,
        account: &str,
    ) -> Result<(u64, Option<OutboxEntry>), StoreError> {
        store.outbox_depth(account)
    }

    fn delete(account: &str, seq: u64) -> Op {
        Op::OutboxDelete {
            account: account.to_owned(),
            seq,
        }
    }

    /// A run of consecutive sequences is one op: the store removes it in one cursor pass.
    fn delete_all(account: &str, seqs: &[u64], out: &mut Vec<Op>) {
        for (from, through) in runs(seqs) {
            out.push(if from == through {
                Self::delete(account, from)
            } else {
                Op::OutboxDeleteRun {
                    account: account.to_owned(),
                    from_seq: from,
                    through_seq: through,
                }
            });
        }
    }

    fn decode(body: &[u8]) -> Option<Arc<ReceiptEvent>> {
        serde_json::from_slice(body).ok().map(Arc::new)
    }

    fn event_of(entry: &mut OutboxEntry) -> Option<Arc<ReceiptEvent>> {
        entry.event.take().or_else(|| Self::decode(&entry.body))
    }

    fn made_at(event: &Arc<ReceiptEvent>) -> &str {
        &event.done_at
    }

    fn notification(event: Arc<ReceiptEvent>) -> Option<Notification> {
        Some(Notification::Receipt(event))
    }

    fn url(event: &Arc<ReceiptEvent>, account: &OutboxAccount) -> Option<Arc<str>> {
        event
            .callback_url
            .as_deref()
            .map(Arc::from)
            .or_else(|| account.webhook_url.clone())
    }

    fn body(event: &Arc<ReceiptEvent>, _stored: Vec<u8>) -> Vec<u8> {
        webhook_body(event)
    }

    fn owned_by_smpp(event: &Arc<ReceiptEvent>, account: &OutboxAccount) -> bool {
        account.smpp && event.tags.contains_key(SMPP_RECEIPT_TAG)
    }
}

/// Entries waiting in the outboxes the pumps deliver, per kind: the `WEBHOOK_BACKLOG` gauge
/// is their sum (as last measured, see [`WebhookConfig::stats_every`]).
#[derive(Debug, Default)]
pub struct Backlog(Mutex<HashMap<&'static str, u64>>);

impl Backlog {
    fn set(&self, kind: &'static str, n: u64) {
        let mut b = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        b.insert(kind, n);
        metrics::gauge!(m::WEBHOOK_BACKLOG).set(b.values().sum::<u64>() as f64);
    }
}

/// What a pump keeps in memory, and what it last measured of its outboxes: read it through
/// [`PumpProbe::stats`] (tests, and the long-outage check that nothing grows with the
/// backlog).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PumpStats {
    /// Per-account scan states (one per configured account once visited).
    pub accounts: usize,
    /// Entries with their own backoff, over all accounts (at most [`ENTRY_RETRY_CAP`] each).
    pub entry_retries: usize,
    /// Receiver pacing states.
    pub receivers: PacerStats,
    /// Entries per account outbox, as last measured.
    pub depth: BTreeMap<String, u64>,
    /// The in-flight limit, entries.
    pub in_flight_limit: usize,
    /// Entries read from the store so far, over all accounts. A pass over an outbox reads
    /// each entry once unless one was left behind (see the module's notes).
    pub entries_read: u64,
}

/// Where a pump publishes its [`PumpStats`]; share it in an `Arc`.
#[derive(Debug, Default)]
pub struct PumpProbe(Mutex<PumpStats>);

impl PumpProbe {
    /// The latest figures.
    pub fn stats(&self) -> PumpStats {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn update(&self, f: impl FnOnce(&mut PumpStats)) {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner));
    }
}

/// Entries refused one by one (a 4xx), each waiting out its own backoff; capped.
#[derive(Debug, Default)]
struct EntryRetries(HashMap<u64, (u32, Instant)>);

impl EntryRetries {
    fn waiting(&self, seq: u64, now: Instant) -> bool {
        self.0.get(&seq).is_some_and(|(_, at)| *at > now)
    }

    fn refused(&mut self, seq: u64, now: Instant, cfg: &WebhookConfig) {
        if let Some((n, at)) = self.0.get_mut(&seq) {
            *n += 1;
            *at = now + cfg.backoff(*n);
        } else if self.0.len() < ENTRY_RETRY_CAP {
            self.0.insert(seq, (1, now + cfg.backoff(1)));
        }
    }

    fn delivered(&mut self, seq: u64) {
        self.0.remove(&seq);
    }
}

/// Where a pump's pass over one outbox stands: the webhook pump's per account
/// ([`AccountState::pass`]), and the SMPP server's receipt pump's per outbox.
///
/// Why: an account's receipt outbox is shared by both pumps, so either may find any number
/// of the other's entries ahead of its own (a webhook that is down keeps its entries at the
/// head). A pump that read from the first entry every round would never get past them; a
/// pass that moves on through the outbox does, and a round reads only the entries added
/// since the one before it.
#[derive(Debug, Default)]
pub(crate) struct Cursor {
    /// Entries after this sequence are read next.
    pub(crate) after: u64,
    /// An entry this pump must deliver is behind the cursor, left in the store (still in
    /// flight or waiting for its retry, its receiver backing off, refusing it or without
    /// room, a delivery that failed): the pass starts over from the first entry once it
    /// reached the end, to find it. Without one, everything behind the cursor was
    /// delivered, dropped, or is another pump's.
    pub(crate) left_behind: bool,
}

impl Cursor {
    /// Moves past a read whose last entry was `last`; `at_end`: it read less than it asked.
    pub(crate) fn advance(&mut self, last: Option<u64>, at_end: bool) {
        match last {
            _ if at_end && self.left_behind => self.restart(),
            Some(seq) => self.after = seq,
            None => {}
        }
    }

    /// Starts the pass over from the first entry (a read or a round that failed: what it
    /// held in memory is read again).
    pub(crate) fn restart(&mut self) {
        *self = Self::default();
    }
}

#[derive(Debug)]
struct AccountState {
    /// The pass over the account's outbox. Behind it, besides what [`Cursor`] says, entries
    /// may wait in [`Self::lingering`].
    pass: Cursor,
    /// Highest seq already published to subscribers.
    published_through: u64,
    /// Entries refused one by one.
    retries: EntryRetries,
    /// Since when a batch that is not full has been waiting for more entries.
    linger_since: Option<Instant>,
    /// The entries of that waiting batch, by seq, as the last round made them ready to send
    /// (URL and body). A round that resumes after the last entry read takes them from here;
    /// one that starts a pass over reads them again and finds them here instead of decoding
    /// each and writing its body again.
    lingering: HashMap<u64, Ready>,
    /// When the outbox gauges are measured next.
    stats_due: Instant,
}

impl AccountState {
    fn new(now: Instant) -> Self {
        Self {
            pass: Cursor::default(),
            published_through: 0,
            retries: EntryRetries::default(),
            linger_since: None,
            lingering: HashMap::new(),
            stats_due: now,
        }
    }
}

/// An entry ready to send: its URL and its signed body.
type Ready = (Arc<str>, Vec<u8>);

/// Entries going to one URL in one POST.
struct Batch {
    /// Shared with every entry bound for it (one allocation per account, not per entry).
    url: Arc<str>,
    origin: String,
    seqs: Vec<u64>,
    bodies: Vec<Vec<u8>>,
}

/// What one round did.
struct Round {
    /// Something was delivered or deleted: go again at once.
    worked: bool,
    /// A lingering batch is due then.
    wake_at: Option<Instant>,
}

/// How one POST ended.
enum Delivery {
    /// 2xx.
    Delivered,
    /// Not sent: its receiver went into backoff while the batch waited.
    Skipped,
    /// Not taken; `refused`: a 4xx other than 429 (the entries get their own backoff).
    Failed { refused: bool },
}

/// The pump of one kind of entry; run it with [`OutboxPump::run`].
#[derive(Debug)]
pub struct OutboxPump<K: EntryKind> {
    store: GatewayStore,
    accounts: Vec<OutboxAccount>,
    cfg: WebhookConfig,
    client: reqwest::Client,
    subscribers: broadcast::Sender<Notification>,
    wake: Arc<Notify>,
    backlog: Arc<Backlog>,
    pacer: Arc<Pacer>,
    probe: Arc<PumpProbe>,
    kind: PhantomData<K>,
}

impl<K: EntryKind> OutboxPump<K> {
    /// A pump over `accounts`, POSTing with `client` (see [`super::client::webhook_client`]).
    pub fn new(
        store: impl Into<GatewayStore>,
        accounts: Vec<OutboxAccount>,
        cfg: WebhookConfig,
        client: reqwest::Client,
        subscribers: broadcast::Sender<Notification>,
        wake: Arc<Notify>,
        backlog: Arc<Backlog>,
    ) -> Self {
        let pacer = Arc::new(Pacer::new(cfg.concurrency, move |n| cfg.backoff(n)));
        Self {
            store: store.into(),
            accounts,
            cfg,
            client,
            subscribers,
            wake,
            backlog,
            pacer,
            probe: Arc::default(),
            kind: PhantomData,
        }
    }

    /// Publishes this pump's figures to `probe` instead of a private one.
    #[must_use]
    pub fn with_probe(mut self, probe: Arc<PumpProbe>) -> Self {
        self.probe = probe;
        self
    }

    /// Where this pump publishes its figures.
    pub fn probe(&self) -> Arc<PumpProbe> {
        Arc::clone(&self.probe)
    }

    /// Entries that may be between their POST and their durable delete at once: the most a
    /// crash can make this pump send twice. `concurrency`, or the largest batch of its
    /// accounts when that is more (a batch is POSTed whole).
    pub fn in_flight_limit(&self) -> usize {
        self.accounts
            .iter()
            .map(|a| a.batching.max)
            .fold(self.cfg.concurrency, usize::max)
            .max(1)
    }

    /// Runs until `shutdown` turns true (finishing the round in progress).
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut states: HashMap<String, AccountState> = HashMap::new();
        let limit = self.in_flight_limit();
        self.probe.update(|p| p.in_flight_limit = limit);
        loop {
            if *shutdown.borrow() {
                return;
            }
            let mut busy = false;
            let mut wake_at: Option<Instant> = None;
            for acc in &self.accounts {
                let st = states
                    .entry(acc.name.clone())
                    .or_insert_with(|| AccountState::new(Instant::now()));
                match self.round(acc, st).await {
                    Ok(r) => {
                        busy |= r.worked;
                        wake_at = match (wake_at, r.wake_at) {
                            (Some(a), Some(b)) => Some(a.min(b)),
                            (a, b) => a.or(b),
                        };
                    }
                    Err(e) => {
                        tracing::warn!(kind = K::NAME, account = %acc.name, error = %e, "Outbox round failed.")
                    }
                }
                if Instant::now() >= st.stats_due {
                    self.measure(acc, st);
                }
            }
            let entry_retries = states.values().map(|s| s.retries.0.len()).sum();
            let accounts = states.len();
            let receivers = self.pacer.stats();
            self.probe.update(|p| {
                p.accounts = accounts;
                p.entry_retries = entry_retries;
                p.receivers = receivers;
            });
            if busy {
                continue;
            }
            let sleep = wake_at.map_or(self.cfg.idle_poll, |t| {
                t.saturating_duration_since(Instant::now())
                    .min(self.cfg.idle_poll)
            });
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(sleep) => {}
                changed = shutdown.changed() => {
                    // A dropped sender means the owner is gone: stop.
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// Measures `acc`'s outbox depth and oldest entry into the gauges. Counting scans the
    /// outbox, so a deep one is measured less often: never more than 5 % of the time.
    fn measure(&self, acc: &OutboxAccount, st: &mut AccountState) {
        let t = Instant::now();
        let (depth, oldest) = match K::depth(&*self.store, &acc.name) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(kind = K::NAME, account = %acc.name, error = %e, "Outbox depth not measured.");
                (0, None)
            }
        };
        let cost = t.elapsed();
        st.stats_due = Instant::now() + self.cfg.stats_every.max(cost * 20);
        let age = oldest
            .and_then(|mut e| K::event_of(&mut e))
            .and_then(|ev| K::made_at(&ev).parse::<jiff::Timestamp>().ok())
            .map_or(0.0, |made| {
                (jiff::Timestamp::now().as_millisecond() - made.as_millisecond()).max(0) as f64
                    / 1000.0
            });
        let labels = [
            (m::LABEL_ACCOUNT, acc.name.clone()),
            (m::LABEL_KIND, K::NAME.to_owned()),
        ];
        metrics::gauge!(m::OUTBOX_DEPTH, &labels).set(depth as f64);
        metrics::gauge!(m::OUTBOX_OLDEST_AGE, &labels).set(age);
        self.probe.update(|p| {
            p.depth.insert(acc.name.clone(), depth);
        });
        let total = self.probe.stats().depth.values().sum();
        self.backlog.set(K::NAME, total);
    }

    /// One scan of one account. A round that fails starts the pass over: what it held in
    /// memory is read again.
    async fn round(&self, acc: &OutboxAccount, st: &mut AccountState) -> Result<Round, StoreError> {
        let r = self.scan(acc, st).await;
        if r.is_err() {
            st.pass.restart();
        }
        r
    }

    async fn scan(&self, acc: &OutboxAccount, st: &mut AccountState) -> Result<Round, StoreError> {
        let scan = self.cfg.scan.max(acc.batching.max.saturating_mul(2)).max(1);
        let from = st.pass.after;
        let entries = K::read(&*self.store, &acc.name, from, scan)?;
        let at_end = entries.len() < scan;
        if !entries.is_empty() {
            self.probe
                .update(|p| p.entries_read += entries.len() as u64);
        }
        // Reached the end with something left behind: the next round starts over (retries
        // due by then are found).
        st.pass.advance(entries.last().map(|e| e.seq), at_end);
        let now = Instant::now();
        let mut drops = Vec::new();
        // What the last round left waiting; what waits after this one is put back by `split`.
        let mut lingering = std::mem::take(&mut st.lingering);
        // Resuming after the last entry read: the waiting batch is not read again, it comes
        // from memory ahead of the new entries (its seqs are all below theirs).
        let mut ready: Vec<(u64, Ready)> = Vec::with_capacity(entries.len());
        if from > 0 {
            ready.extend(lingering.drain());
            ready.sort_unstable_by_key(|(seq, _)| *seq);
        }
        for entry in entries {
            let seq = entry.seq;
            match lingering.remove(&seq) {
                // Published, checked and made ready by an earlier round of this pass.
                Some(made) => ready.push((seq, made)),
                None => {
                    if let Some(made) = self.prepare(acc, st, entry, &mut drops) {
                        ready.push((seq, made));
                    }
                }
            }
        }
        // Entries per URL, in the order first seen (bounded by `scan`).
        let mut by_url: Vec<Batch> = Vec::new();
        let mut index: HashMap<Arc<str>, usize> = HashMap::new();
        for (seq, (url, body)) in ready {
            if st.retries.waiting(seq, now) {
                st.pass.left_behind = true;
                continue;
            }
            let at = match index.get(&url) {
                Some(&i) => i,
                None => {
                    let origin = receiver::origin(&url);
                    if !self.pacer.ready(&origin, now) {
                        // Backing off: its entries stay stored for a later scan.
                        st.pass.left_behind = true;
                        continue;
                    }
                    index.insert(url.clone(), by_url.len());
                    by_url.push(Batch {
                        url,
                        origin,
                        seqs: Vec::new(),
                        bodies: Vec::new(),
                    });
                    by_url.len() - 1
                }
            };
            let group = &mut by_url[at];
            group.seqs.push(seq);
            group.bodies.push(body);
        }
        let mut worked = false;
        if !drops.is_empty() {
            self.store.submit(drops).await?;
            worked = true;
        }
        let (batches, wake_at) = self.split(acc, st, by_url, at_end, now);
        if batches.is_empty() {
            return Ok(Round { worked, wake_at });
        }
        worked |= self.deliver(acc, st, batches).await?;
        Ok(Round { worked, wake_at })
    }

    /// A stored entry read for the first time: decoded, published to subscribers (once), and
    /// made ready to send — its URL and webhook body — or `None` when it is not sent from
    /// here (owned by an SMPP client's bind, or dropped: undecodable, no URL, no secret to
    /// sign with; the drop's delete is added to `drops`).
    fn prepare(
        &self,
        acc: &OutboxAccount,
        st: &mut AccountState,
        mut entry: OutboxEntry,
        drops: &mut Vec<Op>,
    ) -> Option<Ready> {
        let seq = entry.seq;
        let Some(event) = K::event_of(&mut entry) else {
            tracing::error!(kind = K::NAME, account = %acc.name, seq, "Undecodable outbox entry dropped.");
            drops.push(K::delete(&acc.name, seq));
            return None;
        };
        // What this pump needs of the event is taken first; then the event itself goes to
        // the subscribers, without a copy.
        let owned = K::owned_by_smpp(&event, acc);
        let url = if owned { None } else { K::url(&event, acc) };
        let signed_body = match (&url, &acc.webhook_secret) {
            (Some(_), Some(_)) => Some(K::body(&event, entry.body)),
            _ => None,
        };
        if seq > st.published_through {
            st.published_through = seq;
            // No subscriber (no campaign service, no rules feedback): not published.
            if self.subscribers.receiver_count() > 0
                && let Some(n) = K::notification(event)
            {
                let _ = self.subscribers.send(n);
            }
        }
        if owned {
            return None;
        }
        let Some(url) = url else {
            drops.push(K::delete(&acc.name, seq));
            return None;
        };
        let Some(body) = signed_body else {
            tracing::error!(kind = K::NAME, account = %acc.name, seq, "Webhook entry dropped unsent: the account has no webhook_secret to sign it with.");
            drops.push(K::delete(&acc.name, seq));
            return None;
        };
        Some((url, body))
    }

    /// Cuts each URL's entries into batches of the account's size. A last batch that is not
    /// full, once the scan reached the end of the outbox, waits up to the linger time (then
    /// goes as it is); its due time is returned to wake the pump.
    fn split(
        &self,
        acc: &OutboxAccount,
        st: &mut AccountState,
        by_url: Vec<Batch>,
        at_end: bool,
        now: Instant,
    ) -> (Vec<Batch>, Option<Instant>) {
        let size = acc.batching.max.max(1);
        let mut out = Vec::new();
        let mut lingering = None;
        for g in by_url {
            let Batch {
                url,
                origin,
                seqs,
                bodies,
            } = g;
            let mut bodies = bodies.into_iter();
            for chunk in seqs.chunks(size) {
                let chunk_bodies: Vec<Vec<u8>> = bodies.by_ref().take(chunk.len()).collect();
                if chunk.len() < size && at_end && !acc.batching.linger.is_zero() {
                    let since = *st.linger_since.get_or_insert(now);
                    let due = since + acc.batching.linger;
                    if now < due {
                        lingering = Some(lingering.map_or(due, |d: Instant| d.min(due)));
                        // Ready as they are for the round that sends them.
                        st.lingering.extend(
                            chunk
                                .iter()
                                .copied()
                                .zip(chunk_bodies.into_iter().map(|b| (url.clone(), b))),
                        );
                        continue;
                    }
                }
                out.push(Batch {
                    url: url.clone(),
                    origin: origin.clone(),
                    seqs: chunk.to_vec(),
                    bodies: chunk_bodies,
                });
            }
        }
        if lingering.is_none() {
            st.linger_since = None;
        }
        (out, lingering)
    }

    /// POSTs `batches` within the in-flight limit and the receivers' limits, deleting each
    /// delivered batch's entries durably as answers come in; `true` when something was
    /// delivered.
    async fn deliver(
        &self,
        acc: &OutboxAccount,
        st: &mut AccountState,
        batches: Vec<Batch>,
    ) -> Result<bool, StoreError> {
        // Every entry holds one permit from before its POST until its delete is durable, so
        // at most `in_flight_limit` entries are ever delivered-but-not-retired: that is all a
        // crash can make us send twice.
        let limit = self.in_flight_limit();
        let permits = Arc::new(Semaphore::new(limit));
        let mut results = futures::stream::iter(batches)
            .map(|b| {
                let permits = Arc::clone(&permits);
                async move {
                    let n = u32::try_from(b.seqs.len().min(limit)).unwrap_or(u32::MAX);
                    let permit: Option<OwnedSemaphorePermit> =
                        permits.acquire_many_owned(n).await.ok();
                    let outcome = match self.pacer.acquire(&b.origin).await {
                        Some(slot) => self.post(acc, &b, slot).await,
                        None => Delivery::Skipped,
                    };
                    (b.seqs, outcome, permit)
                }
            })
            .buffer_unordered(limit);
        let mut worked = false;
        while let Some(first) = results.next().await {
            // Everything else already answered goes into the same commit.
            let mut done = vec![first];
            while let Some(Some(more)) = results.next().now_or_never() {
                done.push(more);
            }
            let now = Instant::now();
            let mut deletes = Vec::new();
            let mut held = Vec::with_capacity(done.len());
            for (seqs, outcome, permit) in done {
                held.push(permit);
                match outcome {
                    Delivery::Delivered => {
                        for &seq in &seqs {
                            st.retries.delivered(seq);
                        }
                        K::delete_all(&acc.name, &seqs, &mut deletes);
                    }
                    Delivery::Failed { refused: true } => {
                        st.pass.left_behind = true;
                        for seq in seqs {
                            st.retries.refused(seq, now, &self.cfg);
                        }
                    }
                    Delivery::Failed { refused: false } | Delivery::Skipped => {
                        st.pass.left_behind = true;
                    }
                }
            }
            if !deletes.is_empty() {
                // Durable (`Op::OutboxDelete` / `Op::MoDelete` are fsync'd): only then may
                // the permits go to the next POSTs.
                self.store.submit(deletes).await?;
                worked = true;
            }
            drop(held);
        }
        Ok(worked)
    }

    /// POSTs one batch through its receiver's `slot`, signed with the account's secret (a
    /// fresh timestamp per attempt, so a retry hours later is not refused as stale), and
    /// tells the receiver's pacing how it went.
    async fn post(&self, acc: &OutboxAccount, b: &Batch, slot: Slot) -> Delivery {
        let Some(secret) = &acc.webhook_secret else {
            slot.finish(Answer::Refused);
            return Delivery::Failed { refused: true };
        };
        let body = if acc.batching.batched() {
            json_array(&b.bodies)
        } else {
            b.bodies.concat()
        };
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let started = Instant::now();
        let r = self
            .client
            .post(&*b.url)
            .timeout(self.cfg.timeout)
            .header("content-type", "application/json")
            .header(signature::HEADER, signature::sign(secret, t, &body))
            .body(body)
            .send()
            .await;
        let (result, label) = match r {
            Ok(mut resp) => {
                let status = resp.status();
                // Read the (small) answer so the connection goes back to the pool.
                let mut read = 0usize;
                while read < ANSWER_READ_LIMIT {
                    match resp.chunk().await {
                        Ok(Some(c)) => read += c.len(),
                        _ => break,
                    }
                }
                if status.is_success() {
                    (Ok(started.elapsed()), "2xx".to_owned())
                } else {
                    let code = status.as_u16();
                    let (reason, answer) = match code {
                        429 => ("status_429", Answer::Overloaded),
                        500..=599 => ("status_5xx", Answer::Overloaded),
                        _ => ("status_4xx", Answer::Refused),
                    };
                    let why = format!("{} answered {code}", b.url);
                    (Err((reason, answer, why)), code.to_string())
                }
            }
            Err(e) => {
                let reason = if e.is_timeout() {
                    "timeout"
                } else if e.is_connect() {
                    "connect"
                } else {
                    "other"
                };
                // The source chain holds the reason (refused, TLS certificate, timeout).
                (
                    Err((reason, Answer::Overloaded, error_chain(&e))),
                    "error".to_owned(),
                )
            }
        };
        metrics::counter!(m::WEBHOOK_ATTEMPTS, m::LABEL_STATUS => label).increment(1);
        match result {
            Ok(rtt) => {
                slot.finish(Answer::Delivered { rtt });
                Delivery::Delivered
            }
            Err((reason, answer, why)) => {
                metrics::counter!(m::WEBHOOK_FAILURES, m::LABEL_REASON => reason).increment(1);
                let in_a_row = slot.finish(answer);
                // At warn when a receiver starts failing (a TLS or URL mistake shows up),
                // then quietly while it keeps failing.
                if in_a_row == 1 {
                    tracing::warn!(kind = K::NAME, account = %acc.name, receiver = %b.origin, entries = b.seqs.len(), %reason, detail = %why, "Webhook failed; retrying with backoff.");
                } else {
                    tracing::debug!(kind = K::NAME, account = %acc.name, receiver = %b.origin, entries = b.seqs.len(), in_a_row, %reason, detail = %why, "Webhook failed again.");
                }
                Delivery::Failed {
                    refused: answer == Answer::Refused,
                }
            }
        }
    }
}

/// `[a,b,…]` from JSON values already encoded.
fn json_array(items: &[Vec<u8>]) -> Vec<u8> {
    let len = items.iter().map(|i| i.len() + 1).sum::<usize>() + 2;
    let mut out = Vec::with_capacity(len);
    out.push(b'[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(item);
    }
    out.push(b']');
    out
}

/// `e` and its sources, joined by ": ".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// The contract's receipt body: the event without the routing-only `callback_url` and the
/// in-process `kind` and `lane`. Written straight from the event ([`WebhookReceipt`]): the
/// pump makes one per receipt, and going through a `serde_json::Value` map cost more than the
/// rest of the pump's work on it.
pub fn webhook_body(event: &ReceiptEvent) -> Vec<u8> {
    serde_json::to_vec(&WebhookReceipt::from(event)).unwrap_or_default()
}

/// The webhook contract's fields of a [`ReceiptEvent`], borrowed. Fields are in name order,
/// the order the body has always had (it was built through a `Value` map, which sorts), so
/// the bytes — and their signatures — are those clients have seen. A field added to
/// [`ReceiptEvent`] must be added here too (or named where `kind` and `lane` are, as not in
/// the contract): `body_bytes_are_those_of_the_value_map` fails until it is.
#[derive(serde::Serialize)]
struct WebhookReceipt<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    client_ref: Option<&'a str>,
    done_at: &'a str,
    err: &'a str,
    id: &'a MessageId,
    parts: u16,
    stat: &'a str,
    state: crate::store::MessageState,
    #[serde(skip_serializing_if = "Option::is_none")]
    submitted_at: Option<&'a str>,
    tags: &'a BTreeMap<String, String>,
    to: &'a str,
}

impl<'a> From<&'a ReceiptEvent> for WebhookReceipt<'a> {
    fn from(e: &'a ReceiptEvent) -> Self {
        Self {
            client_ref: e.client_ref.as_deref(),
            done_at: &e.done_at,
            err: &e.err,
            id: &e.id,
            parts: e.parts,
            stat: &e.stat,
            state: e.state,
            submitted_at: e.submitted_at.as_deref(),
            tags: &e.tags,
            to: &e.to,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_pass_resumes_after_its_last_read_and_starts_over_only_for_what_it_left() {
        let mut c = super::Cursor::default();
        c.advance(Some(256), false);
        assert_eq!(c.after, 256, "a full read: the next one starts after it");
        c.advance(Some(300), true);
        assert_eq!(
            c.after, 300,
            "the end, nothing left behind: only new entries next"
        );
        c.advance(None, true);
        assert_eq!(c.after, 300);
        c.left_behind = true;
        c.advance(Some(512), false);
        assert_eq!(c.after, 512, "not at the end yet: the pass goes on");
        c.advance(None, true);
        assert_eq!(
            c.after, 0,
            "the end with something left behind: from the first entry"
        );
        assert!(!c.left_behind);
    }

    use super::*;

    #[test]
    fn delivered_sequences_go_as_runs() {
        assert_eq!(runs(&[]), []);
        assert_eq!(runs(&[7]), [(7, 7)]);
        assert_eq!(runs(&[5, 3, 4, 9, 10, 1]), [(1, 1), (3, 5), (9, 10)]);
        assert_eq!(runs(&[u64::MAX, u64::MAX - 1]), [(u64::MAX - 1, u64::MAX)]);
        let mut ops = Vec::new();
        ReceiptOutbox::delete_all("acme", &[4, 2, 3, 8], &mut ops);
        assert_eq!(
            format!("{ops:?}"),
            format!(
                "{:?}",
                [
                    Op::OutboxDeleteRun {
                        account: "acme".into(),
                        from_seq: 2,
                        through_seq: 4,
                    },
                    Op::OutboxDelete {
                        account: "acme".into(),
                        seq: 8,
                    },
                ]
            )
        );
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let c = WebhookConfig {
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            ..WebhookConfig::default()
        };
        assert_eq!(c.backoff(1), Duration::from_secs(1));
        assert_eq!(c.backoff(2), Duration::from_secs(2));
        assert_eq!(c.backoff(6), Duration::from_secs(32));
        assert_eq!(c.backoff(7), Duration::from_secs(60));
        assert_eq!(c.backoff(500), Duration::from_secs(60));
    }

    #[test]
    fn body_has_contract_fields_only() {
        let ev = ReceiptEvent {
            id: "01JD3Q5V8Q0000000000000001".parse().expect("an id"),
            client_ref: Some("abc".into()),
            to: "+8613800138000".into(),
            state: crate::store::MessageState::Delivered,
            stat: "DELIVRD".into(),
            err: "000".into(),
            parts: 2,
            submitted_at: Some("2026-11-26T00:00:00Z".into()),
            done_at: "2026-11-26T00:00:01Z".into(),
            callback_url: Some("http://x/".into()),
            tags: [("task".to_owned(), "42".to_owned())].into(),
            kind: crate::store::MessageKind::Sms,
            lane: crate::store::Lane::Marketing,
            original: None,
        };
        let v: serde_json::Value = serde_json::from_slice(&webhook_body(&ev)).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"id":"01JD3Q5V8Q0000000000000001","client_ref":"abc",
                "to":"+8613800138000","state":"delivered","stat":"DELIVRD","err":"000","parts":2,
                "submitted_at":"2026-11-26T00:00:00Z","done_at":"2026-11-26T00:00:01Z",
                "tags":{"task":"42"}})
        );
    }

    /// The body as it was built before (the event through a `Value` map, the fields not in
    /// the contract removed): the bytes must not change, signatures are over them.
    fn body_through_value(event: &ReceiptEvent) -> Vec<u8> {
        let mut v = serde_json::to_value(event).expect("value");
        let o = v.as_object_mut().expect("object");
        for field in ["callback_url", "kind", "lane", "original"] {
            o.remove(field);
        }
        serde_json::to_vec(&v).expect("json")
    }

    #[test]
    fn body_bytes_are_those_of_the_value_map() {
        let full = ReceiptEvent {
            id: "01JD3Q5V8Q0000000000000001".parse().expect("an id"),
            client_ref: Some("r\"ef\u{1}é".into()),
            to: "+8613800138000".into(),
            state: crate::store::MessageState::Undeliverable,
            stat: "UNDELIV".into(),
            err: "00B".into(),
            parts: 3,
            submitted_at: Some("2026-11-26T00:00:00Z".into()),
            done_at: "2026-11-26T00:00:01Z".into(),
            callback_url: Some("http://x/".into()),
            tags: [
                ("z".to_owned(), "last".to_owned()),
                ("task".to_owned(), "42\n".to_owned()),
            ]
            .into(),
            kind: crate::store::MessageKind::Mms,
            lane: crate::store::Lane::Otp,
            original: Some(crate::store::ReceiptOriginal {
                from: Some("10690000".into()),
                text: "Hello".into(),
            }),
        };
        let bare = ReceiptEvent {
            client_ref: None,
            submitted_at: None,
            callback_url: None,
            tags: BTreeMap::new(),
            state: crate::store::MessageState::Expired,
            original: None,
            ..full.clone()
        };
        for ev in [full, bare] {
            assert_eq!(
                String::from_utf8(webhook_body(&ev)).expect("utf-8"),
                String::from_utf8(body_through_value(&ev)).expect("utf-8")
            );
        }
    }
}

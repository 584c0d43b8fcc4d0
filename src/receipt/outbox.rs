//! The outbox pump: deliver each account's durable outbox entries by webhook.
//!
//! Job: read a per-account outbox of the store, POST each entry to its URL, and delete it only
//! after a 2xx. Failures retry with exponential backoff, per entry, for as long as it takes:
//! an entry is kept until delivered. One pump runs per kind of entry ([`EntryKind`]):
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
//! - Delivery is at-least-once: a crash between the POST and the delete re-sends the entry.
//!   That window is bounded: an entry's delete is committed durably as soon as its POST is
//!   answered (answers that arrive together share one group commit), and at most
//!   [`WebhookConfig::concurrency`] entries are between their POST and that commit at any
//!   time — so a crash re-sends at most that many per pump (the webhook in-flight limit).
//!   In-process subscribers see each receipt once per process life (again after a restart).
//! - One dead URL does not block the rest: the scan moves on with a cursor, and an entry
//!   waiting out its backoff is skipped until due.
//! - http and https URLs (rustls, see [`super::client`]).
//! - The pump sleeps until woken ([`tokio::sync::Notify`], signalled when entries are added)
//!   or for `idle_poll` (to pick up entries added elsewhere, e.g. expiries).

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use tokio::sync::{Notify, Semaphore, broadcast, watch};

use sluice_campaign::signature::{self, WebhookSecret};

use super::Notification;
use crate::metrics as m;
use crate::store::{AnyBackend, Op, OutboxEntry, ReceiptEvent, Store, StoreError};

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
    /// also the most a crash can re-send per pump).
    pub concurrency: usize,
    /// Entries read per account and round.
    pub scan: usize,
    /// Sleep when idle and not woken.
    pub idle_poll: Duration,
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

/// An account's destination for one kind of entry.
#[derive(Debug, Clone)]
pub struct OutboxAccount {
    /// Account name.
    pub name: String,
    /// Default webhook of this kind (receipts: `webhook_url`; MO: `mo_url`).
    pub webhook_url: Option<String>,
    /// The account's `webhook_secret`: every POST carries its signature
    /// ([`sluice_campaign::signature`]). Config refuses a webhook URL without one; an entry
    /// whose URL came with the message (`callback_url`) of an account without one is
    /// deleted unsent, never POSTed unsigned.
    pub webhook_secret: Option<WebhookSecret>,
    /// The account has an SMPP login: entries meant for its SMPP binds are left to the SMPP
    /// server's pump (`ingress::smpp_server`), see [`EntryKind::owned_by_smpp`].
    pub smpp: bool,
}

/// What differs between the outboxes one pump can drain. Implemented by zero-sized markers.
pub trait EntryKind: Send + Sync + 'static {
    /// A decoded entry.
    type Event: Send + Sync;
    /// Name for logs.
    const NAME: &'static str;

    /// Up to `limit` entries of `account` after sequence `after`.
    ///
    /// # Errors
    /// When the store cannot be read.
    fn read(
        store: &Store<AnyBackend>,
        account: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError>;

    /// The op that removes entry `seq` of `account`.
    fn delete(account: &str, seq: u64) -> Op;

    /// Decodes a stored entry; `None` for an undecodable one (it is dropped and logged).
    fn decode(body: &[u8]) -> Option<Self::Event>;

    /// What subscribers get when the entry is first read in this process; `None` when they
    /// were told some other way.
    fn notification(event: &Self::Event) -> Option<Notification>;

    /// Where the entry goes: its own URL, else the account's default.
    fn url(event: &Self::Event, account: &OutboxAccount) -> Option<String>;

    /// The POST body.
    fn body(event: &Self::Event, stored: Vec<u8>) -> Vec<u8>;

    /// True when the entry goes to the account's SMPP binds instead of a webhook: this pump
    /// publishes it to subscribers but neither POSTs nor deletes it.
    fn owned_by_smpp(event: &Self::Event, account: &OutboxAccount) -> bool;
}

/// Tag a message submitted over SMPP with registered_delivery carries (value: the SMPP
/// flag, `1` = every final state, `2` = failures only). Its receipt goes back as deliver_sm
/// on a receiver bind of the account; without it, a receipt takes the webhook path.
pub const SMPP_RECEIPT_TAG: &str = "smpp_registered_delivery";

/// Receipt events (`Store::outbox`).
#[derive(Debug, Clone, Copy)]
pub struct ReceiptOutbox;

impl EntryKind for ReceiptOutbox {
    type Event = ReceiptEvent;
    const NAME: &'static str = "receipt";

    fn read(
        store: &Store<AnyBackend>,
        account: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        store.outbox(account, after, limit)
    }

    fn delete(account: &str, seq: u64) -> Op {
        Op::OutboxDelete {
            account: account.to_owned(),
            seq,
        }
    }

    fn decode(body: &[u8]) -> Option<ReceiptEvent> {
        serde_json::from_slice(body).ok()
    }

    fn notification(event: &ReceiptEvent) -> Option<Notification> {
        Some(Notification::Receipt(event.clone()))
    }

    fn url(event: &ReceiptEvent, account: &OutboxAccount) -> Option<String> {
        event
            .callback_url
            .clone()
            .or_else(|| account.webhook_url.clone())
    }

    fn body(event: &ReceiptEvent, _stored: Vec<u8>) -> Vec<u8> {
        webhook_body(event)
    }

    fn owned_by_smpp(event: &ReceiptEvent, account: &OutboxAccount) -> bool {
        account.smpp && event.tags.contains_key(SMPP_RECEIPT_TAG)
    }
}

/// Entries waiting out a backoff, per kind: the `WEBHOOK_BACKLOG` gauge is their sum.
#[derive(Debug, Default)]
pub struct Backlog(Mutex<HashMap<&'static str, usize>>);

impl Backlog {
    fn set(&self, kind: &'static str, n: usize) {
        let mut b = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        b.insert(kind, n);
        metrics::gauge!(m::WEBHOOK_BACKLOG).set(b.values().sum::<usize>() as f64);
    }
}

#[derive(Debug, Default)]
struct AccountState {
    /// Scan position: entries after this seq are read next.
    cursor: u64,
    /// Highest seq already published to subscribers.
    published_through: u64,
    /// Entries waiting out a backoff: seq → (attempts, not before).
    retry: HashMap<u64, (u32, Instant)>,
}

/// The pump of one kind of entry; run it with [`OutboxPump::run`].
#[derive(Debug)]
pub struct OutboxPump<K: EntryKind> {
    store: Store<AnyBackend>,
    accounts: Vec<OutboxAccount>,
    cfg: WebhookConfig,
    client: reqwest::Client,
    subscribers: broadcast::Sender<Notification>,
    wake: Arc<Notify>,
    backlog: Arc<Backlog>,
    kind: PhantomData<K>,
}

enum Plan {
    Delete(u64),
    Post {
        seq: u64,
        url: String,
        body: Vec<u8>,
    },
}

impl<K: EntryKind> OutboxPump<K> {
    /// A pump over `accounts`, POSTing with `client` (see [`super::client::webhook_client`]).
    pub fn new(
        store: Store<AnyBackend>,
        accounts: Vec<OutboxAccount>,
        cfg: WebhookConfig,
        client: reqwest::Client,
        subscribers: broadcast::Sender<Notification>,
        wake: Arc<Notify>,
        backlog: Arc<Backlog>,
    ) -> Self {
        Self {
            store,
            accounts,
            cfg,
            client,
            subscribers,
            wake,
            backlog,
            kind: PhantomData,
        }
    }

    /// Runs until `shutdown` turns true (finishing the round in progress).
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut states: HashMap<String, AccountState> = HashMap::new();
        loop {
            if *shutdown.borrow() {
                return;
            }
            let mut busy = false;
            let mut backlog = 0usize;
            for acc in &self.accounts {
                let st = states.entry(acc.name.clone()).or_default();
                match self.round(acc, st).await {
                    Ok(worked) => busy |= worked,
                    Err(e) => {
                        tracing::warn!(kind = K::NAME, account = %acc.name, error = %e, "Outbox round failed.")
                    }
                }
                backlog += st.retry.len();
            }
            self.backlog.set(K::NAME, backlog);
            if busy {
                continue;
            }
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(self.cfg.idle_poll) => {}
                changed = shutdown.changed() => {
                    // A dropped sender means the owner is gone: stop.
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// One scan of one account; `true` when something was delivered or deleted.
    async fn round(&self, acc: &OutboxAccount, st: &mut AccountState) -> Result<bool, StoreError> {
        let entries = K::read(&self.store, &acc.name, st.cursor, self.cfg.scan)?;
        if entries.len() < self.cfg.scan {
            // Reached the end: the next round starts over (retries due by then are found).
            st.cursor = 0;
        } else if let Some(last) = entries.last() {
            st.cursor = last.seq;
        }
        let now = Instant::now();
        let mut plans = Vec::new();
        for OutboxEntry { seq, body } in entries {
            let Some(event) = K::decode(&body) else {
                tracing::error!(kind = K::NAME, account = %acc.name, seq, "Undecodable outbox entry dropped.");
                plans.push(Plan::Delete(seq));
                continue;
            };
            if seq > st.published_through {
                st.published_through = seq;
                if let Some(n) = K::notification(&event) {
                    let _ = self.subscribers.send(n);
                }
            }
            if K::owned_by_smpp(&event, acc) {
                continue;
            }
            let Some(url) = K::url(&event, acc) else {
                plans.push(Plan::Delete(seq));
                continue;
            };
            if acc.webhook_secret.is_none() {
                tracing::error!(kind = K::NAME, account = %acc.name, seq, "Webhook entry dropped unsent: the account has no webhook_secret to sign it with.");
                plans.push(Plan::Delete(seq));
                continue;
            }
            if st.retry.get(&seq).is_some_and(|(_, at)| *at > now) {
                continue;
            }
            plans.push(Plan::Post {
                seq,
                url,
                body: K::body(&event, body),
            });
        }
        if plans.is_empty() {
            return Ok(false);
        }
        let mut worked = false;
        let mut drops = Vec::new();
        let mut posts = Vec::new();
        for p in plans {
            match p {
                Plan::Delete(seq) => drops.push(K::delete(&acc.name, seq)),
                Plan::Post { seq, url, body } => posts.push((seq, url, body)),
            }
        }
        if !drops.is_empty() {
            self.store.submit(drops).await?;
            worked = true;
        }
        // An entry holds one permit from before its POST until its delete is durable, so at
        // most `concurrency` entries are ever delivered-but-not-retired: that is all a crash
        // can make us send twice.
        let limit = self.cfg.concurrency.max(1);
        let permits = Arc::new(Semaphore::new(limit));
        let mut results = futures::stream::iter(posts)
            .map(|(seq, url, body)| {
                let permits = Arc::clone(&permits);
                async move {
                    let permit = permits.acquire_owned().await.ok();
                    (seq, self.post(acc, &url, body).await, permit)
                }
            })
            .buffer_unordered(limit);
        while let Some(first) = results.next().await {
            // Everything else already answered goes into the same commit.
            let mut done = vec![first];
            while let Some(Some(more)) = results.next().now_or_never() {
                done.push(more);
            }
            let mut deletes = Vec::new();
            let mut held = Vec::with_capacity(done.len());
            for (seq, outcome, permit) in done {
                held.push(permit);
                if let Err(why) = outcome {
                    let attempts = st.retry.get(&seq).map_or(1, |(a, _)| a + 1);
                    // Once per entry at warn (a TLS or URL mistake shows up), then quietly.
                    if attempts == 1 {
                        tracing::warn!(kind = K::NAME, account = %acc.name, seq, reason = %why, "Webhook failed; retrying with backoff.");
                    } else {
                        tracing::debug!(kind = K::NAME, account = %acc.name, seq, attempts, reason = %why, "Webhook failed again.");
                    }
                    st.retry
                        .insert(seq, (attempts, Instant::now() + self.cfg.backoff(attempts)));
                } else {
                    st.retry.remove(&seq);
                    deletes.push(K::delete(&acc.name, seq));
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

    /// POSTs one entry, signed with the account's secret (a fresh timestamp per attempt, so
    /// a retry hours later is not refused as stale); `Err` says why it was not taken.
    async fn post(&self, acc: &OutboxAccount, url: &str, body: Vec<u8>) -> Result<(), String> {
        let Some(secret) = &acc.webhook_secret else {
            return Err("the account has no webhook_secret".to_owned());
        };
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let r = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .header(signature::HEADER, signature::sign(secret, t, &body))
            .body(body)
            .send()
            .await;
        let (outcome, label) = match r {
            Ok(resp) if resp.status().is_success() => (Ok(()), "2xx".to_owned()),
            Ok(resp) => {
                let code = resp.status().as_u16().to_string();
                (Err(format!("{url} answered {code}")), code)
            }
            // The source chain holds the reason (refused, TLS certificate, timeout).
            Err(e) => (Err(error_chain(&e)), "error".to_owned()),
        };
        metrics::counter!(m::WEBHOOK_ATTEMPTS, m::LABEL_STATUS => label).increment(1);
        outcome
    }
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

/// The contract's receipt body: the event without the routing-only `callback_url`.
pub fn webhook_body(event: &ReceiptEvent) -> Vec<u8> {
    let mut v = serde_json::to_value(event).unwrap_or(serde_json::Value::Null);
    if let Some(o) = v.as_object_mut() {
        // Delivery routing and in-process facts, not part of the webhook contract.
        for field in ["callback_url", "kind", "lane"] {
            o.remove(field);
        }
    }
    serde_json::to_vec(&v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

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
            id: "01JD3Q5V8Q0000000000000001".into(),
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
}

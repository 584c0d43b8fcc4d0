//! The receipt outbox pump: deliver each account's durable receipt events by webhook.
//!
//! Job: read the store's per-account outbox (written in the same commit as the final state,
//! so no receipt is lost between state change and outbox), publish each entry to in-process
//! subscribers, POST it to the message's `callback_url` or else the account's webhook, and
//! delete it only after a 2xx. Failures retry with exponential backoff, per entry, for as long
//! as it takes: an entry is kept until delivered.
//!
//! - An entry with no URL at all (no callback, no account webhook) is deleted once published
//!   to subscribers: there is nobody else to keep it for.
//! - Delivery is at-least-once: a crash between the POST and the delete re-sends the entry.
//!   In-process subscribers see each entry once per process life (again after a restart).
//! - One dead callback URL does not block the rest: the scan moves on with a cursor, and an
//!   entry waiting out its backoff is skipped until due.
//! - Plain http only: the workspace's reqwest has no TLS feature (LIBRARIES.md: pick one
//!   rustls provider before enabling it). Ingress refuses https callback URLs; an https
//!   account webhook from config is warned about at start and its POSTs fail (and retry).
//! - The pump sleeps until woken ([`tokio::sync::Notify`], signalled when a receipt finalises a
//!   message) or for `idle_poll` (to pick up expiries and failures finalised elsewhere).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::sync::{Notify, broadcast, watch};

use super::Notification;
use crate::metrics as m;
use crate::store::{AnyBackend, Op, OutboxEntry, ReceiptEvent, Store};

/// Webhook delivery settings.
#[derive(Debug, Clone, Copy)]
pub struct WebhookConfig {
    /// Per-request timeout.
    pub timeout: Duration,
    /// First retry delay.
    pub backoff_base: Duration,
    /// Longest retry delay.
    pub backoff_max: Duration,
    /// POSTs in flight at once.
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

/// An account's receipt destination.
#[derive(Debug, Clone)]
pub struct OutboxAccount {
    /// Account name.
    pub name: String,
    /// Default webhook.
    pub webhook_url: Option<String>,
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

/// The pump; run it with [`OutboxPump::run`].
#[derive(Debug)]
pub struct OutboxPump {
    store: Store<AnyBackend>,
    accounts: Vec<OutboxAccount>,
    cfg: WebhookConfig,
    client: reqwest::Client,
    subscribers: broadcast::Sender<Notification>,
    wake: Arc<Notify>,
}

enum Plan {
    Delete(u64),
    Post {
        seq: u64,
        url: String,
        body: Vec<u8>,
    },
}

impl OutboxPump {
    /// A pump over `accounts`.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(
        store: Store<AnyBackend>,
        accounts: Vec<OutboxAccount>,
        cfg: WebhookConfig,
        subscribers: broadcast::Sender<Notification>,
        wake: Arc<Notify>,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder().timeout(cfg.timeout).build()?;
        Ok(Self {
            store,
            accounts,
            cfg,
            client,
            subscribers,
            wake,
        })
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
                        tracing::warn!(account = %acc.name, error = %e, "Outbox round failed.")
                    }
                }
                backlog += st.retry.len();
            }
            metrics::gauge!(m::WEBHOOK_BACKLOG).set(backlog as f64);
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
    async fn round(
        &self,
        acc: &OutboxAccount,
        st: &mut AccountState,
    ) -> Result<bool, crate::store::StoreError> {
        let entries = self.store.outbox(&acc.name, st.cursor, self.cfg.scan)?;
        if entries.len() < self.cfg.scan {
            // Reached the end: the next round starts over (retries due by then are found).
            st.cursor = 0;
        } else if let Some(last) = entries.last() {
            st.cursor = last.seq;
        }
        let now = Instant::now();
        let mut plans = Vec::new();
        for OutboxEntry { seq, body } in entries {
            let Ok(event) = serde_json::from_slice::<ReceiptEvent>(&body) else {
                tracing::error!(account = %acc.name, seq, "Undecodable outbox entry dropped.");
                plans.push(Plan::Delete(seq));
                continue;
            };
            if seq > st.published_through {
                st.published_through = seq;
                let _ = self.subscribers.send(Notification::Receipt(event.clone()));
            }
            let Some(url) = event
                .callback_url
                .clone()
                .or_else(|| acc.webhook_url.clone())
            else {
                plans.push(Plan::Delete(seq));
                continue;
            };
            if st.retry.get(&seq).is_some_and(|(_, at)| *at > now) {
                continue;
            }
            plans.push(Plan::Post {
                seq,
                url,
                body: webhook_body(&event),
            });
        }
        if plans.is_empty() {
            return Ok(false);
        }
        let results: Vec<(u64, bool)> = futures::stream::iter(plans)
            .map(|p| async move {
                match p {
                    Plan::Delete(seq) => (seq, true),
                    Plan::Post { seq, url, body } => (seq, self.post(&url, body).await),
                }
            })
            .buffer_unordered(self.cfg.concurrency.max(1))
            .collect()
            .await;
        let mut deletes = Vec::new();
        for (seq, ok) in results {
            if ok {
                st.retry.remove(&seq);
                deletes.push(Op::OutboxDelete {
                    account: acc.name.clone(),
                    seq,
                });
            } else {
                let attempts = st.retry.get(&seq).map_or(1, |(a, _)| a + 1);
                st.retry
                    .insert(seq, (attempts, Instant::now() + self.cfg.backoff(attempts)));
            }
        }
        let worked = !deletes.is_empty();
        if worked {
            self.store.submit(deletes).await?;
        }
        Ok(worked)
    }

    async fn post(&self, url: &str, body: Vec<u8>) -> bool {
        let r = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        let (ok, label) = match &r {
            Ok(resp) if resp.status().is_success() => (true, "2xx".to_owned()),
            Ok(resp) => (false, resp.status().as_u16().to_string()),
            Err(_) => (false, "error".to_owned()),
        };
        metrics::counter!(m::WEBHOOK_ATTEMPTS, m::LABEL_STATUS => label).increment(1);
        if !ok {
            tracing::debug!(%url, "Receipt webhook failed; will retry.");
        }
        ok
    }
}

/// The contract's receipt body: the event without the routing-only `callback_url`.
pub fn webhook_body(event: &ReceiptEvent) -> Vec<u8> {
    let mut v = serde_json::to_value(event).unwrap_or(serde_json::Value::Null);
    if let Some(o) = v.as_object_mut() {
        o.remove("callback_url");
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

//! Mobile-originated replies: find the account, tell subscribers, POST the account's `mo_url`.
//!
//! Job: route an MO by its destination (our long number, possibly with an extension code
//! appended) to the account owning the longest matching sender prefix — the account's
//! default sender and its allowed senders (a trailing `*` is dropped) — and deliver
//! `{"from","to","text","received_at"}` (docs/http-api.md) to that account's `mo_url`.
//!
//! Delivery retries with backoff up to `max_attempts`, in memory only: unlike receipts, MOs
//! have no durable outbox in the store yet, so an MO whose webhook is down when the process
//! stops is lost (logged and counted). In-process subscribers get every MO, routed or not.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Semaphore;

use super::outbox::WebhookConfig;
use crate::metrics as m;

/// An MO as delivered to subscribers and webhooks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MoEvent {
    /// Owning account, when a sender prefix matched.
    #[serde(skip)]
    pub account: Option<String>,
    /// The handset.
    pub from: String,
    /// Our number (+ extension).
    pub to: String,
    /// Decoded text.
    pub text: String,
    /// RFC 3339 arrival time.
    pub received_at: String,
}

/// An account's MO routing data.
#[derive(Debug, Clone)]
pub struct MoAccount {
    /// Account name.
    pub name: String,
    /// Sender numbers whose extensions route here.
    pub prefixes: Vec<String>,
    /// Where replies go.
    pub mo_url: Option<String>,
}

/// Longest-prefix router over accounts' sender numbers.
#[derive(Debug, Clone, Default)]
pub struct MoRouter {
    /// (prefix without '+', account index), longest first.
    prefixes: Vec<(String, usize)>,
    accounts: Vec<MoAccount>,
}

fn digits(s: &str) -> &str {
    s.trim().trim_start_matches('+')
}

impl MoRouter {
    /// Builds the router.
    pub fn new(accounts: Vec<MoAccount>) -> Self {
        let mut prefixes: Vec<(String, usize)> = accounts
            .iter()
            .enumerate()
            .flat_map(|(i, a)| {
                a.prefixes
                    .iter()
                    .map(move |p| (digits(p.trim_end_matches('*')).to_owned(), i))
            })
            .filter(|(p, _)| !p.is_empty())
            .collect();
        prefixes.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
        Self { prefixes, accounts }
    }

    /// The account an MO to `to` belongs to.
    pub fn route(&self, to: &str) -> Option<&MoAccount> {
        let to = digits(to);
        self.prefixes
            .iter()
            .find(|(p, _)| to.starts_with(p.as_str()))
            .and_then(|(_, i)| self.accounts.get(*i))
    }
}

/// Delivers MO webhooks with bounded concurrency and retries.
#[derive(Debug, Clone)]
pub struct MoDelivery {
    client: reqwest::Client,
    cfg: WebhookConfig,
    max_attempts: u32,
    permits: Arc<Semaphore>,
}

impl MoDelivery {
    /// A delivery pool.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(cfg: WebhookConfig, max_attempts: u32) -> Result<Self, reqwest::Error> {
        Ok(Self {
            client: reqwest::Client::builder().timeout(cfg.timeout).build()?,
            cfg,
            max_attempts: max_attempts.max(1),
            permits: Arc::new(Semaphore::new(cfg.concurrency.max(1) * 4)),
        })
    }

    /// Starts delivering `event` to `url` in the background.
    pub fn spawn(&self, url: String, event: &MoEvent) {
        let body = serde_json::to_vec(event).unwrap_or_default();
        let this = self.clone();
        metrics::gauge!(m::WEBHOOK_BACKLOG).increment(1.0);
        tokio::spawn(async move {
            let _permit = this.permits.acquire().await;
            let mut attempt = 0;
            loop {
                attempt += 1;
                let r = this
                    .client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                let ok = matches!(&r, Ok(resp) if resp.status().is_success());
                metrics::counter!(m::WEBHOOK_ATTEMPTS, m::LABEL_STATUS => if ok { "2xx" } else { "error" })
                    .increment(1);
                if ok {
                    break;
                }
                if attempt >= this.max_attempts {
                    tracing::warn!(%url, attempt, "MO webhook gave up; reply dropped.");
                    break;
                }
                tokio::time::sleep(this.cfg.backoff(attempt).min(Duration::from_secs(60))).await;
            }
            metrics::gauge!(m::WEBHOOK_BACKLOG).decrement(1.0);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_sender_prefix_wins() {
        let r = MoRouter::new(vec![
            MoAccount {
                name: "a".into(),
                prefixes: vec!["10690000".into()],
                mo_url: None,
            },
            MoAccount {
                name: "b".into(),
                prefixes: vec!["1069000012*".into(), "+86955".into()],
                mo_url: Some("http://b/".into()),
            },
        ]);
        assert_eq!(r.route("106900001").map(|a| a.name.as_str()), Some("a"));
        assert_eq!(r.route("10690000123").map(|a| a.name.as_str()), Some("b"));
        assert_eq!(r.route("+8695501").map(|a| a.name.as_str()), Some("b"));
        assert!(r.route("10086").is_none());
    }

    #[test]
    fn mo_body_matches_contract() {
        let e = MoEvent {
            account: Some("a".into()),
            from: "+8613800138000".into(),
            to: "10690000".into(),
            text: "Y".into(),
            received_at: "2026-11-26T00:00:00Z".into(),
        };
        assert_eq!(
            serde_json::to_value(&e).expect("json"),
            serde_json::json!({"from":"+8613800138000","to":"10690000","text":"Y",
                               "received_at":"2026-11-26T00:00:00Z"})
        );
    }
}

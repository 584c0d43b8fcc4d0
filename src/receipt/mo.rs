//! Mobile-originated replies: find the account, keep the reply, POST the account's `mo_url`.
//!
//! Job: route an MO by its destination (our long number, possibly with an extension code
//! appended) to the account owning the longest matching sender prefix — the account's
//! default sender, its allowed senders (a trailing `*` is dropped) and its service numbers
//! (`[[accounts]] service_numbers`, one account per number) — and describe the
//! account's durable MO outbox to the shared pump ([`MoOutbox`]), which delivers
//! `{"from","to","text","received_at"}` (docs/http-api.md) to the account's `mo_url`.
//!
//! Durability (see `Receipts::handle`): an MO routed to an account with a `mo_url` is written
//! to that account's MO outbox (`Op::MoEnqueue`) before the center's deliver_sm is answered,
//! so an MO is never lost to a crash or a webhook that is down: the center resends what we
//! did not keep, and the pump retries what we kept until a 2xx (at-least-once, like
//! receipts). An MO for no account, or for an account without `mo_url`, is published to
//! in-process subscribers only and not stored. An account with an SMPP login keeps its
//! replies in the MO outbox whether or not it has a `mo_url`: they go to its receiver binds
//! as deliver_sm (`ingress::smpp_server`), and the webhook pump leaves them alone. Subscribers see every MO once, when it arrives
//! (after its commit, for stored ones).

use std::sync::Arc;

use super::Notification;
use super::outbox::{Batching, EntryKind, OutboxAccount};
use crate::store::{MessageStore, Op, OutboxEntry, StoreError};

pub use crate::store::MoEvent;

/// An account's MO routing data.
#[derive(Debug, Clone)]
pub struct MoAccount {
    /// Account name.
    pub name: String,
    /// Sender and service numbers whose extensions route here.
    pub prefixes: Vec<String>,
    /// Where replies go.
    pub mo_url: Option<String>,
    /// Signs the replies POSTed to `mo_url` (see [`OutboxAccount::webhook_secret`]).
    pub webhook_secret: Option<sluice_campaign::signature::WebhookSecret>,
    /// The account has an SMPP login: replies are kept for its receiver binds (deliver_sm)
    /// even without `mo_url`, and the webhook pump leaves them to the SMPP server.
    pub smpp: bool,
    /// How replies are grouped into POSTs (the account's `webhook_batch`, as for receipts).
    pub batching: Batching,
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

    /// Every account, in the order given.
    pub fn accounts(&self) -> &[MoAccount] {
        &self.accounts
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

/// The accounts' MO outboxes (`Store::mo_outbox`), drained by `outbox::OutboxPump<MoOutbox>`.
#[derive(Debug, Clone, Copy)]
pub struct MoOutbox;

impl EntryKind for MoOutbox {
    type Event = MoEvent;
    const NAME: &'static str = "mo";

    fn read(
        store: &dyn MessageStore,
        account: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        store.mo_outbox(account, after, limit)
    }

    fn depth(
        store: &dyn MessageStore,
        account: &str,
    ) -> Result<(u64, Option<OutboxEntry>), StoreError> {
        store.mo_outbox_depth(account)
    }

    fn made_at(event: &MoEvent) -> &str {
        &event.received_at
    }

    fn delete(account: &str, seq: u64) -> Op {
        Op::MoDelete {
            account: account.to_owned(),
            seq,
        }
    }

    fn decode(body: &[u8]) -> Option<MoEvent> {
        serde_json::from_slice(body).ok()
    }

    /// Subscribers got the MO when it arrived.
    fn notification(_: MoEvent) -> Option<Notification> {
        None
    }

    fn url(_: &MoEvent, account: &OutboxAccount) -> Option<Arc<str>> {
        account.webhook_url.clone()
    }

    /// Stored exactly as the webhook body.
    fn body(_: &MoEvent, stored: Vec<u8>) -> Vec<u8> {
        stored
    }

    fn owned_by_smpp(_: &MoEvent, account: &OutboxAccount) -> bool {
        account.smpp
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
                webhook_secret: None,
                smpp: false,
                batching: Batching::default(),
            },
            MoAccount {
                name: "b".into(),
                prefixes: vec!["1069000012*".into(), "+86955".into()],
                mo_url: Some("http://b/".into()),
                webhook_secret: None,
                smpp: false,
                batching: Batching::default(),
            },
        ]);
        assert_eq!(r.route("106900001").map(|a| a.name.as_str()), Some("a"));
        assert_eq!(r.route("10690000123").map(|a| a.name.as_str()), Some("b"));
        assert_eq!(r.route("+8695501").map(|a| a.name.as_str()), Some("b"));
        assert!(r.route("10086").is_none());
    }

    fn event() -> MoEvent {
        MoEvent {
            account: Some("a".into()),
            from: "+8613800138000".into(),
            to: "10690000".into(),
            text: "Y".into(),
            received_at: "2026-11-26T00:00:00Z".into(),
        }
    }

    #[test]
    fn stored_mo_is_the_webhook_body() {
        let e = event();
        let stored = serde_json::to_vec(&e).expect("json");
        let back = MoOutbox::decode(&stored).expect("decodes");
        // The account lives in the key, not the body.
        assert_eq!(back.account, None);
        assert_eq!(
            (back.from.as_str(), back.text.as_str()),
            (e.from.as_str(), "Y")
        );
        assert_eq!(MoOutbox::body(&back, stored.clone()), stored);
        assert!(MoOutbox::notification(back.clone()).is_none());
        let acc = OutboxAccount {
            name: "a".into(),
            webhook_url: Some("https://hooks.example/mo".into()),
            webhook_secret: None,
            smpp: false,
            batching: Batching::default(),
        };
        assert_eq!(
            MoOutbox::url(&back, &acc).as_deref(),
            Some("https://hooks.example/mo")
        );
        assert!(MoOutbox::decode(b"{not json").is_none());
    }

    #[test]
    fn mo_body_matches_contract() {
        let e = event();
        assert_eq!(
            serde_json::to_value(&e).expect("json"),
            serde_json::json!({"from":"+8613800138000","to":"10690000","text":"Y",
                               "received_at":"2026-11-26T00:00:00Z"})
        );
    }
}

//! What receipts and replies do to the public rules: delivered contacts fill caps, and an
//! unsubscribe reply puts the sender on do-not-disturb.
//!
//! Job: consume the receipt layer's in-process [`Notification`]s (one subscription, taken
//! before channels start so nothing is missed) and apply them to [`Rules`]:
//! - A receipt in state `delivered` of a lane the rules bind counts one contact of its
//!   recipient on its kind's channel, on the local day of `done_at`. Failed, undeliverable,
//!   expired and rejected messages never count. Receipts are applied in batches (whatever is
//!   queued, up to [`MAX_BATCH`]) as one SQLite transaction; message ids already counted are
//!   skipped, so the outbox re-publishing entries after a restart does not count twice.
//! - A reply whose trimmed text is one of `[campaign] unsubscribe_keywords`
//!   (case-insensitive) adds the sender to `do_not_disturb` for `sms`, at once and durably,
//!   audited as `unsubscribe`. `sms` because that is the channel the reply came on and the one
//!   an SMS marketing message it answers was sent on; the gateway cannot tell which earlier
//!   message (MMS, WAP Push) a reply answers, so other channels stay an operator's decision.
//!
//! The subscription is a broadcast channel: when this consumer lags, missed events are
//! counted (`sluice_rules_feedback_lagged_total`) and logged — caps may then undercount.

use std::sync::Arc;

use sluice_campaign::routing::MoSettings;
use tokio::sync::{broadcast, watch};

use super::db::Delivered;
use super::engine::Rules;
use super::model::{Channel, ListKind, day_number, msisdn_key};
use crate::metrics as m;
use crate::receipt::Notification;
use crate::store::MessageState;

/// Most notifications applied in one transaction.
pub const MAX_BATCH: usize = 1024;

/// Who the audit trail names for list entries added by unsubscribe replies.
pub const UNSUBSCRIBE_ACTOR: &str = "unsubscribe";

/// What a batch of notifications asks of the rules.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// Delivered contacts to count.
    pub delivered: Vec<Delivered>,
    /// Numbers to put on do-not-disturb for sms.
    pub unsubscribed: Vec<u64>,
}

/// Sorts notifications into their effects (pure: no I/O).
pub fn effects(rules: &Rules, mo: &MoSettings, batch: &[Notification]) -> Effects {
    let mut out = Effects::default();
    for n in batch {
        match n {
            Notification::Receipt(r) => {
                if r.state != MessageState::Delivered || !rules.binds(r.lane) {
                    continue;
                }
                let Some(msisdn) = msisdn_key(&r.to) else {
                    continue;
                };
                let at = r
                    .done_at
                    .parse::<jiff::Timestamp>()
                    .map_or_else(|_| rules.today(), |t| rules.date_of(t));
                out.delivered.push(Delivered {
                    message_id: r.id.to_string(),
                    msisdn,
                    channel: Channel::of_kind(r.kind),
                    day: day_number(at),
                });
            }
            Notification::Mo(ev) => {
                if mo.is_unsubscribe(&ev.text)
                    && let Some(n) = msisdn_key(&ev.from)
                {
                    out.unsubscribed.push(n);
                }
            }
        }
    }
    out
}

/// Applies one batch's effects (blocking: SQLite commits).
fn apply(rules: &Rules, fx: &Effects) {
    if !fx.unsubscribed.is_empty() {
        match rules.add(
            UNSUBSCRIBE_ACTOR,
            ListKind::DoNotDisturb,
            Some(Channel::Sms),
            &fx.unsubscribed,
        ) {
            Ok(added) => {
                metrics::counter!(m::RULES_UNSUBSCRIBES).increment(added as u64);
                tracing::info!(added, "Unsubscribe replies put numbers on do-not-disturb.");
            }
            Err(e) => tracing::error!(error = %e, "Unsubscribe replies not recorded."),
        }
    }
    if !fx.delivered.is_empty() {
        match rules.count_delivered(&fx.delivered) {
            Ok(n) => metrics::counter!(m::RULES_CONTACTS_COUNTED).increment(n as u64),
            Err(e) => {
                tracing::error!(error = %e, n = fx.delivered.len(), "Delivered contacts not counted.")
            }
        }
    }
}

/// Consumes `rx` until `stop` turns true, then applies what is already queued and returns.
pub async fn run(
    rules: Arc<Rules>,
    mo: MoSettings,
    mut rx: broadcast::Receiver<Notification>,
    mut stop: watch::Receiver<bool>,
) {
    let mo = Arc::new(mo);
    loop {
        let first = tokio::select! {
            r = rx.recv() => Some(r),
            _ = stop.wait_for(|s| *s) => None,
        };
        let Some(first) = first else {
            let mut rest = Vec::new();
            while let Ok(n) = rx.try_recv() {
                rest.push(n);
            }
            apply_batch(&rules, &mo, rest).await;
            return;
        };
        let mut batch = match first {
            Ok(n) => vec![n],
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                metrics::counter!(m::RULES_FEEDBACK_LAGGED).increment(missed);
                tracing::warn!(missed, "Rules feedback lagged; caps may undercount.");
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(n) => batch.push(n),
                Err(_) => break,
            }
        }
        apply_batch(&rules, &mo, batch).await;
    }
}

async fn apply_batch(rules: &Arc<Rules>, mo: &Arc<MoSettings>, batch: Vec<Notification>) {
    if batch.is_empty() {
        return;
    }
    let rules = Arc::clone(rules);
    let mo = Arc::clone(mo);
    let done = tokio::task::spawn_blocking(move || {
        let fx = effects(&rules, &mo, &batch);
        apply(&rules, &fx);
    })
    .await;
    if let Err(e) = done {
        tracing::error!(error = %e, "Rules feedback batch panicked.");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{AnyClock, ManualClock};
    use crate::receipt::mo::MoEvent;
    use crate::store::{Lane, MessageId, MessageKind, ReceiptEvent};

    fn receipt(id: u64, state: MessageState, lane: Lane) -> Notification {
        Notification::Receipt(std::sync::Arc::new(ReceiptEvent {
            id: MessageId(id),
            client_ref: None,
            to: "+8613800138000".into(),
            state,
            stat: Default::default(),
            err: Default::default(),
            parts: 1,
            submitted_at: None,
            // 23:30 UTC is the next local day in Shanghai.
            done_at: "2026-12-04T23:30:00Z".into(),
            callback_url: None,
            tags: Default::default(),
            kind: MessageKind::WapPush,
            lane,
            original: None,
        }))
    }

    #[test]
    fn only_delivered_bound_receipts_and_keyword_replies_have_effects() {
        let rules = Rules::in_memory(
            jiff::tz::TimeZone::get("Asia/Shanghai").expect("tz"),
            &[Lane::Otp, Lane::Notification],
            AnyClock::Manual(ManualClock::new(
                "2026-12-05T10:00:00+08:00".parse().expect("ts"),
            )),
        )
        .expect("rules");
        let mo = MoSettings {
            service_numbers: vec![],
            unsubscribe_keywords: vec!["TD".into()],
        };
        let reply = |text: &str| {
            Notification::Mo(MoEvent {
                account: None,
                from: "8613900139000".into(),
                to: "10690000".into(),
                text: text.into(),
                received_at: String::new(),
            })
        };
        let fx = effects(
            &rules,
            &mo,
            &[
                receipt(1, MessageState::Delivered, Lane::Marketing),
                receipt(2, MessageState::Undeliverable, Lane::Marketing),
                receipt(3, MessageState::Delivered, Lane::Otp),
                reply(" td "),
                reply("yes"),
            ],
        );
        assert_eq!(
            fx.delivered,
            vec![Delivered {
                message_id: MessageId(1).to_string(),
                msisdn: 13_800_138_000,
                channel: Channel::WapPush,
                day: day_number(jiff::civil::Date::constant(2026, 12, 5)),
            }]
        );
        assert_eq!(fx.unsubscribed, vec![13_900_139_000]);
        apply(&rules, &fx);
        assert_eq!(rules.len(ListKind::DoNotDisturb, Some(Channel::Sms)), 1);
        assert_eq!(rules.audit(1).expect("audit")[0].who, UNSUBSCRIBE_ACTOR);
    }
}

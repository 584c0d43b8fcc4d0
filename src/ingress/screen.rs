//! The public contact rules at ingress: which messages of a batch a rule refuses.
//!
//! Job: split validated items into those to store and those a public rule refuses
//! (`crate::rules`), counting each refusal under its rule and contact channel. Refused
//! messages are never stored, never charged to the account's rate and get no id; the rest
//! of the batch goes on as usual. Both doors use it: the HTTP API (per-line `refused`
//! results) and the SMPP server (a refused destination's submit is answered with an error).
//!
//! Idempotency wins over rules: a message whose `client_ref` is already stored (a client
//! re-sending a batch after a lost answer, a campaign resuming) is not refused, so the repeat
//! gets the first id (`duplicate: true`) even when its recipient was listed in between — the
//! message exists, and saying otherwise would make the client record a contact as excluded.

use super::batch::Item;
use crate::metrics as m;
use crate::rules::{Channel, Refusal, Rules};

/// A message a rule refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedLine {
    /// 1-based line in the request.
    pub line: usize,
    /// The rule.
    pub refusal: Refusal,
    /// The client's idempotency key, echoed in the result.
    pub client_ref: Option<String>,
}

/// Items to store (request order kept) and the refused ones. `stored(client_ref)` says
/// whether the account already has a message under that idempotency key; it is asked only
/// about refused items.
pub fn screen(
    rules: &Rules,
    items: Vec<Item>,
    stored: &dyn Fn(&str) -> bool,
) -> (Vec<Item>, Vec<RefusedLine>) {
    let today = rules.today();
    let mut kept = Vec::with_capacity(items.len());
    let mut refused = Vec::new();
    for item in items {
        let s = &item.submission;
        match rules.check(&s.to, s.kind, s.lane, today) {
            None => kept.push(item),
            Some(_) if s.client_ref.as_deref().is_some_and(stored) => kept.push(item),
            Some(refusal) => {
                metrics::counter!(m::RULES_REFUSED, m::LABEL_RULE => refusal.rule(),
                    m::LABEL_CHANNEL => Channel::of_kind(s.kind).as_str())
                .increment(1);
                refused.push(RefusedLine {
                    line: item.line,
                    refusal,
                    client_ref: item.submission.client_ref,
                });
            }
        }
    }
    (kept, refused)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::AnyClock;
    use crate::ingress::message::{SenderPolicy, WireMessage, validate};
    use crate::rules::ListKind;
    use crate::store::Lane;

    fn item(line: usize, to: &str, lane: Lane) -> Item {
        let senders = SenderPolicy {
            allowed: vec![],
            default: Some("1069".into()),
            callbacks: false,
        };
        let submission = validate(
            WireMessage {
                to: to.into(),
                text: Some("x".into()),
                lane: Some(lane),
                client_ref: Some(format!("r{line}")),
                ..WireMessage::default()
            },
            &senders,
        )
        .expect("valid");
        Item { line, submission }
    }

    #[test]
    fn listed_marketing_lines_are_refused_and_the_rest_kept_in_order() {
        let rules = Rules::in_memory(
            jiff::tz::TimeZone::UTC,
            &[Lane::Otp, Lane::Notification],
            AnyClock::System,
        )
        .expect("rules");
        rules
            .add(
                "ops",
                ListKind::DoNotDisturb,
                Some(Channel::Sms),
                &[13_800_138_000],
            )
            .expect("add");
        let (recorder, handle) = crate::metrics::local().expect("recorder");
        let (kept, refused) = metrics::with_local_recorder(&recorder, || {
            screen(
                &rules,
                vec![
                    item(1, "13900139000", Lane::Marketing),
                    item(2, "+8613800138000", Lane::Marketing),
                    item(3, "13800138000", Lane::Otp),
                    item(4, "+447700900123", Lane::Marketing),
                    // Already stored under its client_ref: the repeat is not refused.
                    item(5, "13800138000", Lane::Marketing),
                ],
                &|r| r == "r5",
            )
        });
        let text = handle.render();
        assert!(
            text.contains(r#"sluice_rules_refused_total{rule="do_not_disturb",channel="sms"} 1"#),
            "{text}"
        );
        assert_eq!(
            kept.iter().map(|i| i.line).collect::<Vec<_>>(),
            [1, 3, 4, 5]
        );
        assert_eq!(refused.len(), 1);
        assert_eq!(refused[0].line, 2);
        assert_eq!(
            refused[0].refusal.to_string(),
            "blocked: do_not_disturb/sms"
        );
        assert_eq!(refused[0].client_ref.as_deref(), Some("r2"));
    }
}

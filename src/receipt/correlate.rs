//! Delivery receipts → store: normalise the center id, map the stat word, apply, and keep
//! account of receipts that arrived before their submit response.
//!
//! Job: one DLR from a channel becomes one `Op::Receipt` on (channel, normalised center id).
//! The store does the durable part: it matches the id to (message, part), aggregates parts
//! (all delivered → delivered; otherwise the first non-delivered final part decides) and,
//! on a final state, appends the receipt event to the account's outbox in the same commit.
//! When the id is not known yet (the DLR beat the submit_sm_resp), the store *holds* the
//! receipt and applies it when dispatch records the part (`Op::Submitted`).
//!
//! This module tracks those held receipts in memory ([`Pending`]) so that each one is either
//! settled — dispatch's submit response applied it (the store answered
//! `OpResult::ReceiptApplied`, reported through [`super::applied`]) — or, after `hold_for`,
//! counted as unmatched (`sluice_receipts_unmatched_total`). Nothing here reads the store:
//! the give-up is a timer over this map. The store purges held receipts with its retention
//! sweep. Pending is bounded: beyond `max_pending` a held receipt is counted as unmatched at
//! once (it still stays held in the store and may match later).
//!
//! Center ids are normalised with [`center_key`] under the channel's DLR id format — the same
//! rule dispatch applies to submit_sm_resp ids.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use compact_str::CompactString;
use sluice_protocols::smpp::{IdFormat, ReceiptStat};

use crate::store::PartState;

/// Part state a receipt's stat word reports. Intermediate words (ACCEPTD, ENROUTE) report
/// `Submitted`, which the store records without ending the part.
pub fn part_state(stat: &str) -> PartState {
    match ReceiptStat::parse(stat.trim().as_bytes()) {
        ReceiptStat::Delivered => PartState::Delivered,
        ReceiptStat::Expired => PartState::Expired,
        ReceiptStat::Undeliverable => PartState::Undeliverable,
        ReceiptStat::Rejected => PartState::Rejected,
        ReceiptStat::Accepted | ReceiptStat::Enroute => PartState::Submitted,
        ReceiptStat::Deleted | ReceiptStat::Unknown | ReceiptStat::Other(_) => PartState::Failed,
    }
}

/// The store key for a DLR's center id on a channel: exactly what dispatch stores for
/// submit_sm_resp ids ([`crate::channel::normalise_center_id`]), so hex and decimal forms of
/// one id meet.
pub fn center_key(raw: &str, format: IdFormat) -> CompactString {
    crate::channel::normalise_center_id(raw, format)
}

/// Receipts held by the store because their center id was not known yet.
#[derive(Debug)]
pub struct Pending {
    hold_for: Duration,
    max: usize,
    held: HashMap<CompactString, Instant>,
}

/// What to do with a held receipt at a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Still waiting.
    Wait,
    /// Held longer than `hold_for` without a match: count as unmatched and forget.
    GiveUp,
}

impl Pending {
    /// Tracks up to `max` held receipts for `hold_for` each.
    pub fn new(hold_for: Duration, max: usize) -> Self {
        Self {
            hold_for,
            max,
            held: HashMap::new(),
        }
    }

    /// Records a held receipt; `false` when full (count it unmatched now).
    pub fn hold(&mut self, center_key: CompactString, now: Instant) -> bool {
        if self.held.len() >= self.max && !self.held.contains_key(&center_key) {
            return false;
        }
        self.held.entry(center_key).or_insert(now);
        true
    }

    /// Number tracked.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Whether none are tracked.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Forgets `key`: its submit response applied it. `false` when it was not tracked (held
    /// before a restart, or already counted as unmatched).
    pub fn settle(&mut self, key: &str) -> bool {
        self.held.remove(key).is_some()
    }

    /// Forgets and returns the receipts held `hold_for` or longer at `now` (unmatched).
    pub fn give_up(&mut self, now: Instant) -> Vec<CompactString> {
        let mut given_up = Vec::new();
        self.held.retain(|key, since| {
            if now.saturating_duration_since(*since) >= self.hold_for {
                given_up.push(key.clone());
                return false;
            }
            true
        });
        given_up
    }

    /// What a check at `now` would decide for `key` (for tests and logs).
    pub fn verdict(&self, key: &str, now: Instant) -> Option<Verdict> {
        self.held.get(key).map(|since| {
            if now.saturating_duration_since(*since) >= self.hold_for {
                Verdict::GiveUp
            } else {
                Verdict::Wait
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_words_map_to_part_states() {
        assert_eq!(part_state("DELIVRD"), PartState::Delivered);
        assert_eq!(part_state("delivered"), PartState::Delivered);
        assert_eq!(part_state("UNDELIV"), PartState::Undeliverable);
        assert_eq!(part_state("EXPIRED"), PartState::Expired);
        assert_eq!(part_state("REJECTD"), PartState::Rejected);
        assert_eq!(part_state("ENROUTE"), PartState::Submitted);
        assert_eq!(part_state("ACCEPTD"), PartState::Submitted);
        assert_eq!(part_state("DELETED"), PartState::Failed);
        assert_eq!(part_state("garbage"), PartState::Failed);
    }

    #[test]
    fn hex_submit_and_decimal_dlr_share_a_key() {
        assert_eq!(
            center_key("0006699", IdFormat::Decimal),
            center_key("1A2B", IdFormat::Hex)
        );
    }

    #[test]
    fn pending_settles_or_gives_up_after_hold() {
        let t0 = Instant::now();
        let mut p = Pending::new(Duration::from_secs(10), 2);
        assert!(p.hold("a".into(), t0));
        assert!(p.hold("b".into(), t0 + Duration::from_secs(5)));
        assert!(!p.hold("c".into(), t0), "full");
        assert!(
            p.hold("a".into(), t0 + Duration::from_secs(9)),
            "re-hold keeps first time"
        );
        assert_eq!(
            p.verdict("a", t0 + Duration::from_secs(10)),
            Some(Verdict::GiveUp)
        );
        // "b" is settled by its submit response; at t0+10 "a" is overdue.
        assert!(p.settle("b"));
        assert!(!p.settle("b"), "settled once");
        assert!(!p.settle("never-held"));
        assert_eq!(
            p.give_up(t0 + Duration::from_secs(10)),
            vec!["a".to_owned()]
        );
        assert!(p.is_empty());
    }

    #[test]
    fn pending_waits_inside_hold() {
        let t0 = Instant::now();
        let mut p = Pending::new(Duration::from_secs(10), 8);
        p.hold("x".into(), t0);
        assert!(p.give_up(t0 + Duration::from_secs(9)).is_empty());
        assert_eq!(p.len(), 1);
        assert_eq!(
            p.verdict("x", t0 + Duration::from_secs(9)),
            Some(Verdict::Wait)
        );
    }
}

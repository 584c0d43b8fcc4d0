//! The in-memory view of the rules that the ingress hot path reads.
//!
//! Job: answer "would a rule refuse this number on this channel today?" without I/O. The
//! view mirrors `rules.db` (the engine writes SQLite first, then the view, so the view never
//! holds what is not durable):
//! - lists: one `HashSet<u64>` per (list, scope) — a check is at most six hash probes;
//! - caps: the operator's caps, a handful;
//! - contact counts: per msisdn, a short vector of (day, channel, delivered) for the days the
//!   longest cap looks back over; older days are dropped by [`View::prune`].
//!
//! Order of a check: blacklist, graylist, do-not-disturb (each: every-channel entry first,
//! then the channel's), then channel caps, then overall caps. The first hit names the
//! refusal.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::schedule::TimeWindow;

use super::model::{Cap, Channel, ListKind, Refusal, Scope, day_number, scope_slot};

/// Delivered contacts of one number on one local day and channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayCount {
    /// Local day number ([`day_number`]).
    pub day: i32,
    /// Channel contacted.
    pub channel: Channel,
    /// Delivered contacts.
    pub count: u32,
}

/// The in-memory rules.
#[derive(Debug, Default)]
pub struct View {
    /// `[list][scope slot]` → listed numbers.
    lists: [[HashSet<u64>; 4]; 3],
    caps: Vec<Cap>,
    quiet: Arc<[TimeWindow]>,
    contacts: HashMap<u64, Vec<DayCount>>,
}

impl View {
    /// Whether `msisdn` is on `list` for exactly `scope`.
    pub fn contains(&self, list: ListKind, scope: Scope, msisdn: u64) -> bool {
        self.lists[list.index()][scope_slot(scope)].contains(&msisdn)
    }

    /// Adds numbers to a list; returns how many were new.
    pub fn add(&mut self, list: ListKind, scope: Scope, msisdns: &[u64]) -> usize {
        let set = &mut self.lists[list.index()][scope_slot(scope)];
        msisdns.iter().filter(|n| set.insert(**n)).count()
    }

    /// Removes numbers from a list; returns how many were there.
    pub fn remove(&mut self, list: ListKind, scope: Scope, msisdns: &[u64]) -> usize {
        let set = &mut self.lists[list.index()][scope_slot(scope)];
        msisdns.iter().filter(|n| set.remove(*n)).count()
    }

    /// Numbers on a list for `scope`.
    pub fn len(&self, list: ListKind, scope: Scope) -> usize {
        self.lists[list.index()][scope_slot(scope)].len()
    }

    /// The caps.
    pub fn caps(&self) -> &[Cap] {
        &self.caps
    }

    /// Replaces the caps.
    pub fn set_caps(&mut self, caps: Vec<Cap>) {
        self.caps = caps;
    }

    /// Quiet hours of rule-bound lanes.
    pub fn quiet(&self) -> Arc<[TimeWindow]> {
        Arc::clone(&self.quiet)
    }

    /// Replaces the quiet hours.
    pub fn set_quiet(&mut self, quiet: Vec<TimeWindow>) {
        self.quiet = quiet.into();
    }

    /// Adds `n` delivered contacts of `msisdn` on `channel` on local day `day`.
    pub fn count_contact(&mut self, msisdn: u64, channel: Channel, day: i32, n: u32) {
        let days = self.contacts.entry(msisdn).or_default();
        match days
            .iter_mut()
            .find(|d| d.day == day && d.channel == channel)
        {
            Some(d) => d.count = d.count.saturating_add(n),
            None => days.push(DayCount {
                day,
                channel,
                count: n,
            }),
        }
    }

    /// Drops counts of days before `first_day` (no cap looks back that far).
    pub fn prune(&mut self, first_day: i32) {
        self.contacts.retain(|_, days| {
            days.retain(|d| d.day >= first_day);
            !days.is_empty()
        });
    }

    /// Delivered contacts of `msisdn` since `first_day`, on `channel` or on every channel.
    pub fn contacts_since(&self, msisdn: u64, channel: Option<Channel>, first_day: i32) -> u32 {
        self.contacts.get(&msisdn).map_or(0, |days| {
            days.iter()
                .filter(|d| d.day >= first_day && channel.is_none_or(|c| c == d.channel))
                .fold(0u32, |acc, d| acc.saturating_add(d.count))
        })
    }

    /// The rule that refuses `msisdn` on `channel` on local date `today`, if any.
    pub fn check(
        &self,
        msisdn: u64,
        channel: Channel,
        today: jiff::civil::Date,
    ) -> Option<Refusal> {
        for list in ListKind::ALL {
            for scope in [None, Some(channel)] {
                if self.contains(list, scope, msisdn) {
                    return Some(Refusal::Listed { list, scope });
                }
            }
        }
        if self.caps.is_empty() || !self.contacts.contains_key(&msisdn) {
            return None;
        }
        let used = |cap: &Cap| {
            self.contacts_since(msisdn, cap.channel, day_number(cap.period.start(today)))
        };
        if let Some(cap) = self
            .caps
            .iter()
            .find(|c| c.channel == Some(channel) && used(c) >= c.max)
        {
            return cap.channel.map(Refusal::ChannelCap);
        }
        self.caps
            .iter()
            .any(|c| c.channel.is_none() && used(c) >= c.max)
            .then_some(Refusal::OverallCap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::model::Period;
    use jiff::civil::Date;

    const N: u64 = 13_800_138_000;

    #[test]
    fn lists_refuse_by_scope_in_order() {
        let today = Date::constant(2026, 12, 5);
        let mut v = View::default();
        assert_eq!(v.check(N, Channel::Sms, today), None);
        assert_eq!(
            v.add(ListKind::DoNotDisturb, Some(Channel::Sms), &[N, N]),
            1
        );
        assert_eq!(
            v.check(N, Channel::Sms, today).map(|r| r.to_string()),
            Some("blocked: do_not_disturb/sms".into())
        );
        // DND for sms does not cover MMS.
        assert_eq!(v.check(N, Channel::Mms, today), None);
        v.add(ListKind::Blacklist, None, &[N]);
        assert_eq!(
            v.check(N, Channel::Mms, today).map(|r| r.to_string()),
            Some("blocked: blacklist".into())
        );
        assert_eq!(v.remove(ListKind::Blacklist, None, &[N, 1]), 1);
        assert_eq!(v.check(N, Channel::Mms, today), None);
        assert_eq!(v.len(ListKind::DoNotDisturb, Some(Channel::Sms)), 1);
    }

    #[test]
    fn caps_count_delivered_contacts_in_their_period() {
        let today = Date::constant(2026, 12, 5);
        let d = |date| day_number(date);
        let mut v = View::default();
        v.set_caps(vec![
            Cap {
                channel: Some(Channel::Sms),
                max: 2,
                period: Period::Month,
            },
            Cap {
                channel: None,
                max: 3,
                period: Period::Days(7),
            },
        ]);
        // Last month's contacts do not count toward this month's sms cap.
        v.count_contact(N, Channel::Sms, d(Date::constant(2026, 11, 30)), 1);
        v.count_contact(N, Channel::Sms, d(today), 1);
        assert_eq!(v.check(N, Channel::Sms, today), None);
        v.count_contact(N, Channel::Sms, d(today), 1);
        assert_eq!(
            v.check(N, Channel::Sms, today),
            Some(Refusal::ChannelCap(Channel::Sms))
        );
        // MMS has no channel cap, but the overall 7-day cap (3) is reached.
        assert_eq!(v.check(N, Channel::Mms, today), Some(Refusal::OverallCap));
        // A week later the old contacts are outside both windows.
        let later = Date::constant(2027, 1, 20);
        assert_eq!(v.check(N, Channel::Sms, later), None);
        v.prune(d(later) - 31);
        assert_eq!(v.contacts_since(N, None, 0), 0);
    }
}

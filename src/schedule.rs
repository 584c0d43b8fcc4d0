//! When may a message be sent? Due-time logic plus a [`Scheduler`] that wakes workers at the
//! next due time without spending CPU while it waits.
//!
//! Windows are local times of day in the configured zone (default Asia/Shanghai), written
//! `"HH:MM-HH:MM"`, start inclusive, end exclusive; a window whose end is before its start
//! wraps midnight (`"21:00-08:00"`), and `24:00` may be used as an end. A message may go when
//! its local time is inside at least one window of EVERY allowed-window set that applies
//! (channel, account, message) and inside no quiet-hours window. Conversions between local and
//! absolute time go through jiff, so DST gaps and folds resolve the way jiff's `compatible`
//! disambiguation does (a start that falls in a spring-forward gap opens after the gap).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;

use jiff::Timestamp;
use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use tokio::sync::Notify;

use crate::clock::Clock;

const MINUTES_PER_DAY: u16 = 24 * 60;
/// Jumps tried before concluding no instant satisfies every constraint.
const MAX_STEPS: usize = 64;

/// Why a window string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid time window {text:?}: {reason} (expected \"HH:MM-HH:MM\")")]
pub struct WindowError {
    /// The text given.
    pub text: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// A local time-of-day window, minutes since midnight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeWindow {
    start: u16,
    end: u16,
}

impl TimeWindow {
    /// A window from `start` to `end` minutes after midnight (`end` may be 1440).
    pub fn new(start: u16, end: u16) -> Option<Self> {
        (start < MINUTES_PER_DAY && end <= MINUTES_PER_DAY && start != end)
            .then_some(Self { start, end })
    }

    /// Whether the local time of day `secs` (seconds since midnight) is inside.
    pub fn contains_secs(self, secs: u32) -> bool {
        let (s, e) = (u32::from(self.start) * 60, u32::from(self.end) * 60);
        if s < e {
            s <= secs && secs < e
        } else {
            secs >= s || secs < e
        }
    }

    /// Start, minutes since midnight.
    pub fn start_minute(self) -> u16 {
        self.start
    }

    /// End, minutes since midnight (1440 = midnight at the end of the day).
    pub fn end_minute(self) -> u16 {
        self.end
    }
}

fn parse_hm(s: &str) -> Option<u16> {
    let (h, m) = s.trim().split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    match (h, m) {
        (24, 0) => Some(MINUTES_PER_DAY),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

impl FromStr for TimeWindow {
    type Err = WindowError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let err = |reason| WindowError {
            text: text.to_owned(),
            reason,
        };
        let (a, b) = text.split_once('-').ok_or_else(|| err("missing '-'"))?;
        let start = parse_hm(a).ok_or_else(|| err("bad start time"))?;
        let end = parse_hm(b).ok_or_else(|| err("bad end time"))?;
        if start == MINUTES_PER_DAY {
            return Err(err("a window cannot start at 24:00"));
        }
        Self::new(start, end).ok_or_else(|| err("start equals end (empty window)"))
    }
}

impl fmt::Display for TimeWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:02}:{:02}-{:02}:{:02}",
            self.start / 60,
            self.start % 60,
            self.end / 60,
            self.end % 60
        )
    }
}

/// Parses a list of window strings.
pub fn parse_windows<S: AsRef<str>>(list: &[S]) -> Result<Vec<TimeWindow>, WindowError> {
    list.iter().map(|s| s.as_ref().parse()).collect()
}

/// Every time constraint that applies to one message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WindowRules {
    /// Sets of allowed windows (channel, account, message…); an empty set restricts nothing.
    pub allowed: Vec<Vec<TimeWindow>>,
    /// Windows in which nothing may be sent.
    pub quiet: Vec<TimeWindow>,
}

/// The outcome of due-time computation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Due {
    /// Send at (or after) this instant.
    At(Timestamp),
    /// No allowed instant before `expires_at`: fail with `EXPIRED`.
    Expired,
    /// The constraints exclude every instant (e.g. quiet hours cover the whole window).
    Never,
}

fn secs_of_day(dt: DateTime) -> u32 {
    let t = dt.time();
    // Hours, minutes and seconds from jiff are always in range, so these casts are lossless.
    u32::from(t.hour().unsigned_abs()) * 3600
        + u32::from(t.minute().unsigned_abs()) * 60
        + u32::from(t.second().unsigned_abs())
}

/// The first instant after `after` whose local time in `tz` is `minute` (0..=1440).
fn next_local_minute(after: Timestamp, tz: &TimeZone, minute: u16) -> Option<Timestamp> {
    let mut date: Date = tz.to_datetime(after).date();
    for _ in 0..4 {
        let (day, m) = if minute >= MINUTES_PER_DAY {
            (date.tomorrow().ok()?, 0)
        } else {
            (date, minute)
        };
        let h = i8::try_from(m / 60).ok()?;
        let mi = i8::try_from(m % 60).ok()?;
        let local = day.at(h, mi, 0, 0);
        let amb = tz.to_ambiguous_timestamp(local);
        // In a DST fold the same local time happens twice: take the first one still ahead.
        for t in [amb.compatible().ok(), amb.later().ok()]
            .into_iter()
            .flatten()
        {
            if t > after {
                return Some(t);
            }
        }
        date = date.tomorrow().ok()?;
    }
    None
}

/// The earliest instant `>= from` at which every rule allows sending, or `None` if there is
/// none (within 64 jumps, i.e. the rules exclude every time of day).
pub fn next_allowed(from: Timestamp, tz: &TimeZone, rules: &WindowRules) -> Option<Timestamp> {
    let mut t = from;
    'search: for _ in 0..MAX_STEPS {
        let secs = secs_of_day(tz.to_datetime(t));
        for set in &rules.allowed {
            if !set.is_empty() && !set.iter().any(|w| w.contains_secs(secs)) {
                t = set
                    .iter()
                    .filter_map(|w| next_local_minute(t, tz, w.start))
                    .min()?;
                continue 'search;
            }
        }
        if let Some(q) = rules.quiet.iter().find(|q| q.contains_secs(secs)) {
            t = next_local_minute(t, tz, q.end)?;
            continue 'search;
        }
        return Some(t);
    }
    None
}

/// When a message may first be sent: not before `now` or `not_before`, inside the windows,
/// and before `expires_at`.
pub fn due(
    now: Timestamp,
    not_before: Option<Timestamp>,
    expires_at: Option<Timestamp>,
    tz: &TimeZone,
    rules: &WindowRules,
) -> Due {
    let from = not_before.map_or(now, |nb| nb.max(now));
    match next_allowed(from, tz, rules) {
        Some(t) if expires_at.is_some_and(|e| e <= t) => Due::Expired,
        Some(t) => Due::At(t),
        None if expires_at.is_some() => Due::Expired,
        None => Due::Never,
    }
}

/// Whether a message with `expires_at` has expired at `now`.
pub fn is_expired(now: Timestamp, expires_at: Option<Timestamp>) -> bool {
    expires_at.is_some_and(|e| e <= now)
}

/// Wakes a consumer when keys become due. Keys are scheduled at an instant; [`next`] waits —
/// sleeping on the clock, or on a `Notify` when nothing is scheduled — until the earliest is
/// due, then returns every due key. The shape of mini-redis `db.rs` `purge_expired_tasks`: no
/// polling, no CPU while waiting, and an earlier key wakes the waiter at once.
///
/// Intended for one consumer per scheduler (a channel worker); keys are deduplicated.
///
/// [`next`]: Scheduler::next
#[derive(Debug)]
pub struct Scheduler<K, C> {
    clock: C,
    entries: Mutex<BTreeMap<(Timestamp, K), ()>>,
    changed: Notify,
}

impl<K: Ord + Clone + Send, C: Clock> Scheduler<K, C> {
    /// An empty scheduler on `clock`.
    pub fn new(clock: C) -> Self {
        Self {
            clock,
            entries: Mutex::new(BTreeMap::new()),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(Timestamp, K), ()>> {
        // A panic while holding this lock cannot leave the map half-updated (single calls), so
        // a poisoned lock is still usable.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes `key` due at `at`. Wakes the waiter if this is now the earliest entry.
    pub fn schedule(&self, at: Timestamp, key: K) {
        let earliest = {
            let mut e = self.lock();
            e.insert((at, key), ());
            e.keys().next().is_some_and(|(t, _)| *t == at)
        };
        if earliest {
            self.changed.notify_one();
        }
    }

    /// Number of scheduled entries.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is scheduled.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Removes and returns every key due at the clock's `now`, oldest first.
    pub fn take_due(&self) -> Vec<K> {
        let now = self.clock.now();
        let mut e = self.lock();
        let mut due = Vec::new();
        while let Some(entry) = e.first_entry() {
            if entry.key().0 > now {
                break;
            }
            due.push(entry.remove_entry().0.1);
        }
        due
    }

    /// Waits until at least one key is due and returns the due keys.
    pub async fn next(&self) -> Vec<K> {
        loop {
            let due = self.take_due();
            if !due.is_empty() {
                return due;
            }
            let earliest = self.lock().keys().next().map(|(t, _)| *t);
            match earliest {
                Some(t) => {
                    tokio::select! {
                        () = self.clock.sleep_until(t) => {}
                        () = self.changed.notified() => {}
                    }
                }
                None => self.changed.notified().await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_parsing() {
        let w: TimeWindow = "08:00-21:00".parse().unwrap();
        assert_eq!((w.start_minute(), w.end_minute()), (480, 1260));
        assert_eq!(w.to_string(), "08:00-21:00");
        assert_eq!(
            "00:00-24:00".parse::<TimeWindow>().unwrap().end_minute(),
            1440
        );
        for bad in [
            "",
            "08:00",
            "8:00-21:00",
            "08:00-25:00",
            "08:60-09:00",
            "10:00-10:00",
            "24:00-01:00",
            "aa:bb-cc:dd",
        ] {
            assert!(bad.parse::<TimeWindow>().is_err(), "{bad}");
        }
    }

    #[test]
    fn wrapping_window_contains() {
        let w: TimeWindow = "21:00-08:00".parse().unwrap();
        assert!(w.contains_secs(22 * 3600));
        assert!(w.contains_secs(3600));
        assert!(!w.contains_secs(8 * 3600));
        assert!(w.contains_secs(21 * 3600));
        assert!(!w.contains_secs(12 * 3600));
    }
}

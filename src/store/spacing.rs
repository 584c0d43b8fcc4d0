//! How long the writer lets pass between the starts of two group commits, adapted to how busy
//! it is.
//!
//! Why: every commit costs a fixed amount whatever it holds (B-tree paths rewritten, pages
//! written, the fsync), so a quiet gateway that commits for every trickle of ops pays that
//! cost per message (≈ 240 µs of CPU per message at 3 k msg/s with no spacing). Spacing
//! commits lets the ops of a few milliseconds share one. At high rates the cost is already
//! shared (requests pile up during every fsync) and spacing would only add latency to every
//! store round trip, which caps a channel that waits for its leases and settles. So the
//! spacing follows the writer's load: its **busy share**, the fraction of wall time spent
//! applying ops (the closure of each transaction: B-tree work, not the fsync, which does not
//! grow with the load the way op work does).
//!
//! Rule: `spacing = max(floor, ceiling × (1 − share / LOADED))`, zero above `LOADED`. The
//! share is an average over about `WINDOW` of wall time, weighted by time, so one large commit
//! does not swing it.
//!
//! A backlog overrides the share: for `WINDOW` after a lease came back full, the spacing is
//! the floor. Why: the busy share is not a measure of demand once spacing is on, since the
//! spacing's own sleep counts as idle. A channel whose sends wait on store round trips moves
//! fewer messages per second when every round trip waits for the spacing, so its writer
//! looks idler and spaces further: a writer that got cheaper per message (applying 11 instead
//! of 15 µs) fell below the threshold at full speed and settled at 34 k instead of 45 k msg/s
//! (BENCHMARKS.md, "The spacing held back by a backlog"). A full lease says messages are
//! waiting whatever the share says.
//!
//! Invariants: the result is always within `[floor, max(floor, ceiling)]`; a ceiling of zero
//! gives exactly the fixed `floor` (the behaviour before adaptation).

use std::cell::Cell;
use std::time::{Duration, Instant};

/// Busy share at and above which no adaptive spacing is added. Half: at a quarter (the first
/// choice) a gateway at 15 k msg/s already had its spacing off and made 1 000 commits a second
/// of 15 messages each, 57 µs of CPU per message; at a half, 37 µs, with the accept's p99 at
/// 11 ms; at full speed commits outlast any spacing and nothing moves (BENCHMARKS.md, "Commit
/// spacing at low rate, end to end").
const LOADED: f64 = 0.5;
/// Time over which the busy share is averaged.
const WINDOW: Duration = Duration::from_millis(250);

/// The adaptive spacing state of one writer.
#[derive(Debug)]
pub(crate) struct Spacing {
    floor: Duration,
    ceiling: Duration,
    /// Averaged fraction of wall time spent applying ops.
    share: f64,
    /// Time left during which a full lease keeps the spacing at its floor.
    backlog_left: Duration,
}

/// What one writer cycle tells the spacing, noted while its group is applied.
#[derive(Debug, Default)]
pub(crate) struct Cycle {
    /// Time spent applying ops.
    pub(crate) busy: Cell<Duration>,
    /// A lease took as many messages as it asked for (`ops::leased_full`).
    pub(crate) backlog: Cell<bool>,
    /// When the group's producers were answered (`writer::answer`): the cycle's work ends
    /// there, so a producer that has its answer finds the writer waiting from then on in the
    /// writer's phase times.
    pub(crate) answered: Cell<Option<Instant>>,
}

impl Cycle {
    /// Starts a new cycle.
    pub(crate) fn begin(&self) {
        self.busy.set(Duration::ZERO);
        self.backlog.set(false);
        self.answered.set(None);
    }

    /// The end of the cycle's work: when its producers were answered, else now.
    pub(crate) fn end(&self) -> Instant {
        self.answered.get().unwrap_or_else(Instant::now)
    }
}

impl Spacing {
    /// `floor`: fixed least spacing (`WriterConfig::min_spacing`); `ceiling`: most spacing an
    /// idle writer adds (`WriterConfig::max_spacing`).
    pub(crate) fn new(floor: Duration, ceiling: Duration) -> Self {
        // Start as if loaded: the first commits after a start are not delayed.
        Self {
            floor,
            ceiling,
            share: LOADED,
            backlog_left: Duration::ZERO,
        }
    }

    /// Records one cycle, `elapsed` of wall time since the previous cycle's record.
    pub(crate) fn record(&mut self, cycle: &Cycle, elapsed: Duration) {
        self.backlog_left = if cycle.backlog.get() {
            WINDOW
        } else {
            self.backlog_left.saturating_sub(elapsed)
        };
        if elapsed.is_zero() {
            return;
        }
        let cycle = (cycle.busy.get().as_secs_f64() / elapsed.as_secs_f64()).min(1.0);
        let weight = (elapsed.as_secs_f64() / WINDOW.as_secs_f64()).min(1.0);
        self.share += weight * (cycle - self.share);
    }

    /// Whether the writer has time to spare: its busy share is below [`LOADED`], where the
    /// adaptive spacing is open. A gateway this quiet leases what it accepts within
    /// milliseconds (no backlog builds up), which `body_cache.rs` counts on.
    pub(crate) fn has_slack(&self) -> bool {
        self.share < LOADED && self.backlog_left.is_zero()
    }

    /// Least time between the start of the last commit and the start of the next.
    pub(crate) fn current(&self) -> Duration {
        if !self.backlog_left.is_zero() {
            return self.floor;
        }
        let slack = (1.0 - self.share / LOADED).clamp(0.0, 1.0);
        self.floor.max(self.ceiling.mul_f64(slack))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// A cycle that spent `d` applying ops and found no backlog.
    fn busy(d: Duration) -> Cycle {
        let c = Cycle::default();
        c.busy.set(d);
        c
    }

    #[test]
    fn a_full_lease_closes_the_spacing_for_a_window() {
        let mut s = Spacing::new(MS, 15 * MS);
        for _ in 0..200 {
            s.record(&busy(MS / 20), 5 * MS);
        }
        assert!(s.current() > 10 * MS && s.has_slack());
        // A lease came back full in a quiet cycle: the floor, whatever the share.
        let full = busy(MS / 20);
        full.backlog.set(true);
        s.record(&full, 5 * MS);
        assert_eq!(s.current(), MS);
        assert!(!s.has_slack());
        // Still within the window after that cycle.
        s.record(&busy(MS / 20), WINDOW / 2);
        assert_eq!(s.current(), MS);
        // Past it, the share rules again.
        s.record(&busy(MS / 20), WINDOW / 2);
        assert!(s.current() > 10 * MS && s.has_slack());
        // A new cycle forgets what the last one noted.
        full.begin();
        assert!(!full.backlog.get() && full.busy.get().is_zero());
    }

    #[test]
    fn spacing_opens_when_idle_and_closes_under_load() {
        let mut s = Spacing::new(Duration::ZERO, 5 * MS);
        assert_eq!(s.current(), Duration::ZERO, "no delay right after a start");
        assert!(!s.has_slack());
        // Quiet: 50 µs of op work per 5 ms cycle (1 %), for a second.
        for _ in 0..200 {
            s.record(&busy(MS / 20), 5 * MS);
        }
        let quiet = s.current();
        assert!(quiet > 4 * MS && quiet <= 5 * MS, "{quiet:?}");
        assert!(s.has_slack());
        // Loaded: 3 ms of op work per 4 ms cycle (75 %), for a second.
        for _ in 0..250 {
            s.record(&busy(3 * MS), 4 * MS);
        }
        assert_eq!(s.current(), Duration::ZERO);
        assert!(!s.has_slack());
        // In between (25 %): part of the ceiling.
        for _ in 0..500 {
            s.record(&busy(MS / 2), 2 * MS);
        }
        let mid = s.current();
        assert!(mid > 2 * MS && mid < 3 * MS, "{mid:?}");
    }

    #[test]
    fn floor_holds_and_zero_ceiling_is_the_fixed_spacing() {
        let mut fixed = Spacing::new(3 * MS, Duration::ZERO);
        let mut floored = Spacing::new(3 * MS, 5 * MS);
        for _ in 0..100 {
            fixed.record(&busy(MS / 100), 10 * MS);
            floored.record(&busy(5 * MS), 5 * MS);
        }
        assert_eq!(fixed.current(), 3 * MS);
        assert_eq!(floored.current(), 3 * MS);
        // A cycle of no wall time changes nothing.
        let before = floored.current();
        floored.record(&busy(MS), Duration::ZERO);
        assert_eq!(floored.current(), before);
    }
}

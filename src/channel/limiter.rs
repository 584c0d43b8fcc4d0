//! Per-channel send rate: a governor token bucket whose rate is steered by AIMD.
//!
//! Centers cap how fast an account may submit and say so with `ESME_RTHROTTLED` (0x58) or
//! `ESME_RMSGQFUL` (0x14). [`Aimd`] reacts like TCP congestion control: it halves the current
//! rate on a throttle answer and creeps back up by a fixed step after a run of successes.
//!
//! Invariants:
//! - `floor <= current <= ceiling`; the ceiling is the configured rate and is never exceeded.
//! - One halving per congestion event: a throttle answer to a request that was *sent before*
//!   the last decrease is ignored, because that request went out at the old rate, and no two
//!   decreases come closer than `cooldown` (centers measure their caps per second, so their
//!   bucket needs that long to show the new rate). Without this, a full window of throttled
//!   answers would collapse the rate to the floor at once.
//! - A decrease goes to the lower of half the current rate and the rate the center has been
//!   *accepting* over the last second. Halving alone starts from the configured rate, which
//!   can be far above what the window ever sends (a channel configured at 1 000 000/s in
//!   front of a 1 000/s cap needed ten one-second halvings, and sent ≈ 45 throttled submits
//!   per message meanwhile: measured against Kannel in `loadtest/peers/kannel_faults.sh`).
//! - Increases come after a run of `max(success_run, current / 10)` successes, i.e. roughly
//!   every tenth of a second of traffic at the current rate, by `increase_step` but never
//!   more than a twentieth of the current rate: a fixed step sized from a large ceiling
//!   (5 % of 1 000 000) would jump straight back over a small cap after every decrease.
//! - Pure logic: time comes in as a parameter (`now`, `sent_at`), so the tests drive it with
//!   a manual clock and never sleep.
//!
//! [`ChannelLimiter`] couples the AIMD state with a governor GCRA limiter (rate + burst). The
//! governor quota is immutable, so the limiter is rebuilt when AIMD changes the rate; that
//! happens at most once per throttle event or success run, never per message. A rebuilt
//! bucket starts empty (it would otherwise hand out a full burst right after a decrease).

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

/// Tuning of the additive-increase / multiplicative-decrease controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AimdConfig {
    /// The configured channel rate (msg/s): the rate never goes above it.
    pub ceiling: NonZeroU32,
    /// The rate never goes below it, so a channel always makes some progress.
    pub floor: NonZeroU32,
    /// Messages per second added after each run of successes.
    pub increase_step: NonZeroU32,
    /// Fewest consecutive successes that earn one increase (the run is also at least a
    /// tenth of the current rate).
    pub success_run: NonZeroU32,
    /// Least time between two decreases.
    pub cooldown: Duration,
}

impl AimdConfig {
    /// Defaults derived from the configured rate: floor 1 msg/s, step = 5 % of the ceiling
    /// (at least 1), runs of at least 10 successes, 1 s cooldown between decreases.
    #[must_use]
    pub fn for_rate(ceiling: NonZeroU32) -> Self {
        let c = ceiling.get();
        Self {
            ceiling,
            floor: NonZeroU32::MIN,
            increase_step: NonZeroU32::new((c / 20).max(1)).unwrap_or(NonZeroU32::MIN),
            success_run: NonZeroU32::new(10).unwrap_or(NonZeroU32::MIN),
            cooldown: Duration::from_secs(1),
        }
    }
}

/// What an AIMD input did to the rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateChange {
    /// The rate stayed where it was.
    Unchanged,
    /// The rate went down to the carried value (msg/s).
    Decreased(u32),
    /// The rate went up to the carried value (msg/s).
    Increased(u32),
}

/// Additive-increase / multiplicative-decrease rate controller (pure, clock injected).
#[derive(Debug, Clone)]
pub struct Aimd {
    config: AimdConfig,
    current: u32,
    successes: u32,
    /// When the rate was last halved; answers to requests sent before it are stale.
    last_decrease: Option<Instant>,
    /// Successes per second, counted in one-second windows.
    accepted: AcceptedRate,
}

/// The rate of accepted requests: a count per one-second window, the last full window kept.
#[derive(Debug, Clone, Default)]
struct AcceptedRate {
    window_start: Option<Instant>,
    in_window: u32,
    /// The last full window's count (per second), and when that window ended.
    last: Option<(u32, Instant)>,
    /// The latest acceptance.
    last_success: Option<Instant>,
}

impl AcceptedRate {
    const WINDOW: Duration = Duration::from_secs(1);

    /// A pause between acceptances longer than this starts a new window and forgets the
    /// last: a window must measure a channel that kept sending, or an idle minute followed
    /// by one acceptance would read as "the center accepts 0/s".
    const GAP: Duration = Duration::from_millis(100);

    fn record(&mut self, now: Instant) {
        if self
            .last_success
            .is_some_and(|at| now.saturating_duration_since(at) > Self::GAP)
        {
            *self = Self::default();
        }
        self.last_success = Some(now);
        let start = *self.window_start.get_or_insert(now);
        let elapsed = now.saturating_duration_since(start);
        if elapsed >= Self::WINDOW {
            let per_sec = f64::from(self.in_window) / elapsed.as_secs_f64();
            // Saturating float-to-int: a count per second fits u32.
            self.last = Some((per_sec as u32, now));
            self.window_start = Some(now);
            self.in_window = 0;
        }
        self.in_window = self.in_window.saturating_add(1);
    }

    /// Accepted per second over the last full window, if that window ended within two
    /// windows of `now`; else the current window's rate once it has run for 20 ms and for
    /// less than two windows. A short window overestimates (the center's burst counts in
    /// it), which only makes the decrease milder; it cannot underestimate a center that
    /// throttles, since one throttles only when sent more than it accepts. Older counts say
    /// nothing about the center now (an idle channel accepted nothing because it sent
    /// nothing): `None`, and AIMD halves.
    fn per_second(&self, now: Instant) -> Option<u32> {
        if let Some((rate, at)) = self.last
            && now.saturating_duration_since(at) < 2 * Self::WINDOW
        {
            return Some(rate);
        }
        // A window whose acceptances stopped a while ago measured a pause, not the center.
        if self
            .last_success
            .is_none_or(|at| now.saturating_duration_since(at) > Self::GAP)
        {
            return None;
        }
        let start = self.window_start?;
        let elapsed = now.saturating_duration_since(start);
        (Self::WINDOW / 50..2 * Self::WINDOW)
            .contains(&elapsed)
            .then(|| (f64::from(self.in_window) / elapsed.as_secs_f64()) as u32)
    }
}

impl Aimd {
    /// Starts at the ceiling (the configured rate).
    #[must_use]
    pub fn new(config: AimdConfig) -> Self {
        let floor = config.floor.get().min(config.ceiling.get());
        Self {
            config: AimdConfig {
                floor: NonZeroU32::new(floor).unwrap_or(NonZeroU32::MIN),
                ..config
            },
            current: config.ceiling.get(),
            successes: 0,
            last_decrease: None,
            accepted: AcceptedRate::default(),
        }
    }

    /// The rate (msg/s) the channel may use now.
    #[must_use]
    pub fn current(&self) -> u32 {
        self.current
    }

    /// The configured ceiling (msg/s).
    #[must_use]
    pub fn ceiling(&self) -> u32 {
        self.config.ceiling.get()
    }

    /// A request was accepted by the center at `now`. After `success_run` of them in a row
    /// the rate grows by `increase_step` (at most a twentieth of the rate), capped at the
    /// ceiling.
    pub fn on_success(&mut self, now: Instant) -> RateChange {
        self.accepted.record(now);
        if self.current >= self.config.ceiling.get() {
            self.successes = 0;
            return RateChange::Unchanged;
        }
        self.successes += 1;
        if self.successes < self.config.success_run.get().max(self.current / 10) {
            return RateChange::Unchanged;
        }
        self.successes = 0;
        let step = self
            .config
            .increase_step
            .get()
            .min((self.current / 20).max(1));
        self.current = self
            .current
            .saturating_add(step)
            .min(self.config.ceiling.get());
        RateChange::Increased(self.current)
    }

    /// The center answered a request sent at `sent_at` with a throttle status at `now`.
    /// Halves the rate, or goes down to what the center accepted over the last second if
    /// that is lower (not below the floor), unless the request predates the last decrease.
    pub fn on_throttle(&mut self, now: Instant, sent_at: Instant) -> RateChange {
        self.successes = 0;
        let accepted = self.accepted.per_second(now);
        match self.last_decrease {
            // Sent at the old rate: says nothing about the new one.
            Some(at) if sent_at < at => return RateChange::Unchanged,
            // Within the cooldown only a fall to what the center accepts, when that is below
            // half the rate, is taken: the first decrease of a channel often comes before
            // any acceptance was counted, and a second of sending at half a large configured
            // rate would otherwise be a second of throttle answers.
            Some(at) if now < at + self.config.cooldown => {
                return match accepted {
                    Some(a) if a < self.current / 2 => self.decrease_to(now, a),
                    _ => RateChange::Unchanged,
                };
            }
            _ => {}
        }
        let target = accepted.map_or(self.current / 2, |a| a.min(self.current / 2));
        self.decrease_to(now, target)
    }

    fn decrease_to(&mut self, now: Instant, target: u32) -> RateChange {
        self.last_decrease = Some(now);
        let lowered = target.max(self.config.floor.get());
        if lowered >= self.current {
            return RateChange::Unchanged;
        }
        self.current = lowered;
        RateChange::Decreased(lowered)
    }
}

type Gate<C> = RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// Governor token bucket at the AIMD rate, with the configured burst.
pub struct ChannelLimiter<C: Clock + Clone = DefaultClock> {
    aimd: Aimd,
    burst: NonZeroU32,
    clock: C,
    gate: Gate<C>,
}

impl<C: Clock + Clone> std::fmt::Debug for ChannelLimiter<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelLimiter")
            .field("aimd", &self.aimd)
            .field("burst", &self.burst)
            .finish_non_exhaustive()
    }
}

impl ChannelLimiter<DefaultClock> {
    /// A limiter on the process clock.
    #[must_use]
    pub fn new(config: AimdConfig, burst: NonZeroU32) -> Self {
        Self::with_clock(config, burst, DefaultClock::default())
    }
}

impl<C: Clock + Clone> ChannelLimiter<C> {
    /// A limiter on an injected governor clock (tests use `FakeRelativeClock`).
    #[must_use]
    pub fn with_clock(config: AimdConfig, burst: NonZeroU32, clock: C) -> Self {
        let aimd = Aimd::new(config);
        let gate = Self::build_gate(aimd.current(), burst, &clock);
        Self {
            aimd,
            burst,
            clock,
            gate,
        }
    }

    fn build_gate(rate: u32, burst: NonZeroU32, clock: &C) -> Gate<C> {
        let rate = NonZeroU32::new(rate).unwrap_or(NonZeroU32::MIN);
        // A burst larger than one second of traffic at the reduced rate would defeat the
        // decrease, so the burst shrinks with the rate.
        let burst = burst.min(rate);
        RateLimiter::direct_with_clock(Quota::per_second(rate).allow_burst(burst), clock.clone())
    }

    fn rebuild(&mut self) {
        self.gate = Self::build_gate(self.aimd.current(), self.burst, &self.clock);
        // Start empty: take the whole burst, so tokens come at the new rate from now on.
        let burst = self
            .burst
            .min(NonZeroU32::new(self.aimd.current()).unwrap_or(NonZeroU32::MIN));
        let _ = self.gate.check_n(burst);
    }

    /// Takes one token. `Err(wait)` says how long until one is available.
    ///
    /// # Errors
    /// `Err(duration)` when the bucket is empty; nothing was taken.
    pub fn try_acquire(&self) -> Result<(), Duration> {
        self.gate
            .check()
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// The current AIMD rate (msg/s).
    #[must_use]
    pub fn current_rate(&self) -> u32 {
        self.aimd.current()
    }

    /// Feeds a success (answered at `now`) into AIMD; rebuilds the bucket if the rate rose.
    pub fn on_success(&mut self, now: Instant) -> RateChange {
        let change = self.aimd.on_success(now);
        self.apply(change);
        change
    }

    /// Feeds a throttle answer into AIMD; rebuilds the bucket if the rate fell.
    pub fn on_throttle(&mut self, now: Instant, sent_at: Instant) -> RateChange {
        let change = self.aimd.on_throttle(now, sent_at);
        self.apply(change);
        change
    }

    fn apply(&mut self, change: RateChange) {
        if change != RateChange::Unchanged {
            self.rebuild();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn nz(v: u32) -> NonZeroU32 {
        NonZeroU32::new(v).unwrap()
    }

    fn config(ceiling: u32) -> AimdConfig {
        AimdConfig {
            ceiling: nz(ceiling),
            floor: nz(1),
            increase_step: nz(10),
            success_run: nz(5),
            cooldown: Duration::from_millis(100),
        }
    }

    #[test]
    fn starts_at_ceiling_and_never_exceeds_it() {
        let mut aimd = Aimd::new(config(100));
        assert_eq!(aimd.current(), 100);
        for _ in 0..1000 {
            assert_eq!(aimd.on_success(Instant::now()), RateChange::Unchanged);
        }
        assert_eq!(aimd.current(), 100);
    }

    #[test]
    fn throttle_halves_once_per_event() {
        let t0 = Instant::now();
        let mut aimd = Aimd::new(config(100));
        // A window of 8 requests all sent at t0, all throttled.
        assert_eq!(
            aimd.on_throttle(t0 + Duration::from_millis(5), t0),
            RateChange::Decreased(50)
        );
        for i in 0..7 {
            let now = t0 + Duration::from_millis(6 + i);
            assert_eq!(aimd.on_throttle(now, t0), RateChange::Unchanged);
        }
        assert_eq!(aimd.current(), 50);
        // A request sent after the decrease but answered within the cooldown: ignored.
        let sent = t0 + Duration::from_millis(20);
        assert_eq!(
            aimd.on_throttle(sent + Duration::from_millis(1), sent),
            RateChange::Unchanged
        );
        // After the cooldown, a fresh throttle halves again.
        let sent = t0 + Duration::from_millis(200);
        assert_eq!(
            aimd.on_throttle(sent + Duration::from_millis(1), sent),
            RateChange::Decreased(25)
        );
    }

    #[test]
    fn throttle_never_below_floor() {
        let t0 = Instant::now();
        let mut aimd = Aimd::new(AimdConfig {
            floor: nz(7),
            ..config(100)
        });
        for i in 0..20u64 {
            let t = t0 + Duration::from_secs(i);
            aimd.on_throttle(t, t);
        }
        assert_eq!(aimd.current(), 7);
        let t = t0 + Duration::from_secs(100);
        assert_eq!(aimd.on_throttle(t, t), RateChange::Unchanged);
    }

    #[test]
    fn creeps_back_additively_after_success_runs() {
        let t0 = Instant::now();
        let mut aimd = Aimd::new(config(1000));
        aimd.on_throttle(t0, t0);
        assert_eq!(aimd.current(), 500);
        // At 500 msg/s a run is 50 successes (a tenth of the rate); the step is 10.
        for _ in 0..49 {
            assert_eq!(aimd.on_success(t0), RateChange::Unchanged);
        }
        assert_eq!(aimd.on_success(t0), RateChange::Increased(510));
        let mut rates = Vec::new();
        for _ in 0..(51 + 52 + 53) {
            if let RateChange::Increased(r) = aimd.on_success(t0) {
                rates.push(r);
            }
        }
        assert_eq!(rates, vec![520, 530, 540]);
        // A throttle in the middle of a run resets the run.
        for _ in 0..10 {
            aimd.on_success(t0);
        }
        let t1 = t0 + Duration::from_secs(1);
        aimd.on_throttle(t1, t1);
        let after = aimd.current();
        for _ in 0..(after / 10).max(5) - 1 {
            assert_eq!(aimd.on_success(t1), RateChange::Unchanged);
        }
        assert!(matches!(aimd.on_success(t1), RateChange::Increased(_)));
    }

    #[test]
    fn step_is_at_most_a_twentieth_of_the_rate_and_stops_at_the_ceiling() {
        let t0 = Instant::now();
        let mut aimd = Aimd::new(AimdConfig {
            increase_step: nz(40),
            ..config(100)
        });
        aimd.on_throttle(t0, t0);
        assert_eq!(aimd.current(), 50);
        for _ in 0..4 {
            aimd.on_success(t0);
        }
        // 5 successes earn 50 / 20 = 2, not the configured 40.
        assert_eq!(aimd.on_success(t0), RateChange::Increased(52));
        for _ in 0..10_000 {
            aimd.on_success(t0);
        }
        assert_eq!(aimd.current(), 100);
    }

    #[test]
    fn a_decrease_goes_to_the_rate_the_center_accepted() {
        // Configured far above the center's cap: halving alone would take ten cooldowns.
        let t0 = Instant::now();
        let mut aimd = Aimd::new(config(1_000_000));
        for i in 0..=1000 {
            aimd.on_success(t0 + Duration::from_millis(i));
        }
        let t = t0 + Duration::from_millis(1001);
        assert_eq!(aimd.on_throttle(t, t), RateChange::Decreased(1000));
        // The next decrease (after the cooldown) halves when that is lower.
        let t = t + Duration::from_millis(200);
        assert_eq!(aimd.on_throttle(t, t), RateChange::Decreased(500));
        // A window that ended long ago says nothing about the center now: halving.
        let mut aimd = Aimd::new(config(1_000_000));
        for i in 0..=1000 {
            aimd.on_success(t0 + Duration::from_millis(i));
        }
        let late = t0 + Duration::from_secs(60);
        assert_eq!(aimd.on_throttle(late, late), RateChange::Decreased(500_000));
    }

    #[test]
    fn within_the_cooldown_only_a_fall_to_the_accepted_rate_is_taken() {
        let t0 = Instant::now();
        let mut aimd = Aimd::new(AimdConfig {
            cooldown: Duration::from_secs(1),
            ..config(1_000_000)
        });
        // Throttled before anything was accepted: halving.
        assert_eq!(aimd.on_throttle(t0, t0), RateChange::Decreased(500_000));
        // 30 accepted over the next 30 ms (the center's burst and 1 000/s), then a throttle
        // of a submit sent after the decrease: down to ≈ what the center accepts.
        for i in 1..=30 {
            aimd.on_success(t0 + Duration::from_millis(i));
        }
        let t = t0 + Duration::from_millis(31);
        let RateChange::Decreased(r) = aimd.on_throttle(t, t) else {
            panic!("no fall to the accepted rate")
        };
        assert!((900..=1100).contains(&r), "{r}");
        // Still in the cooldown and the accepted rate is not below half: unchanged.
        let t = t0 + Duration::from_millis(40);
        assert_eq!(aimd.on_throttle(t, t), RateChange::Unchanged);
    }

    #[test]
    fn an_idle_pause_is_not_read_as_a_center_that_accepts_nothing() {
        let t0 = Instant::now();
        let mut aimd = Aimd::new(config(1000));
        aimd.on_success(t0);
        // Thirty idle seconds, then a campaign starts and the center throttles its burst.
        let t = t0 + Duration::from_secs(30);
        aimd.on_success(t);
        let t = t + Duration::from_millis(500);
        assert_eq!(aimd.on_throttle(t, t), RateChange::Decreased(500));
    }

    #[test]
    fn for_rate_defaults_are_sane() {
        let c = AimdConfig::for_rate(nz(1000));
        assert_eq!(c.increase_step.get(), 50);
        assert_eq!(c.success_run.get(), 10);
        assert_eq!(c.cooldown, Duration::from_secs(1));
        let c = AimdConfig::for_rate(nz(3));
        assert_eq!(c.increase_step.get(), 1);
    }

    #[test]
    fn governor_gate_follows_rate_and_burst() {
        let clock = FakeRelativeClock::default();
        let mut limiter = ChannelLimiter::with_clock(config(100), nz(10), clock.clone());
        // Burst of 10 available immediately, the 11th must wait 10 ms (1/100 s).
        for _ in 0..10 {
            assert!(limiter.try_acquire().is_ok());
        }
        let wait = limiter.try_acquire().unwrap_err();
        assert_eq!(wait, Duration::from_millis(10));
        clock.advance(Duration::from_millis(10));
        assert!(limiter.try_acquire().is_ok());

        // Halve: the bucket starts empty and the interval doubles to 20 ms.
        let t0 = Instant::now();
        assert_eq!(limiter.on_throttle(t0, t0), RateChange::Decreased(50));
        assert_eq!(limiter.current_rate(), 50);
        assert_eq!(
            limiter.try_acquire().unwrap_err(),
            Duration::from_millis(20)
        );
        clock.advance(Duration::from_millis(20));
        assert!(limiter.try_acquire().is_ok());
        assert!(limiter.try_acquire().is_err());
    }

    #[test]
    fn count_of_tokens_over_simulated_second_matches_rate() {
        let clock = FakeRelativeClock::default();
        let limiter = ChannelLimiter::with_clock(config(200), nz(1), clock.clone());
        let mut granted = 0;
        // Step the fake clock in 1 ms increments for one second.
        for _ in 0..1000 {
            while limiter.try_acquire().is_ok() {
                granted += 1;
            }
            clock.advance(Duration::from_millis(1));
        }
        assert!((199..=201).contains(&granted), "granted {granted}");
    }
}

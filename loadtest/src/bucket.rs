//! Token bucket (sans-IO: the caller passes `now`), used for the simulator's throughput cap
//! and the load generator's fixed-rate pacing. Invariant: tokens stay within `0..=burst`.

use std::time::{Duration, Instant};

/// Refills `rate` tokens per second up to `burst`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket. `burst` below 1 is raised to 1 so a positive rate always makes progress.
    pub fn new(rate: f64, burst: f64, now: Instant) -> Self {
        let burst = burst.max(1.0);
        Self {
            rate: rate.max(0.0),
            burst,
            tokens: burst,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.rate).min(self.burst);
    }

    /// Takes one token if available.
    pub fn try_take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Takes up to `want` whole tokens and returns how many were taken.
    pub fn take_up_to(&mut self, want: u64, now: Instant) -> u64 {
        self.refill(now);
        let n = (self.tokens.floor() as u64).min(want);
        self.tokens -= n as f64;
        n
    }

    /// Time until one token is available (zero if one is available now).
    pub fn wait_time(&self) -> Duration {
        if self.tokens >= 1.0 || self.rate <= 0.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64((1.0 - self.tokens) / self.rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refills_at_rate_and_caps_at_burst() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 5.0, t0);
        assert_eq!(b.take_up_to(100, t0), 5);
        assert!(!b.try_take(t0));
        assert_eq!(b.take_up_to(100, t0 + Duration::from_millis(300)), 3);
        assert_eq!(b.take_up_to(100, t0 + Duration::from_secs(100)), 5);
        assert!(b.wait_time() > Duration::ZERO);
    }
}

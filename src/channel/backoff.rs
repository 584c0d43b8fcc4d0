//! Jittered exponential backoff, for reconnects and for retrying temporary submit errors.
//!
//! Delay for attempt `n` (0-based) is `min(max, base · 2ⁿ)`, then "equal jitter": half of it
//! fixed plus a random share of the other half. The fixed half keeps a flapping center from
//! being hammered; the random half spreads the binds of many gateways apart so they do not
//! reconnect in lock step. The random draw is a parameter (`jitter` in `[0, 1)`), so the
//! schedule itself is deterministic and testable; [`Backoff::delay_random`] draws it.

use std::time::Duration;

/// An exponential backoff policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the first retry (before jitter).
    pub base: Duration,
    /// Upper bound of any delay.
    pub max: Duration,
}

impl Default for Backoff {
    /// 500 ms doubling up to 30 s: a restarted center is found again within half a minute.
    fn default() -> Self {
        Self {
            base: Duration::from_millis(500),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The un-jittered delay for `attempt` (0-based): `min(max, base · 2^attempt)`.
    #[must_use]
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The delay for `attempt` with the given jitter draw in `[0, 1)` (clamped).
    #[must_use]
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let ceiling = self.ceiling(attempt);
        let half = ceiling / 2;
        let jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        half + (ceiling - half).mul_f64(jitter)
    }

    /// The delay for `attempt` with a jitter drawn from the thread-local RNG.
    #[must_use]
    pub fn delay_random(&self, attempt: u32) -> Duration {
        self.delay(attempt, rand::random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_and_caps() {
        let b = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        let c: Vec<u128> = (0..6).map(|a| b.ceiling(a).as_millis()).collect();
        assert_eq!(c, vec![100, 200, 400, 800, 1000, 1000]);
        // No overflow for absurd attempt numbers.
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn jitter_stays_between_half_and_full() {
        let b = Backoff::default();
        for attempt in 0..10 {
            let c = b.ceiling(attempt);
            assert_eq!(b.delay(attempt, 0.0), c / 2);
            assert_eq!(b.delay(attempt, 1.0), c);
            assert_eq!(b.delay(attempt, f64::NAN), c / 2);
            let r = b.delay_random(attempt);
            assert!(r >= c / 2 && r <= c, "attempt {attempt}: {r:?} vs {c:?}");
        }
    }
}

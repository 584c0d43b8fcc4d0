//! Delay distributions for response latency, DLR delay and MO reply delay.
//!
//! Serialized as a tagged TOML/JSON table, e.g. `{ kind = "uniform", min_ms = 1, max_ms = 5 }`.
//! Sampling never returns a negative or non-finite duration.

use std::time::Duration;

use rand::{Rng, RngExt};
use serde::{Deserialize, Serialize};

/// A distribution of delays in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Delay {
    /// No delay: answer in the same write as the request's read batch.
    #[default]
    Zero,
    /// Always the same delay.
    Fixed { ms: f64 },
    /// Uniform between `min_ms` and `max_ms`.
    Uniform { min_ms: f64, max_ms: f64 },
    /// Exponential with the given mean (memoryless: typical for queueing centers).
    Exponential { mean_ms: f64 },
    /// Log-normal with the given median and shape `sigma` (long tail, like real SMSCs).
    LogNormal { median_ms: f64, sigma: f64 },
}

impl Delay {
    /// True when every sample is zero, so callers can skip timers entirely.
    pub fn is_zero(&self) -> bool {
        match self {
            Self::Zero => true,
            Self::Fixed { ms } => *ms <= 0.0,
            Self::Uniform { max_ms, .. } => *max_ms <= 0.0,
            Self::Exponential { mean_ms } => *mean_ms <= 0.0,
            Self::LogNormal { median_ms, .. } => *median_ms <= 0.0,
        }
    }

    /// Draws one delay.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> Duration {
        let ms = match *self {
            Self::Zero => 0.0,
            Self::Fixed { ms } => ms,
            Self::Uniform { min_ms, max_ms } => {
                if max_ms > min_ms {
                    min_ms + rng.random::<f64>() * (max_ms - min_ms)
                } else {
                    min_ms
                }
            }
            Self::Exponential { mean_ms } => {
                let u: f64 = rng.random();
                -mean_ms * (1.0 - u).ln()
            }
            Self::LogNormal { median_ms, sigma } => {
                median_ms * (sigma * standard_normal(rng)).exp()
            }
        };
        if ms.is_finite() && ms > 0.0 {
            Duration::from_secs_f64((ms / 1000.0).min(86_400.0))
        } else {
            Duration::ZERO
        }
    }
}

/// Box–Muller; one of the pair is discarded (simplicity over speed: not on the hot path).
fn standard_normal<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Picks an index by weight; `None` when all weights are zero or the list is empty.
pub fn pick_weighted<R: Rng + ?Sized>(
    weights: impl Iterator<Item = f64> + Clone,
    rng: &mut R,
) -> Option<usize> {
    let total: f64 = weights.clone().filter(|w| *w > 0.0).sum();
    if total <= 0.0 || !total.is_finite() {
        return None;
    }
    let mut x = rng.random::<f64>() * total;
    let mut last = None;
    for (i, w) in weights.enumerate() {
        if w <= 0.0 {
            continue;
        }
        last = Some(i);
        if x < w {
            return Some(i);
        }
        x -= w;
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    #[test]
    fn samples_stay_in_range() {
        let mut rng = SmallRng::seed_from_u64(1);
        let u = Delay::Uniform {
            min_ms: 2.0,
            max_ms: 4.0,
        };
        for _ in 0..1000 {
            let d = u.sample(&mut rng);
            assert!(
                d >= Duration::from_millis(2) && d <= Duration::from_millis(4),
                "{d:?}"
            );
        }
        assert_eq!(Delay::Zero.sample(&mut rng), Duration::ZERO);
        assert_eq!(Delay::Fixed { ms: -5.0 }.sample(&mut rng), Duration::ZERO);
    }

    #[test]
    fn exponential_mean_is_close() {
        let mut rng = SmallRng::seed_from_u64(2);
        let e = Delay::Exponential { mean_ms: 10.0 };
        let n = 20_000;
        let sum: f64 = (0..n)
            .map(|_| e.sample(&mut rng).as_secs_f64() * 1000.0)
            .sum();
        let mean = sum / n as f64;
        assert!((mean - 10.0).abs() < 0.5, "mean {mean}");
    }

    #[test]
    fn weighted_pick_follows_weights() {
        let mut rng = SmallRng::seed_from_u64(3);
        let w = [0.0, 3.0, 1.0];
        let mut counts = [0u32; 3];
        for _ in 0..8000 {
            counts[pick_weighted(w.iter().copied(), &mut rng).unwrap()] += 1;
        }
        assert_eq!(counts[0], 0);
        assert!(
            (counts[1] as f64 / 8000.0 - 0.75).abs() < 0.03,
            "{counts:?}"
        );
        assert_eq!(pick_weighted([0.0].iter().copied(), &mut rng), None);
    }

    #[test]
    fn parses_from_toml() {
        #[derive(Deserialize)]
        struct W {
            d: Delay,
        }
        let w: W =
            toml::from_str("d = { kind = \"log_normal\", median_ms = 5, sigma = 0.5 }").unwrap();
        assert_eq!(
            w.d,
            Delay::LogNormal {
                median_ms: 5.0,
                sigma: 0.5
            }
        );
    }
}

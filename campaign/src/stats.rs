//! Two-proportion z-test for uplift of a variant over the control group.
//!
//! With x₁/n₁ conversions in the variant and x₂/n₂ in control, p̂ᵢ = xᵢ/nᵢ:
//! - test statistic with the POOLED standard error (H₀: p₁ = p₂):
//!   p̂ = (x₁+x₂)/(n₁+n₂), SE₀ = √(p̂(1−p̂)(1/n₁+1/n₂)), z = (p̂₁−p̂₂)/SE₀,
//!   two-sided p = 2·(1 − Φ(|z|));
//! - 95 % confidence interval of the difference with the UNPOOLED standard error:
//!   SE = √(p̂₁(1−p̂₁)/n₁ + p̂₂(1−p̂₂)/n₂), (p̂₁−p̂₂) ± z₀.₉₇₅·SE.
//!
//! Φ is statrs' standard normal CDF.

use statrs::distribution::{ContinuousCDF, Normal};

/// Result of the test.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Uplift {
    pub variant_rate: f64,
    pub control_rate: f64,
    /// variant_rate − control_rate.
    pub difference: f64,
    /// difference / control_rate (`None` when control_rate is 0).
    pub relative: Option<f64>,
    pub z: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    pub ci_low: f64,
    pub ci_high: f64,
}

fn std_normal() -> Normal {
    // Parameters (0, 1) are always valid; fall back to a default just in case.
    Normal::new(0.0, 1.0).unwrap_or_default()
}

/// z for a two-sided 95 % interval (≈ 1.959964).
pub fn z_975() -> f64 {
    std_normal().inverse_cdf(0.975)
}

/// Runs the test; `None` if a group is empty or a count exceeds its group.
pub fn two_proportion(x1: u64, n1: u64, x2: u64, n2: u64) -> Option<Uplift> {
    if n1 == 0 || n2 == 0 || x1 > n1 || x2 > n2 {
        return None;
    }
    let (n1f, n2f) = (n1 as f64, n2 as f64);
    let (p1, p2) = (x1 as f64 / n1f, x2 as f64 / n2f);
    let diff = p1 - p2;
    let pooled = (x1 + x2) as f64 / (n1f + n2f);
    let se0 = (pooled * (1.0 - pooled) * (1.0 / n1f + 1.0 / n2f)).sqrt();
    let (z, p_value) = if se0 > 0.0 {
        let z = diff / se0;
        (z, (2.0 * (1.0 - std_normal().cdf(z.abs()))).clamp(0.0, 1.0))
    } else {
        // Both groups all-0 or all-1: no evidence of a difference.
        (0.0, 1.0)
    };
    let se = (p1 * (1.0 - p1) / n1f + p2 * (1.0 - p2) / n2f).sqrt();
    let half = z_975() * se;
    Some(Uplift {
        variant_rate: p1,
        control_rate: p2,
        difference: diff,
        relative: (p2 > 0.0).then(|| diff / p2),
        z,
        p_value,
        ci_low: diff - half,
        ci_high: diff + half,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Case {
        x1: u64,
        n1: u64,
        x2: u64,
        n2: u64,
        z: f64,
        p_value: f64,
        ci_low: f64,
        ci_high: f64,
    }
    #[derive(serde::Deserialize)]
    struct Fixture {
        cases: Vec<Case>,
    }

    #[test]
    fn matches_reference_values() {
        let f: Fixture =
            serde_json::from_str(include_str!("../tests/fixtures/ztest.json")).unwrap();
        assert!(f.cases.len() >= 5);
        for c in f.cases {
            let u = two_proportion(c.x1, c.n1, c.x2, c.n2).unwrap();
            let close = |a: f64, b: f64| (a - b).abs() < 1e-9 * (1.0 + b.abs());
            assert!(close(u.z, c.z), "z {} vs {}", u.z, c.z);
            assert!(
                close(u.p_value, c.p_value),
                "p {} vs {}",
                u.p_value,
                c.p_value
            );
            assert!(
                close(u.ci_low, c.ci_low) && close(u.ci_high, c.ci_high),
                "ci {u:?}"
            );
        }
    }

    #[test]
    fn textbook_values_and_degenerate_input() {
        // Φ(1.959964) = 0.975 → two-sided p = 0.05.
        assert!((z_975() - 1.959_963_984_540_054).abs() < 1e-9);
        assert!(two_proportion(1, 0, 1, 10).is_none());
        assert!(two_proportion(11, 10, 1, 10).is_none());
        let u = two_proportion(0, 10, 0, 10).unwrap();
        assert_eq!((u.z, u.p_value, u.relative), (0.0, 1.0, None));
    }
}

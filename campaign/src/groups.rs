//! Splitting a task's audience into groups: A/B/… variants, hold-out control, or by condition.
//!
//! Random split is a pure function of `(seed, subscriber id)`: the id is hashed with the
//! seed (SplitMix64 finaliser) to a point in [0, 1); the first `control_share` of that
//! interval is the control group, the rest is divided among variants by weight. The seed is
//! stored with the bulk-send spec, so a split is reproducible after a restart or on another
//! machine, and a subscriber stays in the same bucket for the same seed.
//!
//! Condition split: each group has an expression; first match wins; subscribers matching
//! none go to `rest` (or are dropped when `rest` is `None`).

use roaring::RoaringBitmap;

use crate::error::{CampaignError, Result};
use crate::segment::evaluate_condition;
use crate::synth::mix;
use crate::table::SubscriberTable;

/// A variant and its relative weight.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Variant {
    pub name: String,
    pub weight: u32,
}

/// A condition-defined group.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ConditionGroup {
    pub name: String,
    pub condition: String,
    /// Hold-out: members are targeted but not sent (the uplift baseline).
    #[serde(default)]
    pub control: bool,
}

/// How to split.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "by")]
pub enum GroupSpec {
    /// Everyone in one group named `all`.
    None,
    Random {
        seed: u64,
        variants: Vec<Variant>,
        /// Share of the audience held out as `control`, in [0, 1).
        control_share: f64,
    },
    Condition {
        groups: Vec<ConditionGroup>,
        rest: Option<String>,
    },
}

/// One resulting group.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub name: String,
    pub is_control: bool,
    pub members: RoaringBitmap,
}

/// Name of the hold-out group of a random split.
pub const CONTROL: &str = "control";

/// Stable point in [0, 1) for a subscriber under a seed.
pub fn bucket_point(seed: u64, id: u32) -> f64 {
    let h = mix(mix(seed) ^ u64::from(id));
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// Splits `audience` according to `spec`.
///
/// # Errors
/// [`CampaignError::Invalid`] for a bad share / empty variant list; condition errors.
pub fn split(
    spec: &GroupSpec,
    audience: &RoaringBitmap,
    table: &SubscriberTable,
) -> Result<Vec<Group>> {
    match spec {
        GroupSpec::None => Ok(vec![Group {
            name: "all".into(),
            is_control: false,
            members: audience.clone(),
        }]),
        GroupSpec::Random {
            seed,
            variants,
            control_share,
        } => {
            if !(0.0..1.0).contains(control_share) {
                return Err(CampaignError::invalid(
                    "control_share",
                    format!("{control_share} not in [0, 1)"),
                ));
            }
            let total: u64 = variants.iter().map(|v| u64::from(v.weight)).sum();
            if total == 0 {
                return Err(CampaignError::invalid(
                    "variants",
                    "need at least one variant with weight > 0",
                ));
            }
            // Cumulative upper bounds of each variant in [control_share, 1).
            let mut bounds = Vec::with_capacity(variants.len());
            let mut acc = 0u64;
            for v in variants {
                acc += u64::from(v.weight);
                bounds.push(control_share + (1.0 - control_share) * acc as f64 / total as f64);
            }
            let mut control = RoaringBitmap::new();
            let mut sets = vec![RoaringBitmap::new(); variants.len()];
            for id in audience {
                let p = bucket_point(*seed, id);
                if p < *control_share {
                    let _ = control.try_push(id); // ascending ids
                } else {
                    let k = bounds
                        .iter()
                        .position(|&b| p < b)
                        .unwrap_or(variants.len() - 1);
                    let _ = sets[k].try_push(id);
                }
            }
            let mut out: Vec<Group> = variants
                .iter()
                .zip(sets)
                .map(|(v, members)| Group {
                    name: v.name.clone(),
                    is_control: false,
                    members,
                })
                .collect();
            if *control_share > 0.0 {
                out.push(Group {
                    name: CONTROL.into(),
                    is_control: true,
                    members: control,
                });
            }
            Ok(out)
        }
        GroupSpec::Condition { groups, rest } => {
            let mut left = audience.clone();
            let mut out = Vec::with_capacity(groups.len() + 1);
            for g in groups {
                let m = evaluate_condition(table, &g.condition)? & &left;
                left -= &m;
                out.push(Group {
                    name: g.name.clone(),
                    is_control: g.control,
                    members: m,
                });
            }
            if let Some(r) = rest {
                out.push(Group {
                    name: r.clone(),
                    is_control: false,
                    members: left,
                });
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::generate_city;

    fn ab(seed: u64, control: f64) -> GroupSpec {
        GroupSpec::Random {
            seed,
            variants: vec![
                Variant {
                    name: "A".into(),
                    weight: 1,
                },
                Variant {
                    name: "B".into(),
                    weight: 3,
                },
            ],
            control_share: control,
        }
    }

    #[test]
    fn random_split_is_stable_disjoint_and_proportional() {
        let t = generate_city(1, 1);
        let mut aud = RoaringBitmap::new();
        aud.insert_range(0..100_000);
        let g = split(&ab(42, 0.1), &aud, &t).unwrap();
        assert_eq!(g.iter().map(|g| g.members.len()).sum::<u64>(), 100_000);
        let (a, b, c) = (
            g[0].members.len() as f64,
            g[1].members.len() as f64,
            g[2].members.len() as f64,
        );
        assert!((c - 10_000.0).abs() < 600.0, "control {c}");
        assert!((a - 22_500.0).abs() < 900.0, "A {a}");
        assert!((b - 67_500.0).abs() < 900.0, "B {b}");
        assert!(g[2].is_control && g[2].name == CONTROL);
        assert!((&g[0].members & &g[1].members).is_empty());
        // Same seed → same buckets, also for a sub-audience; other seed → different.
        let mut sub = RoaringBitmap::new();
        sub.insert_range(500..900);
        let g2 = split(&ab(42, 0.1), &sub, &t).unwrap();
        assert_eq!(g2[0].members, &g[0].members & &sub);
        let g3 = split(&ab(43, 0.1), &aud, &t).unwrap();
        assert_ne!(g3[0].members, g[0].members);
        assert!(split(&ab(1, 1.0), &aud, &t).is_err());
    }

    #[test]
    fn condition_split_first_match_wins() {
        let t = generate_city(3_000, 9);
        let mut aud = RoaringBitmap::new();
        aud.insert_range(0..t.len());
        let spec = GroupSpec::Condition {
            groups: vec![
                ConditionGroup {
                    name: "odd".into(),
                    condition: "last_digit(msisdn) in [1,3,5,7,9]".into(),
                    control: false,
                },
                ConditionGroup {
                    name: "young".into(),
                    condition: "age < 30".into(),
                    control: true,
                },
            ],
            rest: Some("other".into()),
        };
        let g = split(&spec, &aud, &t).unwrap();
        assert_eq!(
            g.iter().map(|g| g.members.len()).sum::<u64>(),
            u64::from(t.len())
        );
        for id in &g[1].members {
            assert_eq!(t.msisdn(id).unwrap() % 2, 0);
            assert!(t.row(id).unwrap().age.unwrap() < 30.0);
        }
        assert!(g[1].is_control);
    }
}

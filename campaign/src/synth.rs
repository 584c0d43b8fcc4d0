//! Synthetic city generator for benches, tests and the demo.
//!
//! Deterministic for a given `(n, seed)`: a SplitMix64 stream drives every draw, so the same
//! call always yields the same subscribers on every platform. Distributions are shaped after
//! a provincial operator (Gansu): brand mix GoTone 15 % / M-Zone 35 % / Easyown 50 %, regions
//! weighted by population, ARPU log-normal-ish per brand, M-Zone skewing young. Numbers are
//! unique 11-digit mobile numbers.

use std::io::Write;

use crate::table::{SubscriberRow, SubscriberTable};

const PREFIXES: [u64; 15] = [
    134, 135, 136, 137, 138, 139, 150, 151, 152, 157, 158, 159, 182, 187, 198,
];
/// (region, weight ‰).
pub const REGIONS: [(&str, u32); 9] = [
    ("lanzhou", 300),
    ("tianshui", 150),
    ("baiyin", 80),
    ("wuwei", 100),
    ("zhangye", 70),
    ("pingliang", 100),
    ("jiuquan", 60),
    ("qingyang", 80),
    ("dingxi", 60),
];
/// (brand, weight ‰, median ARPU, plans).
const BRANDS: [(&str, u32, f64, [&str; 3]); 3] = [
    (
        "gotone",
        150,
        140.0,
        ["gotone-88", "gotone-128", "gotone-188"],
    ),
    ("mzone", 350, 38.0, ["mzone-18", "mzone-28", "mzone-38"]),
    (
        "easyown",
        500,
        25.0,
        ["easyown-8", "easyown-18", "easyown-28"],
    ),
];

/// SplitMix64: tiny, fast, value-stable generator (also used to hash group buckets).
#[derive(Debug, Clone)]
pub(crate) struct SplitMix(pub(crate) u64);

impl SplitMix {
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }
    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: u32) -> u32 {
        (((self.next_u64() >> 32) * u64::from(n)) >> 32) as u32
    }
}

/// The SplitMix64 finaliser: a bijective 64-bit mixer.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn pick<T: Copy>(rng: &mut SplitMix, items: &[(T, u32)]) -> T {
    let total: u32 = items.iter().map(|(_, w)| w).sum();
    let mut x = rng.below(total);
    for (v, w) in items {
        if x < *w {
            return *v;
        }
        x -= w;
    }
    items[items.len() - 1].0
}

/// Generates subscriber `i` of a city with `seed`.
pub fn subscriber(i: u64, seed: u64) -> SubscriberRow {
    let mut rng = SplitMix(mix(seed ^ i.wrapping_mul(0xA24B_AED4_963E_E407)));
    let prefix = PREFIXES[(i % PREFIXES.len() as u64) as usize];
    let suffix = ((i / PREFIXES.len() as u64) * 7919 + seed % 100_000_000) % 100_000_000;
    let msisdn = prefix * 100_000_000 + suffix;
    let b = pick(
        &mut rng,
        &[(0usize, BRANDS[0].1), (1, BRANDS[1].1), (2, BRANDS[2].1)],
    );
    let (brand, _, median, plans) = BRANDS[b];
    let region = pick(&mut rng, &REGIONS);
    let district = rng.below(4) + 1;
    // Sum of three uniforms ≈ normal; exp gives a right-skewed ARPU around the median.
    let z = (rng.unit() + rng.unit() + rng.unit() - 1.5) * 2.0;
    let arpu = (median * (0.5 * z).exp() * 100.0).round() / 100.0;
    let age = if b == 1 {
        16 + rng.below(15)
    } else {
        18 + rng.below(58)
    };
    SubscriberRow {
        msisdn,
        brand: brand.to_owned(),
        region: region.to_owned(),
        city: format!("{region}-{district}"),
        arpu: Some(arpu),
        age: Some(f64::from(age)),
        plan: plans[rng.below(3) as usize].to_owned(),
        custom: Vec::new(),
    }
}

/// Generates a city of `n` subscribers straight into a columnar table (ids = 0..n).
pub fn generate_city(n: u32, seed: u64) -> SubscriberTable {
    let mut t = SubscriberTable::default();
    for i in 0..u64::from(n) {
        t.upsert(&subscriber(i, seed));
    }
    t
}

/// Writes a city as import CSV (header + `n` rows).
///
/// # Errors
/// I/O errors of `out`.
pub fn write_city_csv<W: Write>(mut out: W, n: u64, seed: u64) -> std::io::Result<()> {
    writeln!(out, "msisdn,brand,region,city,arpu,age,plan")?;
    for i in 0..n {
        let s = subscriber(i, seed);
        writeln!(
            out,
            "{},{},{},{},{},{},{}",
            s.msisdn,
            s.brand,
            s.region,
            s.city,
            s.arpu.unwrap_or_default(),
            s.age.unwrap_or_default(),
            s.plan
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_unique_and_plausible() {
        let a = generate_city(20_000, 7);
        let b = generate_city(20_000, 7);
        assert_eq!(a.len(), 20_000, "numbers must be unique");
        assert_eq!(a.row(123), b.row(123));
        let gotone = (0..a.len())
            .filter(|&i| a.str_value("brand", i) == "gotone")
            .count();
        assert!((2_400..3_600).contains(&gotone), "{gotone}");
        for i in 0..a.len() {
            let n = a.msisdn(i).unwrap();
            assert_eq!(crate::msisdn::normalize(&n.to_string()), Ok(n));
        }
    }
}

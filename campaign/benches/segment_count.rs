//! Interactive segment counts (`POST /v1/campaign/count`) over a synthetic city.
//!
//! One table of `SLUICE_BENCH_COUNT_ROWS` subscribers (default 12 M, the size a province
//! imports) is generated once; each condition shape is then counted through the service's
//! own path ([`Campaigns::count`]), so the figure is what an interactive user waits for,
//! minus HTTP. Run:
//!
//! ```text
//! cargo bench -p sluice-campaign --bench segment_count
//! ```

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use sluice_campaign::Campaigns;

/// (shape, condition): one per shape the console's segment builder produces.
const SHAPES: [(&str, &str); 6] = [
    ("in_list", r#"brand in ["gotone","mzone"]"#),
    (
        "in_list_and_range",
        r#"brand in ["gotone","mzone"] and arpu >= 50"#,
    ),
    ("range", "arpu >= 50"),
    (
        "range_and_equality",
        r#"age >= 25 and age < 35 and region = "lanzhou""#,
    ),
    ("not", r#"not brand = "easyown""#),
    ("or", r#"city = "tianshui-2" or arpu < 10 or age > 70"#),
];

fn rows() -> u32 {
    std::env::var("SLUICE_BENCH_COUNT_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12_000_000)
}

fn counts(c: &mut Criterion) {
    let n = rows();
    let started = Instant::now();
    let mut svc = Campaigns::in_memory().expect("in-memory service");
    svc.table = sluice_campaign::synth::generate_city(n, 1);
    eprintln!(
        "generated {n} subscribers in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let mut g = c.benchmark_group(format!("count_{}m", n / 1_000_000));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(5));
    for (shape, cond) in SHAPES {
        eprintln!("{shape}: {cond} → {}", svc.count(cond).expect("count"));
        g.bench_function(shape, |b| {
            b.iter(|| svc.count(black_box(cond)).expect("count"))
        });
    }
    g.finish();
}

criterion_group!(benches, counts);
criterion_main!(benches);

//! The public rules' ingress check with 1 M listed numbers: what every marketing message pays
//! before it is stored (`Rules::check`: msisdn normalisation, six list probes, the caps over
//! the recipient's delivered-contact counts), behind the view's read lock.
//!
//! - `rules/check_listed`: a number on do-not-disturb (refused at the first probes).
//! - `rules/check_clear`: a number on no list with contacts counted against two caps (the
//!   full path: every probe, then the cap sums).
//! - `rules/check_unknown`: a number never seen (every probe misses, no counts).
//!
//! Run: `cargo bench -p sluice --bench rules -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use sluice::clock::AnyClock;
use sluice::rules::db::Delivered;
use sluice::rules::model::{Cap, Period, day_number};
use sluice::rules::{Channel, ListKind, Rules};
use sluice::store::{Lane, MessageKind};

/// As in the `sluice` binary, so the bench measures what ships.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const LISTED: u64 = 1_000_000;
const BASE: u64 = 13_000_000_000;

fn rules() -> Rules {
    let rules = Rules::in_memory(
        jiff::tz::TimeZone::get("Asia/Shanghai").expect("tz"),
        &[Lane::Otp, Lane::Notification],
        AnyClock::System,
    )
    .expect("rules");
    // Every 7th number from BASE: 1 M entries spread over the range.
    let numbers: Vec<u64> = (0..LISTED).map(|i| BASE + i * 7).collect();
    for chunk in numbers.chunks(100_000) {
        rules
            .add("bench", ListKind::DoNotDisturb, Some(Channel::Sms), chunk)
            .expect("add");
    }
    rules
        .set_caps(
            "bench",
            vec![
                Cap {
                    channel: Some(Channel::Sms),
                    max: 10,
                    period: Period::Month,
                },
                Cap {
                    channel: None,
                    max: 20,
                    period: Period::Days(30),
                },
            ],
        )
        .expect("caps");
    let today = day_number(rules.today());
    let delivered: Vec<Delivered> = (0..3)
        .map(|i| Delivered {
            message_id: format!("m{i}"),
            msisdn: BASE + 1,
            channel: Channel::Sms,
            day: today - i,
        })
        .collect();
    rules.count_delivered(&delivered).expect("count");
    rules
}

fn bench(c: &mut Criterion) {
    let rules = rules();
    let today = rules.today();
    assert_eq!(
        rules.len(ListKind::DoNotDisturb, Some(Channel::Sms)),
        LISTED as usize
    );
    let listed = format!("+86{}", BASE + 7 * 500_000);
    let clear = (BASE + 1).to_string();
    let unknown = (BASE + 3).to_string();
    assert!(
        rules
            .check(&listed, MessageKind::Sms, Lane::Marketing, today)
            .is_some()
    );
    assert!(
        rules
            .check(&clear, MessageKind::Sms, Lane::Marketing, today)
            .is_none()
    );
    let mut g = c.benchmark_group("rules");
    for (name, to) in [
        ("check_listed", &listed),
        ("check_clear", &clear),
        ("check_unknown", &unknown),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                black_box(rules.check(black_box(to), MessageKind::Sms, Lane::Marketing, today))
            });
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! Campaign service benches (criterion).
//!
//! - `import/csv_1m`: streaming CSV import of N generated rows (default 1 M, env
//!   `SLUICE_BENCH_ROWS`) into a fresh SQLite file, including the persist transaction.
//!   `SLUICE_BENCH_IMPORT_ONCE=12000000` additionally times one import of that many rows
//!   (printed to stderr) — criterion needs ≥ 10 samples, too slow at 12 M.
//! - `segment_ops/*`: union / intersection / difference of two 12 M-member segments
//!   (random 75 % of 16 M ids each, the worst case for roaring: dense bitmap containers).
//! - `launch/plan_2m`: launch planning of a 2 M-target task with blacklist, graylist, staff,
//!   DND, custom lists, 600 k history rows (300 k subscribers × 2), recently-marketed, conflicting offers and
//!   per-channel + overall caps, A/B/control split and 4 slices.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use jiff::Timestamp;
use roaring::RoaringBitmap;
use sluice_campaign::Campaigns;
use sluice_campaign::approval::{self, Actor};
use sluice_campaign::groups::{GroupSpec, Variant};
use sluice_campaign::identity::{self, Role};
use sluice_campaign::launch::{BulkSpec, SliceSpec};
use sluice_campaign::lifecycle::{self, TaskState};
use sluice_campaign::rules::{self, Cap, Channel, ContactPolicy, ListKind};
use sluice_campaign::segment::SetOp;
use sluice_campaign::synth::write_city_csv;

fn rows() -> u64 {
    std::env::var("SLUICE_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

fn import_once(csv: &[u8]) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Campaigns::open(&dir.path().join("c.db")).unwrap();
    let t = Instant::now();
    let r = c.import_subscribers(csv, Some(csv.len() as u64)).unwrap();
    let d = t.elapsed();
    assert_eq!(r.rejected, 0);
    d
}

fn import(c: &mut Criterion) {
    let n = rows();
    let mut csv = Vec::new();
    write_city_csv(&mut csv, n, 1).unwrap();
    if let Some(big) = std::env::var("SLUICE_BENCH_IMPORT_ONCE")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        let mut big_csv = Vec::new();
        write_city_csv(&mut big_csv, big, 1).unwrap();
        let d = import_once(&big_csv);
        eprintln!(
            "import of {big} rows ({} MB CSV) into SQLite: {:.2} s",
            big_csv.len() >> 20,
            d.as_secs_f64()
        );
    }
    let mut g = c.benchmark_group("import");
    g.sample_size(10);
    g.bench_function(format!("csv_{}k_rows", n / 1000), |b| {
        b.iter_custom(|iters| (0..iters).map(|_| import_once(&csv)).sum())
    });
    // The in-memory part alone (parse + columnar table, no SQLite).
    g.bench_function(format!("csv_{}k_rows_table_only", n / 1000), |b| {
        b.iter(|| {
            let mut t = sluice_campaign::table::SubscriberTable::default();
            sluice_campaign::import::import_csv(&mut t, &csv[..], None)
                .unwrap()
                .accepted
        })
    });
    // The SQLite part alone: write an already-built table to a fresh file.
    let mut table = sluice_campaign::table::SubscriberTable::default();
    let rep = sluice_campaign::import::import_csv(&mut table, &csv[..], None).unwrap();
    g.bench_function(format!("persist_{}k_rows_sqlite_only", n / 1000), |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let dir = tempfile::tempdir().unwrap();
                    let mut conn = sluice_campaign::store::open(&dir.path().join("c.db")).unwrap();
                    let t = Instant::now();
                    sluice_campaign::persist::save(&mut conn, &table, &rep.changed).unwrap();
                    t.elapsed()
                })
                .sum()
        })
    });
    g.finish();
}

fn random_set(seed: u64, universe: u32, keep_per_mille: u64) -> RoaringBitmap {
    let mut out = RoaringBitmap::new();
    for id in 0..universe {
        let mut z = seed ^ u64::from(id).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 31)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z ^= z >> 29;
        if z % 1000 < keep_per_mille {
            let _ = out.try_push(id);
        }
    }
    out
}

fn segment_ops(c: &mut Criterion) {
    let a = random_set(1, 16_000_000, 750);
    let b = random_set(2, 16_000_000, 750);
    eprintln!("segment sizes: {} and {}", a.len(), b.len());
    let mut g = c.benchmark_group("segment_ops_12m");
    for op in [SetOp::Union, SetOp::Intersection, SetOp::Difference] {
        g.bench_function(format!("{op:?}").to_lowercase(), |bch| {
            bch.iter(|| black_box(op.apply(&a, &b)).len())
        });
    }
    g.finish();
}

fn launch_plan(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut svc = Campaigns::open(&dir.path().join("c.db")).unwrap();
    let n = 2_000_000u32;
    svc.load_synthetic(n, 3).unwrap();
    let now = Timestamp::from_second(1_772_000_000).unwrap();
    let seg = svc.segment_from_condition("all", "arpu >= 0", now).unwrap();
    assert_eq!(seg.count, u64::from(n));
    let numbers = |step: u32, off: u32| -> Vec<String> {
        (off..n)
            .step_by(step as usize)
            .map(|i| svc.table.msisdn(i).unwrap().to_string())
            .collect()
    };
    for (kind, ch, step, off) in [
        (ListKind::Blacklist, None, 100, 0),
        (ListKind::Graylist, None, 100, 1),
        (ListKind::Staff, None, 2000, 2),
        (ListKind::DoNotDisturb, Some(Channel::Sms), 100, 3),
        (ListKind::Custom, None, 200, 4),
    ] {
        let nums = numbers(step, off);
        let refs: Vec<&str> = nums.iter().map(String::as_str).collect();
        rules::add_to_list(&svc.conn, &svc.table, kind, ch, "", &refs).unwrap();
    }
    rules::add_conflict(&svc.conn, "DATA10", "DATA20").unwrap();
    // 600 k history rows over the last 30 days.
    {
        let tx = svc.conn.transaction().unwrap();
        {
            let mut st = tx
                .prepare(
                    "INSERT INTO contacts (sub_id, task_id, bulk_id, slice, grp, channel, offer, campaign_type, at)
                     VALUES (?1, 0, 0, 0, '', ?2, ?3, ?4, ?5)",
                )
                .unwrap();
            for i in 0..600_000u32 {
                // 300 k subscribers with two contacts each (same channel, offer and day).
                let sub = (i * 7) % 300_000;
                let ch = ["sms", "sms", "mms", "web"][(i % 4) as usize];
                let offer = ["DATA20", "DATA10", "VOICE", "MUSIC", "VIDEO"][(i % 5) as usize];
                let at = now.as_second() - i64::from(i % 30) * 86_400;
                st.execute(rusqlite::params![sub, ch, offer, "promo", at])
                    .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    let spec = BulkSpec {
        segment: seg.id,
        template: "{brand}用户您好".into(),
        group_templates: Default::default(),
        channel: Channel::Sms,
        push: None,
        mms: None,
        lane: Default::default(),
        from: None,
        extension: None,
        offer: "DATA10".into(),
        campaign_type: "retention".into(),
        groups: GroupSpec::Random {
            seed: 5,
            variants: vec![
                Variant {
                    name: "A".into(),
                    weight: 1,
                },
                Variant {
                    name: "B".into(),
                    weight: 1,
                },
            ],
            control_share: 0.05,
        },
        policy: ContactPolicy {
            recent_days: 7,
            conflict_days: 14,
            caps: vec![
                Cap {
                    channel: Some(Channel::Sms),
                    max: 2,
                    period_days: 30,
                },
                Cap {
                    channel: None,
                    max: 2,
                    period_days: 30,
                },
            ],
        },
        custom_lists: vec![String::new()], // the custom list added above (name "")
        slices: (0..4)
            .map(|d| SliceSpec {
                start: now,
                window: Some(format!("{:02}:00-{:02}:00", 9 + d, 10 + d)),
            })
            .collect(),
        timezone: "Asia/Shanghai".into(),
        batch_size: 10_000,
    };
    let mut printed = false;
    // A planner and an approver of the root organisation (actors are real users).
    let root = identity::bootstrap(&mut svc.conn, "Province", "admin", None, None, 0)
        .unwrap()
        .unwrap()
        .org;
    let person = |name: &str, role: Role| Actor {
        user_id: identity::create_user(&svc.conn, name, root, &[role], None, None, 0).unwrap(),
        user: name.into(),
        org_id: root,
        can_approve: role == Role::Approver,
    };
    let (maker, checker) = (
        person("maker", Role::Planner),
        person("checker", Role::Approver),
    );
    let mut g = c.benchmark_group("launch");
    g.sample_size(10);
    g.bench_function("plan_2m_targets", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                // Setup (not measured): a fresh approved task with a bulk send.
                let t = lifecycle::create_task(&svc.conn, None, "bench", 0).unwrap();
                let task = approval::Subject::Task(t);
                approval::submit(&mut svc.conn, task, &[root], &maker, 0, "").unwrap();
                approval::approve(&mut svc.conn, task, &checker, 0, "").unwrap();
                svc.transition(t, TaskState::Scheduled, "bench", now, "")
                    .unwrap();
                let bulk = svc.create_bulk(t, &spec).unwrap();
                let start = Instant::now();
                let r = svc.plan(bulk, now).unwrap();
                total += start.elapsed();
                if !printed {
                    eprintln!(
                        "plan: excluded {:?}, groups {:?}, slices {:?}",
                        r.excluded, r.groups, r.slices
                    );
                    printed = true;
                }
                black_box(r);
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, import, segment_ops, launch_plan);
criterion_main!(benches);

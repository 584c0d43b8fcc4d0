//! Durable store throughput, redb vs sled in one run (sled only with `--features sled`).
//!
//! - `insert/single`: one message per commit (one producer): the fsync floor.
//! - `insert/batch100`, `insert/batch1000`: one producer, one request of N messages.
//! - `insert/group16x10`: 16 producer threads, requests of 10: the writer merges whatever
//!   queued during the previous fsync into one commit (the ingress case).
//! - `lease_submit/100`: lease 100 due messages and record their submit responses
//!   (201 ops per cycle: 1 lease + 100 submitted, in two commits).
//!
//! - `lifecycle/1000`: the whole store path of 1000 messages — insert, lease, submitted,
//!   delivered receipt (outbox event), outbox ack — in 5 group commits. This is the store's
//!   share of the end-to-end target (≥ 50 k msg/s durable).
//!
//! Records are ~300 bytes serialised (printed at start). Data lives under the system temp dir
//! (must be a real disk for fsync to mean anything).
//!
//! Run: `cargo bench -p sluice --features sled --bench store -- --warm-up-time 1 --measurement-time 3`

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sluice::store::{
    AnyBackend, BackendKind, Lane, Message, Op, PartState, Payload, Store, WriterConfig,
};

const NOW: u64 = 1_700_000_000_000;

fn backends() -> Vec<BackendKind> {
    let mut v = vec![BackendKind::Redb];
    if cfg!(feature = "sled") {
        v.push(BackendKind::Sled);
    }
    v
}

fn name(k: BackendKind) -> &'static str {
    match k {
        BackendKind::Redb => "redb",
        BackendKind::Sled => "sled",
    }
}

fn open(kind: BackendKind, dir: &Path) -> Store<AnyBackend> {
    Store::open(
        AnyBackend::open(kind, dir).expect("open backend"),
        WriterConfig::default(),
        NOW,
    )
    .expect("open store")
}

fn message(store: &Store<AnyBackend>) -> Message {
    let id = store.ids().next(NOW);
    let payload = Payload::Text {
        text: "Your verification code is 123456. It expires in 5 minutes. Do not share it with anyone. Reply STOP to opt out of marketing messages from ACME.".into(),
        encoding: Default::default(),
    };
    let mut m = Message::new(id, "acme", "+8613800138000", payload, "smsc1", NOW, NOW);
    m.from = Some("10690000".into());
    m.client_ref = Some(format!("ref-{}", id.0));
    m
}

fn inserts(store: &Store<AnyBackend>, n: usize) -> Vec<Op> {
    (0..n)
        .map(|_| Op::Insert(Box::new(message(store))))
        .collect()
}

fn bench_insert(c: &mut Criterion) {
    {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(BackendKind::Redb, dir.path());
        let bytes = serde_json::to_vec(&message(&store)).map_or(0, |v| v.len());
        eprintln!("store bench: message record is {bytes} bytes");
    }
    let mut g = c.benchmark_group("insert");
    g.sample_size(10);
    for kind in backends() {
        for batch in [1usize, 100, 1000] {
            let label = if batch == 1 {
                "single".to_owned()
            } else {
                format!("batch{batch}")
            };
            g.throughput(Throughput::Elements(batch as u64));
            g.bench_function(BenchmarkId::new(label, name(kind)), |b| {
                let dir = tempfile::tempdir().expect("tempdir");
                let store = open(kind, dir.path());
                b.iter_custom(|iters| {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let ops = inserts(&store, batch);
                        let t = Instant::now();
                        store.submit_blocking(ops).expect("insert");
                        total += t.elapsed();
                    }
                    total
                });
            });
        }
        // 16 concurrent producers, 10 messages per request.
        g.throughput(Throughput::Elements(160));
        g.bench_function(BenchmarkId::new("group16x10", name(kind)), |b| {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = open(kind, dir.path());
            b.iter_custom(|iters| {
                let before = (store.stats().commits(), store.stats().requests());
                let t = Instant::now();
                std::thread::scope(|s| {
                    for _ in 0..16 {
                        s.spawn(|| {
                            for _ in 0..iters {
                                store.submit_blocking(inserts(&store, 10)).expect("insert");
                            }
                        });
                    }
                });
                let elapsed = t.elapsed();
                let commits = store.stats().commits() - before.0;
                let reqs = store.stats().requests() - before.1;
                if commits > 0 && iters >= 10 {
                    eprintln!(
                        "  {}: {reqs} requests in {commits} commits ({:.1} requests/commit)",
                        name(kind),
                        reqs as f64 / commits as f64
                    );
                }
                elapsed
            });
        });
    }
    g.finish();
}

fn bench_lease(c: &mut Criterion) {
    let mut g = c.benchmark_group("lease_submit");
    g.sample_size(10);
    g.throughput(Throughput::Elements(100));
    for kind in backends() {
        g.bench_function(BenchmarkId::new("100", name(kind)), |b| {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = open(kind, dir.path());
            let mut center = 0u64;
            b.iter_custom(|iters| {
                // Untimed: stock the ready queue.
                for _ in 0..iters {
                    store.submit_blocking(inserts(&store, 100)).expect("stock");
                }
                let t = Instant::now();
                for _ in 0..iters {
                    let leased = futures::executor::block_on(store.lease(
                        "smsc1",
                        Lane::Notification,
                        NOW,
                        100,
                        60_000,
                    ))
                    .expect("lease");
                    let acks = leased
                        .messages
                        .iter()
                        .map(|m| {
                            center += 1;
                            Op::Submitted {
                                id: m.id,
                                part: 1,
                                parts: 1,
                                center_id: format!("{center:016X}"),
                                now_ms: NOW,
                            }
                        })
                        .collect();
                    store.submit_blocking(acks).expect("submitted");
                }
                t.elapsed()
            });
        });
    }
    g.finish();
}

fn bench_lifecycle(c: &mut Criterion) {
    const N: usize = 1000;
    let mut g = c.benchmark_group("lifecycle");
    g.sample_size(10);
    g.throughput(Throughput::Elements(N as u64));
    for kind in backends() {
        g.bench_function(BenchmarkId::new("1000", name(kind)), |b| {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = open(kind, dir.path());
            let mut center = 0u64;
            let mut outbox_seq = 0u64;
            b.iter(|| {
                store.submit_blocking(inserts(&store, N)).expect("insert");
                let leased = futures::executor::block_on(store.lease_lanes(
                    "smsc1",
                    &Lane::ALL,
                    NOW,
                    N,
                    60_000,
                ))
                .expect("lease");
                let mut submitted = Vec::with_capacity(N);
                let mut receipts = Vec::with_capacity(N);
                for m in &leased.messages {
                    center += 1;
                    let cid = format!("{center:016X}");
                    submitted.push(Op::Submitted {
                        id: m.id,
                        part: 1,
                        parts: 1,
                        center_id: cid.clone(),
                        now_ms: NOW,
                    });
                    receipts.push(Op::Receipt {
                        channel: "smsc1".into(),
                        center_id: cid,
                        part_state: PartState::Delivered,
                        stat: "DELIVRD".into(),
                        err: "000".into(),
                        now_ms: NOW,
                    });
                }
                store.submit_blocking(submitted).expect("submitted");
                store.submit_blocking(receipts).expect("receipts");
                outbox_seq += leased.messages.len() as u64;
                futures::executor::block_on(store.outbox_ack("acme", outbox_seq)).expect("ack");
            });
        });
    }
    g.finish();
}

criterion_group!(benches, bench_insert, bench_lease, bench_lifecycle);
criterion_main!(benches);

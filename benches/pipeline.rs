//! End-to-end pipeline bench: HTTP batches → durable store → dispatch → SMPP or CMPP →
//! simulator → DLR → receipt layer → outbox, all in one process on 127.0.0.1 (the simulator is
//! started here with default behaviour: immediate responses and DELIVRD receipts).
//!
//! - `pipeline/e2e_delivered_{4000,20000}`: time from the first POST of `N` messages until the receipt
//!   layer has published a final receipt for all `N` (throughput = messages/s, durable).
//! - `pipeline/cmpp_e2e_delivered_{4000,20000}`: the same workload with the channel pointed at
//!   the simulator's CMPP 2.0 ISMG instead of its SMSC (2 connections, window 256, status
//!   reports as DELIVER), on a gateway and store of its own started after the SMPP one stops,
//!   so the two protocols compare side by side in one run.
//! - `pipeline/batch_accept_{100,1000}`: one POST of a 100- or 1000-message batch until its
//!   202 (which follows the store's fsync'd commit), while earlier batches are still being
//!   delivered. p50/p99 over every sample are printed at the end (criterion reports means
//!   and medians, not tails).
//!
//! Run: `cargo bench -p sluice --bench pipeline -- --warm-up-time 1 --measurement-time 3`
//! (`SLUICE_BENCH_COMMIT_INTERVAL_MS=N` sets the store's `commit_interval_ms`, default 0;
//! `SLUICE_BENCH_LEASE_BATCH=N` the channel's `lease_batch`, default 256;
//! `SLUICE_BENCH_COMMIT_SPACING_MS=N` the store's `commit_min_spacing_ms`, default 0).

use std::hint::black_box;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use sluice::config::Config;
use sluice::receipt::Notification;
use sluice::serve::{Gateway, ServeOptions, start};
use sluice_loadtest::{ListenerConfig, Protocol, SimConfig, SimHandle, Simulator};

/// As in the `sluice` binary, so the bench measures what ships.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const KEY: &str = "bench-key";
const BATCH: usize = 1000;

struct Rig {
    gw: Gateway,
    _sim: SimHandle,
    base: String,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

/// Which protocol the gateway's one channel speaks to the simulator.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wire {
    Smpp,
    Cmpp,
}

/// The `[[channels]]` keys that differ between the two wires (same binds, window, rate).
fn channel_keys(wire: Wire) -> &'static str {
    match wire {
        Wire::Smpp => {
            r#"kind = "smpp"
system_id = "sluice"
password = "sim""#
        }
        Wire::Cmpp => {
            r#"kind = "cmpp"
source_addr = "901234"
shared_secret = "sim"
version = "2.0"
service_id = "BENCH"
src_id = "10690000""#
        }
    }
}

async fn start_rig(wire: Wire) -> Rig {
    let sim = Simulator::start(SimConfig {
        listeners: vec![ListenerConfig {
            name: "sim".into(),
            protocol: match wire {
                Wire::Smpp => Protocol::Smpp,
                Wire::Cmpp => Protocol::Cmpp,
            },
            ..ListenerConfig::default()
        }],
        ..SimConfig::default()
    })
    .await
    .expect("simulator");
    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        r#"
[listeners]
http = "127.0.0.1:0"
[storage]
path = "{data}"
commit_interval_ms = {linger}
commit_min_spacing_ms = {spacing}
[[accounts]]
name = "bench"
api_keys = ["{hash}"]
rate = 10000000
burst = 10000000
default_sender = "10690000"
[[channels]]
name = "sim"
{keys}
host = "127.0.0.1"
port = {port}
binds = 2
window = 256
lease_batch = {lease_batch}
rate = 1000000
burst = 100000
[[routes]]
channel = "sim"
"#,
        data = dir.path().display(),
        lease_batch = std::env::var("SLUICE_BENCH_LEASE_BATCH").unwrap_or_else(|_| "256".into()),
        spacing = std::env::var("SLUICE_BENCH_COMMIT_SPACING_MS").unwrap_or_else(|_| "0".into()),
        linger = std::env::var("SLUICE_BENCH_COMMIT_INTERVAL_MS").unwrap_or_else(|_| "0".into()),
        keys = channel_keys(wire),
        hash = sluice::config::hash_api_key(KEY),
        port = sim.addrs()[0].port()
    );
    let cfg = Config::parse(&text, "bench.toml").expect("config");
    let gw = start(cfg, ServeOptions::default()).await.expect("gateway");
    let base = format!("http://{}/v1/messages", gw.http_addr());
    Rig {
        gw,
        _sim: sim,
        base,
        client: reqwest::Client::new(),
        _dir: dir,
    }
}

fn batch(start: usize, n: usize) -> Value {
    let messages: Vec<Value> = (start..start + n)
        .map(|i| json!({"to": format!("86{:011}", 13_000_000_000u64 + i as u64), "text": format!("bench {i}")}))
        .collect();
    json!({ "messages": messages })
}

async fn post(rig: &Rig, body: &Value) {
    let r = rig
        .client
        .post(&rig.base)
        .bearer_auth(KEY)
        .json(body)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 202);
}

/// `e2e_delivered_{n}`: POST `n` messages in 1000-message batches at once, then wait until the
/// receipt layer has published a final receipt for every one of them.
fn e2e(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &tokio::runtime::Runtime,
    rig: &Rig,
    next: &mut usize,
    n: usize,
    prefix: &str,
) {
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function(format!("{prefix}e2e_delivered_{n}"), |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let mut sub = rig.gw.receipts().subscribe();
                    let bodies: Vec<Value> = (0..n / BATCH)
                        .map(|k| batch(*next + k * BATCH, BATCH))
                        .collect();
                    *next += n;
                    let t = Instant::now();
                    let posts = bodies.iter().map(|body| post(rig, body));
                    futures::future::join_all(posts).await;
                    // Every earlier iteration waited for all of its receipts, so the next
                    // n receipts published are this iteration's.
                    let mut seen = 0;
                    while seen < n {
                        match sub.recv().await {
                            Ok(Notification::Receipt(r)) => {
                                black_box(&r);
                                seen += 1;
                            }
                            Ok(Notification::Mo(_)) => {}
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(k)) => {
                                seen += usize::try_from(k).unwrap_or(usize::MAX);
                            }
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                        }
                    }
                    total += t.elapsed();
                }
                total
            })
        });
    });
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let rig = rt.block_on(start_rig(Wire::Smpp));
    let mut next = 0usize;

    let mut g = c.benchmark_group("pipeline");
    g.sample_size(10);
    // Two burst sizes: 4 k shows the pipeline's fill-and-drain latency, 20 k its sustained
    // rate (the burst is long enough that the stages overlap for most of it).
    for n in [4 * BATCH, 20 * BATCH] {
        e2e(&mut g, &rt, &rig, &mut next, n, "");
    }
    // After the end-to-end runs, so their receipts are not mixed with these. Two request
    // sizes: latency grows with the batch (one commit carries all of it).
    let mut hists = Vec::new();
    for size in [100usize, BATCH] {
        let hist = Mutex::new(Histogram::<u64>::new(3).expect("histogram"));
        g.throughput(Throughput::Elements(size as u64));
        g.bench_function(format!("batch_accept_{size}"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        let body = batch(next, size);
                        next += size;
                        let t = Instant::now();
                        post(&rig, &body).await;
                        let d = t.elapsed();
                        total += d;
                        let _ = hist
                            .lock()
                            .expect("hist")
                            .record(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
                    }
                    total
                })
            });
        });
        hists.push((size, hist.into_inner().expect("hist")));
    }
    rt.block_on(async move { rig.gw.shutdown().await });

    // The same bursts over CMPP, on a fresh gateway, store and simulator (the SMPP one is
    // stopped, so the two never share the cores).
    let rig = rt.block_on(start_rig(Wire::Cmpp));
    for n in [4 * BATCH, 20 * BATCH] {
        e2e(&mut g, &rt, &rig, &mut next, n, "cmpp_");
    }
    rt.block_on(async move { rig.gw.shutdown().await });
    g.finish();

    for (size, h) in &hists {
        println!(
            "batch_accept ({size} msgs/request, {} samples): p50 {:.2} ms  p99 {:.2} ms  max {:.2} ms",
            h.len(),
            h.value_at_quantile(0.5) as f64 / 1000.0,
            h.value_at_quantile(0.99) as f64 / 1000.0,
            h.max() as f64 / 1000.0
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);

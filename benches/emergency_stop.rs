//! Emergency stop at scale: how fast a tag stop silences a channel and empties its queue.
//!
//! 1. A data directory is filled with `N` (default 2 000 000) marketing messages of account
//!    `acme`, tagged like the campaign service tags them (`task = 42`, `group`, `subscriber`,
//!    `bulk`), through the store directly (10 000 per commit, two producers): the backlog a
//!    gateway holds after a campaign launch, without timing N HTTP batches first.
//! 2. `sluice serve` starts on it with the simulator in this process; its one channel is rate
//!    limited (`RATE` msg/s), so it is busy sending task 42 and nearly all of it stays queued.
//! 3. After `WARM` of sending, `POST /v1/messages/cancel {"tag":{"task":"42"}}`.
//!
//! Reported: the cancel call's answer time; (a) from the call until the simulator read its
//! last submit (polled every 2 ms: every submit in this run is task 42); (b) from the call
//! until the stop's sweep is done and the store's ready and in-flight counters of the channel
//! are 0 (nothing of the tag remains queued); and the sweep's counts.
//!
//! Run: `cargo bench -p sluice --bench emergency_stop -- [N]`
//! (`SLUICE_BENCH_STOP_STEP=N` sets the sweeper's messages per commit, default 8192;
//! `SLUICE_BENCH_ONLY_TASK_TAG=1` tags the messages with `task` alone, to see what the tag
//! index costs the fill for the three other tags).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice::config::Config;
use sluice::serve::{ServeOptions, start};
use sluice::store::{BackendKind, Lane, Message, Op, Payload, WriterConfig, open_store};
use sluice_loadtest::{ListenerConfig, SimConfig, Simulator};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const KEY: &str = "bench-key";
/// The channel's send rate while the backlog waits.
const RATE: u32 = 500;
/// How long the channel sends before the stop.
const WARM: Duration = Duration::from_secs(3);
/// Messages per insert commit.
const CHUNK: usize = 10_000;

fn config(dir: &std::path::Path, sim_port: u16) -> String {
    format!(
        r#"
timezone = "Asia/Shanghai"
[listeners]
http = "127.0.0.1:0"
[storage]
path = "{data}"
[simulator]
enabled = false
[[accounts]]
name = "acme"
api_keys = ["{hash}"]
rate = 1000000
burst = 1000000
default_sender = "10690000"
[[channels]]
name = "sim"
kind = "smpp"
host = "127.0.0.1"
port = {sim_port}
system_id = "sluice"
password = "sim"
binds = 1
window = 64
rate = {RATE}
burst = 50
[[routes]]
channel = "sim"
"#,
        data = dir.display(),
        hash = sluice::config::hash_api_key(KEY),
    )
}

fn fill(dir: &std::path::Path, n: usize, now: u64) {
    let only_task = std::env::var("SLUICE_BENCH_ONLY_TASK_TAG").is_ok_and(|v| v == "1");
    let store = open_store(BackendKind::Redb, dir, WriterConfig::default(), now).expect("store");
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    std::thread::scope(|s| {
        for _ in 0..2 {
            let store = store.clone();
            let next = Arc::clone(&next);
            s.spawn(move || {
                loop {
                    let from = next.fetch_add(CHUNK as u64, Ordering::Relaxed) as usize;
                    if from >= n {
                        return;
                    }
                    let ops = (from..(from + CHUNK).min(n))
                        .map(|i| {
                            let mut m = Message::new(
                                store.ids().next(now),
                                "acme",
                                format!("+86138{i:08}"),
                                Payload::Text {
                                    text: "Double points this weekend, reply TD to opt out".into(),
                                    encoding: Default::default(),
                                },
                                "sim",
                                now,
                                now,
                            );
                            m.lane = Lane::Marketing;
                            m.tags = BTreeMap::from([("task".to_owned(), "42".to_owned())]);
                            if !only_task {
                                m.tags.extend([
                                    ("group".to_owned(), "A".to_owned()),
                                    ("subscriber".to_owned(), i.to_string()),
                                    ("bulk".to_owned(), "7".to_owned()),
                                ]);
                            }
                            Op::Insert(Box::new(m))
                        })
                        .collect();
                    store.submit_blocking(ops).expect("insert");
                }
            });
        }
    });
    let depth = store.queue_depths().ready("sim", Lane::Marketing);
    println!(
        "filled {depth} queued messages in {:.1} s ({:.0}/s)",
        started.elapsed().as_secs_f64(),
        n as f64 / started.elapsed().as_secs_f64()
    );
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(2_000_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let now = u64::try_from(jiff::Timestamp::now().as_millisecond()).unwrap_or(0);
    fill(dir.path(), n, now);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(dir.path(), n));
}

async fn run(dir: &std::path::Path, n: usize) {
    let sim = Simulator::start(SimConfig {
        listeners: vec![ListenerConfig {
            name: "sim".into(),
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            ..ListenerConfig::default()
        }],
        ..SimConfig::default()
    })
    .await
    .expect("simulator");
    let sim = Arc::new(sim);
    let cfg = Config::parse(&config(dir, sim.addrs()[0].port()), "bench.toml").expect("config");
    let opened = Instant::now();
    let mut opts = ServeOptions::default();
    if let Some(step) = std::env::var("SLUICE_BENCH_STOP_STEP")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        opts.stop_sweep.step = step;
    }
    println!("sweep step {} messages per commit", opts.stop_sweep.step);
    let gw = start(cfg, opts).await.expect("gateway");
    println!("gateway up in {:.1} s", opened.elapsed().as_secs_f64());
    let base = format!("http://{}", gw.http_addr());
    let client = reqwest::Client::new();

    // The simulator's submit counter, watched for its last change.
    let last_change = Arc::new(std::sync::Mutex::new((0u64, Instant::now())));
    let watcher = {
        let last_change = Arc::clone(&last_change);
        let sim = Arc::clone(&sim);
        tokio::spawn(async move {
            loop {
                let s = sim.tally().submits_received;
                {
                    let mut l = last_change.lock().expect("lock");
                    if s != l.0 {
                        *l = (s, Instant::now());
                    }
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    tokio::time::sleep(WARM).await;
    let before = last_change.lock().expect("lock").0;

    let called = Instant::now();
    let r = client
        .post(format!("{base}/v1/messages/cancel"))
        .bearer_auth(KEY)
        .json(&json!({"tag": {"task": "42"}}))
        .send()
        .await
        .expect("cancel");
    let answered = called.elapsed();
    let status = r.status().as_u16();
    let body: Value = r.json().await.expect("json");
    let stop = body["stop"].as_u64().expect("stop id");
    let done = loop {
        let b: Value = client
            .get(format!("{base}/v1/messages/cancel/{stop}"))
            .bearer_auth(KEY)
            .send()
            .await
            .expect("progress")
            .json()
            .await
            .expect("json");
        let d = gw.store().queue_depths();
        if b["done"] == true && d.ready("sim", Lane::Marketing) == 0 && d.in_flight("sim") == 0 {
            break b;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let emptied = called.elapsed();
    // Anything still on its way to the simulator has arrived well within this.
    tokio::time::sleep(Duration::from_secs(2)).await;
    watcher.abort();
    let _ = watcher.await;
    let (total, last) = *last_change.lock().expect("lock");
    let silent = last.saturating_duration_since(called);
    println!("messages queued: {n}; channel rate {RATE}/s; stop after {WARM:?} of sending");
    println!(
        "cancel answered {status} in {:.1} ms",
        answered.as_secs_f64() * 1e3
    );
    println!(
        "(a) last submit seen by the simulator {:.3} s after the call ({} submits before the call, {} after)",
        silent.as_secs_f64(),
        before,
        total - before
    );
    println!(
        "(b) none of the tag queued {:.3} s after the call; stop: {done}",
        emptied.as_secs_f64()
    );
    gw.shutdown().await;
    if let Ok(sim) = Arc::try_unwrap(sim) {
        let _ = sim.shutdown().await;
    }
}

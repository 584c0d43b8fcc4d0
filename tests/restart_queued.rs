//! Restart with a large queue: a store holding N queued messages (its channel's center down,
//! so nothing leaves) is SIGKILLed under `sluice serve` and started again. The test prints
//! what a restart costs — time from exec to (a) `/healthz` answering, (b) HTTP ingress
//! accepting a message, (c) the first submit reaching the simulator once the center is up —
//! and the process's RSS (VmRSS, VmHWM) with N queued; then lets the queue drain partly,
//! SIGKILLs again, reopens the store in-process and checks that nothing was lost.
//!
//! Most of the queue is filled through the store API in large batches (the ingress path would
//! take minutes for millions); a small part goes through `serve`'s HTTP API so the real ingress
//! path writes into the same data directory. Every message carries a unique token in its text,
//! so the simulator's tally counts distinct messages.
//!
//! No timed assertions: the figures are printed (BENCHMARKS.md and RELIABILITY.md record the
//! 10 M run). Asserted: every message is still queued after the restart (the channel view's
//! backlog, read from the store's queue counters, equals N), the counters equal a full recount
//! after the second crash, and every message is either still queued or at the simulator.
//!
//! Default run: N = 200 000. The ignored form takes N from `SLUICE_RESTART_MESSAGES`
//! (default 10 000 000) and its data directory from `SLUICE_RESTART_DIR` (default a temporary
//! directory); run it in release:
//! `SLUICE_RESTART_DIR=/path/on/a/big/disk cargo nextest run --release -p sluice
//! --test integration restart_queued:: --run-ignored only`.

use crate::e2e_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e_support::{KEY, config_text, free_port, sim_listener, start_sim};
use serde_json::{Value, json};
use sluice::store::{BackendKind, Message, Op, OpResult, Payload, QueueDepths, open_store};

/// Messages per store commit while filling.
const FILL_BATCH: usize = 10_000;
/// Messages per HTTP batch.
const HTTP_BATCH: usize = 1_000;
/// Messages a crash may send twice: what one process can hold leased or in flight (the
/// bound `crash_kill9.rs` explains: lease batch, worker queue, binds' windows, outcome queue).
const CRASH_WINDOW: u64 = 256 + 128 + 128 + (2 * 128 + 64);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_with_50k_queued_loses_nothing() {
    run(50_000, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "10 M messages take several GB of disk and minutes: run in release, see the module doc"]
async fn restart_with_10m_queued_loses_nothing() {
    let n = std::env::var("SLUICE_RESTART_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let dir = std::env::var_os("SLUICE_RESTART_DIR").map(PathBuf::from);
    run(n, dir).await;
}

/// The text of message `i`: a unique token the simulator's tally tells messages apart by,
/// padded to a typical notification's length.
fn text(i: usize) -> String {
    format!("restart-token-{i} Your parcel is out for delivery today. Track it in the app.")
}

fn to(i: usize) -> String {
    format!("86{:011}", 13_000_000_000u64 + i as u64)
}

/// A running `sluice serve`, SIGKILLed when dropped.
struct Serve {
    child: Child,
    started: Instant,
}

impl Serve {
    /// Starts `sluice serve` with info logs (they carry timestamps) appended to `log`.
    fn spawn(config: &Path, log: &Path) -> Self {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let started = Instant::now();
        let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(["serve", "--drain-secs", "1", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn sluice serve");
        Self { child, started }
    }

    /// `(VmRSS, VmHWM)` in MiB, from `/proc/PID/status`.
    fn rss_mib(&self) -> (f64, f64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
                .map_or(f64::NAN, |kb| kb / 1024.0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// SIGKILL (std's `kill` on Unix): no drain, no flush.
    fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `probe` every 5 ms until it answers `Some`; panics after `limit` with the log.
async fn poll<T, F: Future<Output = Option<T>>>(
    what: &str,
    limit: Duration,
    log: &Path,
    mut probe: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {limit:?}\nlogs:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn healthy(client: &reqwest::Client, base: &str) -> Option<()> {
    let r = client.get(format!("{base}/healthz")).send().await.ok()?;
    r.status().is_success().then_some(())
}

/// POSTs messages `range` (idempotent by `client_ref`, so a retry never stores one twice);
/// `Some` once answered 202 with an id for each.
async fn post_range(
    client: &reqwest::Client,
    base: &str,
    range: std::ops::Range<usize>,
) -> Option<()> {
    let n = range.len();
    let messages: Vec<Value> = range
        .map(|i| json!({"to": to(i), "text": text(i), "client_ref": format!("m{i}")}))
        .collect();
    let r = client
        .post(format!("{base}/v1/messages"))
        .bearer_auth(KEY)
        .json(&json!({ "messages": messages }))
        .send()
        .await
        .ok()?;
    if r.status().as_u16() != 202 {
        return None;
    }
    let v: Value = r.json().await.ok()?;
    let ids = v["results"].as_array()?;
    assert_eq!(ids.len(), n, "one result per message: {v}");
    assert!(ids.iter().all(|r| r["id"].is_string()), "{v}");
    Some(())
}

/// The channel "sim"'s backlog summed over lanes, from the operator channel view (the
/// store's queue counters).
async fn backlog(client: &reqwest::Client, base: &str) -> u64 {
    let v: Value = client
        .get(format!("{base}/v1/channels"))
        .bearer_auth(KEY)
        .send()
        .await
        .expect("GET /v1/channels")
        .json()
        .await
        .expect("channels json");
    let ch = v["channels"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["name"] == "sim"))
        .unwrap_or_else(|| panic!("no channel sim in {v}"));
    ch["backlog"]
        .as_object()
        .expect("backlog")
        .values()
        .map(|n| n.as_u64().expect("count"))
        .sum()
}

/// The wall clock in ms, as `serve` reads it.
fn now_ms() -> u64 {
    sluice::clock::to_ms(jiff::Timestamp::now())
}

fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .map(|e| match e.metadata() {
                Ok(m) if m.is_dir() => dir_bytes(&e.path()),
                Ok(m) => m.len(),
                Err(_) => 0,
            })
            .sum()
    })
}

fn total(d: &QueueDepths) -> (u64, u64) {
    (d.ready.values().sum(), d.in_flight.values().sum())
}

/// Fills `data` with `n` queued messages of channel "sim" through the store API; returns
/// the seconds it took.
async fn fill(data: &Path, config: &sluice::config::Config, n: usize) -> f64 {
    let started = Instant::now();
    let store = open_store(BackendKind::Redb, data, config.storage.writer(), now_ms())
        .expect("open store to fill");
    let mut next = 0usize;
    let mut last_report = Instant::now();
    while next < n {
        let now = now_ms();
        let end = (next + FILL_BATCH).min(n);
        let ops: Vec<Op> = (next..end)
            .map(|i| {
                let payload = Payload::Text {
                    text: text(i),
                    encoding: Default::default(),
                };
                let mut m = Message::new(
                    store.ids().next(now),
                    "acme",
                    to(i),
                    payload,
                    "sim",
                    now,
                    now,
                );
                m.from = Some("10690000".into());
                Op::Insert(Box::new(m))
            })
            .collect();
        let results = store.submit(ops).await.expect("fill commit");
        assert!(
            results.iter().all(|r| matches!(r, OpResult::Inserted(_))),
            "fill batch at {next}: {:?}",
            results.iter().find(|r| !matches!(r, OpResult::Inserted(_)))
        );
        next = end;
        if last_report.elapsed() > Duration::from_secs(10) {
            println!(
                "filled {next} of {n} ({:.0} msg/s)",
                next as f64 / started.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
    }
    let depths = store.queue_depths();
    assert_eq!(total(&depths), (n as u64, 0), "{depths:?}");
    drop(store);
    started.elapsed().as_secs_f64()
}

async fn run(n: usize, dir: Option<PathBuf>) {
    let http_n = (n / 100).clamp(1, 10_000);
    let store_n = n - http_n;
    // Where the data directory goes (a kept directory is emptied first and removed after).
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = dir.unwrap_or_else(|| tmp.path().to_path_buf());
    let data = root.join("data");
    let _ = std::fs::remove_dir_all(&data);

    // The center is down until the test starts the simulator on this port.
    let sim_port = free_port();
    let http_port = free_port();
    let text_cfg = config_text(&data, sim_port, "http://127.0.0.1:9", "")
        .replace(
            "http = \"127.0.0.1:0\"",
            &format!("http = \"127.0.0.1:{http_port}\""),
        )
        .replace(
            "default_sender = \"10690000\"",
            "default_sender = \"10690000\"\noperator = true",
        );
    let config_path = tmp.path().join("sluice.toml");
    std::fs::write(&config_path, &text_cfg).expect("write config");
    let config = sluice::config::Config::parse(&text_cfg, "sluice.toml").expect("config");
    let log = tmp.path().join("serve.log");
    let base = format!("http://127.0.0.1:{http_port}");
    sluice::tls::install_provider();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let start_limit = Duration::from_secs(600);

    println!("restart test: {n} messages ({store_n} through the store API, {http_n} over HTTP)");
    let fill_secs = fill(&data, &config, store_n).await;
    println!(
        "fill: {store_n} in {fill_secs:.1} s ({:.0} msg/s)",
        store_n as f64 / fill_secs
    );

    // First run: a clean start on the filled store, then the HTTP part, then SIGKILL while it
    // holds everything (the center is down: nothing leaves).
    let serve = Serve::spawn(&config_path, &log);
    poll("first start /healthz", start_limit, &log, || {
        healthy(&client, &base)
    })
    .await;
    let clean_start = serve.started.elapsed();
    let (rss, hwm) = serve.rss_mib();
    println!(
        "clean start with {store_n} queued: /healthz after {:.3} s, VmRSS {rss:.0} MiB, VmHWM {hwm:.0} MiB",
        clean_start.as_secs_f64()
    );
    for from in (store_n..n).step_by(HTTP_BATCH) {
        let range = from..(from + HTTP_BATCH).min(n);
        poll("HTTP part accepted", start_limit, &log, || {
            post_range(&client, &base, range.clone())
        })
        .await;
    }
    serve.kill9();
    let disk = dir_bytes(&data);
    println!(
        "store after fill: {} MiB on disk ({} bytes per message)",
        disk / (1 << 20),
        disk / n as u64
    );

    // The restart under test.
    let serve = Serve::spawn(&config_path, &log);
    poll("restart /healthz", start_limit, &log, || {
        healthy(&client, &base)
    })
    .await;
    let a = serve.started.elapsed();
    // One more message through ingress: the restart accepts traffic.
    let probe = n;
    poll("restart ingress", start_limit, &log, || {
        post_range(&client, &base, probe..probe + 1)
    })
    .await;
    let b = serve.started.elapsed();
    let total_n = n as u64 + 1;
    let (rss, hwm) = serve.rss_mib();
    // Everything is still queued, and the counters read at open say so.
    assert_eq!(
        backlog(&client, &base).await,
        total_n,
        "backlog after restart"
    );

    // The center comes up.
    let mut listener = sim_listener();
    listener.addr = std::net::SocketAddr::from(([127, 0, 0, 1], sim_port));
    let sim = start_sim(listener, None).await;
    let center_up = serve.started.elapsed();
    poll("first submit at the center", start_limit, &log, || async {
        (sim.tally().submits_received > 0).then_some(())
    })
    .await;
    let c = serve.started.elapsed();
    println!(
        "restart with {total_n} queued: (a) /healthz {:.3} s, (b) ingress accepting {:.3} s, \
         (c) first submit at the center {:.3} s (center up at {:.3} s: {:.3} s after it, \
         reconnect backoff included); VmRSS {rss:.0} MiB, VmHWM {hwm:.0} MiB after start",
        a.as_secs_f64(),
        b.as_secs_f64(),
        c.as_secs_f64(),
        center_up.as_secs_f64(),
        (c - center_up).as_secs_f64()
    );

    // A partial drain, then a crash in the middle of sending.
    let drain = (total_n / 10).min(50_000);
    let drain_started = Instant::now();
    poll("partial drain", start_limit, &log, || async {
        (sim.tally().unique_messages >= drain).then_some(())
    })
    .await;
    let drained = sim.tally().unique_messages;
    let (rss_drain, hwm_drain) = serve.rss_mib();
    println!(
        "drain: {drained} messages at the center in {:.1} s; VmRSS {rss_drain:.0} MiB, VmHWM {hwm_drain:.0} MiB",
        drain_started.elapsed().as_secs_f64()
    );
    serve.kill9();
    let tally = sim.shutdown().await.expect("sim shutdown");

    // Nothing lost: every message is still queued or reached the center; a crash may send
    // again at most what the process held in flight.
    let opened = Instant::now();
    let store = open_store(BackendKind::Redb, &data, config.storage.writer(), now_ms())
        .expect("reopen store");
    let open_secs = opened.elapsed().as_secs_f64();
    let depths = store.queue_depths();
    let (ready, in_flight) = total(&depths);
    println!(
        "reopen after the second kill: {open_secs:.3} s in-process; {ready} ready, \
         {in_flight} in flight, center tally {tally:?}"
    );
    assert_eq!(in_flight, 0, "open returns every lease: {depths:?}");
    assert_eq!(
        store.recount_queue_depths().expect("recount"),
        depths.clone().without_zeros(),
        "queue counters equal a full recount"
    );
    assert!(
        ready + tally.unique_messages >= total_n,
        "lost: {ready} ready + {} at the center < {total_n}",
        tally.unique_messages
    );
    assert!(
        ready + tally.unique_messages <= total_n + CRASH_WINDOW,
        "{ready} ready + {} at the center: more than {CRASH_WINDOW} counted twice",
        tally.unique_messages
    );
    assert!(tally.duplicates <= CRASH_WINDOW, "{tally:?}");
    drop(store);
    let _ = std::fs::remove_dir_all(&data);
}

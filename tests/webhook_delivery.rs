//! The receipt outbox pump against local receivers on 127.0.0.1: batched delivery, a slow
//! receiver paced by its adaptive limit, and a receiver down while receipts pile up (the
//! pump's memory is checked by counting what it keeps, through its probe).
//!
//! Receipts are made the way the gateway makes them: messages inserted, then ended with
//! `Op::Finish`, whose commit appends each one's receipt to the account's outbox. The pump
//! is the real one with the real webhook client; every receiver verifies the signature over
//! the whole body.
//!
//! The one-hour form of the outage (a `sluice serve` process, its RSS measured) runs with
//! `SLUICE_SOAK=1 cargo nextest run -p sluice --test integration webhook_delivery:: --run-ignored only`.

use crate::e2e_support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use e2e_support::{
    KEY, Server, WEBHOOK_SECRET, config_text, free_port, init_tracing, sim_listener, start_sim,
    verified, wait_healthy, wait_until,
};
use serde_json::Value;
use sluice::receipt::outbox::{
    Backlog, Batching, OutboxAccount, OutboxPump, ReceiptOutbox, WebhookConfig,
};
use sluice::store::{
    AnyBackend, BackendKind, Message, MessageState, Op, Payload, Store, WriterConfig,
};
use sluice_campaign::signature::WebhookSecret;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore, broadcast, watch};

const ACCOUNT: &str = "acme";

/// What a receiver saw.
#[derive(Clone, Default)]
struct Seen {
    /// POSTs per receipt id.
    ids: Arc<Mutex<HashMap<String, u32>>>,
    /// Every POST that reached the handler.
    posts: Arc<AtomicUsize>,
    /// POSTs answered 2xx.
    taken: Arc<AtomicUsize>,
    /// POSTs refused because the receiver was down.
    refused: Arc<AtomicUsize>,
    /// Answered after the client's timeout (the client had given up: a timeout), in order
    /// of arrival.
    late: Arc<Mutex<Vec<bool>>>,
}

impl Seen {
    fn unique(&self) -> usize {
        self.ids.lock().unwrap().len()
    }
    fn duplicates(&self) -> u32 {
        self.ids
            .lock()
            .unwrap()
            .values()
            .map(|c| c.saturating_sub(1))
            .sum()
    }
}

#[derive(Clone)]
struct Hook {
    seen: Seen,
    up: Arc<AtomicBool>,
    /// Requests served at once (the rest queue), with the time each takes.
    slow: Option<(Arc<Semaphore>, Duration)>,
    /// The client's timeout, to count late answers.
    timeout: Duration,
}

async fn on_post(
    State(h): State<Hook>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    h.seen.posts.fetch_add(1, Ordering::SeqCst);
    if !h.up.load(Ordering::SeqCst) {
        h.seen.refused.fetch_add(1, Ordering::SeqCst);
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let Some(v) = verified(&headers, &body) else {
        return StatusCode::UNAUTHORIZED;
    };
    // Recorded when the request ends, answered or dropped by the server because the
    // client gave up and closed the connection.
    let mut timing = Timing {
        arrived: Instant::now(),
        timeout: h.timeout,
        answered: false,
        late: Arc::clone(&h.seen.late),
    };
    if let Some((gate, takes)) = &h.slow {
        let _permit = gate.acquire().await.expect("gate");
        tokio::time::sleep(*takes).await;
    }
    timing.answered = true;
    drop(timing);
    let items = match v {
        Value::Array(items) => items,
        one => vec![one],
    };
    let mut ids = h.seen.ids.lock().unwrap();
    for item in items {
        let Some(id) = item["id"].as_str() else {
            return StatusCode::BAD_REQUEST;
        };
        *ids.entry(id.to_owned()).or_default() += 1;
    }
    h.seen.taken.fetch_add(1, Ordering::SeqCst);
    StatusCode::OK
}

/// Replies (the soak's simulator sends none unless asked): taken, not counted.
async fn on_mo(State(h): State<Hook>) -> StatusCode {
    if h.up.load(Ordering::SeqCst) {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

/// Records, when dropped, whether a request ended after the client's timeout (or was
/// never answered).
struct Timing {
    arrived: Instant,
    timeout: Duration,
    answered: bool,
    late: Arc<Mutex<Vec<bool>>>,
}

impl Drop for Timing {
    fn drop(&mut self) {
        let late = !self.answered || self.arrived.elapsed() >= self.timeout;
        self.late.lock().unwrap().push(late);
    }
}

/// Serves `hook` on 127.0.0.1:0 (receipts at `/receipts`; `/mo` takes replies the same
/// way); returns the receipts URL.
async fn serve(hook: Hook) -> String {
    let app = axum::Router::new()
        .route("/receipts", axum::routing::post(on_post))
        .route("/mo", axum::routing::post(on_mo))
        .with_state(hook);
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    format!("http://{addr}/receipts")
}

fn hook(timeout: Duration) -> Hook {
    Hook {
        seen: Seen::default(),
        up: Arc::new(AtomicBool::new(true)),
        slow: None,
        timeout,
    }
}

fn open_store(dir: &std::path::Path) -> Store<AnyBackend> {
    Store::open(
        AnyBackend::open(BackendKind::Redb, dir).expect("open"),
        WriterConfig::default(),
        0,
    )
    .expect("store")
}

/// `n` messages of the account ended as delivered: `n` receipts in its outbox.
async fn receipts(store: &Store<AnyBackend>, n: usize) {
    let now = 1_700_000_000_000u64;
    let mut left = n;
    while left > 0 {
        let k = left.min(1000);
        left -= k;
        let msgs: Vec<Message> = (0..k)
            .map(|_| {
                let id = store.ids().next(now);
                let payload = Payload::Text {
                    text: "receipt test".into(),
                    encoding: Default::default(),
                };
                Message::new(id, ACCOUNT, "+8613800138000", payload, "sim", now, now)
            })
            .collect();
        let ids: Vec<_> = msgs.iter().map(|m| m.id).collect();
        store
            .submit(msgs.into_iter().map(|m| Op::Insert(Box::new(m))).collect())
            .await
            .expect("insert");
        store
            .submit(
                ids.into_iter()
                    .map(|id| Op::Finish {
                        id,
                        state: MessageState::Delivered,
                        stat: "DELIVRD".into(),
                        err: "000".into(),
                        now_ms: now + 1,
                    })
                    .collect(),
            )
            .await
            .expect("finish");
    }
}

fn cfg(timeout: Duration) -> WebhookConfig {
    WebhookConfig {
        timeout,
        backoff_base: Duration::from_millis(50),
        backoff_max: Duration::from_millis(400),
        idle_poll: Duration::from_millis(50),
        stats_every: Duration::from_millis(100),
        ..WebhookConfig::default()
    }
}

/// Starts the receipt pump for the one account; returns it stopped by the sender.
fn pump(
    store: &Store<AnyBackend>,
    url: &str,
    batching: Batching,
    cfg: WebhookConfig,
) -> (
    Arc<sluice::receipt::outbox::PumpProbe>,
    watch::Sender<bool>,
    tokio::task::JoinHandle<()>,
) {
    init_tracing();
    sluice::tls::install_provider();
    let client = sluice::receipt::client::webhook_client(cfg.timeout, &[]).expect("client");
    let (subscribers, _) = broadcast::channel(16);
    let pump = OutboxPump::<ReceiptOutbox>::new(
        store.clone(),
        vec![OutboxAccount {
            name: ACCOUNT.into(),
            webhook_url: Some(url.into()),
            webhook_secret: Some(WebhookSecret::new(WEBHOOK_SECRET).expect("secret")),
            smpp: false,
            batching,
        }],
        cfg,
        client,
        subscribers,
        Arc::new(Notify::new()),
        Arc::new(Backlog::default()),
    );
    let probe = pump.probe();
    let (stop, rx) = watch::channel(false);
    let task = tokio::spawn(pump.run(rx));
    (probe, stop, task)
}

fn outbox_len(store: &Store<AnyBackend>) -> u64 {
    store.outbox_depth(ACCOUNT).expect("depth").0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_batched_receipts_arrive_exactly_once_in_few_posts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_store(dir.path());
    receipts(&store, 10_000).await;
    assert_eq!(outbox_len(&store), 10_000);
    let h = hook(Duration::from_secs(10));
    let seen = h.seen.clone();
    let url = serve(h).await;
    let batching = Batching {
        max: 500,
        linger: Duration::from_millis(20),
    };
    let (probe, stop, task) = pump(&store, &url, batching, cfg(Duration::from_secs(10)));
    assert!(
        wait_until(Duration::from_secs(60), || seen.unique() == 10_000
            && outbox_len(&store) == 0)
        .await,
        "unique {} posts {} left {}",
        seen.unique(),
        seen.posts.load(Ordering::SeqCst),
        outbox_len(&store)
    );
    stop.send(true).expect("stop");
    task.await.expect("pump");
    assert_eq!(seen.duplicates(), 0, "exactly once");
    let posts = seen.posts.load(Ordering::SeqCst);
    assert!(
        posts <= 25,
        "{posts} POSTs for 10 000 receipts in batches of 500"
    );
    // A full batch fits the in-flight limit (raised from `concurrency` to the batch).
    assert_eq!(probe.stats().in_flight_limit, 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_is_not_full_waits_for_its_linger_then_goes_as_it_is() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_store(dir.path());
    receipts(&store, 120).await;
    let h = hook(Duration::from_secs(10));
    let seen = h.seen.clone();
    let url = serve(h).await;
    let batching = Batching {
        max: 50,
        linger: Duration::from_millis(300),
    };
    let (_probe, stop, task) = pump(&store, &url, batching, cfg(Duration::from_secs(10)));
    assert!(wait_until(Duration::from_secs(30), || seen.unique() == 120).await);
    // 50 + 50 at once, then the 20 left after their linger: one POST each, not 20.
    assert_eq!(seen.posts.load(Ordering::SeqCst), 3);
    // New receipts after the linger started join the next batch.
    receipts(&store, 10).await;
    assert!(wait_until(Duration::from_secs(30), || seen.unique() == 130).await);
    assert_eq!(seen.posts.load(Ordering::SeqCst), 4);
    assert_eq!(seen.duplicates(), 0);
    stop.send(true).expect("stop");
    task.await.expect("pump");
}

/// A batch lingering for more is not read from the store again by each round that passes
/// while it waits (the pump wakes every `idle_poll`, 50 ms here): each entry is read once,
/// and entries added meanwhile join it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lingering_batch_is_read_from_the_store_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_store(dir.path());
    receipts(&store, 20).await;
    let h = hook(Duration::from_secs(10));
    let seen = h.seen.clone();
    let url = serve(h).await;
    let batching = Batching {
        max: 50,
        linger: Duration::from_millis(1_500),
    };
    let (probe, stop, task) = pump(&store, &url, batching, cfg(Duration::from_secs(10)));
    assert!(wait_until(Duration::from_secs(5), || probe.stats().entries_read >= 20).await);
    // About ten rounds at 50 ms, all while the batch waits.
    tokio::time::sleep(Duration::from_millis(500)).await;
    receipts(&store, 10).await;
    assert!(wait_until(Duration::from_secs(30), || seen.unique() == 30).await);
    assert_eq!(seen.posts.load(Ordering::SeqCst), 1, "the 30 went together");
    assert_eq!(probe.stats().entries_read, 30, "each entry read once");
    assert_eq!(seen.duplicates(), 0);
    stop.send(true).expect("stop");
    task.await.expect("pump");
}

/// A receiver that serves 4 requests at a time, 500 ms each, behind a client timeout of
/// 1.6 s: the pump starts at its full concurrency (32), so the first requests queue past
/// the timeout; the receiver's limit then adapts and later requests must not time out —
/// timeouts stay bounded by the first windows, not by the number of receipts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_receiver_gets_everything_and_stops_timing_out_once_its_limit_adapts() {
    const N: usize = 96;
    let timeout = Duration::from_millis(1600);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_store(dir.path());
    receipts(&store, N).await;
    let mut h = hook(timeout);
    h.slow = Some((Arc::new(Semaphore::new(4)), Duration::from_millis(500)));
    let seen = h.seen.clone();
    let url = serve(h).await;
    let (probe, stop, task) = pump(&store, &url, Batching::default(), cfg(timeout));
    assert!(
        wait_until(Duration::from_secs(120), || seen.unique() == N
            && outbox_len(&store) == 0)
        .await,
        "unique {} of {N}",
        seen.unique()
    );
    stop.send(true).expect("stop");
    task.await.expect("pump");
    let late = seen.late.lock().unwrap().clone();
    let timeouts = late.iter().filter(|l| **l).count();
    let (first, second) = late.split_at(late.len() / 2);
    let limits = probe.stats().receivers.limits;
    eprintln!(
        "slow receiver: {} POSTs, {timeouts} timed out ({} in the first half) at {:?}, limits {limits:?}",
        late.len(),
        first.iter().filter(|l| **l).count(),
        late.iter()
            .enumerate()
            .filter(|(_, l)| **l)
            .map(|(i, _)| i)
            .collect::<Vec<_>>()
    );
    assert!(
        timeouts <= 32,
        "{timeouts} timeouts: more than the first window"
    );
    assert!(
        second.iter().all(|l| !l),
        "timeouts after the limit adapted: {late:?}"
    );
    assert!(
        limits.iter().all(|(_, l, _)| *l <= 8),
        "limit adapted to the receiver: {limits:?}"
    );
}

/// The bounded form of "a receiver down for an hour": 20 000 receipts pile up while it
/// answers 503; the pump keeps nothing per entry (its maps are counted through its probe),
/// tries the receiver at the pace of its backoff (not once per entry), measures the depth;
/// then the receiver comes up and every receipt arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_while_receipts_pile_up_keeps_the_pump_bounded_then_gets_all_once() {
    const N: usize = 20_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_store(dir.path());
    let h = hook(Duration::from_secs(10));
    h.up.store(false, Ordering::SeqCst);
    let seen = h.seen.clone();
    let up = Arc::clone(&h.up);
    let url = serve(h).await;
    let batching = Batching {
        max: 200,
        linger: Duration::ZERO,
    };
    let (probe, stop, task) = pump(&store, &url, batching, cfg(Duration::from_secs(10)));
    // Receipts arrive while the receiver is down.
    for _ in 0..4 {
        receipts(&store, N / 4).await;
    }
    assert!(
        wait_until(Duration::from_secs(60), || {
            probe.stats().depth.get(ACCOUNT) == Some(&(N as u64))
                && seen.refused.load(Ordering::SeqCst) >= 5
        })
        .await,
        "depth measured {:?}, refused {}",
        probe.stats().depth,
        seen.refused.load(Ordering::SeqCst)
    );
    // Let the pump scan the whole backlog several more times while the receiver is down.
    let refused_before = seen.refused.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stats = probe.stats();
    let refused = seen.refused.load(Ordering::SeqCst);
    eprintln!("down: {stats:?}, refused POSTs {refused}");
    assert_eq!(stats.accounts, 1);
    assert_eq!(stats.entry_retries, 0, "nothing kept per entry");
    assert_eq!(
        stats.receivers.receivers, 1,
        "one state for the one receiver"
    );
    // Paced by the receiver's backoff (≤ 400 ms here, 2 s of waiting): a handful of tries,
    // not one per entry or per batch of the backlog (100 batches).
    assert!(
        refused - refused_before <= 20,
        "{} tries in 2 s while down",
        refused - refused_before
    );
    assert_eq!(seen.unique(), 0);

    up.store(true, Ordering::SeqCst);
    assert!(
        wait_until(Duration::from_secs(120), || seen.unique() == N
            && outbox_len(&store) == 0)
        .await,
        "unique {} of {N}",
        seen.unique()
    );
    assert_eq!(seen.duplicates(), 0, "every receipt once");
    assert!(
        wait_until(Duration::from_secs(10), || probe.stats().depth.get(ACCOUNT)
            == Some(&0))
        .await
    );
    stop.send(true).expect("stop");
    task.await.expect("pump");
}

/// Resident set size of process `pid` now (VmRSS), KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// The long form: a `sluice serve` process sends RATE messages a second for
/// `SLUICE_SOAK_SECS` (3600 by default) while its webhook receiver answers 503; its RSS is
/// sampled every minute and must stay flat (the receipts wait in the store, not in memory),
/// then the receiver comes up and every receipt arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "one hour; run with SLUICE_SOAK=1 (and SLUICE_SOAK_SECS to shorten it)"]
async fn soak_a_receiver_down_for_an_hour_leaves_serve_rss_flat() {
    if std::env::var("SLUICE_SOAK").as_deref() != Ok("1") {
        eprintln!("skipped: set SLUICE_SOAK=1 to run the one-hour receiver outage");
        return;
    }
    const RATE: usize = 50;
    init_tracing();
    sluice::tls::install_provider();
    let secs: u64 = std::env::var("SLUICE_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3600);
    let sim = start_sim(sim_listener(), None).await;
    let h = hook(Duration::from_secs(10));
    h.up.store(false, Ordering::SeqCst);
    let seen = h.seen.clone();
    let up = Arc::clone(&h.up);
    let receipts_url = serve(h).await;
    let base_hook = receipts_url.trim_end_matches("/receipts").to_owned();
    let dir = tempfile::tempdir().expect("tempdir");
    let http_port = free_port();
    let text = config_text(
        &dir.path().join("data"),
        sim.addrs()[0].port(),
        &base_hook,
        "",
    )
    .replace(
        "http = \"127.0.0.1:0\"",
        &format!("http = \"127.0.0.1:{http_port}\""),
    )
    .replace(
        "webhook_secret = ",
        "webhook_batch = 100\nwebhook_linger_ms = 50\nwebhook_secret = ",
    );
    let config = dir.path().join("sluice.toml");
    std::fs::write(&config, text).expect("config");
    let server = Server::spawn(&config, &dir.path().join("serve.log"));
    let base = format!("http://127.0.0.1:{http_port}");
    let client = reqwest::Client::new();
    wait_healthy(&client, &base).await;

    let started = Instant::now();
    let mut sent = 0usize;
    let mut samples: Vec<(u64, u64)> = Vec::new();
    let mut next_sample = started;
    while started.elapsed() < Duration::from_secs(secs) {
        let tick = Instant::now();
        let messages: Vec<Value> = (0..RATE)
            .map(|i| serde_json::json!({"to": format!("138{:08}", (sent + i) % 100_000_000), "text": "soak"}))
            .collect();
        let r = client
            .post(format!("{base}/v1/messages"))
            .bearer_auth(KEY)
            .json(&serde_json::json!({ "messages": messages }))
            .send()
            .await
            .expect("post");
        assert_eq!(r.status().as_u16(), 202);
        sent += RATE;
        if tick >= next_sample {
            let s = (started.elapsed().as_secs(), rss_kib(server.pid()));
            eprintln!("soak: t={}s sent={sent} rss={} KiB", s.0, s.1);
            samples.push(s);
            next_sample += Duration::from_secs(60);
        }
        tokio::time::sleep(Duration::from_secs(1).saturating_sub(tick.elapsed())).await;
    }
    let end_rss = rss_kib(server.pid());
    samples.push((started.elapsed().as_secs(), end_rss));
    assert_eq!(seen.unique(), 0, "the receiver was down");
    // Flat: after the first samples (start-up), the RSS grows by less than the store's page
    // cache (64 MiB, filling as the data grows) plus 32 MiB however many receipts wait;
    // the pump itself keeps nothing per waiting receipt (see the bounded test above).
    let warm = samples[samples.len().min(3) - 1].1;
    eprintln!(
        "soak: {sent} receipts waited; RSS warm {warm} KiB, end {end_rss} KiB; samples {samples:?}"
    );
    assert!(
        end_rss <= warm + 96 * 1024,
        "RSS grew from {warm} to {end_rss} KiB"
    );
    up.store(true, Ordering::SeqCst);
    assert!(
        wait_until(Duration::from_secs(600), || seen.unique() == sent).await,
        "{} of {sent} receipts after the receiver came up",
        seen.unique()
    );
    assert_eq!(seen.duplicates(), 0);
    let _ = server.terminate();
    sim.shutdown().await.expect("sim");
}

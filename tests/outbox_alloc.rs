//! The receipt pump's heap does not grow per retry round while its receiver is down (issue 18,
//! "a webhook receiver down for an hour … no memory growth"): the resident set of this test
//! process (with the allocator `sluice` ships, mimalloc) after the pump has been refused 50
//! times and then every 1 000 refusals up to 4 000, each round rescanning the backlog. (A
//! counting allocator would be exact but needs `unsafe`, which the workspace forbids.) Anything
//! kept per round (a list extended, a per-entry map, a span's fields, a connection per
//! attempt) shows up as growth in every interval of rounds; what a scan holds while it runs
//! is transient and filtered out by taking the lowest of several readings. The allocator's
//! own movement (±5 MiB) makes the bound coarse: 4 KiB kept per round or more.

mod e2e_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use e2e_support::{WEBHOOK_SECRET, wait_until};
use sluice::receipt::outbox::{
    Backlog, Batching, OutboxAccount, OutboxPump, ReceiptOutbox, WebhookConfig,
};
use sluice::store::{
    AnyBackend, BackendKind, Message, MessageState, Op, Payload, Store, WriterConfig,
};
use sluice_campaign::signature::WebhookSecret;
use tokio::sync::{Notify, broadcast, watch};

/// As in the `sluice` binary, so the test measures the allocator that ships.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const ACCOUNT: &str = "acme";
const BACKLOG: usize = 2_000;
/// Refused rounds measured after the warm-up.
const ROUNDS: usize = 4_000;

/// This process's resident set (VmRSS), bytes: the lowest of 50 readings 2 ms apart (a
/// scan in progress holds its entries).
async fn settled_rss() -> i64 {
    let mut low = i64::MAX;
    for _ in 0..50 {
        let kib: i64 = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|v| v.parse().ok())
            })
            .expect("VmRSS (Linux)");
        low = low.min(kib * 1024);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    low
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_rounds_against_a_down_receiver_keep_the_heap_flat() {
    sluice::tls::install_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(
        AnyBackend::open(BackendKind::Redb, dir.path()).expect("open"),
        WriterConfig::default(),
        0,
    )
    .expect("store");
    // The backlog: BACKLOG delivered messages, so BACKLOG receipts wait in the outbox.
    let now = 1_700_000_000_000u64;
    for _ in 0..BACKLOG / 500 {
        let msgs: Vec<Message> = (0..500)
            .map(|_| {
                let payload = Payload::Text {
                    text: "alloc test".into(),
                    encoding: Default::default(),
                };
                let id = store.ids().next(now);
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
    // A receiver that is down: every POST answered 503.
    let refused = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&refused);
    let app = axum::Router::new().route(
        "/receipts",
        axum::routing::post(move || {
            let counted = Arc::clone(&counted);
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                StatusCode::SERVICE_UNAVAILABLE
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/receipts", l.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    // Short backoffs so many retry rounds pass; each round rescans the backlog.
    let cfg = WebhookConfig {
        timeout: Duration::from_secs(5),
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(2),
        idle_poll: Duration::from_millis(1),
        stats_every: Duration::from_millis(20),
        scan: 256,
        ..WebhookConfig::default()
    };
    let client = sluice::receipt::client::webhook_client(cfg.timeout, &[]).expect("client");
    let (subscribers, _) = broadcast::channel(16);
    let pump = OutboxPump::<ReceiptOutbox>::new(
        store.clone(),
        vec![OutboxAccount {
            name: ACCOUNT.into(),
            webhook_url: Some(url.into()),
            webhook_secret: Some(WebhookSecret::new(WEBHOOK_SECRET).expect("secret")),
            smpp: false,
            batching: Batching {
                max: 100,
                linger: Duration::ZERO,
            },
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

    let refusals = |n: usize| {
        let refused = Arc::clone(&refused);
        move || refused.load(Ordering::SeqCst) >= n
    };
    assert!(
        wait_until(Duration::from_secs(60), refusals(50)).await,
        "the pump never reached the receiver"
    );
    // Readings every 1 000 rounds; the first is the baseline, the lowest later one is
    // compared with it (RSS moves by a few hundred KiB either way as the allocator keeps or
    // returns pages, so one reading alone says little).
    let warm = settled_rss().await;
    let at_warm = refused.load(Ordering::SeqCst);
    let mut readings = Vec::new();
    for k in 1..=ROUNDS / 1_000 {
        assert!(
            wait_until(Duration::from_secs(300), refusals(at_warm + k * 1_000)).await,
            "{} refusals",
            refused.load(Ordering::SeqCst)
        );
        readings.push(settled_rss().await);
    }
    let rounds = refused.load(Ordering::SeqCst) - at_warm;
    let stats = probe.stats();
    println!(
        "RSS after warm-up {warm} B, then every 1 000 refused rounds: {readings:?}; \
         pump {stats:?}"
    );
    assert_eq!(stats.entry_retries, 0);
    assert_eq!(stats.receivers.receivers, 1);
    // The allocator moves this process's RSS by up to ±5 MiB between readings with nothing
    // kept (mapped or returned segments; seen: 44 → 39.6 → 37.9 → 44.3 → 47.1 MiB and
    // 42 → 49 → 44.3 → 47 → 42.2 MiB in two runs of the same code), so the bound is coarse:
    // over 4 000 rounds, 16 MiB catches anything kept per round from 4 KiB up (two
    // receipts' worth); the pump's own counts above are the exact check.
    let last = readings.iter().rev().take(3).copied().min().unwrap_or(warm);
    assert!(
        last - warm < 16 * 1024 * 1024,
        "RSS grew {} B over {rounds} retry rounds: {warm} → {readings:?}",
        last - warm
    );
    stop.send(true).expect("stop");
    task.await.expect("pump");
}

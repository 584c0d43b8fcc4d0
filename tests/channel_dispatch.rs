//! Dispatch over a real store (redb in a temp dir): lane order and shares, outcome writes,
//! window gating on a manual clock, and the whole path store → dispatch → worker → simulator
//! → receipts back into the store (including receipts that beat their submit response).

use crate::channel_common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use channel_common::{WAIT, config};
use jiff::{SignedDuration, Timestamp};
use sluice::channel::smpp;
use sluice::channel::{ChannelEvent, normalise_center_id};
use sluice::channel::{OutboundMessage, Outcome, Settled};
use sluice::clock::{Clock, ManualClock, SystemClock};
use sluice::dispatch::{DispatchConfig, DispatchLinks, Dispatcher};
use sluice::route::ChannelHealth;
use sluice::schedule::{WindowRules, parse_windows};
use sluice::store::{
    Lane, Message, MessageId, MessageState, Op, PartState, Payload, RedbBackend, Store,
    WriterConfig,
};
use sluice_loadtest::config::DlrConfig;
use sluice_loadtest::{ListenerConfig, SimConfig, Simulator};
use sluice_protocols::smpp::IdFormat;
use tokio::sync::{Notify, mpsc, watch};

fn open_store(dir: &tempfile::TempDir, now_ms: u64) -> Store<RedbBackend> {
    Store::open(
        RedbBackend::open(dir.path()).expect("redb opens"),
        WriterConfig::default(),
        now_ms,
    )
    .expect("store opens")
}

fn message(store: &Store<RedbBackend>, lane: Lane, text: &str, now_ms: u64) -> Message {
    let id = store.ids().next(now_ms);
    let mut m = Message::new(
        id,
        "acme",
        "+8613800138000",
        Payload::Text {
            text: text.to_owned(),
            encoding: Default::default(),
        },
        "sim",
        now_ms,
        now_ms,
    );
    m.lane = lane;
    m
}

struct Fake {
    to_worker: mpsc::Receiver<OutboundMessage>,
    outcomes: mpsc::Sender<Settled>,
    binds_up: watch::Sender<usize>,
    shutdown: watch::Sender<bool>,
    wake: Arc<Notify>,
    health: Arc<Mutex<ChannelHealth>>,
}

/// A dispatcher whose "worker" is the test itself.
fn dispatch_to_fake<C: Clock + Clone>(
    store: &Store<RedbBackend>,
    clock: C,
    config: DispatchConfig,
    queue: usize,
    binds: usize,
) -> (
    Fake,
    tokio::task::JoinHandle<sluice::dispatch::DispatchStats>,
) {
    let (tx, to_worker) = mpsc::channel(queue);
    let (outcomes_tx, outcomes_rx) = mpsc::channel(64);
    let (binds_up, binds_up_rx) = watch::channel(binds);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let wake = Arc::new(Notify::new());
    let health = Arc::new(Mutex::new(ChannelHealth::default()));
    let links = DispatchLinks {
        to_worker: tx,
        outcomes: outcomes_rx,
        binds_up: binds_up_rx,
        health: Arc::clone(&health),
        wake: Arc::clone(&wake),
        shutdown: shutdown_rx,
        paused: watch::channel(false).1,
    };
    let dispatcher = Dispatcher::new(config, store.clone(), clock);
    let task = tokio::spawn(async move { dispatcher.run(links).await.expect("dispatch runs") });
    (
        Fake {
            to_worker,
            outcomes: outcomes_tx,
            binds_up,
            shutdown,
            wake,
            health,
        },
        task,
    )
}

async fn recv(rx: &mut mpsc::Receiver<OutboundMessage>) -> OutboundMessage {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("dispatch delivers in time")
        .expect("dispatch alive")
}

#[tokio::test]
async fn lanes_are_served_by_weight_and_outcomes_reach_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let now_ms = SystemClock.now_ms();
    let store = open_store(&dir, now_ms);
    let mut lane_of = HashMap::new();
    let mut batch = Vec::new();
    // Marketing inserted first: arrival order must not matter, lanes do.
    for lane in [Lane::Marketing, Lane::Notification, Lane::Otp] {
        for i in 0..40 {
            let m = message(&store, lane, &format!("{lane:?} {i}"), now_ms);
            lane_of.insert(m.id.0, lane);
            batch.push(m);
        }
    }
    store.insert_batch(batch).await.unwrap();
    let mut cfg = DispatchConfig::new("sim");
    cfg.batch = 8;
    let (mut fake, task) = dispatch_to_fake(&store, SystemClock, cfg, 1, 1);

    let mut order = Vec::new();
    let mut first = Vec::new();
    for _ in 0..24 {
        let m = recv(&mut fake.to_worker).await;
        order.push(lane_of[&m.id]);
        first.push(m);
    }
    let count = |lane| order.iter().filter(|l| **l == lane).count();
    assert_eq!(&order[..8], &[Lane::Otp; 8], "otp first");
    assert_eq!(
        (
            count(Lane::Otp),
            count(Lane::Notification),
            count(Lane::Marketing)
        ),
        (16, 6, 2),
        "8:3:1 over two rounds: {order:?}"
    );

    // Outcomes go back to the store.
    let sent = first[0].id;
    let failed = first[1].id;
    let retried = first[2].id;
    fake.outcomes
        .send(Settled::new(Outcome::Sent {
            id: sent,
            center_ids: vec!["1A2B".into()],
        }))
        .await
        .unwrap();
    fake.outcomes
        .send(Settled::new(Outcome::Failed {
            id: failed,
            status: 0x0B,
            stat: "REJECTD",
            reason: "ESME_RINVDSTADR".into(),
        }))
        .await
        .unwrap();
    fake.outcomes
        .send(Settled::new(Outcome::Retry {
            id: retried,
            attempts: 1,
            after: Duration::from_secs(3600),
            reason: "test".into(),
        }))
        .await
        .unwrap();
    // Drain the rest so the dispatcher keeps going, then shut down.
    let mut rest = 0;
    while rest < 120 - 24 - 1 {
        recv(&mut fake.to_worker).await;
        rest += 1;
    }
    fake.shutdown.send(true).unwrap();
    drop(fake.outcomes);
    let stats = tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
    assert_eq!(stats.outcomes, 3);

    let m = store.get(MessageId(sent)).unwrap().unwrap();
    assert_eq!(m.state, MessageState::Sent);
    let key = normalise_center_id("1A2B", IdFormat::Auto);
    assert_eq!(
        store.by_center("sim", &key).unwrap(),
        Some((MessageId(sent), 1))
    );
    assert_eq!(
        store.get(MessageId(failed)).unwrap().unwrap().state,
        MessageState::Rejected
    );
    let r = store.get(MessageId(retried)).unwrap().unwrap();
    assert_eq!(r.attempts, 1);
    assert!(r.due_ms >= now_ms + 3_600_000);
}

#[tokio::test]
async fn nothing_is_leased_outside_the_channel_window() {
    let dir = tempfile::tempdir().unwrap();
    // 2026-11-26 03:00 in Asia/Shanghai (UTC+8) = 2026-11-25T19:00Z.
    let start: Timestamp = "2026-11-25T19:00:00Z".parse().unwrap();
    let clock = ManualClock::new(start);
    let store = open_store(&dir, clock.now_ms());
    let m = message(&store, Lane::Otp, "wake up", clock.now_ms());
    let id = m.id.0;
    store.insert_batch(vec![m]).await.unwrap();
    let mut cfg = DispatchConfig::new("sim");
    cfg.windows = WindowRules {
        allowed: vec![parse_windows(&["08:00-21:00"]).unwrap()],
        quiet: Vec::new(),
    };
    let (mut fake, task) = dispatch_to_fake(&store, clock.clone(), cfg, 4, 1);
    fake.wake.notify_one();
    // Four hours pass (03:00 → 07:00 local): still before 08:00; the message stays queued.
    // (Five hours would already reach 08:00 and the assertion would race the dispatcher.)
    for _ in 0..4 {
        clock.advance(SignedDuration::from_hours(1));
        tokio::task::yield_now().await;
        assert!(
            fake.to_worker.try_recv().is_err(),
            "leased at {}",
            clock.now()
        );
    }
    assert_eq!(
        store.get(MessageId(id)).unwrap().unwrap().state,
        MessageState::Queued
    );
    // 08:00 local: the dispatcher wakes by itself (no notify) and hands it on.
    clock.advance(SignedDuration::from_hours(1));
    let got = recv(&mut fake.to_worker).await;
    assert_eq!(got.id, id);
    fake.shutdown.send(true).unwrap();
    drop(fake.outcomes);
    tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
}

#[tokio::test]
async fn channel_without_binds_is_marked_down_and_not_leased() {
    let dir = tempfile::tempdir().unwrap();
    let now_ms = SystemClock.now_ms();
    let store = open_store(&dir, now_ms);
    let (mut fake, task) = dispatch_to_fake(&store, SystemClock, DispatchConfig::new("sim"), 4, 0);
    let down = |h: &Mutex<ChannelHealth>| h.lock().unwrap().down_for("sim", Timestamp::now());
    tokio::time::timeout(WAIT, async {
        while down(&fake.health).is_none() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("marked down for route failover");
    let m = message(&store, Lane::Notification, "hi", now_ms);
    let id = m.id.0;
    store.insert_batch(vec![m]).await.unwrap();
    fake.wake.notify_one();
    for _ in 0..100 {
        tokio::task::yield_now().await;
    }
    assert!(
        fake.to_worker.try_recv().is_err(),
        "nothing leased without a bind"
    );
    assert_eq!(
        store.get(MessageId(id)).unwrap().unwrap().state,
        MessageState::Queued
    );
    fake.binds_up.send(1).unwrap();
    assert_eq!(recv(&mut fake.to_worker).await.id, id);
    assert!(down(&fake.health).is_none(), "marked up again");
    fake.shutdown.send(true).unwrap();
    drop(fake.outcomes);
    tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_to_simulator_and_receipts_back() {
    let sim = Simulator::start(SimConfig {
        seed: Some(3),
        listeners: vec![ListenerConfig {
            dlr: DlrConfig {
                early_share: 0.5,
                ..DlrConfig::default()
            },
            ..ListenerConfig::default()
        }],
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let addr = sim.addrs()[0].to_string();
    let dir = tempfile::tempdir().unwrap();
    let now_ms = SystemClock.now_ms();
    let store = open_store(&dir, now_ms);
    let mut batch = Vec::new();
    for i in 0..30 {
        let lane = Lane::ALL[i % 3];
        let text = if i == 7 {
            format!("long #{i} {}", "x".repeat(300))
        } else {
            format!("short #{i}")
        };
        batch.push(message(&store, lane, &text, now_ms));
    }
    let ids: Vec<MessageId> = batch.iter().map(|m| m.id).collect();
    store.insert_batch(batch).await.unwrap();

    let wcfg = config(addr, 500);
    let (tx, input) = mpsc::channel(wcfg.capacity());
    let (outcomes_tx, outcomes) = mpsc::channel(64);
    let (events_tx, mut events) = mpsc::channel(1024);
    let handle = smpp::spawn(wcfg, input, outcomes_tx, events_tx);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let links = DispatchLinks {
        to_worker: tx,
        outcomes,
        binds_up: handle.binds_up.clone(),
        health: Arc::new(Mutex::new(ChannelHealth::default())),
        wake: Arc::new(Notify::new()),
        shutdown: shutdown_rx,
        paused: watch::channel(false).1,
    };
    // The simulator writes hex ids. `Auto` would read hex "10" as decimal ten and collide
    // with hex "A": the id format must be configured per channel.
    let mut dcfg = DispatchConfig::new("sim");
    dcfg.id_format = IdFormat::Hex;
    let dispatcher = Dispatcher::new(dcfg, store.clone(), SystemClock);
    let dispatch = tokio::spawn(dispatcher.run(links));

    // A minimal receipt layer: feed receipts into the store under the same normalisation.
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut receipts = 0;
    loop {
        let all_delivered = ids.iter().all(|id| {
            store
                .get(*id)
                .unwrap()
                .is_some_and(|m| m.state == MessageState::Delivered)
        });
        if all_delivered {
            break;
        }
        // The store is written by dispatch too (Submitted after the response), so look
        // again now and then even when no event comes.
        let event = tokio::select! {
            e = events.recv() => e.expect("worker alive"),
            () = tokio::time::sleep(Duration::from_millis(20)) => continue,
            () = tokio::time::sleep_until(deadline) => {
                let states: Vec<_> = ids.iter().map(|id| {
                    let m = store.get(*id).unwrap().unwrap();
                    (m.state, m.parts.iter().map(|p| (p.center_id.clone(), p.state)).collect::<Vec<_>>())
                }).filter(|(s, _)| *s != MessageState::Delivered).collect();
                panic!("not all delivered; {receipts} receipts; {states:?}")
            }
        };
        if let ChannelEvent::Receipt {
            center_id, stat, ..
        } = event
        {
            receipts += 1;
            let state = if stat == "DELIVRD" {
                PartState::Delivered
            } else {
                PartState::Undeliverable
            };
            store
                .submit(vec![Op::Receipt {
                    channel: "sim".into(),
                    center_id: normalise_center_id(&center_id, IdFormat::Hex),
                    part_state: state,
                    stat,
                    err: "000".into(),
                    now_ms: SystemClock.now_ms(),
                }])
                .await
                .unwrap();
        }
    }
    let long = store.get(ids[7]).unwrap().unwrap();
    assert_eq!(long.parts.len(), 3);
    assert!(long.parts.iter().all(|p| p.center_id.is_some()));
    shutdown.send(true).unwrap();
    handle.shutdown().await;
    tokio::time::timeout(WAIT, dispatch)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let tally = sim.shutdown().await.unwrap();
    assert_eq!(tally.unique_messages, 30);
    assert_eq!(tally.duplicates, 0);
}

/// Store → dispatch → worker → simulator throughput, durable (redb, fsync'd commits), for the
/// report; not a pass/fail criterion:
/// `cargo test --release -p sluice --test integration channel_dispatch::throughput -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "throughput figure for BENCHMARKS.md; 100 k messages, run by hand"]
async fn throughput() {
    let n: usize = std::env::var("SLUICE_CHANNEL_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let sim = Simulator::start(SimConfig {
        listeners: vec![ListenerConfig::default()],
        ..SimConfig::default()
    })
    .await
    .unwrap();
    let addr = sim.addrs()[0].to_string();
    let dir = tempfile::tempdir().unwrap();
    let now_ms = SystemClock.now_ms();
    let store = open_store(&dir, now_ms);
    let mut ids = Vec::with_capacity(n);
    for chunk in 0..n.div_ceil(10_000) {
        let batch: Vec<Message> = (chunk * 10_000..((chunk + 1) * 10_000).min(n))
            .map(|i| message(&store, Lane::ALL[i % 3], &format!("load {i}"), now_ms))
            .collect();
        ids.extend(batch.iter().map(|m| m.id));
        store.insert_batch(batch).await.unwrap();
    }
    let mut wcfg = config(addr, 1_000_000);
    wcfg.binds = 4;
    wcfg.session.window = 200;
    let (tx, input) = mpsc::channel(wcfg.capacity());
    let (outcomes_tx, outcomes) = mpsc::channel(wcfg.capacity() * 2);
    let (events_tx, mut events) = mpsc::channel(65_536);
    let start = std::time::Instant::now();
    let handle = smpp::spawn(wcfg, input, outcomes_tx, events_tx);
    let (shutdown, shutdown_rx) = watch::channel(false);
    let links = DispatchLinks {
        to_worker: tx,
        outcomes,
        binds_up: handle.binds_up.clone(),
        health: Arc::new(Mutex::new(ChannelHealth::default())),
        wake: Arc::new(Notify::new()),
        shutdown: shutdown_rx,
        paused: watch::channel(false).1,
    };
    let mut dcfg = DispatchConfig::new("sim");
    dcfg.id_format = IdFormat::Hex;
    if let Some(b) = std::env::var("SLUICE_LEASE_BATCH")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        dcfg.batch = b;
    }
    let dispatch = tokio::spawn(Dispatcher::new(dcfg, store.clone(), SystemClock).run(links));
    let mut accepted = 0;
    while accepted < n {
        match tokio::time::timeout(WAIT, events.recv()).await {
            // The simulator receipts every message it accepts; a receipt is the first sign
            // of acceptance this side sees (outcomes go to dispatch).
            Ok(Some(ChannelEvent::Receipt { ack, .. })) => {
                ack.done();
                accepted += 1;
            }
            Ok(Some(_)) => {}
            other => panic!("stalled after {accepted}: {other:?}"),
        }
    }
    let submitted = start.elapsed();
    shutdown.send(true).unwrap();
    let drain = tokio::spawn(async move { while events.recv().await.is_some() {} });
    handle.shutdown().await;
    let stats = dispatch.await.unwrap().unwrap();
    let written = start.elapsed();
    drain.await.unwrap();
    let sent = ids
        .iter()
        .filter(|id| store.get(**id).unwrap().unwrap().state == MessageState::Sent)
        .count();
    assert_eq!(sent, n, "every outcome written");
    let tally = sim.shutdown().await.unwrap();
    println!(
        "dispatch+channel throughput (redb, durable): {n} messages submitted in {:.2} s = {:.0} msg/s; all outcomes written and stopped by {:.2} s; dispatched {}; sim unique {}",
        submitted.as_secs_f64(),
        n as f64 / submitted.as_secs_f64(),
        written.as_secs_f64(),
        stats.dispatched,
        tally.unique_messages
    );
    assert_eq!(tally.unique_messages as usize, n);
}

/// Inserts `n` marketing messages and returns their ids.
async fn marketing_backlog(store: &Store<RedbBackend>, n: usize, now_ms: u64) {
    let batch = (0..n)
        .map(|i| message(store, Lane::Marketing, &format!("promo {i}"), now_ms))
        .collect();
    store.insert_batch(batch).await.unwrap();
}

/// Receives up to `n` messages and returns the position of `id` among them.
async fn position_of(rx: &mut mpsc::Receiver<OutboundMessage>, id: u64, n: usize) -> Option<usize> {
    for i in 0..n {
        if recv(rx).await.id == id {
            return Some(i);
        }
    }
    None
}

#[tokio::test]
async fn scheduled_otp_reaching_due_time_overtakes_a_marketing_backlog() {
    let dir = tempfile::tempdir().unwrap();
    let start: Timestamp = "2026-11-26T02:00:00Z".parse().unwrap();
    let clock = ManualClock::new(start);
    let now_ms = clock.now_ms();
    let store = open_store(&dir, now_ms);
    let mut otp = message(&store, Lane::Otp, "code 1234", now_ms);
    otp.due_ms = now_ms + 60_000;
    let otp_id = otp.id.0;
    store.insert_batch(vec![otp]).await.unwrap();
    marketing_backlog(&store, 40, now_ms).await;
    let mut cfg = DispatchConfig::new("sim");
    cfg.batch = 4;
    let (mut fake, task) = dispatch_to_fake(&store, clock.clone(), cfg, 1, 1);
    // The otp lane is not due yet: marketing flows and the otp lane is marked dry.
    for _ in 0..2 {
        assert_ne!(recv(&mut fake.to_worker).await.id, otp_id);
    }
    // Its due time passes with no notify at all: it must go out next, not after the
    // remaining ~38 marketing messages.
    clock.advance(SignedDuration::from_secs(61));
    let pos = position_of(&mut fake.to_worker, otp_id, 38).await;
    assert!(
        matches!(pos, Some(p) if p <= 3),
        "otp dispatched at {pos:?}"
    );
    fake.shutdown.send(true).unwrap();
    drop(fake.outcomes);
    tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
}

#[tokio::test]
async fn requeued_otp_retry_overtakes_a_marketing_backlog() {
    let dir = tempfile::tempdir().unwrap();
    let start: Timestamp = "2026-11-26T02:00:00Z".parse().unwrap();
    let clock = ManualClock::new(start);
    let now_ms = clock.now_ms();
    let store = open_store(&dir, now_ms);
    let otp = message(&store, Lane::Otp, "code 1234", now_ms);
    let otp_id = otp.id.0;
    store.insert_batch(vec![otp]).await.unwrap();
    marketing_backlog(&store, 40, now_ms).await;
    let mut cfg = DispatchConfig::new("sim");
    cfg.batch = 4;
    let (mut fake, task) = dispatch_to_fake(&store, clock.clone(), cfg, 1, 1);
    assert_eq!(recv(&mut fake.to_worker).await.id, otp_id, "otp first");
    // The otp lane is now empty (its message is in flight) and goes dry.
    for _ in 0..2 {
        assert_ne!(recv(&mut fake.to_worker).await.id, otp_id);
    }
    // The send failed; the worker asks for a retry after a short backoff.
    fake.outcomes
        .send(Settled::new(Outcome::Retry {
            id: otp_id,
            attempts: 1,
            after: Duration::from_secs(5),
            reason: "ESME_RSYSERR".into(),
        }))
        .await
        .unwrap();
    // Let the outcome writer commit the requeue (the store writer is a thread).
    tokio::time::timeout(WAIT, async {
        while store.get(MessageId(otp_id)).unwrap().unwrap().state != MessageState::Scheduled {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("requeue committed");
    // Keep marketing flowing for a bit, then the backoff passes.
    for _ in 0..2 {
        assert_ne!(recv(&mut fake.to_worker).await.id, otp_id);
    }
    clock.advance(SignedDuration::from_secs(6));
    let pos = position_of(&mut fake.to_worker, otp_id, 36).await;
    // Ahead of the 36 marketing messages still queued; up to one and a half batches (6) of
    // marketing may already be leased (its buffer and the lease ahead, which runs on its
    // own task, so how much of it goes first depends on the scheduler).
    assert!(
        matches!(pos, Some(p) if p <= 6),
        "retry dispatched at {pos:?}"
    );
    let m = store.get(MessageId(otp_id)).unwrap().unwrap();
    assert_eq!(m.attempts, 1);
    fake.shutdown.send(true).unwrap();
    drop(fake.outcomes);
    tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
}

#[tokio::test]
async fn expired_messages_get_their_receipt_while_the_channel_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let start: Timestamp = "2026-11-26T02:00:00Z".parse().unwrap();
    let clock = ManualClock::new(start);
    let now_ms = clock.now_ms();
    let store = open_store(&dir, now_ms);
    let mut m = message(&store, Lane::Otp, "code 1234", now_ms);
    m.expires_at_ms = Some(now_ms + 60_000);
    let id = m.id;
    store.insert_batch(vec![m]).await.unwrap();
    // No bind: nothing is ever leased.
    let (fake, task) = dispatch_to_fake(&store, clock.clone(), DispatchConfig::new("sim"), 4, 0);
    clock.advance(SignedDuration::from_secs(61));
    tokio::time::timeout(WAIT, async {
        loop {
            // The sweep runs every 30 s of (manual) time; keep nudging the clock.
            if store.get(id).unwrap().unwrap().state == MessageState::Expired {
                break;
            }
            clock.advance(SignedDuration::from_secs(10));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("expired by the sweep without any lease");
    assert_eq!(store.outbox("acme", 0, 10).unwrap().len(), 1);
    fake.shutdown.send(true).unwrap();
    drop(fake.outcomes);
    let stats = tokio::time::timeout(WAIT, task).await.unwrap().unwrap();
    assert_eq!(stats.expired, 1);
    assert_eq!(stats.dispatched, 0);
}

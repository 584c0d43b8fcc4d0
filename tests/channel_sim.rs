//! The SMPP channel (bind drivers + worker) against the bundled simulator on 127.0.0.1:
//! submit + DLR, long messages, throttling with AIMD, reconnects, early DLRs.

use crate::channel_common;

use std::collections::HashSet;

use channel_common::{Rig, WAIT, center_ids, config, text};
use sluice::channel::ChannelEvent;
use sluice::channel::Outcome;
use sluice::channel::smpp::BindMode;
use sluice_loadtest::config::{DlrConfig, IdFormat as SimIdFormat};
use sluice_loadtest::dist::Delay;
use sluice_loadtest::{ListenerConfig, SimConfig, SimHandle, Simulator, TallySnapshot};
use sluice_protocols::sms::ConcatScheme;

async fn sim(listener: ListenerConfig) -> (SimHandle, String) {
    let handle = Simulator::start(SimConfig {
        seed: Some(7),
        listeners: vec![listener],
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts");
    let addr = handle.addrs()[0].to_string();
    (handle, addr)
}

async fn finish(sim: SimHandle) -> TallySnapshot {
    tokio::time::timeout(WAIT, sim.shutdown())
        .await
        .expect("sim stops")
        .expect("tally")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_and_dlr() {
    let (sim, addr) = sim(ListenerConfig::default()).await;
    let mut cfg = config(addr, 1000);
    cfg.binds = 2;
    let mut rig = Rig::start(cfg);
    let n = 50;
    let msgs = (1..=n).map(|i| text(i, format!("hello #{i}"))).collect();
    let outcomes = rig.run_all(msgs).await;
    assert_eq!(outcomes.len(), n as usize);
    let ids: HashSet<String> = outcomes
        .values()
        .map(|o| center_ids(o)[0].clone())
        .collect();
    assert_eq!(ids.len(), n as usize, "center ids are distinct");
    // Every accepted id gets its receipt back.
    rig.events_until(|seen| {
        seen.iter()
            .filter(|e| matches!(e, ChannelEvent::Receipt { .. }))
            .count()
            >= n as usize
    })
    .await;
    let receipts = rig.receipts();
    for id in &ids {
        assert_eq!(
            receipts.get(id).map(String::as_str),
            Some("DELIVRD"),
            "receipt for {id}"
        );
    }
    assert!(*rig.handle.binds_up.borrow() >= 1, "a sending bind is up");
    assert_eq!(rig.accepted.len(), n as usize);
    rig.stop().await;
    let tally = finish(sim).await;
    assert_eq!(tally.unique_messages, n);
    assert_eq!(tally.duplicates, 0);
}

async fn long_messages(scheme: ConcatScheme) {
    let (sim, addr) = sim(ListenerConfig {
        message_id: SimIdFormat::Decimal,
        ..ListenerConfig::default()
    })
    .await;
    let mut cfg = config(addr, 1000);
    cfg.parts.concat = scheme;
    let mut rig = Rig::start(cfg);
    let n = 10u64;
    // 400 GSM characters: 3 parts under UDH (153/152 per part) and SAR (160 per part).
    let msgs = (1..=n)
        .map(|i| {
            text(
                i,
                format!("{i:04}{}", "long text ".repeat(40))[..400].to_owned(),
            )
        })
        .collect();
    let outcomes = rig.run_all(msgs).await;
    let mut all = HashSet::new();
    for o in outcomes.values() {
        let ids = center_ids(o);
        assert_eq!(ids.len(), 3, "{scheme:?}: three parts");
        for id in ids {
            assert!(all.insert(id.clone()), "part ids are distinct");
        }
    }
    assert_eq!(rig.accepted.len(), 30);
    rig.stop().await;
    let tally = finish(sim).await;
    assert_eq!(
        tally.unique_messages, n,
        "{scheme:?}: the center reassembled every message"
    );
    assert_eq!(tally.incomplete_messages, 0);
    assert_eq!(tally.parts_per_message.get("3"), Some(&n));
    assert_eq!(tally.duplicates, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_messages_udh8() {
    long_messages(ConcatScheme::Udh8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_messages_udh16() {
    long_messages(ConcatScheme::Udh16).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_messages_sar() {
    long_messages(ConcatScheme::Sar).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_halves_rate_and_loses_nothing() {
    let (sim, addr) = sim(ListenerConfig {
        throughput: 200.0,
        burst: 5.0,
        ..ListenerConfig::default()
    })
    .await;
    let configured = 2000;
    let mut rig = Rig::start(config(addr, configured));
    let mut rate = rig.handle.rate.clone();
    let n = 150u64;
    let msgs = (1..=n).map(|i| text(i, format!("throttle #{i}"))).collect();
    let run = rig.run_all(msgs);
    let lowest = async {
        let mut lowest = *rate.borrow();
        while rate.changed().await.is_ok() {
            lowest = lowest.min(*rate.borrow());
            if lowest <= configured / 2 {
                break;
            }
        }
        lowest
    };
    let (outcomes, lowest) = tokio::join!(run, lowest);
    assert!(
        lowest <= configured / 2,
        "AIMD halved the rate (lowest {lowest})"
    );
    assert!(
        *rig.handle.rate.borrow() <= configured,
        "never above the configured rate"
    );
    assert_eq!(outcomes.len(), n as usize);
    assert!(outcomes.values().all(|o| matches!(o, Outcome::Sent { .. })));
    rig.stop().await;
    let tally = finish(sim).await;
    assert!(
        tally.rejected.keys().any(|k| k.contains("0x00000058")),
        "the sim did throttle: {:?}",
        tally.rejected
    );
    assert_eq!(tally.unique_messages, n, "nothing lost");
    assert_eq!(
        tally.duplicates, 0,
        "throttled submits are not accepted, so no duplicates"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_disconnects() {
    let (sim, addr) = sim(ListenerConfig {
        disconnect_probability: 0.05,
        ..ListenerConfig::default()
    })
    .await;
    let mut cfg = config(addr, 1000);
    cfg.local_retries = 10;
    cfg.retry.max_attempts = 50;
    let mut rig = Rig::start(cfg);
    let n = 200u64;
    let msgs = (1..=n)
        .map(|i| text(i, format!("reconnect #{i}")))
        .collect();
    let watcher = BindWatch::start(rig.handle.binds_up.clone());
    let outcomes = rig.run_all(msgs).await;
    assert!(outcomes.values().all(|o| matches!(o, Outcome::Sent { .. })));
    let (ups, downs) = watcher.abort_and_count();
    rig.stop().await;
    let tally = finish(sim).await;
    assert!(tally.disconnects > 0, "the sim dropped connections");
    assert!(
        downs > 0 && ups >= downs,
        "rebound after each drop: {ups} up, {downs} down"
    );
    assert_eq!(tally.unique_messages, n, "nothing lost");
    // At-least-once: a message accepted just before a drop is sent again; duplicates are
    // bounded by the drops (one window's worth each at most).
    assert!(tally.duplicates <= tally.disconnects * 10, "{tally:?}");
}

async fn early_sim() -> (SimHandle, String) {
    sim(ListenerConfig {
        dlr: DlrConfig {
            early_share: 1.0,
            early_lead_ms: 20,
            delay: Delay::Zero,
            ..DlrConfig::default()
        },
        ..ListenerConfig::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_dlrs_surface_before_the_acceptance() {
    // One transceiver bind: the center writes each receipt before the response on the same
    // connection, so the receipt event must come out first, carrying the raw center id.
    let (sim, addr) = early_sim().await;
    let mut rig = Rig::start(config(addr, 1000));
    let n = 20u64;
    let msgs = (1..=n).map(|i| text(i, format!("early #{i}"))).collect();
    let outcomes = rig.run_all(msgs).await;
    for o in outcomes.values() {
        let id = &center_ids(o)[0];
        let receipt_at = rig
            .seen
            .iter()
            .position(|e| matches!(e, ChannelEvent::Receipt { center_id, .. } if center_id == id))
            .expect("receipt");
        let accepted_at = rig
            .accepted
            .iter()
            .find(|(c, _)| c == id)
            .map(|(_, at)| *at)
            .expect("accepted");
        assert!(receipt_at < accepted_at, "receipt for {id} came first");
    }
    rig.stop().await;
    let tally = finish(sim).await;
    assert_eq!(tally.unique_messages, n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_dlrs_on_receiver_bind_still_correlate() {
    // Transmitter + receiver: receipts come on the other connection, in any order relative
    // to the responses; every accepted id still gets its receipt.
    let (sim, addr) = early_sim().await;
    let mut cfg = config(addr, 1000);
    cfg.mode = BindMode::TransmitterReceiver;
    let mut rig = Rig::start(cfg);
    let n = 20u64;
    let msgs = (1..=n).map(|i| text(i, format!("early rx #{i}"))).collect();
    let outcomes = rig.run_all(msgs).await;
    rig.events_until(|seen| {
        seen.iter()
            .filter(|e| matches!(e, ChannelEvent::Receipt { .. }))
            .count()
            >= n as usize
    })
    .await;
    let receipts = rig.receipts();
    for o in outcomes.values() {
        let id = &center_ids(o)[0];
        assert_eq!(receipts.get(id).map(String::as_str), Some("DELIVRD"));
    }
    rig.stop().await;
    let tally = finish(sim).await;
    assert_eq!(tally.unique_messages, n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_errors_fail_the_message() {
    let (sim, addr) = sim(ListenerConfig {
        errors: sluice_loadtest::config::ErrorConfig {
            permanent: 1.0,
            ..Default::default()
        },
        ..ListenerConfig::default()
    })
    .await;
    let mut rig = Rig::start(config(addr, 1000));
    let outcomes = rig.run_all(vec![text(1, "refused".into())]).await;
    match &outcomes[&1] {
        Outcome::Failed { status, stat, .. } => {
            assert_eq!(*status, 0x0B);
            assert_eq!(*stat, "REJECTD");
        }
        other => panic!("expected Failed, got {other:?}"),
    }
    rig.stop().await;
    finish(sim).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_center_loses_nothing_on_shutdown() {
    // The center accepts TCP and never answers: no bind ever completes.
    let (sim, addr) = sim(ListenerConfig {
        stall: true,
        ..ListenerConfig::default()
    })
    .await;
    let mut cfg = config(addr, 1000);
    cfg.session.response_timeout = std::time::Duration::from_millis(300);
    let rig = Rig::start(cfg);
    for i in 1..=3 {
        rig.input
            .send(text(i, format!("stuck #{i}")))
            .await
            .unwrap();
    }
    assert_eq!(*rig.handle.binds_up.borrow(), 0);
    let Rig {
        input,
        mut outcomes,
        handle,
        ..
    } = rig;
    drop(input);
    tokio::time::timeout(WAIT, handle.shutdown())
        .await
        .expect("worker stops although the center is stuck");
    let mut retried = Vec::new();
    while let Ok(o) = outcomes.try_recv() {
        match o.outcome {
            // Sent-but-unanswered parts are retries; never-sent messages are releases.
            Outcome::Retry { id, .. } | Outcome::Release { id, .. } => retried.push(id),
            other => panic!("expected a hand-back, got {other:?}"),
        }
    }
    retried.sort_unstable();
    assert_eq!(retried, vec![1, 2, 3], "every held message is handed back");
    let tally = finish(sim).await;
    assert_eq!(tally.submits_received, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_go_back_when_no_bind_comes_up() {
    let (sim, addr) = sim(ListenerConfig {
        stall: true,
        ..ListenerConfig::default()
    })
    .await;
    let mut cfg = config(addr, 1000);
    cfg.session.response_timeout = std::time::Duration::from_millis(200);
    cfg.hold_when_down = std::time::Duration::from_millis(300);
    let mut rig = Rig::start(cfg);
    for i in 1..=3 {
        rig.input.send(text(i, format!("held #{i}"))).await.unwrap();
    }
    let mut back = Vec::new();
    while back.len() < 3 {
        match tokio::time::timeout(WAIT, rig.outcomes.recv())
            .await
            .map(|o| o.map(|s| s.outcome))
        {
            // Never sent, so released without counting an attempt.
            Ok(Some(Outcome::Release { id, reason })) => {
                assert_eq!(reason, "no bind up");
                back.push(id);
            }
            other => panic!("expected a hand-back, got {other:?}"),
        }
    }
    back.sort_unstable();
    assert_eq!(back, vec![1, 2, 3]);
    rig.stop().await;
    finish(sim).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mo_replies_arrive_as_mo_events() {
    let (sim, addr) = sim(ListenerConfig {
        mo: sluice_loadtest::config::MoConfig {
            reply: vec![sluice_loadtest::config::ReplyRule {
                contains: "variant-A".into(),
                probability: 1.0,
                text: "Y".into(),
                delay: Delay::Zero,
            }],
            ..Default::default()
        },
        ..ListenerConfig::default()
    })
    .await;
    let mut rig = Rig::start(config(addr, 1000));
    let msgs = vec![
        text(1, "offer variant-A #1".into()),
        text(2, "offer variant-B #2".into()),
        text(3, "offer variant-A #3".into()),
    ];
    rig.run_all(msgs).await;
    rig.events_until(|seen| {
        seen.iter()
            .filter(|e| matches!(e, ChannelEvent::Mo { .. }))
            .count()
            >= 2
    })
    .await;
    let mos: Vec<(String, String)> = rig
        .seen
        .iter()
        .filter_map(|e| match e {
            ChannelEvent::Mo { from, text, .. } => Some((from.clone(), text.clone())),
            _ => None,
        })
        .collect();
    assert!(mos.iter().all(|(_, t)| t == "Y"), "{mos:?}");
    let mut from: Vec<&str> = mos.iter().map(|(f, _)| f.as_str()).collect();
    from.sort_unstable();
    assert_eq!(from, vec!["8613800000001", "8613800000003"]);
    rig.stop().await;
    finish(sim).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unpersisted_outcomes_hold_the_window() {
    // Window 2 × 1 bind: while dispatch has not stored (dropped) two outcomes, the worker
    // takes no third message — a crash can re-send at most the in-flight window.
    let (sim, addr) = sim(ListenerConfig::default()).await;
    let mut cfg = config(addr, 1000);
    cfg.session.window = 2;
    let mut rig = Rig::start(cfg);
    let feeder = {
        let input = rig.input.clone();
        tokio::spawn(async move {
            for i in 1..=4 {
                input.send(text(i, format!("credit #{i}"))).await.unwrap();
            }
        })
    };
    let first = tokio::time::timeout(WAIT, rig.outcomes.recv())
        .await
        .unwrap()
        .unwrap();
    let second = tokio::time::timeout(WAIT, rig.outcomes.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(first.outcome, Outcome::Sent { .. }));
    assert!(matches!(second.outcome, Outcome::Sent { .. }));
    let held_back =
        tokio::time::timeout(std::time::Duration::from_millis(300), rig.outcomes.recv()).await;
    assert!(
        held_back.is_err(),
        "no third message while two outcomes are unstored"
    );
    drop((first, second));
    for _ in 0..2 {
        let o = tokio::time::timeout(WAIT, rig.outcomes.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(o.outcome, Outcome::Sent { .. }));
    }
    feeder.await.unwrap();
    rig.stop().await;
    let tally = finish(sim).await;
    assert_eq!(tally.unique_messages, 4);
}

/// Throughput of one channel against the simulator, for the report (not a pass/fail
/// criterion: tests never time anything). Runs only with `SLUICE_LONG_TESTS=1`:
/// `SLUICE_LONG_TESTS=1 cargo test --release -p sluice --test integration channel_sim::throughput -- --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throughput() {
    if std::env::var("SLUICE_LONG_TESTS").as_deref() != Ok("1") {
        println!("skipped: set SLUICE_LONG_TESTS=1");
        return;
    }
    let (sim, addr) = sim(ListenerConfig {
        dlr: DlrConfig {
            mix: [("DELIVRD".to_owned(), 1.0)].into(),
            ..DlrConfig::default()
        },
        ..ListenerConfig::default()
    })
    .await;
    let mut cfg = config(addr, 1_000_000);
    cfg.binds = 4;
    cfg.session.window = 200;
    let n: u64 = std::env::var("SLUICE_CHANNEL_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let rig = Rig::start(cfg);
    let Rig {
        input,
        mut outcomes,
        mut events,
        handle,
        ..
    } = rig;
    let start = std::time::Instant::now();
    let feeder = tokio::spawn(async move {
        for i in 1..=n {
            if input.send(text(i, format!("load {i}"))).await.is_err() {
                break;
            }
        }
        input
    });
    let drain = tokio::spawn(async move {
        let mut receipts = 0u64;
        while let Some(e) = events.recv().await {
            if matches!(e, ChannelEvent::Receipt { .. }) {
                receipts += 1;
            }
        }
        receipts
    });
    let mut sent = 0u64;
    while sent < n {
        match tokio::time::timeout(WAIT, outcomes.recv())
            .await
            .map(|o| o.map(|s| s.outcome))
        {
            Ok(Some(Outcome::Sent { .. })) => sent += 1,
            Ok(Some(other)) => panic!("unexpected {other:?}"),
            Ok(None) | Err(_) => panic!("stalled after {sent}"),
        }
    }
    let elapsed = start.elapsed();
    let input = feeder.await.unwrap();
    drop(input);
    handle.shutdown().await;
    let receipts = drain.await.unwrap();
    let tally = finish(sim).await;
    println!(
        "channel throughput: {n} messages in {:.2} s = {:.0} msg/s (4 binds x window 200); {receipts} receipts; sim unique {}",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        tally.unique_messages
    );
    assert_eq!(tally.unique_messages, n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_handed_over_twice_is_sent_once() {
    // The center answers after 300 ms, so the second copy surely arrives while the first is
    // still held (the worker's guard covers messages in its care; a message it already
    // finished is the store's to lease again, not the worker's to refuse).
    let (sim, addr) = sim(ListenerConfig {
        latency: sluice_loadtest::dist::Delay::Fixed { ms: 300.0 },
        ..ListenerConfig::default()
    })
    .await;
    let mut rig = Rig::start(config(addr, 1000));
    rig.input.send(text(1, "twice".into())).await.unwrap();
    rig.input.send(text(1, "twice".into())).await.unwrap();
    rig.input.send(text(2, "once".into())).await.unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        match tokio::time::timeout(WAIT, rig.outcomes.recv())
            .await
            .expect("outcomes in time")
            .map(|s| s.outcome)
        {
            Some(Outcome::Sent { id, .. }) => got.push(id),
            other => panic!("expected Sent, got {other:?}"),
        }
    }
    got.sort_unstable();
    assert_eq!(got, vec![1, 2]);
    let Rig {
        input,
        mut outcomes,
        handle,
        ..
    } = rig;
    drop(input);
    tokio::time::timeout(WAIT, handle.shutdown())
        .await
        .expect("worker stops");
    assert!(outcomes.try_recv().is_err(), "no second outcome for id 1");
    let tally = finish(sim).await;
    assert_eq!(tally.submits_received, 2, "the duplicate was not sent");
}

/// Counts a channel's sending-bind transitions (up: the count rose, down: it fell) from its
/// `binds_up` watch. The reconnect backoff keeps each state for milliseconds, long enough for
/// the watcher to see it.
struct BindWatch {
    counts: std::sync::Arc<std::sync::Mutex<(usize, usize)>>,
    task: tokio::task::JoinHandle<()>,
}

impl BindWatch {
    fn start(mut rx: tokio::sync::watch::Receiver<usize>) -> Self {
        let counts = std::sync::Arc::new(std::sync::Mutex::new((0, 0)));
        let c = std::sync::Arc::clone(&counts);
        let task = tokio::spawn(async move {
            let mut last = *rx.borrow_and_update();
            while rx.changed().await.is_ok() {
                let now = *rx.borrow_and_update();
                let mut g = c.lock().unwrap();
                if now > last {
                    g.0 += 1;
                } else if now < last {
                    g.1 += 1;
                }
                last = now;
            }
        });
        Self { counts, task }
    }

    fn abort_and_count(self) -> (usize, usize) {
        self.task.abort();
        *self.counts.lock().unwrap()
    }
}

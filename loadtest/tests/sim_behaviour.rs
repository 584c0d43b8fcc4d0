//! The simulator driven by our own load generator: exact tally under throttling, errors and
//! random disconnects; early receipts; stall mode; window enforcement.

mod common;

use std::time::Duration;

use common::{listener, load, start};
use sluice_loadtest::config::{DlrConfig, ErrorConfig, Protocol};
use sluice_loadtest::dist::Delay;
use sluice_loadtest::load::{ConcatMode, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tally_is_exact_under_throttle_errors_and_disconnects() {
    for concat in [ConcatMode::Udh8, ConcatMode::Udh16, ConcatMode::Sar] {
        let mut l = listener(Protocol::Smpp);
        l.throughput = 15_000.0;
        l.window = 16;
        l.errors = ErrorConfig {
            temporary: 0.02,
            ..Default::default()
        };
        l.disconnect_probability = 0.002;
        let sim = start(vec![l]).await;
        let mut cfg = load(sim.addrs()[0], 3_000);
        cfg.connections = 3;
        cfg.window = 32; // more than the center honours: provokes ESME_RMSGQFUL
        cfg.payload.chars = 200; // every third message is long enough to be concatenated
        cfg.payload.concat = concat;
        cfg.payload.ucs2_share = 0.3;
        let s = run(cfg).await.expect("run");
        let t = sim.shutdown().await.expect("shutdown");
        assert_eq!(s.messages_accepted, 3_000, "{concat:?}: {s}");
        assert_eq!(s.messages_failed, 0);
        assert_eq!(t.unique_messages, 3_000, "{concat:?}: {t:?}");
        assert!(
            t.disconnects > 0 && s.disconnects >= t.disconnects,
            "{t:?} {s}"
        );
        assert!(
            s.errors.contains_key("smpp:0x00000008"),
            "temporary errors seen: {:?}",
            s.errors
        );
        // Anything counted twice at the center must come from a part left unanswered by a
        // disconnect and resubmitted.
        let extra = t.duplicates + t.duplicate_parts + t.incomplete_messages;
        assert!(
            extra <= s.unacked_at_disconnect,
            "{concat:?}: extra {extra} > unacked {} ({t:?})",
            s.unacked_at_disconnect
        );
        assert!(
            t.parts_per_message.keys().any(|k| k != "1"),
            "some messages were concatenated: {t:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttle_and_window_answers_are_resubmitted_without_duplicates() {
    let mut l = listener(Protocol::Smpp);
    l.throughput = 5_000.0;
    l.burst = 50.0;
    l.window = 4;
    l.latency = Delay::Fixed { ms: 2.0 };
    let sim = start(vec![l]).await;
    let mut cfg = load(sim.addrs()[0], 2_000);
    cfg.window = 16;
    let s = run(cfg).await.expect("run");
    let t = sim.shutdown().await.expect("shutdown");
    assert_eq!((t.unique_messages, t.duplicates), (2_000, 0), "{t:?}");
    assert!(
        t.rejected.contains_key("smpp:0x00000014"),
        "window exceeded: {t:?}"
    );
    assert!(s.resubmits > 0 && s.messages_accepted == 2_000, "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_can_arrive_before_the_response() {
    let mut l = listener(Protocol::Smpp);
    l.dlr = DlrConfig {
        early_share: 1.0,
        early_lead_ms: 30,
        ..Default::default()
    };
    let sim = start(vec![l]).await;
    let mut cfg = load(sim.addrs()[0], 200);
    cfg.dlr = true;
    let s = run(cfg).await.expect("run");
    let t = sim.shutdown().await.expect("shutdown");
    assert_eq!(t.dlrs_sent, 200);
    assert_eq!(s.dlr.received, 200, "{s}");
    assert_eq!(s.dlr.before_response, 200, "every receipt came first: {s}");
    assert_eq!(s.dlr.matched, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipt_mix_and_delay() {
    let mut l = listener(Protocol::Smpp);
    l.dlr.mix = [("DELIVRD".to_owned(), 1.0), ("UNDELIV".to_owned(), 1.0)]
        .into_iter()
        .collect();
    l.dlr.delay = Delay::Uniform {
        min_ms: 5.0,
        max_ms: 20.0,
    };
    let sim = start(vec![l]).await;
    let mut cfg = load(sim.addrs()[0], 1_000);
    cfg.dlr = true;
    let s = run(cfg).await.expect("run");
    sim.shutdown().await.expect("shutdown");
    assert_eq!(s.dlr.matched, 1_000, "{s}");
    assert_eq!(s.dlr.before_response, 0);
    let d = s.dlr.by_stat.get("DELIVRD").copied().unwrap_or(0);
    let u = s.dlr.by_stat.get("UNDELIV").copied().unwrap_or(0);
    assert_eq!(d + u, 1_000);
    assert!(d > 350 && u > 350, "about half each: {:?}", s.dlr.by_stat);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_center_makes_the_client_time_out() {
    let mut l = listener(Protocol::Smpp);
    l.stall = true;
    let sim = start(vec![l]).await;
    let mut cfg = load(sim.addrs()[0], 10);
    cfg.connections = 1;
    cfg.bind_timeout = Duration::from_millis(200);
    cfg.duration = Some(Duration::from_millis(600));
    let s = tokio::time::timeout(Duration::from_secs(20), run(cfg))
        .await
        .expect("the run ends by itself")
        .expect("run");
    let t = sim.shutdown().await.expect("shutdown");
    assert!(s.bind_failures >= 1, "{s}");
    assert_eq!(s.messages_accepted, 0);
    assert_eq!(t.binds, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_errors_are_not_retried() {
    let mut l = listener(Protocol::Smpp);
    l.errors = ErrorConfig {
        permanent: 0.1,
        ..Default::default()
    };
    let sim = start(vec![l]).await;
    let s = run(load(sim.addrs()[0], 2_000)).await.expect("run");
    let t = sim.shutdown().await.expect("shutdown");
    assert_eq!(s.messages_accepted + s.messages_failed, 2_000, "{s}");
    assert!(s.messages_failed > 100 && s.messages_failed < 300, "{s}");
    assert_eq!(t.unique_messages, s.messages_accepted);
    assert_eq!(
        t.rejected.get("smpp:0x0000000B").copied(),
        Some(s.messages_failed)
    );
    assert_eq!(s.resubmits, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tally_file_is_written_on_shutdown() {
    let dir = std::env::temp_dir().join(format!("sluice-tally-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tally.json");
    let cfg = sluice_loadtest::SimConfig {
        tally_path: Some(path.clone()),
        listeners: vec![listener(Protocol::Smpp)],
        ..Default::default()
    };
    let sim = sluice_loadtest::Simulator::start(cfg).await.unwrap();
    run(load(sim.addrs()[0], 50)).await.unwrap();
    let snap = sim.shutdown().await.unwrap();
    let back: sluice_loadtest::TallySnapshot =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(back, snap);
    assert_eq!(back.unique_messages, 50);
    let _ = std::fs::remove_dir_all(dir);
}

/// The live tally file shows a running simulator's counts (what `kannel.sh` polls to know
/// the center has everything), and the exact final tally replaces it on shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_tally_file_follows_the_run() {
    let dir = std::env::temp_dir().join(format!("sluice-live-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("tally.json");
    let cfg = sluice_loadtest::SimConfig {
        tally_path: Some(path.clone()),
        listeners: vec![listener(Protocol::Smpp)],
        ..Default::default()
    };
    let mut sim = sluice_loadtest::Simulator::start(cfg).await.unwrap();
    sim.snapshot_every(path.clone(), Duration::from_millis(10));
    run(load(sim.addrs()[0], 80)).await.unwrap();
    let read = || -> Option<sluice_loadtest::TallySnapshot> {
        serde_json::from_str(&std::fs::read_to_string(&path).ok()?).ok()
    };
    // Poll (with a generous deadline) while the simulator is still running.
    let mut live = None;
    for _ in 0..1_000 {
        live = read().filter(|t| t.unique_messages == 80);
        if live.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let live = live.expect("live tally file never showed all 80 messages");
    assert_eq!((live.duplicates, live.parts_accepted), (0, 80));
    let last = sim.shutdown().await.unwrap();
    assert_eq!(read(), Some(last));
    assert!(!dir.join("tally.json.tmp").exists());
    let _ = std::fs::remove_dir_all(dir);
}

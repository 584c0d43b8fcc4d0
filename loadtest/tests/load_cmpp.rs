//! `loadtest --target cmpp` against the simulator's ISMG: the load generator's tally (SUBMIT_RESP
//! results, status reports answered and matched) must agree with the simulator's, on CMPP 2.0
//! and 3.0, with long UCS-2 and GBK messages, under flow control (Result 8), and a refused
//! login must end the run instead of hanging it. Small N, every run bounded.

mod common;

use std::time::Duration;

use common::start;
use sluice_loadtest::config::{Account, ListenerConfig, Protocol};
use sluice_loadtest::dist::Delay;
use sluice_loadtest::load::{CmppVersion, LoadConfig, PayloadConfig, Target, run};

fn ismg() -> ListenerConfig {
    ListenerConfig {
        protocol: Protocol::Cmpp,
        accounts: vec![Account {
            system_id: "901234".into(),
            password: "s3cret".into(),
            max_binds: 0,
        }],
        ..ListenerConfig::default()
    }
}

fn load(addr: std::net::SocketAddr, version: CmppVersion, count: u64) -> LoadConfig {
    LoadConfig {
        target: Target::Cmpp {
            addr: addr.to_string(),
            source_addr: "901234".into(),
            shared_secret: "s3cret".into(),
            version,
            service_id: "MSGTEST".into(),
            src_id: "10690001".into(),
            gbk: false,
        },
        connections: 2,
        window: 16,
        count: Some(count),
        payload: PayloadConfig {
            run: "c".into(),
            // Half the messages Chinese in UCS-2: 100 characters are two parts there.
            chars: 100,
            ucs2_share: 0.5,
            ..Default::default()
        },
        dlr: true,
        dlr_wait: Duration::from_secs(10),
        bind_timeout: Duration::from_secs(5),
        response_timeout: Duration::from_secs(10),
        ..LoadConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tally_matches_the_simulator_on_2_0_and_3_0() {
    for version in [CmppVersion::V20, CmppVersion::V30] {
        let sim = start(vec![ismg()]).await;
        let n = 400;
        let s = run(load(sim.addrs()[0], version, n)).await.expect("run");
        let t = sim.shutdown().await.expect("shutdown");
        assert_eq!(
            (s.messages_accepted, s.messages_failed),
            (n, 0),
            "{version:?}: {s}"
        );
        assert_eq!(
            (t.unique_messages, t.duplicates),
            (n, 0),
            "{version:?}: {t:?}"
        );
        assert!(
            t.parts_per_message.keys().any(|k| k != "1"),
            "some messages were long: {t:?}"
        );
        // Every SUBMIT got exactly one SUBMIT_RESP, all accepted, as the simulator counted.
        assert_eq!(s.submits_sent, t.submits_received, "{s}\n{t:?}");
        assert_eq!(s.responses, s.submits_sent, "{s}");
        assert_eq!(s.parts_accepted, t.parts_accepted, "{s}\n{t:?}");
        assert!(s.errors.is_empty(), "{:?}", s.errors);
        // Every status report was received, matched to its Msg_Id, and answered.
        assert_eq!(s.dlr.received, t.dlrs_sent, "{s}\n{t:?}");
        assert_eq!(s.dlr.matched, s.parts_accepted, "{s}");
        assert_eq!(t.deliver_resps_received, t.dlrs_sent, "{t:?}");
        assert!(s.responses_per_s > 0.0 && s.dlr.per_s > 0.0, "{s}");
        assert_eq!(s.submit_latency.count, s.responses);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gbk_under_flow_control_is_resubmitted_without_duplicates() {
    let mut l = ismg();
    l.window = 4;
    l.throughput = 5_000.0;
    l.burst = 50.0;
    l.latency = Delay::Fixed { ms: 2.0 };
    let sim = start(vec![l]).await;
    let mut cfg = load(sim.addrs()[0], CmppVersion::V20, 500);
    if let Target::Cmpp { gbk, .. } = &mut cfg.target {
        *gbk = true;
    }
    cfg.dlr = false;
    let s = run(cfg).await.expect("run");
    let t = sim.shutdown().await.expect("shutdown");
    assert_eq!((s.messages_accepted, s.messages_failed), (500, 0), "{s}");
    assert_eq!((t.unique_messages, t.duplicates), (500, 0), "{t:?}");
    let flow = s.errors.get("cmpp:8").copied().unwrap_or(0);
    assert!(flow > 0 && s.resubmits >= flow, "flow control seen: {s}");
    assert_eq!(
        t.rejected.get("cmpp:8").copied().unwrap_or(0),
        flow,
        "both sides counted the same Result 8s: {t:?}"
    );
    assert_eq!(s.responses, t.submits_received, "{s}\n{t:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_login_ends_the_run() {
    let sim = start(vec![ismg()]).await;
    let mut cfg = load(sim.addrs()[0], CmppVersion::V30, 10);
    cfg.connections = 1;
    if let Target::Cmpp { shared_secret, .. } = &mut cfg.target {
        *shared_secret = "wrong".into();
    }
    let s = tokio::time::timeout(Duration::from_secs(20), run(cfg))
        .await
        .expect("the run ends")
        .expect("run");
    let t = sim.shutdown().await.expect("shutdown");
    assert_eq!(s.messages_accepted, 0);
    assert!(s.bind_failures > 0, "{s}");
    assert!(
        s.errors.keys().any(|k| k.starts_with("cmpp:login:")),
        "{:?}",
        s.errors
    );
    assert_eq!(t.submits_received, 0);
}

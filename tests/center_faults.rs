//! Center faults (issue 18): one test per simulator fault mode, through the real gateway —
//! the channel worker (SMPP and CMPP) for the submit path, `serve` for what needs the store
//! and the receipt layer — against the bundled simulator on 127.0.0.1.
//!
//! Each case is bounded (seconds). Connection attempts are counted on both sides (the
//! simulator's `connections`, the gateway's `sluice_channel_connect_attempts_total`) and
//! held to what the reconnect backoff allows, which is how "nothing spins" is checked without
//! timing anything. The long form of the center-gone case runs with `SLUICE_SOAK=1`.

use crate::channel_common;
use crate::e2e_support;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use channel_common::{Rig, WAIT, config, text};
use e2e_support::{Hook, accepted_ids, config_text, post, start_hook};
use serde_json::{Value, json};
use sluice::channel::backoff::Backoff;
use sluice::channel::cmpp::CmppChannelConfig;
use sluice::channel::driver::SILENT_TIMEOUTS;
use sluice::channel::smpp::WorkerConfig;
use sluice::channel::{OutboundMessage, Outcome};
use sluice::config::Config;
use sluice::receipt::ReceiptConfig;
use sluice::serve::{ServeOptions, start};
use sluice_loadtest::config::{Account, DlrConfig, Protocol};
use sluice_loadtest::{ListenerConfig, SimConfig, SimHandle, Simulator, TallySnapshot};
use sluice_protocols::cmpp::{SpConfig, Version};

/// The sum of every sample of `name` whose labels contain `label` (e.g. `channel="x"`).
fn metric(name: &str, label: &str) -> f64 {
    e2e_support::metric_sum(&e2e_support::metrics().render(), name, label)
}

/// A simulator with one `listener`.
async fn sim(listener: ListenerConfig) -> SimHandle {
    // The recorder must be in place before the channel counts anything.
    e2e_support::metrics();
    e2e_support::init_tracing();
    Simulator::start(SimConfig {
        seed: Some(18),
        listeners: vec![listener],
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts")
}

/// A listener of `protocol` on `addr` (port 0: any) with the CMPP account the channel uses.
fn listener(protocol: Protocol, addr: SocketAddr) -> ListenerConfig {
    let mut l = sluice_loadtest::sim::listener(protocol);
    l.addr = addr;
    if protocol == Protocol::Cmpp {
        l.accounts = vec![Account {
            system_id: CMPP_SP.into(),
            password: CMPP_SECRET.into(),
            max_binds: 0,
        }];
    }
    l
}

const CMPP_SP: &str = "901234";
const CMPP_SECRET: &str = "s3cret";

async fn finish(sim: SimHandle) -> TallySnapshot {
    tokio::time::timeout(WAIT, sim.shutdown())
        .await
        .expect("sim stops")
        .expect("tally")
}

/// SMPP channel `name`: fast reconnects (50 ms doubling to 400 ms), 300 ms response
/// timeout, retries enough for any fault here.
fn smpp(name: &str, addr: SocketAddr) -> WorkerConfig {
    let mut c = config(addr.to_string(), 2000);
    c.name = name.into();
    c.binds = 2;
    c.session.response_timeout = Duration::from_millis(300);
    c.reconnect = RECONNECT;
    c.retry.max_attempts = 1000;
    c.local_retries = 3;
    c.hold_when_down = Duration::from_millis(300);
    c
}

/// CMPP channel `name`, same timers as [`smpp`].
fn cmpp(name: &str, addr: SocketAddr) -> CmppChannelConfig {
    let session = SpConfig {
        source_addr: CMPP_SP.into(),
        shared_secret: CMPP_SECRET.into(),
        version: Version::V30,
        window: 10,
        response_timeout: Duration::from_millis(300),
        active_test_interval: Duration::from_secs(5),
        ..SpConfig::default()
    };
    let mut c = CmppChannelConfig::new(
        name,
        addr.to_string(),
        session,
        NonZeroU32::new(2000).unwrap(),
    );
    c.connections = 2;
    c.parts.service_id = "MSGTEST".into();
    c.parts.src_id = "10690001".into();
    c.reconnect = RECONNECT;
    c.limits.retry.max_attempts = 1000;
    c.limits.retry.backoff = Backoff {
        base: Duration::from_millis(10),
        max: Duration::from_millis(50),
    };
    c.limits.hold_when_down = Duration::from_millis(300);
    c
}

const RECONNECT: Backoff = Backoff {
    base: Duration::from_millis(50),
    max: Duration::from_millis(400),
};

/// The most connection attempts `binds` binds can make in `span` when each failed attempt
/// waits at least half the backoff's floor and (if the center holds the connection) the
/// response timeout: generous, yet far below a spin (thousands per second).
fn attempt_bound(binds: u64, span: Duration, per_attempt: Duration) -> u64 {
    binds * (span.as_millis() as u64 / per_attempt.as_millis() as u64 + 2)
}

/// The most attempts one bind makes in `span` when every wait is at least half of
/// `backoff`'s ceiling for its attempt.
fn backoff_attempts(backoff: Backoff, span: Duration) -> u64 {
    let (mut waited, mut k) = (Duration::ZERO, 0u32);
    while waited < span {
        waited += backoff.ceiling(k) / 2;
        k += 1;
    }
    u64::from(k) + 1
}

/// Prints a center's figures (for RELIABILITY.md; `--no-capture` shows them).
fn figures(case: &str, t: &TallySnapshot) {
    println!(
        "{case}: submits {} unique {} duplicates {} disconnects {} connections {} binds {} \
         bind_failures {} rejected {} responses_dropped {} dlrs_sent {} deliver_resps {} \
         unknown_receipts {} duplicate_receipts {} resent {}",
        t.submits_received,
        t.unique_messages,
        t.duplicates,
        t.disconnects,
        t.connections,
        t.binds,
        t.bind_failures,
        t.rejected.values().sum::<u64>(),
        t.responses_dropped,
        t.dlrs_sent,
        t.deliver_resps_received,
        t.unknown_receipts,
        t.duplicate_receipts,
        t.resent
    );
}

fn msgs(tag: &str, n: u64) -> Vec<OutboundMessage> {
    (1..=n).map(|i| text(i, format!("{tag} #{i}"))).collect()
}

fn all_sent(outcomes: &HashMap<u64, Outcome>, n: u64) {
    assert_eq!(outcomes.len() as u64, n);
    for (id, o) in outcomes {
        assert!(matches!(o, Outcome::Sent { .. }), "message {id}: {o:?}");
    }
}

// ---------------------------------------------------------------------------------------
// 1. Throttling storm
// ---------------------------------------------------------------------------------------

/// `throughput` far below the channel's rate: bursts of ESME_RTHROTTLED / CMPP result 8.
fn storm(protocol: Protocol) -> ListenerConfig {
    ListenerConfig {
        throughput: 150.0,
        burst: 3.0,
        ..listener(protocol, SocketAddr::from(([127, 0, 0, 1], 0)))
    }
}

async fn throttling_storm(protocol: Protocol, name: &str) {
    let sim = sim(storm(protocol)).await;
    let addr = sim.addrs()[0];
    let mut rig = match protocol {
        Protocol::Cmpp => Rig::start_cmpp(cmpp(name, addr)),
        _ => Rig::start(smpp(name, addr)),
    };
    let configured = 2000u32;
    let mut rate = rig.handle.rate.clone();
    let n = 300;
    let run = rig.run_all(msgs("storm", n));
    let lowest = async {
        let mut lowest = *rate.borrow();
        while rate.changed().await.is_ok() {
            lowest = lowest.min(*rate.borrow());
            if lowest <= configured / 4 {
                break;
            }
        }
        lowest
    };
    let (outcomes, lowest) = tokio::join!(run, lowest);
    all_sent(&outcomes, n);
    assert!(
        lowest <= configured / 4,
        "AIMD backed off (lowest {lowest})"
    );
    let throttles = metric(
        "sluice_channel_throttled_total",
        &format!("channel=\"{name}\""),
    );
    rig.stop().await;
    let tally = finish(sim).await;
    figures(std::thread::current().name().unwrap_or("case"), &tally);
    let rejected: u64 = tally.rejected.values().sum();
    assert!(rejected > 0, "the center throttled: {tally:?}");
    assert_eq!(
        throttles as u64, rejected,
        "every throttle answer counted once"
    );
    assert_eq!(tally.unique_messages, n, "nothing lost");
    assert_eq!(
        tally.duplicates, 0,
        "a throttled submit is not kept, so no duplicates"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_storm_smpp() {
    throttling_storm(Protocol::Smpp, "storm-smpp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_storm_cmpp() {
    throttling_storm(Protocol::Cmpp, "storm-cmpp").await;
}

// ---------------------------------------------------------------------------------------
// 2. Random disconnects mid-window
// ---------------------------------------------------------------------------------------

async fn random_disconnects(protocol: Protocol, name: &str) {
    let sim = sim(ListenerConfig {
        disconnect_probability: 0.03,
        ..listener(protocol, SocketAddr::from(([127, 0, 0, 1], 0)))
    })
    .await;
    let addr = sim.addrs()[0];
    let mut rig = match protocol {
        Protocol::Cmpp => Rig::start_cmpp(cmpp(name, addr)),
        _ => Rig::start(smpp(name, addr)),
    };
    let n = 300;
    let outcomes = rig.run_all(msgs("drop", n)).await;
    all_sent(&outcomes, n);
    rig.stop().await;
    let tally = finish(sim).await;
    figures(std::thread::current().name().unwrap_or("case"), &tally);
    assert!(tally.disconnects > 0, "the center dropped connections");
    assert_eq!(tally.unique_messages, n, "nothing lost");
    // At least once: what was accepted on a dropped connection without its response
    // reaching us goes again; at most one window (10) per drop.
    assert!(
        tally.duplicates <= tally.disconnects * 10,
        "duplicates {} for {} drops",
        tally.duplicates,
        tally.disconnects
    );
    assert!(
        tally.connections <= tally.disconnects + 2 + 2,
        "one reconnect per drop: {tally:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_disconnects_smpp() {
    random_disconnects(Protocol::Smpp, "drops-smpp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_disconnects_cmpp() {
    random_disconnects(Protocol::Cmpp, "drops-cmpp").await;
}

// ---------------------------------------------------------------------------------------
// 3. A center that accepts TCP and never answers; then recovers
// ---------------------------------------------------------------------------------------

/// Runs `n` messages through a channel to a center started as `faulty` on a fixed port;
/// after `span` that center is shut down and a healthy one starts on the same port.
/// Returns the faulty center's tally, the healthy one's, and the gateway's connection
/// attempts during the faulty phase.
async fn fault_then_recover(
    protocol: Protocol,
    name: &str,
    faulty: impl FnOnce(ListenerConfig) -> ListenerConfig,
    span: Duration,
    n: u64,
) -> (TallySnapshot, TallySnapshot, f64) {
    let first = sim(faulty(listener(
        protocol,
        SocketAddr::from(([127, 0, 0, 1], 0)),
    )))
    .await;
    let addr = first.addrs()[0];
    let mut rig = match protocol {
        Protocol::Cmpp => Rig::start_cmpp(cmpp(name, addr)),
        _ => Rig::start(smpp(name, addr)),
    };
    let label = format!("channel=\"{name}\"");
    let switch = async {
        tokio::time::sleep(span).await;
        let attempts = metric("sluice_channel_connect_attempts_total", &label);
        let bad = finish(first).await;
        let good = sim(listener(protocol, addr)).await;
        (bad, good, attempts)
    };
    let (outcomes, (bad, good, attempts)) = tokio::join!(rig.run_all(msgs("wait", n)), switch);
    all_sent(&outcomes, n);
    rig.stop().await;
    let good = finish(good).await;
    figures(&format!("{name} (faulty center)"), &bad);
    figures(
        &format!("{name} (recovered center, attempts while faulty {attempts})"),
        &good,
    );
    assert_eq!(
        good.unique_messages, n,
        "every message went once the center recovered"
    );
    assert_eq!(good.duplicates, 0);
    (bad, good, attempts)
}

async fn bind_never_answered(protocol: Protocol, name: &str) {
    let span = Duration::from_secs(2);
    let (bad, _, attempts) = fault_then_recover(
        protocol,
        name,
        |l| ListenerConfig { stall: true, ..l },
        span,
        30,
    )
    .await;
    assert_eq!(bad.binds, 0, "the stalled center never bound");
    assert_eq!(bad.submits_received, 0);
    assert!(
        bad.connections >= 2,
        "the gateway timed out and tried again: {bad:?}"
    );
    // Each attempt waits out the bind's response timeout (300 ms) before its backoff.
    let bound = attempt_bound(2, span, Duration::from_millis(300));
    assert!(
        bad.connections <= bound && attempts as u64 <= bound + 2,
        "no spin: {} connections, {attempts} attempts, bound {bound}",
        bad.connections
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_never_answered_smpp() {
    bind_never_answered(Protocol::Smpp, "stall-bind-smpp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_never_answered_cmpp() {
    bind_never_answered(Protocol::Cmpp, "stall-bind-cmpp").await;
}

async fn submits_never_answered(protocol: Protocol, name: &str) {
    let span = Duration::from_secs(2);
    let n = 30;
    let (bad, _, attempts) = fault_then_recover(
        protocol,
        name,
        |l| ListenerConfig {
            drop_response_share: 1.0,
            ..l
        },
        span,
        n,
    )
    .await;
    assert!(bad.binds >= 1, "bound: {bad:?}");
    assert!(bad.responses_dropped > 0, "{bad:?}");
    assert_eq!(
        bad.responses_dropped, bad.submits_received,
        "nothing answered: {bad:?}"
    );
    // After a few timeouts in a row the bind drops the silent connection and binds again,
    // with a growing backoff: each connection costs at most one window (10) of copies, plus
    // the parts taken into the room the first timeouts freed.
    let per_connection = 10 + u64::from(SILENT_TIMEOUTS) - 1;
    assert!(
        bad.connections > 2,
        "the gateway gave up on the silent binds and bound again: {bad:?}"
    );
    assert!(
        bad.submits_received <= per_connection * bad.connections,
        "{} submits over {} connections",
        bad.submits_received,
        bad.connections
    );
    assert!(
        attempts as u64 <= attempt_bound(2, span, Duration::from_millis(300)) + 2,
        "no reconnect spin: {attempts}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submits_never_answered_smpp() {
    submits_never_answered(Protocol::Smpp, "stall-submit-smpp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submits_never_answered_cmpp() {
    submits_never_answered(Protocol::Cmpp, "stall-submit-cmpp").await;
}

// ---------------------------------------------------------------------------------------
// 4. A center that answers only some sequence numbers
// ---------------------------------------------------------------------------------------

async fn partial_answers(protocol: Protocol, name: &str) {
    let sim = sim(ListenerConfig {
        drop_response_share: 0.1,
        ..listener(protocol, SocketAddr::from(([127, 0, 0, 1], 0)))
    })
    .await;
    let addr = sim.addrs()[0];
    let mut rig = match protocol {
        Protocol::Cmpp => Rig::start_cmpp(cmpp(name, addr)),
        _ => Rig::start(smpp(name, addr)),
    };
    let n = 200;
    let outcomes = rig.run_all(msgs("partial", n)).await;
    all_sent(&outcomes, n);
    let timeouts = metric(
        "sluice_channel_response_timeouts_total",
        &format!("channel=\"{name}\""),
    );
    rig.stop().await;
    let tally = finish(sim).await;
    figures(std::thread::current().name().unwrap_or("case"), &tally);
    assert!(tally.responses_dropped > 0, "{tally:?}");
    assert!(timeouts > 0.0, "the unanswered submits timed out");
    assert_eq!(tally.unique_messages, n, "every message delivered");
    // Each copy beyond the first follows a response the center dropped, or a reconnect
    // (three silent timeouts in a row drop the bind): what was in its window when it
    // dropped goes again, answered or not — at most one window (10) per reconnect.
    let reconnects = tally.connections.saturating_sub(2);
    assert!(
        tally.duplicates <= tally.responses_dropped + 10 * reconnects,
        "duplicates {} for {} dropped responses and {reconnects} reconnects",
        tally.duplicates,
        tally.responses_dropped
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_answers_smpp() {
    partial_answers(Protocol::Smpp, "partial-smpp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_answers_cmpp() {
    partial_answers(Protocol::Cmpp, "partial-cmpp").await;
}

// ---------------------------------------------------------------------------------------
// 5. Bind refused for the first N binds
// ---------------------------------------------------------------------------------------

async fn bind_refused(protocol: Protocol, name: &str) {
    let refusals = 4;
    let sim = sim(ListenerConfig {
        refuse_binds: refusals,
        ..listener(protocol, SocketAddr::from(([127, 0, 0, 1], 0)))
    })
    .await;
    let addr = sim.addrs()[0];
    let mut rig = match protocol {
        Protocol::Cmpp => Rig::start_cmpp(cmpp(name, addr)),
        _ => Rig::start(smpp(name, addr)),
    };
    let n = 20;
    let outcomes = rig.run_all(msgs("refused", n)).await;
    all_sent(&outcomes, n);
    // Read after the stop: a bind still backing off may count one more attempt (and
    // reach the center) after the last message is sent.
    rig.stop().await;
    let attempts = metric(
        "sluice_channel_connect_attempts_total",
        &format!("channel=\"{name}\""),
    ) as u64;
    let tally = finish(sim).await;
    figures(std::thread::current().name().unwrap_or("case"), &tally);
    assert_eq!(tally.bind_failures, u64::from(refusals), "{tally:?}");
    assert!(tally.binds >= 1);
    assert_eq!(tally.unique_messages, n);
    // One connection (and one log line) per refused bind, each after a backoff: the
    // refusals, then the binds that came up (one or both of the two).
    assert!(
        (u64::from(refusals) + 1..=u64::from(refusals) + 2).contains(&tally.connections),
        "one attempt per backoff: {tally:?}"
    );
    // Every connection the center saw was counted; an attempt cut short by the stop
    // (one per bind at most) is counted without reaching it.
    assert!(
        (tally.connections..=tally.connections + 2).contains(&attempts),
        "attempts {attempts} for {} connections",
        tally.connections
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_refused_then_accepted_smpp() {
    bind_refused(Protocol::Smpp, "refused-smpp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_refused_then_accepted_cmpp() {
    bind_refused(Protocol::Cmpp, "refused-cmpp").await;
}

// ---------------------------------------------------------------------------------------
// Receipts through `serve`: unknown ids, early, duplicated; a center gone.
// ---------------------------------------------------------------------------------------

/// A running gateway with its webhook receiver and simulator.
struct Gateway {
    gw: sluice::serve::Gateway,
    base: String,
    hook: Hook,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

/// The `[[channels]]` table of a CMPP channel "sim" (replaces the SMPP one of
/// [`config_text`]).
fn cmpp_config(data: &std::path::Path, port: u16, hook: &str) -> String {
    config_text(data, port, hook, "").replace(
        "kind = \"smpp\"",
        &format!(
            "kind = \"cmpp\"\nsource_addr = \"{CMPP_SP}\"\nshared_secret = \"{CMPP_SECRET}\"\nversion = \"3.0\"\nservice_id = \"MSGTEST\"\nsrc_id = \"10658000\""
        ),
    )
    .replace("system_id = \"sluice\"\npassword = \"sim\"\n", "")
}

async fn gateway(protocol: Protocol, sim_port: u16) -> Gateway {
    sluice::tls::install_provider();
    let hook = Hook::default();
    let hook_url = start_hook(hook.clone()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let text = match protocol {
        Protocol::Cmpp => cmpp_config(dir.path(), sim_port, &hook_url),
        _ => config_text(dir.path(), sim_port, &hook_url, ""),
    };
    let opts = ServeOptions {
        drain_deadline: Duration::from_secs(5),
        metrics: Some(e2e_support::metrics()),
        receipts: ReceiptConfig {
            // Unknown ids are given up (and counted) after a second, not two minutes.
            hold_for: Duration::from_secs(1),
            sweep_every: Duration::from_millis(100),
            ..ReceiptConfig::default()
        },
        ..ServeOptions::default()
    };
    let gw = start(Config::parse(&text, "faults.toml").expect("config"), opts)
        .await
        .expect("gateway starts");
    let base = format!("http://{}", gw.http_addr());
    Gateway {
        gw,
        base,
        hook,
        client: reqwest::Client::new(),
        _dir: dir,
    }
}

impl Gateway {
    /// Posts `messages`; returns their ids.
    async fn send(&self, messages: Vec<Value>) -> Vec<String> {
        let (status, body) = post(&self.client, &self.base, &json!({ "messages": messages })).await;
        assert_eq!(status, 202, "{body}");
        accepted_ids(&body)
    }

    /// Webhook receipts so far: (id, state) in arrival order.
    fn receipts(&self) -> Vec<(String, String)> {
        self.hook
            .receipts
            .lock()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["id"].as_str().unwrap_or_default().to_owned(),
                    r["state"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    }

    async fn wait_receipts(&self, n: usize, limit: Duration) {
        let done = e2e_support::wait_until(limit, || self.receipts().len() >= n).await;
        assert!(done, "{} of {n} receipts", self.receipts().len());
    }
}

fn numbered(tag: &str, n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| {
            json!({"to": format!("86{:011}", 13_000_000_000u64 + i as u64),
                   "text": format!("{tag}-{i}")})
        })
        .collect()
}

/// Every id has exactly one webhook receipt, `state`, and nothing else arrived.
fn once_each(gw: &Gateway, ids: &[String], state: &str) {
    let got = gw.receipts();
    let mut per: HashMap<&str, usize> = HashMap::new();
    for (id, s) in &got {
        assert_eq!(s, state, "receipt {id}");
        *per.entry(id.as_str()).or_default() += 1;
    }
    let want: HashSet<&str> = ids.iter().map(String::as_str).collect();
    assert_eq!(per.keys().copied().collect::<HashSet<_>>(), want);
    assert!(
        per.values().all(|&c| c == 1),
        "one webhook per message: {per:?}"
    );
}

async fn receipts_case(
    protocol: Protocol,
    dlr: DlrConfig,
    n: usize,
) -> (Gateway, SimHandle, Vec<String>) {
    let sim = sim(ListenerConfig {
        dlr,
        ..listener(protocol, SocketAddr::from(([127, 0, 0, 1], 0)))
    })
    .await;
    let gw = gateway(protocol, sim.addrs()[0].port()).await;
    let ids = gw.send(numbered("dlr", n)).await;
    gw.wait_receipts(n, WAIT).await;
    (gw, sim, ids)
}

// 6. Receipts for unknown ids -------------------------------------------------------------

async fn receipts_for_unknown_ids(protocol: Protocol) {
    let n = 60;
    let (gw, sim, ids) = receipts_case(
        protocol,
        DlrConfig {
            unknown_share: 0.5,
            ..DlrConfig::default()
        },
        n,
    )
    .await;
    let unknown = sim.tally().unknown_receipts;
    assert!(unknown > 0);
    // Given up after `hold_for` (1 s) and counted, once each.
    let counted = e2e_support::wait_until(WAIT, || {
        metric("sluice_receipts_unmatched_total", "channel=\"sim\"") as u64 >= unknown
    })
    .await;
    assert!(counted, "unknown receipts counted");
    once_each(&gw, &ids, "delivered");
    assert_eq!(
        metric("sluice_receipts_total", "") as usize,
        n,
        "only real messages end"
    );
    gw.gw.shutdown().await;
    let tally = finish(sim).await;
    figures(std::thread::current().name().unwrap_or("case"), &tally);
    // Every deliver_sm was answered (ESME_ROK), none had to be resent.
    assert_eq!(tally.dlrs_sent, n as u64 + unknown, "{tally:?}");
    assert_eq!(tally.deliver_resps_received, tally.dlrs_sent, "{tally:?}");
    assert_eq!(
        tally.deliver_resps_refused, 0,
        "answered ESME_ROK: {tally:?}"
    );
    assert_eq!(tally.resent, 0, "{tally:?}");
    assert_eq!(
        metric("sluice_receipts_unmatched_total", "channel=\"sim\"") as u64,
        unknown,
        "counted once each"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_for_unknown_ids_are_answered_and_counted_smpp() {
    receipts_for_unknown_ids(Protocol::Smpp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_for_unknown_ids_are_answered_and_counted_cmpp() {
    receipts_for_unknown_ids(Protocol::Cmpp).await;
}

// 7. Receipts before responses ------------------------------------------------------------

async fn receipts_before_responses(protocol: Protocol) {
    let n = 60;
    let (gw, sim, ids) = receipts_case(
        protocol,
        DlrConfig {
            early_share: 1.0,
            early_lead_ms: 50,
            ..DlrConfig::default()
        },
        n,
    )
    .await;
    // Let stragglers (a second webhook would be a bug) arrive before judging.
    tokio::time::sleep(Duration::from_millis(500)).await;
    once_each(&gw, &ids, "delivered");
    assert_eq!(
        metric("sluice_receipts_total", "") as usize,
        n,
        "counted once"
    );
    assert_eq!(metric("sluice_receipts_unmatched_total", "") as usize, 0);
    gw.gw.shutdown().await;
    let tally = finish(sim).await;
    figures(std::thread::current().name().unwrap_or("case"), &tally);
    assert_eq!(tally.dlrs_sent, n as u64);
    assert_eq!(tally.unique_messages, n as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_before_responses_are_all_correlated_smpp() {
    receipts_before_responses(Protocol::Smpp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_before_responses_are_all_correlated_cmpp() {
    receipts_before_responses(Protocol::Cmpp).await;
}

// 8. Duplicate receipts -------------------------------------------------------------------

async fn duplicate_receipts(protocol: Protocol) {
    let n = 60;
    let (gw, sim, ids) = receipts_case(
        protocol,
        DlrConfig {
            duplicate: true,
            ..DlrConfig::default()
        },
        n,
    )
    .await;
    let all_in = e2e_support::wait_until(WAIT, || sim.tally().dlrs_sent >= 2 * n as u64).await;
    assert!(all_in, "{:?}", sim.tally());
    tokio::time::sleep(Duration::from_millis(500)).await;
    once_each(&gw, &ids, "delivered");
    assert_eq!(
        metric("sluice_receipts_total", "") as usize,
        n,
        "counted once"
    );
    gw.gw.shutdown().await;
    let tally = finish(sim).await;
    figures(std::thread::current().name().unwrap_or("case"), &tally);
    assert_eq!(tally.duplicate_receipts, n as u64);
    assert_eq!(tally.deliver_resps_received, 2 * n as u64, "{tally:?}");
    assert_eq!(
        tally.deliver_resps_refused, 0,
        "copies answered OK: {tally:?}"
    );
    assert_eq!(tally.resent, 0, "every copy answered: {tally:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_receipts_make_one_webhook_smpp() {
    duplicate_receipts(Protocol::Smpp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_receipts_make_one_webhook_cmpp() {
    duplicate_receipts(Protocol::Cmpp).await;
}

// 9. A center gone ------------------------------------------------------------------------

/// The center is gone for `gone`: messages wait; those whose `expires_at` falls inside the
/// outage end `expired` once, with a webhook; the rest go when it is back; the channel
/// reconnects at its backoff's pace meanwhile.
async fn center_gone(gone: Duration) {
    let first = sim(listener(
        Protocol::Smpp,
        SocketAddr::from(([127, 0, 0, 1], 0)),
    ))
    .await;
    let addr = first.addrs()[0];
    let gw = gateway(Protocol::Smpp, addr.port()).await;
    let up = e2e_support::wait_until(WAIT, || first.tally().binds >= 2).await;
    assert!(up, "bound before the outage");
    finish(first).await;
    let before = metric("sluice_channel_connect_attempts_total", "channel=\"sim\"");
    let waiting = gw.send(numbered("waits", 20)).await;
    let expires = jiff::Timestamp::now() + gone / 2;
    let expiring: Vec<Value> = numbered("expires", 10)
        .into_iter()
        .map(|mut m| {
            m["expires_at"] = json!(expires.to_string());
            m
        })
        .collect();
    let expiring = gw.send(expiring).await;
    tokio::time::sleep(gone).await;
    let attempts = metric("sluice_channel_connect_attempts_total", "channel=\"sim\"") - before;
    let back = sim(listener(Protocol::Smpp, addr)).await;
    gw.wait_receipts(30, WAIT + gone).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = gw.receipts();
    let state_of = |id: &String| -> Vec<&str> {
        got.iter()
            .filter(|(r, _)| r == id)
            .map(|(_, s)| s.as_str())
            .collect()
    };
    for id in &waiting {
        assert_eq!(state_of(id), vec!["delivered"], "{id} waited and went");
    }
    for id in &expiring {
        assert_eq!(state_of(id), vec!["expired"], "{id} expired exactly once");
    }
    assert_eq!(got.len(), 30);
    gw.gw.shutdown().await;
    let tally = finish(back).await;
    figures(std::thread::current().name().unwrap_or("case"), &tally);
    assert_eq!(
        tally.unique_messages, 20,
        "expired messages never reached the center"
    );
    assert_eq!(tally.duplicates, 0);
    // 2 binds, serve's default reconnect backoff: each wait at least half its ceiling.
    let bound = 2 * backoff_attempts(Backoff::default(), gone);
    println!("center gone {gone:?}: {attempts} connect attempts (bound {bound})");
    assert!(
        (attempts as u64) <= bound,
        "no spin while gone: {attempts} attempts in {gone:?}, bound {bound}"
    );
    assert!(attempts >= 2.0, "it kept trying: {attempts}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn center_gone_messages_wait_and_expire() {
    center_gone(Duration::from_secs(6)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "10-minute outage; run with SLUICE_SOAK=1 and --run-ignored only"]
async fn center_gone_ten_minutes() {
    if std::env::var("SLUICE_SOAK").as_deref() != Ok("1") {
        println!("skipped: set SLUICE_SOAK=1");
        return;
    }
    center_gone(Duration::from_secs(600)).await;
}

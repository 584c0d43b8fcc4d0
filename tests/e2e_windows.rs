//! Windows, `not_before`, quiet hours and expiry through the whole pipeline on a manual clock:
//! HTTP batch → durable store → dispatch → SMPP → simulator → DLR → webhook, with the gateway
//! started on a [`ManualClock`] (`ServeOptions::clock`). Time moves only when a test calls
//! `set`; nothing sleeps for time and nothing asserts on elapsed real time.
//!
//! Each window and expiry test proves the pipeline is idle before it moves the clock (the
//! dispatcher of a windowed channel has nothing to show while it waits): a message that may go now
//! (on another channel, or on the same channel without a window) is POSTed in the same batch
//! and its receipt must reach the webhook first. Only then does the test check that the
//! waiting message is still `scheduled` and that the simulator saw no submit for it.

use crate::e2e_support;

use std::time::Duration;

use e2e_support::{
    Hook, KEY, accepted_ids, config_text, init_tracing, post, sim_listener, start_hook, start_sim,
    wait_until,
};
use jiff::Timestamp;
use serde_json::{Value, json};
use sluice::clock::ManualClock;
use sluice::config::Config;
use sluice::serve::{Gateway, ServeOptions, start};
use sluice::store::{MessageId, MessageState};
use sluice_loadtest::SimHandle;

/// Generous bound for socket-driven outcomes (binds, submits, receipts, webhooks).
const WAIT: Duration = Duration::from_secs(30);

/// A destination routed to channel "open" (no windows, no quiet hours) on the same simulator.
const OPEN_TO: &str = "+447700900123";

/// The TOML after channel "sim"'s own keys: `sim_keys` (windows, quiet hours) still belong to
/// channel "sim"; then channel "open" and the route of `+44` to it.
fn extra(sim_keys: &str) -> String {
    format!(
        r#"{sim_keys}
[[channels]]
name = "open"
kind = "smpp"
host = "127.0.0.1"
port = SIM_PORT
system_id = "sluice"
password = "sim"
binds = 1
window = 16
rate = 100000
burst = 1000
response_timeout_ms = 2000
[[routes]]
prefixes = ["+44"]
channel = "open"
"#
    )
}

struct Rig {
    gw: Gateway,
    sim: SimHandle,
    hook: Hook,
    base: String,
    client: reqwest::Client,
    clock: ManualClock,
    config: String,
    housekeeping_every: Duration,
    dir: tempfile::TempDir,
}

fn ts(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

async fn gateway(config: &str, clock: &ManualClock, housekeeping_every: Duration) -> Gateway {
    let cfg = Config::parse(config, "e2e_windows.toml").expect("config");
    let mut opts = ServeOptions {
        drain_deadline: Duration::from_secs(5),
        housekeeping_every,
        clock: clock.clone().into(),
        ..ServeOptions::default()
    };
    opts.receipts.webhook.backoff_base = Duration::from_millis(50);
    opts.receipts.webhook.backoff_max = Duration::from_millis(200);
    opts.receipts.webhook.idle_poll = Duration::from_millis(50);
    start(cfg, opts).await.expect("gateway starts")
}

/// A simulator, a webhook receiver and a gateway on a manual clock stopped at `start_at`.
async fn rig(sim_keys: &str, start_at: &str) -> Rig {
    rig_with(sim_listener(), sim_keys, start_at, Duration::from_secs(5)).await
}

async fn rig_with(
    listener: sluice_loadtest::ListenerConfig,
    sim_keys: &str,
    start_at: &str,
    housekeeping_every: Duration,
) -> Rig {
    init_tracing();
    let sim = start_sim(listener, Some(11)).await;
    let sim_port = sim.addrs()[0].port();
    let hook = Hook::default();
    let hook_url = start_hook(hook.clone()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_text(dir.path(), sim_port, &hook_url, &extra(sim_keys))
        .replace("SIM_PORT", &sim_port.to_string());
    let clock = ManualClock::new(ts(start_at));
    let gw = gateway(&config, &clock, housekeeping_every).await;
    let base = format!("http://{}", gw.http_addr());
    Rig {
        gw,
        sim,
        hook,
        base,
        client: reqwest::Client::new(),
        clock,
        config,
        housekeeping_every,
        dir,
    }
}

impl Rig {
    /// POSTs `messages` as one batch; returns their gateway ids in order.
    async fn send(&self, messages: Value) -> Vec<String> {
        let (status, body) = post(&self.client, &self.base, &json!({ "messages": messages })).await;
        assert_eq!(status, 202, "{body}");
        accepted_ids(&body)
    }

    fn receipts(&self) -> Vec<Value> {
        self.hook.receipts.lock().unwrap().clone()
    }

    /// The webhook receipt of `client_ref`, waiting for it (panics with context if none).
    async fn receipt(&self, client_ref: &str) -> Value {
        let found = wait_until(WAIT, || {
            self.receipts()
                .iter()
                .any(|r| r["client_ref"] == client_ref)
        })
        .await;
        assert!(
            found,
            "no receipt for {client_ref}; got {:?}; tally {:?}",
            self.receipts(),
            self.sim.tally()
        );
        self.receipts()
            .into_iter()
            .find(|r| r["client_ref"] == client_ref)
            .expect("receipt")
    }

    fn receipts_for(&self, client_ref: &str) -> usize {
        self.receipts()
            .iter()
            .filter(|r| r["client_ref"] == client_ref)
            .count()
    }

    async fn status(&self, id: &str) -> Value {
        self.client
            .get(format!("{}/v1/messages/{id}", self.base))
            .bearer_auth(KEY)
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json")
    }

    /// The stored due time of `id`.
    fn due(&self, id: &str) -> Timestamp {
        let id: MessageId = id.parse().expect("message id");
        let m = self.gw.store().get(id).expect("read").expect("stored");
        sluice::clock::from_ms(m.due_ms)
    }

    /// `id` is still waiting (API state `scheduled`, store state too).
    async fn assert_waiting(&self, id: &str) {
        let s = self.status(id).await;
        assert_eq!(s["state"], "scheduled", "{s}");
        assert!(s.get("submitted_at").is_none(), "{s}");
        let parsed: MessageId = id.parse().expect("message id");
        let m = self.gw.store().get(parsed).expect("read").expect("stored");
        assert_eq!(m.state, MessageState::Scheduled);
        assert!(m.parts.iter().all(|p| p.center_id.is_none()), "{m:?}");
    }

    fn submits(&self) -> u64 {
        self.sim.tally().submits_received
    }

    /// Shuts the gateway down and starts a new one on the same data directory and config,
    /// on `clock`.
    async fn restart(mut self, clock: ManualClock) -> Self {
        self.gw.shutdown().await;
        self.gw = gateway(&self.config, &clock, self.housekeeping_every).await;
        self.base = format!("http://{}", self.gw.http_addr());
        self.clock = clock;
        self
    }

    async fn stop(self) -> sluice_loadtest::TallySnapshot {
        self.gw.shutdown().await;
        let tally = self.sim.shutdown().await.expect("sim shutdown");
        drop(self.dir);
        tally
    }
}

/// A receipt's `submitted_at` (the dispatcher's clock when the center accepted every part).
fn submitted_at(r: &Value) -> Timestamp {
    r["submitted_at"]
        .as_str()
        .expect("submitted_at")
        .parse()
        .expect("rfc3339")
}

/// Issue 5 (a): a channel window 09:00-21:00 (Asia/Shanghai), a marketing message at 22:00
/// waits for 09:00 the next day and goes only once the clock gets there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_window_holds_marketing_until_it_opens() {
    let rig = rig(r#"windows = ["09:00-21:00"]"#, "2026-11-26T22:00:00+08:00").await;
    let ids = rig
        .send(json!([
            {"to": "13800138000", "text": "evening offer", "lane": "marketing", "client_ref": "win"},
            {"to": OPEN_TO, "text": "other channel", "lane": "otp", "client_ref": "open"},
        ]))
        .await;
    assert_eq!(rig.due(&ids[0]), ts("2026-11-27T09:00:00+08:00"));
    // Idle: the unwindowed message went through the whole pipeline first.
    let open = rig.receipt("open").await;
    assert_eq!(open["state"], "delivered", "{open}");
    rig.assert_waiting(&ids[0]).await;
    assert_eq!(rig.submits(), 1, "only the open channel's message was sent");

    // Still closed one minute before the window: nothing moves.
    rig.clock.set(ts("2026-11-27T08:59:00+08:00"));
    let ids2 = rig
        .send(json!([{"to": OPEN_TO, "text": "second probe", "client_ref": "open2"}]))
        .await;
    rig.receipt("open2").await;
    assert_eq!(ids2.len(), 1);
    rig.assert_waiting(&ids[0]).await;
    assert_eq!(rig.submits(), 2);

    rig.clock.set(ts("2026-11-27T09:00:01+08:00"));
    let r = rig.receipt("win").await;
    assert_eq!(r["state"], "delivered", "{r}");
    assert_eq!(r["stat"], "DELIVRD", "{r}");
    assert!(submitted_at(&r) >= ts("2026-11-27T09:00:00+08:00"), "{r}");
    assert_eq!(rig.status(&ids[0]).await["state"], "delivered");
    let tally = rig.stop().await;
    assert_eq!(tally.submits_received, 3, "{tally:?}");
    assert_eq!(tally.duplicates, 0, "{tally:?}");
}

/// Issue 5 (b): a message's own `window` and `not_before`, given over HTTP, on a channel
/// without windows: the plain otp message in the same batch goes at once on the same channel
/// (so the same dispatcher has run), the others at their own times, in clock order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_window_and_not_before_release_in_clock_order() {
    let rig = rig("", "2026-11-26T12:00:00+08:00").await;
    let ids = rig
        .send(json!([
            {"to": "13800138001", "text": "evening window", "window": "18:00-19:00", "client_ref": "w"},
            {"to": "13800138002", "text": "from three", "not_before": "2026-11-26T15:00:00+08:00", "client_ref": "nb"},
            {"to": "13800138003", "text": "both", "window": "18:00-19:00",
             "not_before": "2026-11-26T18:30:00+08:00", "client_ref": "both"},
            {"to": "13800138004", "text": "right now", "lane": "otp", "client_ref": "now"},
        ]))
        .await;
    assert_eq!(rig.due(&ids[0]), ts("2026-11-26T18:00:00+08:00"));
    assert_eq!(rig.due(&ids[1]), ts("2026-11-26T15:00:00+08:00"));
    assert_eq!(rig.due(&ids[2]), ts("2026-11-26T18:30:00+08:00"));
    assert_eq!(rig.receipt("now").await["state"], "delivered");
    for id in &ids[..3] {
        rig.assert_waiting(id).await;
    }
    assert_eq!(rig.submits(), 1);

    rig.clock.set(ts("2026-11-26T15:00:01+08:00"));
    let r = rig.receipt("nb").await;
    assert_eq!(r["state"], "delivered", "{r}");
    assert!(submitted_at(&r) >= ts("2026-11-26T15:00:00+08:00"), "{r}");
    rig.assert_waiting(&ids[0]).await;
    rig.assert_waiting(&ids[2]).await;
    assert_eq!(rig.submits(), 2);

    rig.clock.set(ts("2026-11-26T18:00:01+08:00"));
    let r = rig.receipt("w").await;
    assert_eq!(r["state"], "delivered", "{r}");
    assert!(submitted_at(&r) >= ts("2026-11-26T18:00:00+08:00"), "{r}");
    rig.assert_waiting(&ids[2]).await;
    assert_eq!(rig.submits(), 3);

    rig.clock.set(ts("2026-11-26T18:30:00+08:00"));
    let r = rig.receipt("both").await;
    assert_eq!(r["state"], "delivered", "{r}");
    assert!(submitted_at(&r) >= ts("2026-11-26T18:30:00+08:00"), "{r}");
    let tally = rig.stop().await;
    assert_eq!(tally.submits_received, 4, "{tally:?}");
    assert_eq!(tally.duplicates, 0, "{tally:?}");
}

/// Issue 5 (c): expiry on the injected clock, never submitted. A message whose window opens
/// only after its `expires_at` has no instant to go: it waits, due at its expiry, and ends
/// EXPIRED when the clock gets there. One that waits for its `not_before` and is overtaken by
/// its `expires_at` in one jump of the clock ends the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_on_the_manual_clock_never_submits() {
    let rig = rig("", "2026-11-26T12:00:00+08:00").await;
    let ids = rig
        .send(json!([
            {"to": "13800138011", "text": "window after expiry", "window": "13:00-14:00",
             "expires_at": "2026-11-26T12:10:00+08:00", "client_ref": "late-window"},
            {"to": "13800138012", "text": "overtaken", "not_before": "2026-11-26T12:05:00+08:00",
             "expires_at": "2026-11-26T12:10:00+08:00", "client_ref": "overtaken"},
            {"to": "13800138013", "text": "probe", "client_ref": "now"},
        ]))
        .await;
    assert_eq!(rig.due(&ids[0]), ts("2026-11-26T12:10:00+08:00"));
    assert_eq!(rig.due(&ids[1]), ts("2026-11-26T12:05:00+08:00"));
    assert_eq!(rig.receipt("now").await["state"], "delivered");
    rig.assert_waiting(&ids[0]).await;
    rig.assert_waiting(&ids[1]).await;
    assert_eq!(rig.submits(), 1, "only the probe");

    // Jump over the due time (12:05) and the expiry (12:10) at once.
    rig.clock.set(ts("2026-11-26T12:11:00+08:00"));
    for client_ref in ["late-window", "overtaken"] {
        let r = rig.receipt(client_ref).await;
        assert_eq!(r["state"], "expired", "{r}");
        assert_eq!(r["stat"], "EXPIRED", "{r}");
        assert!(r.get("submitted_at").is_none(), "{r}");
    }
    for id in &ids[..2] {
        let s = rig.status(id).await;
        assert_eq!(s["state"], "expired", "{s}");
        assert!(
            s.get("submitted_at").is_none(),
            "never accepted by the center: {s}"
        );
        let parts = s["parts"].as_array().map_or(0, Vec::len);
        assert_eq!(parts, 0, "no part has a center id: {s}");
    }
    // Idle again after the expiry: a new probe goes, the expired messages still do not.
    rig.send(json!([{"to": "13800138014", "text": "probe 2", "client_ref": "now2"}]))
        .await;
    rig.receipt("now2").await;
    let tally = rig.stop().await;
    assert_eq!(
        tally.submits_received, 2,
        "expired messages never reach the center: {tally:?}"
    );
}

/// Issue 5 (d): channel quiet hours 22:00-08:00 hold a message sent at 23:00 until 08:00.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_hours_hold_until_they_end() {
    let rig = rig(
        r#"quiet_hours = ["22:00-08:00"]"#,
        "2026-11-26T23:00:00+08:00",
    )
    .await;
    let ids = rig
        .send(json!([
            {"to": "13800138021", "text": "after the quiet", "lane": "notification", "client_ref": "quiet"},
            {"to": OPEN_TO, "text": "other channel", "client_ref": "open"},
        ]))
        .await;
    assert_eq!(rig.due(&ids[0]), ts("2026-11-27T08:00:00+08:00"));
    assert_eq!(rig.receipt("open").await["state"], "delivered");
    rig.assert_waiting(&ids[0]).await;
    assert_eq!(rig.submits(), 1);

    rig.clock.set(ts("2026-11-27T08:00:01+08:00"));
    let r = rig.receipt("quiet").await;
    assert_eq!(r["state"], "delivered", "{r}");
    assert!(submitted_at(&r) >= ts("2026-11-27T08:00:00+08:00"), "{r}");
    let tally = rig.stop().await;
    assert_eq!(tally.submits_received, 2, "{tally:?}");
    assert_eq!(tally.duplicates, 0, "{tally:?}");
}

/// A message waiting for its channel window survives a gateway restart on the same data
/// directory and is delivered exactly once when the (new process's) clock reaches the window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_message_survives_a_restart_and_goes_once() {
    let rig = rig(r#"windows = ["09:00-21:00"]"#, "2026-11-26T22:00:00+08:00").await;
    let ids = rig
        .send(json!([
            {"to": "13800138031", "text": "across a restart", "lane": "marketing", "client_ref": "kept"},
            {"to": OPEN_TO, "text": "before restart", "client_ref": "open"},
        ]))
        .await;
    rig.receipt("open").await;
    rig.assert_waiting(&ids[0]).await;

    // The new process starts later in the night, still outside the window.
    let rig = rig
        .restart(ManualClock::new(ts("2026-11-27T02:00:00+08:00")))
        .await;
    assert_eq!(rig.due(&ids[0]), ts("2026-11-27T09:00:00+08:00"));
    rig.send(json!([{"to": OPEN_TO, "text": "after restart", "client_ref": "open2"}]))
        .await;
    rig.receipt("open2").await;
    rig.assert_waiting(&ids[0]).await;
    assert_eq!(rig.submits(), 2);

    rig.clock.set(ts("2026-11-27T09:00:01+08:00"));
    let r = rig.receipt("kept").await;
    assert_eq!(r["state"], "delivered", "{r}");
    // A last probe through the same pipeline: once its receipt is in, a second submit or a
    // second receipt of the kept message would have shown up too.
    rig.send(json!([{"to": OPEN_TO, "text": "last probe", "client_ref": "open3"}]))
        .await;
    rig.receipt("open3").await;
    assert_eq!(rig.receipts_for("kept"), 1, "{:?}", rig.receipts());
    let tally = rig.stop().await;
    assert_eq!(tally.submits_received, 4, "{tally:?}");
    assert_eq!(tally.duplicates, 0, "{tally:?}");
}

/// Lease recovery reads the same clock dispatch wrote the lease deadline with. On a manual
/// clock years behind real time, a recovery on the system clock would find every lease long
/// expired and put an in-flight message back in its queue (to be sent twice). The center here
/// answers each submit after 1 s and housekeeping runs every 10 ms, so such a recovery would
/// have ~100 chances while the message is in flight.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_recovery_reads_the_injected_clock() {
    let mut listener = sim_listener();
    listener.latency = sluice_loadtest::dist::Delay::Fixed { ms: 1000.0 };
    let rig = rig_with(
        listener,
        "",
        "2020-06-01T12:00:00Z",
        Duration::from_millis(10),
    )
    .await;
    let ids = rig
        .send(json!([{"to": "13800138051", "text": "slow center", "client_ref": "slow"}]))
        .await;
    let id: MessageId = ids[0].parse().expect("message id");
    let state = || rig.gw.store().get(id).expect("read").expect("stored").state;
    assert!(
        wait_until(WAIT, || state() != MessageState::Queued).await,
        "never leased"
    );
    // Waiting for an event that must not happen: bounded, and shorter than the center's delay,
    // so the message is in flight (or already sent) for all of it.
    let requeued = wait_until(Duration::from_millis(800), || {
        state() == MessageState::Queued
    })
    .await;
    assert!(!requeued, "a live lease was recovered: {:?}", state());
    let r = rig.receipt("slow").await;
    assert_eq!(r["state"], "delivered", "{r}");
    let tally = rig.stop().await;
    assert_eq!(tally.submits_received, 1, "{tally:?}");
}

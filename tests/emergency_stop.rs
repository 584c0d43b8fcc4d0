//! The emergency stop and the pause switches end to end on 127.0.0.1: `serve` with a
//! simulator started by the test, on a [`ManualClock`] that holds scheduled messages queued
//! until the test moves it. The simulator sends no receipt during a test (its DLR delay is an
//! hour), so a message that reached it stays `sent`.

use crate::e2e_support;

use std::collections::BTreeMap;
use std::time::Duration;

use e2e_support::{
    Hook, accepted_ids, init_tracing, sim_listener, start_hook, start_sim, wait_until,
};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use sluice::clock::ManualClock;
use sluice::config::Config;
use sluice::receipt::Notification;
use sluice::serve::{Gateway, ServeOptions, start};
use sluice::store::{
    BackendKind, Lane, Message, MessageState, Payload, StopFilter, WriterConfig, open_store,
};
use sluice_loadtest::SimHandle;
use tokio::sync::broadcast;

const WAIT: Duration = Duration::from_secs(30);
const ACME: &str = "acme-key";
const BETA: &str = "beta-key";
const OPS: &str = "ops-key";
const START: &str = "2026-12-01T02:00:00Z";

fn config(dir: &std::path::Path, sim_port: u16, hook: &str) -> String {
    let h = sluice::config::hash_api_key;
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
api_keys = ["{acme}"]
rate = 1000000
burst = 1000000
default_sender = "10690000"
webhook_url = "{hook}/receipts"
webhook_secret = "{secret}"
[[accounts]]
name = "beta"
api_keys = ["{beta}"]
rate = 1000000
burst = 1000000
default_sender = "10691111"
[[accounts]]
name = "ops"
api_keys = ["{ops}"]
rate = 1
operator = true
[[channels]]
name = "sim"
kind = "smpp"
host = "127.0.0.1"
port = {sim_port}
system_id = "sluice"
password = "sim"
binds = 1
window = 64
rate = 100000
burst = 1000
response_timeout_ms = 2000
[[routes]]
channel = "sim"
"#,
        data = dir.display(),
        acme = h(ACME),
        beta = h(BETA),
        ops = h(OPS),
        secret = e2e_support::WEBHOOK_SECRET,
    )
}

struct Rig {
    gw: Gateway,
    sim: SimHandle,
    hook: Hook,
    clock: ManualClock,
    notes: broadcast::Receiver<Notification>,
    base: String,
    client: reqwest::Client,
    config: String,
    dir: tempfile::TempDir,
}

async fn gateway(config: &str, clock: &ManualClock) -> Gateway {
    let cfg = Config::parse(config, "emergency_stop.toml").expect("config");
    let mut opts = ServeOptions {
        drain_deadline: Duration::from_secs(5),
        clock: clock.clone().into(),
        ..ServeOptions::default()
    };
    opts.receipts.webhook.backoff_base = Duration::from_millis(50);
    opts.receipts.webhook.backoff_max = Duration::from_millis(200);
    opts.receipts.webhook.idle_poll = Duration::from_millis(50);
    start(cfg, opts).await.expect("gateway starts")
}

/// The simulator, the webhook receiver and the config; `before` runs on the data directory
/// before the gateway starts (to leave a store behind as a previous run would).
async fn rig_with(before: impl FnOnce(&std::path::Path)) -> Rig {
    init_tracing();
    let mut listener = sim_listener();
    listener.dlr.delay = sluice_loadtest::dist::Delay::Fixed { ms: 3_600_000.0 };
    let sim = start_sim(listener, Some(5)).await;
    let hook = Hook::default();
    let hook_url = start_hook(hook.clone()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path(), sim.addrs()[0].port(), &hook_url);
    before(dir.path());
    let clock = ManualClock::new(START.parse().expect("ts"));
    let gw = gateway(&config, &clock).await;
    let notes = gw.receipts().subscribe();
    Rig {
        base: format!("http://{}", gw.http_addr()),
        gw,
        sim,
        hook,
        clock,
        notes,
        client: reqwest::Client::new(),
        config,
        dir,
    }
}

async fn rig() -> Rig {
    rig_with(|_| {}).await
}

impl Rig {
    async fn call(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        e2e_support::call(&self.client, &self.base, method, path, key, body).await
    }

    /// POSTs `n` messages of `key`'s account with `tags`, due after `delay` (none: now);
    /// returns their ids.
    async fn send(
        &self,
        key: &str,
        n: usize,
        tags: Value,
        delay: Option<SignedDuration>,
    ) -> Vec<String> {
        let not_before = delay.map(|d| (self.clock_now() + d).to_string());
        let messages: Vec<Value> = (0..n)
            .map(|i| {
                let mut m = json!({"to": format!("+86138{i:08}"), "text": "sale", "lane": "marketing", "tags": tags});
                if let Some(t) = &not_before {
                    m["not_before"] = json!(t);
                }
                m
            })
            .collect();
        let (status, body) = self
            .call(
                "POST",
                "/v1/messages",
                Some(key),
                Some(json!({"messages": messages})),
            )
            .await;
        assert_eq!(status, 202, "{body}");
        accepted_ids(&body)
    }

    fn clock_now(&self) -> Timestamp {
        use sluice::clock::Clock;
        self.clock.now()
    }

    async fn state(&self, key: &str, id: &str) -> String {
        let (s, b) = self
            .call("GET", &format!("/v1/messages/{id}"), Some(key), None)
            .await;
        assert_eq!(s, 200, "{b}");
        b["state"].as_str().expect("state").to_owned()
    }

    fn submits(&self) -> u64 {
        self.sim.tally().submits_received
    }

    /// Receipt webhooks received so far: id → states (in arrival order).
    fn hooked(&self) -> BTreeMap<String, Vec<String>> {
        let mut by_id: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for r in self.hook.receipts.lock().unwrap().iter() {
            by_id
                .entry(r["id"].as_str().unwrap_or_default().to_owned())
                .or_default()
                .push(r["state"].as_str().unwrap_or_default().to_owned());
        }
        by_id
    }

    /// In-process receipt notifications received so far: id → states.
    fn notified(&mut self, into: &mut BTreeMap<String, Vec<MessageState>>) {
        while let Ok(n) = self.notes.try_recv() {
            if let Notification::Receipt(r) = n {
                into.entry(r.id.to_string()).or_default().push(r.state);
            }
        }
    }

    async fn stop(self) {
        self.gw.shutdown().await;
        let _ = self.sim.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_by_ids_and_by_tag_with_sent_and_queued_mixed() {
    let mut rig = rig().await;
    let later = Some(SignedDuration::from_hours(1));
    // Three of task 42 go out now and stay `sent` (no receipt comes).
    let sent = rig.send(ACME, 3, json!({"task": "42"}), None).await;
    assert!(
        wait_until(WAIT, || rig.submits() == 3).await,
        "sent: {}",
        rig.submits()
    );
    for id in &sent {
        let mut ok = false;
        for _ in 0..500 {
            if rig.state(ACME, id).await == "sent" {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(ok, "{id} reached sent");
    }
    // Held by the clock: 20 more of task 42, 2 of task 7, and 5 of beta's own task 42.
    let queued = rig.send(ACME, 20, json!({"task": "42"}), later).await;
    let other_task = rig.send(ACME, 2, json!({"task": "7"}), later).await;
    let beta = rig.send(BETA, 5, json!({"task": "42"}), later).await;

    // No credential → 401.
    let (s, _) = rig
        .call(
            "POST",
            "/v1/messages/cancel",
            None,
            Some(json!({"ids": []})),
        )
        .await;
    assert_eq!(s, 401);
    let (s, _) = rig
        .call(
            "POST",
            "/v1/messages/cancel",
            Some(ACME),
            Some(json!({"tag": {}})),
        )
        .await;
    assert_eq!(s, 422);

    // By ids: task 7's two, a sent one, a bogus id and beta's message (not ours: unknown).
    let (s, b) = rig
        .call(
            "POST",
            "/v1/messages/cancel",
            Some(ACME),
            Some(json!({"ids": [other_task[0], other_task[1], sent[0], "nope", beta[0]]})),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["done"], true);
    assert_eq!(b["cancelled"], 2);
    assert_eq!(b["already_submitted"], 1);
    assert_eq!(b["unknown"], 2);
    assert_eq!(rig.state(ACME, &other_task[0]).await, "cancelled");

    // By tag: 202 at once, then progress until done.
    let (s, b) = rig
        .call(
            "POST",
            "/v1/messages/cancel",
            Some(ACME),
            Some(json!({"tag": {"task": "42"}})),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    let stop = b["stop"].as_u64().expect("stop id");
    let path = format!("/v1/messages/cancel/{stop}");
    let mut done = Value::Null;
    for _ in 0..1500 {
        let (s, b) = rig.call("GET", &path, Some(ACME), None).await;
        assert_eq!(s, 200);
        if b["done"] == true {
            done = b;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(done["cancelled"], 20, "{done}");
    assert_eq!(done["already_submitted"], 3, "{done}");
    // Another account cannot see the stop.
    let (s, _) = rig.call("GET", &path, Some(BETA), None).await;
    assert_eq!(s, 404);
    for id in &queued {
        assert_eq!(rig.state(ACME, id).await, "cancelled");
    }
    for id in &sent {
        assert_eq!(rig.state(ACME, id).await, "sent");
    }

    // Webhooks and in-process notifications: `cancelled` once per cancelled message.
    let cancelled: Vec<&String> = queued.iter().chain(&other_task).collect();
    assert!(
        wait_until(WAIT, || rig.hooked().len() == cancelled.len()).await,
        "webhooks: {:?}",
        rig.hooked().len()
    );
    let hooked = rig.hooked();
    let mut notified = BTreeMap::new();
    assert!(
        wait_until(WAIT, || {
            rig.notified(&mut notified);
            notified.len() == cancelled.len()
        })
        .await
    );
    for id in &cancelled {
        assert_eq!(hooked[*id], vec!["cancelled".to_owned()], "{id}");
        assert_eq!(notified[*id], vec![MessageState::Cancelled], "{id}");
    }

    // Time passes: beta's task 42 goes out, nothing more of acme's.
    rig.clock.advance(SignedDuration::from_hours(2));
    assert!(
        wait_until(WAIT, || rig.submits() == 3 + 5).await,
        "{}",
        rig.submits()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rig.submits(), 8);
    assert_eq!(rig.hooked().len(), cancelled.len());
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_survives_a_restart_mid_sweep() {
    let start: Timestamp = START.parse().expect("ts");
    let now = u64::try_from(start.as_millisecond()).expect("ms");
    let mut stop_id = 0;
    let mut ids = Vec::new();
    // The previous run: 50 of task 42 queued for later, the stop recorded and swept 10 deep,
    // then the process went away.
    let mut rig = rig_with(|dir| {
        let store =
            open_store(BackendKind::Redb, dir, WriterConfig::default(), now).expect("store");
        let msgs: Vec<Message> = (0..50)
            .map(|i| {
                let mut m = Message::new(
                    store.ids().next(now),
                    "acme",
                    format!("+86139{i:08}"),
                    Payload::Text {
                        text: "sale".into(),
                        encoding: Default::default(),
                    },
                    "sim",
                    now + 3_600_000,
                    now,
                );
                m.lane = Lane::Marketing;
                m.tags = BTreeMap::from([("task".to_owned(), "42".to_owned())]);
                m
            })
            .collect();
        ids = msgs.iter().map(|m| m.id.to_string()).collect();
        store
            .submit_blocking(
                msgs.into_iter()
                    .map(|m| sluice::store::Op::Insert(Box::new(m)))
                    .collect(),
            )
            .expect("insert");
        let rec = futures::executor::block_on(store.stop(
            "acme",
            StopFilter::Tag {
                key: "task".into(),
                value: "42".into(),
            },
            now,
            600_000,
        ))
        .expect("store")
        .expect("valid");
        let rec = futures::executor::block_on(store.stop_step(rec.id, now, 10))
            .expect("store")
            .expect("stop");
        assert!(!rec.done());
        assert_eq!(rec.counts.cancelled, 10);
        stop_id = rec.id;
    })
    .await;
    // This run resumes the sweep on its own.
    let path = format!("/v1/messages/cancel/{stop_id}");
    let mut done = Value::Null;
    for _ in 0..1500 {
        let (s, b) = rig.call("GET", &path, Some(ACME), None).await;
        assert_eq!(s, 200, "{b}");
        if b["done"] == true {
            done = b;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(done["cancelled"], 50, "{done}");
    for id in &ids {
        assert_eq!(rig.state(ACME, id).await, "cancelled");
    }
    assert!(
        wait_until(WAIT, || rig.hooked().len() == 50).await,
        "{}",
        rig.hooked().len()
    );
    assert!(
        rig.hooked()
            .values()
            .all(|s| s == &vec!["cancelled".to_owned()])
    );
    let mut notified = BTreeMap::new();
    tokio::time::sleep(Duration::from_millis(200)).await;
    rig.notified(&mut notified);
    assert!(notified.values().all(|s| s.len() == 1));
    rig.clock.advance(SignedDuration::from_hours(2));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rig.submits(), 0, "nothing of the stopped task went out");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_switches_hold_sends_until_resumed() {
    let rig = rig().await;
    // Credentials: none → 401, a plain account → 403, an operator → 200.
    let (s, _) = rig.call("POST", "/v1/channels/sim/pause", None, None).await;
    assert_eq!(s, 401);
    let (s, _) = rig
        .call("POST", "/v1/channels/sim/pause", Some(ACME), None)
        .await;
    assert_eq!(s, 403);
    let (s, _) = rig.call("GET", "/v1/pauses", Some(BETA), None).await;
    assert_eq!(s, 403);
    let (s, _) = rig
        .call("POST", "/v1/channels/nope/pause", Some(OPS), None)
        .await;
    assert_eq!(s, 404);
    let (s, b) = rig
        .call("POST", "/v1/channels/sim/pause", Some(OPS), None)
        .await;
    assert_eq!(
        (s, &b["paused"], &b["changed"]),
        (200, &json!(true), &json!(true)),
        "{b}"
    );

    // Paused channel: nothing is submitted, the messages stay queued.
    let ids = rig.send(ACME, 5, json!({"task": "1"}), None).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rig.submits(), 0);
    for id in &ids {
        assert_eq!(rig.state(ACME, id).await, "queued");
    }
    let (s, b) = rig.call("GET", "/v1/pauses", Some(OPS), None).await;
    assert_eq!(s, 200);
    assert_eq!(b, json!({"channels": ["sim"], "accounts": []}));

    // The switch survives a restart.
    let mut rig = {
        let Rig {
            gw,
            sim,
            hook,
            clock,
            client,
            config,
            dir,
            ..
        } = rig;
        gw.shutdown().await;
        let gw = gateway(&config, &clock).await;
        Rig {
            base: format!("http://{}", gw.http_addr()),
            notes: gw.receipts().subscribe(),
            gw,
            sim,
            hook,
            clock,
            client,
            config,
            dir,
        }
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rig.submits(), 0);
    let (_, b) = rig.call("GET", "/v1/pauses", Some(OPS), None).await;
    assert_eq!(b["channels"], json!(["sim"]));

    // Resume: they go.
    let (s, _) = rig
        .call("POST", "/v1/channels/sim/resume", Some(OPS), None)
        .await;
    assert_eq!(s, 200);
    assert!(
        wait_until(WAIT, || rig.submits() == 5).await,
        "{}",
        rig.submits()
    );

    // An account's pause holds its messages on every channel; others still go.
    let (s, _) = rig
        .call("POST", "/v1/accounts/acme/pause", Some(OPS), None)
        .await;
    assert_eq!(s, 200);
    let held = rig.send(ACME, 3, json!({"task": "2"}), None).await;
    rig.send(BETA, 2, json!({"task": "2"}), None).await;
    assert!(
        wait_until(WAIT, || rig.submits() == 7).await,
        "{}",
        rig.submits()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rig.submits(), 7);
    for id in &held {
        assert_eq!(rig.state(ACME, id).await, "queued");
    }
    let (_, b) = rig.call("GET", "/v1/pauses", Some(OPS), None).await;
    assert_eq!(b, json!({"channels": [], "accounts": ["acme"]}));
    let (s, _) = rig
        .call("POST", "/v1/accounts/acme/resume", Some(OPS), None)
        .await;
    assert_eq!(s, 200);
    assert!(
        wait_until(WAIT, || rig.submits() == 10).await,
        "{}",
        rig.submits()
    );
    let mut ignored = BTreeMap::new();
    rig.notified(&mut ignored);
    rig.stop().await;
}

//! The operators' JSON the console reads, end to end on 127.0.0.1: `serve` with a simulator
//! started by the test (receipts `DELIVRD` at once), real store, real HTTP.
//!
//! - `GET /v1/channels`: a channel up with its rate and window, then paused with its backlog
//!   after `POST /v1/channels/{name}/pause`; the SSE stream yields events;
//! - `GET /v1/messages/cancel/preview`: the count equals what the stop then cancels;
//! - `GET /v1/lookup/messages`: by id and by number, the timeline in order after delivery;
//! - credentials: 401 without one, 403 for an account that is not an operator.

use crate::e2e_support;

use std::time::Duration;

use e2e_support::{accepted_ids, init_tracing, sim_listener, start_sim, wait_until};
use futures::StreamExt;
use serde_json::{Value, json};
use sluice::config::Config;
use sluice::serve::{Gateway, ServeOptions, start};
use sluice_loadtest::SimHandle;

const WAIT: Duration = Duration::from_secs(30);
const ACME: &str = "acme-key";
const OPS: &str = "ops-key";

fn config(dir: &std::path::Path, sim_port: u16) -> String {
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
rate = 5000
burst = 100
response_timeout_ms = 2000
[[routes]]
channel = "sim"
"#,
        data = dir.display(),
        acme = h(ACME),
        ops = h(OPS),
    )
}

struct Rig {
    gw: Gateway,
    sim: SimHandle,
    base: String,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

async fn rig() -> Rig {
    init_tracing();
    let sim = start_sim(sim_listener(), Some(7)).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg =
        Config::parse(&config(dir.path(), sim.addrs()[0].port()), "ops_api.toml").expect("config");
    let gw = start(
        cfg,
        ServeOptions {
            drain_deadline: Duration::from_secs(5),
            ..ServeOptions::default()
        },
    )
    .await
    .expect("gateway starts");
    Rig {
        base: format!("http://{}", gw.http_addr()),
        gw,
        sim,
        client: reqwest::Client::new(),
        _dir: dir,
    }
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

    /// POSTs one message per destination in `to` with `tags`; returns their ids.
    async fn send(&self, to: &[&str], tags: Value) -> Vec<String> {
        let messages: Vec<Value> = to
            .iter()
            .map(|t| json!({"to": t, "text": "sale", "lane": "marketing", "tags": tags}))
            .collect();
        let (status, body) = self
            .call(
                "POST",
                "/v1/messages",
                Some(ACME),
                Some(json!({"messages": messages})),
            )
            .await;
        assert_eq!(status, 202, "{body}");
        accepted_ids(&body)
    }

    /// The channel view's entry for `sim`.
    async fn sim_channel(&self) -> Value {
        let (s, b) = self.call("GET", "/v1/channels", Some(OPS), None).await;
        assert_eq!(s, 200, "{b}");
        let list = b["channels"].as_array().expect("channels").clone();
        assert_eq!(list.len(), 1, "{b}");
        list[0].clone()
    }

    async fn wait_channel(&self, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        for _ in 0..1500 {
            last = self.sim_channel().await;
            if cond(&last) {
                return last;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{what}: {last}");
    }

    async fn wait_state(&self, id: &str, want: &str) {
        for _ in 0..1500 {
            let (s, b) = self
                .call("GET", &format!("/v1/messages/{id}"), Some(ACME), None)
                .await;
            assert_eq!(s, 200, "{b}");
            if b["state"] == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{id} never reached {want}");
    }

    async fn stop(self) {
        self.gw.shutdown().await;
        let _ = self.sim.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_routes_want_an_operator() {
    let rig = rig().await;
    for path in [
        "/v1/channels",
        "/v1/channels/stream",
        "/v1/lookup/messages?id=1",
    ] {
        let (s, _) = rig.call("GET", path, None, None).await;
        assert_eq!(s, 401, "{path} without a key");
        let r = rig
            .client
            .get(format!("{}{path}", rig.base))
            .send()
            .await
            .expect("request");
        assert!(
            r.headers().contains_key("www-authenticate"),
            "{path}: the shared 401"
        );
        let (s, _) = rig.call("GET", path, Some("wrong"), None).await;
        assert_eq!(s, 401, "{path} with an unknown key");
        let (s, _) = rig.call("GET", path, Some(ACME), None).await;
        assert_eq!(s, 403, "{path} with a non-operator's key");
    }
    // The preview is the account's own: its key, not an operator's.
    let (s, _) = rig
        .call("GET", "/v1/messages/cancel/preview?tag=task:1", None, None)
        .await;
    assert_eq!(s, 401);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_view_pause_backlog_stream_and_cancel_preview() {
    let rig = rig().await;
    let up = rig
        .wait_channel("bind up", |c| c["binds_up"].as_u64() == Some(1))
        .await;
    assert_eq!(up["name"], "sim");
    assert_eq!(up["protocol"], "smpp");
    assert_eq!(up["binds_configured"], 1);
    assert_eq!(up["rate_limit"], 5000);
    assert!(up["rate_aimd"].as_u64().is_some_and(|r| r > 0), "{up}");
    assert_eq!(up["paused"], false);
    assert_eq!(up["window"]["size"], 64);
    assert_eq!(up["backlog"]["marketing"], 0);
    assert!(
        up["last_errors"].as_array().is_some_and(Vec::is_empty),
        "{up}"
    );

    // Paused: what is sent now stays queued and shows as backlog.
    let (s, b) = rig
        .call("POST", "/v1/channels/sim/pause", Some(OPS), None)
        .await;
    assert_eq!(s, 200, "{b}");
    let to: Vec<String> = (0..7).map(|i| format!("+8613800{i:06}")).collect();
    let to: Vec<&str> = to.iter().map(String::as_str).collect();
    rig.send(&to[..5], json!({"task": "42"})).await;
    rig.send(&to[5..], json!({"task": "9"})).await;
    let paused = rig
        .wait_channel("paused with backlog", |c| {
            c["paused"] == true && c["backlog"]["marketing"] == 7
        })
        .await;
    assert_eq!(paused["backlog"]["otp"], 0, "{paused}");
    assert_eq!(rig.sim.tally().submits_received, 0);

    // The stream: at least two `channels` events with the same body.
    let r = rig
        .client
        .get(format!("{}/v1/channels/stream", rig.base))
        .bearer_auth(OPS)
        .send()
        .await
        .expect("stream");
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        r.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"))
    );
    let mut body = r.bytes_stream();
    let mut text = String::new();
    let mut events = Vec::new();
    while events.len() < 2 {
        let chunk = tokio::time::timeout(WAIT, body.next())
            .await
            .expect("an event within the wait")
            .expect("stream open")
            .expect("chunk");
        text.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = text.find("\n\n") {
            let frame: String = text.drain(..end + 2).collect();
            if frame.lines().any(|l| l == "event: channels") {
                let data = frame
                    .lines()
                    .find_map(|l| l.strip_prefix("data: "))
                    .expect("data line");
                events.push(serde_json::from_str::<Value>(data).expect("JSON data"));
            }
        }
    }
    drop(body);
    for e in &events {
        assert_eq!(e["channels"][0]["name"], "sim", "{e}");
        assert_eq!(e["channels"][0]["paused"], true, "{e}");
        assert_eq!(e["channels"][0]["backlog"]["marketing"], 7, "{e}");
    }

    // The preview counts task 42's five, not task 9's two; the stop then cancels five.
    let (s, b) = rig
        .call(
            "GET",
            "/v1/messages/cancel/preview?tag=task:42",
            Some(ACME),
            None,
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let would = b["would_cancel"].as_u64().expect("would_cancel");
    assert_eq!(would, 5);
    let (s, _) = rig
        .call(
            "GET",
            "/v1/messages/cancel/preview?tag=colour:red",
            Some(ACME),
            None,
        )
        .await;
    assert_eq!(s, 422, "a tag name no stop may use");
    let (s, _) = rig
        .call(
            "GET",
            "/v1/messages/cancel/preview?tag=task",
            Some(ACME),
            None,
        )
        .await;
    assert_eq!(s, 422, "no value");
    let (s, b) = rig
        .call(
            "POST",
            "/v1/messages/cancel",
            Some(ACME),
            Some(json!({"tag": {"task": "42"}})),
        )
        .await;
    assert_eq!(s, 202, "{b}");
    let path = format!("/v1/messages/cancel/{}", b["stop"]);
    let mut done = Value::Null;
    for _ in 0..1500 {
        let (_, b) = rig.call("GET", &path, Some(ACME), None).await;
        if b["done"] == true {
            done = b;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(done["cancelled"].as_u64(), Some(would), "{done}");
    let (_, b) = rig
        .call(
            "GET",
            "/v1/messages/cancel/preview?tag=task:42",
            Some(ACME),
            None,
        )
        .await;
    assert_eq!(b["would_cancel"], 0, "nothing left to cancel");

    // Resumed: the rest goes out and the backlog empties.
    let (s, _) = rig
        .call("POST", "/v1/channels/sim/resume", Some(OPS), None)
        .await;
    assert_eq!(s, 200);
    let resumed = rig
        .wait_channel("resumed and drained", |c| {
            c["paused"] == false && c["backlog"]["marketing"] == 0
        })
        .await;
    assert_eq!(resumed["binds_up"], 1);
    assert!(
        wait_until(WAIT, || rig.sim.tally().submits_received == 2).await,
        "task 9's two were sent"
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_by_id_and_number_with_timeline_after_delivery() {
    let rig = rig().await;
    let first = rig.send(&["+8613912345678"], json!({})).await.remove(0);
    rig.wait_state(&first, "delivered").await;
    let second = rig.send(&["+8613912345678"], json!({})).await.remove(0);
    rig.wait_state(&second, "delivered").await;
    rig.send(&["+8613900000000"], json!({})).await;

    // By id: the GET /v1/messages/{id} body plus account and timeline.
    let (s, b) = rig
        .call(
            "GET",
            &format!("/v1/lookup/messages?id={first}"),
            Some(OPS),
            None,
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let list = b["messages"].as_array().expect("messages");
    assert_eq!(list.len(), 1, "{b}");
    let m = &list[0];
    let (_, own) = rig
        .call("GET", &format!("/v1/messages/{first}"), Some(ACME), None)
        .await;
    for field in [
        "id",
        "state",
        "to",
        "channel",
        "parts",
        "receipts",
        "created_at",
    ] {
        assert_eq!(m[field], own[field], "{field}");
    }
    assert_eq!(m["account"], "acme");
    let timeline = m["timeline"].as_array().expect("timeline");
    let events: Vec<&str> = timeline
        .iter()
        .map(|e| e["event"].as_str().expect("event"))
        .collect();
    assert_eq!(
        events,
        ["accepted", "submitted", "receipt", "delivered"],
        "{m}"
    );
    let center_id = m["parts"][0]["center_id"].as_str().expect("center id");
    assert!(
        timeline[1]["detail"]
            .as_str()
            .is_some_and(|d| d.contains(center_id)),
        "{m}"
    );
    // Stamped in RFC 3339, the final state when the message was done.
    for e in timeline {
        let at = e["at"].as_str().expect("at");
        assert!(at.parse::<jiff::Timestamp>().is_ok(), "{at}");
    }
    assert_eq!(timeline[0]["at"], m["created_at"]);
    assert_eq!(timeline[3]["at"], m["done_at"]);

    // By number, as stored: newest first, limited.
    // Query-encoded: a bare `+` would read as a space.
    let to = m["to"].as_str().expect("to").replace('+', "%2B");
    let (s, b) = rig
        .call(
            "GET",
            &format!("/v1/lookup/messages?to={to}&limit=10"),
            Some(OPS),
            None,
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let ids: Vec<&str> = b["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, [second.as_str(), first.as_str()]);
    assert_eq!(b["messages"][0]["timeline"][3]["event"], "delivered");
    let (_, b) = rig
        .call(
            "GET",
            &format!("/v1/lookup/messages?to={to}&limit=1"),
            Some(OPS),
            None,
        )
        .await;
    assert_eq!(b["messages"].as_array().map(Vec::len), Some(1));
    assert_eq!(b["messages"][0]["id"], second.as_str());
    for bad in [
        format!("?to={to}&limit=101"),
        format!("?to={to}&limit=0"),
        "?".to_owned(),
        format!("?id={first}&to={to}"),
    ] {
        let (s, _) = rig
            .call("GET", &format!("/v1/lookup/messages{bad}"), Some(OPS), None)
            .await;
        assert_eq!(s, 422, "{bad}");
    }
    let (_, b) = rig
        .call("GET", "/v1/lookup/messages?id=nope", Some(OPS), None)
        .await;
    assert_eq!(b["messages"], json!([]));

    // The delivered receipts fed the channel's latency window (receipts that raced their
    // submit response are counted when the receipt layer's sweep matches them).
    let c = rig
        .wait_channel("receipt latency", |c| {
            c["receipt_latency_ms"]["p50"].is_u64()
        })
        .await;
    assert!(c["sent_per_s"].as_f64().is_some(), "{c}");
    assert!(c["receipt_latency_ms"]["p99"].is_u64(), "{c}");
    rig.stop().await;
}

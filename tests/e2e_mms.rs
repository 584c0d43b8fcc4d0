//! MMS end to end on 127.0.0.1: `POST /v1/messages` (kind mms, image + text) → content store
//! → dispatch → the MM7 channel → the simulator's MMSC (SubmitReq, tally of recipients and
//! content bytes) → DeliveryReportReq / DeliverReq back to the gateway's `/mm7/{channel}` →
//! receipt layer → the account's receipt and MO webhooks. Plus multi-recipient SubmitReqs and
//! kill -9 of the `sluice serve` binary during an MMS campaign.
//!
//! The MMSC needs the gateway's URL before the gateway needs the MMSC's, so the gateway's HTTP
//! port is picked first ([`free_port`]) and the MMSC started with `vasp_url` pointing at it.

use crate::e2e_support;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use base64::Engine as _;
use e2e_support::{
    Hook, KEY, Server, accepted_ids, free_port, init_tracing, post, start_hook, start_sim,
    wait_healthy, wait_until,
};
use serde_json::{Value, json};
use sluice::config::Config;
use sluice::serve::{Gateway, ServeOptions, start};
use sluice_loadtest::config::{Protocol, ReplyRule};
use sluice_loadtest::dist::Delay;
use sluice_loadtest::{ListenerConfig, SimHandle};

const WAIT: Duration = Duration::from_secs(60);

/// A real 1×1 PNG (8-bit RGBA), as a handset or a CMS would upload it.
const PNG_B64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

/// The account's default sender and the channel's `sender`: the MMSC's replies go to it, and
/// the gateway attributes them to the account by it.
const SENDER: &str = "10658000";

/// An MMSC listener whose reports and MOs go to the gateway's channel `mmsc` on `http_port`.
fn mmsc_listener(http_port: u16) -> ListenerConfig {
    let mut l = ListenerConfig {
        name: "mmsc".into(),
        protocol: Protocol::Mm7,
        addr: ([127, 0, 0, 1], 0).into(),
        ..ListenerConfig::default()
    };
    l.mm7.vasp_url = Some(format!("http://127.0.0.1:{http_port}/mm7/mmsc"));
    l.mm7.resend_after_ms = 200;
    // Reports keep coming until the gateway takes them (a killed gateway is down for a while).
    l.mm7.max_attempts = 0;
    l
}

/// A gateway config whose one channel is the MM7 channel `mmsc` to `mmsc_url`, reached by a
/// `kinds = ["mms"]` route; receipts and replies go to `hook`.
fn config(
    data: &std::path::Path,
    http_port: u16,
    mmsc_url: &str,
    hook: &str,
    window: u32,
    max_recipients: u32,
    rate: u32,
) -> String {
    let hash = sluice::config::hash_api_key(KEY);
    format!(
        r#"
timezone = "Asia/Shanghai"
[listeners]
http = "127.0.0.1:{http_port}"
[storage]
path = "{data}"
[simulator]
enabled = false
[[accounts]]
name = "acme"
api_keys = ["{hash}"]
rate = 1000000
burst = 1000000
default_sender = "{SENDER}"
webhook_url = "{hook}/receipts"
mo_url = "{hook}/mo"
webhook_secret = "{secret}"
[[channels]]
name = "mmsc"
kind = "mm7"
url = "{mmsc_url}"
vasp_id = "901234"
vas_id = "9012340001"
service_code = "MMSTEST"
sender = "{SENDER}"
max_recipients = {max_recipients}
window = {window}
rate = {rate}
burst = 100
response_timeout_ms = 5000
[[routes]]
kinds = ["mms"]
channel = "mmsc"
"#,
        data = data.display(),
        secret = e2e_support::WEBHOOK_SECRET,
    )
}

/// One MMS (a PNG slide with a text) to `to`.
fn mms(to: &str, text: &str) -> Value {
    json!({"kind": "mms", "to": to, "subject": "Spring offer",
           "parts": [{"content_type": "image/png", "name": "a.png", "base64": PNG_B64},
                     {"content_type": "text/plain;charset=utf-8", "text": text}]})
}

struct Rig {
    gw: Gateway,
    sim: SimHandle,
    hook: Hook,
    base: String,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

async fn rig(listener: impl FnOnce(u16) -> ListenerConfig, window: u32, max_rcpt: u32) -> Rig {
    rig_with(listener, window, max_rcpt, |t| t).await
}

/// [`rig`] with the gateway config's text passed through `edit` first.
async fn rig_with(
    listener: impl FnOnce(u16) -> ListenerConfig,
    window: u32,
    max_rcpt: u32,
    edit: impl FnOnce(String) -> String,
) -> Rig {
    init_tracing();
    let http_port = free_port();
    let sim = start_sim(listener(http_port), Some(15)).await;
    let mmsc_url = format!("http://{}/mm7", sim.addrs()[0]);
    let hook = Hook::default();
    let hook_url = start_hook(hook.clone()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let text = config(
        dir.path(),
        http_port,
        &mmsc_url,
        &hook_url,
        window,
        max_rcpt,
        100_000,
    );
    let cfg = Config::parse(&edit(text), "mms.toml").expect("config");
    let mut opts = ServeOptions {
        drain_deadline: Duration::from_secs(5),
        ..ServeOptions::default()
    };
    opts.receipts.webhook.backoff_base = Duration::from_millis(50);
    opts.receipts.webhook.idle_poll = Duration::from_millis(50);
    let gw = start(cfg, opts).await.expect("gateway starts");
    let base = format!("http://{}", gw.http_addr());
    Rig {
        gw,
        sim,
        hook,
        base,
        client: reqwest::Client::new(),
        _dir: dir,
    }
}

impl Rig {
    fn receipts(&self) -> Vec<Value> {
        self.hook.receipts.lock().unwrap().clone()
    }

    async fn status(&self, id: &str) -> Value {
        get_status(&self.client, &self.base, id).await
    }

    /// Waits until the account's receipt outbox is empty (every receipt POSTed and answered).
    async fn outbox_drained(&self) -> bool {
        wait_until(WAIT, || {
            self.gw
                .store()
                .outbox("acme", 0, 10)
                .is_ok_and(|o| o.is_empty())
        })
        .await
    }

    async fn stop(self) -> sluice_loadtest::TallySnapshot {
        self.gw.shutdown().await;
        self.sim.shutdown().await.expect("sim shutdown")
    }
}

async fn get_status(client: &reqwest::Client, base: &str, id: &str) -> Value {
    client
        .get(format!("{base}/v1/messages/{id}"))
        .bearer_auth(KEY)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json")
}

fn ids(body: &Value) -> Vec<String> {
    accepted_ids(body)
}

/// An MMS with a PNG and a text reaches the MMSC (which counts its decoded content bytes),
/// the MMSC's DeliveryReportReq settles it `delivered`, and the receipt webhook gets it once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mms_with_image_and_text_is_delivered_and_receipted_once() {
    let rig = rig(mmsc_listener, 4, 1).await;
    let text = "Spring offer: 20% off, reply STOP to opt out";
    let (status, body) = post(
        &rig.client,
        &rig.base,
        &json!({"messages": [mms("13800138000", text)]}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let id = ids(&body).remove(0);
    assert!(
        wait_until(WAIT, || !rig.receipts().is_empty()).await,
        "no receipt; tally {:?}",
        rig.sim.tally()
    );
    let mut state = Value::Null;
    for _ in 0..500 {
        state = rig.status(&id).await;
        if state["state"] == "delivered" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(state["state"], "delivered", "{state}");
    assert_eq!(state["kind"], "mms", "{state}");
    assert_eq!(state["channel"], "mmsc", "{state}");
    assert_eq!(state["mms"]["subject"], "Spring offer", "{state}");
    let center = state["parts"][0]["center_id"].as_str().unwrap_or("");
    assert!(
        center.ends_with("/13800138000"),
        "center id is MessageID/recipient: {state}"
    );
    assert!(rig.outbox_drained().await, "receipt outbox never drained");
    let receipts = rig.receipts();
    assert_eq!(receipts.len(), 1, "exactly one receipt: {receipts:?}");
    assert_eq!(receipts[0]["id"], id.as_str(), "{receipts:?}");
    assert_eq!(receipts[0]["state"], "delivered", "{receipts:?}");
    let tally = rig.stop().await;
    assert_eq!(tally.submits_received, 1, "{tally:?}");
    assert_eq!(tally.unique_messages, 1, "{tally:?}");
    assert_eq!(tally.duplicates, 0, "{tally:?}");
    assert_eq!(tally.dlrs_sent, 1, "{tally:?}");
    // The MMSC decoded the content's leaves: the SMIL, the PNG and the text.
    let png = base64::engine::general_purpose::STANDARD
        .decode(PNG_B64)
        .expect("png");
    assert!(
        tally.content_bytes > (png.len() + text.len()) as u64,
        "content bytes {} for a {}-byte PNG and a {}-byte text: {tally:?}",
        tally.content_bytes,
        png.len(),
        text.len()
    );
}

/// The MMSC's reply rule answers an MMS containing "VOTE" with a DeliverReq; it reaches the
/// account's MO webhook with the handset as `from`, the account's sender as `to`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mo_deliver_req_reaches_the_mo_webhook_attributed() {
    let rig = rig(
        |port| {
            let mut l = mmsc_listener(port);
            l.mo.reply = vec![ReplyRule {
                contains: "VOTE".into(),
                probability: 1.0,
                text: "Y 参加".into(),
                delay: Delay::Zero,
            }];
            l
        },
        4,
        1,
    )
    .await;
    let (status, body) = post(
        &rig.client,
        &rig.base,
        &json!({"messages": [mms("13800138001", "VOTE for your favourite")]}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert!(
        wait_until(WAIT, || !rig.hook.mo.lock().unwrap().is_empty()).await,
        "no MO; tally {:?}",
        rig.sim.tally()
    );
    let mo = rig.hook.mo.lock().unwrap()[0].clone();
    assert_eq!(mo["from"], "13800138001", "{mo}");
    assert_eq!(mo["to"], SENDER, "{mo}");
    assert_eq!(mo["text"], "Y 参加", "{mo}");
    let tally = rig.stop().await;
    assert_eq!(tally.mo_scheduled, 1, "{tally:?}");
    assert!(tally.mo_sent >= 1, "{tally:?}");
}

/// 50 recipients of one content on a channel with `max_recipients = 10` and one request at a
/// time go out in a handful of SubmitReqs with several `To` each, and every recipient gets its
/// own delivery report and receipt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_recipient_submit_reqs_get_per_recipient_receipts() {
    let rig = rig(
        |port| {
            let mut l = mmsc_listener(port);
            // A request in flight long enough for the rest to queue behind it.
            l.latency = Delay::Fixed { ms: 100.0 };
            l
        },
        1,
        10,
    )
    .await;
    let messages: Vec<Value> = (0..50)
        .map(|i| mms(&format!("1380013{i:04}"), "one content for fifty"))
        .collect();
    let (status, body) = post(&rig.client, &rig.base, &json!({ "messages": messages })).await;
    assert_eq!(status, 202, "{body}");
    let ids: HashSet<String> = ids(&body).into_iter().collect();
    assert_eq!(ids.len(), 50);
    assert!(
        wait_until(WAIT, || rig.receipts().len() >= 50).await,
        "{} receipts; tally {:?}",
        rig.receipts().len(),
        rig.sim.tally()
    );
    assert!(rig.outbox_drained().await, "receipt outbox never drained");
    let receipts = rig.receipts();
    let got: HashSet<String> = receipts
        .iter()
        .map(|r| r["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(receipts.len(), 50, "one receipt each: {receipts:?}");
    assert_eq!(got, ids, "every recipient its own receipt");
    assert!(receipts.iter().all(|r| r["state"] == "delivered"));
    let digests: HashSet<String> = {
        let mut d = HashSet::new();
        for id in ids.iter().take(5) {
            let s = rig.status(id).await;
            d.insert(s["mms"]["content_digest"].as_str().unwrap_or("").to_owned());
        }
        d
    };
    assert_eq!(digests.len(), 1, "one content: {digests:?}");
    let tally = rig.stop().await;
    assert_eq!(tally.unique_messages, 50, "{tally:?}");
    assert_eq!(tally.duplicates, 0, "{tally:?}");
    assert_eq!(tally.dlrs_sent, 50, "{tally:?}");
    println!("50 recipients in {} SubmitReqs", tally.submits_received);
    // 50 recipients / 10 per request = 5; the first request may leave before the rest queue.
    assert!(
        (5..=7).contains(&tally.submits_received),
        "{} SubmitReqs for 50 recipients: {tally:?}",
        tally.submits_received
    );
}

/// The MM7 channel's `max_content_bytes` reaches ingress through `serve`: a batch with one MMS
/// over it is refused (422) naming that line and both sizes, and nothing of it is sent; the
/// same batch without that line is accepted and delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_size_limit_refuses_the_line_through_serve() {
    let rig = rig_with(mmsc_listener, 4, 1, |t| {
        t.replace(
            "response_timeout_ms = 5000",
            "response_timeout_ms = 5000\nmax_content_bytes = 2000",
        )
    })
    .await;
    let small = mms("13800138000", "fits");
    let big = mms("13800138001", &"x".repeat(3000));
    let (status, body) = post(
        &rig.client,
        &rig.base,
        &json!({"messages": [small.clone(), big]}),
    )
    .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["line"], 2, "{body}");
    assert_eq!(body["field"], "parts", "{body}");
    let reason = body["reason"].as_str().unwrap_or("");
    assert!(reason.contains("2000"), "reason names the limit: {body}");
    let (status, body) = post(&rig.client, &rig.base, &json!({"messages": [small]})).await;
    assert_eq!(status, 202, "{body}");
    assert!(
        wait_until(WAIT, || !rig.receipts().is_empty()).await,
        "no receipt; tally {:?}",
        rig.sim.tally()
    );
    let tally = rig.stop().await;
    assert_eq!(
        tally.submits_received, 1,
        "only the accepted MMS went out: {tally:?}"
    );
    assert_eq!(tally.unique_messages, 1, "{tally:?}");
}

/// Every file under `dir` whose name is `name`.
fn find_file(dir: &std::path::Path, name: &str) -> Option<std::path::PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if p.is_dir() {
            if let Some(f) = find_file(&p, name) {
                return Some(f);
            }
        } else if p.file_name().is_some_and(|n| n == name) {
            return Some(p);
        }
    }
    None
}

/// kill -9 of the `sluice serve` binary while it sends an MMS campaign (thousands of
/// recipients of one content, 10 per SubmitReq): after a restart every acknowledged message
/// ends delivered, the MMSC saw every recipient at least once with duplicates bounded by what
/// the killed process held in flight, and the content file stayed while messages referenced
/// it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_during_an_mms_campaign_loses_nothing() {
    let total = 3000usize;
    let batch = 500usize;
    let (window, max_rcpt) = (4u32, 10u32);
    let dir = tempfile::tempdir().expect("tempdir");
    let http_port = free_port();
    let sim = start_sim(
        {
            let mut l = mmsc_listener(http_port);
            l.latency = Delay::Fixed { ms: 20.0 };
            l
        },
        None,
    )
    .await;
    let hook = Hook::default();
    let hook_url = start_hook(hook.clone()).await;
    let data = dir.path().join("data");
    let text = config(
        &data,
        http_port,
        &format!("http://{}/mm7", sim.addrs()[0]),
        &hook_url,
        window,
        max_rcpt,
        // Slow enough that the kill lands mid-send.
        400,
    );
    let config = dir.path().join("sluice.toml");
    std::fs::write(&config, text).expect("write config");
    let log = dir.path().join("serve.log");
    let base = format!("http://127.0.0.1:{http_port}");
    sluice::tls::install_provider();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");

    let server = Server::spawn(&config, &log);
    wait_healthy(&client, &base).await;
    let mut acked: HashMap<String, String> = HashMap::new(); // client_ref → id
    for b in 0..total / batch {
        let messages: Vec<Value> = (b * batch..(b + 1) * batch)
            .map(|i| {
                let mut m = mms(&format!("86{:011}", 13_000_000_000u64 + i as u64), "Sale!");
                m["client_ref"] = json!(format!("m{i}"));
                m
            })
            .collect();
        let (status, body) = post(&client, &base, &json!({ "messages": messages })).await;
        assert_eq!(status, 202, "{body}");
        for r in body["results"].as_array().expect("results") {
            acked.insert(
                r["client_ref"].as_str().expect("client_ref").to_owned(),
                r["id"].as_str().expect("id").to_owned(),
            );
        }
    }
    assert_eq!(acked.len(), total);
    let first = acked.values().next().expect("an id").clone();
    let digest = get_status(&client, &base, &first).await["mms"]["content_digest"]
        .as_str()
        .expect("content digest")
        .to_owned();
    assert!(
        find_file(&data, &digest).is_some(),
        "content file {digest} stored"
    );
    // Kill once the MMSC has seen part of the campaign (not all of it).
    assert!(
        wait_until(WAIT, || sim.tally().unique_messages >= (total / 5) as u64).await,
        "sending never started: {:?}",
        sim.tally()
    );
    server.kill9();
    let at_kill = sim.tally().unique_messages;
    assert!(
        (at_kill as usize) < total,
        "the kill came after the whole campaign was sent; slow the channel down"
    );
    assert!(
        find_file(&data, &digest).is_some(),
        "content file {digest} kept across kill -9"
    );
    let server = Server::spawn(&config, &log);
    wait_healthy(&client, &base).await;

    // Everything acknowledged reaches the MMSC and is receipted: fail after 30 s without
    // progress (a debug build on a busy machine is slow).
    let mut last = (0u64, 0usize);
    let mut last_progress = tokio::time::Instant::now();
    let done = loop {
        let unique = sim.tally().unique_messages;
        let receipted: HashSet<String> = hook
            .receipts
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r["state"] == "delivered")
            .filter_map(|r| r["id"].as_str().map(str::to_owned))
            .collect();
        if unique as usize >= total && receipted.len() >= total {
            break true;
        }
        if (unique, receipted.len()) != last {
            last = (unique, receipted.len());
            last_progress = tokio::time::Instant::now();
        }
        if last_progress.elapsed() > Duration::from_secs(30) {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let tally = sim.tally();
    let logs = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        done,
        "unique {} / receipted {} of {total}; tally {tally:?}\nlogs:\n{logs}",
        last.0, last.1
    );
    assert_eq!(tally.unique_messages as usize, total, "{tally:?}");
    // Re-sent after the kill: at most what the killed process held leased: the dispatcher's
    // lease batch (256), the queue to the channel and the worker's recipients (its capacity:
    // (window + 1) × max_recipients each) and the outcomes not yet committed (2 × queue + 64).
    let queue = ((window + 1) * max_rcpt) as u64;
    let bound = 256 + queue + queue + (2 * queue + 64);
    assert!(
        tally.duplicates <= bound,
        "duplicates {} > {bound}: {tally:?}",
        tally.duplicates
    );
    // Every acknowledged id is delivered, and the content is still referenced and present.
    for id in acked.values() {
        let s = get_status(&client, &base, id).await;
        assert_eq!(s["state"], "delivered", "{id}: {s}");
        assert_eq!(s["mms"]["content_digest"], digest.as_str(), "{id}: {s}");
    }
    assert!(
        find_file(&data, &digest).is_some(),
        "content file {digest} still there while messages reference it"
    );
    assert!(server.terminate(), "graceful stop after the campaign");
    let _ = sim.shutdown().await;
    println!("mms kill -9: killed at {at_kill} unique, tally {tally:?}");
}

/// The embedded default config (`sluice serve` with no file), on free ports: its simulator
/// opens an MMSC for channel `mmsc`, and an MMS POSTed with the development key is
/// delivered through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_config_delivers_an_mms_through_its_simulator() {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let (http, metrics, smpp, cmpp, mm7) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let text = sluice::config::EMBEDDED
        .replace(
            "http = \"127.0.0.1:8080\"",
            &format!("http = \"127.0.0.1:{http}\""),
        )
        .replace(
            "metrics = \"127.0.0.1:9090\"",
            &format!("metrics = \"127.0.0.1:{metrics}\""),
        )
        .replace(
            "path = \"./data\"",
            &format!("path = \"{}\"", dir.path().display()),
        )
        .replace("port = 2775", &format!("port = {smpp}"))
        .replace("cmpp_port = 7890", &format!("cmpp_port = {cmpp}"))
        .replace("mm7_port = 8088", &format!("mm7_port = {mm7}"))
        .replace("127.0.0.1:8088/mm7", &format!("127.0.0.1:{mm7}/mm7"));
    let cfg = Config::parse(&text, "embedded.toml").expect("embedded config parses");
    let gw = start(cfg, ServeOptions::default())
        .await
        .expect("gateway starts");
    let base = format!("http://{}", gw.http_addr());
    let client = reqwest::Client::new();
    let r = client
        .post(format!("{base}/v1/messages"))
        .bearer_auth(sluice::config::EMBEDDED_DEV_KEY)
        .json(&json!({"messages": [mms("+8613800138000", "hello from the README")]}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 202);
    let body: Value = r.json().await.expect("json");
    let id = ids(&body).remove(0);
    let mut state = Value::Null;
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        state = client
            .get(format!("{base}/v1/messages/{id}"))
            .bearer_auth(sluice::config::EMBEDDED_DEV_KEY)
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        if state["state"] == "delivered" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(state["state"], "delivered", "{state}");
    assert_eq!(state["channel"], "mmsc", "{state}");
    let sim = gw.simulator().expect("embedded simulator");
    let mmsc = sim
        .addr_of(Protocol::Mm7)
        .expect("the embedded simulator opened an MMSC");
    assert_eq!(mmsc.port(), mm7);
    let tally = sim.tally();
    assert_eq!(tally.unique_messages, 1, "{tally:?}");
    assert!(tally.dlrs_sent >= 1, "{tally:?}");
    gw.shutdown().await;
}

/// The embedded MMSC reports to the HTTP listener: a setup where it could not (port 0, or
/// inbound auth whose password only exists as a hash) is refused at start, naming the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_mmsc_setups_it_cannot_honour_are_refused_at_start() {
    init_tracing();
    let dir = tempfile::tempdir().expect("tempdir");
    let mm7 = free_port();
    let base = sluice::config::EMBEDDED
        .replace(
            "metrics = \"127.0.0.1:9090\"",
            &format!("metrics = \"127.0.0.1:{}\"", free_port()),
        )
        .replace(
            "path = \"./data\"",
            &format!("path = \"{}\"", dir.path().display()),
        )
        .replace("port = 2775", &format!("port = {}", free_port()))
        .replace("cmpp_port = 7890", &format!("cmpp_port = {}", free_port()))
        .replace("mm7_port = 8088", &format!("mm7_port = {mm7}"))
        .replace("127.0.0.1:8088/mm7", &format!("127.0.0.1:{mm7}/mm7"));
    let port0 = base.replace("http = \"127.0.0.1:8080\"", "http = \"127.0.0.1:0\"");
    let cfg = Config::parse(&port0, "embedded.toml").expect("parses");
    let err = start(cfg, ServeOptions::default())
        .await
        .expect_err("port 0 refused");
    assert!(err.to_string().contains("listeners.http"), "{err}");

    let authed = base
        .replace(
            "http = \"127.0.0.1:8080\"",
            &format!("http = \"127.0.0.1:{}\"", free_port()),
        )
        .replacen(
            &format!("url = \"http://127.0.0.1:{mm7}/mm7\""),
            &format!(
                "url = \"http://127.0.0.1:{mm7}/mm7\"\ninbound_username = \"mmsc\"\n\
                 inbound_password_sha256 = \"{}\"",
                "ab".repeat(32)
            ),
            1,
        );
    assert!(
        authed.contains("inbound_username"),
        "the channel's url line moved"
    );
    let cfg = Config::parse(&authed, "embedded.toml").expect("parses");
    let err = start(cfg, ServeOptions::default())
        .await
        .expect_err("inbound auth refused");
    assert!(
        err.to_string().contains("channels.mmsc.inbound_username"),
        "{err}"
    );
}

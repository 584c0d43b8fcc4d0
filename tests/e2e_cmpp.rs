//! End to end over CMPP on 127.0.0.1: HTTP batch → durable store → dispatch → CMPP SP
//! connections → the simulator's ISMG → status reports (DELIVER, Registered_Delivery = 1) →
//! receipt layer → webhook, for CMPP 2.0 and 3.0; plus flow control (Result 8), replies (MO
//! DELIVER) and the embedded simulator's ISMG in `serve`.

use crate::e2e_support;

use std::time::Duration;

use e2e_support::{Hook, KEY, accepted_ids, init_tracing, post, start_hook, start_sim, wait_until};
use serde_json::{Value, json};
use sluice::config::Config;
use sluice::serve::{Gateway, ServeOptions, start};
use sluice_loadtest::config::Protocol;
use sluice_loadtest::{ListenerConfig, SimHandle};

const WAIT: Duration = Duration::from_secs(30);

fn cmpp_listener() -> ListenerConfig {
    ListenerConfig {
        name: "ismg".into(),
        protocol: Protocol::Cmpp,
        addr: ([127, 0, 0, 1], 0).into(),
        accounts: vec![sluice_loadtest::config::Account {
            system_id: "901234".into(),
            password: "s3cret".into(),
            max_binds: 0,
        }],
        ..ListenerConfig::default()
    }
}

/// A gateway config whose one channel is CMPP `version` to 127.0.0.1:`port`.
fn config(data: &std::path::Path, port: u16, hook: &str, version: &str, extra: &str) -> String {
    let hash = sluice::config::hash_api_key(KEY);
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
api_keys = ["{hash}"]
rate = 1000000
burst = 1000000
default_sender = "106580001234"
webhook_url = "{hook}/receipts"
mo_url = "{hook}/mo"
webhook_secret = "{secret}"
[[channels]]
name = "ismg"
kind = "cmpp"
host = "127.0.0.1"
port = {port}
source_addr = "901234"
shared_secret = "s3cret"
version = "{version}"
service_id = "MSGTEST"
src_id = "10658000"
binds = 2
window = 16
rate = 100000
burst = 1000
response_timeout_ms = 2000
{extra}
[[routes]]
channel = "ismg"
"#,
        data = data.display(),
        secret = e2e_support::WEBHOOK_SECRET,
    )
}

struct Rig {
    gw: Gateway,
    sim: Option<SimHandle>,
    hook: Hook,
    base: String,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

async fn gateway(
    text: impl FnOnce(&std::path::Path, &str) -> String,
) -> (Gateway, Hook, String, tempfile::TempDir) {
    init_tracing();
    let hook = Hook::default();
    let hook_url = start_hook(hook.clone()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = Config::parse(&text(dir.path(), &hook_url), "cmpp.toml").expect("config");
    let mut opts = ServeOptions {
        drain_deadline: Duration::from_secs(5),
        ..ServeOptions::default()
    };
    opts.receipts.webhook.backoff_base = Duration::from_millis(50);
    opts.receipts.webhook.idle_poll = Duration::from_millis(50);
    let gw = start(cfg, opts).await.expect("gateway starts");
    (gw, hook, hook_url, dir)
}

async fn rig(listener: ListenerConfig, version: &str, extra: &str) -> Rig {
    let sim = start_sim(listener, Some(11)).await;
    let port = sim.addrs()[0].port();
    let (gw, hook, _, dir) = gateway(|d, h| config(d, port, h, version, extra)).await;
    let base = format!("http://{}", gw.http_addr());
    Rig {
        gw,
        sim: Some(sim),
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

    async fn stop(self) -> Option<sluice_loadtest::TallySnapshot> {
        self.gw.shutdown().await;
        match self.sim {
            Some(sim) => Some(sim.shutdown().await.expect("sim shutdown")),
            None => None,
        }
    }
}

fn ids(body: &Value) -> Vec<String> {
    accepted_ids(body)
}

/// Short ASCII, long Chinese (UCS-2 / GBK in parts) and a GBK-hinted message all reach the
/// ISMG, and each gets its status report back as a DELIVERED webhook with the ISMG's Msg_Ids
/// stored per part.
async fn delivered_with_reports(version: &str) {
    let rig = rig(cmpp_listener(), version, "").await;
    let long = "营销短信测试，".repeat(20);
    let messages = vec![
        json!({"to": "13800138000", "text": "hello over cmpp"}),
        json!({"to": "+8613800138001", "text": long}),
        json!({"to": "13800138002", "text": "你好", "encoding": "gbk"}),
        json!({"to": "13800138003", "text": "from an extension", "from": "106580009999"}),
    ];
    let (status, body) = post(&rig.client, &rig.base, &json!({ "messages": messages })).await;
    assert_eq!(status, 202, "{body}");
    let ids = ids(&body);
    assert!(
        wait_until(WAIT, || rig.receipts().len() >= ids.len()).await,
        "{version}: receipts {:?}",
        rig.receipts()
    );
    for r in rig.receipts() {
        assert_eq!(r["state"], "delivered", "{version}: {r}");
    }
    let long_status = rig.status(&ids[1]).await;
    let parts = long_status["parts"].as_array().expect("parts");
    assert!(
        parts.len() > 1,
        "{version}: long message in parts: {long_status}"
    );
    for p in parts {
        let center = p["center_id"].as_str().expect("center id");
        assert!(
            center.parse::<u64>().is_ok_and(|n| n > 0),
            "{version}: Msg_Id stored as a number: {p}"
        );
    }
    let tally = rig.stop().await.expect("tally");
    assert_eq!(tally.unique_messages, 4, "{version}: {tally:?}");
    assert_eq!(tally.duplicates, 0, "{version}: {tally:?}");
    assert_eq!(tally.incomplete_messages, 0, "{version}: {tally:?}");
    assert!(tally.dlrs_sent >= 4, "{version}: {tally:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cmpp_2_0_delivers_and_reports() {
    delivered_with_reports("2.0").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cmpp_3_0_delivers_and_reports() {
    delivered_with_reports("3.0").await;
}

/// An ISMG that answers Result 8 (flow control) above 200 msg/s: the channel slows down
/// (AIMD) and resends, so every message still arrives once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_control_slows_down_and_loses_nothing() {
    let listener = ListenerConfig {
        throughput: 200.0,
        burst: 20.0,
        ..cmpp_listener()
    };
    let rig = rig(listener, "2.0", "").await;
    let messages: Vec<Value> = (0..300)
        .map(|i| json!({"to": format!("1390000{i:04}"), "text": format!("burst {i}")}))
        .collect();
    let (status, _) = post(&rig.client, &rig.base, &json!({ "messages": messages })).await;
    assert_eq!(status, 202);
    assert!(
        wait_until(WAIT, || rig.receipts().len() >= 300).await,
        "receipts {}",
        rig.receipts().len()
    );
    let tally = rig.stop().await.expect("tally");
    assert_eq!(tally.unique_messages, 300, "{tally:?}");
    assert!(
        tally.rejected.get("cmpp:8").copied().unwrap_or(0) > 0,
        "the ISMG throttled: {tally:?}"
    );
}

/// A WAP Push SI routed to a CMPP channel leaves as binary SUBMITs (Msg_Fmt 4, TP_udhi 1,
/// the WDP port UDH) that the ISMG reassembles and decodes as an SI.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wap_push_goes_over_cmpp() {
    let rig = rig(cmpp_listener(), "2.0", "").await;
    let push = json!({"kind": "wap_push", "to": "13800138000",
        "si": {"href": "http://www.example.com/offer", "text": "新套餐 8 折"}});
    let (status, body) = post(&rig.client, &rig.base, &json!({ "messages": [push] })).await;
    assert_eq!(status, 202, "{body}");
    assert!(
        wait_until(WAIT, || rig.receipts().len() == 1).await,
        "no receipt"
    );
    let tally = rig.stop().await.expect("tally");
    assert_eq!(tally.wap_push.si, 1, "{tally:?}");
}

/// A reply (MO DELIVER) to the service number reaches the account's MO webhook, decoded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_reach_the_mo_webhook() {
    let mut listener = cmpp_listener();
    listener.mo.reply = vec![sluice_loadtest::config::ReplyRule {
        contains: "reply".into(),
        probability: 1.0,
        text: "好的".into(),
        delay: sluice_loadtest::dist::Delay::default(),
    }];
    let rig = rig(listener, "3.0", "").await;
    let (status, _) = post(
        &rig.client,
        &rig.base,
        &json!({"messages": [{"to": "13800138000", "text": "please reply"}]}),
    )
    .await;
    assert_eq!(status, 202);
    let mo = || rig.hook.mo.lock().unwrap().clone();
    assert!(wait_until(WAIT, || !mo().is_empty()).await, "no MO");
    let got = mo();
    assert_eq!(got[0]["text"], "好的", "{got:?}");
    assert_eq!(got[0]["from"], "13800138000", "{got:?}");
    rig.stop().await;
}

/// `serve` with the embedded simulator opens its ISMG for a CMPP channel pointing at
/// `simulator.cmpp_port`, and traffic flows to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_simulator_serves_a_cmpp_channel() {
    let free = |_: ()| {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port")
    };
    let (smpp_port, cmpp_port) = (free(()), free(()));
    let (gw, hook, _, dir) = gateway(|d, h| {
        config(d, cmpp_port, h, "2.0", "").replace(
            "[simulator]\nenabled = false",
            &format!("[simulator]\nenabled = true\nport = {smpp_port}\ncmpp_port = {cmpp_port}"),
        )
    })
    .await;
    let rig = Rig {
        base: format!("http://{}", gw.http_addr()),
        gw,
        sim: None,
        hook,
        client: reqwest::Client::new(),
        _dir: dir,
    };
    let (status, _) = post(
        &rig.client,
        &rig.base,
        &json!({"messages": [{"to": "13800138000", "text": "embedded ismg"}]}),
    )
    .await;
    assert_eq!(status, 202);
    assert!(
        wait_until(WAIT, || rig.receipts().len() == 1).await,
        "no receipt from the embedded ISMG"
    );
    let tally = rig.gw.simulator().expect("embedded sim").tally();
    assert_eq!(tally.unique_messages, 1);
    rig.stop().await;
}

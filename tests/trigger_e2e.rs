//! A triggered task end to end through `serve` and the simulator: a `roaming_arrival`
//! event posted to `POST /v1/events` becomes an SMS (from the task's service number +
//! extension) that the simulator delivers; its DLR and the subscriber's "Y" reply come back
//! through the gateway's receipt layer and show in the trigger's funnel.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use sluice::config::{Config, hash_api_key};
use sluice::serve::{CampaignHost, ServeOptions, start};
use sluice_loadtest::config::{Account, DlrConfig, MoConfig, ReplyRule};
use sluice_loadtest::dist::Delay;
use sluice_loadtest::{ListenerConfig, SimConfig};

const KEY: &str = "trigger-e2e-key";
const SN: &str = "10658000";

fn sim_config() -> SimConfig {
    SimConfig {
        tally_path: None,
        seed: Some(1),
        listeners: vec![ListenerConfig {
            name: "roam-smsc".into(),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            accounts: vec![Account {
                system_id: "sluice".into(),
                password: "sim".into(),
                max_binds: 0,
            }],
            dlr: DlrConfig {
                mix: BTreeMap::from([("DELIVRD".to_owned(), 1.0)]),
                delay: Delay::Fixed { ms: 20.0 },
                ..DlrConfig::default()
            },
            mo: MoConfig {
                reply: vec![ReplyRule {
                    contains: "#ROAM".into(),
                    probability: 1.0,
                    text: "Y".into(),
                    delay: Delay::Fixed { ms: 200.0 },
                }],
                ..MoConfig::default()
            },
            ..ListenerConfig::default()
        }],
    }
}

fn gateway_config(dir: &std::path::Path, sim: SocketAddr) -> Config {
    let text = format!(
        r#"
[listeners]
http = "127.0.0.1:0"
[storage]
path = {path:?}
backend = "redb"
[[accounts]]
name = "dev"
api_keys = ["{key}"]
rate = 100000
burst = 100000
service_numbers = ["{SN}"]
[[channels]]
name = "sim"
kind = "smpp"
host = "127.0.0.1"
port = {port}
system_id = "sluice"
password = "sim"
bind_mode = "transceiver"
binds = 1
window = 64
rate = 10000
burst = 1000
[[routes]]
channel = "sim"
"#,
        path = dir.join("gateway").display().to_string(),
        port = sim.port(),
        key = hash_api_key(KEY),
    );
    Config::parse(&text, "trigger.toml").expect("config")
}

async fn call(
    http: &reqwest::Client,
    key: &str,
    method: reqwest::Method,
    url: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http.request(method, url).bearer_auth(key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_roaming_arrival_becomes_a_delivered_sms_and_its_reply_reaches_the_funnel() {
    use sluice_campaign::identity::{self, Role};
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("campaign.db");
    let (number, planner, approver, ops) = {
        let mut c = sluice_campaign::Campaigns::open(&db).expect("campaign db");
        c.load_synthetic(10, 5).expect("city");
        let b = identity::bootstrap(&mut c.conn, "Province", "admin", None, None, 0)
            .expect("bootstrap")
            .expect("fresh");
        let key = |name: &str, role: Role| {
            let u =
                identity::create_user(&c.conn, name, b.org, &[role], None, None, 0).expect("user");
            identity::create_key(&c.conn, u, "t", None, 0)
                .expect("key")
                .key
        };
        (
            c.table.msisdn(3).expect("msisdn").to_string(),
            key("planner", Role::Planner),
            key("approver", Role::Approver),
            key("ops", Role::Operator),
        )
    };
    let sim = sluice_loadtest::Simulator::start(sim_config())
        .await
        .expect("simulator");
    let sim_addr = sim.addrs().first().copied().expect("listener");
    let gw = start(
        gateway_config(dir.path(), sim_addr),
        ServeOptions {
            drain_deadline: Duration::from_secs(5),
            http_addr: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            campaign: Some(CampaignHost {
                db: db.clone(),
                api_key: KEY.into(),
                dev_admin_key: None,
            }),
            ..ServeOptions::default()
        },
    )
    .await
    .expect("gateway");
    let http = reqwest::Client::new();
    let root = format!("http://{}", gw.http_addr());
    let api = format!("{root}/v1/campaign");
    let post = reqwest::Method::POST;

    let (_, t) = call(
        &http,
        &planner,
        post.clone(),
        &format!("{api}/tasks"),
        Some(json!({"name": "roaming welcome"})),
    )
    .await;
    let task = t["id"].as_i64().expect("task");
    let (s, v) = call(
        &http,
        &planner,
        post.clone(),
        &format!("{api}/tasks/{task}/trigger"),
        Some(json!({
            "event_type": "roaming_arrival",
            "condition": "attrs.country != \"CN\"",
            "template": "Welcome to {attrs.country}! 1 GB roaming for 30 yuan: reply Y #ROAM",
            "offer": "ROAM1G",
            "staleness_s": 600,
        })),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let trigger = v["id"].as_i64().expect("trigger");
    // Not approved yet: activation is refused and an event matches nothing.
    let (s, _) = call(
        &http,
        &planner,
        post.clone(),
        &format!("{api}/triggers/{trigger}/activate"),
        None,
    )
    .await;
    assert!(s == 403 || s == 409, "{s}");
    for (key, path, body) in [
        (&planner, "submit", json!({})),
        (&approver, "approve", json!({})),
        (&planner, "transitions", json!({"to": "scheduled"})),
    ] {
        let (s, v) = call(
            &http,
            key,
            post.clone(),
            &format!("{api}/tasks/{task}/{path}"),
            Some(body),
        )
        .await;
        assert_eq!(s, 200, "{path}: {v}");
    }
    let (s, v) = call(
        &http,
        &ops,
        post.clone(),
        &format!("{api}/triggers/{trigger}/activate"),
        None,
    )
    .await;
    assert_eq!((s, v["state"].as_str()), (200, Some("running")), "{v}");

    // Unauthenticated intake is refused.
    let s = http
        .post(format!("{root}/v1/events"))
        .body("{}")
        .send()
        .await
        .expect("post")
        .status();
    assert_eq!(s.as_u16(), 401);
    let now = jiff::Timestamp::now();
    let body = format!(
        "{}\n{}\n",
        json!({"id": "roam-1", "msisdn": number, "type": "roaming_arrival", "ts": now.to_string(), "attrs": {"country": "Thailand"}}),
        json!({"id": "roam-2", "msisdn": number, "type": "roaming_arrival", "ts": now.to_string(), "attrs": {"country": "CN"}}),
    );
    let resp = http
        .post(format!("{root}/v1/events"))
        .bearer_auth(&ops)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .expect("events");
    assert_eq!(resp.status().as_u16(), 200);
    let rep: Value = resp.json().await.expect("json");
    assert_eq!(
        (
            rep["accepted"].as_u64(),
            rep["errors"].as_array().map(Vec::len)
        ),
        (Some(2), Some(0)),
        "{rep}"
    );

    let mut f = Value::Null;
    for _ in 0..200 {
        let (_, v) = call(
            &http,
            &planner,
            reqwest::Method::GET,
            &format!("{api}/triggers/{trigger}/report"),
            None,
        )
        .await;
        f = v;
        if f["delivered"] == 1 && f["converted"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        (&f["matched"], &f["sent"], &f["delivered"], &f["converted"]),
        (&json!(1), &json!(1), &json!(1), &json!(1)),
        "{f}"
    );
    let (s, m) = call(
        &http,
        &planner,
        reqwest::Method::GET,
        &format!("{api}/triggers/monitor"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(m["pending_events"], 0, "{m}");
    assert!(m["events_per_s"].as_f64().unwrap_or(0.0) > 0.0, "{m}");

    gw.shutdown().await;
    sim.shutdown().await.expect("simulator stops");

    // The SMS went from the task's service number + extension, with the event's country.
    let c = sluice_campaign::Campaigns::open(&db).expect("reopen");
    let (text, outcome): (String, String) = c
        .conn
        .query_row(
            "SELECT r.text, r.outcome FROM replies r WHERE r.task_id = ?1",
            [task],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("reply");
    assert_eq!((text.as_str(), outcome.as_str()), ("Y", "extension"));
}

//! The campaign service's task-level emergency stop through `serve`: a task whose bulk send
//! the gateway has accepted but mostly not yet sent (its channel is slow) is stopped with
//! `POST /v1/campaign/tasks/{id}/stop`; the gateway cancels what it still holds of the task,
//! the simulator sees no more submits, and the task's funnel counts the cancelled contacts
//! (receipts state `cancelled`, through the in-process subscription).

use crate::e2e_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use e2e_support::init_tracing;
use serde_json::{Value, json};
use sluice::config::{Config, hash_api_key};
use sluice::serve::{CampaignHost, ServeOptions, start};
use sluice_loadtest::config::{Account, DlrConfig};
use sluice_loadtest::dist::Delay;
use sluice_loadtest::{ListenerConfig, SimHandle};

const KEY: &str = "campaign-stop-key";
const WAIT: Duration = Duration::from_secs(30);
const SUBSCRIBERS: u32 = 1500;

async fn sim() -> SimHandle {
    let listener = ListenerConfig {
        name: "slow-center".into(),
        accounts: vec![Account {
            system_id: "sluice".into(),
            password: "sim".into(),
            max_binds: 0,
        }],
        dlr: DlrConfig {
            mix: BTreeMap::from([("DELIVRD".to_owned(), 1.0)]),
            delay: Delay::Fixed { ms: 10.0 },
            ..DlrConfig::default()
        },
        ..e2e_support::sim_listener()
    };
    e2e_support::start_sim(listener, Some(3)).await
}

/// One channel at 50 messages a second: a bulk send of 1 500 stays mostly queued.
fn config(dir: &std::path::Path, port: u16) -> Config {
    let text = format!(
        r#"
timezone = "Asia/Shanghai"
[listeners]
http = "127.0.0.1:0"
[storage]
path = {path:?}
[simulator]
enabled = false
[[accounts]]
name = "campaigns"
api_keys = ["{key}"]
rate = 100000
burst = 100000
default_sender = "10690000"
[[channels]]
name = "slow"
kind = "smpp"
host = "127.0.0.1"
port = {port}
system_id = "sluice"
password = "sim"
binds = 1
window = 8
rate = 50
burst = 1
response_timeout_ms = 2000
[[routes]]
channel = "slow"
"#,
        path = dir.display().to_string(),
        key = hash_api_key(KEY),
    );
    Config::parse(&text, "campaign_stop.toml").expect("config")
}

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    async fn call(&self, method: reqwest::Method, path: &str, key: &str, body: Value) -> Value {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(key);
        if !body.is_null() {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let v: Value = resp.json().await.unwrap_or(Value::Null);
        assert!((200..300).contains(&status), "{path}: {status} {v}");
        v
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_task_leaves_nothing_queued_at_the_gateway() {
    init_tracing();
    sluice::tls::install_provider();
    let center = sim().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("campaign.db");
    let numbers: Vec<String> = {
        let mut c = sluice_campaign::Campaigns::open(&db).expect("campaign db");
        c.load_synthetic(SUBSCRIBERS, 11).expect("city");
        (0..SUBSCRIBERS)
            .map(|id| c.table.msisdn(id).expect("msisdn").to_string())
            .collect()
    };
    let gw = start(
        config(dir.path(), center.addrs()[0].port()),
        ServeOptions {
            drain_deadline: Duration::from_secs(5),
            campaign: Some(CampaignHost {
                db,
                api_key: KEY.into(),
                // The campaign service's admin shares the account's key (as in development).
                dev_admin_key: Some(KEY.into()),
            }),
            ..ServeOptions::default()
        },
    )
    .await
    .expect("gateway starts");
    let api = Api {
        base: format!("http://{}", gw.http_addr()),
        http: reqwest::Client::new(),
    };
    let post = reqwest::Method::POST;
    let get = reqwest::Method::GET;

    // An approver besides the admin (nobody approves their own submission).
    let org = api
        .call(get.clone(), "/v1/campaign/me", KEY, Value::Null)
        .await["org_id"]
        .clone();
    let checker = api
        .call(
            post.clone(),
            "/v1/campaign/users",
            KEY,
            json!({"name": "checker", "org": org, "roles": ["approver"]}),
        )
        .await["id"]
        .as_i64()
        .expect("user");
    let checker_key = api
        .call(
            post.clone(),
            &format!("/v1/campaign/users/{checker}/keys"),
            KEY,
            json!({"label": "t"}),
        )
        .await["key"]
        .as_str()
        .expect("key")
        .to_owned();
    let seg = api
        .call(
            post.clone(),
            "/v1/campaign/segments",
            KEY,
            json!({"name": "all", "numbers": numbers}),
        )
        .await["segment"]["id"]
        .as_i64()
        .expect("segment");
    let task = api
        .call(
            post.clone(),
            "/v1/campaign/tasks",
            KEY,
            json!({"name": "wrong text"}),
        )
        .await["id"]
        .as_i64()
        .expect("task");
    let t = format!("/v1/campaign/tasks/{task}");
    api.call(post.clone(), &format!("{t}/submit"), KEY, json!({}))
        .await;
    api.call(
        post.clone(),
        &format!("{t}/approve"),
        &checker_key,
        json!({}),
    )
    .await;
    api.call(
        post.clone(),
        &format!("{t}/transitions"),
        KEY,
        json!({"to": "scheduled"}),
    )
    .await;
    let start_at = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(5);
    let bulk = api
        .call(
            post.clone(),
            &format!("{t}/bulk"),
            KEY,
            json!({
                "segment": seg,
                "template": "Offer",
                "channel": "sms",
                "groups": {"by": "random", "seed": 1, "control_share": 0.0,
                    "variants": [{"name": "A", "weight": 1}]},
                "slices": [{"start": start_at}],
            }),
        )
        .await["id"]
        .as_i64()
        .expect("bulk");
    api.call(
        post.clone(),
        &format!("/v1/campaign/bulk/{bulk}/launch"),
        KEY,
        json!({}),
    )
    .await;

    // Wait until the gateway holds the whole send (contacts recorded = accepted).
    let sent_of = |report: &Value, col: &str| -> u64 {
        report["funnel"]
            .as_array()
            .map(|rows| rows.iter().map(|r| r[col].as_u64().unwrap_or(0)).sum())
            .unwrap_or(0)
    };
    let deadline = Instant::now() + WAIT;
    loop {
        let report = api
            .call(get.clone(), &format!("{t}/report"), KEY, Value::Null)
            .await;
        if sent_of(&report, "sent") == u64::from(SUBSCRIBERS) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "bulk send not handed over: {report}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let stopped = api
        .call(post.clone(), &format!("{t}/stop"), KEY, json!({}))
        .await;
    // Everything was handed over, so the task is usually `completed` already (it stays so);
    // what matters is what the gateway still holds.
    assert!(
        stopped["state"] == "completed" || stopped["state"] == "cancelled",
        "{stopped}"
    );
    let stop_id = stopped["gateway"]["stop"]
        .as_u64()
        .expect("gateway stop id");

    // The gateway's sweep ends; what it cancelled plus what went out is the whole send.
    let deadline = Instant::now() + WAIT;
    let progress = loop {
        let p = api
            .call(
                get.clone(),
                &format!("/v1/messages/cancel/{stop_id}"),
                KEY,
                Value::Null,
            )
            .await;
        if p["done"] == true {
            break p;
        }
        assert!(Instant::now() < deadline, "sweep not done: {p}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let cancelled = progress["cancelled"].as_u64().expect("cancelled");
    assert!(
        cancelled > u64::from(SUBSCRIBERS) / 2,
        "most of a slow send is still queued at the stop: {progress}"
    );

    // No more submits reach the center once the channel's window has drained.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after_stop = center.tally().submits_received;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(center.tally().submits_received, after_stop);

    // Every message of the task either reached the center or ended `cancelled` — those the
    // sweep found queued and those dispatch had leased (`in_flight` at the sweep), cancelled
    // when handed back — and the funnel counts each cancelled contact once.
    let deadline = Instant::now() + WAIT;
    loop {
        let report = api
            .call(get.clone(), &format!("{t}/report"), KEY, Value::Null)
            .await;
        let in_funnel = sent_of(&report, "cancelled");
        if in_funnel + after_stop == u64::from(SUBSCRIBERS) {
            assert!(in_funnel >= cancelled, "{report} {progress}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "funnel {report}, center {after_stop}, stop {progress}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    gw.shutdown().await;
}

//! Reply routing by service number + extension, end to end through `serve`.
//!
//! Path: `serve::start` hosting the campaign service (`/v1/campaign`, reply routing from the
//! gateway config) → launch over HTTP → `POST /v1/messages` with source `service number +
//! extension` → SMPP → the simulator, whose reply rules answer to the submit's source
//! address → deliver_sm → the gateway's MO router (service numbers) → in-process feedback →
//! the campaign funnel and do-not-disturb list. Plus the config errors of the new keys.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use sluice::config::{Config, hash_api_key};
use sluice::receipt::Notification;
use sluice::serve::{CampaignHost, ServeOptions, start};
use sluice_loadtest::config::{Account, DlrConfig, MoConfig, ReplyRule};
use sluice_loadtest::dist::Delay;
use sluice_loadtest::{ListenerConfig, SimConfig};

const KEY: &str = "mo-routing-key";
const SN: &str = "10658000";
const PLAIN: &str = "10690000";

fn sim_config() -> SimConfig {
    let rule = |contains: &str, text: &str, delay: Delay| ReplyRule {
        contains: contains.into(),
        probability: 1.0,
        text: text.into(),
        delay,
    };
    let quick = Delay::Fixed { ms: 50.0 };
    SimConfig {
        tally_path: None,
        seed: Some(1),
        listeners: vec![ListenerConfig {
            name: "mo-smsc".into(),
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
                reply: vec![
                    // Late enough that task 2 has contacted the same people meanwhile.
                    rule("#T1", "Y", Delay::Fixed { ms: 5000.0 }),
                    rule("#TD", "TD", quick.clone()),
                    rule("#TUI", "退订", quick.clone()),
                    rule("#PLAIN", "Y", quick),
                ],
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
allowed_senders = ["{PLAIN}"]
default_sender = "{PLAIN}"
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
    Config::parse(&text, "mo.toml").expect("config")
}

/// The campaign API as two users: a planner (everything but approval) and an approver.
struct Api {
    http: reqwest::Client,
    base: String,
    planner: String,
    approver: String,
}

/// Root organisation and the two users of [`Api`], with their API keys.
fn campaign_users(c: &mut sluice_campaign::Campaigns) -> (String, String) {
    use sluice_campaign::identity::{self, Role};
    let b = identity::bootstrap(&mut c.conn, "Province", "admin", None, None, 0)
        .expect("bootstrap")
        .expect("fresh db");
    let key = |name: &str, role: Role| {
        let u = identity::create_user(&c.conn, name, b.org, &[role], None, None, 0).expect("user");
        identity::create_key(&c.conn, u, "test", None, 0)
            .expect("key")
            .key
    };
    (
        key("planner", Role::Planner),
        key("approver", Role::Approver),
    )
}

impl Api {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        self.call_as(&self.planner, method, path, body).await
    }

    async fn call_as(
        &self,
        key: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Value {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let v: Value = resp.json().await.expect("json");
        assert!(status.is_success(), "{path}: {status} {v}");
        v
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn funnel(&self, task: i64) -> Vec<Value> {
        let v = self
            .call(reqwest::Method::GET, &format!("/tasks/{task}/report"), None)
            .await;
        v["funnel"].as_array().cloned().unwrap_or_default()
    }

    async fn sum(&self, task: i64, field: &str) -> u64 {
        self.funnel(task)
            .await
            .iter()
            .map(|r| r[field].as_u64().unwrap_or(0))
            .sum()
    }

    async fn segment(&self, name: &str, numbers: &[String]) -> i64 {
        let v = self
            .post("/segments", json!({"name": name, "numbers": numbers}))
            .await;
        v["segment"]["id"].as_i64().expect("segment id")
    }

    /// A scheduled task with an A/B bulk send of `template` over `segment`; launched.
    /// Returns (task, launch plan).
    async fn launch(
        &self,
        name: &str,
        segment: i64,
        template: &str,
        from: Option<&str>,
    ) -> (i64, Value) {
        let task = self.post("/tasks", json!({"name": name})).await["id"]
            .as_i64()
            .expect("task id");
        for to in ["submitted", "approved", "scheduled"] {
            let key = if to == "approved" {
                &self.approver
            } else {
                &self.planner
            };
            self.call_as(
                key,
                reqwest::Method::POST,
                &format!("/tasks/{task}/transitions"),
                Some(json!({"to": to})),
            )
            .await;
        }
        let start = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(5);
        let bulk = self
            .post(
                &format!("/tasks/{task}/bulk"),
                json!({
                    "segment": segment,
                    "template": template,
                    "channel": "sms",
                    "from": from,
                    "offer": "data5g",
                    "groups": {"by": "random", "seed": 9, "control_share": 0.0,
                        "variants": [{"name": "A", "weight": 1}, {"name": "B", "weight": 1}]},
                    "slices": [{"start": start}],
                }),
            )
            .await["id"]
            .as_i64()
            .expect("bulk id");
        let plan = self.post(&format!("/bulk/{bulk}/launch"), json!({})).await;
        (task, plan)
    }

    /// Waits until `cond` holds on the task's funnel totals (bounded).
    async fn until(&self, what: &str, task: i64, field: &str, want: u64) {
        for _ in 0..300 {
            if self.sum(task, field).await == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "{what}: task {task} {field} is {} not {want}; funnel {:?}",
            self.sum(task, field).await,
            self.funnel(task).await
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_route_by_extension_and_unsubscribes_reach_the_dnd_list_through_serve() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("campaign.db");
    let (numbers, (planner, approver)): (Vec<String>, _) = {
        let mut c = sluice_campaign::Campaigns::open(&db).expect("campaign db");
        c.load_synthetic(50, 3).expect("city");
        let numbers = (0..50)
            .map(|id| c.table.msisdn(id).expect("msisdn").to_string())
            .collect();
        (numbers, campaign_users(&mut c))
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
    // Every MO the gateway routes, as its in-process subscribers see it.
    let mos = Arc::new(Mutex::new(Vec::new()));
    {
        let mut rx = gw.receipts().subscribe();
        let mos = Arc::clone(&mos);
        tokio::spawn(async move {
            while let Ok(n) = rx.recv().await {
                if let Notification::Mo(m) = n {
                    mos.lock().expect("lock").push(m);
                }
            }
        });
    }
    let api = Api {
        http: reqwest::Client::new(),
        base: format!("http://{}/v1/campaign", gw.http_addr()),
        planner,
        approver,
    };
    let (s1, s_td, s_tui, s_plain) = (
        api.segment("both tasks", &numbers[0..20]).await,
        api.segment("td", &numbers[20..30]).await,
        api.segment("tuiding", &numbers[30..40]).await,
        api.segment("plain", &numbers[40..50]).await,
    );

    // Task 1 asks; its replies come 5 s later. Task 2 contacts the same 20 people right
    // after task 1 is sent, so by the time the replies arrive task 2 is everyone's latest
    // contact: the old rule would credit task 2.
    let (t1, _) = api.launch("first", s1, "5GB for 10 yuan #T1", None).await;
    api.until("task 1 sent", t1, "sent", 20).await;
    let (t2, _) = api.launch("second", s1, "Weekend bonus #T2", None).await;
    api.until("task 2 sent", t2, "sent", 20).await;
    api.until("task 1's replies", t1, "converted", 20).await;
    assert_eq!(api.sum(t1, "converted_fallback").await, 0);
    assert_eq!(api.sum(t2, "converted").await, 0, "task 2 asked nothing");
    // Both A and B of task 1 got their replies.
    let f1 = api.funnel(t1).await;
    assert_eq!(f1.len(), 2);
    for r in &f1 {
        assert_eq!(r["converted"], r["sent"], "group {}", r["group"]);
    }

    // Unsubscribes: TD and 退订 (UCS-2 on the wire), never conversions.
    let (t3, _) = api.launch("td", s_td, "Data pack #TD", None).await;
    let (t4, _) = api.launch("tuiding", s_tui, "Data pack #TUI", None).await;
    api.until("TD unsubscribes", t3, "unsubscribed", 10).await;
    api.until("退订 unsubscribes", t4, "unsubscribed", 10).await;
    assert_eq!(api.sum(t3, "converted").await, 0);
    assert_eq!(api.sum(t4, "converted").await, 0);

    // A bulk sent from the plain sender has no extension: its replies fall back.
    let (t5, _) = api
        .launch("plain", s_plain, "Data pack #PLAIN", Some(PLAIN))
        .await;
    api.until("fallback replies", t5, "converted_fallback", 10)
        .await;
    assert_eq!(api.sum(t5, "converted").await, 10);

    // The next launch over everyone excludes the 20 unsubscribed numbers.
    let all = api.segment("everyone", &numbers).await;
    let (t6, plan) = api.launch("next", all, "Next offer", None).await;
    assert_eq!(plan["excluded"]["do_not_disturb"], 20, "{plan}");
    api.until("next launch sent", t6, "sent", 30).await;

    // What went over the wire and came back.
    let mos: Vec<_> = mos.lock().expect("lock").clone();
    assert_eq!(mos.len(), 50, "20 Y + 10 TD + 10 退订 + 10 plain Y");
    assert!(mos.iter().all(|m| m.account.as_deref() == Some("dev")));
    let to_of = |text: &str| {
        let mut v: Vec<&str> = mos
            .iter()
            .filter(|m| m.text == text)
            .map(|m| m.to.as_str())
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    assert_eq!(to_of("TD"), [format!("{SN}0003")]);
    assert_eq!(to_of("退订"), [format!("{SN}0004")]);
    assert_eq!(to_of("Y"), [format!("{SN}0001"), PLAIN.to_owned()]);

    gw.shutdown().await;
    sim.shutdown().await.expect("simulator stops");

    // In the store: every reply to task 1's extension arrived after task 2's contact of the
    // same subscriber, and is credited to task 1 by extension.
    let c = sluice_campaign::Campaigns::open(&db).expect("reopen");
    let overtaken: i64 = c
        .conn
        .query_row(
            "SELECT COUNT(*) FROM replies r JOIN subscribers s ON s.msisdn = r.msisdn
             JOIN contacts k ON k.sub_id = s.id AND k.task_id = ?1
             WHERE r.outcome = 'extension' AND r.task_id = ?2 AND k.at <= r.at",
            [t2, t1],
            |r| r.get(0),
        )
        .expect("query");
    assert_eq!(
        overtaken, 20,
        "task 2 was the latest contact of all 20 repliers"
    );
}

#[test]
fn config_errors_name_the_key() {
    let account =
        |name: &str, extra: &str| format!("[[accounts]]\nname = \"{name}\"\nrate = 1\n{extra}\n");
    let cases = [
        (
            account("a", "service_numbers = [\"10658x\"]"),
            "accounts[0].service_numbers[0]",
        ),
        (
            account("a", "service_numbers = [\"\"]"),
            "accounts[0].service_numbers[0]",
        ),
        (
            account("a", "service_numbers = [\"10658000\", \"10658000\"]"),
            "accounts[0].service_numbers[1]",
        ),
        (
            account("a", "service_numbers = [\"10658000\"]")
                + &account("b", "service_numbers = [\"10658001\", \"10658000\"]"),
            "accounts[1].service_numbers[1]",
        ),
        (
            "[campaign]\nunsubscribe_keywords = [\"TD\", \" \"]\n".to_owned(),
            "campaign.unsubscribe_keywords[1]",
        ),
    ];
    for (text, key) in cases {
        let e = Config::parse(&text, "t.toml").expect_err(key);
        assert_eq!(e.key(), Some(key), "{e}");
    }
    let e = Config::parse(
        &(account("a", "service_numbers = [\"10658000\"]")
            + &account("b", "service_numbers = [\"10658000\"]")),
        "t.toml",
    )
    .expect_err("shared");
    assert!(
        e.to_string().contains("already belongs to account \"a\""),
        "{e}"
    );

    // Valid: the hosted service gets the sending account's numbers and the keywords.
    let text = format!(
        "[campaign]\nunsubscribe_keywords = [\"TD\", \"QUIT\"]\n{}{}",
        account(
            "a",
            &format!(
                "api_keys = [\"{}\"]\nservice_numbers = [\"10658000\", \"10658001\"]",
                hash_api_key("ka")
            )
        ),
        account("b", "service_numbers = [\"10659\"]"),
    );
    let cfg = Config::parse(&text, "t.toml").expect("valid");
    let mo = sluice::campaign_cmd::wiring::mo_settings(&cfg, "ka");
    assert_eq!(mo.service_numbers, ["10658000", "10658001"]);
    assert!(mo.is_unsubscribe(" quit ") && !mo.is_unsubscribe("STOP"));
    let none = sluice::campaign_cmd::wiring::mo_settings(&cfg, "unknown key");
    assert!(none.service_numbers.is_empty());
    let defaults = Config::parse("", "t.toml").expect("empty");
    assert_eq!(
        defaults.campaign.unsubscribe_keywords,
        ["TD", "T", "退订", "STOP", "UNSUB"]
    );
}

//! Public contact rules end to end through `serve`: operators edit the rules over
//! `/v1/rules`; the gateway refuses listed and capped recipients of the marketing lane for a
//! direct HTTP client (per line, the rest of the batch accepted and delivered) and for an
//! ESME bound to its SMPP server, while the otp lane is exempt; caps fill with delivered
//! contacts only (a simulator whose receipts are all UNDELIV takes the "failed" numbers);
//! an unsubscribe reply ("TD", injected by the simulator's reply rules) lands on
//! do-not-disturb; edits take effect at once and survive a restart; 401 / 403.

use crate::e2e_support;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use e2e_support::init_tracing;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use sluice::config::{Config, hash_api_key};
use sluice::serve::{Gateway, ServeOptions, start};
use sluice_loadtest::config::{Account, DlrConfig, MoConfig, ReplyRule};
use sluice_loadtest::dist::Delay;
use sluice_loadtest::{ListenerConfig, SimConfig, SimHandle};
use sluice_protocols::smpp::{Address, Bind, Command, CommandStatus, Pdu, Sm, SmppCodec};
use tokio::net::TcpStream;
use tokio_util::codec::Framed;

const KEY: &str = "rules-client-key";
const OPS_KEY: &str = "rules-operator-key";
const WAIT: Duration = Duration::from_secs(20);

/// A simulator whose receipts are all `stat` and which answers a message containing "#TD"
/// with the reply "TD" from its recipient.
async fn sim(stat: &str) -> SimHandle {
    sluice_loadtest::Simulator::start(SimConfig {
        tally_path: None,
        seed: Some(7),
        listeners: vec![ListenerConfig {
            name: format!("sim-{stat}"),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            accounts: vec![Account {
                system_id: "sluice".into(),
                password: "sim".into(),
                max_binds: 0,
            }],
            dlr: DlrConfig {
                mix: BTreeMap::from([(stat.to_owned(), 1.0)]),
                delay: Delay::Fixed { ms: 20.0 },
                ..DlrConfig::default()
            },
            mo: MoConfig {
                reply: vec![ReplyRule {
                    contains: "#TD".into(),
                    probability: 1.0,
                    text: "TD".into(),
                    delay: Delay::Fixed { ms: 50.0 },
                }],
                ..MoConfig::default()
            },
            ..ListenerConfig::default()
        }],
    })
    .await
    .expect("simulator")
}

/// Numbers starting 1390000 go to the failing center, everything else to the good one.
fn config(dir: &std::path::Path, good: u16, bad: u16) -> Config {
    let channel = |name: &str, port: u16| {
        format!(
            r#"[[channels]]
name = "{name}"
kind = "smpp"
host = "127.0.0.1"
port = {port}
system_id = "sluice"
password = "sim"
binds = 1
window = 64
rate = 10000
burst = 1000
response_timeout_ms = 2000
"#
        )
    };
    let text = format!(
        r#"
timezone = "Asia/Shanghai"
[listeners]
http = "127.0.0.1:0"
smpp = "127.0.0.1:0"
[storage]
path = {path:?}
[simulator]
enabled = false
[[accounts]]
name = "acme"
api_keys = ["{key}"]
rate = 100000
burst = 100000
default_sender = "10690000"
smpp_system_id = "acme"
smpp_password_sha256 = "{smpp}"
smpp_lane = "marketing"
[[accounts]]
name = "ops"
api_keys = ["{ops}"]
rate = 1
operator = true
{good}{bad}
[[routes]]
channel = "good"
[[routes]]
prefixes = ["1390000"]
channel = "bad"
"#,
        path = dir.display().to_string(),
        key = hash_api_key(KEY),
        ops = hash_api_key(OPS_KEY),
        smpp = hash_api_key("secret"),
        good = channel("good", good),
        bad = channel("bad", bad),
    );
    Config::parse(&text, "public_rules.toml").expect("config")
}

struct Rig {
    gw: Gateway,
    http: reqwest::Client,
    base: String,
    _sims: (SimHandle, SimHandle),
    dir: tempfile::TempDir,
}

async fn gateway(dir: &std::path::Path, good: &SimHandle, bad: &SimHandle) -> Gateway {
    let cfg = config(dir, good.addrs()[0].port(), bad.addrs()[0].port());
    let opts = ServeOptions {
        drain_deadline: Duration::from_secs(5),
        ..ServeOptions::default()
    };
    start(cfg, opts).await.expect("gateway starts")
}

async fn rig() -> Rig {
    init_tracing();
    sluice::tls::install_provider();
    let (good, bad) = (sim("DELIVRD").await, sim("UNDELIV").await);
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = gateway(dir.path(), &good, &bad).await;
    let base = format!("http://{}", gw.http_addr());
    Rig {
        gw,
        http: reqwest::Client::new(),
        base,
        _sims: (good, bad),
        dir,
    }
}

impl Rig {
    /// Stops the gateway and starts a new one on the same data directory.
    async fn restart(self) -> Self {
        let Self {
            gw,
            http,
            base: _,
            _sims,
            dir,
        } = self;
        gw.shutdown().await;
        let gw = gateway(dir.path(), &_sims.0, &_sims.1).await;
        let base = format!("http://{}", gw.http_addr());
        Self {
            gw,
            http,
            base,
            _sims,
            dir,
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        key: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn ops(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let (status, v) = self.send(method, path, Some(OPS_KEY), body).await;
        assert!((200..300).contains(&status), "{path}: {status} {v}");
        v
    }

    /// POSTs messages as the client; returns the 202 body's results.
    async fn post_messages(&self, messages: Value) -> Vec<Value> {
        let (status, v) = self
            .send(
                reqwest::Method::POST,
                "/v1/messages",
                Some(KEY),
                Some(json!({"messages": messages})),
            )
            .await;
        assert_eq!(status, 202, "{v}");
        v["results"].as_array().cloned().expect("results")
    }

    async fn state(&self, id: &str) -> String {
        let (_, v) = self
            .send(
                reqwest::Method::GET,
                &format!("/v1/messages/{id}"),
                Some(KEY),
                None,
            )
            .await;
        v["state"].as_str().unwrap_or_default().to_owned()
    }

    async fn wait_state(&self, id: &str, want: &str) {
        for _ in 0..400 {
            if self.state(id).await == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("message {id} is {} not {want}", self.state(id).await);
    }

    async fn refusal(&self, msisdn: &str, channel: &str) -> Value {
        self.ops(
            reqwest::Method::GET,
            &format!("/v1/rules/check?msisdn={msisdn}&channel={channel}&lane=marketing"),
            None,
        )
        .await["refused"]
            .clone()
    }

    async fn wait_refusal(&self, msisdn: &str, want: &str) {
        for _ in 0..400 {
            if self.refusal(msisdn, "sms").await == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "{msisdn}: refusal is {} not {want}",
            self.refusal(msisdn, "sms").await
        );
    }
}

fn marketing(to: &str, text: &str) -> Value {
    json!({"to": to, "text": text, "lane": "marketing"})
}

type Esme = Framed<TcpStream, SmppCodec>;

async fn esme(gw: &Gateway) -> Esme {
    let addr = gw.smpp_addr().expect("smpp listener");
    let mut e = Framed::new(
        TcpStream::connect(addr).await.expect("connect"),
        SmppCodec::default(),
    );
    let bind = Bind {
        system_id: "acme".into(),
        password: "secret".into(),
        interface_version: 0x34,
        ..Bind::default()
    };
    e.send(Command::request(1, Pdu::BindTransmitter(bind)))
        .await
        .expect("send");
    assert_eq!(next(&mut e).await.status, CommandStatus::EsmeRok);
    e
}

async fn next(e: &mut Esme) -> Command {
    tokio::time::timeout(WAIT, e.next())
        .await
        .expect("a PDU in time")
        .expect("stream open")
        .expect("decodes")
}

async fn submit(e: &mut Esme, seq: u32, to: &str) -> CommandStatus {
    let sm = Sm {
        source: Address::new(0, 0, "10690000"),
        dest: Address::new(1, 1, to),
        short_message: b"offer".as_slice().into(),
        ..Sm::default()
    };
    e.send(Command::request(seq, Pdu::SubmitSm(sm)))
        .await
        .expect("send");
    let r = next(e).await;
    assert_eq!(r.sequence, seq);
    r.status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn do_not_disturb_is_refused_for_every_client_but_otp_and_survives_a_restart() {
    let rig = rig().await;

    // Credentials: none → 401, a client that is not an operator → 403.
    for (key, want) in [(None, 401), (Some(KEY), 403)] {
        for (method, path) in [
            (reqwest::Method::GET, "/v1/rules/lists/do_not_disturb"),
            (reqwest::Method::GET, "/v1/rules/caps"),
            (reqwest::Method::GET, "/v1/rules/audit"),
        ] {
            let (status, _) = rig.send(method, path, key, None).await;
            assert_eq!(status, want, "{path} with {key:?}");
        }
        let (status, _) = rig
            .send(
                reqwest::Method::POST,
                "/v1/rules/lists/do_not_disturb",
                key,
                Some(json!({"msisdns": ["13800138000"]})),
            )
            .await;
        assert_eq!(status, want);
    }

    // The operator lists a number for sms, in the +86 spelling: effective at once.
    let v = rig
        .ops(
            reqwest::Method::POST,
            "/v1/rules/lists/do_not_disturb",
            Some(json!({"msisdns": ["+8613800138000"], "channel": "sms"})),
        )
        .await;
    assert_eq!(v["added"], 1);
    assert_eq!(
        rig.refusal("13800138000", "sms").await,
        "blocked: do_not_disturb/sms"
    );
    assert_eq!(rig.refusal("13800138000", "mms").await, Value::Null);

    // A direct HTTP client: the listed line is refused by name, the others accepted.
    let results = rig
        .post_messages(json!([
            marketing("13800138000", "offer"),
            marketing("13800138001", "offer"),
            {"to": "+8613800138000", "text": "code 1234", "lane": "otp"},
        ]))
        .await;
    assert_eq!(results.len(), 3);
    assert_eq!(
        results[0],
        json!({"line": 1, "refused": "blocked: do_not_disturb/sms"})
    );
    assert_eq!(results[1]["line"], 2);
    assert_eq!(results[2]["line"], 3);
    for r in &results[1..] {
        let id = r["id"].as_str().expect("id");
        rig.wait_state(id, "delivered").await;
    }
    // The refused message was never stored: the center saw exactly the other two.
    let tally = rig._sims.0.tally();
    assert_eq!(tally.submits_received, 2, "{tally:?}");

    // An ESME bound to the SMPP server (its account sends on the marketing lane).
    let mut e = esme(&rig.gw).await;
    assert_eq!(
        submit(&mut e, 2, "8613800138000").await,
        CommandStatus::EsmeRinvdstadr
    );
    assert_eq!(
        submit(&mut e, 3, "8613800138002").await,
        CommandStatus::EsmeRok
    );
    drop(e);

    // Listing pages through the entries; the audit names the operator.
    let page = rig
        .ops(
            reqwest::Method::GET,
            "/v1/rules/lists/do_not_disturb?channel=sms&limit=10",
            None,
        )
        .await;
    assert_eq!(page["entries"], json!(["13800138000"]));
    let audit = rig
        .ops(reqwest::Method::GET, "/v1/rules/audit?limit=5", None)
        .await;
    assert_eq!(audit["entries"][0]["who"], "ops");
    assert_eq!(audit["entries"][0]["action"], "list_add");

    // A list file: bad lines are reported, the rest added and enforced at once.
    let r = rig
        .http
        .post(format!("{}/v1/rules/lists/blacklist/import", rig.base))
        .bearer_auth(OPS_KEY)
        .body("13600000001\nnot-a-number\n\n+8613600000002\n")
        .send()
        .await
        .expect("import");
    assert_eq!(r.status().as_u16(), 202);
    let id = r.json::<Value>().await.expect("json")["id"].clone();
    let mut progress = Value::Null;
    for _ in 0..200 {
        progress = rig
            .ops(
                reqwest::Method::GET,
                &format!("/v1/rules/imports/{id}"),
                None,
            )
            .await;
        if progress["state"] == "done" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(progress["state"], "done", "{progress}");
    assert_eq!(progress["lines_read"], 4);
    assert_eq!(progress["added"], 2);
    assert_eq!(progress["errors"][0]["line"], 2);
    assert_eq!(
        rig.refusal("13600000002", "mms").await,
        "blocked: blacklist"
    );
    let (status, _) = rig
        .send(
            reqwest::Method::GET,
            "/v1/rules/imports/999",
            Some(OPS_KEY),
            None,
        )
        .await;
    assert_eq!(status, 404);

    // Quiet hours: stored as given, a bad window is refused with its index.
    let v = rig
        .ops(
            reqwest::Method::PUT,
            "/v1/rules/quiet_hours",
            Some(json!({"windows": ["21:00-08:00"]})),
        )
        .await;
    assert_eq!(v["windows"], json!(["21:00-08:00"]));
    let (status, v) = rig
        .send(
            reqwest::Method::PUT,
            "/v1/rules/quiet_hours",
            Some(OPS_KEY),
            Some(json!({"windows": ["21:00-08:00", "8pm"]})),
        )
        .await;
    assert_eq!((status, v["field"].clone()), (422, json!("windows[1]")));
    rig.ops(
        reqwest::Method::PUT,
        "/v1/rules/quiet_hours",
        Some(json!({"windows": []})),
    )
    .await;

    // After a restart the entry is still enforced.
    let rig = rig.restart().await;
    let results = rig
        .post_messages(json!([
            marketing("+8613800138000", "offer"),
            marketing("13600000001", "offer"),
        ]))
        .await;
    assert_eq!(results[0]["refused"], "blocked: do_not_disturb/sms");
    assert_eq!(results[1]["refused"], "blocked: blacklist");

    // Removed: accepted again.
    let v = rig
        .ops(
            reqwest::Method::POST,
            "/v1/rules/lists/do_not_disturb/remove",
            Some(json!({"msisdns": ["13800138000"], "channel": "sms"})),
        )
        .await;
    assert_eq!(v["removed"], 1);
    let results = rig
        .post_messages(json!([marketing("13800138000", "offer")]))
        .await;
    assert!(results[0]["id"].is_string(), "{results:?}");
    rig.gw.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caps_fill_with_delivered_contacts_and_a_td_reply_lands_on_do_not_disturb() {
    let rig = rig().await;
    rig.ops(
        reqwest::Method::PUT,
        "/v1/rules/caps",
        Some(json!({"caps": [{"channel": "sms", "max": 1, "period": "day"}]})),
    )
    .await;

    // A failed contact (the 1390000 center answers UNDELIV) ...
    let failed = rig
        .post_messages(json!([marketing("13900000001", "offer")]))
        .await;
    rig.wait_state(failed[0]["id"].as_str().expect("id"), "undeliverable")
        .await;
    // ... then a delivered one to another number, which uses up that number's cap.
    let delivered = rig
        .post_messages(json!([
            {"to": "13800000009", "text": "offer", "lane": "marketing", "client_ref": "cap-1"}
        ]))
        .await;
    rig.wait_state(delivered[0]["id"].as_str().expect("id"), "delivered")
        .await;
    rig.wait_refusal("13800000009", "blocked: channel_cap/sms")
        .await;
    // Receipts are applied in order, so the failed one was seen before: it did not count.
    assert_eq!(rig.refusal("13900000001", "sms").await, Value::Null);

    let results = rig
        .post_messages(json!([
            marketing("13800000009", "again"),
            marketing("13900000001", "again"),
            {"to": "13800000009", "text": "code", "lane": "otp"},
        ]))
        .await;
    assert_eq!(results[0]["refused"], "blocked: channel_cap/sms");
    assert!(results[0].get("id").is_none());
    assert!(results[1]["id"].is_string(), "{results:?}");
    assert!(results[2]["id"].is_string(), "{results:?}");
    // Re-sending the delivered message (same client_ref) is a duplicate, not a refusal.
    let again = rig
        .post_messages(json!([
            {"to": "13800000009", "text": "offer", "lane": "marketing", "client_ref": "cap-1"}
        ]))
        .await;
    assert_eq!(again[0]["id"], delivered[0]["id"], "{again:?}");
    assert_eq!(again[0]["duplicate"], true);

    // The recipient answers "TD": its number goes on do-not-disturb for sms.
    rig.post_messages(json!([marketing("13700000001", "offer #TD")]))
        .await;
    rig.wait_refusal("13700000001", "blocked: do_not_disturb/sms")
        .await;
    let audit = rig
        .ops(reqwest::Method::GET, "/v1/rules/audit?limit=20", None)
        .await;
    let entries = audit["entries"].as_array().expect("entries");
    assert!(
        entries
            .iter()
            .any(|e| e["who"] == "unsubscribe" && e["detail"]["msisdns"] == json!(["13700000001"])),
        "{audit}"
    );
    assert!(
        entries
            .iter()
            .any(|e| e["who"] == "ops" && e["action"] == "caps_set")
    );
    rig.gw.shutdown().await;
}

/// The hosted campaign service dispatches through `POST /v1/messages`: a subscriber on the
/// public do-not-disturb list is refused by the gateway and shows up in the task report as a
/// dispatch exclusion under the rule, while the rest is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_campaign_records_public_refusals_as_exclusions() {
    init_tracing();
    sluice::tls::install_provider();
    let (good, bad) = (sim("DELIVRD").await, sim("UNDELIV").await);
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("campaign.db");
    let numbers: Vec<String> = {
        let mut c = sluice_campaign::Campaigns::open(&db).expect("campaign db");
        c.load_synthetic(10, 5).expect("city");
        (0..10)
            .map(|id| c.table.msisdn(id).expect("msisdn").to_string())
            .collect()
    };
    let gw = start(
        config(dir.path(), good.addrs()[0].port(), bad.addrs()[0].port()),
        ServeOptions {
            drain_deadline: Duration::from_secs(5),
            campaign: Some(sluice::serve::CampaignHost {
                db,
                api_key: KEY.into(),
                // The campaign service's first user (admin) shares the account's key.
                dev_admin_key: Some(KEY.into()),
            }),
            ..ServeOptions::default()
        },
    )
    .await
    .expect("gateway starts");
    let rig = Rig {
        base: format!("http://{}", gw.http_addr()),
        gw,
        http: reqwest::Client::new(),
        _sims: (good, bad),
        dir,
    };
    rig.ops(
        reqwest::Method::POST,
        "/v1/rules/lists/do_not_disturb",
        Some(json!({"msisdns": [numbers[3]], "channel": "sms"})),
    )
    .await;

    let as_user = |key: String, method, path: &str, body| {
        let path = format!("/v1/campaign{path}");
        let rig = &rig;
        async move {
            let (status, v) = rig.send(method, &path, Some(&key), body).await;
            assert!((200..300).contains(&status), "{path}: {status} {v}");
            v
        }
    };
    let campaign = |method, path: &str, body| as_user(KEY.to_owned(), method, path, body);
    // An approver besides the admin: nobody approves their own submission.
    let org = campaign(reqwest::Method::GET, "/me", None).await["org_id"].clone();
    let checker = campaign(
        reqwest::Method::POST,
        "/users",
        Some(json!({"name": "checker", "org": org, "roles": ["approver"]})),
    )
    .await["id"]
        .as_i64()
        .expect("user");
    let checker_key = campaign(
        reqwest::Method::POST,
        &format!("/users/{checker}/keys"),
        Some(json!({"label": "test"})),
    )
    .await["key"]
        .as_str()
        .expect("key")
        .to_owned();
    // A campaign user with the operator role manages the public rules with its own key (the
    // console's operators have no gateway account); an approver's key does not.
    let night = campaign(
        reqwest::Method::POST,
        "/users",
        Some(json!({"name": "night-ops", "org": org, "roles": ["operator"]})),
    )
    .await["id"]
        .as_i64()
        .expect("user");
    let night_key = campaign(
        reqwest::Method::POST,
        &format!("/users/{night}/keys"),
        Some(json!({"label": "test"})),
    )
    .await["key"]
        .as_str()
        .expect("key")
        .to_owned();
    let graylist = Some(json!({"msisdns": ["13911110000"]}));
    let (status, v) = rig
        .send(
            reqwest::Method::POST,
            "/v1/rules/lists/graylist",
            Some(&night_key),
            graylist.clone(),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let (status, _) = rig
        .send(
            reqwest::Method::POST,
            "/v1/rules/lists/graylist",
            Some(&checker_key),
            graylist,
        )
        .await;
    assert_eq!(status, 403);
    let seg = campaign(
        reqwest::Method::POST,
        "/segments",
        Some(json!({"name": "all", "numbers": numbers})),
    )
    .await["segment"]["id"]
        .as_i64()
        .expect("segment");
    let task = campaign(
        reqwest::Method::POST,
        "/tasks",
        Some(json!({"name": "offer"})),
    )
    .await["id"]
        .as_i64()
        .expect("task");
    campaign(
        reqwest::Method::POST,
        &format!("/tasks/{task}/submit"),
        Some(json!({})),
    )
    .await;
    as_user(
        checker_key,
        reqwest::Method::POST,
        &format!("/tasks/{task}/approve"),
        Some(json!({})),
    )
    .await;
    campaign(
        reqwest::Method::POST,
        &format!("/tasks/{task}/transitions"),
        Some(json!({"to": "scheduled"})),
    )
    .await;
    let start_at = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(5);
    let bulk = campaign(
        reqwest::Method::POST,
        &format!("/tasks/{task}/bulk"),
        Some(json!({
            "segment": seg,
            "template": "Offer",
            "channel": "sms",
            "groups": {"by": "random", "seed": 1, "control_share": 0.0,
                "variants": [{"name": "A", "weight": 1}]},
            "slices": [{"start": start_at}],
        })),
    )
    .await["id"]
        .as_i64()
        .expect("bulk");
    campaign(
        reqwest::Method::POST,
        &format!("/bulk/{bulk}/launch"),
        Some(json!({"actor": "test"})),
    )
    .await;
    let mut report = Value::Null;
    for _ in 0..300 {
        report = campaign(reqwest::Method::GET, &format!("/tasks/{task}/report"), None).await;
        let excluded = &report["exclusions"][bulk.to_string()]["dispatch"];
        if excluded["public:do_not_disturb/sms"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        report["exclusions"][bulk.to_string()]["dispatch"]["public:do_not_disturb/sms"],
        1,
        "{report}"
    );
    let sent: u64 = report["funnel"]
        .as_array()
        .expect("funnel")
        .iter()
        .map(|r| r["sent"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(sent, 9, "{report}");
    rig.gw.shutdown().await;
}

//! Crash test of the standalone campaign service (issue 18, "Crash"): a real `sluice serve`
//! (SMPP channel to the simulator) and a real `sluice campaign serve` pointed at it, receipts
//! coming back to the campaign service by signed webhook. A bulk send to a segment of a few
//! thousand subscribers is approved and launched through the campaign API, then the campaign
//! process is SIGKILLed at random points — while batches are handed to the gateway and while
//! receipts flow — and restarted on the same database each time.
//!
//! After the last restart: every targeted subscriber (segment minus the control group and
//! the launch exclusions) reached the simulator at least once; subscribers contacted twice
//! stay within the hand-off window per kill — one batch (`batch_size`), since the runner
//! hands one batch at a time to the gateway and moves its cursor only after the gateway
//! acknowledged it (`sluice_campaign::launch`), and the gateway deduplicates a re-sent batch
//! by its `client_ref`s, so in practice it is 0; the task's funnel counts exactly the
//! unique messages as sent and every one of them with its final receipt.
//!
//! Default run: 3 000 subscribers, 5 kills with one receipt per webhook, and 3 kills with the
//! account's receipts batched 50 per webhook. `SLUICE_SOAK=1` (the ignored test): 20 kills.
//! The seed is printed; `SLUICE_CRASH_SEED` replays the kill points.

use crate::e2e_support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use e2e_support::{KEY, WEBHOOK_SECRET, config_text, free_port, start_sim, wait_healthy};
use rand::{RngExt, SeedableRng};
use serde_json::{Value, json};
use sluice_campaign::Campaigns;
use sluice_campaign::groups::{GroupSpec, Variant};
use sluice_campaign::identity::{self, Role};
use sluice_campaign::launch::{BulkSpec, SliceSpec};
use sluice_campaign::rules::{self, Channel, ListKind};

/// Subscribers in the synthetic city (all in the segment).
const SUBSCRIBERS: u32 = 3_000;
/// Messages per batch handed to the gateway: the hand-off window of one kill.
const BATCH: usize = 100;

/// A child process killed on drop (a failed assertion leaves nothing running).
struct Proc(Child);

impl Proc {
    fn spawn(args: &[&str], log: &Path) -> Self {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn sluice");
        Self(child)
    }

    /// SIGKILL: no drain, no flush.
    fn kill9(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The campaign database before the service starts: the city, a blacklist sample (a launch
/// exclusion), the admin, planner `alice` and approver `bob` with their API keys.
fn prepare_db(db: &Path, seed: u64) -> (String, String) {
    let mut c = Campaigns::open(db).expect("open campaign db");
    c.load_synthetic(SUBSCRIBERS, seed).expect("synthetic city");
    let black: Vec<String> = (0..c.table.len())
        .step_by(50)
        .filter_map(|id| c.table.msisdn(id).map(|m| m.to_string()))
        .collect();
    rules::add_to_list(
        &c.conn,
        &c.table,
        ListKind::Blacklist,
        None,
        "crash-blacklist",
        &black.iter().map(String::as_str).collect::<Vec<_>>(),
    )
    .expect("blacklist");
    let t = jiff::Timestamp::now().as_second();
    let root = identity::bootstrap(&mut c.conn, "Crash province", "admin", None, None, t)
        .expect("bootstrap")
        .expect("fresh db");
    let key = |name: &str, roles: &[Role]| {
        let id = identity::create_user(&c.conn, name, root.org, roles, None, Some(root.user), t)
            .expect("user");
        identity::create_key(&c.conn, id, "crash", None, t)
            .expect("key")
            .key
    };
    let alice = key("alice", &[Role::Planner]);
    let bob = key("bob", &[Role::Approver]);
    (alice, bob)
}

fn spawn_campaign(db: &Path, port: u16, gateway: &str, log: &Path) -> Proc {
    let listen = format!("127.0.0.1:{port}");
    Proc::spawn(
        &[
            "campaign",
            "--db",
            db.to_str().expect("utf-8 path"),
            "serve",
            "--listen",
            &listen,
            "--webhook-secret",
            WEBHOOK_SECRET,
            "--gateway",
            gateway,
            "--key",
            KEY,
        ],
        log,
    )
}

/// Waits until the campaign API answers (any HTTP status); panics after 30 s.
async fn wait_campaign_up(http: &reqwest::Client, base: &str, log: &Path) {
    for _ in 0..1500 {
        if http
            .get(format!("{base}/v1/campaign/tasks"))
            .send()
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let logs = std::fs::read_to_string(log).unwrap_or_default();
    panic!("campaign service did not come up at {base}\nlogs:\n{logs}");
}

async fn call(http: &reqwest::Client, base: &str, key: &str, path: &str, body: &Value) -> Value {
    let r = http
        .post(format!("{base}/v1/campaign{path}"))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .expect("campaign api");
    let status = r.status();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{path} answered {status}: {v}");
    v
}

async fn get(http: &reqwest::Client, base: &str, key: &str, path: &str) -> Option<Value> {
    let r = http
        .get(format!("{base}/v1/campaign{path}"))
        .bearer_auth(key)
        .send()
        .await
        .ok()?;
    r.status().is_success().then_some(())?;
    r.json().await.ok()
}

/// alice builds segment, campaign, activity and task; bob approves them; alice schedules the
/// task, adds the bulk send and launches it. Returns (task, subscribers to be sent).
async fn plan_and_launch(
    http: &reqwest::Client,
    base: &str,
    alice: &str,
    bob: &str,
    seed: u64,
) -> (i64, u64) {
    let seg = call(
        http,
        base,
        alice,
        "/segments",
        &json!({"name": "everyone", "condition": "arpu >= 0"}),
    )
    .await;
    let segment = seg["segment"]["id"].as_i64().expect("segment id");
    assert_eq!(
        seg["segment"]["count"].as_u64(),
        Some(u64::from(SUBSCRIBERS))
    );
    let id = |v: Value| v["id"].as_i64().expect("id");
    let campaign = id(call(http, base, alice, "/campaigns", &json!({"name": "crash"})).await);
    let activity = id(call(
        http,
        base,
        alice,
        &format!("/campaigns/{campaign}/activities"),
        &json!({"name": "offer"}),
    )
    .await);
    let task = id(call(
        http,
        base,
        alice,
        "/tasks",
        &json!({"name": "crash bulk", "activity": activity}),
    )
    .await);
    let comment = json!({"comment": "crash test"});
    for path in [
        format!("/campaigns/{campaign}"),
        format!("/activities/{activity}"),
        format!("/tasks/{task}"),
    ] {
        call(http, base, alice, &format!("{path}/submit"), &comment).await;
        call(http, base, bob, &format!("{path}/approve"), &comment).await;
    }
    call(
        http,
        base,
        alice,
        &format!("/tasks/{task}/transitions"),
        &json!({"to": "scheduled", "note": "crash test"}),
    )
    .await;
    let now = jiff::Timestamp::now();
    let spec = BulkSpec {
        segment,
        template: "{city}: 5GB for 10 yuan, reply Y".into(),
        group_templates: Default::default(),
        channel: Channel::Sms,
        push: None,
        mms: None,
        lane: sluice_campaign::dispatch::Lane::Marketing,
        from: None,
        extension: None,
        offer: "CRASH5G".into(),
        campaign_type: "upsell".into(),
        groups: GroupSpec::Random {
            seed,
            variants: vec![Variant {
                name: "A".into(),
                weight: 1,
            }],
            control_share: 0.1,
        },
        policy: rules::ContactPolicy::default(),
        custom_lists: Vec::new(),
        slices: vec![SliceSpec {
            start: jiff::Timestamp::from_second(now.as_second() - 1).expect("ts"),
            window: None,
        }],
        timezone: sluice_campaign::window::DEFAULT_TZ.into(),
        batch_size: BATCH,
    };
    let bulk = id(call(
        http,
        base,
        alice,
        &format!("/tasks/{task}/bulk"),
        &serde_json::to_value(spec).expect("spec"),
    )
    .await);
    let plan = call(
        http,
        base,
        alice,
        &format!("/bulk/{bulk}/launch"),
        &json!({}),
    )
    .await;
    let to_send: u64 = plan["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .filter(|g| g["is_control"] == json!(false))
        .map(|g| g["count"].as_u64().expect("count"))
        .sum();
    assert!(
        to_send > 0 && to_send < u64::from(SUBSCRIBERS),
        "control and blacklist hold some out: {plan}"
    );
    (task, to_send)
}

/// (sent, delivered, failed) of the task's funnel, summed over its groups.
async fn funnel(http: &reqwest::Client, base: &str, key: &str, task: i64) -> Option<[u64; 3]> {
    let v = get(http, base, key, &format!("/tasks/{task}/report")).await?;
    let rows = v["funnel"].as_array()?;
    let sum = |k: &str| rows.iter().filter_map(|r| r[k].as_u64()).sum::<u64>();
    Some([sum("sent"), sum("delivered"), sum("failed")])
}

async fn crash_campaign_service(kills: usize, webhook_batch: u32) {
    let seed: u64 = std::env::var("SLUICE_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    println!(
        "campaign crash test seed {seed}, {SUBSCRIBERS} subscribers, {kills} kills, \
         webhook_batch {webhook_batch}"
    );
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);

    let sim = start_sim(e2e_support::sim_listener(), None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let http_port = free_port();
    let camp_port = free_port();
    let gw = format!("http://127.0.0.1:{http_port}");
    let camp = format!("http://127.0.0.1:{camp_port}");
    // The account's receipts go to the campaign service's signed webhook.
    let text = config_text(
        &dir.path().join("data"),
        sim.addrs()[0].port(),
        &format!("{camp}/v1/campaign/webhooks"),
        "",
    )
    .replace(
        "http = \"127.0.0.1:0\"",
        &format!("http = \"127.0.0.1:{http_port}\""),
    )
    .replace(
        "webhook_secret = ",
        &format!("webhook_batch = {webhook_batch}\nwebhook_linger_ms = 20\nwebhook_secret = "),
    );
    let config = dir.path().join("sluice.toml");
    std::fs::write(&config, text).expect("write config");
    let gw_log = dir.path().join("serve.log");
    let camp_log = dir.path().join("campaign.log");
    let db = dir.path().join("campaign.db");
    let (alice, bob) = prepare_db(&db, seed);

    sluice::tls::install_provider();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let _gateway = Proc::spawn(
        &[
            "serve",
            "--no-campaign",
            "--drain-secs",
            "1",
            "--config",
            config.to_str().expect("utf-8 path"),
        ],
        &gw_log,
    );
    wait_healthy(&http, &gw).await;
    let mut service = Some(spawn_campaign(&db, camp_port, &gw, &camp_log));
    wait_campaign_up(&http, &camp, &camp_log).await;
    let (task, to_send) = plan_and_launch(&http, &camp, &alice, &bob, seed).await;
    println!("task {task}: {to_send} subscribers to send");

    // Kill points: a number of messages the simulator has seen (mid hand-off), or — past
    // `to_send` — a delay after everything was handed over (receipts flowing).
    let mut points: Vec<u64> = (0..kills)
        .map(|_| rng.random_range(1..to_send + to_send / 3))
        .collect();
    points.sort_unstable();
    let logs = || {
        format!(
            "campaign log:\n{}\ngateway log:\n{}",
            std::fs::read_to_string(&camp_log).unwrap_or_default(),
            std::fs::read_to_string(&gw_log).unwrap_or_default()
        )
    };
    for (k, &point) in points.iter().enumerate() {
        let mut last = 0;
        let mut last_progress = tokio::time::Instant::now();
        loop {
            let unique = sim.tally().unique_messages;
            if unique >= point.min(to_send) {
                break;
            }
            if unique > last {
                (last, last_progress) = (unique, tokio::time::Instant::now());
            }
            assert!(
                last_progress.elapsed() < Duration::from_secs(60),
                "kill {k}: stuck at {unique} of {point}\n{}",
                logs()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let extra = if point > to_send {
            rng.random_range(0..1500)
        } else {
            rng.random_range(0..30)
        };
        tokio::time::sleep(Duration::from_millis(extra)).await;
        if let Some(s) = service.take() {
            s.kill9();
        }
        println!(
            "kill {k} at {} sent (point {point} + {extra} ms)",
            sim.tally().unique_messages
        );
        service = Some(spawn_campaign(&db, camp_port, &gw, &camp_log));
        wait_campaign_up(&http, &camp, &camp_log).await;
    }

    // Settle: every targeted subscriber sent and receipted, as the funnel counts them. Wait
    // while it still moves (receipt webhooks back off while the service was down).
    let mut last = [0u64; 3];
    let mut last_progress = tokio::time::Instant::now();
    let settled = loop {
        let f = funnel(&http, &camp, &alice, task).await.unwrap_or(last);
        if f[0] == to_send && f[1] + f[2] == to_send {
            break true;
        }
        if f != last {
            (last, last_progress) = (f, tokio::time::Instant::now());
        }
        if last_progress.elapsed() > Duration::from_secs(90) {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let tally = sim.tally();
    let [sent, delivered, failed] = funnel(&http, &camp, &alice, task).await.expect("funnel");
    println!(
        "campaign crash: {kills} kills, funnel sent {sent} delivered {delivered} failed {failed}; \
         tally unique {} duplicates {} dlrs {}",
        tally.unique_messages, tally.duplicates, tally.dlrs_sent
    );
    assert!(
        settled,
        "funnel sent {sent} delivered {delivered} failed {failed} of {to_send}; {tally:?}\n{}",
        logs()
    );
    // Every targeted subscriber reached the center (one message per subscriber, keyed by
    // destination and text in the tally).
    assert_eq!(tally.unique_messages, to_send, "{tally:?}");
    // Contacted twice: at most the batch in flight per kill.
    assert!(
        tally.duplicates as usize <= BATCH * kills,
        "duplicates {} > {BATCH} x {kills}: {tally:?}",
        tally.duplicates
    );
    // The funnel counts the unique messages once each, every one with its final receipt.
    assert_eq!(sent, tally.unique_messages);
    assert_eq!(delivered + failed, tally.unique_messages);
    let tasks = get(&http, &camp, &alice, "/tasks").await.expect("tasks");
    let state = tasks["items"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["id"] == json!(task)))
        .map(|t| t["state"].clone());
    assert_eq!(state, Some(json!("completed")), "{tasks}");
    drop(service);
    let _ = sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_campaign_service_contacts_each_subscriber_once() {
    crash_campaign_service(5, 1).await;
}

/// The same with the account's receipts batched (`webhook_batch` 50: each POST is a JSON
/// array), which the campaign service's receipt webhook takes as well as single receipts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_campaign_service_with_batched_receipt_webhooks() {
    crash_campaign_service(3, 50).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak: 20 kills of the campaign service; run with SLUICE_SOAK=1 --ignored"]
async fn kill9_campaign_service_soak() {
    if std::env::var("SLUICE_SOAK").is_ok_and(|v| v == "1") {
        crash_campaign_service(20, 1).await;
    } else {
        println!("skipped: set SLUICE_SOAK=1 to run the 20-kill soak");
    }
}

//! End to end on 127.0.0.1: HTTP batch → durable store → dispatch → SMPP → simulator → DLR →
//! receipt layer → outbox → webhook, in one process with the simulator started by the test.

use crate::e2e_support;

use std::collections::BTreeMap;
use std::time::Duration;

use e2e_support::{
    Hook, KEY, accepted_ids, config_text, init_tracing, post, sim_listener, start_hook, start_sim,
    wait_until,
};
use serde_json::{Value, json};
use sluice::config::Config;
use sluice::serve::{Gateway, ServeOptions, start};
use sluice_loadtest::{ListenerConfig, SimHandle};

const WAIT: Duration = Duration::from_secs(30);

struct Rig {
    gw: Gateway,
    sim: SimHandle,
    hook: Hook,
    hook_url: String,
    base: String,
    client: reqwest::Client,
    _dir: tempfile::TempDir,
}

async fn rig(listener: ListenerConfig, fail_first: usize) -> Rig {
    init_tracing();
    let sim = start_sim(listener, Some(7)).await;
    let sim_port = sim.addrs()[0].port();
    let hook = Hook::default();
    *hook.fail_first.lock().unwrap() = fail_first;
    let hook_url = start_hook(hook.clone()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = Config::parse(
        &config_text(dir.path(), sim_port, &hook_url, ""),
        "e2e.toml",
    )
    .expect("config");
    let mut opts = ServeOptions {
        drain_deadline: Duration::from_secs(5),
        ..ServeOptions::default()
    };
    opts.receipts.webhook.backoff_base = Duration::from_millis(50);
    opts.receipts.webhook.backoff_max = Duration::from_millis(200);
    opts.receipts.webhook.idle_poll = Duration::from_millis(50);
    let gw = start(cfg, opts).await.expect("gateway starts");
    let base = format!("http://{}", gw.http_addr());
    Rig {
        gw,
        sim,
        hook,
        hook_url,
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

    async fn stop(self) -> sluice_loadtest::TallySnapshot {
        self.gw.shutdown().await;
        self.sim.shutdown().await.expect("sim shutdown")
    }
}

fn ids(body: &Value) -> Vec<String> {
    accepted_ids(body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_is_delivered_and_receipted_by_webhook() {
    let rig = rig(sim_listener(), 0).await;
    let long = format!("long-1 {}", "x".repeat(400));
    let mut messages: Vec<Value> = (0..20)
        .map(|i| {
            json!({"to": format!("1380013{i:04}"), "text": format!("msg {i}"),
                        "client_ref": format!("c{i}"), "tags": {"task": "42"}})
        })
        .collect();
    messages.push(json!({"to": "+8613900000000", "text": long, "client_ref": "long"}));
    let (status, body) = post(&rig.client, &rig.base, &json!({ "messages": messages })).await;
    assert_eq!(status, 202, "{body}");
    let ids = ids(&body);
    if !wait_until(WAIT, || rig.receipts().len() >= 21).await {
        let mut states = Vec::new();
        for id in &ids {
            states.push(rig.status(id).await);
        }
        let outbox = rig.gw.store().outbox("acme", 0, 100).expect("outbox");
        let outbox: Vec<String> = outbox
            .iter()
            .map(|e| format!("{} {}", e.seq, String::from_utf8_lossy(&e.body)))
            .collect();
        let got: Vec<String> = rig
            .receipts()
            .iter()
            .map(|r| r["client_ref"].to_string())
            .collect();
        panic!(
            "receipts so far: {got:?}; attempts {}; outbox {outbox:#?}",
            rig.hook.attempts.lock().unwrap()
        );
    }
    let receipts = rig.receipts();
    let by_ref: BTreeMap<String, Value> = receipts
        .iter()
        .map(|r| (r["client_ref"].as_str().unwrap_or("").to_owned(), r.clone()))
        .collect();
    assert_eq!(by_ref.len(), 21, "one receipt per message: {receipts:?}");
    for r in &receipts {
        assert_eq!(r["state"], "delivered", "{r}");
        assert_eq!(r["stat"], "DELIVRD", "{r}");
        assert!(r.get("callback_url").is_none());
    }
    assert_eq!(by_ref["c3"]["tags"], json!({"task": "42"}));
    assert_eq!(
        by_ref["long"]["parts"], 3,
        "400 GSM chars + prefix = 3 parts of 153"
    );

    let long_status = rig.status(ids.last().expect("id")).await;
    assert_eq!(long_status["state"], "delivered");
    let parts = long_status["parts"].as_array().expect("parts");
    assert_eq!(parts.len(), 3);
    for p in parts {
        assert_eq!(p["state"], "delivered");
        assert!(p["center_id"].as_str().is_some_and(|c| !c.is_empty()));
    }
    assert_eq!(long_status["receipts"].as_array().map(Vec::len), Some(3));

    let tally = rig.stop().await;
    assert_eq!(tally.unique_messages, 21, "{tally:?}");
    assert_eq!(tally.duplicates, 0, "{tally:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_receipts_and_failure_states_are_correlated() {
    let mut l = sim_listener();
    l.dlr.early_share = 1.0;
    l.dlr.mix = BTreeMap::from([("UNDELIV".to_owned(), 1.0)]);
    l.message_id = sluice_loadtest::config::IdFormat::DecimalPadded;
    let rig = rig(l, 0).await;
    let messages: Vec<Value> = (0..10)
        .map(|i| json!({"to": format!("1380013{i:04}"), "text": format!("early {i}")}))
        .collect();
    let (status, _) = post(&rig.client, &rig.base, &json!({ "messages": messages })).await;
    assert_eq!(status, 202);
    assert!(
        wait_until(WAIT, || rig.receipts().len() >= 10).await,
        "{:?}",
        rig.receipts()
    );
    for r in rig.receipts() {
        assert_eq!(r["state"], "undeliverable", "{r}");
        assert_eq!(r["stat"], "UNDELIV", "{r}");
    }
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_message_gets_an_expired_receipt_and_is_not_sent() {
    let rig = rig(sim_listener(), 0).await;
    let (status, body) = post(
        &rig.client,
        &rig.base,
        &json!({"messages":[{"to":"13800138000","text":"too late","client_ref":"late",
                             "expires_at":"2020-01-01T00:00:00Z"}]}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert!(wait_until(WAIT, || !rig.receipts().is_empty()).await);
    let r = &rig.receipts()[0];
    assert_eq!(r["state"], "expired", "{r}");
    assert_eq!(r["stat"], "EXPIRED");
    assert_eq!(r["client_ref"], "late");
    let tally = rig.stop().await;
    assert_eq!(
        tally.unique_messages, 0,
        "an expired message never reaches the center"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_failures_are_retried_until_delivered() {
    let rig = rig(sim_listener(), 3).await;
    let (status, _) = post(
        &rig.client,
        &rig.base,
        &json!({"messages":[{"to":"13800138000","text":"retry me","client_ref":"r"}]}),
    )
    .await;
    assert_eq!(status, 202);
    assert!(wait_until(WAIT, || !rig.receipts().is_empty()).await);
    assert!(
        *rig.hook.attempts.lock().unwrap() >= 4,
        "3 failures then success"
    );
    assert_eq!(rig.receipts().len(), 1);
    // Delivered entries leave the outbox.
    assert!(
        wait_until(WAIT, || rig
            .gw
            .store()
            .outbox("acme", 0, 10)
            .is_ok_and(|o| o.is_empty()))
        .await
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_reach_the_mo_webhook_and_subscribers() {
    let mut l = sim_listener();
    l.mo.reply = vec![sluice_loadtest::config::ReplyRule {
        contains: "VOTE".into(),
        probability: 1.0,
        text: "Y".into(),
        delay: Default::default(),
    }];
    let rig = rig(l, 0).await;
    let mut sub = rig.gw.receipts().subscribe();
    let (status, _) = post(
        &rig.client,
        &rig.base,
        &json!({"messages":[{"to":"13800138000","text":"VOTE now"}]}),
    )
    .await;
    assert_eq!(status, 202);
    assert!(wait_until(WAIT, || !rig.hook.mo.lock().unwrap().is_empty()).await);
    let mo = rig.hook.mo.lock().unwrap()[0].clone();
    assert_eq!(mo["text"], "Y");
    assert_eq!(mo["to"], "10690000");
    assert_eq!(mo["from"], "13800138000");
    let mut saw_mo = false;
    let mut saw_receipt = false;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !(saw_mo && saw_receipt) && tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(1), sub.recv()).await {
            Ok(Ok(sluice::receipt::Notification::Mo(m))) => {
                saw_mo = true;
                assert_eq!(m.account.as_deref(), Some("acme"));
            }
            Ok(Ok(sluice::receipt::Notification::Receipt(r))) => {
                saw_receipt = true;
                assert_eq!(r.to, "13800138000");
            }
            _ => {}
        }
    }
    assert!(saw_mo && saw_receipt, "mo {saw_mo} receipt {saw_receipt}");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_url_overrides_the_account_webhook() {
    let rig = rig(sim_listener(), 0).await;
    // The receiver files whatever reaches /mo under `mo`: use it as this message's callback.
    let callback = format!("{}/mo", rig.hook_url);
    let (status, _) = post(
        &rig.client,
        &rig.base,
        &json!({"messages":[{"to":"13800138000","text":"cb","client_ref":"cb","callback_url":callback}]}),
    )
    .await;
    assert_eq!(status, 202);
    assert!(wait_until(WAIT, || !rig.hook.mo.lock().unwrap().is_empty()).await);
    let r = rig.hook.mo.lock().unwrap()[0].clone();
    assert_eq!(r["client_ref"], "cb");
    assert_eq!(r["state"], "delivered");
    assert!(
        rig.receipts().is_empty(),
        "not sent to the account webhook too"
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_channel_binds() {
    let rig = rig(sim_listener(), 0).await;
    let url = format!("{}/readyz", rig.base);
    let client = rig.client.clone();
    let ready = || {
        let client = client.clone();
        let url = url.clone();
        async move {
            client
                .get(&url)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        }
    };
    let mut status = 0;
    for _ in 0..500 {
        status = ready().await;
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, 200, "ready once the binds are up");
    let Rig { gw, sim, .. } = rig;
    let _ = sim.shutdown().await;
    for _ in 0..500 {
        status = ready().await;
        if status == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, 503, "not ready while the center is gone");
    gw.shutdown().await;
}

/// `serve` hosts the campaign service in-process when asked: `/v1/campaign` answers on the
/// gateway's own listener, to a credential only; the development bootstrap installs an
/// admin with the given key on an empty campaign database.
#[tokio::test]
async fn serve_hosts_the_campaign_service() {
    let sim = start_sim(sim_listener(), Some(7)).await;
    let hook = Hook::default();
    let hook_url = start_hook(hook).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = Config::parse(
        &config_text(dir.path(), sim.addrs()[0].port(), &hook_url, ""),
        "e2e.toml",
    )
    .expect("config");
    let opts = ServeOptions {
        drain_deadline: Duration::from_secs(5),
        campaign: Some(sluice::serve::CampaignHost {
            db: dir.path().join("campaign.db"),
            api_key: KEY.to_owned(),
            dev_admin_key: Some("e2e-admin-key".to_owned()),
        }),
        ..ServeOptions::default()
    };
    let gw = start(cfg, opts).await.expect("gateway starts");
    let base = format!("http://{}", gw.http_addr());
    let http = reqwest::Client::new();
    let r = http
        .get(format!("{base}/v1/campaign/segments"))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 401);
    let r = http
        .get(format!("{base}/v1/campaign/me"))
        .bearer_auth("e2e-admin-key")
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 200);
    let me: serde_json::Value = r.json().await.expect("json");
    assert_eq!(
        (&me["user"], &me["roles"]),
        (&serde_json::json!("admin"), &serde_json::json!(["admin"]))
    );
    gw.shutdown().await;
    let _ = sim.shutdown().await;
    assert!(dir.path().join("campaign.db").exists());
}

//! The campaign HTTP API end to end: segment → task approval → bulk → launch (runner with a
//! fake gateway) → receipts and replies through the webhooks → order file → funnel and
//! uplift report.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use jiff::Timestamp;
use serde_json::{Value, json};
use sluice_campaign::api::{self, ApiState};
use sluice_campaign::approval::Subject;
use sluice_campaign::signature::{self, WebhookSecret};
use sluice_campaign::webhook_guard::WebhookGuard;
use sluice_campaign::{Campaigns, feedback, stats};

async fn serve(c: Campaigns, gw: FakeGateway) -> (String, Arc<Mutex<Campaigns>>) {
    let svc = Arc::new(Mutex::new(c));
    let st = ApiState::new(Arc::clone(&svc), Arc::new(gw));
    let guard = WebhookGuard::new(WebhookSecret::new(SECRET).unwrap());
    let app = axum::Router::new()
        .nest("/v1/campaign", api::router(st))
        .nest(
            "/v1/campaign/webhooks",
            feedback::webhook_router(Arc::clone(&svc), guard),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/v1/campaign"), svc)
}

/// The gateway account's webhook secret the service checks webhooks against.
const SECRET: &str = "api-feedback-test-secret";

/// POSTs `body` with the caller's key, signed as the gateway signs webhooks (other endpoints
/// ignore the header; the webhooks ignore the key).
async fn post(http: &reqwest::Client, key: &str, url: String, body: Value) -> (u16, Value) {
    let bytes = serde_json::to_vec(&body).unwrap();
    let sig = signature::sign(
        &WebhookSecret::new(SECRET).unwrap(),
        Timestamp::now().as_second(),
        &bytes,
    );
    let r = http
        .post(url)
        .bearer_auth(key)
        .header("content-type", "application/json")
        .header(signature::HEADER, sig)
        .body(bytes)
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

async fn get(http: &reqwest::Client, key: &str, url: String) -> Value {
    http.get(url)
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn campaign_api_launch_feedback_and_report() {
    let mut c = Campaigns::in_memory().unwrap();
    c.load_synthetic(900, 21).unwrap();
    let keys = identities(&mut c);
    let (maker, checker, ops) = (&keys.maker, &keys.checker, &keys.ops);
    let gw = FakeGateway::default();
    let (base, svc) = serve(c, gw.clone()).await;
    // reqwest has no built-in rustls provider in this workspace: install ring first.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();

    // Segments: bad condition → 422 with column; good → created; instant count agrees.
    let (s, e) = post(
        &http,
        maker,
        format!("{base}/segments"),
        json!({"name":"x","condition":"arpu >= "}),
    )
    .await;
    assert_eq!((s, e["column"].as_u64()), (422, Some(9)));
    let (s, seg) = post(
        &http,
        maker,
        format!("{base}/segments"),
        json!({"name":"all","condition":"age >= 0"}),
    )
    .await;
    assert_eq!(s, 200);
    let seg_id = seg["segment"]["id"].as_i64().unwrap();
    let (_, cnt) = post(
        &http,
        maker,
        format!("{base}/count"),
        json!({"condition":"age >= 0"}),
    )
    .await;
    assert_eq!(cnt["count"], seg["segment"]["count"]);
    assert_eq!(
        get(
            &http,
            maker,
            format!("{base}/segments/{seg_id}/preview?n=3")
        )
        .await
        .as_array()
        .unwrap()
        .len(),
        3
    );

    // Hierarchy + approval.
    let (_, camp) = post(
        &http,
        maker,
        format!("{base}/campaigns"),
        json!({"name":"spring"}),
    )
    .await;
    let (_, act) = post(
        &http,
        maker,
        format!("{base}/campaigns/{}/activities", camp["id"]),
        json!({"name":"data"}),
    )
    .await;
    let (_, task) = post(
        &http,
        maker,
        format!("{base}/tasks"),
        json!({"name":"sms","activity":act["id"]}),
    )
    .await;
    let task = task["id"].as_i64().unwrap();
    let (s, _) = post(
        &http,
        checker,
        format!("{base}/tasks/{task}/transitions"),
        json!({"to":"approved","actor":"eve"}),
    )
    .await;
    assert_eq!(s, 409, "draft cannot jump to approved");
    let (s, e) = post(
        &http,
        maker,
        format!("{base}/tasks/{task}/transitions"),
        json!({"to":"submitted"}),
    )
    .await;
    assert_eq!(s, 409, "submitting belongs to the approval chain: {e}");
    let (camp, act) = (camp["id"].as_i64().unwrap(), act["id"].as_i64().unwrap());
    approve(&mut svc.lock().unwrap(), Subject::Task(task));
    let schedule = || {
        post(
            &http,
            maker,
            format!("{base}/tasks/{task}/transitions"),
            json!({"to":"scheduled"}),
        )
    };
    let (s, e) = schedule().await;
    assert_eq!(s, 409, "campaign not approved yet");
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains(&format!("campaign {camp} is not approved")),
        "{e}"
    );
    approve(&mut svc.lock().unwrap(), Subject::Campaign(camp));
    approve(&mut svc.lock().unwrap(), Subject::Activity(act));
    let (s, e) = schedule().await;
    assert_eq!(s, 200, "{e}");
    assert_eq!(
        get(&http, maker, format!("{base}/tasks/{task}/history")).await[1]["actor"],
        "checker"
    );
    let spec = json!({
        "segment": seg_id, "template": "{brand}: DATA10 for you", "channel": "sms", "offer": "DATA10",
        "groups": {"by":"random","seed":99,"variants":[{"name":"A","weight":1},{"name":"B","weight":1}],"control_share":0.2},
        "slices": [{"start":"2020-01-01T00:00:00Z"}], "batch_size": 250
    });
    let (s, bulk) = post(&http, maker, format!("{base}/tasks/{task}/bulk"), spec).await;
    assert_eq!(s, 200, "{bulk}");
    let (s, plan) = post(
        &http,
        maker,
        format!("{base}/bulk/{}/launch", bulk["id"]),
        json!({"actor":"maker"}),
    )
    .await;
    assert_eq!(s, 200, "{plan}");
    // Wait for the background runner to finish (not a timing assertion: generous bound).
    let mut state = String::new();
    for _ in 0..500 {
        state = svc
            .lock()
            .unwrap()
            .conn
            .query_row("SELECT state FROM tasks WHERE id = ?1", [task], |r| {
                r.get(0)
            })
            .unwrap();
        if state == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(state, "completed");
    let groups: Vec<(String, u64)> = plan["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["name"].as_str().unwrap().to_owned(),
                g["count"].as_u64().unwrap(),
            )
        })
        .collect();
    let size = |n: &str| groups.iter().find(|g| g.0 == n).unwrap().1;
    let msgs = gw.messages();
    assert_eq!(msgs.len() as u64, size("A") + size("B"));

    // Receipts: every third subscriber fails, the rest are delivered.
    let mut delivered = std::collections::HashMap::<String, u64>::new();
    for m in &msgs {
        let sub: u32 = m.tags["subscriber"].parse().unwrap();
        let ok = !sub.is_multiple_of(3);
        let id = &gw.state.lock().unwrap().ids[&m.client_ref].clone();
        let (s, r) = post(&http, maker, format!("{base}/webhooks/receipts"), json!({"id": id, "state": if ok {"delivered"} else {"undeliverable"}, "stat":"DELIVRD","tags": m.tags})).await;
        assert_eq!((s, &r["matched"]), (200, &json!(true)));
        if ok {
            *delivered.entry(m.tags["group"].clone()).or_default() += 1;
        }
    }
    let (s, _) = post(
        &http,
        maker,
        format!("{base}/webhooks/receipts"),
        json!({"id":"nope","state":"weird"}),
    )
    .await;
    assert_eq!(s, 422);
    // A batching account POSTs an array: the same receipts again (idempotent), one for no
    // contact and one with an unknown state, which is skipped instead of refusing the batch.
    let batch: Vec<Value> = msgs
        .iter()
        .take(2)
        .map(|m| {
            let sub: u32 = m.tags["subscriber"].parse().unwrap();
            let state = if sub.is_multiple_of(3) { "undeliverable" } else { "delivered" };
            json!({"id": gw.state.lock().unwrap().ids[&m.client_ref].clone(), "state": state, "tags": m.tags})
        })
        .chain([json!({"id":"nope","state":"delivered"}), json!({"id":"nope","state":"weird"})])
        .collect();
    let (s, r) = post(
        &http,
        maker,
        format!("{base}/webhooks/receipts"),
        json!(batch),
    )
    .await;
    assert_eq!(
        (s, &r),
        (200, &json!({"matched": 2, "unmatched": 1, "invalid": 1}))
    );

    // Replies from 10 A subscribers (+86 spelling) convert A.
    let now = Timestamp::now();
    let a_subs: Vec<&sluice_campaign::dispatch::OutboundMessage> = msgs
        .iter()
        .filter(|m| m.tags["group"] == "A")
        .take(10)
        .collect();
    for m in &a_subs {
        let (s, r) = post(&http, maker, format!("{base}/webhooks/replies"), json!({"from": format!("+86{}", m.to), "to":"10086", "text":"Y", "received_at": now.to_string()})).await;
        assert_eq!((s, &r["matched"]), (200, &json!(true)));
    }
    // Orders: 20 from B, 5 from control, one unknown number, one other offer, one bad line.
    let b_nums: Vec<String> = msgs
        .iter()
        .filter(|m| m.tags["group"] == "B")
        .take(20)
        .map(|m| m.to.clone())
        .collect();
    let control_nums: Vec<String> = {
        let c = svc.lock().unwrap();
        let bulk_id = bulk["id"].as_i64().unwrap();
        let g = sluice_campaign::launch::groups(&c.conn, bulk_id).unwrap();
        let ctl = &g.iter().find(|g| g.1).unwrap().2;
        ctl.iter()
            .take(5)
            .map(|id| c.table.msisdn(id).unwrap().to_string())
            .collect()
    };
    let later = now
        .checked_add(jiff::SignedDuration::from_hours(1))
        .unwrap();
    let mut csv = String::from("msisdn,offer,time\n");
    for n in b_nums.iter().chain(&control_nums) {
        csv.push_str(&format!("{n},DATA10,{later}\n"));
    }
    csv.push_str(&format!(
        "13999999998,DATA10,{later}\n{},OTHER,{later}\n12ab,DATA10,{later}\n",
        a_subs[0].to
    ));
    let r: Value = http
        .post(format!("{base}/orders"))
        .bearer_auth(ops)
        .body(csv)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            r["contacted"].as_u64(),
            r["control"].as_u64(),
            r["unmatched"].as_u64()
        ),
        (Some(20), Some(5), Some(2))
    );
    assert_eq!(r["errors"][0]["line"], 29);
    assert_eq!(r["errors"][0]["field"], "msisdn");

    // Report: funnel numbers and uplift match the z-test on the same counts.
    let rep = get(&http, maker, format!("{base}/tasks/{task}/report")).await;
    let row = |g: &str| {
        rep["funnel"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["group"] == g)
            .unwrap()
            .clone()
    };
    for (g, conv) in [("A", 10), ("B", 20)] {
        let r = row(g);
        assert_eq!(r["targeted"].as_u64(), Some(size(g)));
        assert_eq!(r["sent"].as_u64(), Some(size(g)));
        assert_eq!(r["delivered"].as_u64(), Some(delivered[g]));
        assert_eq!(r["failed"].as_u64(), Some(size(g) - delivered[g]));
        assert_eq!(r["converted"].as_u64(), Some(conv));
    }
    let ctl = row("control");
    assert_eq!(
        (
            ctl["targeted"].as_u64(),
            ctl["sent"].as_u64(),
            ctl["converted"].as_u64()
        ),
        (Some(size("control")), Some(0), Some(5))
    );
    let up = rep["uplift"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["variant"] == "B")
        .unwrap()
        .clone();
    let want = stats::two_proportion(20, size("B"), 5, size("control")).unwrap();
    assert!((up["test"]["p_value"].as_f64().unwrap() - want.p_value).abs() < 1e-12);
    assert!((up["test"]["ci_low"].as_f64().unwrap() - want.ci_low).abs() < 1e-12);

    // Daily report (JSON and CSV) and channel monitor add up to what was sent.
    let daily = get(&http, maker, format!("{base}/reports/daily")).await;
    let sent: u64 = daily
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["sent"].as_u64().unwrap())
        .sum();
    assert_eq!(sent, msgs.len() as u64);
    let csv = http
        .get(format!("{base}/reports/daily?format=csv"))
        .bearer_auth(maker)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        csv.starts_with("date,task,group,sent,delivered,failed,converted\n"),
        "{csv}"
    );
    let mon = get(&http, maker, format!("{base}/reports/channels")).await;
    let m_sent: u64 = mon
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["sent"].as_u64().unwrap())
        .sum();
    assert_eq!(m_sent, msgs.len() as u64);
    assert_eq!(mon[0]["channel"], "sms");
}

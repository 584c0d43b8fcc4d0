//! The management endpoints over HTTP (`tower::ServiceExt::oneshot`, no socket): subscriber
//! import jobs, lists and conflicts, outcome segments (through `POST /segments`), roll-up
//! reports in JSON and CSV.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, header};
use common::*;
use roaring::RoaringBitmap;
use serde_json::{Value, json};
use sluice_campaign::api::{self, ApiState};
use sluice_campaign::approval::Subject;
use sluice_campaign::groups::{GroupSpec, Variant};
use sluice_campaign::{Campaigns, launch, lifecycle, manage_api};
use tower::ServiceExt;

type Svc = Arc<Mutex<Campaigns>>;

thread_local! {
    /// The admin key of the service the current test's `app` was built for.
    static KEY: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// The API over `svc`, with the root organisation and an admin bootstrapped; requests made
/// through [`call`] carry the admin's key.
fn app(svc: &Svc) -> axum::Router {
    let key = {
        use sluice_campaign::identity::{self, Role};
        let mut c = svc.lock().unwrap();
        let _ = identity::bootstrap(&mut c.conn, "Province", "admin", None, None, 0).unwrap();
        let root = identity::root_org(&c.conn).unwrap().unwrap();
        let u = identity::create_user(&c.conn, "test-admin", root, &[Role::Admin], None, None, 0)
            .unwrap();
        identity::create_key(&c.conn, u, "test", None, 0)
            .unwrap()
            .key
    };
    KEY.with(|k| *k.borrow_mut() = key);
    let st = ApiState::new(Arc::clone(svc), Arc::new(FakeGateway::default()));
    api::router(st).merge(manage_api::router(Arc::clone(svc)))
}

async fn call(app: &axum::Router, method: &str, uri: &str, body: Body) -> (u16, Vec<u8>, String) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .header(
            header::AUTHORIZATION,
            format!("Bearer {}", KEY.with(|k| k.borrow().clone())),
        )
        .body(body)
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
        .await
        .unwrap();
    (status, bytes.to_vec(), ctype)
}

async fn json_call(app: &axum::Router, method: &str, uri: &str, body: Value) -> (u16, Value) {
    let (s, b, _) = call(app, method, uri, Body::from(body.to_string())).await;
    (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

async fn get(app: &axum::Router, uri: &str) -> (u16, Value) {
    let (s, b, _) = call(app, "GET", uri, Body::empty()).await;
    (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

/// Polls an import job until done.
async fn wait_job(app: &axum::Router, job: u64) -> Value {
    for _ in 0..500 {
        let (s, v) = get(app, &format!("/subscribers/imports/{job}")).await;
        assert_eq!(s, 200, "{v}");
        if v["done"] == json!(true) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("import job {job} did not finish");
}

#[tokio::test]
async fn import_is_streamed_reports_progress_and_errors_and_is_visible_at_once() {
    let svc: Svc = Arc::new(Mutex::new(Campaigns::in_memory().unwrap()));
    let app = app(&svc);
    // The body arrives in pieces through a channel: the job id is answered before the body
    // is complete, and progress moves while it streams.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let body = Body::from_stream(tokio_stream_from(rx));
    let (s, b, _) = call(&app, "POST", "/subscribers/import", body).await;
    assert_eq!(s, 202);
    let job = serde_json::from_slice::<Value>(&b).unwrap()["job"]
        .as_u64()
        .unwrap();
    tx.send(Ok(b"msisdn,city,vip\n13800000001,Hefei,yes\n".to_vec()))
        .await
        .unwrap();
    let mut seen = Value::Null;
    for _ in 0..500 {
        seen = get(&app, &format!("/subscribers/imports/{job}")).await.1;
        if seen["rows"] == json!(1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        (seen["rows"].clone(), seen["done"].clone()),
        (json!(1), json!(false)),
        "{seen}"
    );
    assert!(seen["bytes"].as_u64().unwrap() > 0);
    tx.send(Ok(
        b"13800000002,Wuhu,no\nnot-a-number,Hefei,yes\n+8613800000003,Hefei,yes\n".to_vec(),
    ))
    .await
    .unwrap();
    drop(tx);
    let done = wait_job(&app, job).await;
    assert_eq!(
        (&done["rows"], &done["new"], &done["rejected"]),
        (&json!(4), &json!(3), &json!(1)),
        "{done}"
    );
    assert_eq!(done["errors"][0]["line"], json!(4));
    assert_eq!(done["errors"][0]["field"], json!("msisdn"));
    // The running service sees the rows and the header's attribute column.
    assert_eq!(svc.lock().unwrap().count("vip = \"yes\"").unwrap(), 2);

    // A file without msisdn fails as a whole; the job says why.
    let (_, b, _) = call(
        &app,
        "POST",
        "/subscribers/import",
        Body::from("city\nHefei\n"),
    )
    .await;
    let job = serde_json::from_slice::<Value>(&b).unwrap()["job"]
        .as_u64()
        .unwrap();
    let failed = wait_job(&app, job).await;
    assert!(
        failed["failure"].as_str().unwrap().contains("msisdn"),
        "{failed}"
    );
    assert_eq!(svc.lock().unwrap().table.len(), 3);
    assert_eq!(get(&app, "/subscribers/imports/999").await.0, 404);
}

/// A `Stream` over an mpsc receiver (tokio-stream is not a dependency).
fn tokio_stream_from(
    rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|i| (i, rx)) })
}

#[tokio::test]
async fn lists_are_kept_by_number_paged_and_checked() {
    let mut c = Campaigns::in_memory().unwrap();
    c.load_synthetic(5, 2).unwrap();
    let known = c.table.msisdn(1).unwrap().to_string();
    let svc: Svc = Arc::new(Mutex::new(c));
    let app = app(&svc);
    let (s, v) = json_call(
        &app,
        "POST",
        "/lists/do_not_disturb",
        json!({"action":"add","channel":"sms","numbers":[known, "13911112222", "x1"]}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        v,
        json!({"changed": 2, "not_subscribers": 1, "invalid": ["x1"]})
    );
    let (s, v) = get(&app, "/lists/do_not_disturb?limit=1").await;
    assert_eq!(s, 200);
    assert_eq!(v["entries"].as_array().unwrap().len(), 1);
    let next = v["next_after"].as_u64().unwrap();
    let (_, v2) = get(&app, &format!("/lists/do_not_disturb?limit=1&after={next}")).await;
    assert_eq!(v2["entries"][0]["msisdn"], json!(13_911_112_222_u64));
    assert_eq!(v2["entries"][0]["subscriber"], json!(false));
    assert_eq!(v2["entries"][0]["channel"], json!("sms"));
    let (_, v) = json_call(
        &app,
        "POST",
        "/lists/do_not_disturb",
        json!({"action":"remove","channel":"sms","numbers":["13911112222"]}),
    )
    .await;
    assert_eq!(v["changed"], json!(1));
    let (_, v) = get(&app, "/lists/do_not_disturb?channel=sms").await;
    assert_eq!(v["entries"].as_array().unwrap().len(), 1);
    // Refusals name the field.
    for (uri, body, field) in [
        ("/lists/nope", json!({"action":"add","numbers":[]}), "kind"),
        (
            "/lists/blacklist",
            json!({"action":"add","channel":"sms","numbers":[]}),
            "channel",
        ),
        (
            "/lists/custom",
            json!({"action":"add","numbers":["13800000000"]}),
            "name",
        ),
        (
            "/lists/do_not_disturb",
            json!({"action":"add","channel":"fax","numbers":[]}),
            "channel",
        ),
    ] {
        let (s, v) = json_call(&app, "POST", uri, body).await;
        assert_eq!(s, 422, "{uri}: {v}");
        assert!(v["error"].as_str().unwrap().contains(field), "{v}");
    }
    // Conflicts.
    let (s, v) = json_call(
        &app,
        "POST",
        "/conflicts",
        json!({"action":"add","a":"B","b":"A"}),
    )
    .await;
    assert_eq!((s, v), (200, json!([{"a":"A","b":"B"}])));
    assert_eq!(get(&app, "/conflicts").await.1, json!([{"a":"A","b":"B"}]));
    let (s, _) = json_call(
        &app,
        "POST",
        "/conflicts",
        json!({"action":"add","a":"A","b":"A"}),
    )
    .await;
    assert_eq!(s, 422);
    let (_, v) = json_call(
        &app,
        "POST",
        "/conflicts",
        json!({"action":"remove","a":"A","b":"B"}),
    )
    .await;
    assert_eq!(v, json!([]));
}

/// A campaign → activity → task with a planned bulk send split A / control, contacts for
/// every A member (every 4th failed, the rest delivered), replies from every 3rd delivered
/// A member, orders from some A and control members. Returns the service, task, A members,
/// control members, and the contact day.
fn scenario() -> (Campaigns, i64, Vec<u32>, Vec<u32>, i64) {
    let mut c = Campaigns::in_memory().unwrap();
    c.load_synthetic(200, 7).unwrap();
    let t0 = ts("2026-03-01T00:00:00Z");
    let camp = lifecycle::create_campaign(&c.conn, "spring", 0).unwrap();
    let act = lifecycle::create_activity(&c.conn, camp, "data pack").unwrap();
    let task = lifecycle::create_task(&c.conn, Some(act), "push", 0).unwrap();
    for subject in [
        Subject::Campaign(camp),
        Subject::Activity(act),
        Subject::Task(task),
    ] {
        approve(&mut c, subject);
    }
    c.transition(task, lifecycle::TaskState::Scheduled, "maker", t0, "")
        .unwrap();
    let seg = c.segment_from_condition("all", "age >= 0", t0).unwrap();
    let mut sp = spec(seg.id, vec![slice("2026-03-10T01:00:00Z", None)]);
    sp.groups = GroupSpec::Random {
        seed: 3,
        variants: vec![Variant {
            name: "A".into(),
            weight: 1,
        }],
        control_share: 0.25,
    };
    let bulk = c.create_bulk(task, &sp).unwrap();
    c.plan(bulk, ts("2026-03-10T01:00:00Z")).unwrap();
    let groups = launch::groups(&c.conn, bulk).unwrap();
    let members =
        |n: &str| -> Vec<u32> { groups.iter().find(|g| g.0 == n).unwrap().2.iter().collect() };
    let (a, control) = (members("A"), members("control"));
    let at = ts("2026-03-10T02:00:00Z").as_second();
    for (i, &sub) in a.iter().enumerate() {
        let state = if i % 4 == 0 {
            "undeliverable"
        } else {
            "delivered"
        };
        c.conn
            .execute(
                "INSERT INTO contacts (sub_id, task_id, bulk_id, slice, grp, channel, offer,
                   campaign_type, at, state) VALUES (?1, ?2, ?3, 0, 'A', 'sms', 'DATA10', 'promo', ?4, ?5)",
                rusqlite::params![sub, task, bulk, at, state],
            )
            .unwrap();
        if i % 4 != 0 && i % 3 == 0 {
            c.conn
                .execute(
                    "INSERT INTO replies (msisdn, text, at, to_addr, task_id, outcome)
                     VALUES (?1, 'Y', ?2, '10086', ?3, 'extension')",
                    rusqlite::params![c.table.msisdn(sub).unwrap() as i64, at + 60, task],
                )
                .unwrap();
        }
        if i % 5 == 1 {
            order(&c, sub, task, bulk, "A", at + 3600);
        }
    }
    for &sub in control.iter().step_by(10) {
        order(&c, sub, task, bulk, "control", at + 3600);
    }
    (c, task, a, control, at)
}

fn order(c: &Campaigns, sub: u32, task: i64, bulk: i64, grp: &str, at: i64) {
    c.conn
        .execute(
            "INSERT INTO conversions (sub_id, task_id, bulk_id, grp, channel, kind, offer, at, via)
             VALUES (?1, ?2, ?3, ?4, 'sms', 'order', 'DATA10', ?5, '')",
            rusqlite::params![sub, task, bulk, grp, at],
        )
        .unwrap();
}

#[tokio::test]
async fn outcome_segments_pick_the_right_subscribers() {
    let (c, task, a, _control, _) = scenario();
    let failed: RoaringBitmap = a.iter().step_by(4).copied().collect();
    let responders: RoaringBitmap = a
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 4 != 0 && i % 3 == 0)
        .map(|(_, &s)| s)
        .collect();
    let converted: RoaringBitmap = a
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 5 == 1)
        .map(|(_, &s)| s)
        .collect();
    let all_a: RoaringBitmap = a.iter().copied().collect();
    let delivered = &all_a - &failed;
    let svc: Svc = Arc::new(Mutex::new(c));
    let app = app(&svc);
    for (outcome, want) in [
        ("responders", responders.clone()),
        ("non_responders", &delivered - &responders),
        ("failed", failed),
        ("converted", converted),
        ("delivered", delivered),
    ] {
        let (s, v) = json_call(
            &app,
            "POST",
            "/segments",
            json!({"name": format!("round 2 {outcome}"), "from_task": task, "outcome": outcome}),
        )
        .await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["segment"]["count"], json!(want.len()), "{outcome}");
        assert_eq!(v["segment"]["kind"], json!("outcome"));
        let id = v["segment"]["id"].as_i64().unwrap();
        let got = sluice_campaign::segment::members(&svc.lock().unwrap().conn, id).unwrap();
        assert_eq!(got, want, "{outcome}");
    }
    let (s, _) = json_call(
        &app,
        "POST",
        "/segments",
        json!({"name":"x","from_task": 999, "outcome":"failed"}),
    )
    .await;
    assert_eq!(s, 404);
    let (s, _) = json_call(
        &app,
        "POST",
        "/segments",
        json!({"name":"x","from_task": task, "outcome":"bored"}),
    )
    .await;
    assert_eq!(s, 422);
}

#[tokio::test]
async fn rollups_by_campaign_activity_and_city_add_up_in_json_and_csv() {
    let (c, _task, a, control, _) = scenario();
    let cities: BTreeMap<String, u64> =
        a.iter()
            .chain(control.iter())
            .fold(BTreeMap::new(), |mut m, &s| {
                *m.entry(c.table.str_value("city", s).to_owned())
                    .or_default() += 1;
                m
            });
    let svc: Svc = Arc::new(Mutex::new(c));
    let app = app(&svc);
    let n = a.len() as u64;
    let failed = a.iter().step_by(4).count() as u64;
    let replied = (0..a.len()).filter(|i| i % 4 != 0 && i % 3 == 0).count() as u64;
    let conv_a = (0..a.len()).filter(|i| i % 5 == 1).count() as u64;
    let conv_c = control.iter().step_by(10).count() as u64;

    let (s, v) = get(&app, "/reports/rollup?by=campaign&period=day&tz=UTC").await;
    assert_eq!(s, 200, "{v}");
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{v}");
    let r = &rows[0];
    assert_eq!(r["period"], json!("2026-03-10"));
    assert_eq!(r["campaign_name"], json!("spring"));
    assert_eq!(r["activity"], Value::Null);
    assert_eq!(
        r["funnel"],
        json!({"targeted": n + control.len() as u64, "sent": n, "delivered": n - failed,
               "failed": failed, "replied": replied, "converted": conv_a + conv_c})
    );
    assert_eq!(
        (r["contacts"].as_u64(), r["conversions"].as_u64()),
        (Some(n), Some(conv_a + conv_c))
    );
    let up = &r["uplift"];
    assert!((up["variant_rate"].as_f64().unwrap() - conv_a as f64 / n as f64).abs() < 1e-12);
    assert!(
        (up["control_rate"].as_f64().unwrap() - conv_c as f64 / control.len() as f64).abs() < 1e-12
    );

    let (_, v) = get(&app, "/reports/rollup?by=activity&period=month&tz=UTC").await;
    assert_eq!(v[0]["period"], json!("2026-03"));
    assert_eq!(v[0]["activity_name"], json!("data pack"));

    let (_, v) = get(&app, "/reports/rollup?by=city&tz=UTC").await;
    let by_city: BTreeMap<String, u64> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["city"].as_str().unwrap().to_owned(),
                r["funnel"]["targeted"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(by_city, cities);
    let sent: u64 = v
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["funnel"]["sent"].as_u64().unwrap())
        .sum();
    assert_eq!(sent, n);

    let (s, body, ctype) = call(
        &app,
        "GET",
        "/reports/rollup?by=campaign&format=csv&tz=UTC",
        Body::empty(),
    )
    .await;
    assert_eq!(s, 200);
    assert!(ctype.starts_with("text/csv"));
    let text = String::from_utf8(body).unwrap();
    let mut lines = text.lines();
    assert!(lines.next().unwrap().starts_with(
        "period,campaign,campaign_name,activity,activity_name,city,org,targeted,sent"
    ));
    let row = lines.next().unwrap();
    assert!(
        row.starts_with(&format!(
            "2026-03-10,1,spring,,,,,{},{n},",
            n + control.len() as u64
        )),
        "{row}"
    );
    assert!(lines.next().is_none());

    // By organisation: the task belongs to the root (created before organisations).
    let (s, v) = get(&app, "/reports/rollup?by=org&tz=UTC").await;
    assert_eq!(s, 200, "{v}");
    let rows = v.as_array().unwrap();
    assert!(
        rows.iter()
            .all(|r| r["org"].is_i64() && r["city"].is_null()),
        "{v}"
    );
    let sent: u64 = rows
        .iter()
        .map(|r| r["funnel"]["sent"].as_u64().unwrap())
        .sum();
    assert_eq!(sent, n);
    for bad in [
        "/reports/rollup?by=region",
        "/reports/rollup?by=city&format=xml",
        "/reports/rollup?by=city&tz=Mars/Base",
    ] {
        let (s, _, _) = call(&app, "GET", bad, Body::empty()).await;
        assert!(s == 400 || s == 422, "{bad}: {s}");
    }
}

#[tokio::test]
async fn management_routes_need_a_credential_and_the_role() {
    use sluice_campaign::identity::{self, OrgLevel, Role};
    let svc: Svc = Arc::new(Mutex::new(Campaigns::in_memory().unwrap()));
    let app = app(&svc);
    let (city_planner, auditor) = {
        let c = svc.lock().unwrap();
        let root = identity::root_org(&c.conn).unwrap().unwrap();
        let city = identity::create_org(&c.conn, "Hefei", Some(root), OrgLevel::City).unwrap();
        let key = |name: &str, org: i64, role: Role| {
            let u = identity::create_user(&c.conn, name, org, &[role], None, None, 0).unwrap();
            identity::create_key(&c.conn, u, "t", None, 0).unwrap().key
        };
        (
            key("hf-planner", city, Role::Planner),
            key("auditor", root, Role::Auditor),
        )
    };
    let routes = [
        ("POST", "/subscribers/import"),
        ("GET", "/subscribers/imports/1"),
        ("GET", "/lists/blacklist"),
        ("POST", "/lists/blacklist"),
        ("GET", "/conflicts"),
        ("POST", "/conflicts"),
        ("GET", "/reports/rollup?by=org"),
    ];
    for (method, uri) in routes {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .unwrap();
        let status = app.clone().oneshot(req).await.unwrap().status().as_u16();
        assert_eq!(status, 401, "{method} {uri}");
    }
    let as_key = |key: &str, method: &str, uri: &str, body: &str| {
        Request::builder()
            .method(method)
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::AUTHORIZATION, format!("Bearer {key}"))
            .body(Body::from(body.to_owned()))
            .unwrap()
    };
    // A city planner does not rewrite the province's subscriber table; an auditor changes
    // nothing; a planner may not edit the blacklist (operators' list).
    let status = |req: Request<Body>| {
        let app = app.clone();
        async move { app.oneshot(req).await.unwrap().status().as_u16() }
    };
    let import = as_key(&city_planner, "POST", "/subscribers/import", "msisdn\n");
    assert_eq!(status(import).await, 403);
    let add = r#"{"action":"add","numbers":["13800000001"]}"#;
    assert_eq!(
        status(as_key(&auditor, "POST", "/lists/blacklist", add)).await,
        403
    );
    assert_eq!(
        status(as_key(&city_planner, "POST", "/lists/blacklist", add)).await,
        403
    );
    assert_eq!(
        status(as_key(&auditor, "GET", "/reports/rollup?by=org", "")).await,
        200
    );
}

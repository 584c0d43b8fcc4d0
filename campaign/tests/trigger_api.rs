//! The event and trigger routes over HTTP (`tower::ServiceExt::oneshot`, no socket):
//! credentials (401), roles (403), tenants (404 for a sibling city's trigger), per-line
//! errors of an NDJSON and a JSON-array intake, one trigger per task.

mod common;

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, header};
use common::FakeGateway;
use serde_json::{Value, json};
use sluice_campaign::api::{self, ApiState};
use sluice_campaign::identity::{self, OrgLevel, Role};
use sluice_campaign::{Campaigns, trigger_api};
use tower::ServiceExt;

struct Setup {
    app: axum::Router,
    ops: String,
    planner_a: String,
    planner_b: String,
}

fn setup() -> Setup {
    let mut c = Campaigns::in_memory().unwrap();
    c.load_synthetic(20, 1).unwrap();
    let b = identity::bootstrap(&mut c.conn, "Province", "admin", None, None, 0)
        .unwrap()
        .unwrap();
    let a = identity::create_org(&c.conn, "City A", Some(b.org), OrgLevel::City).unwrap();
    let bb = identity::create_org(&c.conn, "City B", Some(b.org), OrgLevel::City).unwrap();
    let key = |name: &str, org: i64, role: Role| {
        let u = identity::create_user(&c.conn, name, org, &[role], None, None, 0).unwrap();
        identity::create_key(&c.conn, u, "t", None, 0).unwrap().key
    };
    let (ops, planner_a, planner_b) = (
        key("ops", b.org, Role::Operator),
        key("pa", a, Role::Planner),
        key("pb", bb, Role::Planner),
    );
    let svc = Arc::new(Mutex::new(c));
    let st = ApiState::new(svc, Arc::new(FakeGateway::default()));
    let app = api::router(Arc::clone(&st)).merge(trigger_api::router(st));
    Setup {
        app,
        ops,
        planner_a,
        planner_b,
    }
}

async fn call(
    app: &axum::Router,
    key: Option<&str>,
    method: &str,
    uri: &str,
    body: &str,
) -> (u16, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json");
    if let Some(k) = key {
        req = req.header(header::AUTHORIZATION, format!("Bearer {k}"));
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::from(body.to_owned())).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

const ROUTES: [(&str, &str); 8] = [
    ("POST", "/events"),
    ("POST", "/tasks/1/trigger"),
    ("GET", "/triggers"),
    ("GET", "/triggers/monitor"),
    ("GET", "/triggers/1"),
    ("POST", "/triggers/1/activate"),
    ("GET", "/triggers/1/report"),
    ("POST", "/calendar/holidays"),
];

#[tokio::test]
async fn every_route_needs_a_credential() {
    let s = setup();
    for (m, path) in ROUTES {
        let (st, _) = call(&s.app, None, m, path, "{}").await;
        assert_eq!(st, 401, "{m} {path}");
        let (st, _) = call(&s.app, Some("sk_unknown"), m, path, "{}").await;
        assert_eq!(st, 401, "{m} {path} with an unknown key");
    }
}

#[tokio::test]
async fn roles_tenants_and_per_line_errors() {
    let s = setup();
    let event = |id: &str, msisdn: &str| {
        json!({"id": id, "msisdn": msisdn, "type": "churn_risk", "ts": 1_765_000_000, "attrs": {"score": 0.8}})
            .to_string()
    };
    // Only operators feed events.
    let (st, _) = call(
        &s.app,
        Some(&s.planner_a),
        "POST",
        "/events",
        &event("x", "13800000001"),
    )
    .await;
    assert_eq!(st, 403);
    let ndjson = format!(
        "{}\n{{oops\n\n{}\n",
        event("a", "13800000001"),
        event("b", "abc")
    );
    let (st, v) = call(&s.app, Some(&s.ops), "POST", "/events", &ndjson).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["accepted"], 1);
    assert_eq!(
        v["errors"],
        json!([
            {"line": 2, "field": "*", "reason": v["errors"][0]["reason"]},
            {"line": 4, "field": "msisdn", "reason": v["errors"][1]["reason"]},
        ])
    );
    let array = format!(
        "[{}, {}, 7]",
        event("a", "13800000001"),
        event("c", "13800000002")
    );
    let (st, v) = call(&s.app, Some(&s.ops), "POST", "/events", &array).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!((&v["accepted"], &v["duplicates"]), (&json!(1), &json!(1)));
    assert_eq!(v["errors"][0]["line"], 3);
    let (st, v) = call(&s.app, Some(&s.ops), "POST", "/events", "[1,").await;
    assert_eq!(st, 422, "{v}");

    // City A's planner makes a triggered task; city B cannot see it.
    let (st, t) = call(
        &s.app,
        Some(&s.planner_a),
        "POST",
        "/tasks",
        r#"{"name":"churn"}"#,
    )
    .await;
    assert_eq!(st, 200, "{t}");
    let task = t["id"].as_i64().unwrap();
    let spec = json!({"event_type": "churn_risk", "condition": "attrs.score >= 0.7 and brand = \"gotone\"",
        "template": "We miss you, {city}", "offer": "KEEP"});
    let (st, v) = call(
        &s.app,
        Some(&s.planner_a),
        "POST",
        &format!("/tasks/{task}/trigger"),
        &spec.to_string(),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let id = v["id"].as_i64().unwrap();
    let (st, v) = call(
        &s.app,
        Some(&s.planner_a),
        "POST",
        &format!("/tasks/{task}/trigger"),
        &spec.to_string(),
    )
    .await;
    assert_eq!(st, 422, "one trigger per task: {v}");
    let (st, _) = call(
        &s.app,
        Some(&s.planner_b),
        "POST",
        &format!("/tasks/{task}/trigger"),
        &spec.to_string(),
    )
    .await;
    assert_eq!(st, 404);
    for path in [format!("/triggers/{id}"), format!("/triggers/{id}/report")] {
        assert_eq!(
            call(&s.app, Some(&s.planner_b), "GET", &path, "").await.0,
            404,
            "{path}"
        );
        assert_eq!(
            call(&s.app, Some(&s.planner_a), "GET", &path, "").await.0,
            200,
            "{path}"
        );
    }
    let (_, list) = call(&s.app, Some(&s.planner_b), "GET", "/triggers", "").await;
    assert_eq!(list, json!([]));
    let (_, list) = call(&s.app, Some(&s.planner_a), "GET", "/triggers", "").await;
    assert_eq!(list[0]["state"], "draft");
    // The names the console's list shows (a task outside the campaign tree has no parents).
    assert_eq!(
        list[0]["task"],
        json!({"task_name": "churn", "activity": null, "activity_name": null,
            "campaign": null, "campaign_name": null})
    );
    // A draft task is not sendable: nothing matches before the approval chain completes.
    let (st, _) = call(
        &s.app,
        Some(&s.planner_b),
        "POST",
        &format!("/triggers/{id}/activate"),
        "",
    )
    .await;
    assert_eq!(st, 404);
    let (st, _) = call(
        &s.app,
        Some(&s.planner_a),
        "POST",
        &format!("/triggers/{id}/activate"),
        "",
    )
    .await;
    assert_eq!(st, 409);
    let (st, _) = call(
        &s.app,
        Some(&s.ops),
        "POST",
        &format!("/triggers/{id}/activate"),
        "",
    )
    .await;
    assert_eq!(st, 409);
    // Bad specs name the field.
    let bad = json!({"event_type": "churn_risk", "condition": "colour = 1", "template": "x"});
    let (st, v) = call(
        &s.app,
        Some(&s.planner_a),
        "POST",
        "/tasks",
        r#"{"name":"t2"}"#,
    )
    .await;
    assert_eq!(st, 200);
    let t2 = v["id"].as_i64().unwrap();
    let (st, v) = call(
        &s.app,
        Some(&s.planner_a),
        "POST",
        &format!("/tasks/{t2}/trigger"),
        &bad.to_string(),
    )
    .await;
    assert_eq!(st, 422);
    assert!(v["error"].as_str().unwrap().contains("colour"), "{v}");
    let (st, m) = call(&s.app, Some(&s.ops), "GET", "/triggers/monitor", "").await;
    assert_eq!(st, 200);
    // The background matcher may or may not have passed the two events yet (no trigger
    // runs, so it only moves its cursor); both were received within the last minute.
    assert!(m["pending_events"].as_u64().is_some_and(|p| p <= 2), "{m}");
    assert!(m["events_per_s"].as_f64().is_some_and(|r| r > 0.0), "{m}");
}

//! Credentials, roles and tenancy of the campaign HTTP API, through the real router
//! (`tower::ServiceExt::oneshot`, no sockets) over an in-memory service.
//!
//! Tenants: a province with two cities, A and B. Planners of A and B each build a segment,
//! campaign, activity, task and bulk send; each city must see only its own (404 for the
//! other's, the same answer as an unknown id), the province sees both.

mod common;

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use common::{FakeGateway, slice, spec};
use serde_json::{Value, json};
use sluice_campaign::Campaigns;
use sluice_campaign::api::{self, ApiState};
use sluice_campaign::approval_api;
use sluice_campaign::identity::{self, OrgLevel, Role};
use tower::ServiceExt;

struct Reply {
    status: StatusCode,
    www_auth: Option<String>,
    body: Value,
}

async fn call(app: &Router, method: Method, uri: &str, key: Option<&str>, body: Value) -> Reply {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("/v1/campaign{uri}"));
    if let Some(k) = key {
        req = req.header(header::AUTHORIZATION, format!("Bearer {k}"));
    }
    let req = if body.is_null() {
        req.body(Body::empty()).unwrap()
    } else {
        req.header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string()))
            .unwrap()
    };
    let r = app.clone().oneshot(req).await.unwrap();
    let status = r.status();
    let www_auth = r
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap().to_owned());
    let bytes = axum::body::to_bytes(r.into_body(), usize::MAX)
        .await
        .unwrap();
    Reply {
        status,
        www_auth,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

impl Reply {
    /// Asserts the status, with the body in the message (it says why), and hands the reply on.
    #[track_caller]
    fn status_is(self, status: StatusCode) -> Self {
        assert_eq!(self.status, status, "{}", self.body);
        self
    }
}

/// Ids one city built through the API.
#[derive(Debug, Clone, Copy)]
struct Built {
    segment: i64,
    campaign: i64,
    activity: i64,
    task: i64,
    bulk: i64,
}

struct World {
    app: Router,
    svc: Arc<Mutex<Campaigns>>,
    admin: String,
    province: String,
    auditor: String,
    a: String,
    a_approver: String,
    b: String,
    org_a: i64,
    org_b: i64,
    built_a: Built,
    built_b: Built,
}

fn user_key(c: &Campaigns, name: &str, org: i64, roles: &[Role]) -> String {
    let u = identity::create_user(&c.conn, name, org, roles, None, None, 0).unwrap();
    identity::create_key(&c.conn, u, "test", None, 0)
        .unwrap()
        .key
}

async fn build(app: &Router, key: &str, tag: &str) -> Built {
    let post = async |uri: &str, body: Value| {
        call(app, Method::POST, uri, Some(key), body)
            .await
            .status_is(StatusCode::OK)
            .body
    };
    let seg = post(
        "/segments",
        json!({"name": format!("seg {tag}"), "condition": "age >= 0"}),
    );
    let segment = seg.await["segment"]["id"].as_i64().unwrap();
    let id = |body: Value| body["id"].as_i64().unwrap();
    let campaign = id(post("/campaigns", json!({"name": format!("spring {tag}")})).await);
    let activity = id(post(
        &format!("/campaigns/{campaign}/activities"),
        json!({"name": format!("data {tag}")}),
    )
    .await);
    let task = id(post(
        "/tasks",
        json!({"name": format!("sms {tag}"), "activity": activity}),
    )
    .await);
    let plan = spec(segment, vec![slice("2026-03-01T00:00:00Z", None)]);
    let bulk = id(post(
        &format!("/tasks/{task}/bulk"),
        serde_json::to_value(plan).unwrap(),
    )
    .await);
    Built {
        segment,
        campaign,
        activity,
        task,
        bulk,
    }
}

impl World {
    /// `method uri` as the holder of `key` (most calls here carry a key; `call` for none).
    async fn send(&self, method: Method, uri: &str, key: &str, body: Value) -> Reply {
        call(&self.app, method, uri, Some(key), body).await
    }

    /// `GET uri` as the holder of `key`.
    async fn get(&self, uri: &str, key: &str) -> Reply {
        self.send(Method::GET, uri, key, Value::Null).await
    }

    /// `POST uri` with `body` as the holder of `key`.
    async fn post(&self, uri: &str, key: &str, body: Value) -> Reply {
        self.send(Method::POST, uri, key, body).await
    }
}

async fn world() -> World {
    let mut c = Campaigns::in_memory().unwrap();
    c.load_synthetic(200, 7).unwrap();
    let boot = identity::bootstrap(&mut c.conn, "Province", "admin", None, None, 0)
        .unwrap()
        .unwrap();
    let org_a = identity::create_org(&c.conn, "City A", Some(boot.org), OrgLevel::City).unwrap();
    let org_b = identity::create_org(&c.conn, "City B", Some(boot.org), OrgLevel::City).unwrap();
    let province = user_key(&c, "prov", boot.org, &[Role::Planner]);
    let auditor = user_key(&c, "audit", boot.org, &[Role::Auditor]);
    let a = user_key(&c, "alice", org_a, &[Role::Planner]);
    let a_approver = user_key(&c, "bob", org_a, &[Role::Approver]);
    let b = user_key(&c, "carol", org_b, &[Role::Planner]);
    let svc = Arc::new(Mutex::new(c));
    let st = ApiState::new(Arc::clone(&svc), Arc::new(FakeGateway::default()));
    let app = Router::new().nest(
        "/v1/campaign",
        api::router(Arc::clone(&st)).merge(approval_api::router().with_state(st)),
    );
    let built_a = build(&app, &a, "A").await;
    let built_b = build(&app, &b, "B").await;
    World {
        app,
        svc,
        admin: boot.key,
        province,
        auditor,
        a,
        a_approver,
        b,
        org_a,
        org_b,
        built_a,
        built_b,
    }
}

#[tokio::test]
async fn every_route_refuses_a_missing_or_unknown_credential() {
    let w = world().await;
    let mut routes: Vec<(Method, String)> = api::authenticated_routes::<FakeGateway>()
        .into_iter()
        .map(|(m, p)| (m, p.to_owned()))
        .collect();
    assert!(routes.len() >= 30, "{routes:?}");
    assert!(routes.contains(&(Method::POST, "/tasks/{id}/transitions".to_owned())));
    routes.extend(approval_api::routes());
    assert!(routes.contains(&(Method::POST, "/tasks/{id}/approve".to_owned())));
    for (method, path) in routes {
        let uri = path
            .replace("{id}", &w.built_a.task.to_string())
            .replace("{kind}", "task");
        for key in [None, Some("sk_0000"), Some("ss_0000")] {
            let r = call(&w.app, method.clone(), &uri, key, json!({})).await;
            assert_eq!(
                r.status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} with {key:?}"
            );
            assert_eq!(r.www_auth.as_deref(), Some("Bearer"), "{method} {path}");
        }
    }
    // Login itself is open; the webhooks are outside this layer (signed separately).
    let r = call(
        &w.app,
        Method::POST,
        "/login",
        None,
        json!({"user":"nobody","password":"whatever1"}),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

/// Every (method, uri) that reads or acts on one object, for an object set.
fn object_routes(b: Built) -> Vec<(Method, String, Value)> {
    let t = b.task;
    vec![
        (
            Method::GET,
            format!("/segments/{}/preview", b.segment),
            Value::Null,
        ),
        (
            Method::GET,
            format!("/segments/{}/export", b.segment),
            Value::Null,
        ),
        (
            Method::POST,
            "/segments".into(),
            json!({"name":"u","op":"union","a":b.segment,"b":b.segment}),
        ),
        (
            Method::GET,
            format!("/campaigns/{}", b.campaign),
            Value::Null,
        ),
        (
            Method::POST,
            format!("/campaigns/{}/activities", b.campaign),
            json!({"name":"x"}),
        ),
        (
            Method::POST,
            "/tasks".into(),
            json!({"name":"x","activity":b.activity}),
        ),
        (
            Method::POST,
            format!("/tasks/{t}/transitions"),
            json!({"to":"submitted"}),
        ),
        (Method::GET, format!("/tasks/{t}/history"), Value::Null),
        (Method::GET, format!("/tasks/{t}/report"), Value::Null),
        (Method::GET, format!("/tasks/{t}/stop/preview"), Value::Null),
        (Method::PATCH, format!("/tasks/{t}"), json!({"name":"x"})),
        (
            Method::PATCH,
            format!("/campaigns/{}", b.campaign),
            json!({"name":"x"}),
        ),
        (Method::POST, format!("/tasks/{t}/submit"), json!({})),
        (Method::POST, format!("/tasks/{t}/approve"), json!({})),
        (Method::GET, format!("/tasks/{t}/approval"), Value::Null),
        (
            Method::POST,
            format!("/campaigns/{}/submit", b.campaign),
            json!({}),
        ),
        (
            Method::POST,
            format!("/activities/{}/cancel", b.activity),
            json!({}),
        ),
        (
            Method::POST,
            format!("/tasks/{t}/bulk"),
            serde_json::to_value(spec(b.segment, vec![slice("2026-03-01T00:00:00Z", None)]))
                .unwrap(),
        ),
        (Method::POST, format!("/tasks/{t}/pause"), json!({})),
        (Method::POST, format!("/tasks/{t}/resume"), json!({})),
        (Method::POST, format!("/bulk/{}/launch", b.bulk), json!({})),
    ]
}

#[tokio::test]
async fn a_city_cannot_see_or_touch_a_sibling_city() {
    let w = world().await;
    for (method, uri, body) in object_routes(w.built_b) {
        let r = w.send(method.clone(), &uri, &w.a, body.clone()).await;
        assert_eq!(
            r.status,
            StatusCode::NOT_FOUND,
            "{method} {uri}: {}",
            r.body
        );
        let err = r.body["error"].as_str().unwrap();
        assert!(err.ends_with("not found"), "{err}");
        // Exactly what an unknown id answers.
        let unknown = uri
            .replace(&format!("/{}/", w.built_b.task), "/999999/")
            .replace(&format!("/{}/", w.built_b.segment), "/999999/");
        if unknown != uri {
            let u = w.send(method.clone(), &unknown, &w.a, body).await;
            assert_eq!(u.status, StatusCode::NOT_FOUND, "{unknown}");
            assert_eq!(
                u.body["error"].as_str().unwrap().replace("999999", "#"),
                err.replace(&w.built_b.task.to_string(), "#")
                    .replace(&w.built_b.segment.to_string(), "#")
            );
        }
    }
    // B's objects are still untouched: task in draft, no extra activity.
    let r = w
        .get(&format!("/campaigns/{}", w.built_b.campaign), &w.province)
        .await
        .status_is(StatusCode::OK);
    assert_eq!(r.body["activity_list"].as_array().unwrap().len(), 1);
    assert_eq!(r.body["org"], w.org_b);
    // The province reads both cities' objects.
    for b in [w.built_a, w.built_b] {
        for uri in [
            format!("/segments/{}/preview", b.segment),
            format!("/tasks/{}/history", b.task),
            format!("/tasks/{}/report", b.task),
            format!("/campaigns/{}", b.campaign),
        ] {
            let r = w.get(&uri, &w.province).await;
            assert_eq!(r.status, StatusCode::OK, "{uri}: {}", r.body);
        }
    }
    // Segment lists are scoped the same way.
    let segs = async |k: &str| {
        w.get("/segments", k)
            .await
            .body
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_i64().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(segs(&w.a).await, vec![w.built_a.segment]);
    assert_eq!(segs(&w.b).await, vec![w.built_b.segment]);
    assert_eq!(
        segs(&w.province).await,
        vec![w.built_a.segment, w.built_b.segment]
    );
}

async fn ids(w: &World, key: &str, uri: &str) -> (Vec<i64>, i64) {
    let r = w.get(uri, key).await;
    assert_eq!(r.status, StatusCode::OK, "{uri}: {}", r.body);
    let items = r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_i64().unwrap())
        .collect();
    (items, r.body["total"].as_i64().unwrap())
}

#[tokio::test]
async fn listings_are_scoped_filtered_and_paged() {
    let w = world().await;
    let (a, b) = (w.built_a, w.built_b);
    assert_eq!(ids(&w, &w.a, "/tasks").await, (vec![a.task], 1));
    assert_eq!(ids(&w, &w.b, "/campaigns").await, (vec![b.campaign], 1));
    assert_eq!(ids(&w, &w.a, "/activities").await, (vec![a.activity], 1));
    assert_eq!(ids(&w, &w.b, "/bulk").await, (vec![b.bulk], 1));
    assert_eq!(
        ids(&w, &w.province, "/tasks").await,
        (vec![b.task, a.task], 2)
    );
    assert_eq!(
        ids(&w, &w.province, &format!("/tasks?org={}", w.org_a)).await,
        (vec![a.task], 1)
    );
    assert_eq!(
        ids(&w, &w.province, "/tasks?owner=carol").await,
        (vec![b.task], 1)
    );
    assert_eq!(
        ids(&w, &w.province, "/campaigns?q=SPRING%20a").await,
        (vec![a.campaign], 1)
    );
    assert_eq!(
        ids(&w, &w.province, "/bulk?state=draft").await,
        (vec![b.bulk, a.bulk], 2)
    );
    assert_eq!(
        ids(&w, &w.province, "/tasks?state=running").await,
        (vec![], 0)
    );
    assert_eq!(
        ids(&w, &w.province, "/tasks?limit=1&offset=1").await,
        (vec![a.task], 2)
    );
    // A city filtering on its sibling sees nothing, not the sibling's rows.
    assert_eq!(
        ids(&w, &w.a, &format!("/tasks?org={}", w.org_b)).await,
        (vec![], 0)
    );
    let r = w.get("/tasks", &w.a).await;
    let row = &r.body["items"][0];
    assert_eq!(
        (
            &row["state"],
            &row["owner"],
            &row["org"],
            &row["campaign"],
            &row["contacts"]
        ),
        (
            &json!("draft"),
            &json!("alice"),
            &json!(w.org_a),
            &json!(a.campaign),
            &json!(0)
        )
    );
    assert_eq!(row["next_slice_at"], Value::Null, "not planned yet");
    for bad in [
        "/tasks?limit=501",
        "/tasks?state=flying",
        "/campaigns?state=draft",
    ] {
        let r = w.get(bad, &w.a).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
    }
    let r = w.get(&format!("/campaigns/{}", a.campaign), &w.a).await;
    assert_eq!(r.body["activity_list"][0]["id"], a.activity);
    assert_eq!(r.body["owner"], "alice");
}

#[tokio::test]
async fn roles_limit_what_a_caller_may_do() {
    let w = world().await;
    let t = w.built_a.task;
    for (method, uri, body) in [
        (Method::POST, "/campaigns".to_owned(), json!({"name":"x"})),
        (
            Method::POST,
            "/segments".to_owned(),
            json!({"name":"x","condition":"age >= 0"}),
        ),
        (
            Method::POST,
            format!("/tasks/{t}/transitions"),
            json!({"to":"submitted"}),
        ),
        (Method::POST, format!("/tasks/{t}/pause"), json!({})),
        (Method::POST, "/orders".to_owned(), json!({})),
        (Method::GET, "/users".to_owned(), Value::Null),
        (
            Method::POST,
            "/orgs".to_owned(),
            json!({"name":"C","parent":w.org_a,"level":"county"}),
        ),
    ] {
        let r = w.send(method.clone(), &uri, &w.auditor, body).await;
        assert_eq!(
            r.status,
            StatusCode::FORBIDDEN,
            "{method} {uri}: {}",
            r.body
        );
    }
    for uri in [
        "/tasks",
        "/campaigns",
        "/reports/daily",
        "/reports/channels",
    ] {
        let r = w.get(uri, &w.auditor).await;
        assert_eq!(r.status, StatusCode::OK, "{uri}");
    }
    // Order files credit any organisation's tasks: a city operator may not import one.
    let city_ops = {
        let c = w.svc.lock().unwrap();
        user_key(&c, "a-ops", w.org_a, &[Role::Operator])
    };
    w.post("/orders", &city_ops, json!({}))
        .await
        .status_is(StatusCode::FORBIDDEN);
    // A planner cannot approve; an approver cannot submit; moves before sending go through
    // the approval routes, not /transitions.
    let task = format!("/tasks/{t}");
    w.post(&format!("{task}/submit"), &w.a_approver, json!({}))
        .await
        .status_is(StatusCode::FORBIDDEN);
    let to_submitted = json!({"to":"submitted"});
    w.post(&format!("{task}/transitions"), &w.a, to_submitted)
        .await
        .status_is(StatusCode::CONFLICT);
    let please = json!({"comment":"please"});
    let r = w.post(&format!("{task}/submit"), &w.a, please).await;
    assert_eq!(r.status_is(StatusCode::OK).body["awaiting_org"], w.org_a);
    w.post(&format!("{task}/approve"), &w.a, json!({}))
        .await
        .status_is(StatusCode::FORBIDDEN);
    let r = w
        .post(&format!("{task}/approve"), &w.a_approver, Value::Null)
        .await;
    assert_eq!(r.status_is(StatusCode::OK).body["state"], "approved");
    // History names the authenticated users, not the body's `actor`.
    let h = w.get(&format!("{task}/history"), &w.a).await;
    let actors: Vec<&str> = h
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["actor"].as_str().unwrap())
        .collect();
    assert_eq!(actors, ["alice", "bob"]);
    let (by, at): (Option<i64>, Option<i64>) = w
        .svc
        .lock()
        .unwrap()
        .conn
        .query_row(
            "SELECT updated_by, updated_at FROM tasks WHERE id = ?1",
            [t],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(by.is_some() && at.is_some_and(|at| at > 0));
}

#[tokio::test]
async fn nobody_approves_their_own_submission() {
    let w = world().await;
    let both = {
        let c = w.svc.lock().unwrap();
        user_key(&c, "dora", w.org_a, &[Role::Planner, Role::Approver])
    };
    let t = w.built_a.task;
    let act = async |key: &str, action: &str, body: Value| {
        w.post(&format!("/tasks/{t}/{action}"), key, body).await
    };
    act(&both, "submit", json!({}))
        .await
        .status_is(StatusCode::OK);
    let r = act(&both, "approve", json!({})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(
        r.body["error"]
            .as_str()
            .unwrap()
            .contains("cannot approve or reject"),
        "{}",
        r.body
    );
    // Someone else may; after a revise and a resubmit by another planner, dora may too.
    let r = act(&w.a_approver, "reject", json!({})).await;
    assert_eq!(
        r.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a reason is required"
    );
    act(&w.a_approver, "reject", json!({"comment":"no opt-out"}))
        .await
        .status_is(StatusCode::OK);
    act(&both, "revise", json!({}))
        .await
        .status_is(StatusCode::OK);
    act(&w.a, "submit", json!({}))
        .await
        .status_is(StatusCode::OK);
    let r = act(&both, "approve", json!({})).await;
    assert_eq!((r.status, &r.body["round"]), (StatusCode::OK, &json!(2)));
}

/// Campaigns of city A go through A and then the province; a task is scheduled only when
/// its campaign and activity are approved.
#[tokio::test]
async fn a_chain_of_two_levels_is_enforced_over_http() {
    let w = world().await;
    let (prov_approver, prov_org) = {
        let c = w.svc.lock().unwrap();
        let root = identity::root_org(&c.conn).unwrap().unwrap();
        (user_key(&c, "pam", root, &[Role::Approver]), root)
    };
    let steps = json!([{"level":"self","action":"approve"},{"level":"root","action":"approve"}]);
    let chain_uri = format!("/orgs/{}/chains/campaign", w.org_a);
    w.send(Method::PUT, &chain_uri, &w.a, steps.clone())
        .await
        .status_is(StatusCode::FORBIDDEN);
    w.send(Method::PUT, &chain_uri, &w.admin, steps)
        .await
        .status_is(StatusCode::OK);
    let uncle = json!([{"level":"uncle"}]);
    let r = w.send(Method::PUT, &chain_uri, &w.admin, uncle).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        r.body["error"].as_str().unwrap().contains("steps[0].level"),
        "{}",
        r.body
    );
    let r = w.get(&chain_uri, &w.a).await;
    assert_eq!(
        (r.status, &r.body["configured"]),
        (StatusCode::OK, &json!(true))
    );
    let r = w.get(&format!("/orgs/{}/chains/task", w.org_a), &w.b).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "a sibling city's chains");

    let b = w.built_a;
    let post = async |key: &str, uri: String, body: Value| w.post(&uri, key, body).await;
    let camp = format!("/campaigns/{}", b.campaign);
    let r = post(&w.a, format!("{camp}/submit"), json!({})).await;
    assert_eq!(r.body["awaiting_org"], w.org_a, "{}", r.body);
    let r = post(&prov_approver, format!("{camp}/approve"), json!({})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.body["awaiting_org"], w.org_a, "{}", r.body);
    let r = post(
        &w.a_approver,
        format!("{camp}/approve"),
        json!({"comment":"city ok"}),
    )
    .await;
    assert_eq!(r.body["awaiting_org"], prov_org, "{}", r.body);
    let r = post(&w.a_approver, format!("{camp}/approve"), json!({})).await;
    assert_eq!(
        r.status,
        StatusCode::FORBIDDEN,
        "not the city's step any more"
    );
    // The task and the activity use the default chain (city A's approvers).
    for uri in [
        format!("/tasks/{}", b.task),
        format!("/activities/{}", b.activity),
    ] {
        assert_eq!(
            post(&w.a, format!("{uri}/submit"), json!({})).await.status,
            StatusCode::OK
        );
        let r = post(&w.a_approver, format!("{uri}/approve"), json!({})).await;
        assert_eq!(r.body["state"], "approved", "{}", r.body);
    }
    let schedule = format!("/tasks/{}/transitions", b.task);
    let r = post(&w.a, schedule.clone(), json!({"to":"scheduled"})).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert!(
        r.body["error"]
            .as_str()
            .unwrap()
            .contains("is not approved"),
        "{}",
        r.body
    );
    let r = post(
        &prov_approver,
        format!("{camp}/approve"),
        json!({"comment":"province ok"}),
    )
    .await;
    assert_eq!(r.body["state"], "approved", "{}", r.body);
    post(&w.a, schedule, json!({"to":"scheduled"}))
        .await
        .status_is(StatusCode::OK);

    let r = w
        .get(&format!("{camp}/approval"), &w.auditor)
        .await
        .status_is(StatusCode::OK);
    let trail: Vec<(String, String, Value)> = r.body["trail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["actor"].as_str().unwrap().to_owned(),
                e["comment"].clone(),
            )
        })
        .collect();
    assert_eq!(
        trail,
        [
            ("submit".into(), "alice".into(), json!("")),
            ("approve".into(), "bob".into(), json!("city ok")),
            ("approve".into(), "pam".into(), json!("province ok")),
        ]
    );
    w.get(&format!("{camp}/approval"), &w.b)
        .await
        .status_is(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn login_logout_and_expired_sessions() {
    let w = world().await;
    let erin = json!({"name":"erin","org":w.org_b,"roles":["auditor"],"password":"erin's secret"});
    w.post("/users", &w.admin, erin)
        .await
        .status_is(StatusCode::OK);
    let login = async |user: &str, password: &str| {
        let body = json!({"user": user, "password": password});
        call(&w.app, Method::POST, "/login", None, body).await
    };
    let wrong = login("erin", "not her secret").await;
    let unknown = login("nobody", "erin's secret").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        (unknown.status, &unknown.body),
        (wrong.status, &wrong.body),
        "an unknown user answers like a wrong password"
    );
    let ok = login("erin", "erin's secret").await;
    assert_eq!(ok.status, StatusCode::OK);
    let token = ok.body["token"].as_str().unwrap().to_owned();
    assert!(ok.body["expires_at"].as_i64().unwrap() > jiff::Timestamp::now().as_second());
    let me = w.get("/me", &token).await;
    assert_eq!(
        (me.status, &me.body["user"], &me.body["org_id"]),
        (StatusCode::OK, &json!("erin"), &json!(w.org_b))
    );
    w.post("/logout", &token, Value::Null)
        .await
        .status_is(StatusCode::NO_CONTENT);
    w.get("/me", &token)
        .await
        .status_is(StatusCode::UNAUTHORIZED);
    // A session opened 13 hours ago has expired.
    let old = {
        let c = w.svc.lock().unwrap();
        let then = jiff::Timestamp::now().as_second() - 13 * 3600;
        identity::login(&c.conn, "erin", "erin's secret", then)
            .unwrap()
            .unwrap()
    };
    w.get("/me", &old.token)
        .await
        .status_is(StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn keys_are_shown_once_and_stop_working_when_revoked() {
    let w = world().await;
    let me = w.get("/me", &w.a).await;
    let alice = me.body["user_id"].as_i64().unwrap();
    let users = w.get("/users", &w.admin).await;
    let carol = users
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == "carol")
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    // A user mints a key for themselves; not for someone in another city.
    let k = w
        .post(
            &format!("/users/{alice}/keys"),
            &w.a,
            json!({"label":"laptop"}),
        )
        .await
        .status_is(StatusCode::OK);
    let (key_id, key) = (
        k.body["id"].as_i64().unwrap(),
        k.body["key"].as_str().unwrap().to_owned(),
    );
    assert!(key.starts_with("sk_"));
    w.post(&format!("/users/{carol}/keys"), &w.a, json!({}))
        .await
        .status_is(StatusCode::NOT_FOUND);
    w.get("/me", &key).await.status_is(StatusCode::OK);
    // Another city's planner cannot revoke it; alice can.
    let revoke = format!("/keys/{key_id}");
    w.send(Method::DELETE, &revoke, &w.b, Value::Null)
        .await
        .status_is(StatusCode::NOT_FOUND);
    w.send(Method::DELETE, &revoke, &w.a, Value::Null)
        .await
        .status_is(StatusCode::OK);
    w.get("/me", &key).await.status_is(StatusCode::UNAUTHORIZED);
    // Disabling a user shuts out all their keys at once.
    w.post(&format!("/users/{carol}/disable"), &w.admin, Value::Null)
        .await
        .status_is(StatusCode::OK);
    w.get("/me", &w.b).await.status_is(StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn admins_manage_orgs_and_users_inside_their_tree() {
    let w = world().await;
    let city_admin = {
        let c = w.svc.lock().unwrap();
        user_key(&c, "a-admin", w.org_a, &[Role::Admin])
    };
    let a1 = json!({"name":"County A1","parent":w.org_a,"level":"county"});
    let r = w
        .post("/orgs", &city_admin, a1)
        .await
        .status_is(StatusCode::OK);
    let county = r.body["id"].as_i64().unwrap();
    let b1 = json!({"name":"County B1","parent":w.org_b,"level":"county"});
    w.post("/orgs", &city_admin, b1)
        .await
        .status_is(StatusCode::NOT_FOUND);
    let bad = json!({"name":"Bad","parent":w.org_a,"level":"city"});
    w.post("/orgs", &w.admin, bad)
        .await
        .status_is(StatusCode::UNPROCESSABLE_ENTITY);
    let orgs = w.get("/orgs", &city_admin).await;
    let ids: Vec<i64> = orgs
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![w.org_a, county]);
    let frank = json!({"name":"frank","org":w.org_b,"roles":["planner"]});
    w.post("/users", &city_admin, frank)
        .await
        .status_is(StatusCode::NOT_FOUND);
    // A county planner's task is visible to the city above, not to the sibling city.
    let gina = json!({"name":"gina","org":county,"roles":["planner"]});
    let r = w
        .post("/users", &city_admin, gina)
        .await
        .status_is(StatusCode::OK);
    let gina = r.body["id"].as_i64().unwrap();
    let k = w
        .post(
            &format!("/users/{gina}/keys"),
            &city_admin,
            json!({"label":"x"}),
        )
        .await;
    let gk = k.body["key"].as_str().unwrap().to_owned();
    let t = w
        .post("/tasks", &gk, json!({"name":"county notice"}))
        .await
        .body["id"]
        .as_i64()
        .unwrap();
    assert!(ids_contains(&w, &w.a, t).await);
    assert!(!ids_contains(&w, &w.b, t).await);
}

async fn ids_contains(w: &World, key: &str, task: i64) -> bool {
    ids(w, key, "/tasks").await.0.contains(&task)
}

#[tokio::test]
async fn reports_count_only_the_callers_tasks() {
    let w = world().await;
    {
        let c = w.svc.lock().unwrap();
        for (task, n) in [(w.built_a.task, 3), (w.built_b.task, 5)] {
            for i in 0..n {
                c.conn
                    .execute(
                        "INSERT INTO contacts (sub_id, task_id, bulk_id, slice, grp, channel, offer, campaign_type, at)
                         VALUES (?1, ?2, 0, 0, 'A', 'sms', 'o', 'promo', 1772323200)",
                        [i, task],
                    )
                    .unwrap();
            }
        }
    }
    let sent = async |key: &str, uri: &str| {
        w.get(uri, key)
            .await
            .body
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["sent"].as_u64().unwrap())
            .sum::<u64>()
    };
    for uri in ["/reports/daily", "/reports/channels"] {
        assert_eq!(sent(&w.a, uri).await, 3, "{uri}");
        assert_eq!(sent(&w.b, uri).await, 5, "{uri}");
        assert_eq!(sent(&w.province, uri).await, 8, "{uri}");
    }
}

#[tokio::test]
async fn rows_without_an_organisation_belong_to_the_root() {
    let w = world().await;
    // As the local CLI (or a database from before identity) writes them: org_id NULL.
    let t = {
        let c = w.svc.lock().unwrap();
        sluice_campaign::lifecycle::create_task(&c.conn, None, "cli task", 0).unwrap()
    };
    assert!(ids_contains(&w, &w.province, t).await);
    assert!(!ids_contains(&w, &w.a, t).await);
    w.get(&format!("/tasks/{t}/history"), &w.a)
        .await
        .status_is(StatusCode::NOT_FOUND);
    let r = w.get(&format!("/tasks?org={}", w.org_a), &w.province).await;
    assert!(
        !r.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["id"] == t)
    );
}

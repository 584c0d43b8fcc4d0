//! What the web console needs from the campaign service, through the real routers
//! (`tower::ServiceExt::oneshot`, no sockets): the approver's inbox, the stop preview, and
//! the console's own files with their security and caching headers.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use common::{FakeGateway, slice, spec};
use serde_json::{Value, json};
use sluice_campaign::Campaigns;
use sluice_campaign::api::{self, ApiState};
use sluice_campaign::identity::{self, OrgLevel, Role};
use sluice_campaign::{approval_api, console, inbox};
use tower::ServiceExt;

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Reply {
    #[track_caller]
    fn json(&self, status: StatusCode) -> Value {
        let v = serde_json::from_slice(&self.body).unwrap_or(Value::Null);
        assert_eq!(self.status, status, "{v}");
        v
    }
}

async fn call(
    app: &Router,
    method: Method,
    uri: &str,
    key: Option<&str>,
    body: Value,
    extra: &[(header::HeaderName, &str)],
) -> Reply {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(k) = key {
        req = req.header(header::AUTHORIZATION, format!("Bearer {k}"));
    }
    for (k, v) in extra {
        req = req.header(k, *v);
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
    let headers = r.headers().clone();
    let body = axum::body::to_bytes(r.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

struct World {
    app: Router,
    svc: Arc<Mutex<Campaigns>>,
    alice: String,
    bob: String,
    carol_approver: String,
    task: i64,
    segment_size: u64,
}

fn user_key(c: &Campaigns, name: &str, org: i64, roles: &[Role]) -> String {
    let u = identity::create_user(&c.conn, name, org, roles, None, None, 0).unwrap();
    identity::create_key(&c.conn, u, "test", None, 0)
        .unwrap()
        .key
}

/// City A: planner alice, approver bob; city B: approver carol. Alice builds a segment, a
/// task with a bulk send, and submits it (the default chain: one approve step at city A).
async fn world() -> World {
    let mut c = Campaigns::in_memory().unwrap();
    c.load_synthetic(200, 7).unwrap();
    let boot = identity::bootstrap(&mut c.conn, "Province", "admin", None, None, 0)
        .unwrap()
        .unwrap();
    let org_a = identity::create_org(&c.conn, "City A", Some(boot.org), OrgLevel::City).unwrap();
    let org_b = identity::create_org(&c.conn, "City B", Some(boot.org), OrgLevel::City).unwrap();
    let alice = user_key(&c, "alice", org_a, &[Role::Planner]);
    let bob = user_key(&c, "bob", org_a, &[Role::Approver]);
    let carol_approver = user_key(&c, "carol", org_b, &[Role::Approver]);
    let svc = Arc::new(Mutex::new(c));
    let st = ApiState::new(Arc::clone(&svc), Arc::new(FakeGateway::default()));
    let app = Router::new()
        .nest(
            "/v1/campaign",
            api::router(Arc::clone(&st))
                .merge(approval_api::router().with_state(Arc::clone(&st)))
                .merge(inbox::router().with_state(st)),
        )
        .merge(console::router());
    let post = async |uri: &str, body: Value| {
        call(
            &app,
            Method::POST,
            &format!("/v1/campaign{uri}"),
            Some(&alice),
            body,
            &[],
        )
        .await
        .json(StatusCode::OK)
    };
    let seg = post(
        "/segments",
        json!({"name": "young", "condition": "age < 40"}),
    )
    .await;
    let segment = seg["segment"]["id"].as_i64().unwrap();
    let segment_size = seg["segment"]["count"].as_u64().unwrap();
    let task = post("/tasks", json!({"name": "greeting"})).await["id"]
        .as_i64()
        .unwrap();
    post(
        &format!("/tasks/{task}/bulk"),
        serde_json::to_value(spec(segment, vec![slice("2026-03-01T00:00:00Z", None)])).unwrap(),
    )
    .await;
    post(&format!("/tasks/{task}/submit"), json!({})).await;
    World {
        app,
        svc,
        alice,
        bob,
        carol_approver,
        task,
        segment_size,
    }
}

impl World {
    async fn get(&self, uri: &str, key: &str) -> Reply {
        call(&self.app, Method::GET, uri, Some(key), Value::Null, &[]).await
    }
}

#[tokio::test]
async fn the_inbox_holds_what_awaits_the_callers_decision() {
    let w = world().await;
    let items = w
        .get("/v1/campaign/approvals/inbox", &w.bob)
        .await
        .json(StatusCode::OK)["items"]
        .clone();
    let items = items.as_array().unwrap();
    assert_eq!(items.len(), 1, "{items:?}");
    let it = &items[0];
    assert_eq!(it["kind"], "task");
    assert_eq!(it["id"], w.task);
    assert_eq!(it["status"]["submitted_by"], "alice");
    assert_eq!(it["trail"][0]["action"], "submit");
    let bulk = &it["bulk"][0];
    assert_eq!(bulk["segment_size"].as_u64(), Some(w.segment_size));
    assert_eq!(bulk["spec"]["channel"], "sms");
    let samples = bulk["samples"].as_array().unwrap();
    assert_eq!(samples.len(), inbox::SAMPLES);
    for s in samples {
        let text = s["text"].as_str().unwrap();
        // The template's fields are filled: no placeholder is left.
        assert!(text.contains("用户您好") && !text.contains('{'), "{text}");
    }

    // The submitter, and an approver of another organisation, have nothing to decide.
    for key in [&w.alice, &w.carol_approver] {
        let v = w
            .get("/v1/campaign/approvals/inbox", key)
            .await
            .json(StatusCode::OK);
        assert_eq!(v["items"], json!([]), "{v}");
    }

    // Once approved it leaves the inbox.
    call(
        &w.app,
        Method::POST,
        &format!("/v1/campaign/tasks/{}/approve", w.task),
        Some(&w.bob),
        json!({}),
        &[],
    )
    .await
    .json(StatusCode::OK);
    let v = w
        .get("/v1/campaign/approvals/inbox", &w.bob)
        .await
        .json(StatusCode::OK);
    assert_eq!(v["items"], json!([]));
    let r = call(
        &w.app,
        Method::GET,
        "/v1/campaign/approvals/inbox",
        None,
        Value::Null,
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_stop_preview_counts_what_the_gateway_still_holds() {
    let w = world().await;
    let uri = format!("/v1/campaign/tasks/{}/stop/preview", w.task);
    assert_eq!(
        w.get(&uri, &w.alice).await.json(StatusCode::OK),
        json!({"would_cancel": 0})
    );
    {
        let c = w.svc.lock().unwrap();
        // Handed over and still open (3), final (one of each final state), never accepted
        // by the gateway (no id: refused by a public rule), and another task's.
        let mut n = 0;
        let mut contact = |task: i64, gateway_id: Option<&str>, state: &str| {
            n += 1;
            c.conn
                .execute(
                    "INSERT INTO contacts (sub_id, task_id, bulk_id, slice, grp, channel, offer,
                     campaign_type, at, gateway_id, state) VALUES (?1, ?2, 1, 0, 'all', 'sms',
                     '', '', 0, ?3, ?4)",
                    rusqlite::params![n, task, gateway_id, state],
                )
                .unwrap();
        };
        for i in 0..3 {
            contact(w.task, Some(&format!("open-{i}")), "sent");
        }
        for s in [
            "delivered",
            "undeliverable",
            "expired",
            "rejected",
            "failed",
            "cancelled",
        ] {
            contact(w.task, Some(&format!("final-{s}")), s);
        }
        contact(w.task, None, "sent");
        contact(w.task + 1, Some("other"), "sent");
    }
    assert_eq!(
        w.get(&uri, &w.alice).await.json(StatusCode::OK),
        json!({"would_cancel": 3})
    );
    // Another organisation's task is unknown to the caller.
    w.get(&uri, &w.carol_approver)
        .await
        .json(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_draft_or_rejected_object_can_be_renamed_a_submitted_one_cannot() {
    let w = world().await;
    let patch = async |uri: &str, key: &str, name: &str| {
        call(
            &w.app,
            Method::PATCH,
            &format!("/v1/campaign{uri}"),
            Some(key),
            json!({ "name": name }),
            &[],
        )
        .await
    };
    let t = format!("/tasks/{}", w.task);
    // Submitted: what the approver sees is what sends.
    let v = patch(&t, &w.alice, "renamed")
        .await
        .json(StatusCode::UNPROCESSABLE_ENTITY);
    assert!(v["error"].as_str().unwrap().contains("pending"), "{v}");
    // Rejected: editable again, and the listing shows the new name.
    call(
        &w.app,
        Method::POST,
        &format!("/v1/campaign{t}/reject"),
        Some(&w.bob),
        json!({"comment": "wrong offer"}),
        &[],
    )
    .await
    .json(StatusCode::OK);
    let v = patch(&t, &w.alice, "  greeting v2 ")
        .await
        .json(StatusCode::OK);
    assert_eq!(v, json!({"id": w.task, "name": "greeting v2"}));
    let list = w
        .get("/v1/campaign/tasks?q=v2", &w.alice)
        .await
        .json(StatusCode::OK);
    assert_eq!(list["items"][0]["id"], w.task, "{list}");
    patch(&t, &w.alice, " ")
        .await
        .json(StatusCode::UNPROCESSABLE_ENTITY);
    // An approver may not edit; another organisation does not see the task.
    patch(&t, &w.bob, "x").await.json(StatusCode::FORBIDDEN);
    patch(&t, &w.carol_approver, "x")
        .await
        .json(StatusCode::NOT_FOUND);
    // A draft campaign too.
    let c = call(
        &w.app,
        Method::POST,
        "/v1/campaign/campaigns",
        Some(&w.alice),
        json!({"name": "spring"}),
        &[],
    )
    .await
    .json(StatusCode::OK)["id"]
        .as_i64()
        .unwrap();
    patch(&format!("/campaigns/{c}"), &w.alice, "summer")
        .await
        .json(StatusCode::OK);
}

#[tokio::test]
async fn console_files_carry_csp_nosniff_and_revalidate_by_etag() {
    let w = world().await;
    let page = call(&w.app, Method::GET, "/console/", None, Value::Null, &[]).await;
    assert_eq!(page.status, StatusCode::OK);
    let h = |r: &Reply, name: header::HeaderName| {
        r.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default()
    };
    assert_eq!(h(&page, header::CONTENT_TYPE), "text/html; charset=utf-8");
    assert_eq!(h(&page, header::CONTENT_SECURITY_POLICY), console::CSP);
    assert!(console::CSP.contains("default-src 'self'"));
    assert!(!console::CSP.contains("unsafe-inline"));
    assert_eq!(h(&page, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
    assert_eq!(h(&page, header::CACHE_CONTROL), "no-cache");
    let etag = h(&page, header::ETAG);
    assert_eq!(etag.len(), 66, "{etag}");
    let html = String::from_utf8(page.body.clone()).unwrap();
    // No inline script or style: the policy would block it.
    assert!(
        !html.contains("<script>") && !html.contains("style="),
        "{html}"
    );

    let again = call(
        &w.app,
        Method::GET,
        "/console/",
        None,
        Value::Null,
        &[(header::IF_NONE_MATCH, &etag)],
    )
    .await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert!(again.body.is_empty());

    let js = call(
        &w.app,
        Method::GET,
        "/console/app.js",
        None,
        Value::Null,
        &[],
    )
    .await;
    assert_eq!(js.status, StatusCode::OK);
    assert_eq!(
        h(&js, header::CONTENT_TYPE),
        "text/javascript; charset=utf-8"
    );
    assert_ne!(h(&js, header::ETAG), etag);
    let missing = call(
        &w.app,
        Method::GET,
        "/console/nope.js",
        None,
        Value::Null,
        &[],
    )
    .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    for root in ["/", "/console"] {
        let r = call(&w.app, Method::GET, root, None, Value::Null, &[]).await;
        assert!(r.status.is_redirection(), "{root}: {}", r.status);
        assert_eq!(h(&r, header::LOCATION), "/console/");
    }
}

/// Every module a console file imports, and every page the shell routes to, is embedded
/// (a missing one would only show in a browser).
#[test]
fn every_imported_console_module_is_embedded() {
    let files: HashSet<String> = console::files().into_iter().collect();
    for must in ["index.html", "app.css", "app.js", "lib.js", "i18n.js"] {
        assert!(files.contains(must), "{must} in {files:?}");
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("console");
    for f in files.iter().filter(|f| f.ends_with(".js")) {
        let text = std::fs::read_to_string(dir.join(f)).unwrap();
        let base = std::path::Path::new(f).parent().unwrap();
        for part in text.split(" from '").skip(1) {
            let target = &part[..part.find('\'').unwrap()];
            let resolved = normalize(&base.join(target));
            assert!(
                files.contains(&resolved),
                "{f} imports {target} ({resolved})"
            );
        }
    }
    let shell = std::fs::read_to_string(dir.join("app.js")).unwrap();
    let pages = &shell[shell.find("const PAGES").unwrap()..];
    let pages = &pages[..pages.find("];").unwrap()];
    let mut n = 0;
    for part in pages.split("\n  ['").skip(1) {
        let name = &part[..part.find('\'').unwrap()];
        assert!(files.contains(&format!("pages/{name}.js")), "page {name}");
        n += 1;
    }
    assert!(n >= 8, "{pages}");
    assert!(files.contains("pages/login.js"));
}

/// Both languages name every string: a key missing in one would show English in a Chinese
/// console (or the key itself).
#[test]
fn chinese_and_english_tables_have_the_same_keys() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("console");
    let text = std::fs::read_to_string(dir.join("i18n.js")).unwrap();
    let keys = |table: &str| -> HashSet<String> {
        let start = text.find(&format!("const {table} = {{")).unwrap();
        let body = &text[start..];
        let body = &body[..body.find("\n};").unwrap()];
        // Every `'key':` of the table (values never contain `':`).
        body.match_indices("':")
            .filter_map(|(at, _)| {
                let open = body[..at].rfind('\'')?;
                Some(body[open + 1..at].to_owned())
            })
            .collect()
    };
    let (en, zh) = (keys("en"), keys("zh"));
    assert!(en.len() > 100, "{}", en.len());
    let mut only_en: Vec<_> = en.difference(&zh).collect();
    let mut only_zh: Vec<_> = zh.difference(&en).collect();
    only_en.sort();
    only_zh.sort();
    assert!(
        only_en.is_empty() && only_zh.is_empty(),
        "only in en: {only_en:?}; only in zh: {only_zh:?}"
    );
}

fn normalize(p: &std::path::Path) -> String {
    let mut out: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::Normal(s) => out.push(s.to_string_lossy().into_owned()),
            _ => {}
        }
    }
    out.join("/")
}

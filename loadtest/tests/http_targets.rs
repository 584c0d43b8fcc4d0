//! The HTTP load modes against in-process mock servers that follow the contracts:
//! sluice's `POST /v1/messages` (docs/http-api.md: Bearer key, JSON batch, 202 with one
//! result per message, 429 + Retry-After when over the account's rate) and Kannel's
//! `GET /cgi-bin/sendsms` (202 "0: Accepted for delivery").

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use sluice_loadtest::load::{LoadConfig, PayloadConfig, Target, run};

#[derive(Default)]
struct Seen {
    refs: HashSet<String>,
    requests: u32,
    messages: u32,
    /// Kannel requests that asked for a receipt (`dlr-mask=3` with the expected `dlr-url`).
    dlr_requests: u32,
}

async fn messages(
    State(seen): State<Arc<Mutex<Seen>>>,
    headers: HeaderMap,
    body: String,
) -> Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer k1") {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let v: serde_json::Value = match serde_json::from_str(&body) {
        Ok(v) => v,
        Err(_) => return StatusCode::BAD_REQUEST.into_response(),
    };
    let msgs = v["messages"].as_array().cloned().unwrap_or_default();
    let mut s = seen.lock().unwrap();
    s.requests += 1;
    if s.requests % 3 == 2 {
        // Every third request is over the rate: the client must resend the whole batch.
        return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "0")]).into_response();
    }
    let mut results = Vec::new();
    for (i, m) in msgs.iter().enumerate() {
        assert!(m["to"].as_str().unwrap().starts_with('+'));
        assert!(!m["text"].as_str().unwrap().is_empty());
        let r = m["client_ref"].as_str().unwrap().to_owned();
        let duplicate = !s.refs.insert(r.clone());
        s.messages += 1;
        results.push(serde_json::json!({"line": i + 1, "id": format!("id{}", s.messages), "client_ref": r, "duplicate": duplicate}));
    }
    (
        StatusCode::ACCEPTED,
        axum::Json(serde_json::json!({ "results": results })),
    )
        .into_response()
}

async fn sendsms(
    State(seen): State<Arc<Mutex<Seen>>>,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    let get = |k: &str| {
        q.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    if get("username") != "tester" || get("password") != "foobar" {
        return (StatusCode::FORBIDDEN, "Authorization failed for sendsms").into_response();
    }
    let mut s = seen.lock().unwrap();
    s.requests += 1;
    s.refs.insert(get("text"));
    if get("dlr-mask") == "3" && get("dlr-url") == "http://127.0.0.1:9/dlr?id=%i&s=%d" {
        s.dlr_requests += 1;
    }
    (StatusCode::ACCEPTED, "0: Accepted for delivery").into_response()
}

async fn serve(router: Router) -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, router).await.unwrap() });
    addr
}

fn cfg(target: Target, count: u64) -> LoadConfig {
    LoadConfig {
        target,
        connections: 3,
        count: Some(count),
        payload: PayloadConfig {
            run: "h".into(),
            ..Default::default()
        },
        response_timeout: Duration::from_secs(10),
        ..LoadConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sluice_http_batches_are_resent_on_429_and_counted() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let addr = serve(
        Router::new()
            .route("/v1/messages", post(messages))
            .with_state(seen.clone()),
    )
    .await;
    let target = Target::Http {
        url: format!("http://{addr}/v1/messages"),
        api_key: "k1".into(),
        batch: 50,
    };
    let s = run(cfg(target, 1_000)).await.unwrap();
    assert_eq!(s.messages_accepted, 1_000, "{s}");
    assert!(s.errors.get("http:429").copied().unwrap_or(0) > 0, "{s}");
    assert!(s.resubmits >= 50);
    let seen = seen.lock().unwrap();
    assert_eq!(seen.refs.len(), 1_000, "every message arrived, each once");
    assert_eq!(seen.messages, 1_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sluice_http_wrong_key_fails_the_messages() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let addr = serve(
        Router::new()
            .route("/v1/messages", post(messages))
            .with_state(seen),
    )
    .await;
    let target = Target::Http {
        url: format!("http://{addr}/v1/messages"),
        api_key: "nope".into(),
        batch: 10,
    };
    let s = run(cfg(target, 30)).await.unwrap();
    assert_eq!((s.messages_accepted, s.messages_failed), (0, 30), "{s}");
    // Three workers claim from one pool at once, so a batch may close short of 10: at
    // least three requests, each refused.
    let refused = s.errors.get("http:401").copied().unwrap_or(0);
    assert!((3..=30).contains(&refused), "{refused} refusals: {s}");
    assert_eq!(s.errors.len(), 1, "only 401s: {s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kannel_sendsms_mode() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let addr = serve(
        Router::new()
            .route("/cgi-bin/sendsms", get(sendsms))
            .with_state(seen.clone()),
    )
    .await;
    let target = Target::Kannel {
        url: format!("http://{addr}/cgi-bin/sendsms"),
        username: "tester".into(),
        password: "foobar".into(),
        dlr_url: None,
    };
    let s = run(cfg(target, 200)).await.unwrap();
    assert_eq!(s.messages_accepted, 200, "{s}");
    assert_eq!(s.submit_latency.count, 200);
    let seen = seen.lock().unwrap();
    assert_eq!((seen.requests, seen.refs.len()), (200, 200));
    assert_eq!(
        seen.dlr_requests, 0,
        "no receipts asked for without a dlr_url"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kannel_sendsms_asks_for_receipts_with_a_dlr_url() {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let addr = serve(
        Router::new()
            .route("/cgi-bin/sendsms", get(sendsms))
            .with_state(seen.clone()),
    )
    .await;
    let target = Target::Kannel {
        url: format!("http://{addr}/cgi-bin/sendsms"),
        username: "tester".into(),
        password: "foobar".into(),
        dlr_url: Some("http://127.0.0.1:9/dlr?id=%i&s=%d".into()),
    };
    let s = run(cfg(target, 50)).await.unwrap();
    assert_eq!(s.messages_accepted, 50, "{s}");
    let seen = seen.lock().unwrap();
    assert_eq!((seen.requests, seen.dlr_requests), (50, 50));
}

//! `HttpDispatcher` against a small axum stand-in for the gateway's `POST /v1/messages`
//! (docs/http-api.md) on 127.0.0.1:0.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use common::*;
use serde_json::{Value, json};
use sluice_campaign::Campaigns;
use sluice_campaign::dispatch::{DispatchError, Dispatcher, HttpDispatcher, Lane, OutboundMessage};
use sluice_campaign::launch::{self, RunOutcome};

#[derive(Default)]
struct Gw {
    /// Status codes to answer before accepting (e.g. 429, 503).
    refuse: Vec<u16>,
    requests: Vec<Value>,
    ids: HashMap<String, String>,
}

async fn messages(
    State(gw): State<Arc<Mutex<Gw>>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let mut g = gw.lock().unwrap();
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer k1") {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    g.requests.push(body.clone());
    if !g.refuse.is_empty() {
        let code = g.refuse.remove(0);
        return (
            StatusCode::from_u16(code).unwrap(),
            [("retry-after", "0")],
            "busy",
        )
            .into_response();
    }
    let msgs = body["messages"].as_array().cloned().unwrap_or_default();
    for (i, m) in msgs.iter().enumerate() {
        if m["to"]
            .as_str()
            .is_none_or(|t| !t.chars().all(|c| c.is_ascii_digit()))
        {
            return (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({"error":"invalid message","line": i + 1,"field":"to","reason":"not a phone number"}))).into_response();
        }
    }
    let mut results = Vec::new();
    // Answer in reverse order: the client must map by `line`, not by position.
    for (i, m) in msgs.iter().enumerate().rev() {
        let r = m["client_ref"].as_str().unwrap().to_owned();
        let n = g.ids.len();
        let dup = g.ids.contains_key(&r);
        let id = g
            .ids
            .entry(r.clone())
            .or_insert_with(|| format!("01JD{n:022}"))
            .clone();
        results.push(json!({"line": i + 1, "id": id, "client_ref": r, "duplicate": dup}));
    }
    (StatusCode::ACCEPTED, Json(json!({ "results": results }))).into_response()
}

async fn serve(gw: Arc<Mutex<Gw>>) -> String {
    let app = axum::Router::new()
        .route("/v1/messages", post(messages))
        .with_state(gw);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn msg(to: &str, r: &str) -> OutboundMessage {
    OutboundMessage {
        to: to.into(),
        from: None,
        text: Some("hi".into()),
        si: None,
        subject: None,
        parts: None,
        kind: "sms".into(),
        lane: Lane::Marketing,
        window: Some("08:00-21:00".into()),
        client_ref: r.into(),
        tags: [("task".to_owned(), "1".to_owned())].into(),
    }
}

#[tokio::test]
async fn posts_contract_json_retries_and_maps_ids_by_line() {
    let gw = Arc::new(Mutex::new(Gw {
        refuse: vec![429, 503],
        ..Default::default()
    }));
    let url = serve(Arc::clone(&gw)).await;
    let d = HttpDispatcher::new(&url, "k1");
    let ids = d
        .dispatch(&[msg("13800000001", "a"), msg("13800000002", "b")])
        .await
        .unwrap();
    let g = gw.lock().unwrap();
    // The stand-in numbers ids in reverse order: the client must follow `line`.
    assert_eq!(ids, vec![Ok(g.ids["a"].clone()), Ok(g.ids["b"].clone())]);
    assert_eq!(
        ids,
        vec![
            Ok("01JD0000000000000000000001".to_owned()),
            Ok("01JD0000000000000000000000".to_owned())
        ]
    );
    assert_eq!(g.requests.len(), 3, "two refusals then success");
    let m = &g.requests[2]["messages"][0];
    assert_eq!(m["to"], "13800000001");
    assert_eq!(m["kind"], "sms");
    assert_eq!(m["lane"], "marketing");
    assert_eq!(m["window"], "08:00-21:00");
    assert_eq!(m["client_ref"], "a");
    assert_eq!(m["tags"]["task"], "1");
    assert!(
        m.get("from").is_none(),
        "absent optional fields are omitted"
    );
}

#[tokio::test]
async fn invalid_batches_and_bad_keys_are_typed_errors() {
    let gw = Arc::new(Mutex::new(Gw::default()));
    let url = serve(Arc::clone(&gw)).await;
    let e = HttpDispatcher::new(&url, "k1")
        .dispatch(&[msg("13800000001", "a"), msg("12ab", "b")])
        .await
        .unwrap_err();
    assert!(
        matches!(e, DispatchError::Rejected { line: 2, ref field, .. } if field == "to"),
        "{e}"
    );
    let e = HttpDispatcher::new(&url, "wrong")
        .dispatch(&[msg("13800000001", "a")])
        .await
        .unwrap_err();
    assert!(
        matches!(e, DispatchError::Status { status: 401, .. }),
        "{e}"
    );
    let mut d = HttpDispatcher::new("http://127.0.0.1:9", "k1");
    d.max_attempts = 1;
    assert!(matches!(
        d.dispatch(&[msg("13800000001", "a")]).await,
        Err(DispatchError::Transport(_))
    ));
}

#[tokio::test]
async fn a_bulk_send_runs_end_to_end_over_http() {
    let gw = Arc::new(Mutex::new(Gw::default()));
    let url = serve(Arc::clone(&gw)).await;
    let mut c = Campaigns::in_memory().unwrap();
    c.load_synthetic(2_500, 5).unwrap();
    let seg = c
        .segment_from_condition("mzone", r#"brand = "mzone""#, ts("2026-03-01T00:00:00Z"))
        .unwrap();
    let task = running_task(&mut c, "http");
    let mut s = spec(seg.id, vec![slice("2026-03-01T00:00:00Z", None)]);
    s.batch_size = 400;
    let bulk = c.create_bulk(task, &s).unwrap();
    c.plan(bulk, ts("2026-03-01T00:00:00Z")).unwrap();
    let svc = Mutex::new(c);
    let out = launch::run(&svc, &HttpDispatcher::new(&url, "k1"), bulk, || {
        ts("2026-03-01T01:00:00Z")
    })
    .await
    .unwrap();
    assert_eq!(out, RunOutcome::Finished { sent: seg.count });
    let g = gw.lock().unwrap();
    assert_eq!(g.ids.len() as u64, seg.count);
    assert_eq!(g.requests.len() as u64, seg.count.div_ceil(400));
    let c = svc.into_inner().unwrap();
    // Contact history stores the gateway's id of each subscriber's own message.
    let mut st = c
        .conn
        .prepare("SELECT sub_id, slice, gateway_id FROM contacts")
        .unwrap();
    let rows: Vec<(i64, i64, String)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for (sub, slice, id) in rows {
        assert_eq!(g.ids[&format!("t{task}-s{sub}-{slice}")], id);
    }
}

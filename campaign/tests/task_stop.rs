//! The task-level emergency stop: `POST /v1/campaign/tasks/{id}/stop` ends the task and tells
//! the gateway to cancel what it still holds of it.

mod common;

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, header};
use common::*;
use serde_json::Value;
use sluice_campaign::Campaigns;
use sluice_campaign::api::{self, ApiState};
use sluice_campaign::lifecycle::{self, TaskState};
use tower::ServiceExt;

async fn post(app: &axum::Router, uri: &str, key: &str) -> (u16, Value) {
    let req = Request::builder()
        .method("POST")
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {key}"))
        .body(Body::empty())
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn stopping_a_task_cancels_it_and_its_queued_messages_at_the_gateway() {
    let mut c = Campaigns::in_memory().unwrap();
    let keys = identities(&mut c);
    let running = running_task(&mut c, "wrong text to two million");
    let done = running_task(&mut c, "all slices handed over");
    c.transition(
        done,
        TaskState::Completed,
        "system",
        ts("2026-03-01T00:00:00Z"),
        "",
    )
    .unwrap();
    let svc = Arc::new(Mutex::new(c));
    let gw = FakeGateway::default();
    let app = api::router(ApiState::new(Arc::clone(&svc), Arc::new(gw.clone())));

    // A planner cannot pull the emergency stop; an operator can.
    let (s, _) = post(&app, &format!("/tasks/{running}/stop"), &keys.maker).await;
    assert_eq!(s, 403);
    assert!(gw.state.lock().unwrap().cancelled.is_empty());
    let (s, v) = post(&app, &format!("/tasks/{running}/stop"), &keys.ops).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["state"], "cancelled");
    assert_eq!(
        lifecycle::task_state(&svc.lock().unwrap().conn, running).unwrap(),
        TaskState::Cancelled
    );
    // A completed task keeps its state, but what the gateway still queues is cancelled.
    let (s, v) = post(&app, &format!("/tasks/{done}/stop"), &keys.ops).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["state"], "completed");
    assert_eq!(
        gw.state.lock().unwrap().cancelled,
        vec![
            ("task".to_owned(), running.to_string()),
            ("task".to_owned(), done.to_string())
        ]
    );
    // Unknown task: 404, the gateway is not called.
    let (s, _) = post(&app, "/tasks/999/stop", &keys.ops).await;
    assert_eq!(s, 404);
    assert_eq!(gw.state.lock().unwrap().cancelled.len(), 2);
}

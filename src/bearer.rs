//! The answer every gateway HTTP API gives a request without a valid bearer credential.
//!
//! One body and one `WWW-Authenticate: Bearer` challenge for `/v1/messages`, its cancel
//! routes and `/v1/rules`, so a client handles a missing or unknown key the same way
//! everywhere. Its own module because ingress and the rules API both answer it and neither
//! may depend on the other's HTTP layer (`tests/architecture.rs`).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// 401 `{"error":"unauthorized"}` with `WWW-Authenticate: Bearer`.
pub fn unauthorized() -> Response {
    let mut r = (
        StatusCode::UNAUTHORIZED,
        axum::Json(json!({"error": "unauthorized"})),
    )
        .into_response();
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

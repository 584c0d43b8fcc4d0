//! Bearer credentials in the gateway's HTTP APIs: reading the token out of an
//! `Authorization` header, and the answer to a request without a valid one.
//!
//! One body and one `WWW-Authenticate: Bearer` challenge for `/v1/messages`, its cancel
//! routes, the pause switches and `/v1/rules`, so a client handles a missing or unknown key
//! the same way everywhere. Its own module because ingress and the rules API both answer it and neither
//! may depend on the other's HTTP layer (`tests/architecture.rs`).

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
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

/// The token of an `Authorization: Bearer <token>` header value (trimmed; `None` when
/// absent, of another scheme or empty).
pub fn token_of(authorization: Option<&str>) -> Option<&str> {
    let t = authorization?.strip_prefix("Bearer ")?.trim();
    (!t.is_empty()).then_some(t)
}

/// The bearer token of a request's headers ([`token_of`] its `Authorization`).
pub fn token(headers: &HeaderMap) -> Option<&str> {
    token_of(headers.get(header::AUTHORIZATION)?.to_str().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_come_from_bearer_headers_only() {
        assert_eq!(token_of(Some("Bearer abc ")), Some("abc"));
        assert_eq!(token_of(Some("Bearer   ")), None);
        assert_eq!(token_of(Some("Basic abc")), None);
        assert_eq!(token_of(None), None);
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer k"));
        assert_eq!(token(&h), Some("k"));
        assert_eq!(token(&HeaderMap::new()), None);
    }
}

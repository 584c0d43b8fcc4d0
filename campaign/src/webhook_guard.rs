//! The door of the campaign service's webhook endpoints: only requests the gateway signed
//! ([`crate::signature`]) reach the receipt and reply handlers.
//!
//! Job: an axum middleware ([`check`]) that reads the raw body (at most [`MAX_BODY`]
//! bytes), verifies its [`signature::HEADER`] against the configured secret and the clock,
//! and either passes the request on with the same bytes or answers `401` with
//! `{"error", "reason"}`. Every refusal is counted, by reason, in
//! [`signature::REFUSED_METRIC`] (the `metrics` facade: the process's recorder exports it)
//! and in [`WebhookGuard::refused`] (for tests and status pages without a recorder).
//!
//! Why a 401 and not a 4xx the gateway would treat as final: the gateway retries anything
//! that is not 2xx, so a receiver started with the wrong secret loses nothing — entries wait
//! in the gateway's outbox until the secrets agree.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use serde::Serialize;

use crate::signature::{self, Refused, WebhookSecret};

/// Largest webhook body read (a receipt or reply is well under 4 KiB).
pub const MAX_BODY: usize = 256 * 1024;

/// Refusals so far, by reason.
#[derive(Debug, Default)]
struct Counts {
    missing: AtomicU64,
    malformed: AtomicU64,
    stale: AtomicU64,
    forged: AtomicU64,
}

/// A snapshot of [`WebhookGuard::refused`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RefusedCounts {
    /// No signature header.
    pub missing: u64,
    /// Header not in the documented form.
    pub malformed: u64,
    /// Timestamp outside the tolerance.
    pub stale: u64,
    /// MAC does not match.
    pub forged: u64,
}

/// The secret the endpoints check against, and what they refused.
pub struct WebhookGuard {
    secret: WebhookSecret,
    counts: Counts,
}

impl std::fmt::Debug for WebhookGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookGuard")
            .field("secret", &self.secret)
            .field("refused", &self.refused())
            .finish()
    }
}

impl WebhookGuard {
    /// A guard checking signatures made with `secret`.
    pub fn new(secret: WebhookSecret) -> Arc<Self> {
        Arc::new(Self {
            secret,
            counts: Counts::default(),
        })
    }

    /// Refusals counted since start.
    pub fn refused(&self) -> RefusedCounts {
        let c = &self.counts;
        RefusedCounts {
            missing: c.missing.load(Ordering::Relaxed),
            malformed: c.malformed.load(Ordering::Relaxed),
            stale: c.stale.load(Ordering::Relaxed),
            forged: c.forged.load(Ordering::Relaxed),
        }
    }

    fn count(&self, r: Refused) {
        let c = &self.counts;
        let n = match r {
            Refused::Missing => &c.missing,
            Refused::Malformed => &c.malformed,
            Refused::Stale { .. } => &c.stale,
            Refused::Forged => &c.forged,
        };
        n.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(signature::REFUSED_METRIC, "reason" => r.reason()).increment(1);
    }
}

/// The middleware: verify, then hand the request on with its body intact.
pub async fn check(State(guard): State<Arc<WebhookGuard>>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            axum::Json(serde_json::json!({
                "error": format!("webhook body over {MAX_BODY} bytes or unreadable")
            })),
        )
            .into_response();
    };
    let header = parts
        .headers
        .get(signature::HEADER)
        .map(axum::http::HeaderValue::as_bytes);
    if let Err(r) = signature::verify(&guard.secret, header, &bytes, Timestamp::now().as_second()) {
        guard.count(r);
        tracing::warn!(path = %parts.uri.path(), reason = r.reason(), "Webhook refused: {r}.");
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(serde_json::json!({"error": r.to_string(), "reason": r.reason()})),
        )
            .into_response();
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use axum::http::Request as HttpRequest;
    use tower::ServiceExt;

    use super::*;
    use crate::feedback::webhook_router;
    use crate::service::Campaigns;

    const SECRET: &str = "campaign-webhook-secret";

    fn app() -> (axum::Router, Arc<WebhookGuard>) {
        let svc = Arc::new(Mutex::new(Campaigns::in_memory().expect("store")));
        let guard = WebhookGuard::new(WebhookSecret::new(SECRET).expect("secret"));
        (webhook_router(svc, Arc::clone(&guard)), guard)
    }

    async fn call(
        app: &axum::Router,
        path: &str,
        sig: Option<String>,
        body: &str,
    ) -> (u16, serde_json::Value) {
        let mut req = HttpRequest::post(path).header("content-type", "application/json");
        if let Some(s) = sig {
            req = req.header(signature::HEADER, s);
        }
        let resp = app
            .clone()
            .oneshot(req.body(Body::from(body.to_owned())).expect("request"))
            .await
            .expect("answer");
        let status = resp.status().as_u16();
        let bytes = axum::body::to_bytes(resp.into_body(), MAX_BODY)
            .await
            .expect("body");
        (status, serde_json::from_slice(&bytes).unwrap_or_default())
    }

    fn signed_now(body: &str, skew: i64, secret: &str) -> String {
        let s = WebhookSecret::new(secret).expect("secret");
        signature::sign(&s, Timestamp::now().as_second() + skew, body.as_bytes())
    }

    #[tokio::test]
    async fn signed_requests_reach_the_handlers_with_their_body() {
        let (app, guard) = app();
        let receipt = r#"{"id":"nope","state":"delivered"}"#;
        let (s, v) = call(
            &app,
            "/receipts",
            Some(signed_now(receipt, 0, SECRET)),
            receipt,
        )
        .await;
        assert_eq!((s, v["matched"].as_bool()), (200, Some(false)));
        // The body reached the handler intact: a bad state is the handler's 422, not a 401.
        let bad = r#"{"id":"nope","state":"weird"}"#;
        let (s, _) = call(&app, "/receipts", Some(signed_now(bad, -200, SECRET)), bad).await;
        assert_eq!(s, 422);
        let reply = r#"{"from":"13800138000","to":"10086","text":"Y","received_at":"2026-12-01T00:00:00Z"}"#;
        let (s, v) = call(
            &app,
            "/replies",
            Some(signed_now(reply, 100, SECRET)),
            reply,
        )
        .await;
        assert_eq!((s, v["outcome"].as_str()), (200, Some("unattributed")));
        assert_eq!(guard.refused(), RefusedCounts::default());
    }

    #[tokio::test]
    async fn missing_forged_stale_and_malformed_are_refused_and_counted() {
        let (app, guard) = app();
        let body = r#"{"id":"x","state":"delivered"}"#;
        let cases = [
            (None, "missing"),
            (
                Some(signed_now(body, 0, "some-other-secret-value")),
                "forged",
            ),
            (
                Some(signed_now(r#"{"id":"y","state":"delivered"}"#, 0, SECRET)),
                "forged",
            ),
            (Some(signed_now(body, -301, SECRET)), "stale"),
            (Some(signed_now(body, 400, SECRET)), "stale"),
            (Some("t=1,v1=xyz".to_owned()), "malformed"),
        ];
        for (path, (sig, reason)) in ["/receipts", "/replies"].iter().cycle().zip(cases) {
            let (s, v) = call(&app, path, sig.clone(), body).await;
            assert_eq!((s, v["reason"].as_str()), (401, Some(reason)), "{sig:?}");
        }
        assert_eq!(
            guard.refused(),
            RefusedCounts {
                missing: 1,
                malformed: 1,
                stale: 2,
                forged: 2
            }
        );
        assert!(!format!("{guard:?}").contains(SECRET));
    }

    #[tokio::test]
    async fn an_oversized_body_is_refused_before_verification() {
        let (app, guard) = app();
        let big = "x".repeat(MAX_BODY + 1);
        let (s, _) = call(&app, "/receipts", Some(signed_now(&big, 0, SECRET)), &big).await;
        assert_eq!(s, 413);
        assert_eq!(guard.refused(), RefusedCounts::default());
    }
}

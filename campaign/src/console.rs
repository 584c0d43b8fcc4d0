//! The web console: a small single-page application (ES modules, hand-written CSS, no build
//! step) whose files under `campaign/console/` are compiled into the binary and served at
//! `/console/` by [`router`]. Mount it at the root of the campaign service's router (both
//! `sluice serve`, which hosts the service, and `sluice campaign serve` do).
//!
//! The console talks only to the JSON APIs (`/v1/campaign/…`, `/v1/rules`, `/v1/channels`,
//! `/v1/lookup/messages`) with the bearer token of `POST /v1/campaign/login`, kept in the
//! tab's `sessionStorage`. So every response here is static and public: no credential is
//! read, and nothing a user owns is ever in these bytes.
//!
//! Headers on every console response:
//! - `Content-Security-Policy`: `default-src 'self'`, no inline script, no framing; the
//!   console's own code is the only script that can run, so an injected string in a
//!   campaign name cannot execute (the console also writes text only through `textContent`).
//! - `X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer`.
//! - `ETag` (the file's SHA-256, computed at compile time by `rust-embed`) with
//!   `Cache-Control: no-cache`: the browser keeps the file and revalidates it, and a
//!   matching `If-None-Match` answers 304 with no body, so a new binary is picked up at once
//!   while a reload costs only the revalidations.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

/// The console's files, embedded at compile time (`debug-embed`: debug builds too).
#[derive(rust_embed::RustEmbed)]
#[folder = "console/"]
struct Assets;

/// The policy: only this origin's scripts, styles, images (and `data:` images) and API.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

/// The console's routes: `/console/` (the page), `/console/{file}` (its assets), and
/// redirects from `/console` and `/` to the page.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/console/") }))
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route(
            "/console/",
            get(|headers: HeaderMap| async move { asset("index.html", &headers) }),
        )
        .route(
            "/console/{*path}",
            get(|Path(path): Path<String>, headers: HeaderMap| async move {
                asset(&path, &headers)
            }),
        )
}

/// The media type of a console file, by extension (the folder holds only these kinds).
fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        _ => "application/octet-stream",
    }
}

/// One embedded file with the console's headers; 404 for a name not embedded.
fn asset(path: &str, headers: &HeaderMap) -> Response {
    let Some(file) = Assets::get(path) else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let etag = format!("\"{}\"", hex(&file.metadata.sha256_hash()));
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(header::CONTENT_TYPE, content_type(path))],
            file.data.into_owned(),
        )
            .into_response()
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Every embedded file name (for tests and the page-weight check).
pub fn files() -> Vec<String> {
    Assets::iter().map(|p| p.into_owned()).collect()
}

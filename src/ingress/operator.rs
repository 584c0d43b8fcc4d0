//! Operators' switches over HTTP: pausing and resuming a channel or an account
//! (`POST /v1/channels/{name}/pause|resume`, `POST /v1/accounts/{name}/pause|resume`,
//! `GET /v1/pauses`; docs/http-api.md, "Pause switches").
//!
//! Who is an operator is behind [`OperatorAuth`] (the one the public rules API uses too:
//! `[[accounts]]` with `operator = true` by their API key, and the hosted campaign service's
//! operator users). No valid credential → 401; a valid one that is not an operator → 403.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use super::account::Accounts;
use super::http::IngressState;
use crate::rules::OperatorAuth;
use crate::stop::Pauses;
use crate::store::PauseTarget;

/// Operators are the accounts configured with `operator = true`, authenticated by their API
/// key exactly as for `POST /v1/messages` ([`Accounts::authenticate`]: SHA-256, constant-time
/// over every key).
pub struct AccountOperators {
    ingress: Arc<IngressState>,
    operators: Vec<String>,
}

impl AccountOperators {
    /// Operators among `ingress`'s accounts: those named in `operators`.
    pub fn new(ingress: Arc<IngressState>, operators: Vec<String>) -> Self {
        Self { ingress, operators }
    }
}

impl std::fmt::Debug for AccountOperators {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountOperators")
            .field("operators", &self.operators)
            .finish_non_exhaustive()
    }
}

impl OperatorAuth for AccountOperators {
    fn operator(&self, headers: &HeaderMap) -> Option<String> {
        operator_of(&self.ingress.accounts, &self.operators, headers)
    }
}

/// The account behind `headers` when it is one of `operators`.
fn operator_of(accounts: &Accounts, operators: &[String], headers: &HeaderMap) -> Option<String> {
    let account = accounts.authenticate_headers(headers)?;
    operators
        .iter()
        .any(|o| o == account.name())
        .then(|| account.name().to_owned())
}

/// What the operator routes need.
#[derive(Clone)]
pub struct OperatorState {
    /// Who is an operator.
    pub auth: Arc<dyn OperatorAuth>,
    /// Tells "no valid credential" (401) from "not an operator" (403).
    pub ingress: Arc<IngressState>,
    /// The switches.
    pub pauses: Arc<Pauses>,
    /// Configured channel names (a switch for another name is 404).
    pub channels: Vec<String>,
}

impl std::fmt::Debug for OperatorState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorState")
            .field("channels", &self.channels)
            .finish_non_exhaustive()
    }
}

/// The operator routes.
pub fn router(state: OperatorState) -> Router {
    Router::new()
        .route("/v1/channels/{name}/{action}", post(post_channel))
        .route("/v1/accounts/{name}/{action}", post(post_account))
        .route("/v1/pauses", get(get_pauses))
        .with_state(state)
}

fn status(code: StatusCode, error: &str) -> Response {
    (code, axum::Json(json!({"error": error}))).into_response()
}

/// Why a request may not switch pauses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Denied {
    /// No valid credential: 401.
    Unauthorized,
    /// A valid credential that is not an operator's: 403.
    Forbidden,
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        match self {
            Self::Forbidden => status(StatusCode::FORBIDDEN, "forbidden"),
            Self::Unauthorized => crate::bearer::unauthorized(),
        }
    }
}

/// The operator's name, or why not (every operator route of the gateway asks this).
pub(crate) fn authorize(state: &OperatorState, headers: &HeaderMap) -> Result<String, Denied> {
    if let Some(name) = state.auth.operator(headers) {
        return Ok(name);
    }
    if state
        .ingress
        .accounts
        .authenticate_headers(headers)
        .is_some()
    {
        return Err(Denied::Forbidden);
    }
    Err(Denied::Unauthorized)
}

fn action(a: &str) -> Option<bool> {
    match a {
        "pause" => Some(true),
        "resume" => Some(false),
        _ => None,
    }
}

async fn switch(
    state: &OperatorState,
    operator: &str,
    target: PauseTarget,
    paused: bool,
) -> Response {
    match state.pauses.set(target.clone(), paused).await {
        Ok(changed) => {
            tracing::warn!(%operator, ?target, paused, changed, "Operator switched a pause.");
            let (kind, name) = match &target {
                PauseTarget::Channel(n) => ("channel", n),
                PauseTarget::Account(n) => ("account", n),
            };
            axum::Json(json!({kind: name, "paused": paused, "changed": changed})).into_response()
        }
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({"error": "internal error", "reason": e.to_string()})),
        )
            .into_response(),
    }
}

async fn post_channel(
    State(state): State<OperatorState>,
    headers: HeaderMap,
    Path((name, act)): Path<(String, String)>,
) -> Response {
    let operator = match authorize(&state, &headers) {
        Ok(o) => o,
        Err(d) => return d.into_response(),
    };
    let Some(paused) = action(&act) else {
        return status(StatusCode::NOT_FOUND, "not found");
    };
    if !state.channels.contains(&name) {
        return status(StatusCode::NOT_FOUND, "no such channel");
    }
    switch(&state, &operator, PauseTarget::Channel(name), paused).await
}

async fn post_account(
    State(state): State<OperatorState>,
    headers: HeaderMap,
    Path((name, act)): Path<(String, String)>,
) -> Response {
    let operator = match authorize(&state, &headers) {
        Ok(o) => o,
        Err(d) => return d.into_response(),
    };
    let Some(paused) = action(&act) else {
        return status(StatusCode::NOT_FOUND, "not found");
    };
    if state.ingress.accounts.get(&name).is_none() {
        return status(StatusCode::NOT_FOUND, "no such account");
    }
    switch(&state, &operator, PauseTarget::Account(name), paused).await
}

async fn get_pauses(State(state): State<OperatorState>, headers: HeaderMap) -> Response {
    if let Err(d) = authorize(&state, &headers) {
        return d.into_response();
    }
    match state.pauses.list() {
        Ok(list) => {
            let mut channels = Vec::new();
            let mut accounts = Vec::new();
            for p in list {
                match p {
                    PauseTarget::Channel(n) => channels.push(n),
                    PauseTarget::Account(n) => accounts.push(n),
                }
            }
            axum::Json(json!({"channels": channels, "accounts": accounts})).into_response()
        }
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({"error": "internal error", "reason": e.to_string()})),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingress::account::{AccountSpec, key_hash};
    use crate::ingress::message::SenderPolicy;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            axum::http::header::AUTHORIZATION,
            auth.parse().expect("header"),
        );
        h
    }

    fn account(name: &str, key: &str) -> AccountSpec {
        AccountSpec {
            name: name.into(),
            key_sha256: vec![key_hash(key)],
            rate_per_sec: None,
            burst: None,
            senders: SenderPolicy::default(),
            webhook_url: None,
            mo_url: None,
        }
    }

    #[test]
    fn only_operator_keys_are_operators() {
        let accounts = Accounts::new([account("ops", "secret"), account("acme", "client")]);
        let ops = ["ops".to_owned()];
        let op = |h: &HeaderMap| operator_of(&accounts, &ops, h);
        assert_eq!(op(&headers("Bearer secret")), Some("ops".into()));
        assert_eq!(op(&headers("Bearer client")), None);
        assert_eq!(op(&headers("Bearer other")), None);
        assert_eq!(op(&headers("Basic secret")), None);
        assert_eq!(op(&HeaderMap::new()), None);
    }
}

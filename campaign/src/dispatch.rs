//! Handing messages to the gateway: the [`Dispatcher`] trait and its HTTP implementation.
//!
//! Contract (docs/http-api.md): `POST /v1/messages` with `{"messages":[…]}`, at most 10 000
//! per request; `202` answers `{"results":[{"line","id","client_ref","duplicate"}]}` once the
//! batch is durable. A line the gateway's public contact rules refuse comes back as
//! `{"line","refused":"blocked: do_not_disturb/sms"}` without an id: that message was not
//! stored and is returned here as a [`Refusal`] in its place, while the rest of the batch was
//! accepted. Each message carries `client_ref = "t{task}-s{subscriber}-{slice}"`, so
//! re-sending a batch after a crash or a failed response returns the first ids
//! (`duplicate: true`) instead of sending twice — this is what makes resume exact.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Priority lanes of the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lane {
    Otp,
    Notification,
    #[default]
    Marketing,
}

/// One message as the gateway's `POST /v1/messages` expects it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundMessage {
    pub to: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The text; `None` for a WAP Push, whose text travels in `si`, and for an MMS, whose
    /// texts travel in `parts`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// `sms` | `mms` | `wap_push`.
    pub kind: String,
    /// The Service Indication of a `wap_push` message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub si: Option<OutboundSi>,
    /// The subject of an `mms` message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The parts of an `mms` message (image URLs and texts, in slide order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parts: Option<Vec<crate::template::MmsPart>>,
    pub lane: Lane,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    pub client_ref: String,
    pub tags: BTreeMap<String, String>,
}

/// A WAP Push Service Indication as the gateway's `si` object takes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundSi {
    pub href: String,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

/// Why a batch was not accepted. The caller keeps its cursor and may retry the same batch.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// Connection/transport failure (no answer: the batch may or may not be stored).
    #[error("transport: {0}")]
    Transport(String),
    /// The gateway rejected the batch as invalid (422); retrying will not help.
    #[error("gateway rejected line {line} field {field}: {reason}")]
    Rejected {
        line: u64,
        field: String,
        reason: String,
    },
    /// Any other non-2xx answer after retries.
    #[error("gateway answered {status}: {body}")]
    Status { status: u16, body: String },
    /// 2xx but the body did not match the contract (e.g. result count ≠ message count).
    #[error("bad gateway response: {0}")]
    BadResponse(String),
}

/// A message the gateway's public contact rules refused: not stored, not sent, no id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The gateway's reason, e.g. `blocked: do_not_disturb/sms`.
    pub reason: String,
}

impl Refusal {
    /// The rule without the `blocked: ` prefix (`do_not_disturb/sms`, `channel_cap/sms`).
    pub fn rule(&self) -> &str {
        self.reason
            .strip_prefix("blocked: ")
            .unwrap_or(&self.reason)
            .trim()
    }
}

/// What became of one message of a dispatched batch: its gateway id, or the public rule
/// that refused it.
pub type Dispatched = Result<String, Refusal>;

/// Something that accepts batches and answers per message, in order.
pub trait Dispatcher: Send + Sync {
    /// Sends `batch`; on success returns exactly `batch.len()` outcomes in the same order:
    /// the gateway id of each accepted message, or the public rule that refused it.
    fn dispatch(
        &self,
        batch: &[OutboundMessage],
    ) -> impl Future<Output = Result<Vec<Dispatched>, DispatchError>> + Send;

    /// Emergency stop: every message tagged `name=value` that the gateway has not yet
    /// submitted to a center ends `cancelled` (the gateway's `POST /v1/messages/cancel` with
    /// `{"tag": {name: value}}`). Returns the gateway's answer (counts so far, the stop id).
    fn cancel_tag(
        &self,
        name: &str,
        value: &str,
    ) -> impl Future<Output = Result<serde_json::Value, DispatchError>> + Send;
}

#[derive(Serialize)]
struct Request<'a> {
    messages: &'a [OutboundMessage],
}

#[derive(Deserialize)]
struct ResultLine {
    line: u64,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    refused: Option<String>,
}

#[derive(Deserialize)]
struct Response {
    results: Vec<ResultLine>,
}

#[derive(Deserialize)]
struct Invalid {
    #[serde(default)]
    line: u64,
    #[serde(default)]
    field: String,
    #[serde(default)]
    reason: String,
}

/// [`Dispatcher`] over the gateway's HTTP API.
#[derive(Debug, Clone)]
pub struct HttpDispatcher {
    client: reqwest::Client,
    url: String,
    api_key: String,
    /// Attempts for 429 / 5xx / transport errors (same body, same client_refs).
    pub max_attempts: u32,
    /// Upper bound for one wait between attempts.
    pub max_backoff: Duration,
}

impl HttpDispatcher {
    /// `base_url` like `http://127.0.0.1:8080`; `api_key` is sent as a Bearer token.
    pub fn new(base_url: &str, api_key: &str) -> Self {
        // reqwest is built with `rustls-no-provider` (workspace Cargo.toml): building a client
        // panics unless a rustls provider is installed. Installing ring again is a no-op.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self {
            client: reqwest::Client::new(),
            url: format!("{}/v1/messages", base_url.trim_end_matches('/')),
            api_key: api_key.to_owned(),
            max_attempts: 5,
            max_backoff: Duration::from_secs(10),
        }
    }

    async fn attempt(
        &self,
        batch: &[OutboundMessage],
    ) -> Result<Vec<Dispatched>, (DispatchError, Option<Duration>)> {
        let resp = self
            .client
            .post(&self.url)
            .bearer_auth(&self.api_key)
            .json(&Request { messages: batch })
            .send()
            .await
            .map_err(|e| {
                (
                    DispatchError::Transport(e.to_string()),
                    Some(Duration::ZERO),
                )
            })?;
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = resp.bytes().await.map_err(|e| {
            (
                DispatchError::Transport(e.to_string()),
                Some(Duration::ZERO),
            )
        })?;
        if status.is_success() {
            let r: Response = serde_json::from_slice(&body)
                .map_err(|e| (DispatchError::BadResponse(e.to_string()), None))?;
            return order_ids(r, batch.len()).map_err(|e| (e, None));
        }
        let text = String::from_utf8_lossy(&body).into_owned();
        if status.as_u16() == 422 {
            let i: Invalid = serde_json::from_slice(&body).unwrap_or(Invalid {
                line: 0,
                field: String::new(),
                reason: text,
            });
            return Err((
                DispatchError::Rejected {
                    line: i.line,
                    field: i.field,
                    reason: i.reason,
                },
                None,
            ));
        }
        let retry = (status.as_u16() == 429 || status.is_server_error())
            .then(|| retry_after.unwrap_or(Duration::ZERO));
        Err((
            DispatchError::Status {
                status: status.as_u16(),
                body: text,
            },
            retry,
        ))
    }
}

fn order_ids(r: Response, n: usize) -> Result<Vec<Dispatched>, DispatchError> {
    if r.results.len() != n {
        return Err(DispatchError::BadResponse(format!(
            "{} results for {n} messages",
            r.results.len()
        )));
    }
    let mut out: Vec<Option<Dispatched>> = vec![None; n];
    for line in r.results {
        let outcome = match (line.id, line.refused) {
            (Some(id), None) if !id.is_empty() => Ok(id),
            (None, Some(reason)) => Err(Refusal { reason }),
            _ => {
                return Err(DispatchError::BadResponse(format!(
                    "result line {} has neither an id nor a refusal (or both)",
                    line.line
                )));
            }
        };
        let slot = (line.line as usize)
            .checked_sub(1)
            .and_then(|i| out.get_mut(i))
            .ok_or_else(|| {
                DispatchError::BadResponse(format!("result line {} out of range", line.line))
            })?;
        *slot = Some(outcome);
    }
    out.into_iter()
        .map(|o| o.ok_or_else(|| DispatchError::BadResponse("missing result line".into())))
        .collect()
}

impl HttpDispatcher {
    async fn cancel_attempt(
        &self,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, (DispatchError, Option<Duration>)> {
        let resp = self
            .client
            .post(format!("{}/cancel", self.url))
            .bearer_auth(&self.api_key)
            .json(body)
            .send()
            .await
            .map_err(|e| {
                (
                    DispatchError::Transport(e.to_string()),
                    Some(Duration::ZERO),
                )
            })?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| {
            (
                DispatchError::Transport(e.to_string()),
                Some(Duration::ZERO),
            )
        })?;
        if status.is_success() {
            return serde_json::from_slice(&bytes)
                .map_err(|e| (DispatchError::BadResponse(e.to_string()), None));
        }
        Err((
            DispatchError::Status {
                status: status.as_u16(),
                body: String::from_utf8_lossy(&bytes).into_owned(),
            },
            status.is_server_error().then_some(Duration::ZERO),
        ))
    }

    /// Runs `attempt` until it succeeds, fails for good (`None` wait) or `max_attempts` are
    /// used; between attempts waits the longer of the answer's wait (Retry-After) and an
    /// exponential backoff, capped at `max_backoff`. The same request goes every time, so a
    /// retry after a lost answer is harmless (client_refs; a repeated stop finds nothing).
    async fn retrying<T, Fut>(
        &self,
        what: &'static str,
        mut attempt: impl FnMut() -> Fut,
    ) -> Result<T, DispatchError>
    where
        Fut: Future<Output = Result<T, (DispatchError, Option<Duration>)>>,
    {
        let mut backoff = Duration::from_millis(100);
        let mut n = 1;
        loop {
            match attempt().await {
                Ok(v) => return Ok(v),
                Err((e, Some(wait))) if n < self.max_attempts => {
                    tracing::warn!(attempt = n, error = %e, "{what}; retrying.");
                    let wait = wait.max(backoff).min(self.max_backoff);
                    tokio::time::sleep(wait).await;
                    backoff = (backoff * 2).min(self.max_backoff);
                    n += 1;
                }
                Err((e, _)) => return Err(e),
            }
        }
    }
}

impl Dispatcher for HttpDispatcher {
    /// Retried like a batch on transport errors and 5xx: recording the same stop twice is
    /// harmless (the second finds nothing left to cancel), missing it is not.
    async fn cancel_tag(
        &self,
        name: &str,
        value: &str,
    ) -> Result<serde_json::Value, DispatchError> {
        let body = serde_json::json!({ "tag": { name: value } });
        self.retrying("Gateway did not take the stop", || {
            self.cancel_attempt(&body)
        })
        .await
    }

    async fn dispatch(&self, batch: &[OutboundMessage]) -> Result<Vec<Dispatched>, DispatchError> {
        self.retrying("Gateway refused batch", || self.attempt(batch))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_map_by_line_with_refusals_in_place() {
        let r: Response = serde_json::from_str(
            r#"{"results":[{"line":2,"id":"g2","duplicate":false},
                {"line":1,"client_ref":"t1-s1-0","refused":"blocked: do_not_disturb/sms"}]}"#,
        )
        .expect("json");
        let out = order_ids(r, 2).expect("ordered");
        assert_eq!(out[1], Ok("g2".to_owned()));
        let refusal = out[0].clone().expect_err("refused");
        assert_eq!(refusal.rule(), "do_not_disturb/sms");
        let bad: Response = serde_json::from_str(r#"{"results":[{"line":1}]}"#).expect("json");
        assert!(matches!(
            order_ids(bad, 1),
            Err(DispatchError::BadResponse(_))
        ));
    }
}

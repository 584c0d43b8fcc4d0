//! Operators' message lookup: `GET /v1/lookup/messages?id=ID` or `?to=MSISDN&limit=N`
//! (docs/http-api.md, "Message lookup").
//!
//! Job: find messages of any account (operators see all) by gateway id or by destination
//! (the store's destination index, newest first, at most [`MAX_LIMIT`]) and answer each as
//! the `GET /v1/messages/{id}` body plus `account` and a `timeline` read from the record:
//! accepted, submitted (one entry per part, with its center id), each receipt per part, the
//! final state. Wants an operator (`rules::OperatorAuth`): 401 without a valid credential,
//! 403 for a valid one that is not an operator's.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

use super::operator::{OperatorState, authorize};
use super::view;
use crate::clock::rfc3339;
use crate::store::{Message, MessageId};

/// Most messages one lookup by number answers.
pub const MAX_LIMIT: usize = 100;
/// Messages a lookup by number answers without `limit`.
pub const DEFAULT_LIMIT: usize = 20;

/// The lookup route.
pub fn router(state: OperatorState) -> Router {
    Router::new()
        .route("/v1/lookup/messages", get(get_lookup))
        .with_state(state)
}

#[derive(Debug, Deserialize)]
struct LookupQuery {
    id: Option<String>,
    to: Option<String>,
    limit: Option<usize>,
}

fn error(status: StatusCode, error: &str, reason: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": error, "reason": reason})),
    )
        .into_response()
}

async fn get_lookup(
    State(state): State<OperatorState>,
    headers: HeaderMap,
    Query(q): Query<LookupQuery>,
) -> Response {
    if let Err(d) = authorize(&state, &headers) {
        return d.into_response();
    }
    let store = &state.ingress.store;
    let found = match (q.id, q.to) {
        (Some(id), None) => match id.parse::<MessageId>() {
            // An id that cannot be one of ours matches nothing (like GET /v1/messages/{id}).
            Err(_) => Ok(Vec::new()),
            Ok(id) => store.get(id).map(|m| m.into_iter().collect()),
        },
        (None, Some(_)) if !store.indexes_by_number() => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid lookup",
                "lookup by number is off ([storage] index_by_number = false)",
            );
        }
        (None, Some(to)) if !to.is_empty() => {
            let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
            if limit == 0 || limit > MAX_LIMIT {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid lookup",
                    &format!("limit must be 1..={MAX_LIMIT}"),
                );
            }
            store.by_destination(&to, limit)
        }
        _ => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid lookup",
                "give either id or a non-empty to",
            );
        }
    };
    match found {
        Ok(messages) => {
            let list: Vec<Value> = messages.iter().map(lookup_view).collect();
            axum::Json(json!({ "messages": list })).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "Store failed during a message lookup.");
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error",
                &e.to_string(),
            )
        }
    }
}

/// The `GET /v1/messages/{id}` body with `account` and `timeline`.
pub fn lookup_view(m: &Message) -> Value {
    let mut v = view::message(m);
    if let Value::Object(o) = &mut v {
        o.insert("account".into(), json!(m.account));
        o.insert("timeline".into(), Value::Array(timeline(m)));
    }
    v
}

/// One timeline entry.
fn entry(at_ms: u64, event: &str, detail: String) -> Value {
    json!({"at": rfc3339(at_ms), "event": event, "detail": detail})
}

/// What happened to `m`, from its record alone, in the order it happened: accepted, then
/// submitted, then the receipts as they arrived, then the final state.
///
/// The order is causal, not a sort by `at`: the stamps come from different clocks (the
/// submit is stamped when its outcome is stored, on `serve`'s clock; a receipt when the
/// center's PDU arrived), and a center may send a receipt before the gateway has stored the
/// submit response (the early-DLR race), so a receipt can carry an earlier stamp than the
/// submit it answers.
pub fn timeline(m: &Message) -> Vec<Value> {
    let mut t = vec![entry(
        m.created_ms,
        "accepted",
        format!("channel {}, lane {}", m.channel, m.lane.as_str()),
    )];
    if let Some(at) = m.submitted_ms {
        for p in &m.parts {
            t.push(entry(
                at,
                "submitted",
                format!(
                    "part {}/{}: center id {}",
                    p.seq,
                    m.parts.len(),
                    p.center_id.as_deref().unwrap_or("-")
                ),
            ));
        }
    }
    // Part 0 receipts are the gateway's own ending (expired, failed, cancelled): the final
    // entry below tells it.
    for r in m.receipts.iter().filter(|r| r.part != 0) {
        t.push(entry(
            r.at_ms,
            "receipt",
            format!("part {}: {} (err {})", r.part, r.stat, r.err),
        ));
    }
    if m.state.is_final()
        && let Some(done) = m.done_ms
    {
        let last = m.receipts.last();
        let detail = last.map_or_else(
            || m.state.stat_word().to_owned(),
            |r| format!("{} (err {})", r.stat, r.err),
        );
        t.push(entry(done, m.state.as_str(), detail));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MessageState, Part, PartState, Payload, Receipt};

    #[test]
    fn timeline_is_ordered_from_the_record() {
        let mut m = Message::new(
            MessageId(7),
            "acme",
            "8613800000001",
            Payload::Text {
                text: "hi".into(),
                encoding: Default::default(),
            },
            "sim",
            1_000,
            1_000,
        );
        m.parts = vec![
            Part {
                seq: 1,
                center_id: Some("a1".into()),
                state: PartState::Delivered,
            },
            Part {
                seq: 2,
                center_id: Some("a2".into()),
                state: PartState::Delivered,
            },
        ];
        m.submitted_ms = Some(1_500);
        m.receipts = vec![
            Receipt {
                part: 2,
                stat: "DELIVRD".into(),
                err: "000".into(),
                at_ms: 2_000,
            },
            Receipt {
                part: 1,
                stat: "DELIVRD".into(),
                err: "000".into(),
                at_ms: 2_100,
            },
        ];
        m.state = MessageState::Delivered;
        m.done_ms = Some(2_100);
        let t = timeline(&m);
        let events: Vec<&str> = t.iter().map(|e| e["event"].as_str().unwrap()).collect();
        assert_eq!(
            events,
            [
                "accepted",
                "submitted",
                "submitted",
                "receipt",
                "receipt",
                "delivered"
            ]
        );
        assert_eq!(t[2]["detail"], "part 2/2: center id a2");
        assert_eq!(t[3]["detail"], "part 2: DELIVRD (err 000)");
        let v = lookup_view(&m);
        assert_eq!(v["account"], "acme");
        assert_eq!(v["state"], "delivered");
    }
}

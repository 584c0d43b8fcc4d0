//! JSON bodies the API answers with (docs/http-api.md): batch results and message status.
//!
//! Job: render store records in the contract's shape. Times are RFC 3339 UTC; states use the
//! contract's snake_case names (the store's serde names are the same words).

use crate::clock::rfc3339;
use compact_str::CompactString;
use serde::Serialize;

use super::accept::Accepted;
use super::screen::RefusedLine;
use crate::store::{Message, MessageId, MessageKind, MessageState, PartState, Payload};

#[derive(Serialize)]
struct BatchResults<'a> {
    results: Vec<ResultLine<'a>>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum ResultLine<'a> {
    Accepted {
        line: usize,
        /// Written as its text straight into the body (no string per id).
        id: MessageId,
        #[serde(skip_serializing_if = "Option::is_none")]
        client_ref: Option<&'a str>,
        duplicate: bool,
    },
    /// A public rule refused the message: not stored, no id.
    Refused {
        line: usize,
        #[serde(skip_serializing_if = "Option::is_none")]
        client_ref: Option<&'a str>,
        refused: String,
    },
}

impl ResultLine<'_> {
    const fn line(&self) -> usize {
        match self {
            Self::Accepted { line, .. } | Self::Refused { line, .. } => *line,
        }
    }
}

/// The 202 body: one result per message, in request order — the accepted ones (with
/// `client_refs` in the same order) and the ones a public rule refused.
pub fn batch_results(
    accepted: &[Accepted],
    client_refs: &[Option<String>],
    refused: &[RefusedLine],
) -> Vec<u8> {
    let mut results: Vec<ResultLine<'_>> = accepted
        .iter()
        .zip(client_refs)
        .map(|(a, r)| ResultLine::Accepted {
            line: a.line,
            id: a.id,
            client_ref: r.as_deref(),
            duplicate: a.duplicate,
        })
        .chain(refused.iter().map(|r| ResultLine::Refused {
            line: r.line,
            client_ref: r.client_ref.as_deref(),
            refused: r.refusal.to_string(),
        }))
        .collect();
    // Both parts are in request order: a stable sort merges them.
    results.sort_by_key(ResultLine::line);
    let body = BatchResults { results };
    // Serialising plain structs of strings and numbers cannot fail.
    serde_json::to_vec(&body).unwrap_or_default()
}

#[derive(Serialize)]
struct MessageView<'a> {
    id: String,
    state: MessageState,
    kind: MessageKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    mms: Option<MmsView<'a>>,
    to: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<&'a str>,
    channel: &'a str,
    parts: Vec<PartView<'a>>,
    receipts: Vec<ReceiptView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_ref: Option<&'a str>,
    tags: &'a std::collections::BTreeMap<String, String>,
    created_at: CompactString,
    #[serde(skip_serializing_if = "Option::is_none")]
    submitted_at: Option<CompactString>,
    #[serde(skip_serializing_if = "Option::is_none")]
    done_at: Option<CompactString>,
    attempts: u32,
}

/// What an MMS record holds of its content: the content itself is in the content store.
#[derive(Serialize)]
struct MmsView<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    subject: Option<&'a str>,
    content_type: &'a str,
    size: u64,
    content_digest: String,
}

#[derive(Serialize)]
struct PartView<'a> {
    seq: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    center_id: Option<&'a str>,
    state: PartState,
}

#[derive(Serialize)]
struct ReceiptView<'a> {
    #[serde(skip_serializing_if = "is_zero")]
    part: u16,
    stat: &'a str,
    err: &'a str,
    at: CompactString,
}

fn is_zero(v: &u16) -> bool {
    *v == 0
}

/// The `GET /v1/messages/{id}` body.
pub fn message(m: &Message) -> serde_json::Value {
    let view = MessageView {
        id: m.id.to_string(),
        state: m.state,
        kind: m.kind,
        mms: match &m.payload {
            Payload::Mms {
                subject,
                content_type,
                digest,
                size,
            } => Some(MmsView {
                subject: subject.as_deref(),
                content_type,
                size: *size,
                content_digest: crate::store::content::digest_hex(digest),
            }),
            Payload::Text { .. } | Payload::Binary { .. } => None,
        },
        to: &m.to,
        from: m.from.as_deref(),
        channel: &m.channel,
        parts: m
            .parts
            .iter()
            .map(|p| PartView {
                seq: p.seq,
                center_id: p.center_id.as_deref(),
                state: p.state,
            })
            .collect(),
        receipts: m
            .receipts
            .iter()
            .map(|r| ReceiptView {
                part: r.part,
                stat: &r.stat,
                err: &r.err,
                at: rfc3339(r.at_ms),
            })
            .collect(),
        client_ref: m.client_ref.as_deref(),
        tags: &m.tags,
        created_at: rfc3339(m.created_ms),
        submitted_at: m.submitted_ms.map(rfc3339),
        done_at: m.done_ms.map(rfc3339),
        attempts: m.attempts,
    };
    serde_json::to_value(view).unwrap_or(serde_json::Value::Null)
}

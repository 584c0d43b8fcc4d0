//! `POST /mm7/{channel}`: what an MMSC sends the VASP unasked — DeliveryReportReq (a
//! recipient's delivery report) and DeliverReq (a mobile-originated MMS) — turned into
//! [`ChannelEvent`]s for the receipt layer, and answered only once the receipt layer says
//! the event is kept (the same [`DeliverAck`] SMPP's deliver_sm waits on), so a crash before
//! the commit makes the MMSC send it again instead of losing it.
//!
//! | request | answer |
//! |---|---|
//! | unknown channel | 404 |
//! | basic auth missing or wrong (when the channel sets `inbound_username`) | 401, `WWW-Authenticate: Basic` |
//! | body that is no MM7 envelope (bad MIME, bad XML, wrong namespace, missing element) | 500 SOAP Fault `env:Client`, VASPErrorRsp 2007 (Message format corrupt) with the reason |
//! | another MM7 request (SubmitReq, …) | 500 SOAP Fault `env:Client`, VASPErrorRsp 4003 (Unsupported operation) |
//! | DeliverReq without a Sender | 500 SOAP Fault `env:Client`, VASPErrorRsp 4004 (Validation error) |
//! | DeliveryReportReq / DeliverReq, kept | 200 DeliveryReportRsp / DeliverRsp, status 1000 |
//! | DeliveryReportReq / DeliverReq, not kept (store failed, shutting down) | 500 SOAP Fault `env:Server`, VASPErrorRsp 3000: send it again |
//!
//! Answers are written in the request's MM7 namespace (the channel's when it has none).
//!
//! # Delivery reports
//! The receipt's center id is [`super::submit::center_id`]`(MessageID, Recipient)`, the key
//! the submit side stored for that recipient. MMStatus becomes the receipt's stat word:
//!
//! | MMStatus | stat | final |
//! |---|---|---|
//! | Retrieved, Forwarded | DELIVRD | yes (forwarding needs the MM to have reached the recipient) |
//! | Expired | EXPIRED | yes |
//! | Rejected | REJECTD | yes |
//! | Unrecognised, DeliveryConditionNotMet | UNDELIV | yes |
//! | Deferred | ENROUTE | no |
//! | Indeterminate | ACCEPTD | no |
//! | anything else | UNKNOWN | yes (failed) |
//!
//! `err` carries the MMStatus word as the MMSC wrote it, `text` its StatusText, `done_at`
//! its Date as `YYMMDDhhmmss`, `source` the recipient.
//!
//! # MO
//! `from` is the Sender, `to` the first recipient (our short code), `text` the text/plain
//! parts of the content (decoded from their charset, joined by newlines) or, when there is
//! none, the Subject.
//!
//! # Tolerated deviations
//! Counted in `sluice_channel_tolerated_total` by `kind`: `mm7_status_case` (MMStatus in
//! another letter case), `mm7_report_without_recipient` (the receipt then carries the bare
//! MessageID and will not match a stored recipient), `mm7_no_transaction_id`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use metrics::counter;
use sha2::{Digest, Sha256};
use sluice_protocols::mm7::mime::{self, Part};
use sluice_protocols::mm7::soap::{self, DeliverReq, DeliveryReportReq, Message, Status};
use subtle::ConstantTimeEq;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use super::body;
use super::submit::{address_value, center_id};
use crate::channel::{ChannelEvent, DeliverAck};
use crate::metrics::CHANNEL_TOLERATED;

/// Basic auth the MMSC must present.
#[derive(Clone)]
pub struct InboundAuth {
    /// User name.
    pub username: String,
    /// SHA-256 of the password.
    pub password_sha256: [u8; 32],
}

impl std::fmt::Debug for InboundAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboundAuth")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl InboundAuth {
    /// Whether `headers` carry this user and password (compared in constant time).
    fn admits(&self, headers: &HeaderMap) -> bool {
        let Some((user, password)) = basic_credentials(headers) else {
            return false;
        };
        let user_ok = user.as_bytes().ct_eq(self.username.as_bytes());
        let digest = Sha256::digest(password.as_bytes());
        let password_ok = digest.as_slice().ct_eq(&self.password_sha256);
        bool::from(user_ok & password_ok)
    }
}

/// `Authorization: Basic base64(user:password)` → (user, password).
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// One MM7 channel's inbound side.
#[derive(Debug, Clone)]
pub struct InboundChannel {
    /// Channel name (the path segment).
    pub name: Arc<str>,
    /// The channel's MM7 namespace, for answers to requests that carry none.
    pub namespace: String,
    /// Basic auth required, if any.
    pub auth: Option<InboundAuth>,
    /// The receipt layer's event queue of this channel.
    pub events: mpsc::Sender<ChannelEvent>,
    /// Largest content the channel takes (sizes the request body limit).
    pub max_content_bytes: usize,
}

/// Every MM7 channel's inbound side, by name.
#[derive(Debug, Default)]
pub struct Inbound {
    channels: HashMap<String, InboundChannel>,
}

impl Inbound {
    /// Adds (or replaces) a channel.
    pub fn add(&mut self, channel: InboundChannel) {
        self.channels.insert(channel.name.to_string(), channel);
    }

    /// Whether no channel is served.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }

    /// The largest request body taken: base64 of the largest content plus the envelope.
    fn body_limit(&self) -> usize {
        let content = self
            .channels
            .values()
            .map(|c| c.max_content_bytes)
            .max()
            .unwrap_or(0);
        content.saturating_mul(4) / 3 + 64 * 1024
    }
}

/// The `/mm7/{channel}` routes.
pub fn router(inbound: Arc<Inbound>) -> Router {
    let limit = inbound.body_limit();
    Router::new()
        .route("/mm7/{channel}", axum::routing::post(receive))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(inbound)
}

fn tolerated(channel: &str, kind: &'static str) {
    counter!(CHANNEL_TOLERATED, "channel" => channel.to_owned(), "kind" => kind).increment(1);
}

async fn receive(
    State(inbound): State<Arc<Inbound>>,
    Path(channel): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(ch) = inbound.channels.get(&channel) else {
        return (StatusCode::NOT_FOUND, "no MM7 channel of that name\n").into_response();
    };
    if let Some(auth) = &ch.auth
        && !auth.admits(&headers)
    {
        let mut r = (StatusCode::UNAUTHORIZED, "MM7 basic auth required\n").into_response();
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"mm7\""),
        );
        return r;
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let decoded = match body::decode(content_type, &body) {
        Ok(d) => d,
        Err(e) => {
            debug!(channel = %ch.name, error = %e, "Malformed MM7 request.");
            return fault(
                &ch.namespace,
                "",
                true,
                2007,
                &format!("malformed MM7 request: {e}"),
            );
        }
    };
    let ns = decoded
        .envelope
        .namespace
        .clone()
        .unwrap_or_else(|| ch.namespace.clone());
    let tid = decoded.envelope.transaction_id.clone().unwrap_or_else(|| {
        tolerated(&ch.name, "mm7_no_transaction_id");
        String::new()
    });
    let (event, report) = match decoded.envelope.message {
        Message::DeliveryReportReq(r) => (receipt_event(&ch.name, &r), true),
        Message::DeliverReq(r) => match mo_event(&r, &decoded.attachments) {
            Some(ev) => (ev, false),
            None => return fault(&ns, &tid, true, 4004, "DeliverReq has no Sender"),
        },
        other => {
            let name = kind_name(&other);
            return fault(
                &ns,
                &tid,
                true,
                4003,
                &format!("{name} is not taken on a VASP's MM7 endpoint"),
            );
        }
    };
    if !keep(ch, event).await {
        return fault(&ns, &tid, false, 3000, "not kept; send the request again");
    }
    let ok = Status {
        code: 1000,
        text: Some("Success".into()),
    };
    let xml = if report {
        soap::encode_delivery_report_rsp(&ns, &tid, &ok)
    } else {
        soap::encode_deliver_rsp(&ns, &tid, &ok, None)
    };
    xml_response(StatusCode::OK, xml)
}

/// Hands an event to the receipt layer and waits for its verdict (dropped unanswered counts
/// as kept, as for SMPP; the receipt layer gone counts as not kept).
async fn keep(ch: &InboundChannel, mut event: ChannelEvent) -> bool {
    let (tx, rx) = oneshot::channel();
    match &mut event {
        ChannelEvent::Receipt { ack, .. } | ChannelEvent::Mo { ack, .. } => {
            *ack = DeliverAck::new(tx);
        }
    }
    if ch.events.send(event).await.is_err() {
        warn!(channel = %ch.name, "Receipt layer gone; MMSC told to resend.");
        return false;
    }
    rx.await.unwrap_or(true)
}

fn kind_name(m: &Message) -> &'static str {
    match m {
        Message::SubmitReq(_) => "SubmitReq",
        Message::SubmitRsp(_) => "SubmitRsp",
        Message::DeliveryReportReq(_) => "DeliveryReportReq",
        Message::DeliverReq(_) => "DeliverReq",
        Message::DeliveryReportRsp(_) => "DeliveryReportRsp",
        Message::DeliverRsp(_) => "DeliverRsp",
        Message::RsErrorRsp(_) => "RSErrorRsp",
        Message::VaspErrorRsp(_) => "VASPErrorRsp",
        Message::Fault(_) => "a SOAP Fault",
    }
}

fn xml_response(status: StatusCode, xml: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        xml,
    )
        .into_response()
}

/// A SOAP Fault (HTTP 500, as SOAP 1.1 answers faults) with a VASPErrorRsp `code` detail.
fn fault(ns: &str, tid: &str, client: bool, code: u16, text: &str) -> Response {
    let st = Status {
        code,
        text: Some(text.to_owned()),
    };
    xml_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        soap::encode_vasp_error_fault(ns, tid, client, text, &st),
    )
}

/// MMStatus → the receipt's stat word (module table); `None` when unknown.
fn stat_of(mm_status: &str) -> Option<&'static str> {
    const TABLE: [(&str, &str); 9] = [
        ("Retrieved", "DELIVRD"),
        ("Forwarded", "DELIVRD"),
        ("Expired", "EXPIRED"),
        ("Rejected", "REJECTD"),
        ("Unrecognised", "UNDELIV"),
        ("DeliveryConditionNotMet", "UNDELIV"),
        ("Deferred", "ENROUTE"),
        ("Indeterminate", "ACCEPTD"),
        // The American spelling some MMSCs write.
        ("Unrecognized", "UNDELIV"),
    ];
    TABLE
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(mm_status))
        .map(|(_, v)| *v)
}

fn receipt_event(channel: &str, r: &DeliveryReportReq) -> ChannelEvent {
    let mm_status = r.mm_status.trim();
    let stat = match stat_of(mm_status) {
        Some(s) => {
            let exact = [
                "Retrieved",
                "Forwarded",
                "Expired",
                "Rejected",
                "Unrecognised",
                "DeliveryConditionNotMet",
                "Deferred",
                "Indeterminate",
            ]
            .contains(&mm_status);
            if !exact {
                tolerated(channel, "mm7_status_case");
            }
            s
        }
        None => "UNKNOWN",
    };
    let recipient = r.recipient.as_ref().map(address_value).unwrap_or_default();
    let key = if recipient.is_empty() {
        tolerated(channel, "mm7_report_without_recipient");
        r.message_id.trim().to_owned()
    } else {
        center_id(&r.message_id, recipient)
    };
    ChannelEvent::Receipt {
        center_id: key.into(),
        stat: stat.into(),
        err: mm_status.into(),
        done_at: r.date.as_deref().and_then(done_at).map(Into::into),
        text: r.status_text.as_deref().unwrap_or_default().into(),
        source: recipient.into(),
        at: SystemTime::now(),
        ack: DeliverAck::default(),
    }
}

/// An xs:dateTime (`2026-12-05T10:30:00+08:00`) as `YYMMDDhhmmss`, as written (no zone
/// shift); `None` when it is not one.
fn done_at(date: &str) -> Option<String> {
    let digits: String = date
        .trim()
        .chars()
        .take(19)
        .filter(char::is_ascii_digit)
        .collect();
    (digits.len() == 14).then(|| digits[2..].to_owned())
}

fn mo_event(r: &DeliverReq, attachments: &[Part]) -> Option<ChannelEvent> {
    let from = r.sender.as_ref().map(address_value)?.trim().to_owned();
    if from.is_empty() {
        return None;
    }
    let to = r
        .recipients
        .first()
        .map(address_value)
        .unwrap_or_default()
        .to_owned();
    // The Content href names the content part; without one (or no match) every part counts.
    let named: Vec<&Part> = r
        .content_id
        .as_deref()
        .map(|id| {
            attachments
                .iter()
                .filter(|p| {
                    p.content_id.as_deref() == Some(id) || p.content_location.as_deref() == Some(id)
                })
                .collect()
        })
        .unwrap_or_default();
    let parts: Vec<&Part> = if named.is_empty() {
        attachments.iter().collect()
    } else {
        named
    };
    let mut texts = Vec::new();
    for p in parts {
        collect_text(p, &mut texts);
    }
    let text = if texts.is_empty() {
        r.subject.clone().unwrap_or_default()
    } else {
        texts.join("\n")
    };
    Some(ChannelEvent::Mo {
        from,
        to,
        text,
        // MM7 text is decoded from its MIME charset: Unicode, as data_coding 8 says.
        data_coding: 8,
        at: SystemTime::now(),
        ack: DeliverAck::default(),
    })
}

/// The text/plain leaves of a part (nested multiparts walked), decoded.
fn collect_text(p: &Part, out: &mut Vec<String>) {
    if !p.nested.is_empty() {
        for n in &p.nested {
            collect_text(n, out);
        }
        return;
    }
    if mime::media_type(&p.content_type) != "text/plain" {
        return;
    }
    let charset = mime::header_param(&p.content_type, "charset").unwrap_or_default();
    let encoding =
        encoding_rs::Encoding::for_label(charset.as_bytes()).unwrap_or(encoding_rs::UTF_8);
    let (text, _, _) = encoding.decode(&p.body);
    out.push(text.trim_end_matches(['\r', '\n']).to_owned());
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_protocols::mm7::mime::TransferEncoding;
    use sluice_protocols::mm7::soap::Address;

    #[test]
    fn statuses_map_to_stat_words() {
        assert_eq!(stat_of("Retrieved"), Some("DELIVRD"));
        assert_eq!(stat_of("retrieved"), Some("DELIVRD"));
        assert_eq!(stat_of("Deferred"), Some("ENROUTE"));
        assert_eq!(stat_of("Indeterminate"), Some("ACCEPTD"));
        assert_eq!(stat_of("Expired"), Some("EXPIRED"));
        assert_eq!(stat_of("Whatever"), None);
    }

    #[test]
    fn dates_become_done_at() {
        assert_eq!(
            done_at("2026-12-05T10:30:07+08:00").as_deref(),
            Some("261205103007")
        );
        assert_eq!(done_at("yesterday"), None);
    }

    #[test]
    fn mo_text_comes_from_text_parts_in_their_charset() {
        let (gbk, _, _) = encoding_rs::GBK.encode("你好");
        let inner = Part {
            nested: vec![
                Part::new(
                    "application/smil",
                    TransferEncoding::EightBit,
                    b"<smil/>".to_vec(),
                ),
                Part::new(
                    "text/plain; charset=gbk",
                    TransferEncoding::Binary,
                    gbk.into_owned(),
                ),
            ],
            ..Part::new("multipart/related", TransferEncoding::Binary, Vec::new())
        }
        .with_content_id("c1");
        let r = DeliverReq {
            linked_id: None,
            sender: Some(Address::Number("8613800138000".into())),
            recipients: vec![Address::ShortCode("10658000".into())],
            subject: Some("subj".into()),
            content_id: Some("c1".into()),
        };
        match mo_event(&r, &[inner]) {
            Some(ChannelEvent::Mo { from, to, text, .. }) => {
                assert_eq!(from, "8613800138000");
                assert_eq!(to, "10658000");
                assert_eq!(text, "你好");
            }
            other => panic!("expected MO, got {other:?}"),
        }
        assert_eq!(
            mo_event(&DeliverReq { sender: None, ..r }, &[]),
            None,
            "no sender, no MO"
        );
    }
}

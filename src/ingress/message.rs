//! One message of a batch: the wire shape of docs/http-api.md and its validation.
//!
//! Job: turn a [`WireMessage`] (exactly the JSON fields of the contract, unknown fields
//! refused) into a [`Submission`] whose every field is known good, or say which field is at
//! fault and why ([`FieldError`]). Pure: no I/O, no clock (expiry in the past is not an
//! input error; the message expires with an `EXPIRED` receipt downstream).
//!
//! Limits enforced here (each documented on its const):
//! - `window`: parsed by `schedule::TimeWindow`, the scheduler's own parser.
//! - `to`: E.164 (`+` and 1–15 digits, no leading 0) or national digits (3–20).
//! - text: at most [`MAX_TEXT_UTF16`] UTF-16 units, which always fits the 255-part
//!   concatenation ceiling whatever encoding is chosen (UCS-2 carries 67 per part).
//! - binary + udh: fits 255 parts of 140 octets minus the concatenation and caller UDH.
//! - `wap_push`: exactly one of `si` / `sl` and none of text/binary/udh/encoding; the
//!   object is checked and encoded by [`super::wap_push`] (stored as binary + port UDH).

use std::collections::BTreeMap;

use compact_str::CompactString;
use jiff::Timestamp;
use serde::Deserialize;
use sluice_protocols::sms;

use super::mms::{self, Draft, WirePart};
use super::wap_push::{self, WireSi, WireSl};
pub use crate::store::{EncodingHint as Encoding, Lane, MessageKind as Kind, Payload};

/// 255 parts × 67 UCS-2 characters: the most text a concatenated SMS can carry in the
/// least dense encoding, so any text at or under it can always be sent.
pub const MAX_TEXT_UTF16: usize = 255 * 67;
/// Longest `client_ref` in characters (contract: string ≤ 64).
pub const MAX_CLIENT_REF: usize = 64;
/// Tags are echoed in every receipt: keep them small.
pub const MAX_TAGS: usize = 32;
/// Longest tag key in bytes.
pub const MAX_TAG_KEY: usize = 64;
/// Longest tag value in bytes.
pub const MAX_TAG_VALUE: usize = 256;
/// Longest sender: SMPP `source_addr` is a C-octet string of at most 21 bytes incl. NUL.
pub const MAX_SENDER: usize = 20;
/// Longest callback URL in bytes.
pub const MAX_URL: usize = 2048;

/// A message object exactly as the client sent it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireMessage {
    /// Destination address.
    pub to: CompactString,
    /// Sender; defaults to the account's default sender.
    #[serde(default)]
    pub from: Option<CompactString>,
    /// UTF-8 text.
    #[serde(default)]
    pub text: Option<String>,
    /// Hex payload (8-bit).
    #[serde(default)]
    pub binary: Option<String>,
    /// Hex user data header for `binary`.
    #[serde(default)]
    pub udh: Option<String>,
    /// Encoding hint.
    #[serde(default)]
    pub encoding: Option<Encoding>,
    /// Message kind.
    #[serde(default)]
    pub kind: Option<Kind>,
    /// WAP Push Service Indication (kind `wap_push`).
    #[serde(default)]
    pub si: Option<WireSi>,
    /// WAP Push Service Loading (kind `wap_push`).
    #[serde(default)]
    pub sl: Option<WireSl>,
    /// MMS subject (kind `mms`).
    #[serde(default)]
    pub subject: Option<String>,
    /// MMS parts (kind `mms`): media and text, in slide order.
    #[serde(default)]
    pub parts: Option<Vec<WirePart>>,
    /// MMS presentation (kind `mms`); generated when absent.
    #[serde(default)]
    pub smil: Option<String>,
    /// Priority lane.
    #[serde(default)]
    pub lane: Option<Lane>,
    /// RFC 3339: do not send before.
    #[serde(default)]
    pub not_before: Option<String>,
    /// RFC 3339: expire (receipt `EXPIRED`) if not sent by then.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// `"HH:MM-HH:MM"` local-time window.
    #[serde(default)]
    pub window: Option<String>,
    /// Idempotency key per account.
    #[serde(default)]
    pub client_ref: Option<String>,
    /// Where receipts go; else the account webhook.
    #[serde(default)]
    pub callback_url: Option<String>,
    /// Opaque labels echoed in receipts.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

/// A message that passed validation: every field is known good.
#[derive(Debug, Clone, PartialEq)]
pub struct Submission {
    /// Destination, as given (E.164 with `+` or national digits).
    pub to: CompactString,
    /// Sender (client's, checked against the account, or the account default).
    pub from: CompactString,
    /// What to send.
    pub payload: Payload,
    /// Kind for routing.
    pub kind: Kind,
    /// Priority lane.
    pub lane: Lane,
    /// Do not send before.
    pub not_before: Option<Timestamp>,
    /// Expire if not sent by then.
    pub expires_at: Option<Timestamp>,
    /// Allowed local-time window (raw text kept for storage; parsed form checked).
    pub window: Option<String>,
    /// Idempotency key.
    pub client_ref: Option<String>,
    /// Receipt webhook override.
    pub callback_url: Option<String>,
    /// Labels echoed in receipts.
    pub tags: BTreeMap<String, String>,
    /// An MMS whose content is not built yet (URL parts to fetch): `mms::resolve` turns it
    /// into `payload` before the batch is stored; until then `payload` is a placeholder.
    pub mms: Option<Draft>,
}

/// The field at fault and why: the body of a 422.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    /// Field name as in the contract (`to`, `tags.group`, …).
    pub field: String,
    /// Human-readable reason, quoting the bad value.
    pub reason: String,
}

impl FieldError {
    fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// What an account permits; built from config by the caller.
#[derive(Debug, Clone, Default)]
pub struct SenderPolicy {
    /// Senders the account may use. Empty = any syntactically valid sender. An entry ending
    /// in `*` allows every sender starting with the rest (long number + extension codes).
    pub allowed: Vec<String>,
    /// Sender used when the message has no `from` (inline: copied into every such message).
    pub default: Option<CompactString>,
    /// The account may name a `callback_url`: it has a `webhook_secret`, and every webhook
    /// is signed with it. Without one a callback could only go out unsigned, so it is
    /// refused here rather than dropped later.
    pub callbacks: bool,
}

impl SenderPolicy {
    fn allows(&self, from: &str) -> bool {
        self.allowed.is_empty()
            || self.allowed.iter().any(|a| match a.strip_suffix('*') {
                Some(prefix) => from.starts_with(prefix),
                None => a == from,
            })
    }
}

/// Validates one wire message for an account.
///
/// # Errors
/// The first field at fault, in contract field order.
pub fn validate(msg: WireMessage, senders: &SenderPolicy) -> Result<Submission, FieldError> {
    check_address(&msg.to).map_err(|r| FieldError::new("to", r))?;
    let from = match msg.from {
        Some(f) => {
            check_sender(&f).map_err(|r| FieldError::new("from", r))?;
            if !senders.allows(&f) {
                return Err(FieldError::new(
                    "from",
                    format!("sender not allowed for this account: {f:?}"),
                ));
            }
            f
        }
        None => senders.default.clone().ok_or_else(|| {
            FieldError::new("from", "missing, and the account has no default sender")
        })?,
    };
    let push = msg.si.is_some() || msg.sl.is_some();
    let multimedia = msg.parts.is_some() || msg.subject.is_some() || msg.smil.is_some();
    let kind = match msg.kind {
        None if push => Kind::WapPush,
        None if multimedia => Kind::Mms,
        None => Kind::default(),
        Some(k) if push && k != Kind::WapPush => {
            return Err(FieldError::new(
                "kind",
                format!("si and sl need kind wap_push, not {}", kind_name(k)),
            ));
        }
        Some(k) => k,
    };
    // The first SMS content field given: WAP Push and MMS carry their content elsewhere.
    let sms_field = [
        (msg.text.is_some(), "text"),
        (msg.binary.is_some(), "binary"),
        (msg.udh.is_some(), "udh"),
        (msg.encoding.is_some(), "encoding"),
    ]
    .into_iter()
    .find_map(|(given, field)| given.then_some(field));
    let mut mms_draft = None;
    let payload = if kind == Kind::WapPush {
        if let Some(field) = sms_field {
            return Err(FieldError::new(
                field,
                "not allowed with kind wap_push: give si or sl",
            ));
        }
        wap_push::payload(msg.si, msg.sl)?
    } else if kind == Kind::Mms {
        if let Some(field) = sms_field {
            return Err(FieldError::new(
                field,
                "not allowed with kind mms: give parts",
            ));
        }
        let subject = msg.subject.clone();
        mms_draft = Some(mms::draft(msg.subject, msg.parts, msg.smil)?);
        mms::unresolved(subject)
    } else {
        for (given, field) in [
            (msg.parts.is_some(), "parts"),
            (msg.subject.is_some(), "subject"),
            (msg.smil.is_some(), "smil"),
        ] {
            if given {
                return Err(FieldError::new(
                    field,
                    format!("only allowed with kind mms, not {}", kind_name(kind)),
                ));
            }
        }
        payload(msg.text, msg.binary, msg.udh, msg.encoding)?
    };
    let not_before = msg
        .not_before
        .as_deref()
        .map(|s| timestamp(s).map_err(|r| FieldError::new("not_before", r)))
        .transpose()?;
    let expires_at = msg
        .expires_at
        .as_deref()
        .map(|s| timestamp(s).map_err(|r| FieldError::new("expires_at", r)))
        .transpose()?;
    if let (Some(nb), Some(ex)) = (not_before, expires_at)
        && ex <= nb
    {
        return Err(FieldError::new(
            "expires_at",
            format!("{ex} is not after not_before {nb}"),
        ));
    }
    if let Some(w) = &msg.window {
        // The same parser the scheduler uses, so an accepted window is always schedulable.
        w.parse::<crate::schedule::TimeWindow>()
            .map_err(|e| FieldError::new("window", e.to_string()))?;
    }
    if let Some(r) = &msg.client_ref {
        let n = r.chars().count();
        if n == 0 || n > MAX_CLIENT_REF {
            return Err(FieldError::new(
                "client_ref",
                format!("length {n} outside 1..={MAX_CLIENT_REF}"),
            ));
        }
    }
    if let Some(u) = &msg.callback_url {
        check_url(u).map_err(|r| FieldError::new("callback_url", r))?;
        if !senders.callbacks {
            return Err(FieldError::new(
                "callback_url",
                "the account has no webhook_secret to sign callbacks with",
            ));
        }
    }
    check_tags(&msg.tags)?;
    Ok(Submission {
        to: msg.to,
        from,
        payload,
        kind,
        lane: msg.lane.unwrap_or_default(),
        not_before,
        expires_at,
        window: msg.window,
        client_ref: msg.client_ref,
        callback_url: msg.callback_url,
        tags: msg.tags,
        mms: mms_draft,
    })
}

/// E.164 (`+` then 1–15 digits, first not 0) or national digits (3–20).
fn check_address(to: &str) -> Result<(), String> {
    let ok = match to.strip_prefix('+') {
        Some(d) => {
            (1..=15).contains(&d.len())
                && d.bytes().all(|b| b.is_ascii_digit())
                && !d.starts_with('0')
        }
        None => (3..=20).contains(&to.len()) && to.bytes().all(|b| b.is_ascii_digit()),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("not a phone number: {to:?}"))
    }
}

/// A sender is an address or an alphanumeric name (printable ASCII), ≤ [`MAX_SENDER`] bytes.
fn check_sender(from: &str) -> Result<(), String> {
    if from.is_empty() || from.len() > MAX_SENDER {
        return Err(format!("length {} outside 1..={MAX_SENDER}", from.len()));
    }
    if !from.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
        return Err(format!("not printable ASCII: {from:?}"));
    }
    Ok(())
}

fn payload(
    text: Option<String>,
    binary: Option<String>,
    udh: Option<String>,
    encoding: Option<Encoding>,
) -> Result<Payload, FieldError> {
    match (text, binary) {
        (Some(_), Some(_)) => Err(FieldError::new(
            "binary",
            "give either text or binary, not both",
        )),
        (None, None) => Err(FieldError::new("text", "missing: give text or binary")),
        (Some(text), None) => {
            if udh.is_some() {
                return Err(FieldError::new("udh", "only allowed with binary"));
            }
            let encoding = encoding.unwrap_or_default();
            check_text(&text, encoding)?;
            Ok(Payload::Text { text, encoding })
        }
        (None, Some(hex)) => {
            if encoding.is_some_and(|e| e != Encoding::Auto) {
                return Err(FieldError::new("encoding", "not allowed with binary"));
            }
            let data = decode_hex(&hex).map_err(|r| FieldError::new("binary", r))?;
            let udh = match udh {
                Some(h) => {
                    let u = decode_hex(&h).map_err(|r| FieldError::new("udh", r))?;
                    check_udh(&u).map_err(|r| FieldError::new("udh", r))?;
                    u
                }
                None => Vec::new(),
            };
            // Each part carries the caller UDH plus a concatenation IE (5 octets with the
            // 8-bit reference, plus the UDHL octet when the caller gave none).
            let concat = if udh.is_empty() { 6 } else { 5 };
            let per_part = 140usize.saturating_sub(udh.len() + concat);
            if per_part == 0 {
                return Err(FieldError::new(
                    "udh",
                    format!("{} octets leave no room", udh.len()),
                ));
            }
            if data.is_empty() {
                return Err(FieldError::new("binary", "empty payload"));
            }
            if data.len() > per_part * 255 {
                return Err(FieldError::new(
                    "binary",
                    format!("{} octets exceed 255 parts of {per_part}", data.len()),
                ));
            }
            Ok(Payload::Binary {
                data,
                udh: (!udh.is_empty()).then_some(udh),
            })
        }
    }
}

fn check_text(text: &str, encoding: Encoding) -> Result<(), FieldError> {
    if text.is_empty() {
        return Err(FieldError::new("text", "empty text"));
    }
    let units = text.encode_utf16().count();
    if units > MAX_TEXT_UTF16 {
        return Err(FieldError::new(
            "text",
            format!("{units} UTF-16 units exceed {MAX_TEXT_UTF16} (255 parts)"),
        ));
    }
    // The codecs that will encode the text decide what it can carry: one table per fact.
    let codec = match encoding {
        Encoding::Auto | Encoding::Ucs2 => None,
        Encoding::Latin1 => Some(sms::Encoding::Latin1),
        Encoding::Gsm7 => Some(sms::Encoding::Gsm7),
        Encoding::Gbk => Some(sms::Encoding::Gbk),
    };
    let bad = codec.and_then(|e| match sms::encode(text, e) {
        Err(sms::EncodeError::Unmappable { ch, .. }) => Some(ch),
        _ => None,
    });
    match bad {
        Some(c) => Err(FieldError::new(
            "encoding",
            format!("{c:?} cannot be encoded as {encoding:?}"),
        )),
        None => Ok(()),
    }
}

/// A UDH is its own length octet (UDHL) followed by exactly UDHL octets of IEs.
fn check_udh(udh: &[u8]) -> Result<(), String> {
    match udh.first() {
        None => Err("empty".into()),
        Some(&l) if usize::from(l) + 1 != udh.len() => Err(format!(
            "length octet says {l} but {} octets follow",
            udh.len() - 1
        )),
        Some(_) => Ok(()),
    }
}

fn decode_hex(s: &str) -> Result<Vec<u8>, String> {
    if !s.len().is_multiple_of(2) {
        return Err(format!("odd number of hex digits ({})", s.len()));
    }
    s.as_bytes()
        .chunks_exact(2)
        .map(|pair| {
            let hi = hex_digit(pair[0]);
            let lo = hex_digit(pair[1]);
            match (hi, lo) {
                (Some(h), Some(l)) => Ok(h << 4 | l),
                _ => Err(format!("not hex: {:?}", String::from_utf8_lossy(pair))),
            }
        })
        .collect()
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn timestamp(s: &str) -> Result<Timestamp, String> {
    s.parse::<Timestamp>()
        .map_err(|e| format!("not an RFC 3339 time with offset: {s:?} ({e})"))
}

/// The contract name of a kind (`sms`, `mms`, `wap_push`).
fn kind_name(k: Kind) -> String {
    serde_json::to_value(k)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{k:?}"))
}

/// An http(s) URL with a host, at most [`MAX_URL`] bytes.
pub(super) fn check_url(u: &str) -> Result<(), String> {
    if u.len() > MAX_URL {
        return Err(format!("longer than {MAX_URL} bytes"));
    }
    let url = reqwest::Url::parse(u).map_err(|e| format!("not a URL: {u:?} ({e})"))?;
    match url.scheme() {
        // https goes through rustls (receipt::client): bundled roots + `[webhooks] ca_file`.
        "http" | "https" if url.host().is_some() => Ok(()),
        _ => Err(format!("not an http(s) URL with a host: {u:?}")),
    }
}

fn check_tags(tags: &BTreeMap<String, String>) -> Result<(), FieldError> {
    if tags.len() > MAX_TAGS {
        return Err(FieldError::new(
            "tags",
            format!("{} tags exceed {MAX_TAGS}", tags.len()),
        ));
    }
    for (k, v) in tags {
        if k.is_empty() || k.len() > MAX_TAG_KEY {
            return Err(FieldError::new(
                "tags",
                format!("key {k:?}: length outside 1..={MAX_TAG_KEY}"),
            ));
        }
        if v.len() > MAX_TAG_VALUE {
            return Err(FieldError::new(
                format!("tags.{k}"),
                format!("value longer than {MAX_TAG_VALUE} bytes"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> SenderPolicy {
        SenderPolicy {
            allowed: vec!["10086".into(), "1069*".into()],
            default: Some("10086".into()),
            callbacks: true,
        }
    }

    fn wire(to: &str, text: &str) -> WireMessage {
        WireMessage {
            to: to.into(),
            text: Some(text.into()),
            ..WireMessage::default()
        }
    }

    fn field_of(m: WireMessage) -> String {
        validate(m, &policy()).expect_err("must be invalid").field
    }

    #[test]
    fn minimal_message_gets_defaults() {
        let s = validate(wire("+8613800138000", "hi"), &policy()).expect("valid");
        assert_eq!(s.from, "10086");
        assert_eq!(s.lane, Lane::Notification);
        assert_eq!(s.kind, Kind::Sms);
        assert_eq!(
            s.payload,
            Payload::Text {
                text: "hi".into(),
                encoding: Encoding::Auto
            }
        );
    }

    #[test]
    fn addresses() {
        for good in ["+8613800138000", "13800138000", "+1", "106"] {
            assert!(check_address(good).is_ok(), "{good}");
        }
        for bad in ["12ab", "+", "+0123", "12", "+1234567890123456", "", " 123"] {
            assert!(check_address(bad).is_err(), "{bad}");
        }
        let e = validate(wire("12ab", "x"), &policy()).expect_err("bad to");
        assert_eq!(e.field, "to");
        assert_eq!(e.reason, "not a phone number: \"12ab\"");
    }

    #[test]
    fn senders_follow_policy() {
        let mut m = wire("13800138000", "x");
        m.from = Some("1069123".into());
        assert!(validate(m.clone(), &policy()).is_ok());
        m.from = Some("95555".into());
        assert_eq!(field_of(m), "from");
        let none = SenderPolicy::default();
        let e = validate(wire("13800138000", "x"), &none).expect_err("no default");
        assert_eq!(e.field, "from");
    }

    #[test]
    fn text_and_binary_are_exclusive() {
        let mut m = wire("13800138000", "x");
        m.binary = Some("00".into());
        assert_eq!(field_of(m), "binary");
        let mut m = wire("13800138000", "x");
        m.text = None;
        assert_eq!(field_of(m), "text");
        let mut m = wire("13800138000", "x");
        m.udh = Some("00".into());
        assert_eq!(field_of(m), "udh");
    }

    #[test]
    fn binary_and_udh() {
        let mut m = wire("13800138000", "x");
        m.text = None;
        m.binary = Some("DEADbeef".into());
        m.udh = Some("0605040B8423F0".into());
        let s = validate(m.clone(), &policy()).expect("valid");
        assert_eq!(
            s.payload,
            Payload::Binary {
                data: vec![0xDE, 0xAD, 0xBE, 0xEF],
                udh: Some(vec![6, 5, 4, 0x0B, 0x84, 0x23, 0xF0])
            }
        );
        m.udh = Some("0705".into());
        assert_eq!(field_of(m.clone()), "udh");
        m.udh = None;
        m.binary = Some("ABC".into());
        assert_eq!(field_of(m.clone()), "binary");
        m.binary = Some("zz".into());
        assert_eq!(field_of(m.clone()), "binary");
        m.binary = Some("00".repeat(134 * 255 + 1));
        assert_eq!(field_of(m), "binary");
    }

    #[test]
    fn encoding_hints_are_checked() {
        let mut m = wire("13800138000", "Grüße {ok} €");
        m.encoding = Some(Encoding::Gsm7);
        assert!(validate(m.clone(), &policy()).is_ok());
        m.text = Some("中文".into());
        assert_eq!(field_of(m.clone()), "encoding");
        m.encoding = Some(Encoding::Gbk);
        assert!(validate(m.clone(), &policy()).is_ok());
        m.text = Some("😀".into());
        assert_eq!(field_of(m.clone()), "encoding");
        m.encoding = Some(Encoding::Latin1);
        m.text = Some("café".into());
        assert!(validate(m.clone(), &policy()).is_ok());
        m.text = Some("€".into());
        assert_eq!(field_of(m), "encoding");
    }

    #[test]
    fn long_text_limit() {
        let ok = "中".repeat(MAX_TEXT_UTF16);
        assert!(validate(wire("13800138000", &ok), &policy()).is_ok());
        let too_long = "中".repeat(MAX_TEXT_UTF16 + 1);
        assert_eq!(field_of(wire("13800138000", &too_long)), "text");
        assert_eq!(field_of(wire("13800138000", "")), "text");
    }

    #[test]
    fn times_and_window() {
        let mut m = wire("13800138000", "x");
        m.not_before = Some("2026-11-26T08:00:00+08:00".into());
        m.expires_at = Some("2026-11-26T09:00:00+08:00".into());
        m.window = Some("21:00-08:00".into());
        assert!(validate(m.clone(), &policy()).is_ok());
        m.expires_at = Some("2026-11-26T07:00:00+08:00".into());
        assert_eq!(field_of(m.clone()), "expires_at");
        m.expires_at = None;
        m.not_before = Some("2026-11-26 08:00".into());
        assert_eq!(field_of(m.clone()), "not_before");
        m.not_before = None;
        m.window = Some("8:00-21:00".into());
        assert_eq!(field_of(m.clone()), "window");
        m.window = Some("08:00-08:00".into());
        assert_eq!(field_of(m.clone()), "window");
        m.window = Some("00:00-24:00".into());
        assert!(validate(m, &policy()).is_ok());
    }

    #[test]
    fn client_ref_url_tags() {
        let mut m = wire("13800138000", "x");
        m.client_ref = Some("é".repeat(64));
        assert!(validate(m.clone(), &policy()).is_ok());
        m.client_ref = Some("a".repeat(65));
        assert_eq!(field_of(m.clone()), "client_ref");
        m.client_ref = None;
        m.callback_url = Some("ftp://x/".into());
        assert_eq!(field_of(m.clone()), "callback_url");
        m.callback_url = Some("https://example.com/hook".into());
        assert!(validate(m.clone(), &policy()).is_ok());
        m.callback_url = Some("https://".into());
        assert_eq!(field_of(m.clone()), "callback_url");
        m.callback_url = Some("http://127.0.0.1:9/hook".into());
        assert!(validate(m.clone(), &policy()).is_ok());
        // An account without a webhook_secret cannot have callbacks: they would go unsigned.
        let unsigned = SenderPolicy {
            callbacks: false,
            ..policy()
        };
        let e = validate(m.clone(), &unsigned).expect_err("no secret");
        assert_eq!(e.field, "callback_url");
        assert!(e.reason.contains("webhook_secret"), "{}", e.reason);
        m.callback_url = None;
        m.tags.insert("group".into(), "x".repeat(MAX_TAG_VALUE + 1));
        assert_eq!(field_of(m), "tags.group");
    }

    #[test]
    fn wap_push_needs_si_or_sl_and_nothing_else() {
        let push = |kind: Option<Kind>| WireMessage {
            to: "13800138000".into(),
            kind,
            si: Some(WireSi {
                href: Some("http://www.sluice.com/a".into()),
                text: Some("hi".into()),
                ..WireSi::default()
            }),
            ..WireMessage::default()
        };
        let s = validate(push(Some(Kind::WapPush)), &policy()).expect("valid");
        assert_eq!(s.kind, Kind::WapPush);
        assert!(matches!(
            s.payload,
            Payload::Binary { udh: Some(ref u), .. } if u[..] == [6, 5, 4, 0x0B, 0x84, 0x23, 0xF0]
        ));
        assert_eq!(
            validate(push(None), &policy()).expect("kind inferred").kind,
            Kind::WapPush
        );
        let e = validate(push(Some(Kind::Sms)), &policy()).expect_err("sms with si");
        assert_eq!(
            (e.field.as_str(), e.reason.as_str()),
            ("kind", "si and sl need kind wap_push, not sms")
        );
        let mut m = push(Some(Kind::WapPush));
        m.text = Some("x".into());
        assert_eq!(field_of(m), "text");
        let mut m = push(Some(Kind::WapPush));
        m.encoding = Some(Encoding::Gsm7);
        assert_eq!(field_of(m), "encoding");
        let mut m = push(Some(Kind::WapPush));
        m.si = None;
        m.binary = Some("00".into());
        assert_eq!(field_of(m), "binary");
        let mut m = push(Some(Kind::WapPush));
        m.si = None;
        assert_eq!(field_of(m), "si");
        let mut m = push(Some(Kind::WapPush));
        m.sl = Some(WireSl::default());
        assert_eq!(field_of(m), "sl");
        let mut m = push(None);
        m.si = Some(WireSi {
            href: Some("http://a.com/".into()),
            action: Some("loud".into()),
            ..WireSi::default()
        });
        assert_eq!(field_of(m), "si.action");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]
        #[test]
        fn validate_never_panics(to in ".{0,24}", text in proptest::option::of(".{0,40}"),
                                 bin in proptest::option::of("[0-9a-fA-Fz]{0,12}"),
                                 udh in proptest::option::of("[0-9a-f]{0,8}"),
                                 win in proptest::option::of(".{0,12}")) {
            let m = WireMessage { to: to.into(), text, binary: bin, udh, window: win, ..WireMessage::default() };
            let _ = validate(m, &SenderPolicy::default());
        }
    }
}

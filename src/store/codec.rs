//! Binary record formats of stored messages (and the reader of the older JSON records).
//!
//! A message is two records, because after the insert only its life-cycle state changes:
//! - the **body** (key tag 0x01): what the client sent plus routing — written once at insert;
//! - the **state** (key tag 0x0B): state, attempts, parts, receipts and the times — rewritten
//!   by every lease, submit response, receipt and requeue. It is ~40 bytes where the whole
//!   message is ~250, so each state change writes (and dirties) a fraction of the pages.
//!
//! JSON cost ~3 µs per 460-byte message on every read-modify-write; these formats are plain
//! field-by-field encodings, a fraction of the size and far cheaper to read and write.
//!
//! Layout of both: one version byte, then the fields in declaration order of [`Message`]:
//! - integers are unsigned LEB128 varints (a time in ms takes 6 bytes);
//! - strings and byte strings are a varint length followed by the bytes (strings UTF-8);
//! - an `Option` is a byte 0 (none) or 1 (some) followed by the value;
//! - a sequence or map is a varint count followed by the items;
//! - enums are one byte (the codes below are part of the format: never renumber them).
//!
//! Body v1 ([`BODY_V1`]): id, account, to, from, payload, kind, lane, channel, not_before,
//! expires_at, window, client_ref, callback_url, tags, created. State v1 ([`STATE_V1`]): state,
//! attempts, parts, receipts, submitted, done, due, lease_until.
//!
//! Body v2 ([`BODY_V2`], version byte 3): the body v1 fields followed by a whole state v1
//! record; insert writes it so a new message needs no state record until it changes.
//!
//! Versions: a body record starting with `{` is the JSON form of a whole message, written
//! before these formats; it is still read (a state record, once written, overrides its state
//! fields), so an old store opens without a migration. Any other unknown version byte is
//! rejected as corrupt with the byte in the reason. To evolve a format, add a version byte and
//! keep decoding the old ones.
//!
//! Decoding never panics: every read is bounds-checked, and counts are checked against the
//! bytes left before anything is allocated.

use std::collections::BTreeMap;

use compact_str::CompactString;

use super::id::MessageId;
use super::model::{
    EncodingHint, Lane, Message, MessageKind, MessageState, Part, PartState, Payload, Receipt,
};

/// Version byte of the current body layout.
pub(crate) const BODY_V1: u8 = 1;
/// Version byte of a body record that also carries the message's first state: the body v1
/// fields followed by a whole state v1 record (its version byte included). Insert writes it
/// so a new message costs one put instead of two; the state record (tag 0x0B), once a later
/// op writes it, overrides the embedded state. (Byte 2 stays unassigned: the damage tests
/// below use it as the example of an unknown version.)
pub(crate) const BODY_V2: u8 = 3;
/// Version byte of the current state layout.
pub(crate) const STATE_V1: u8 = 1;
/// First byte of a legacy JSON record (a whole message).
const JSON: u8 = b'{';

/// Why a record could not be decoded (becomes `StoreError::Corrupt` with the key).
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// The record ended inside a field.
    Truncated,
    /// Bytes were left after the last field.
    Trailing(usize),
    /// A varint longer than 10 bytes or over 64 bits.
    BadVarint,
    /// A string was not UTF-8.
    BadUtf8,
    /// An enum or option byte had no meaning.
    BadCode {
        /// Which field.
        field: &'static str,
        /// The byte found.
        code: u8,
    },
    /// A number did not fit its field.
    Range(&'static str),
    /// The version byte is not one this build reads.
    Version(u8),
    /// A legacy JSON record failed to parse.
    Json(String),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Truncated => f.write_str("record truncated"),
            Self::Trailing(n) => write!(f, "{n} bytes after the last field"),
            Self::BadVarint => f.write_str("malformed varint"),
            Self::BadUtf8 => f.write_str("string is not UTF-8"),
            Self::BadCode { field, code } => write!(f, "{field}: unknown code {code}"),
            Self::Range(field) => write!(f, "{field}: value out of range"),
            Self::Version(v) => write!(f, "unknown record version {v}"),
            Self::Json(e) => write!(f, "legacy JSON record: {e}"),
        }
    }
}

// ---- enum codes (part of the on-disk format) ----

pub(crate) const fn state_code(s: MessageState) -> u8 {
    match s {
        MessageState::Queued => 0,
        MessageState::Scheduled => 1,
        MessageState::InFlight => 2,
        MessageState::Sent => 3,
        MessageState::Delivered => 4,
        MessageState::Undeliverable => 5,
        MessageState::Expired => 6,
        MessageState::Rejected => 7,
        MessageState::Failed => 8,
        MessageState::Cancelled => 9,
    }
}

pub(crate) fn state_from(c: u8) -> Result<MessageState, DecodeError> {
    Ok(match c {
        0 => MessageState::Queued,
        1 => MessageState::Scheduled,
        2 => MessageState::InFlight,
        3 => MessageState::Sent,
        4 => MessageState::Delivered,
        5 => MessageState::Undeliverable,
        6 => MessageState::Expired,
        7 => MessageState::Rejected,
        8 => MessageState::Failed,
        9 => MessageState::Cancelled,
        code => {
            return Err(DecodeError::BadCode {
                field: "state",
                code,
            });
        }
    })
}

pub(crate) const fn part_state_code(s: PartState) -> u8 {
    match s {
        PartState::Pending => 0,
        PartState::Submitted => 1,
        PartState::Delivered => 2,
        PartState::Undeliverable => 3,
        PartState::Expired => 4,
        PartState::Rejected => 5,
        PartState::Failed => 6,
    }
}

pub(crate) fn part_state_from(c: u8) -> Result<PartState, DecodeError> {
    Ok(match c {
        0 => PartState::Pending,
        1 => PartState::Submitted,
        2 => PartState::Delivered,
        3 => PartState::Undeliverable,
        4 => PartState::Expired,
        5 => PartState::Rejected,
        6 => PartState::Failed,
        code => {
            return Err(DecodeError::BadCode {
                field: "part state",
                code,
            });
        }
    })
}

const fn kind_code(k: MessageKind) -> u8 {
    match k {
        MessageKind::Sms => 0,
        MessageKind::Mms => 1,
        MessageKind::WapPush => 2,
    }
}

fn kind_from(c: u8) -> Result<MessageKind, DecodeError> {
    Ok(match c {
        0 => MessageKind::Sms,
        1 => MessageKind::Mms,
        2 => MessageKind::WapPush,
        code => {
            return Err(DecodeError::BadCode {
                field: "kind",
                code,
            });
        }
    })
}

pub(crate) fn lane_from(c: u8) -> Result<Lane, DecodeError> {
    Lane::ALL
        .into_iter()
        .find(|l| l.as_byte() == c)
        .ok_or(DecodeError::BadCode {
            field: "lane",
            code: c,
        })
}

const fn encoding_code(e: EncodingHint) -> u8 {
    match e {
        EncodingHint::Auto => 0,
        EncodingHint::Gsm7 => 1,
        EncodingHint::Latin1 => 2,
        EncodingHint::Ucs2 => 3,
        EncodingHint::Gbk => 4,
    }
}

fn encoding_from(c: u8) -> Result<EncodingHint, DecodeError> {
    Ok(match c {
        0 => EncodingHint::Auto,
        1 => EncodingHint::Gsm7,
        2 => EncodingHint::Latin1,
        3 => EncodingHint::Ucs2,
        4 => EncodingHint::Gbk,
        code => {
            return Err(DecodeError::BadCode {
                field: "encoding",
                code,
            });
        }
    })
}

const PAYLOAD_TEXT: u8 = 0;
const PAYLOAD_BINARY: u8 = 1;
/// An MMS reference: option subject, content type, 32-byte digest, size. Added after v1
/// records existed; a new payload code keeps every older body decodable unchanged.
const PAYLOAD_MMS: u8 = 2;

// ---- writer ----

/// Appends fields to a byte buffer.
pub(crate) struct Writer<'a>(pub(crate) &'a mut Vec<u8>);

impl Writer<'_> {
    pub(crate) fn u8(&mut self, v: u8) {
        self.0.push(v);
    }

    pub(crate) fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            // Truncation keeps the low 7 bits, which is the point.
            #[allow(clippy::cast_possible_truncation)]
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        #[allow(clippy::cast_possible_truncation)]
        self.0.push(v as u8);
    }

    pub(crate) fn bytes(&mut self, b: &[u8]) {
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }

    pub(crate) fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }

    fn opt_str(&mut self, s: Option<&str>) {
        match s {
            Some(s) => {
                self.u8(1);
                self.str(s);
            }
            None => self.u8(0),
        }
    }

    fn opt_u64(&mut self, v: Option<u64>) {
        match v {
            Some(v) => {
                self.u8(1);
                self.varint(v);
            }
            None => self.u8(0),
        }
    }
}

/// Encodes the body record of `m`.
pub(crate) fn encode_body(m: &Message) -> Vec<u8> {
    let mut buf = Vec::with_capacity(body_len_hint(m));
    let mut w = Writer(&mut buf);
    w.u8(BODY_V1);
    write_body(&mut w, m);
    buf
}

/// Encodes the body record of a new message with its first state embedded ([`BODY_V2`]).
pub(crate) fn encode_body_with_state(m: &Message) -> Vec<u8> {
    let mut buf =
        Vec::with_capacity(body_len_hint(m) + 25 + m.parts.len() * 24 + m.receipts.len() * 24);
    let mut w = Writer(&mut buf);
    w.u8(BODY_V2);
    write_body(&mut w, m);
    w.u8(STATE_V1);
    write_state(&mut w, m);
    buf
}

/// Whether a state record (current layout) is a bare lease: in flight, and holding no fact
/// a crash must keep — no part has a center id and no receipt is recorded. The writer keeps
/// those in memory (`in_flight.rs`); an in-flight record with a submitted part or a part's
/// receipt (a multipart message on its way) is written to the engine like any other.
pub(crate) fn state_is_bare_lease(record: &[u8]) -> bool {
    fn bare(r: &mut Reader<'_>) -> Result<bool, DecodeError> {
        if r.u8()? != STATE_V1 || r.u8()? != state_code(MessageState::InFlight) {
            return Ok(false);
        }
        r.varint()?; // attempts
        for _ in 0..r.count(3)? {
            r.varint()?; // seq
            if r.opt_string("center_id")?.is_some() {
                return Ok(false);
            }
            r.u8()?; // part state
        }
        Ok(r.count(4)? == 0)
    }
    bare(&mut Reader::new(record)).unwrap_or(false)
}

/// Encodes the state record of `m`.
pub(crate) fn encode_state(m: &Message) -> Vec<u8> {
    let mut buf = Vec::with_capacity(24 + m.parts.len() * 24 + m.receipts.len() * 24);
    let mut w = Writer(&mut buf);
    w.u8(STATE_V1);
    write_state(&mut w, m);
    buf
}

/// Rough size, so the buffer is allocated once.
fn body_len_hint(m: &Message) -> usize {
    let payload = match &m.payload {
        Payload::Text { text, .. } => text.len(),
        Payload::Binary { data, udh } => data.len() + udh.as_ref().map_or(0, Vec::len),
        Payload::Mms {
            subject,
            content_type,
            ..
        } => 48 + content_type.len() + subject.as_ref().map_or(0, String::len),
    };
    64 + m.account.len()
        + m.to.len()
        + m.channel.len()
        + payload
        + m.from.as_ref().map_or(0, |f| f.len())
        + m.window.as_ref().map_or(0, String::len)
        + m.client_ref.as_ref().map_or(0, String::len)
        + m.callback_url.as_ref().map_or(0, String::len)
        + m.tags
            .iter()
            .map(|(k, v)| k.len() + v.len() + 4)
            .sum::<usize>()
}

fn write_body(w: &mut Writer<'_>, m: &Message) {
    w.varint(m.id.0);
    w.str(&m.account);
    w.str(&m.to);
    w.opt_str(m.from.as_deref());
    match &m.payload {
        Payload::Text { text, encoding } => {
            w.u8(PAYLOAD_TEXT);
            w.str(text);
            w.u8(encoding_code(*encoding));
        }
        Payload::Binary { data, udh } => {
            w.u8(PAYLOAD_BINARY);
            w.bytes(data);
            match udh {
                Some(u) => {
                    w.u8(1);
                    w.bytes(u);
                }
                None => w.u8(0),
            }
        }
        Payload::Mms {
            subject,
            content_type,
            digest,
            size,
        } => {
            w.u8(PAYLOAD_MMS);
            w.opt_str(subject.as_deref());
            w.str(content_type);
            w.0.extend_from_slice(digest);
            w.varint(*size);
        }
    }
    w.u8(kind_code(m.kind));
    w.u8(m.lane.as_byte());
    w.str(&m.channel);
    w.opt_u64(m.not_before_ms);
    w.opt_u64(m.expires_at_ms);
    w.opt_str(m.window.as_deref());
    w.opt_str(m.client_ref.as_deref());
    w.opt_str(m.callback_url.as_deref());
    w.varint(m.tags.len() as u64);
    for (k, v) in &m.tags {
        w.str(k);
        w.str(v);
    }
    w.varint(m.created_ms);
}

fn write_state(w: &mut Writer<'_>, m: &Message) {
    w.u8(state_code(m.state));
    w.varint(u64::from(m.attempts));
    w.varint(m.parts.len() as u64);
    for p in &m.parts {
        w.varint(u64::from(p.seq));
        w.opt_str(p.center_id.as_deref());
        w.u8(part_state_code(p.state));
    }
    w.varint(m.receipts.len() as u64);
    for r in &m.receipts {
        w.varint(u64::from(r.part));
        w.str(&r.stat);
        w.str(&r.err);
        w.varint(r.at_ms);
    }
    w.opt_u64(m.submitted_ms);
    w.opt_u64(m.done_ms);
    w.varint(m.due_ms);
    w.opt_u64(m.lease_until_ms);
}

// ---- reader ----

/// Bounds-checked cursor over a record.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    pub(crate) const fn new(buf: &'a [u8]) -> Self {
        Self { buf, at: 0 }
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        let b = *self.buf.get(self.at).ok_or(DecodeError::Truncated)?;
        self.at += 1;
        Ok(b)
    }

    pub(crate) fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            let bits = u64::from(b & 0x7F);
            if shift == 63 && bits > 1 {
                return Err(DecodeError::BadVarint);
            }
            v |= bits << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(DecodeError::BadVarint)
    }

    fn small<T: TryFrom<u64>>(&mut self, field: &'static str) -> Result<T, DecodeError> {
        T::try_from(self.varint()?).map_err(|_| DecodeError::Range(field))
    }

    /// A count of items that each take at least `min_item` bytes, checked against what is
    /// left so a corrupt count cannot make us allocate gigabytes.
    fn count(&mut self, min_item: usize) -> Result<usize, DecodeError> {
        let n: usize = self.small("count")?;
        if n.saturating_mul(min_item) > self.buf.len() - self.at {
            return Err(DecodeError::Truncated);
        }
        Ok(n)
    }

    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n: usize = self.small("length")?;
        let end = self.at.checked_add(n).ok_or(DecodeError::Truncated)?;
        let s = self.buf.get(self.at..end).ok_or(DecodeError::Truncated)?;
        self.at = end;
        Ok(s)
    }

    /// A fixed 32-byte digest (no length prefix).
    fn digest(&mut self) -> Result<[u8; 32], DecodeError> {
        let end = self.at.checked_add(32).ok_or(DecodeError::Truncated)?;
        let s = self.buf.get(self.at..end).ok_or(DecodeError::Truncated)?;
        self.at = end;
        <[u8; 32]>::try_from(s).map_err(|_| DecodeError::Truncated)
    }

    pub(crate) fn str(&mut self) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.bytes()?).map_err(|_| DecodeError::BadUtf8)
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        self.str().map(str::to_owned)
    }

    /// A short text (a status word, an error code): inline up to 24 bytes, no allocation.
    fn compact(&mut self) -> Result<CompactString, DecodeError> {
        self.str().map(CompactString::from)
    }

    fn flag(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            code => Err(DecodeError::BadCode { field, code }),
        }
    }

    fn opt_string(&mut self, field: &'static str) -> Result<Option<String>, DecodeError> {
        if self.flag(field)? {
            self.string().map(Some)
        } else {
            Ok(None)
        }
    }

    fn opt_compact(&mut self, field: &'static str) -> Result<Option<CompactString>, DecodeError> {
        if self.flag(field)? {
            self.compact().map(Some)
        } else {
            Ok(None)
        }
    }

    fn opt_u64(&mut self, field: &'static str) -> Result<Option<u64>, DecodeError> {
        if self.flag(field)? {
            self.varint().map(Some)
        } else {
            Ok(None)
        }
    }

    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        match self.buf.len() - self.at {
            0 => Ok(()),
            n => Err(DecodeError::Trailing(n)),
        }
    }
}

/// A decoded body record.
pub(crate) struct Body {
    /// The message; its state fields are placeholders unless `whole`.
    pub(crate) message: Message,
    /// A record that carried the state too (legacy JSON, or [`BODY_V2`]): used when no state
    /// record exists.
    pub(crate) whole: bool,
}

/// Decodes a body record (current binary format, or a legacy JSON whole message).
pub(crate) fn decode_body(v: &[u8]) -> Result<Body, DecodeError> {
    match v.first() {
        Some(&BODY_V1) => {
            let mut r = Reader::new(v);
            r.u8()?; // version
            let message = read_body(&mut r)?;
            r.finish()?;
            Ok(Body {
                message,
                whole: false,
            })
        }
        Some(&BODY_V2) => {
            let mut r = Reader::new(v);
            r.u8()?; // version
            let mut message = read_body(&mut r)?;
            decode_state_into(&mut message, &v[r.at..])?;
            Ok(Body {
                message,
                whole: true,
            })
        }
        Some(&JSON) => serde_json::from_slice(v)
            .map(|message| Body {
                message,
                whole: true,
            })
            .map_err(|e| DecodeError::Json(e.to_string())),
        Some(&other) => Err(DecodeError::Version(other)),
        None => Err(DecodeError::Truncated),
    }
}

/// Reads the body fields (after the version byte), leaving the reader after them.
fn read_body(r: &mut Reader<'_>) -> Result<Message, DecodeError> {
    let id = MessageId(r.varint()?);
    // Names and addresses inline (`CompactString`): a lease decodes every body it takes.
    let account = r.compact()?;
    let to = r.compact()?;
    let from = r.opt_compact("from")?;
    let payload = match r.u8()? {
        PAYLOAD_TEXT => Payload::Text {
            text: r.string()?,
            encoding: encoding_from(r.u8()?)?,
        },
        PAYLOAD_BINARY => Payload::Binary {
            data: r.bytes()?.to_vec(),
            udh: if r.flag("udh")? {
                Some(r.bytes()?.to_vec())
            } else {
                None
            },
        },
        PAYLOAD_MMS => Payload::Mms {
            subject: r.opt_string("subject")?,
            content_type: r.string()?,
            digest: r.digest()?,
            size: r.varint()?,
        },
        code => {
            return Err(DecodeError::BadCode {
                field: "payload",
                code,
            });
        }
    };
    let kind = kind_from(r.u8()?)?;
    let lane = lane_from(r.u8()?)?;
    let channel = r.compact()?;
    let not_before_ms = r.opt_u64("not_before")?;
    let expires_at_ms = r.opt_u64("expires_at")?;
    let window = r.opt_string("window")?;
    let client_ref = r.opt_string("client_ref")?;
    let callback_url = r.opt_string("callback_url")?;
    let n = r.count(2)?;
    let mut tags = BTreeMap::new();
    for _ in 0..n {
        let k = r.string()?;
        let v = r.string()?;
        tags.insert(k, v);
    }
    let created_ms = r.varint()?;
    Ok(Message {
        id,
        account,
        to,
        from,
        payload,
        kind,
        lane,
        channel,
        not_before_ms,
        expires_at_ms,
        window,
        client_ref,
        callback_url,
        tags,
        // Placeholders until the state record is applied.
        state: MessageState::Queued,
        attempts: 0,
        parts: Vec::new(),
        receipts: Vec::new(),
        created_ms,
        submitted_ms: None,
        done_ms: None,
        due_ms: created_ms,
        lease_until_ms: None,
    })
}

/// Decodes a state record onto `m`, replacing its state fields. `m` is untouched on error.
pub(crate) fn decode_state_into(m: &mut Message, v: &[u8]) -> Result<(), DecodeError> {
    let mut r = Reader::new(v);
    match r.u8()? {
        STATE_V1 => {}
        other => return Err(DecodeError::Version(other)),
    }
    let state = state_from(r.u8()?)?;
    let attempts = r.small("attempts")?;
    let n = r.count(3)?;
    let mut parts = Vec::with_capacity(n);
    for _ in 0..n {
        parts.push(Part {
            seq: r.small("part seq")?,
            center_id: r.opt_compact("center_id")?,
            state: part_state_from(r.u8()?)?,
        });
    }
    let n = r.count(4)?;
    let mut receipts = Vec::with_capacity(n);
    for _ in 0..n {
        receipts.push(Receipt {
            part: r.small("receipt part")?,
            stat: r.compact()?,
            err: r.compact()?,
            at_ms: r.varint()?,
        });
    }
    let submitted_ms = r.opt_u64("submitted")?;
    let done_ms = r.opt_u64("done")?;
    let due_ms = r.varint()?;
    let lease_until_ms = r.opt_u64("lease_until")?;
    r.finish()?;
    m.state = state;
    m.attempts = attempts;
    m.parts = parts;
    m.receipts = receipts;
    m.submitted_ms = submitted_ms;
    m.done_ms = done_ms;
    m.due_ms = due_ms;
    m.lease_until_ms = lease_until_ms;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Message {
        let mut m = Message::new(
            MessageId(0x0123_4567_89AB_CDEF),
            "acme",
            "+8613800138000",
            Payload::Text {
                text: "héllo ✓".into(),
                encoding: EncodingHint::Ucs2,
            },
            "smsc1",
            1_700_000_000_123,
            1_700_000_000_000,
        );
        m.from = Some("10690000".into());
        m.client_ref = Some("ref-1".into());
        m.callback_url = Some("https://example.com/dlr".into());
        m.window = Some("08:00-21:00".into());
        m.expires_at_ms = Some(u64::MAX);
        m.tags.insert("campaign".into(), "spring".into());
        m.tags.insert("k".into(), String::new());
        m.kind = MessageKind::WapPush;
        m.lane = Lane::Marketing;
        m.state = MessageState::Sent;
        m.attempts = 3;
        m.parts = vec![
            Part {
                seq: 1,
                center_id: Some("ABC".into()),
                state: PartState::Delivered,
            },
            Part {
                seq: 2,
                center_id: None,
                state: PartState::Pending,
            },
        ];
        m.receipts.push(Receipt {
            part: 1,
            stat: "DELIVRD".into(),
            err: "000".into(),
            at_ms: 5,
        });
        m.submitted_ms = Some(7);
        m.lease_until_ms = Some(0);
        m
    }

    #[test]
    fn a_body_with_its_first_state_reads_whole_and_yields_to_a_state_record() {
        let m = sample();
        let b = decode_body(&encode_body_with_state(&m)).unwrap();
        assert!(b.whole);
        assert_eq!(b.message, m);
        let mut later = m.clone();
        later.state = MessageState::Delivered;
        later.done_ms = Some(99);
        assert_eq!(
            decode_message(&encode_body_with_state(&m), &encode_state(&later)).unwrap(),
            later
        );
        // Damage inside the embedded state is caught like any other.
        let mut cut = encode_body_with_state(&m);
        cut.pop();
        assert!(decode_body(&cut).is_err());
    }

    /// Body + state, the way the store reads a message back.
    fn decode_message(body: &[u8], state: &[u8]) -> Result<Message, DecodeError> {
        let mut b = decode_body(body)?;
        decode_state_into(&mut b.message, state)?;
        Ok(b.message)
    }

    #[test]
    fn round_trips_every_field() {
        let m = sample();
        let (b, st) = (encode_body(&m), encode_state(&m));
        assert_eq!(b[0], BODY_V1);
        assert_eq!(st[0], STATE_V1);
        assert!(!decode_body(&b).unwrap().whole);
        assert_eq!(decode_message(&b, &st).unwrap(), m);
        let mut bin = m.clone();
        bin.payload = Payload::Binary {
            data: vec![0, 1, 0xFF],
            udh: Some(vec![5, 0, 3]),
        };
        assert_eq!(
            decode_message(&encode_body(&bin), &encode_state(&bin)).unwrap(),
            bin
        );
        bin.payload = Payload::Binary {
            data: Vec::new(),
            udh: None,
        };
        bin.parts.clear();
        bin.receipts.clear();
        bin.submitted_ms = None;
        assert_eq!(
            decode_message(&encode_body(&bin), &encode_state(&bin)).unwrap(),
            bin
        );
    }

    #[test]
    fn mms_payload_round_trips() {
        let mut m = sample();
        m.kind = MessageKind::Mms;
        for subject in [Some("Spring sale ✓".to_owned()), None] {
            m.payload = Payload::Mms {
                subject,
                content_type: "multipart/related; boundary=\"b\"".into(),
                digest: std::array::from_fn(|i| u8::try_from(i).unwrap_or(0)),
                size: 307_200,
            };
            let b = encode_body(&m);
            assert_eq!(decode_message(&b, &encode_state(&m)).unwrap(), m);
            for n in 1..b.len() {
                assert!(decode_body(&b[..n]).is_err(), "mms body prefix {n} decoded");
            }
        }
    }

    /// A body record as this format wrote it before MMS payloads existed (bytes fixed here,
    /// not produced by the current encoder): adding payload code 2 must leave it readable.
    #[test]
    fn decodes_a_text_record_written_before_mms() {
        let old: &[u8] = &[
            BODY_V1,
            0x07, // id 7
            1,
            b'a', // account "a"
            3,
            b'1',
            b'2',
            b'3', // to "123"
            0,    // no from
            PAYLOAD_TEXT,
            2,
            b'h',
            b'i',
            0, // text "hi", auto
            0,
            1, // kind sms, lane notification
            1,
            b'c', // channel "c"
            0,
            0,
            0,
            0,
            0,    // not_before, expires_at, window, client_ref, callback_url
            0,    // no tags
            0x05, // created 5
        ];
        let m = decode_body(old).unwrap().message;
        assert_eq!(m.id, MessageId(7));
        assert_eq!(
            m.payload,
            Payload::Text {
                text: "hi".into(),
                encoding: EncodingHint::Auto
            }
        );
        assert_eq!(
            (m.account.as_str(), m.channel.as_str(), m.created_ms),
            ("a", "c", 5)
        );
    }

    #[test]
    fn reads_legacy_json_records_whole() {
        let m = sample();
        let json = serde_json::to_vec(&m).unwrap();
        let b = decode_body(&json).unwrap();
        assert!(b.whole);
        assert_eq!(b.message, m);
        // A later state record overrides the JSON record's state.
        let mut later = m.clone();
        later.state = MessageState::Delivered;
        later.done_ms = Some(99);
        assert_eq!(decode_message(&json, &encode_state(&later)).unwrap(), later);
    }

    #[test]
    fn rejects_unknown_versions_and_damage() {
        let m = sample();
        let (b, st) = (encode_body(&m), encode_state(&m));
        let mut v2 = b.clone();
        v2[0] = 2;
        assert_eq!(decode_body(&v2).err(), Some(DecodeError::Version(2)));
        let mut s2 = st.clone();
        s2[0] = 9;
        let mut target = m.clone();
        assert_eq!(
            decode_state_into(&mut target, &s2),
            Err(DecodeError::Version(9))
        );
        assert_eq!(target, m, "untouched on error");
        assert_eq!(decode_body(&[]).err(), Some(DecodeError::Truncated));
        let mut trailing = b.clone();
        trailing.push(0);
        assert_eq!(decode_body(&trailing).err(), Some(DecodeError::Trailing(1)));
        // Every truncation fails cleanly.
        for n in 1..b.len() {
            assert!(decode_body(&b[..n]).is_err(), "body prefix {n} decoded");
        }
        for n in 0..st.len() {
            assert!(
                decode_state_into(&mut target, &st[..n]).is_err(),
                "state prefix {n} decoded"
            );
        }
    }

    #[test]
    fn varints_reject_overflow() {
        let mut r = Reader::new(&[0xFF; 11]);
        assert_eq!(r.varint(), Err(DecodeError::BadVarint));
        let mut buf = Vec::new();
        Writer(&mut buf).varint(u64::MAX);
        assert_eq!(Reader::new(&buf).varint(), Ok(u64::MAX));
        // A part count of 2^28 with nothing behind it is refused before allocating.
        let huge_count = [STATE_V1, 0, 0, 0x80, 0x80, 0x80, 0x80, 0x01];
        assert_eq!(
            decode_state_into(&mut sample(), &huge_count),
            Err(DecodeError::Truncated)
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(256))]
        /// Arbitrary bytes after the version byte never panic either decoder.
        #[test]
        fn arbitrary_bytes_never_panic(tail in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let mut v = vec![BODY_V1];
            v.extend_from_slice(&tail);
            let _ = decode_body(&v);
            v[0] = STATE_V1;
            let _ = decode_state_into(&mut sample(), &v);
        }

        /// Overwriting any byte of a valid record never panics the decoders.
        #[test]
        fn damaged_records_never_panic(at in 0usize..120, to in proptest::num::u8::ANY) {
            let m = sample();
            let mut b = encode_body(&m);
            let i = at % b.len();
            b[i] = to;
            let _ = decode_body(&b);
            let mut st = encode_state(&m);
            let i = at % st.len();
            st[i] = to;
            let _ = decode_state_into(&mut sample(), &st);
        }
    }
}

//! The records the store keeps: messages, their parts and receipts, the receipt events put
//! in a client's outbox, and the replies (MO) put in its MO outbox.
//!
//! Times are milliseconds since the Unix epoch (`u64`): the store never reads a clock, callers
//! pass `now`. Message records are stored in the binary format of `codec.rs`; the serde
//! derives are the HTTP/JSON form (and read message records written before that format).

use std::collections::BTreeMap;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use super::id::MessageId;

/// What kind of content a message carries; routes can differ per kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// Plain SMS.
    #[default]
    Sms,
    /// MMS via MM7.
    Mms,
    /// WAP Push (SI/SL over 8-bit SMS).
    WapPush,
}

/// Priority lane; each (channel, lane) has its own ready queue.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum Lane {
    /// One-time passwords: served first.
    Otp,
    /// Transactional notices (the default).
    #[default]
    Notification,
    /// Bulk marketing: served last.
    Marketing,
}

impl Lane {
    /// All lanes, highest priority first.
    pub const ALL: [Self; 3] = [Self::Otp, Self::Notification, Self::Marketing];

    /// The byte used in index keys (lower sorts first).
    pub const fn as_byte(self) -> u8 {
        match self {
            Self::Otp => 0,
            Self::Notification => 1,
            Self::Marketing => 2,
        }
    }

    /// The lane's name in config, JSON and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Otp => "otp",
            Self::Notification => "notification",
            Self::Marketing => "marketing",
        }
    }
}

/// Encoding hint from the client (`auto` lets the gateway choose).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum EncodingHint {
    /// Cheapest encoding that represents the text.
    #[default]
    Auto,
    /// GSM 03.38 7-bit.
    Gsm7,
    /// ISO-8859-1.
    Latin1,
    /// UCS-2 / UTF-16.
    Ucs2,
    /// GBK (CMPP Msg_Fmt 15).
    Gbk,
}

/// The content of a message as the client gave it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Payload {
    /// UTF-8 text, encoded and split by the channel.
    Text {
        /// The text.
        text: String,
        /// Client's encoding hint.
        #[serde(default)]
        encoding: EncodingHint,
    },
    /// Raw 8-bit data with an optional user data header.
    Binary {
        /// The data (stored as hex).
        #[serde(with = "hex_bytes")]
        data: Vec<u8>,
        /// User data header, sent with esm_class UDHI (stored as hex).
        #[serde(default, skip_serializing_if = "Option::is_none", with = "hex_opt")]
        udh: Option<Vec<u8>>,
    },
    /// A multimedia message: the record keeps only a reference to its content (the MIME body
    /// lives once per distinct digest in the content store, however many recipients share
    /// it), so a queued MMS costs about as much as a queued SMS.
    Mms {
        /// Subject line.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        subject: Option<String>,
        /// `Content-Type` of the body (`multipart/related; boundary=…; type=…; start=…`).
        content_type: String,
        /// SHA-256 of the body: the content store's key (hex in JSON).
        #[serde(with = "hex_digest")]
        digest: [u8; 32],
        /// Body size in bytes.
        size: u64,
    },
}

impl Payload {
    /// The content digest an MMS payload references (its content store entry).
    pub const fn content_digest(&self) -> Option<&[u8; 32]> {
        match self {
            Self::Mms { digest, .. } => Some(digest),
            Self::Text { .. } | Self::Binary { .. } => None,
        }
    }
}

/// Life-cycle state of a message (the HTTP API's `state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageState {
    /// Due now, waiting in the ready queue.
    Queued,
    /// Waiting in the ready queue for a later due time.
    Scheduled,
    /// Leased by a channel worker.
    InFlight,
    /// Every part accepted by the center; waiting for receipts.
    Sent,
    /// Final: delivered.
    Delivered,
    /// Final: the center could not deliver.
    Undeliverable,
    /// Final: not sent (or not delivered) before `expires_at`.
    Expired,
    /// Final: refused by the center.
    Rejected,
    /// Final: the gateway gave up (retries exhausted, no route).
    Failed,
    /// Final: stopped by its account (`POST /v1/messages/cancel`) before it was submitted
    /// to a center.
    Cancelled,
}

impl MessageState {
    /// The state's name as the HTTP API, metric labels and the campaign service spell it (the
    /// serde name).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Scheduled => "scheduled",
            Self::InFlight => "in_flight",
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::Undeliverable => "undeliverable",
            Self::Expired => "expired",
            Self::Rejected => "rejected",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// The DLR-style status word used when the gateway itself ends a message in this state.
    pub const fn stat_word(self) -> &'static str {
        match self {
            Self::Delivered => "DELIVRD",
            Self::Undeliverable => "UNDELIV",
            Self::Expired => "EXPIRED",
            Self::Rejected => "REJECTD",
            Self::Failed => "FAILED",
            Self::Cancelled => "CANCELD",
            Self::Queued | Self::Scheduled | Self::InFlight | Self::Sent => "ENROUTE",
        }
    }

    /// Final states end the life cycle: a receipt is queued and the record becomes purgeable.
    pub const fn is_final(self) -> bool {
        matches!(
            self,
            Self::Delivered
                | Self::Undeliverable
                | Self::Expired
                | Self::Rejected
                | Self::Failed
                | Self::Cancelled
        )
    }

    /// Every final state ([`Self::is_final`]), e.g. for a metric handle per state.
    pub const FINAL: [Self; 6] = [
        Self::Delivered,
        Self::Undeliverable,
        Self::Expired,
        Self::Rejected,
        Self::Failed,
        Self::Cancelled,
    ];
}

/// State of one part (segment) of a message at the center.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PartState {
    /// Not yet accepted by the center.
    #[default]
    Pending,
    /// Accepted; the center gave it an id.
    Submitted,
    /// Final: delivered.
    Delivered,
    /// Final: undeliverable.
    Undeliverable,
    /// Final: expired at the center.
    Expired,
    /// Final: rejected.
    Rejected,
    /// Final: other failure.
    Failed,
}

impl PartState {
    /// Whether this part's outcome is known.
    pub const fn is_final(self) -> bool {
        !matches!(self, Self::Pending | Self::Submitted)
    }

    /// The message state this final part state contributes.
    pub const fn as_message_state(self) -> MessageState {
        match self {
            Self::Delivered => MessageState::Delivered,
            Self::Undeliverable => MessageState::Undeliverable,
            Self::Expired => MessageState::Expired,
            Self::Rejected => MessageState::Rejected,
            Self::Pending | Self::Submitted | Self::Failed => MessageState::Failed,
        }
    }
}

/// One part of a (possibly concatenated) message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Part {
    /// 1-based segment number.
    pub seq: u16,
    /// Id the center gave this part (normalised by the caller), once submitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub center_id: Option<CompactString>,
    /// Part state.
    #[serde(default)]
    pub state: PartState,
}

/// A delivery receipt as recorded on the message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// Part it concerns (1-based; 0 = the whole message, e.g. a gateway-made EXPIRED).
    pub part: u16,
    /// Status word (`DELIVRD`, `UNDELIV`, `EXPIRED`, …).
    pub stat: CompactString,
    /// Error code text (`000`).
    pub err: CompactString,
    /// When it arrived, ms.
    pub at_ms: u64,
}

/// A message as stored. `channel`, `due_ms` and `lease_until_ms` are the store's bookkeeping,
/// the rest is what the client sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// Gateway id.
    pub id: MessageId,
    /// Owning account (no NUL bytes).
    pub account: CompactString,
    /// Destination address.
    pub to: CompactString,
    /// Source address (after the account default was applied).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<CompactString>,
    /// Content.
    pub payload: Payload,
    /// Content kind.
    #[serde(default)]
    pub kind: MessageKind,
    /// Priority lane.
    #[serde(default)]
    pub lane: Lane,
    /// Channel chosen by the router (no NUL bytes).
    pub channel: CompactString,
    /// Do not send before, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before_ms: Option<u64>,
    /// Fail with `EXPIRED` if not sent by then, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<u64>,
    /// Allowed local-time window, `"HH:MM-HH:MM"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// Client idempotency key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ref: Option<String>,
    /// Where receipts go (else the account default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    /// Opaque labels echoed in receipts.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Current state.
    pub state: MessageState,
    /// Submit attempts so far (incremented on every requeue).
    #[serde(default)]
    pub attempts: u32,
    /// Parts, filled in when the channel splits and submits the message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<Part>,
    /// Receipts received.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub receipts: Vec<Receipt>,
    /// When the gateway accepted it, ms.
    pub created_ms: u64,
    /// When every part was accepted by the center, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitted_ms: Option<u64>,
    /// When it reached a final state, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done_ms: Option<u64>,
    /// Time the ready index files it under (when it may next be sent), ms.
    pub due_ms: u64,
    /// Lease expiry while in flight, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_until_ms: Option<u64>,
}

impl Message {
    /// A new message in the ready queue of `channel`, due at `due_ms`; `now_ms` decides
    /// between `queued` and `scheduled`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: MessageId,
        account: impl Into<CompactString>,
        to: impl Into<CompactString>,
        payload: Payload,
        channel: impl Into<CompactString>,
        due_ms: u64,
        now_ms: u64,
    ) -> Self {
        Self {
            id,
            account: account.into(),
            to: to.into(),
            from: None,
            payload,
            kind: MessageKind::Sms,
            lane: Lane::Notification,
            channel: channel.into(),
            not_before_ms: None,
            expires_at_ms: None,
            window: None,
            client_ref: None,
            callback_url: None,
            tags: BTreeMap::new(),
            state: if due_ms > now_ms {
                MessageState::Scheduled
            } else {
                MessageState::Queued
            },
            attempts: 0,
            parts: Vec::new(),
            receipts: Vec::new(),
            created_ms: now_ms,
            submitted_ms: None,
            done_ms: None,
            due_ms,
            lease_until_ms: None,
        }
    }

    /// Waiting in its ready queue (queued or scheduled, not leased): a message in this state
    /// has a ready key (or, for a paused account, a parked entry standing for one).
    pub const fn waits_in_ready_queue(&self) -> bool {
        matches!(self.state, MessageState::Queued | MessageState::Scheduled)
            && self.lease_until_ms.is_none()
    }
}

/// The receipt event put in a client's outbox when a message reaches a final state: the JSON
/// body of the receipt webhook in docs/http-api.md.
///
/// Every ended message makes one inside the store writer, so its short fields are held
/// inline (the id as its number, status words and timestamps as `CompactString`): a heap
/// allocation each was five a message, each a likely cache miss on the writer's core.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptEvent {
    /// Gateway id (serialised in its 26-char text form).
    pub id: MessageId,
    /// Client idempotency key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ref: Option<String>,
    /// Destination.
    pub to: CompactString,
    /// Final state.
    pub state: MessageState,
    /// Status word of the deciding receipt.
    pub stat: CompactString,
    /// Error code of the deciding receipt.
    pub err: CompactString,
    /// Number of parts.
    pub parts: u16,
    /// RFC 3339 time every part was accepted, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitted_at: Option<CompactString>,
    /// RFC 3339 time of the final state.
    pub done_at: CompactString,
    /// Where to POST it (message callback, else none: the account default applies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    /// Client labels.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// The message's kind. Not in the webhook body (stripped by the receipt layer): it is
    /// for in-process subscribers, e.g. the public rules counting contacts per channel.
    #[serde(default)]
    pub kind: MessageKind,
    /// The message's lane. Not in the webhook body, as `kind`.
    #[serde(default)]
    pub lane: Lane,
    /// For a message submitted over SMPP asking for a receipt ([`SMPP_RECEIPT_TAG`]): what
    /// its deliver_sm carries of the message, so the SMPP server does not read the message
    /// back for every receipt (that read was 6 % of the gateway's CPU with ESMEs submitting
    /// at full speed). Absent for every other message, and in entries written before it
    /// existed (the server then reads the message). Not in the webhook body, as `kind`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<ReceiptOriginal>,
}

/// Tag a message submitted over SMPP with registered_delivery carries (value: the SMPP
/// flag, `1` = every final state, `2` = failures only). Its receipt goes back as deliver_sm
/// on a receiver bind of the account, and its receipt event carries a [`ReceiptOriginal`];
/// without it, a receipt takes the webhook path.
pub const SMPP_RECEIPT_TAG: &str = "smpp_registered_delivery";

/// What a receipt's deliver_sm carries of the message it reports on (SMPP's receipt format:
/// the original sender as destination, the first 20 characters as `text:`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptOriginal {
    /// The message's sender, if it named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<CompactString>,
    /// Its first 20 characters; empty for a message without text.
    #[serde(default)]
    pub text: String,
}

impl ReceiptOriginal {
    /// Characters of the text a receipt carries.
    pub const TEXT_CHARS: usize = 20;

    /// What a receipt of `m` carries of it.
    #[must_use]
    pub fn of(m: &Message) -> Self {
        Self {
            from: m.from.clone(),
            text: match &m.payload {
                Payload::Text { text, .. } => text.chars().take(Self::TEXT_CHARS).collect(),
                _ => String::new(),
            },
        }
    }
}

/// A mobile-originated reply: the JSON body of the MO webhook in docs/http-api.md, and what
/// an account's MO outbox keeps until the webhook answers 2xx.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoEvent {
    /// Owning account, when a sender prefix matched. Not in the JSON: the outbox key holds it.
    #[serde(skip)]
    pub account: Option<String>,
    /// The handset.
    pub from: String,
    /// Our number (+ extension).
    pub to: String,
    /// Decoded text.
    pub text: String,
    /// RFC 3339 arrival time.
    pub received_at: String,
}

/// One entry of a client's receipt (or MO) outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxEntry {
    /// Per-account sequence number, increasing.
    pub seq: u64,
    /// The JSON: a [`ReceiptEvent`] (receipt outbox) or a [`MoEvent`] (MO outbox). Empty
    /// when `event` is given and the entry has not reached the engine yet: its JSON was
    /// never made (the writer encodes an entry only when a durable commit writes it), so
    /// read `event` first.
    pub body: Vec<u8>,
    /// The receipt event `body` encodes, when the entry was read from the writer's memory of
    /// the newest entries instead of the engine (then nobody needs to decode `body`). Always
    /// `None` for MO entries.
    pub event: Option<std::sync::Arc<ReceiptEvent>>,
}

/// Byte strings as lowercase hex in JSON (a JSON number array would triple their size).
mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub(super) fn encode(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    pub(super) fn decode(s: &str) -> Result<Vec<u8>, String> {
        if !s.len().is_multiple_of(2) {
            return Err("odd number of hex digits".into());
        }
        (0..s.len())
            .step_by(2)
            .map(|i| {
                s.get(i..i + 2)
                    .and_then(|p| u8::from_str_radix(p, 16).ok())
                    .ok_or_else(|| format!("invalid hex at {i}"))
            })
            .collect()
    }

    pub(super) fn serialize<S: Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&encode(b))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        decode(&s).map_err(D::Error::custom)
    }
}

/// A 32-byte digest as 64 lowercase hex digits.
pub(crate) mod hex_digest {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub(crate) fn serialize<S: Serializer>(b: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::hex_bytes::encode(b))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        let v = super::hex_bytes::decode(&s).map_err(D::Error::custom)?;
        <[u8; 32]>::try_from(v.as_slice()).map_err(|_| D::Error::custom("digest must be 32 bytes"))
    }
}

/// `Option` form of [`hex_bytes`].
mod hex_opt {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    #[allow(clippy::ref_option)] // serde's `with` passes `&Option<T>`
    pub(super) fn serialize<S: Serializer>(b: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match b {
            Some(b) => s.serialize_some(&super::hex_bytes::encode(b)),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<std::borrow::Cow<'de, str>>::deserialize(d)?
            .map(|s| super::hex_bytes::decode(&s).map_err(D::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_final_list_holds_final_states_once_each() {
        // A final state missing here only costs `receipt::FinalCounts` a lookup per receipt.
        for (i, s) in MessageState::FINAL.iter().enumerate() {
            assert!(s.is_final(), "{s:?}");
            assert!(!MessageState::FINAL[..i].contains(s), "{s:?} twice");
        }
    }

    #[test]
    fn binary_payload_round_trips_as_hex() {
        let p = Payload::Binary {
            data: vec![0x00, 0xab, 0xff],
            udh: Some(vec![0x06, 0x05]),
        };
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(json, r#"{"type":"binary","data":"00abff","udh":"0605"}"#);
        assert_eq!(serde_json::from_str::<Payload>(&json).unwrap(), p);
        let no_udh = Payload::Binary {
            data: vec![1],
            udh: None,
        };
        let json = serde_json::to_string(&no_udh).unwrap();
        assert_eq!(serde_json::from_str::<Payload>(&json).unwrap(), no_udh);
        assert!(serde_json::from_str::<Payload>(r#"{"type":"binary","data":"0"}"#).is_err());
        assert!(serde_json::from_str::<Payload>(r#"{"type":"binary","data":"zz"}"#).is_err());
    }

    #[test]
    fn mms_payload_shows_its_digest_as_hex() {
        let p = Payload::Mms {
            subject: Some("Hi".into()),
            content_type: "multipart/related".into(),
            digest: [0xab; 32],
            size: 7,
        };
        let json = serde_json::to_string(&p).unwrap();
        assert!(json.contains(&"ab".repeat(32)), "{json}");
        assert_eq!(serde_json::from_str::<Payload>(&json).unwrap(), p);
        assert_eq!(p.content_digest(), Some(&[0xab; 32]));
        let short = json.replace(&"ab".repeat(32), "abab");
        assert!(serde_json::from_str::<Payload>(&short).is_err());
    }
}

//! Messages → SubmitReqs: the part the worker queues for one recipient, the HTTP body one
//! request carries for one or more of them, and the key a recipient's delivery reports are
//! correlated under.
//!
//! # Wire format of a request
//! ```text
//! POST <url>
//! Content-Type: multipart/related; boundary="…"; type="text/xml"; start="<envelope>"
//! SOAPAction: ""
//!
//! --…  Content-Type: text/xml; charset=utf-8      Content-ID: <envelope>   (SubmitReq)
//! --…  Content-Type: <the MMS content's type>     Content-ID: <content>    (SMIL + media)
//! ```
//! The content part is the message's MIME body exactly as the store keeps it (binary
//! transfer encoding: no copy is re-encoded per recipient).
//!
//! # Center ids
//! One SubmitReq gets one MessageID for all its recipients, while the MMSC reports delivery
//! per recipient (DeliveryReportReq carries MessageID and Recipient). So the id stored for a
//! recipient is [`center_id`]`(MessageID, recipient)` = `MessageID/digits of the recipient`
//! (`04031234/8613800138000`), for one recipient as for many, and the inbound side builds the
//! same key from a report. Only digits of a number count, so `+86…` and `86…` meet; an
//! e-mail recipient is compared lower-cased.

use std::sync::Arc;

use sluice_protocols::mm7::mime::{self, MimeError, Part, TransferEncoding};
use sluice_protocols::mm7::soap::{self, Address, SubmitReq};

use crate::channel::egress::{Content, MmsContent, OutboundMessage};

/// One recipient's share of a SubmitReq: what the worker queues and a request task sends
/// (alone, or with other recipients of the same content and sender).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submit {
    /// The recipient, as the message has it.
    pub to: String,
    /// The message's own sender, when it has one (else the channel's `sender`).
    pub from: Option<String>,
    /// The content, shared with every other recipient of it.
    pub content: Arc<MmsContent>,
}

impl Submit {
    /// Whether `other` can ride in the same SubmitReq (same content, same sender).
    #[must_use]
    pub fn joins(&self, other: &Self) -> bool {
        self.content.digest == other.content.digest && self.from == other.from
    }
}

/// Why a message cannot go out on an MM7 channel (it fails; retrying cannot help).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// Text or binary content reached an MM7 channel.
    #[error("an MM7 channel sends only MMS content")]
    NotMms,
    /// The content is larger than the channel's `max_content_bytes`.
    #[error("MMS content of {actual} bytes exceeds the channel's {max} bytes")]
    TooLarge {
        /// Content bytes.
        actual: usize,
        /// The channel's limit.
        max: usize,
    },
}

/// The one part of a message: MM7 sends an MMS whole.
///
/// # Errors
/// [`BuildError`] when the message is not an MMS or too large for the channel.
pub fn build(msg: &OutboundMessage, max_content_bytes: usize) -> Result<Submit, BuildError> {
    let Content::Mms(content) = &msg.content else {
        return Err(BuildError::NotMms);
    };
    if content.body.len() > max_content_bytes {
        return Err(BuildError::TooLarge {
            actual: content.body.len(),
            max: max_content_bytes,
        });
    }
    Ok(Submit {
        to: msg.to.to_string(),
        from: msg.from.as_ref().map(ToString::to_string),
        content: Arc::clone(content),
    })
}

/// The SubmitReq fields a channel sets on every request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitSettings {
    /// MM7 schema namespace sent.
    pub namespace: String,
    /// SenderIdentification/VASPID.
    pub vasp_id: String,
    /// SenderIdentification/VASID.
    pub vas_id: String,
    /// ServiceCode.
    pub service_code: Option<String>,
    /// SenderAddress for messages without a sender.
    pub sender: Option<String>,
    /// DeliveryReport flag.
    pub delivery_report: bool,
    /// ChargedParty.
    pub charged_party: Option<String>,
}

/// One encoded request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The `Content-Type` header (multipart/related with boundary, type and start).
    pub content_type: String,
    /// The body.
    pub body: Vec<u8>,
}

/// Content-ID of the SOAP root part.
pub const ENVELOPE_ID: &str = "envelope";
/// Content-ID of the MMS content part.
pub const CONTENT_ID: &str = "content";

/// Encodes one SubmitReq for `batch` (one or more recipients of one content and sender).
/// `boundary` must not occur in the content (pick a random one; [`MimeError::BoundaryInBody`]
/// says to pick another).
///
/// # Errors
/// [`MimeError`] when the boundary is unusable; an empty batch encodes nothing.
pub fn encode(
    settings: &SubmitSettings,
    transaction_id: &str,
    boundary: &str,
    batch: &[&Submit],
) -> Result<Request, MimeError> {
    let Some(first) = batch.first() else {
        return Err(MimeError::NoOpeningDelimiter);
    };
    let req = SubmitReq {
        transaction_id: transaction_id.to_owned(),
        vaspid: settings.vasp_id.clone(),
        vasid: settings.vas_id.clone(),
        sender_address: first
            .from
            .as_deref()
            .or(settings.sender.as_deref())
            .map(address),
        recipients: batch.iter().map(|s| address(&s.to)).collect(),
        service_code: settings.service_code.clone(),
        linked_id: None,
        delivery_report: Some(settings.delivery_report),
        subject: first.content.subject.clone(),
        charged_party: settings.charged_party.clone(),
        content_id: CONTENT_ID.to_owned(),
    };
    let xml = soap::encode_submit_req(&settings.namespace, &req);
    let content = Part::new(
        &first.content.content_type,
        TransferEncoding::Binary,
        first.content.body.to_vec(),
    )
    .with_content_id(CONTENT_ID);
    let built = mime::build_soap_with_content(boundary, ENVELOPE_ID, xml, content)?;
    Ok(Request {
        content_type: built.content_type,
        body: built.body,
    })
}

/// A terminal address as MM7 writes it: `RFC2822Address` when it has an `@`, else `Number`.
#[must_use]
pub fn address(s: &str) -> Address {
    if s.contains('@') {
        Address::Email(s.to_owned())
    } else {
        Address::Number(s.to_owned())
    }
}

/// The value of an address, whatever its kind.
#[must_use]
pub fn address_value(a: &Address) -> &str {
    match a {
        Address::Number(v) | Address::ShortCode(v) | Address::Email(v) => v,
    }
}

/// The key one recipient's delivery reports are correlated under (see the module doc);
/// empty when the MMSC gave no MessageID, so the answer is not taken as accepted.
#[must_use]
pub fn center_id(message_id: &str, recipient: &str) -> String {
    let message_id = message_id.trim();
    if message_id.is_empty() {
        return String::new();
    }
    format!("{message_id}/{}", recipient_key(recipient))
}

/// A recipient as keys compare it: the digits of a number, an e-mail address lower-cased.
fn recipient_key(recipient: &str) -> String {
    let r = recipient.trim();
    if r.contains('@') {
        return r.to_lowercase();
    }
    // `tel:+86…/TYPE=PLMN` and `+86…` are the same terminal as `86…`.
    let r = r.split('/').next().unwrap_or(r);
    r.chars().filter(char::is_ascii_digit).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content() -> Arc<MmsContent> {
        Arc::new(MmsContent {
            subject: Some("Hi".into()),
            content_type: "multipart/related; boundary=\"inner\"; type=\"application/smil\"".into(),
            body: bytes::Bytes::from_static(
                b"--inner\r\nContent-Type: text/plain\r\n\r\nhello\r\n--inner--\r\n",
            ),
            digest: [7; 32],
        })
    }

    #[test]
    fn center_ids_ignore_number_spelling() {
        assert_eq!(center_id("M1", "+8613800138000"), "M1/8613800138000");
        assert_eq!(
            center_id("M1", "tel:+8613800138000/TYPE=PLMN"),
            center_id("M1", "8613800138000")
        );
        assert_eq!(center_id("M1", "A@B.example"), "M1/a@b.example");
        assert_eq!(center_id(" ", "86"), "");
    }

    #[test]
    fn only_mms_builds() {
        let mut msg = OutboundMessage {
            id: 1,
            attempt: 0,
            from: None,
            to: "+86138".into(),
            content: Content::Text {
                text: "x".into(),
                hint: None,
            },
        };
        assert_eq!(build(&msg, 100), Err(BuildError::NotMms));
        msg.content = Content::Mms(content());
        assert!(matches!(build(&msg, 10), Err(BuildError::TooLarge { .. })));
        assert_eq!(build(&msg, 1000).map(|s| s.to), Ok("+86138".to_owned()));
    }

    #[test]
    fn request_carries_envelope_then_content() {
        let s = Submit {
            to: "+8613800138000".into(),
            from: None,
            content: content(),
        };
        let settings = SubmitSettings {
            namespace: soap::REL_5_MM7_1_0.into(),
            vasp_id: "vasp".into(),
            vas_id: "vas".into(),
            service_code: Some("code".into()),
            sender: Some("10658000".into()),
            delivery_report: true,
            charged_party: None,
        };
        let r = encode(&settings, "t1", "outer-b", &[&s, &s]).expect("encodes");
        let parts = mime::parse(&r.content_type, &r.body).expect("parses");
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].content_id.as_deref(), Some(ENVELOPE_ID));
        assert_eq!(parts[1].body, s.content.body.to_vec());
        let env = soap::decode(&parts[0].body).expect("decodes");
        let soap::Message::SubmitReq(req) = env.message else {
            panic!("not a SubmitReq");
        };
        assert_eq!(req.recipients.len(), 2);
        assert_eq!(req.sender_address, Some(Address::Number("10658000".into())));
        assert_eq!(env.namespace.as_deref(), Some(soap::REL_5_MM7_1_0));
    }
}

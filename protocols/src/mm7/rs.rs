//! The MMSC (MM7 "Relay/Server", RS) side of the MM7 envelopes: what an MMSC sends is encoded
//! here, what only an MMSC reads is decoded here. [`super::soap`] stays the VASP side; both
//! share its writer helpers and its node reader, so an element is spelled in one place.
//!
//! Encoded: SubmitRsp, DeliveryReportReq, DeliverReq, ReadReplyReq, RSErrorRsp and SOAP
//! Faults (with an RSErrorRsp or VASPErrorRsp in `detail`), plus the VASP's ReadReplyRsp,
//! CancelReq, ReplaceReq and VASPErrorRsp, which [`super::soap`] does not write.
//! Decoded by [`decode`]: SubmitReq with every recipient kind (To, Cc, Bcc), ReadReplyReq /
//! Rsp, CancelReq / Rsp, ReplaceReq / Rsp; anything else is [`super::soap::decode`]'s and
//! comes back as [`RsMessage::Other`].
//!
//! Element order is the REL-5 / REL-6 schema's (TS 23.140 §8.7, Annex with the MM7 XML
//! schema); optional elements we do not model are simply not written.

use quick_xml::escape::escape;

use super::soap::{
    self, Address, DeliverReq, DeliveryReportReq, Message, SoapError, Status, SubmitReq, SubmitRsp,
    Tree, address, element, envelope, is_mm7_namespace, mm7_version, parse_nodes, status,
};

/// SOAP 1.1 fault code of a request the sender got wrong (bad envelope, bad content).
pub const FAULT_CLIENT: &str = "env:Client";
/// SOAP 1.1 fault code of a request the receiver could not serve.
pub const FAULT_SERVER: &str = "env:Server";

/// A SubmitReq as the MMSC reads it: every field the VASP side has, plus the Cc and Bcc
/// recipients ([`SubmitReq::recipients`] holds the `To` ones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    pub req: SubmitReq,
    pub cc: Vec<Address>,
    pub bcc: Vec<Address>,
}

impl Submission {
    /// Every recipient, To then Cc then Bcc: one delivery report is due per entry.
    pub fn all_recipients(&self) -> impl Iterator<Item = &Address> {
        self.req.recipients.iter().chain(&self.cc).chain(&self.bcc)
    }
}

/// MMSC → VASP: the recipient read (or deleted) a message sent with ReadReply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadReplyReq {
    pub message_id: String,
    pub recipient: Address,
    pub sender: Address,
    /// When the message was read (xs:dateTime).
    pub time_stamp: String,
    /// Schema enumeration: Indeterminate, Read, Deleted.
    pub mm_status: String,
    pub status_text: Option<String>,
}

/// VASP → MMSC: withdraw a message not yet delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CancelReq {
    pub vaspid: String,
    pub vasid: String,
    pub sender_address: Option<Address>,
    pub message_id: String,
}

/// VASP → MMSC: replace the content of a message not yet retrieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplaceReq {
    pub vaspid: String,
    pub vasid: String,
    pub sender_address: Option<Address>,
    pub message_id: String,
    pub service_code: Option<String>,
    /// The new content part's Content-ID, without `cid:`.
    pub content_id: Option<String>,
}

/// Which error response a Fault's `detail` carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorRsp {
    /// Sent by the MMSC.
    Rs,
    /// Sent by the VASP.
    Vasp,
}

impl ErrorRsp {
    fn element(self) -> &'static str {
        match self {
            Self::Rs => "RSErrorRsp",
            Self::Vasp => "VASPErrorRsp",
        }
    }
}

/// A message decoded by [`decode`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RsMessage {
    SubmitReq(Submission),
    ReadReplyReq(ReadReplyReq),
    ReadReplyRsp(Status),
    CancelReq(CancelReq),
    CancelRsp(Status),
    ReplaceReq(ReplaceReq),
    ReplaceRsp(Status),
    /// Every other kind, as [`soap::decode`] reads it.
    Other(Message),
}

/// A decoded envelope (see [`soap::Envelope`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RsEnvelope {
    pub transaction_id: Option<String>,
    pub namespace: Option<String>,
    pub message: RsMessage,
}

fn open(kind: &str, ns: &str) -> String {
    let mut b = format!("<{kind} xmlns=\"{}\">", escape(ns));
    element(&mut b, "MM7Version", mm7_version(ns));
    b
}

fn sender_identification(
    b: &mut String,
    vaspid: &str,
    vasid: &str,
    sender_address: Option<&Address>,
) {
    b.push_str("<SenderIdentification>");
    element(b, "VASPID", vaspid);
    element(b, "VASID", vasid);
    if let Some(a) = sender_address {
        address(b, "SenderAddress", a);
    }
    b.push_str("</SenderIdentification>");
}

fn content(b: &mut String, content_id: &str) {
    b.push_str(&format!("<Content href=\"cid:{}\"/>", escape(content_id)));
}

/// A response that is MM7Version and Status only (the schema's GenericResponseType).
fn generic_rsp(kind: &str, ns: &str, transaction_id: &str, st: &Status) -> String {
    let mut b = open(kind, ns);
    status(&mut b, st);
    b.push_str(&format!("</{kind}>"));
    envelope(ns, transaction_id, &b)
}

/// The MMSC's answer to a SubmitReq.
pub fn encode_submit_rsp(ns: &str, transaction_id: &str, rsp: &SubmitRsp) -> String {
    let mut b = open("SubmitRsp", ns);
    status(&mut b, &rsp.status);
    if let Some(id) = &rsp.message_id {
        element(&mut b, "MessageID", id);
    }
    b.push_str("</SubmitRsp>");
    envelope(ns, transaction_id, &b)
}

/// A delivery report for one recipient. The schema requires Recipient, Sender and Date;
/// `None`s are left out (and such an envelope is then not schema-valid).
pub fn encode_delivery_report_req(
    ns: &str,
    transaction_id: &str,
    req: &DeliveryReportReq,
) -> String {
    let mut b = open("DeliveryReportReq", ns);
    element(&mut b, "MessageID", &req.message_id);
    if let Some(a) = &req.recipient {
        address(&mut b, "Recipient", a);
    }
    if let Some(a) = &req.sender {
        address(&mut b, "Sender", a);
    }
    if let Some(d) = &req.date {
        element(&mut b, "Date", d);
    }
    element(&mut b, "MMStatus", &req.mm_status);
    if let Some(t) = &req.status_text {
        element(&mut b, "StatusText", t);
    }
    b.push_str("</DeliveryReportReq>");
    envelope(ns, transaction_id, &b)
}

/// A mobile-originated MMS for the VASP; the content travels as the multipart part whose
/// Content-ID is `req.content_id`. The schema requires a Sender.
pub fn encode_deliver_req(ns: &str, transaction_id: &str, req: &DeliverReq) -> String {
    let mut b = open("DeliverReq", ns);
    if let Some(v) = &req.linked_id {
        element(&mut b, "LinkedID", v);
    }
    if let Some(a) = &req.sender {
        address(&mut b, "Sender", a);
    }
    if !req.recipients.is_empty() {
        b.push_str("<Recipients>");
        for to in &req.recipients {
            address(&mut b, "To", to);
        }
        b.push_str("</Recipients>");
    }
    if let Some(v) = &req.subject {
        element(&mut b, "Subject", v);
    }
    if let Some(id) = &req.content_id {
        content(&mut b, id);
    }
    b.push_str("</DeliverReq>");
    envelope(ns, transaction_id, &b)
}

/// A read-reply report for the VASP.
pub fn encode_read_reply_req(ns: &str, transaction_id: &str, req: &ReadReplyReq) -> String {
    let mut b = open("ReadReplyReq", ns);
    element(&mut b, "MessageID", &req.message_id);
    address(&mut b, "Recipient", &req.recipient);
    address(&mut b, "Sender", &req.sender);
    element(&mut b, "TimeStamp", &req.time_stamp);
    element(&mut b, "MMStatus", &req.mm_status);
    if let Some(t) = &req.status_text {
        element(&mut b, "StatusText", t);
    }
    b.push_str("</ReadReplyReq>");
    envelope(ns, transaction_id, &b)
}

/// The VASP's answer to a ReadReplyReq.
pub fn encode_read_reply_rsp(ns: &str, transaction_id: &str, st: &Status) -> String {
    generic_rsp("ReadReplyRsp", ns, transaction_id, st)
}

/// VASP → MMSC: cancel `req.message_id`.
pub fn encode_cancel_req(ns: &str, transaction_id: &str, req: &CancelReq) -> String {
    let mut b = open("CancelReq", ns);
    sender_identification(&mut b, &req.vaspid, &req.vasid, req.sender_address.as_ref());
    element(&mut b, "MessageID", &req.message_id);
    b.push_str("</CancelReq>");
    envelope(ns, transaction_id, &b)
}

/// The MMSC's answer to a CancelReq.
pub fn encode_cancel_rsp(ns: &str, transaction_id: &str, st: &Status) -> String {
    generic_rsp("CancelRsp", ns, transaction_id, st)
}

/// VASP → MMSC: replace the content of `req.message_id`.
pub fn encode_replace_req(ns: &str, transaction_id: &str, req: &ReplaceReq) -> String {
    let mut b = open("ReplaceReq", ns);
    sender_identification(&mut b, &req.vaspid, &req.vasid, req.sender_address.as_ref());
    element(&mut b, "MessageID", &req.message_id);
    if let Some(v) = &req.service_code {
        element(&mut b, "ServiceCode", v);
    }
    if let Some(id) = &req.content_id {
        content(&mut b, id);
    }
    b.push_str("</ReplaceReq>");
    envelope(ns, transaction_id, &b)
}

/// The MMSC's answer to a ReplaceReq.
pub fn encode_replace_rsp(ns: &str, transaction_id: &str, st: &Status) -> String {
    generic_rsp("ReplaceRsp", ns, transaction_id, st)
}

/// RSErrorRsp (MMSC) or VASPErrorRsp (VASP): the answer to a request that could not be
/// processed at all, as a bare body.
pub fn encode_error_rsp(kind: ErrorRsp, ns: &str, transaction_id: &str, st: &Status) -> String {
    generic_rsp(kind.element(), ns, transaction_id, st)
}

/// A SOAP 1.1 Fault (sent with HTTP 500) whose `detail` carries an RSErrorRsp or
/// VASPErrorRsp with `st`, the way MM7 servers report errors outside a typed response.
pub fn encode_fault(
    ns: &str,
    transaction_id: &str,
    fault_code: &str,
    fault_string: &str,
    detail: ErrorRsp,
    st: &Status,
) -> String {
    let kind = detail.element();
    let mut d = open(kind, ns);
    status(&mut d, st);
    d.push_str(&format!("</{kind}>"));
    let mut b = String::from("<env:Fault>");
    element(&mut b, "faultcode", fault_code);
    element(&mut b, "faultstring", fault_string);
    b.push_str(&format!("<detail>{d}</detail></env:Fault>"));
    envelope(ns, transaction_id, &b)
}

/// Decodes an envelope, reading the MMSC-side kinds itself (see the module docs).
pub fn decode(xml: &[u8]) -> Result<RsEnvelope, SoapError> {
    let nodes = parse_nodes(xml)?;
    let root = nodes.first().ok_or(SoapError::NotEnvelope)?;
    if root.path != ["Envelope"] || root.ns.as_deref() != Some(soap::SOAP_ENV) {
        return Err(SoapError::NotEnvelope);
    }
    let body_root = nodes
        .iter()
        .find(|n| n.path.len() == 3 && n.path[1] == "Body")
        .ok_or(SoapError::EmptyBody)?;
    let kind = body_root.path[2].as_str();
    if !matches!(
        kind,
        "SubmitReq"
            | "ReadReplyReq"
            | "ReadReplyRsp"
            | "CancelReq"
            | "CancelRsp"
            | "ReplaceReq"
            | "ReplaceRsp"
    ) {
        let env = soap::decode(xml)?;
        return Ok(RsEnvelope {
            transaction_id: env.transaction_id,
            namespace: env.namespace,
            message: RsMessage::Other(env.message),
        });
    }
    let namespace = body_root.ns.clone().unwrap_or_default();
    if !is_mm7_namespace(&namespace) {
        return Err(SoapError::Namespace(namespace));
    }
    let envelope = Tree {
        nodes: &nodes,
        depth: 1,
    };
    let transaction_id = envelope.text(&["Header", "TransactionID"]);
    let msg = Tree {
        nodes: &nodes,
        depth: 3,
    };
    let required =
        |path: &[&str], what: &'static str| msg.text(path).ok_or(SoapError::Missing(what));
    let first = |path: &[&str], what: &'static str| {
        msg.addresses(path)
            .into_iter()
            .next()
            .ok_or(SoapError::Missing(what))
    };
    let required_status = || {
        msg.status(&["Status"])?
            .ok_or(SoapError::Missing("Status/StatusCode"))
    };
    let content_id = || {
        msg.node(&["Content"])
            .and_then(|n| n.attrs.iter().find(|(k, _)| k == "href"))
            .map(|(_, v)| v.strip_prefix("cid:").unwrap_or(v).to_owned())
    };
    let sender_id = |name: &str| {
        msg.text(&["SenderIdentification", name])
            .unwrap_or_default()
    };
    let sender_address = || {
        msg.addresses(&["SenderIdentification", "SenderAddress"])
            .into_iter()
            .next()
    };
    let message = match kind {
        "SubmitReq" => RsMessage::SubmitReq(Submission {
            req: SubmitReq {
                transaction_id: transaction_id.clone().unwrap_or_default(),
                vaspid: sender_id("VASPID"),
                vasid: sender_id("VASID"),
                sender_address: sender_address(),
                recipients: msg.addresses(&["Recipients", "To"]),
                service_code: msg.text(&["ServiceCode"]),
                linked_id: msg.text(&["LinkedID"]),
                delivery_report: msg
                    .text(&["DeliveryReport"])
                    .map(|v| v == "true" || v == "1"),
                subject: msg.text(&["Subject"]),
                charged_party: msg.text(&["ChargedParty"]),
                content_id: content_id().ok_or(SoapError::Missing("Content"))?,
            },
            cc: msg.addresses(&["Recipients", "Cc"]),
            bcc: msg.addresses(&["Recipients", "Bcc"]),
        }),
        "ReadReplyReq" => RsMessage::ReadReplyReq(ReadReplyReq {
            message_id: required(&["MessageID"], "MessageID")?,
            recipient: first(&["Recipient"], "Recipient")?,
            sender: first(&["Sender"], "Sender")?,
            time_stamp: required(&["TimeStamp"], "TimeStamp")?,
            mm_status: required(&["MMStatus"], "MMStatus")?,
            status_text: msg.text(&["StatusText"]),
        }),
        "CancelReq" => RsMessage::CancelReq(CancelReq {
            vaspid: sender_id("VASPID"),
            vasid: sender_id("VASID"),
            sender_address: sender_address(),
            message_id: required(&["MessageID"], "MessageID")?,
        }),
        "ReplaceReq" => RsMessage::ReplaceReq(ReplaceReq {
            vaspid: sender_id("VASPID"),
            vasid: sender_id("VASID"),
            sender_address: sender_address(),
            message_id: required(&["MessageID"], "MessageID")?,
            service_code: msg.text(&["ServiceCode"]),
            content_id: content_id(),
        }),
        "ReadReplyRsp" => RsMessage::ReadReplyRsp(required_status()?),
        "CancelRsp" => RsMessage::CancelRsp(required_status()?),
        _ => RsMessage::ReplaceRsp(required_status()?),
    };
    Ok(RsEnvelope {
        transaction_id,
        namespace: Some(namespace),
        message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm7::soap::REL_6_MM7_1_4;

    #[test]
    fn fault_carries_the_error_status() {
        let st = Status {
            code: 4006,
            text: Some("busy".into()),
        };
        let xml = encode_fault(
            REL_6_MM7_1_4,
            "t1",
            FAULT_SERVER,
            "Server",
            ErrorRsp::Rs,
            &st,
        );
        let env = decode(xml.as_bytes()).unwrap();
        match env.message {
            RsMessage::Other(Message::Fault(f)) => {
                assert_eq!(f.code, FAULT_SERVER);
                assert_eq!(f.status, Some(st));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(env.namespace.as_deref(), Some(REL_6_MM7_1_4));
    }
}

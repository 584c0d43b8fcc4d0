//! MM7 SOAP 1.1 envelopes (3GPP TS 23.140 §8.7, the REL-5 / REL-6 MM7 schemas): the requests
//! and responses a VASP sends are encoded, those the MMSC sends are decoded.
//!
//! Encoded: SubmitReq, DeliveryReportRsp, DeliverRsp. Decoded: SubmitRsp, DeliveryReportReq,
//! DeliverReq, RSErrorRsp, VASPErrorRsp, SOAP Fault — and SubmitReq, DeliveryReportRsp and
//! DeliverRsp, so a round trip (and later an MMSC simulator) reads what we write.
//!
//! Elements are matched by local name; the MM7 namespace is checked to be one of the 3GPP
//! schema releases REL-5-MM7-1-0 … REL-6-MM7-1-4 ([`is_mm7_namespace`]), because MMSCs differ in
//! the release they speak and in their prefixes, never in the element names we read. The
//! namespace we send is the caller's (per channel). Reading uses quick-xml's namespace-aware
//! pull parser; writing is a few escaped strings in the schema's element order.

use quick_xml::XmlVersion;
use quick_xml::escape::{escape, resolve_predefined_entity};
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

/// SOAP 1.1 envelope namespace.
pub const SOAP_ENV: &str = "http://schemas.xmlsoap.org/soap/envelope/";
/// Where every MM7 schema namespace starts.
pub const MM7_SCHEMA_BASE: &str = "http://www.3gpp.org/ftp/Specs/archive/23_series/23.140/schema/";
/// The newest release we speak, the usual default.
pub const REL_6_MM7_1_4: &str =
    "http://www.3gpp.org/ftp/Specs/archive/23_series/23.140/schema/REL-6-MM7-1-4";
/// The release China Mobile's MMSC interface is written against.
pub const REL_5_MM7_1_0: &str =
    "http://www.3gpp.org/ftp/Specs/archive/23_series/23.140/schema/REL-5-MM7-1-0";

/// Whether `ns` is an MM7 schema namespace from REL-5-MM7-1-0 to REL-6-MM7-1-4.
pub fn is_mm7_namespace(ns: &str) -> bool {
    let Some(release) = ns.strip_prefix(MM7_SCHEMA_BASE) else {
        return false;
    };
    let minor = |rest: &str, max: u8| rest.parse::<u8>().is_ok_and(|m| m <= max) && rest.len() == 1;
    if let Some(rest) = release.strip_prefix("REL-5-MM7-1-") {
        minor(rest, 5)
    } else if let Some(rest) = release.strip_prefix("REL-6-MM7-1-") {
        minor(rest, 4)
    } else {
        false
    }
}

/// The MM7Version element value of a namespace (`REL-6-MM7-1-4` → `6.8.0`), as TS 23.140
/// pairs them; unknown releases get 6.8.0.
pub fn mm7_version(ns: &str) -> &'static str {
    match ns.rsplit('/').next().unwrap_or("") {
        "REL-5-MM7-1-0" => "5.3.0",
        "REL-5-MM7-1-1" => "5.5.0",
        "REL-5-MM7-1-2" => "5.6.0",
        "REL-5-MM7-1-3" => "5.8.0",
        "REL-5-MM7-1-4" | "REL-5-MM7-1-5" => "5.10.0",
        "REL-6-MM7-1-0" => "6.3.0",
        "REL-6-MM7-1-1" => "6.4.0",
        "REL-6-MM7-1-2" => "6.5.0",
        "REL-6-MM7-1-3" => "6.7.0",
        _ => "6.8.0",
    }
}

/// Why an envelope could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SoapError {
    #[error("malformed XML: {0}")]
    Xml(String),
    #[error("not a SOAP 1.1 envelope")]
    NotEnvelope,
    #[error("SOAP Body is empty")]
    EmptyBody,
    #[error("namespace {0:?} is not an MM7 schema namespace")]
    Namespace(String),
    #[error("unsupported MM7 message {0}")]
    Unsupported(String),
    #[error("{0} is missing")]
    Missing(&'static str),
    #[error("StatusCode {0:?} is not a number")]
    BadStatusCode(String),
}

/// A terminal address (the schema's Number / ShortCode / RFC2822Address choice).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Number(String),
    ShortCode(String),
    Email(String),
}

impl Address {
    fn element(&self) -> (&'static str, &str) {
        match self {
            Self::Number(v) => ("Number", v),
            Self::ShortCode(v) => ("ShortCode", v),
            Self::Email(v) => ("RFC2822Address", v),
        }
    }
}

/// A request status: StatusCode (see [`super::status`]) and its optional text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub code: u16,
    pub text: Option<String>,
}

/// VASP → MMSC: submit one content to recipients. Fields named as China Mobile's MMSC expects
/// them (VASPID, VASID, ServiceCode, LinkedID, ChargedParty, DeliveryReport).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitReq {
    pub transaction_id: String,
    pub vaspid: String,
    pub vasid: String,
    pub sender_address: Option<Address>,
    pub recipients: Vec<Address>,
    pub service_code: Option<String>,
    pub linked_id: Option<String>,
    pub delivery_report: Option<bool>,
    pub subject: Option<String>,
    /// Schema enumeration: Sender, Recipient, Both, Neither, ThirdParty.
    pub charged_party: Option<String>,
    /// The content part's Content-ID, without `cid:`.
    pub content_id: String,
}

/// MMSC → VASP: the answer to a SubmitReq.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitRsp {
    pub status: Status,
    pub message_id: Option<String>,
}

/// MMSC → VASP: the fate of a submitted message for one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryReportReq {
    pub message_id: String,
    pub recipient: Option<Address>,
    pub sender: Option<Address>,
    pub date: Option<String>,
    /// Schema enumeration: Expired, Retrieved, Rejected, Indeterminate, Forwarded, Unrecognised,
    /// Deferred, DeliveryConditionNotMet.
    pub mm_status: String,
    pub status_text: Option<String>,
}

/// MMSC → VASP: a mobile-originated MMS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliverReq {
    pub linked_id: Option<String>,
    pub sender: Option<Address>,
    pub recipients: Vec<Address>,
    pub subject: Option<String>,
    /// The Content href with any `cid:` prefix removed.
    pub content_id: Option<String>,
}

/// A SOAP 1.1 Fault, with the MM7 status from its detail when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub code: String,
    pub string: String,
    pub status: Option<Status>,
}

/// A decoded MM7 message body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    SubmitReq(SubmitReq),
    SubmitRsp(SubmitRsp),
    DeliveryReportReq(DeliveryReportReq),
    DeliverReq(DeliverReq),
    DeliveryReportRsp(Status),
    DeliverRsp(Status),
    RsErrorRsp(Status),
    VaspErrorRsp(Status),
    Fault(Fault),
}

/// A decoded envelope: the TransactionID header, the MM7 namespace of the body (none for a
/// Fault without MM7 detail) and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub transaction_id: Option<String>,
    pub namespace: Option<String>,
    pub message: Message,
}

/// One line, no line breaks: MIME text parts may have their line ends rewritten in transit
/// (python's `email` turns CRLF into LF), so bytes without any stay identical end to end.
pub(crate) fn envelope(ns: &str, transaction_id: &str, body: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
         <env:Envelope xmlns:env=\"{SOAP_ENV}\">\
         <env:Header><mm7:TransactionID xmlns:mm7=\"{ns}\" env:mustUnderstand=\"1\">{}</mm7:TransactionID></env:Header>\
         <env:Body>{body}</env:Body></env:Envelope>",
        escape(transaction_id)
    )
}

pub(crate) fn element(out: &mut String, name: &str, value: &str) {
    out.push_str(&format!("<{name}>{}</{name}>", escape(value)));
}

pub(crate) fn address(out: &mut String, wrapper: &str, address: &Address) {
    let (name, value) = address.element();
    out.push_str(&format!("<{wrapper}>"));
    element(out, name, value);
    out.push_str(&format!("</{wrapper}>"));
}

pub(crate) fn status(out: &mut String, status: &Status) {
    out.push_str("<Status>");
    element(out, "StatusCode", &status.code.to_string());
    if let Some(text) = &status.text {
        element(out, "StatusText", text);
    }
    out.push_str("</Status>");
}

/// The SubmitReq envelope, elements in the REL-5/REL-6 schema order.
pub fn encode_submit_req(ns: &str, req: &SubmitReq) -> String {
    let mut b = format!("<SubmitReq xmlns=\"{}\">", escape(ns));
    element(&mut b, "MM7Version", mm7_version(ns));
    b.push_str("<SenderIdentification>");
    element(&mut b, "VASPID", &req.vaspid);
    element(&mut b, "VASID", &req.vasid);
    if let Some(sender) = &req.sender_address {
        address(&mut b, "SenderAddress", sender);
    }
    b.push_str("</SenderIdentification><Recipients>");
    for to in &req.recipients {
        address(&mut b, "To", to);
    }
    b.push_str("</Recipients>");
    if let Some(v) = &req.service_code {
        element(&mut b, "ServiceCode", v);
    }
    if let Some(v) = &req.linked_id {
        element(&mut b, "LinkedID", v);
    }
    if let Some(v) = req.delivery_report {
        element(&mut b, "DeliveryReport", if v { "true" } else { "false" });
    }
    if let Some(v) = &req.subject {
        element(&mut b, "Subject", v);
    }
    if let Some(v) = &req.charged_party {
        element(&mut b, "ChargedParty", v);
    }
    b.push_str(&format!(
        "<Content href=\"cid:{}\"/>",
        escape(&req.content_id)
    ));
    b.push_str("</SubmitReq>");
    envelope(ns, &req.transaction_id, &b)
}

/// The answer to a DeliveryReportReq.
pub fn encode_delivery_report_rsp(ns: &str, transaction_id: &str, st: &Status) -> String {
    let mut b = format!("<DeliveryReportRsp xmlns=\"{}\">", escape(ns));
    element(&mut b, "MM7Version", mm7_version(ns));
    status(&mut b, st);
    b.push_str("</DeliveryReportRsp>");
    envelope(ns, transaction_id, &b)
}

/// The answer to a DeliverReq; `service_code` is the optional charging code of the reply.
pub fn encode_deliver_rsp(
    ns: &str,
    transaction_id: &str,
    st: &Status,
    service_code: Option<&str>,
) -> String {
    let mut b = format!("<DeliverRsp xmlns=\"{}\">", escape(ns));
    element(&mut b, "MM7Version", mm7_version(ns));
    status(&mut b, st);
    if let Some(code) = service_code {
        element(&mut b, "ServiceCode", code);
    }
    b.push_str("</DeliverRsp>");
    envelope(ns, transaction_id, &b)
}

/// One element of the document: its path of local names from the root, its namespace, its
/// attributes (by local name) and its text.
#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) path: Vec<String>,
    pub(crate) ns: Option<String>,
    pub(crate) attrs: Vec<(String, String)>,
    pub(crate) text: String,
}

/// Elements under one subtree, addressed by the local-name path below its root.
pub(crate) struct Tree<'a> {
    pub(crate) nodes: &'a [Node],
    pub(crate) depth: usize,
}

impl<'a> Tree<'a> {
    fn under(&self) -> impl Iterator<Item = (&'a [String], &'a Node)> + '_ {
        self.nodes
            .iter()
            .map(move |n| (&n.path[self.depth.min(n.path.len())..], n))
    }

    pub(crate) fn node(&self, rel: &[&str]) -> Option<&'a Node> {
        self.under()
            .find(|(p, _)| p.iter().map(String::as_str).eq(rel.iter().copied()))
            .map(|(_, n)| n)
    }

    pub(crate) fn text(&self, rel: &[&str]) -> Option<String> {
        self.node(rel).map(|n| n.text.trim().to_owned())
    }

    /// Addresses in elements `wrapper/…/{Number|ShortCode|RFC2822Address}`.
    pub(crate) fn addresses(&self, wrapper: &[&str]) -> Vec<Address> {
        self.under()
            .filter(|(p, _)| {
                p.len() > wrapper.len()
                    && p.iter()
                        .map(String::as_str)
                        .take(wrapper.len())
                        .eq(wrapper.iter().copied())
            })
            .filter_map(|(p, n)| {
                let v = n.text.trim().to_owned();
                match p.last()?.as_str() {
                    "Number" => Some(Address::Number(v)),
                    "ShortCode" => Some(Address::ShortCode(v)),
                    "RFC2822Address" => Some(Address::Email(v)),
                    _ => None,
                }
            })
            .collect()
    }

    pub(crate) fn status(&self, rel: &[&str]) -> Result<Option<Status>, SoapError> {
        let mut code_path = rel.to_vec();
        code_path.push("StatusCode");
        let Some(code) = self.text(&code_path) else {
            return Ok(None);
        };
        let code = code.parse().map_err(|_| SoapError::BadStatusCode(code))?;
        let mut text_path = rel.to_vec();
        text_path.push("StatusText");
        Ok(Some(Status {
            code,
            text: self.text(&text_path),
        }))
    }
}

pub(crate) fn parse_nodes(xml: &[u8]) -> Result<Vec<Node>, SoapError> {
    let mut reader = NsReader::from_reader(xml);
    let mut nodes: Vec<Node> = Vec::new();
    let mut stack: Vec<(String, usize)> = Vec::new();
    let xml_err = |e: quick_xml::Error| SoapError::Xml(e.to_string());
    loop {
        let (resolved, event) = reader.read_resolved_event().map_err(xml_err)?;
        let (start, empty) = match &event {
            Event::Start(e) => (Some(e), false),
            Event::Empty(e) => (Some(e), true),
            _ => (None, false),
        };
        if let Some(e) = start {
            let ns = match resolved {
                ResolveResult::Bound(ns) => Some(ns.as_ref().to_owned()),
                _ => None,
            };
            let name = e.local_name().as_ref().to_owned();
            let mut attrs = Vec::new();
            for attr in e.attributes() {
                let attr = attr.map_err(|e| SoapError::Xml(e.to_string()))?;
                let value = attr
                    .normalized_value(XmlVersion::default())
                    .map_err(|e| SoapError::Xml(e.to_string()))?
                    .into_owned();
                attrs.push((attr.key.local_name().as_ref().to_owned(), value));
            }
            let mut path: Vec<String> = stack.iter().map(|(n, _)| n.clone()).collect();
            path.push(name.clone());
            nodes.push(Node {
                path,
                ns,
                attrs,
                text: String::new(),
            });
            if !empty {
                stack.push((name, nodes.len() - 1));
            }
            continue;
        }
        match event {
            Event::End(_) => {
                stack.pop();
            }
            Event::Text(t) => {
                if let Some((_, i)) = stack.last() {
                    nodes[*i].text.push_str(&t.xml10_content());
                }
            }
            // Entity and character references come as events of their own: `&amp;`,
            // `&#x4E2D;`. Only the five predefined entities exist in MM7 (no DTD).
            Event::GeneralRef(r) => {
                let text = if r.is_char_ref() {
                    r.resolve_char_ref()
                        .map_err(xml_err)?
                        .map(String::from)
                        .ok_or_else(|| SoapError::Xml("empty character reference".into()))?
                } else {
                    let name = r.into_inner();
                    resolve_predefined_entity(&name)
                        .ok_or_else(|| SoapError::Xml(format!("unknown entity &{name};")))?
                        .to_owned()
                };
                if let Some((_, i)) = stack.last() {
                    nodes[*i].text.push_str(&text);
                }
            }
            Event::CData(c) => {
                if let Some((_, i)) = stack.last() {
                    nodes[*i].text.push_str(&c.into_inner());
                }
            }
            Event::Eof => return Ok(nodes),
            _ => {}
        }
    }
}

/// Decodes an MM7 SOAP envelope.
pub fn decode(xml: &[u8]) -> Result<Envelope, SoapError> {
    let nodes = parse_nodes(xml)?;
    let root = nodes.first().ok_or(SoapError::NotEnvelope)?;
    if root.path != ["Envelope"] || root.ns.as_deref() != Some(SOAP_ENV) {
        return Err(SoapError::NotEnvelope);
    }
    let envelope = Tree {
        nodes: &nodes,
        depth: 1,
    };
    let transaction_id = envelope.text(&["Header", "TransactionID"]);
    let body_root = nodes
        .iter()
        .find(|n| n.path.len() == 3 && n.path[1] == "Body")
        .ok_or(SoapError::EmptyBody)?;
    let kind = body_root.path[2].as_str();
    let msg = Tree {
        nodes: &nodes,
        depth: 3,
    };
    if kind == "Fault" {
        if body_root.ns.as_deref() != Some(SOAP_ENV) {
            return Err(SoapError::NotEnvelope);
        }
        // detail carries an RSErrorRsp / VASPErrorRsp (or a bare Status) on MM7 servers.
        let detail_kind = nodes
            .iter()
            .find(|n| n.path.len() == 5 && n.path[3] == "detail")
            .map(|n| (n.path[4].clone(), n.ns.clone()));
        let (status, namespace) = match detail_kind {
            Some((name, ns)) if name == "Status" => (msg.status(&["detail", "Status"])?, ns),
            Some((name, ns)) => (msg.status(&["detail", &name, "Status"])?, ns),
            None => (None, None),
        };
        let fault = Fault {
            code: msg
                .text(&["faultcode"])
                .ok_or(SoapError::Missing("faultcode"))?,
            string: msg.text(&["faultstring"]).unwrap_or_default(),
            status,
        };
        let namespace = namespace.filter(|ns| is_mm7_namespace(ns));
        return Ok(Envelope {
            transaction_id,
            namespace,
            message: Message::Fault(fault),
        });
    }
    let namespace = body_root.ns.clone().unwrap_or_default();
    if !is_mm7_namespace(&namespace) {
        return Err(SoapError::Namespace(namespace));
    }
    let required_status = |t: &Tree| {
        t.status(&["Status"])?
            .ok_or(SoapError::Missing("Status/StatusCode"))
    };
    let content_id = |t: &Tree| {
        t.node(&["Content"])
            .and_then(|n| n.attrs.iter().find(|(k, _)| k == "href"))
            .map(|(_, v)| v.strip_prefix("cid:").unwrap_or(v).to_owned())
    };
    let message = match kind {
        "SubmitRsp" => Message::SubmitRsp(SubmitRsp {
            status: required_status(&msg)?,
            message_id: msg.text(&["MessageID"]),
        }),
        "DeliveryReportRsp" => Message::DeliveryReportRsp(required_status(&msg)?),
        "DeliverRsp" => Message::DeliverRsp(required_status(&msg)?),
        "RSErrorRsp" => Message::RsErrorRsp(required_status(&msg)?),
        "VASPErrorRsp" => Message::VaspErrorRsp(required_status(&msg)?),
        "DeliveryReportReq" => Message::DeliveryReportReq(DeliveryReportReq {
            message_id: msg
                .text(&["MessageID"])
                .ok_or(SoapError::Missing("MessageID"))?,
            recipient: msg.addresses(&["Recipient"]).into_iter().next(),
            sender: msg.addresses(&["Sender"]).into_iter().next(),
            date: msg.text(&["Date"]),
            mm_status: msg
                .text(&["MMStatus"])
                .ok_or(SoapError::Missing("MMStatus"))?,
            status_text: msg.text(&["StatusText"]),
        }),
        "DeliverReq" => Message::DeliverReq(DeliverReq {
            linked_id: msg.text(&["LinkedID"]),
            sender: msg.addresses(&["Sender"]).into_iter().next(),
            recipients: msg.addresses(&["Recipients"]),
            subject: msg.text(&["Subject"]),
            content_id: content_id(&msg),
        }),
        "SubmitReq" => Message::SubmitReq(SubmitReq {
            transaction_id: transaction_id.clone().unwrap_or_default(),
            vaspid: msg
                .text(&["SenderIdentification", "VASPID"])
                .unwrap_or_default(),
            vasid: msg
                .text(&["SenderIdentification", "VASID"])
                .unwrap_or_default(),
            sender_address: msg
                .addresses(&["SenderIdentification", "SenderAddress"])
                .into_iter()
                .next(),
            recipients: msg.addresses(&["Recipients", "To"]),
            service_code: msg.text(&["ServiceCode"]),
            linked_id: msg.text(&["LinkedID"]),
            delivery_report: msg
                .text(&["DeliveryReport"])
                .map(|v| v == "true" || v == "1"),
            subject: msg.text(&["Subject"]),
            charged_party: msg.text(&["ChargedParty"]),
            content_id: content_id(&msg).ok_or(SoapError::Missing("Content"))?,
        }),
        other => return Err(SoapError::Unsupported(other.to_owned())),
    };
    Ok(Envelope {
        transaction_id,
        namespace: Some(namespace),
        message,
    })
}

/// A SOAP Fault answering a request the VASP cannot take (TS 23.140 §8.7: errors travel as
/// a Fault whose `detail` holds a VASPErrorRsp). `client` picks faultcode `env:Client` (the
/// request is wrong) over `env:Server` (the VASP failed; send again).
pub fn encode_vasp_error_fault(
    ns: &str,
    transaction_id: &str,
    client: bool,
    fault_string: &str,
    st: &Status,
) -> String {
    let code = if client { "env:Client" } else { "env:Server" };
    let mut b = format!("<env:Fault><faultcode>{code}</faultcode>");
    element(&mut b, "faultstring", fault_string);
    b.push_str(&format!("<detail><VASPErrorRsp xmlns=\"{}\">", escape(ns)));
    element(&mut b, "MM7Version", mm7_version(ns));
    status(&mut b, st);
    b.push_str("</VASPErrorRsp></detail></env:Fault>");
    envelope(ns, transaction_id, &b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_rel5_and_rel6_namespaces_only() {
        assert!(is_mm7_namespace(REL_6_MM7_1_4));
        assert!(is_mm7_namespace(REL_5_MM7_1_0));
        assert!(is_mm7_namespace(&format!("{MM7_SCHEMA_BASE}REL-5-MM7-1-3")));
        assert!(!is_mm7_namespace(&format!(
            "{MM7_SCHEMA_BASE}REL-6-MM7-1-5"
        )));
        assert!(!is_mm7_namespace(&format!(
            "{MM7_SCHEMA_BASE}REL-4-MM7-1-0"
        )));
        assert!(!is_mm7_namespace("http://example.com/REL-6-MM7-1-4"));
    }

    #[test]
    fn escapes_text_it_writes() {
        let xml = encode_delivery_report_rsp(
            REL_6_MM7_1_4,
            "t<1>&",
            &Status {
                code: 1000,
                text: Some("a & b".into()),
            },
        );
        assert!(xml.contains("t&lt;1&gt;&amp;"));
        assert!(xml.contains("a &amp; b"));
        let back = decode(xml.as_bytes()).unwrap();
        assert_eq!(back.transaction_id.as_deref(), Some("t<1>&"));
    }

    #[test]
    fn vasp_error_fault_round_trips() {
        let st = Status {
            code: 2007,
            text: Some("bad <body>".into()),
        };
        let xml = encode_vasp_error_fault(REL_6_MM7_1_4, "t9", true, "no envelope", &st);
        let back = decode(xml.as_bytes()).unwrap();
        assert_eq!(back.transaction_id.as_deref(), Some("t9"));
        assert_eq!(back.namespace.as_deref(), Some(REL_6_MM7_1_4));
        assert_eq!(
            back.message,
            Message::Fault(Fault {
                code: "env:Client".into(),
                string: "no envelope".into(),
                status: Some(st),
            })
        );
    }
}

//! WAP Push over SMS, sans-IO: SI/SL document → WBXML → WSP Push PDU → WDP (port UDH) →
//! binary SMS parts, with the byte choices of Kannel's PPG/wapbox.
//!
//! - [`wbxml`]: WBXML 1.2 primitives and the push date format.
//! - [`si`], [`sl`]: Service Indication / Service Loading documents.
//! - [`wsp`]: connectionless Push PDU and its headers.
//! - [`wdp`]: port addressing and splitting into SMS parts.
//! - [`wap_push_sms`]: the whole chain in one call.
//!
//! Sending: each returned [`Part`] goes as SMPP `data_coding` 4 (or 0xF5, the GSM class-1
//! 8-bit form some handsets want; Kannel uses 0xF5 when `alt-dcs` is set), with `esm_class`
//! 0x40 and `short_message = udh + payload`.

pub mod error;
pub mod si;
pub mod sl;
pub mod wbxml;
pub mod wdp;
pub mod wsp;

pub use error::WapError;
pub use si::{ServiceIndication, SiAction};
pub use sl::{HrefPrefixRule, ServiceLoading, SlAction};
pub use wbxml::WapDateTime;
pub use wsp::{ApplicationId, ContentType, PushHeaders, PushPdu, WspDecodeError};

use crate::sms::{ConcatScheme, Part, Ports, SplitOptions};

/// A push document.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PushDocument {
    /// Service Indication (`application/vnd.wap.sic`).
    Si(ServiceIndication),
    /// Service Loading (`application/vnd.wap.slc`).
    Sl(ServiceLoading),
}

impl PushDocument {
    /// The WBXML body.
    ///
    /// # Errors
    /// As the document encoders.
    pub fn to_wbxml(&self) -> Result<Vec<u8>, WapError> {
        match self {
            Self::Si(d) => d.to_wbxml(),
            Self::Sl(d) => d.to_wbxml(),
        }
    }

    /// Well-known WSP content type code of the tokenised document.
    #[must_use]
    pub const fn content_type(&self) -> u8 {
        match self {
            Self::Si(_) => wsp::CT_SIC,
            Self::Sl(_) => wsp::CT_SLC,
        }
    }
}

/// Knobs of [`wap_push_sms`]; [`PushOptions::default`] mirrors Kannel.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PushOptions {
    /// WSP TID / push id (Kannel uses its push id counter).
    pub tid: u8,
    /// `X-Wap-Application-Id`; `None` (Kannel's default when the PAP request sets none)
    /// targets the browser, which handles SI/SL.
    pub application_id: Option<ApplicationId>,
    /// Send `Content-Length`; Kannel's PPG does.
    pub content_length: bool,
    /// `Encoding-Version` header; Kannel always sends 1.3.
    pub encoding_version: Option<(u8, u8)>,
    /// WDP ports (2948 ← 9200).
    pub ports: Ports,
    /// Concatenation scheme (Kannel: 8-bit reference UDH).
    pub scheme: ConcatScheme,
    /// The most SMS parts accepted.
    pub max_parts: usize,
}

impl Default for PushOptions {
    fn default() -> Self {
        Self {
            tid: 0,
            application_id: None,
            content_length: true,
            encoding_version: Some((1, 3)),
            ports: wdp::PUSH_PORTS,
            scheme: ConcatScheme::Udh8,
            max_parts: 10,
        }
    }
}

/// Encodes `doc` as the WSP push PDU (the WDP datagram, before splitting into SMS).
/// `opts.ports`, `opts.scheme` and `opts.max_parts` do not apply here.
///
/// # Errors
/// [`WapError`] for an unencodable document.
pub fn wap_push_pdu(doc: &PushDocument, opts: &PushOptions) -> Result<Vec<u8>, WapError> {
    let body = doc.to_wbxml()?;
    let headers = PushHeaders {
        content_type: ContentType::WellKnown(doc.content_type()),
        application_id: opts.application_id.clone(),
        content_length: opts.content_length,
        encoding_version: opts.encoding_version,
    };
    Ok(wsp::push_pdu(opts.tid, &headers, &body))
}

/// Encodes `doc` and returns the binary SMS parts that deliver it. `reference` is the
/// concatenation reference (fresh per push; low 8 bits with the default scheme).
///
/// # Errors
/// [`WapError`] for an unencodable document or a PDU needing more than `max_parts` parts.
pub fn wap_push_sms(
    doc: &PushDocument,
    reference: u16,
    opts: &PushOptions,
) -> Result<Vec<Part>, WapError> {
    let pdu = wap_push_pdu(doc, opts)?;
    let mut split = SplitOptions::new(opts.scheme, reference);
    split.max_parts = opts.max_parts;
    Ok(wdp::sms_parts(&pdu, opts.ports, &split)?)
}

/// The WBXML public identifier of a push body (`02 <public id> …`): SI is
/// [`si::PUBLIC_ID`] 0x05, SL [`sl::PUBLIC_ID`] 0x06. `None` when `wbxml` is too short or
/// the id is a string-table reference (first octet 0) or malformed.
#[must_use]
pub fn wbxml_public_id(wbxml: &[u8]) -> Option<u32> {
    let (_version, rest) = wbxml.split_first()?;
    let mut v: u32 = 0;
    for (i, &o) in rest.iter().enumerate().take(5) {
        if i == 0 && o == 0 {
            return None;
        }
        v = v.checked_mul(128)? | u32::from(o & 0x7F);
        if o & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sms::{Encoding, Udh};

    #[test]
    fn short_si_is_one_part_with_port_udh() {
        let doc = PushDocument::Si(ServiceIndication {
            href: Some("http://www.xyz.com/a".into()),
            text: "Hi".into(),
            ..Default::default()
        });
        let parts = wap_push_sms(&doc, 9, &PushOptions::default()).unwrap();
        assert_eq!(parts.len(), 1);
        let p = &parts[0];
        assert_eq!(p.encoding, Encoding::Binary);
        assert_eq!(
            p.udh.as_deref(),
            Some(&[0x06, 0x05, 0x04, 0x0B, 0x84, 0x23, 0xF0][..])
        );
        assert!(p.esm_udhi);
        let body = doc.to_wbxml().unwrap();
        let len = body.len() as u8 | 0x80;
        assert_eq!(
            &p.payload[..8],
            &[0x00, 0x06, 0x05, 0xAE, 0x8D, len, 0xC3, 0x93]
        );
        assert_eq!(&p.payload[8..], &body[..]);
    }

    #[test]
    fn public_id_of_si_and_sl_bodies() {
        let si = PushDocument::Si(ServiceIndication::default())
            .to_wbxml()
            .unwrap();
        let sl = PushDocument::Sl(ServiceLoading::default())
            .to_wbxml()
            .unwrap();
        assert_eq!(wbxml_public_id(&si), Some(si::PUBLIC_ID));
        assert_eq!(wbxml_public_id(&sl), Some(sl::PUBLIC_ID));
        assert_eq!(wbxml_public_id(&[0x02]), None);
        assert_eq!(wbxml_public_id(&[0x02, 0x00, 0x05]), None);
        assert_eq!(wbxml_public_id(&[0x02, 0x81, 0x01]), Some(129));
        assert_eq!(wbxml_public_id(&[0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]), None);
    }

    #[test]
    fn pdu_then_port_udh_split_is_wap_push_sms() {
        let doc = PushDocument::Si(ServiceIndication {
            href: Some(format!("https://example.org/{}", "segment/".repeat(25))),
            text: "long".into(),
            ..Default::default()
        });
        let opts = PushOptions::default();
        let pdu = wap_push_pdu(&doc, &opts).unwrap();
        let (udh, _) = Udh::parse(&wdp::port_udh(wdp::PUSH_PORTS)).unwrap();
        let split = SplitOptions::new(ConcatScheme::Udh8, 7);
        let parts = crate::sms::split_binary(&pdu, &udh.ies, &split).unwrap();
        assert_eq!(parts, wap_push_sms(&doc, 7, &opts).unwrap());
        assert!(parts.len() >= 2);
    }

    #[test]
    fn actions_by_name() {
        for a in SiAction::ALL {
            assert_eq!(SiAction::from_name(a.as_str()), Some(a));
        }
        for a in SlAction::ALL {
            assert_eq!(SlAction::from_name(a.as_str()), Some(a));
        }
        assert_eq!(SiAction::from_name("signal-loud"), None);
        assert_eq!(SlAction::from_name("execute-medium"), None);
    }

    #[test]
    fn long_sl_is_split_with_ports_then_concat() {
        let doc = PushDocument::Sl(ServiceLoading {
            href: format!("http://example.net/{}", "p".repeat(300)),
            ..Default::default()
        });
        let parts = wap_push_sms(&doc, 0x1AB, &PushOptions::default()).unwrap();
        assert_eq!(parts.len(), 3);
        for (i, p) in parts.iter().enumerate() {
            let (udh, rest) = Udh::parse(p.udh.as_deref().unwrap()).unwrap();
            assert!(rest.is_empty());
            assert_eq!(udh.ports(), Some(wdp::PUSH_PORTS));
            let c = udh.concat().unwrap();
            assert_eq!((c.reference, c.total, c.seq), (0xAB, 3, i as u8 + 1));
            assert!(p.air_octets() <= 140);
        }
    }
}

//! Connectionless WSP Push PDU (WAP-230 §8.2.4.1) carrying a push document.
//!
//! Wire format: `TID (1 octet)`, `PDU type 0x06 (Push)`, `HeadersLen (uintvar)`, `ContentType`,
//! `Headers`, `Data`. For connectionless push the TID is the push id (WSP table 12), any value
//! the sender picks.
//!
//! Encodings used (WAP-230 §8.4):
//! - Content type as a short-integer well-known value: `application/vnd.wap.sic` 0x2E → 0xAE,
//!   `application/vnd.wap.slc` 0x30 → 0xB0.
//! - `X-Wap-Application-Id` (field 0x2F → 0xAF) as a short integer for registered ids
//!   (WINA: 0x00 `*`, 0x01 push.sia, 0x02 wml.ua (SI/SL), 0x04 mms.ua, ...) or a text string.
//! - `Content-Length` (field 0x0D → 0x8D) as an Integer-value: Kannel's PPG adds it after
//!   compiling the document (a 77-octet SI body gives `8D CD`).
//! - `Encoding-Version` (field 0x43 → 0xC3), short-integer version `major << 4 | minor`:
//!   1.3 → 0x93. Kannel's WSP unit layer appends `Encoding-Version: 1.3` to every push.
//!
//! So a Kannel SI push starts `TID 06 05 AE 8D <len> C3 93` (checked against Kannel 1.4.5 in
//! `tests/wap_kannel.rs`).

use super::wbxml::write_uintvar;

/// WSP PDU type of Push.
pub const PDU_PUSH: u8 = 0x06;
/// Well-known content type `application/vnd.wap.sic`.
pub const CT_SIC: u8 = 0x2E;
/// Well-known content type `application/vnd.wap.slc`.
pub const CT_SLC: u8 = 0x30;
/// Well-known header field `X-Wap-Application-Id`.
pub const FIELD_APPLICATION_ID: u8 = 0x2F;
/// Well-known header field `Content-Length`.
pub const FIELD_CONTENT_LENGTH: u8 = 0x0D;
/// Well-known header field `Encoding-Version`.
pub const FIELD_ENCODING_VERSION: u8 = 0x43;
/// WINA application id `x-wap-application:push.sia` (session initiation).
pub const APP_ID_PUSH_SIA: u32 = 0x01;
/// WINA application id `x-wap-application:wml.ua` (the browser user agent, handles SI/SL).
/// It is the default target, and Kannel's PPG drops the header when it names wml.ua, so to
/// match Kannel leave [`PushHeaders::application_id`] `None` for SI/SL.
pub const APP_ID_WML_UA: u32 = 0x02;

/// A push PDU's content type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ContentType {
    /// A well-known content type code (0..=0x7F), written as a short integer.
    WellKnown(u8),
    /// A content type as text, e.g. `application/vnd.wap.emn+wbxml`.
    Text(String),
}

/// `X-Wap-Application-Id` value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ApplicationId {
    /// A registered (WINA) code.
    Code(u32),
    /// An absolute URI or `x-wap-application:...` string.
    Uri(String),
}

/// Headers of a push PDU, written in this order: content type, application id, content
/// length, encoding version (Kannel's order: content type first, then the push headers,
/// then the Encoding-Version its WSP layer appends).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PushHeaders {
    /// Content type of the body.
    pub content_type: ContentType,
    /// Target application on the handset; absent means the WML browser.
    pub application_id: Option<ApplicationId>,
    /// Whether to send `Content-Length` (the body length); Kannel's PPG does.
    pub content_length: bool,
    /// `Encoding-Version` as (major, minor), e.g. (1, 3).
    pub encoding_version: Option<(u8, u8)>,
}

/// Writes a text-string (WAP-230 §8.4.2.1): a leading 0x7F quote if the first octet is
/// ≥ 0x80, then the octets and NUL.
fn write_text(out: &mut Vec<u8>, s: &str) {
    if s.as_bytes().first().is_some_and(|&b| b >= 0x80) {
        out.push(0x7F);
    }
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

/// Writes an Integer-value: short-integer below 128, otherwise long-integer (length octet +
/// big-endian bytes without leading zeros).
fn write_integer(out: &mut Vec<u8>, v: u32) {
    if v < 0x80 {
        out.push(v as u8 | 0x80);
        return;
    }
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|&&b| b == 0).count();
    out.push((4 - skip) as u8);
    out.extend_from_slice(&bytes[skip..]);
}

impl PushHeaders {
    /// Headers for a document content type as Kannel's PPG sends them: the content type,
    /// `Content-Length` and `Encoding-Version: 1.3`, no application id.
    #[must_use]
    pub const fn kannel(content_type: u8) -> Self {
        Self {
            content_type: ContentType::WellKnown(content_type),
            application_id: None,
            content_length: true,
            encoding_version: Some((1, 3)),
        }
    }

    /// Appends the encoded headers (content type first) for a body of `body_len` octets.
    pub fn encode_into(&self, out: &mut Vec<u8>, body_len: usize) {
        match &self.content_type {
            ContentType::WellKnown(c) => out.push(c | 0x80),
            ContentType::Text(t) => write_text(out, t),
        }
        match &self.application_id {
            Some(ApplicationId::Code(c)) => {
                out.push(FIELD_APPLICATION_ID | 0x80);
                write_integer(out, *c);
            }
            Some(ApplicationId::Uri(u)) => {
                out.push(FIELD_APPLICATION_ID | 0x80);
                write_text(out, u);
            }
            None => {}
        }
        if self.content_length {
            out.push(FIELD_CONTENT_LENGTH | 0x80);
            write_integer(out, u32::try_from(body_len).unwrap_or(u32::MAX));
        }
        if let Some((major, minor)) = self.encoding_version {
            out.push(FIELD_ENCODING_VERSION | 0x80);
            if (1..=7).contains(&major) && minor <= 14 {
                out.push(0x80 | major << 4 | minor);
            } else {
                write_text(out, &format!("{major}.{minor}"));
            }
        }
    }
}

/// Builds a connectionless Push PDU.
#[must_use]
pub fn push_pdu(tid: u8, headers: &PushHeaders, body: &[u8]) -> Vec<u8> {
    let mut hdr = Vec::with_capacity(16);
    headers.encode_into(&mut hdr, body.len());
    let mut out = Vec::with_capacity(8 + hdr.len() + body.len());
    out.push(tid);
    out.push(PDU_PUSH);
    write_uintvar(&mut out, hdr.len() as u32);
    out.extend_from_slice(&hdr);
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sic_push_with_kannel_headers() {
        let pdu = push_pdu(0x01, &PushHeaders::kannel(CT_SIC), &[0xAA]);
        assert_eq!(pdu, [0x01, 0x06, 0x05, 0xAE, 0x8D, 0x81, 0xC3, 0x93, 0xAA]);
        let long = push_pdu(0x01, &PushHeaders::kannel(CT_SIC), &[0; 300]);
        assert_eq!(
            &long[..9],
            [0x01, 0x06, 0x07, 0xAE, 0x8D, 0x02, 0x01, 0x2C, 0xC3]
        );
    }

    #[test]
    fn application_id_forms() {
        let h = PushHeaders {
            content_type: ContentType::WellKnown(CT_SLC),
            application_id: Some(ApplicationId::Code(APP_ID_WML_UA)),
            content_length: false,
            encoding_version: None,
        };
        assert_eq!(push_pdu(7, &h, &[]), [7, 6, 3, 0xB0, 0xAF, 0x82]);
        let h = PushHeaders {
            content_type: ContentType::Text("a/b".into()),
            application_id: Some(ApplicationId::Code(0x9000)),
            content_length: false,
            encoding_version: None,
        };
        assert_eq!(
            push_pdu(7, &h, &[]),
            [7, 6, 8, b'a', b'/', b'b', 0, 0xAF, 2, 0x90, 0x00]
        );
    }
}

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

/// A WSP push PDU could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WspDecodeError {
    /// The PDU ended before a field it announced.
    #[error("WSP PDU truncated")]
    Truncated,
    /// The PDU type is not Push (0x06) or ConfirmedPush (0x07).
    #[error("WSP PDU type 0x{0:02X} is not a push")]
    NotPush(u8),
    /// A uintvar longer than 5 octets or above `u32::MAX`.
    #[error("malformed uintvar")]
    BadUintvar,
    /// The content type field is malformed.
    #[error("malformed content type")]
    BadContentType,
}

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

/// A decoded connectionless push PDU, borrowing from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushPdu<'a> {
    /// Transaction / push id.
    pub tid: u8,
    /// PDU type (0x06 Push or 0x07 ConfirmedPush).
    pub pdu_type: u8,
    /// The media type of the content-type field (parameters are not decoded).
    pub content_type: ContentType,
    /// The encoded headers after the content type.
    pub headers: &'a [u8],
    /// The body (e.g. SI/SL WBXML).
    pub body: &'a [u8],
}

/// Reads a uintvar at the start of `b`: (value, octets used).
fn read_uintvar(b: &[u8]) -> Result<(u32, usize), WspDecodeError> {
    let mut v: u64 = 0;
    for (i, &o) in b.iter().enumerate().take(5) {
        v = v << 7 | u64::from(o & 0x7F);
        if o & 0x80 == 0 {
            let v = u32::try_from(v).map_err(|_| WspDecodeError::BadUintvar)?;
            return Ok((v, i + 1));
        }
    }
    if b.len() < 5 {
        Err(WspDecodeError::Truncated)
    } else {
        Err(WspDecodeError::BadUintvar)
    }
}

/// Reads a NUL-terminated text-string (dropping a leading 0x7F quote): (text, octets used).
fn read_text(b: &[u8]) -> Result<(String, usize), WspDecodeError> {
    let end = b
        .iter()
        .position(|&x| x == 0)
        .ok_or(WspDecodeError::Truncated)?;
    let raw = b[..end].strip_prefix(&[0x7F]).unwrap_or(&b[..end]);
    Ok((String::from_utf8_lossy(raw).into_owned(), end + 1))
}

/// Decodes the content-type field at the start of `h` (WAP-230 §8.4.2.24): returns the
/// media type and the octets the whole field used.
fn read_content_type(h: &[u8]) -> Result<(ContentType, usize), WspDecodeError> {
    let first = *h.first().ok_or(WspDecodeError::Truncated)?;
    match first {
        0x80..=0xFF => Ok((ContentType::WellKnown(first & 0x7F), 1)),
        0x20..=0x7F => read_text(h).map(|(t, n)| (ContentType::Text(t), n)),
        // Content-general-form: Value-length then Media-type and parameters.
        _ => {
            let (len, used) = if first == 0x1F {
                let (l, n) = read_uintvar(&h[1..])?;
                (l as usize, 1 + n)
            } else {
                (usize::from(first), 1)
            };
            let field = h.get(used..used + len).ok_or(WspDecodeError::Truncated)?;
            let media = match field.first() {
                Some(&m) if m >= 0x80 => ContentType::WellKnown(m & 0x7F),
                Some(&m) if m >= 0x20 => ContentType::Text(read_text(field)?.0),
                _ => return Err(WspDecodeError::BadContentType),
            };
            Ok((media, used + len))
        }
    }
}

impl<'a> PushPdu<'a> {
    /// Decodes a connectionless push PDU (as carried in WDP over SMS after reassembly).
    ///
    /// # Errors
    /// [`WspDecodeError`] for anything malformed; never panics.
    pub fn parse(b: &'a [u8]) -> Result<Self, WspDecodeError> {
        let [tid, pdu_type, rest @ ..] = b else {
            return Err(WspDecodeError::Truncated);
        };
        if !matches!(pdu_type, 0x06 | 0x07) {
            return Err(WspDecodeError::NotPush(*pdu_type));
        }
        let (hlen, used) = read_uintvar(rest)?;
        let rest = &rest[used..];
        let hlen = hlen as usize;
        if hlen > rest.len() {
            return Err(WspDecodeError::Truncated);
        }
        let (all_headers, body) = rest.split_at(hlen);
        let (content_type, ct_len) = read_content_type(all_headers)?;
        let headers = all_headers.get(ct_len..).ok_or(WspDecodeError::Truncated)?;
        Ok(Self {
            tid: *tid,
            pdu_type: *pdu_type,
            content_type,
            headers,
            body,
        })
    }
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
    fn parse_round_trips() {
        let pdu = push_pdu(9, &PushHeaders::kannel(CT_SLC), b"body");
        let p = PushPdu::parse(&pdu).unwrap();
        assert_eq!((p.tid, p.pdu_type), (9, PDU_PUSH));
        assert_eq!(p.content_type, ContentType::WellKnown(CT_SLC));
        assert_eq!(p.headers, [0x8D, 0x84, 0xC3, 0x93]);
        assert_eq!(p.body, b"body");
        // General form: value-length 3, text media "a/b" would need 4; use short int + param.
        let general = [1, 6, 4, 0x03, 0xAE, 0x81, 0x83, b'x'];
        let p = PushPdu::parse(&general).unwrap();
        assert_eq!(p.content_type, ContentType::WellKnown(CT_SIC));
        assert!(p.headers.is_empty());
        assert_eq!(p.body, b"x");
        assert_eq!(PushPdu::parse(&[1, 4, 0]), Err(WspDecodeError::NotPush(4)));
        assert_eq!(
            PushPdu::parse(&[1, 6, 5, 0xAE]),
            Err(WspDecodeError::Truncated)
        );
        assert_eq!(
            PushPdu::parse(&[1, 6, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]),
            Err(WspDecodeError::BadUintvar)
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

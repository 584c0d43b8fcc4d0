//! multipart/related (RFC 2387) as MM7 carries it: the SOAP envelope as the root part, the
//! MMS content as a second part that is itself a multipart (nested `multipart/related` or
//! `multipart/mixed`).
//!
//! Builder and parser are our own, over byte slices: the usual Rust MIME parsers (multer) are
//! async stream readers, which this sans-IO crate cannot use, and MM7 needs only a small subset
//! (boundary, Content-Type parameters, Content-ID, Content-Location, base64 / 8bit / binary).
//! The parser never panics and bounds nesting at [`MAX_DEPTH`].

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Deepest multipart nesting the parser follows (envelope → content → one more level).
pub const MAX_DEPTH: usize = 4;

/// Why a body could not be built or parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MimeError {
    #[error("Content-Type has no boundary parameter")]
    NoBoundary,
    #[error("boundary must be 1..=70 characters without CR, LF or quotes")]
    BadBoundary,
    #[error("a part's body contains the boundary delimiter")]
    BoundaryInBody,
    #[error("no opening boundary delimiter")]
    NoOpeningDelimiter,
    #[error("no closing boundary delimiter")]
    NoClosingDelimiter,
    #[error("part headers not terminated by an empty line")]
    UnterminatedHeaders,
    #[error("invalid base64 in a part body")]
    Base64,
    #[error("unsupported Content-Transfer-Encoding {0:?}")]
    UnsupportedEncoding(String),
    #[error("multipart nested deeper than {MAX_DEPTH}")]
    TooDeep,
}

/// How a part's body travels on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferEncoding {
    Base64,
    EightBit,
    Binary,
}

impl TransferEncoding {
    fn name(self) -> &'static str {
        match self {
            Self::Base64 => "base64",
            Self::EightBit => "8bit",
            Self::Binary => "binary",
        }
    }
}

/// One part: its headers of interest and its decoded body. `nested` holds the parts of a
/// multipart body (filled by the parser; the builder takes a body already built).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub content_type: String,
    /// Without the angle brackets.
    pub content_id: Option<String>,
    pub content_location: Option<String>,
    pub transfer_encoding: TransferEncoding,
    pub body: Vec<u8>,
    pub nested: Vec<Self>,
}

impl Part {
    /// A part sent as-is (`binary` for arbitrary bytes, `8bit` for text).
    pub fn new(content_type: &str, encoding: TransferEncoding, body: Vec<u8>) -> Self {
        Self {
            content_type: content_type.to_owned(),
            content_id: None,
            content_location: None,
            transfer_encoding: encoding,
            body,
            nested: Vec::new(),
        }
    }

    pub fn with_content_id(mut self, id: &str) -> Self {
        self.content_id = Some(id.to_owned());
        self
    }

    pub fn with_content_location(mut self, location: &str) -> Self {
        self.content_location = Some(location.to_owned());
        self
    }
}

/// A built body and the Content-Type header value (with boundary, type= and start=) to send
/// with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    pub content_type: String,
    pub body: Vec<u8>,
}

/// Builds `multipart/related; boundary=…; type="root_type"; start="<first part's Content-ID>"`.
/// The first part is the root (RFC 2387); `start` is omitted when it has no Content-ID.
pub fn build_related(boundary: &str, root_type: &str, parts: &[Part]) -> Result<Built, MimeError> {
    check_boundary(boundary)?;
    let mut content_type =
        format!("multipart/related; boundary=\"{boundary}\"; type=\"{root_type}\"");
    if let Some(id) = parts.first().and_then(|p| p.content_id.as_deref()) {
        content_type.push_str(&format!("; start=\"<{id}>\""));
    }
    let delimiter = format!("--{boundary}");
    let mut body = Vec::new();
    for part in parts {
        let encoded = match part.transfer_encoding {
            TransferEncoding::Base64 => wrap76(&STANDARD.encode(&part.body)),
            _ => part.body.clone(),
        };
        if find(&encoded, delimiter.as_bytes()).is_some() {
            return Err(MimeError::BoundaryInBody);
        }
        body.extend_from_slice(
            format!("{delimiter}\r\nContent-Type: {}\r\n", part.content_type).as_bytes(),
        );
        if let Some(id) = &part.content_id {
            body.extend_from_slice(format!("Content-ID: <{id}>\r\n").as_bytes());
        }
        if let Some(location) = &part.content_location {
            body.extend_from_slice(format!("Content-Location: {location}\r\n").as_bytes());
        }
        body.extend_from_slice(
            format!(
                "Content-Transfer-Encoding: {}\r\n\r\n",
                part.transfer_encoding.name()
            )
            .as_bytes(),
        );
        body.extend_from_slice(&encoded);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("{delimiter}--\r\n").as_bytes());
    Ok(Built { content_type, body })
}

/// An MM7 message with content (SubmitReq, DeliverReq, ReplaceReq): the SOAP envelope `xml`
/// as the root part (Content-ID `envelope_id`, UTF-8, 8bit) followed by `content`, whose
/// Content-ID the envelope's `<Content href="cid:…">` names (SOAP with attachments, as MM7 binds it).
pub fn build_soap_with_content(
    boundary: &str,
    envelope_id: &str,
    xml: String,
    content: Part,
) -> Result<Built, MimeError> {
    let envelope = Part::new(
        "text/xml; charset=utf-8",
        TransferEncoding::EightBit,
        xml.into_bytes(),
    )
    .with_content_id(envelope_id);
    build_related(boundary, "text/xml", &[envelope, content])
}

/// Parses a multipart body given its Content-Type header value. Multipart parts are parsed
/// recursively into [`Part::nested`].
pub fn parse(content_type: &str, body: &[u8]) -> Result<Vec<Part>, MimeError> {
    parse_at(content_type, body, 0)
}

/// A parameter of a structured header value (`boundary`, `type`, `start`, `charset`),
/// unquoted; names compare case-insensitively.
pub fn header_param(value: &str, name: &str) -> Option<String> {
    let mut rest = value.split_once(';')?.1;
    loop {
        let (key, after) = rest.split_once('=')?;
        let after = after.trim_start();
        let (val, next) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted.find('"')?;
            let next = quoted[end + 1..].split_once(';').map_or("", |(_, n)| n);
            (quoted[..end].to_owned(), next)
        } else {
            let (v, n) = after.split_once(';').unwrap_or((after, ""));
            (v.trim().to_owned(), n)
        };
        if key.trim().eq_ignore_ascii_case(name) {
            return Some(val);
        }
        if next.is_empty() {
            return None;
        }
        rest = next;
    }
}

/// The media type of a header value, lower-cased, without parameters.
pub fn media_type(value: &str) -> String {
    value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

fn parse_at(content_type: &str, body: &[u8], depth: usize) -> Result<Vec<Part>, MimeError> {
    if depth >= MAX_DEPTH {
        return Err(MimeError::TooDeep);
    }
    let boundary = header_param(content_type, "boundary").ok_or(MimeError::NoBoundary)?;
    check_boundary(&boundary)?;
    let delimiter = format!("--{boundary}");
    let delimiter = delimiter.as_bytes();
    // The opening delimiter starts the body or a line (a preamble may precede it).
    let mut at = match find(body, delimiter) {
        Some(0) => 0,
        _ => find(body, &[b"\n", delimiter].concat())
            .map(|i| i + 1)
            .ok_or(MimeError::NoOpeningDelimiter)?,
    };
    let mut parts = Vec::new();
    loop {
        let after = &body[at + delimiter.len()..];
        if after.starts_with(b"--") {
            return Ok(parts);
        }
        // Transport padding up to the end of the delimiter line.
        let line_end = find(after, b"\n").ok_or(MimeError::NoClosingDelimiter)?;
        let start = at + delimiter.len() + line_end + 1;
        let next = find(&body[start..], &[b"\n", delimiter].concat())
            .ok_or(MimeError::NoClosingDelimiter)?;
        let mut content = &body[start..start + next];
        if content.ends_with(b"\r") {
            content = &content[..content.len() - 1];
        }
        parts.push(parse_part(content, depth)?);
        at = start + next + 1;
    }
}

fn parse_part(raw: &[u8], depth: usize) -> Result<Part, MimeError> {
    let (head, body) = if raw.starts_with(b"\r\n") {
        (&raw[..0], &raw[2..])
    } else if raw.starts_with(b"\n") {
        (&raw[..0], &raw[1..])
    } else if let Some(i) = find(raw, b"\r\n\r\n") {
        (&raw[..i], &raw[i + 4..])
    } else if let Some(i) = find(raw, b"\n\n") {
        (&raw[..i], &raw[i + 2..])
    } else {
        return Err(MimeError::UnterminatedHeaders);
    };
    let mut part = Part::new("text/plain", TransferEncoding::EightBit, Vec::new());
    let mut encoding = String::from("7bit");
    for (name, value) in headers(head) {
        match name.to_ascii_lowercase().as_str() {
            "content-type" => part.content_type = value,
            "content-id" => {
                part.content_id = Some(
                    value
                        .trim_start_matches('<')
                        .trim_end_matches('>')
                        .to_owned(),
                )
            }
            "content-location" => part.content_location = Some(value),
            "content-transfer-encoding" => encoding = value.to_ascii_lowercase(),
            _ => {}
        }
    }
    part.transfer_encoding = match encoding.as_str() {
        "base64" => TransferEncoding::Base64,
        "binary" => TransferEncoding::Binary,
        "7bit" | "8bit" => TransferEncoding::EightBit,
        other => return Err(MimeError::UnsupportedEncoding(other.to_owned())),
    };
    part.body = match part.transfer_encoding {
        TransferEncoding::Base64 => {
            let clean: Vec<u8> = body
                .iter()
                .copied()
                .filter(|b| !b.is_ascii_whitespace())
                .collect();
            STANDARD.decode(clean).map_err(|_| MimeError::Base64)?
        }
        _ => body.to_vec(),
    };
    if media_type(&part.content_type).starts_with("multipart/") {
        part.nested = parse_at(&part.content_type, &part.body, depth + 1)?;
    }
    Ok(part)
}

/// Header lines, unfolded (continuation lines start with space or tab); lines without a colon
/// are skipped. Non-UTF-8 bytes are replaced: MIME headers are ASCII.
fn headers(head: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(head);
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = out.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            out.push((name.trim().to_owned(), value.trim().to_owned()));
        }
    }
    out
}

fn check_boundary(boundary: &str) -> Result<(), MimeError> {
    let ok = (1..=70).contains(&boundary.len()) && !boundary.contains(['\r', '\n', '"']);
    if ok {
        Ok(())
    } else {
        Err(MimeError::BadBoundary)
    }
}

/// base64 in lines of 76 characters (RFC 2045 §6.8).
fn wrap76(encoded: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded.len() + encoded.len() / 38);
    for (i, chunk) in encoded.as_bytes().chunks(76).enumerate() {
        if i > 0 {
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(chunk);
    }
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || needle.len() > haystack.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_param_reads_quoted_and_bare_values() {
        let ct = "multipart/related; boundary=abc; type=\"text/xml\"; start=\"<soap>\"";
        assert_eq!(header_param(ct, "BOUNDARY").as_deref(), Some("abc"));
        assert_eq!(header_param(ct, "type").as_deref(), Some("text/xml"));
        assert_eq!(header_param(ct, "start").as_deref(), Some("<soap>"));
        assert_eq!(header_param(ct, "charset"), None);
    }

    #[test]
    fn builder_refuses_boundary_inside_a_body() {
        let part = Part::new(
            "text/plain",
            TransferEncoding::Binary,
            b"x\r\n--b\r\n".to_vec(),
        );
        assert_eq!(
            build_related("b", "text/xml", &[part]),
            Err(MimeError::BoundaryInBody)
        );
    }
}

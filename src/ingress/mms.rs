//! MMS at ingress: the `parts` / `subject` / `smil` of `kind: "mms"` messages.
//!
//! Job, in two steps:
//! - [`draft`] (pure, inside per-line validation): check the parts — exactly one of
//!   `base64`, `text`, `url` each, known content types, base64 that decodes, names — and keep
//!   them as a [`Draft`]. Errors name the line's field (`parts[1].base64`).
//! - [`resolve`] (async, after screening, before the rate charge): fetch URL parts (http/https,
//!   at most [`FETCH_TIMEOUT`], [`MAX_REDIRECTS`] redirects, bounded by the channel's size
//!   limit), build the content (`multipart/related`, SMIL root; a SMIL is generated when the
//!   client gave none), check it against the channel's limit AFTER encoding, and write it to the
//!   store's content files durably — so the store owns the content before the 202. The
//!   message then carries only `Payload::Mms` (digest, size, type, subject).
//!
//! The body is deterministic for equal parts (the boundary is derived from the parts'
//! digest), so one MMS sent to many recipients — in one request or many — is one content.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use base64::Engine as _;
use futures::StreamExt as _;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use sluice_protocols::mm7::mime::{self, Part as MimePart, TransferEncoding};

use super::batch::{BatchError, Item};
use super::message::{FieldError, Payload, check_url};
use crate::store::{ContentPin, GatewayStore};

/// Size limit of an MMS's encoded content when its channel sets none (300 KB, the common
/// MMSC ceiling): the MM7 channel config's default, so both sides hold one number.
pub use crate::config::MM7_DEFAULT_MAX_CONTENT_BYTES as DEFAULT_MAX_CONTENT_BYTES;
/// Longest wait for one URL part (connect, redirects and body).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Most redirects followed while fetching a URL part.
pub const MAX_REDIRECTS: usize = 3;
/// Most parts per MMS (media and text; the SMIL not counted).
pub const MAX_PARTS: usize = 20;
/// Longest subject in characters.
pub const MAX_SUBJECT: usize = 160;
/// Longest part name in bytes.
pub const MAX_NAME: usize = 64;

/// Media types a part may have (the MMS content classes' formats).
const MEDIA_TYPES: [&str; 17] = [
    "image/jpeg",
    "image/jpg",
    "image/png",
    "image/gif",
    "image/bmp",
    "image/vnd.wap.wbmp",
    "audio/amr",
    "audio/mpeg",
    "audio/mp4",
    "audio/midi",
    "audio/x-wav",
    "video/3gpp",
    "video/mp4",
    "text/plain",
    "text/x-vcard",
    "text/x-vcalendar",
    "application/octet-stream",
];

/// A part exactly as the client sent it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WirePart {
    /// Media type (`image/jpeg`, `text/plain;charset=utf-8`); optional for text and URL parts.
    #[serde(default)]
    pub content_type: Option<String>,
    /// File name, used as Content-Location and as the SMIL `src`.
    #[serde(default)]
    pub name: Option<String>,
    /// Inline media, standard base64.
    #[serde(default)]
    pub base64: Option<String>,
    /// Inline text (UTF-8).
    #[serde(default)]
    pub text: Option<String>,
    /// Media fetched by sluice at ingress.
    #[serde(default)]
    pub url: Option<String>,
}

/// Where a part's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Source {
    /// Given inline (decoded base64, or text as UTF-8).
    Inline(Vec<u8>),
    /// To fetch at ingress.
    Url(String),
}

/// One checked part.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DraftPart {
    /// Media type as given (`None`: a URL part whose response names it).
    pub content_type: Option<String>,
    /// Name (given, or `partN.ext`).
    pub name: String,
    /// The bytes or where to get them.
    pub source: Source,
}

/// A checked MMS, its URL parts not fetched yet.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Draft {
    /// Subject line.
    pub subject: Option<String>,
    /// Parts in slide order.
    pub parts: Vec<DraftPart>,
    /// The client's SMIL, if any.
    pub smil: Option<String>,
}

fn err(field: impl Into<String>, reason: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        reason: reason.into(),
    }
}

/// Checks the MMS fields of one message.
///
/// # Errors
/// The first field at fault (`subject`, `parts`, `parts[i].…`, `smil`).
pub fn draft(
    subject: Option<String>,
    parts: Option<Vec<WirePart>>,
    smil: Option<String>,
) -> Result<Draft, FieldError> {
    if let Some(s) = &subject {
        let n = s.chars().count();
        if n > MAX_SUBJECT {
            return Err(err(
                "subject",
                format!("{n} characters exceed {MAX_SUBJECT}"),
            ));
        }
        if s.chars().any(char::is_control) {
            return Err(err("subject", "contains control characters"));
        }
    }
    let parts = parts.unwrap_or_default();
    if parts.is_empty() {
        return Err(err("parts", "empty: an MMS needs at least one part"));
    }
    if parts.len() > MAX_PARTS {
        return Err(err(
            "parts",
            format!("{} parts exceed {MAX_PARTS}", parts.len()),
        ));
    }
    let mut out = Vec::with_capacity(parts.len());
    for (i, p) in parts.into_iter().enumerate() {
        let at = |f: &str| format!("parts[{i}].{f}");
        let given = [p.base64.is_some(), p.text.is_some(), p.url.is_some()];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err(err(
                format!("parts[{i}]"),
                "give exactly one of base64, text, url",
            ));
        }
        if let Some(ct) = &p.content_type {
            check_media(ct).map_err(|r| err(at("content_type"), r))?;
        }
        let (content_type, source) = if let Some(b64) = p.base64 {
            let ct = p
                .content_type
                .ok_or_else(|| err(at("content_type"), "missing: required with base64"))?;
            let clean: Vec<u8> = b64.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
            let data = base64::engine::general_purpose::STANDARD
                .decode(&clean)
                .map_err(|e| err(at("base64"), format!("not base64: {e}")))?;
            if data.is_empty() {
                return Err(err(at("base64"), "empty"));
            }
            (Some(ct), Source::Inline(data))
        } else if let Some(text) = p.text {
            let ct = p
                .content_type
                .unwrap_or_else(|| "text/plain;charset=utf-8".to_owned());
            if !mime::media_type(&ct).starts_with("text/") {
                return Err(err(
                    at("content_type"),
                    format!("{ct:?} is not a text type"),
                ));
            }
            if text.is_empty() {
                return Err(err(at("text"), "empty text"));
            }
            (Some(ct), Source::Inline(text.into_bytes()))
        } else {
            let url = p.url.unwrap_or_default();
            check_url(&url).map_err(|r| err(at("url"), r))?;
            (p.content_type, Source::Url(url))
        };
        let name = match p.name {
            Some(n) => {
                check_name(&n).map_err(|r| err(at("name"), r))?;
                n
            }
            None => format!(
                "part{}.{}",
                i + 1,
                extension(content_type.as_deref().unwrap_or(""))
            ),
        };
        if out.iter().any(|q: &DraftPart| q.name == name) {
            return Err(err(at("name"), format!("{name:?} names two parts")));
        }
        out.push(DraftPart {
            content_type,
            name,
            source,
        });
    }
    if let Some(s) = &smil
        && !s.contains("<smil")
    {
        return Err(err("smil", "not a SMIL document (no <smil> element)"));
    }
    Ok(Draft {
        subject,
        parts: out,
        smil,
    })
}

fn check_media(ct: &str) -> Result<(), String> {
    let m = mime::media_type(ct);
    if ct.contains(['\r', '\n']) || !MEDIA_TYPES.contains(&m.as_str()) {
        return Err(format!("unknown content type {ct:?}"));
    }
    Ok(())
}

fn check_name(n: &str) -> Result<(), String> {
    if n.is_empty() || n.len() > MAX_NAME {
        return Err(format!("length {} outside 1..={MAX_NAME}", n.len()));
    }
    if !n
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    {
        return Err(format!("{n:?}: use letters, digits, '.', '-', '_'"));
    }
    Ok(())
}

fn extension(ct: &str) -> &'static str {
    match mime::media_type(ct).as_str() {
        "image/jpeg" | "image/jpg" => "jpg",
        "image/png" => "png",
        "image/gif" => "gif",
        "image/bmp" => "bmp",
        "image/vnd.wap.wbmp" => "wbmp",
        "audio/amr" => "amr",
        "audio/mpeg" => "mp3",
        "audio/mp4" => "m4a",
        "audio/midi" => "mid",
        "audio/x-wav" => "wav",
        "video/3gpp" => "3gp",
        "video/mp4" => "mp4",
        "text/plain" => "txt",
        "text/x-vcard" => "vcf",
        "text/x-vcalendar" => "vcs",
        _ => "bin",
    }
}

/// One part with its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyPart {
    /// Media type.
    pub content_type: String,
    /// Name (Content-Location, SMIL `src`).
    pub name: String,
    /// Bytes.
    pub data: Vec<u8>,
}

/// The content's `Content-Type` and MIME body.
pub type Content = mime::Built;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The SMIL sluice writes when the client gave none: one slide (`<par>`) per image or video,
/// each followed by the text parts after it (a text before any image gets a slide of its
/// own); audio joins the current slide. Layout: an `Image` region above a `Text` region.
pub fn generate_smil(parts: &[ReadyPart]) -> String {
    #[derive(Default)]
    struct Slide<'a> {
        visual: Option<(&'static str, &'a str)>,
        audio: Option<&'a str>,
        text: Vec<&'a str>,
    }
    let mut slides: Vec<Slide<'_>> = Vec::new();
    for p in parts {
        let m = mime::media_type(&p.content_type);
        let new_slide = |s: &Vec<Slide<'_>>| s.is_empty();
        if m.starts_with("image/") || m.starts_with("video/") {
            let tag = if m.starts_with("image/") {
                "img"
            } else {
                "video"
            };
            slides.push(Slide {
                visual: Some((tag, &p.name)),
                ..Slide::default()
            });
        } else if m.starts_with("audio/") {
            if new_slide(&slides) || slides.last().is_some_and(|s| s.audio.is_some()) {
                slides.push(Slide::default());
            }
            if let Some(s) = slides.last_mut() {
                s.audio = Some(&p.name);
            }
        } else {
            if new_slide(&slides) {
                slides.push(Slide::default());
            }
            if let Some(s) = slides.last_mut() {
                s.text.push(&p.name);
            }
        }
    }
    let mut out = String::from(
        "<smil><head><layout><root-layout width=\"320\" height=\"480\"/>\
         <region id=\"Image\" left=\"0\" top=\"0\" width=\"320\" height=\"320\" fit=\"meet\"/>\
         <region id=\"Text\" left=\"0\" top=\"320\" width=\"320\" height=\"160\" fit=\"scroll\"/>\
         </layout></head><body>",
    );
    for s in &slides {
        out.push_str("<par dur=\"5000ms\">");
        if let Some((tag, name)) = s.visual {
            let _ = write!(out, "<{tag} src=\"{}\" region=\"Image\"/>", escape(name));
        }
        for t in &s.text {
            let _ = write!(out, "<text src=\"{}\" region=\"Text\"/>", escape(t));
        }
        if let Some(a) = s.audio {
            let _ = write!(out, "<audio src=\"{}\"/>", escape(a));
        }
        out.push_str("</par>");
    }
    out.push_str("</body></smil>");
    out
}

/// Builds the content: `multipart/related` with the SMIL as root (`type="application/smil"`,
/// `start=`), every part with a Content-ID and a Content-Location. Media travel base64, text
/// 8bit. The boundary is derived from the parts, so equal parts give an equal body.
///
/// # Errors
/// The builder's refusal (a part containing the boundary).
pub fn build(parts: &[ReadyPart], smil: Option<&str>) -> Result<Content, mime::MimeError> {
    let smil = smil.map_or_else(|| generate_smil(parts), str::to_owned);
    let mut h = Sha256::new();
    h.update(smil.as_bytes());
    for p in parts {
        h.update(p.content_type.as_bytes());
        h.update([0]);
        h.update(p.name.as_bytes());
        h.update([0]);
        h.update((p.data.len() as u64).to_be_bytes());
        h.update(&p.data);
    }
    let d = h.finalize();
    let boundary: String = d[..12]
        .iter()
        .fold(String::from("sluice-mms-"), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        });
    let mut mime_parts = Vec::with_capacity(parts.len() + 1);
    mime_parts.push(
        MimePart::new(
            "application/smil",
            TransferEncoding::EightBit,
            smil.into_bytes(),
        )
        .with_content_id("smil")
        .with_content_location("smil.xml"),
    );
    for p in parts {
        let enc = if mime::media_type(&p.content_type).starts_with("text/") {
            TransferEncoding::EightBit
        } else {
            TransferEncoding::Base64
        };
        mime_parts.push(
            MimePart::new(&p.content_type, enc, p.data.clone())
                .with_content_id(&p.name)
                .with_content_location(&p.name),
        );
    }
    mime::build_related(&boundary, "application/smil", &mime_parts)
}

/// What ingress needs for MMS, shared by every request: per-channel content limits and the
/// HTTP client that fetches URL parts.
#[derive(Debug, Clone)]
pub struct MmsIngress {
    /// Content size limit per channel name (bytes after encoding); channels not listed get
    /// [`DEFAULT_MAX_CONTENT_BYTES`]. `serve` fills it from the channels' config.
    pub max_content_bytes: HashMap<String, usize>,
    client: reqwest::Client,
}

/// Why the fetcher could not be built.
#[derive(Debug, thiserror::Error)]
#[error("MMS fetch client: {0}")]
pub struct FetcherError(String);

impl MmsIngress {
    /// Limits per channel; a client for URL parts (no redirects beyond [`MAX_REDIRECTS`],
    /// [`FETCH_TIMEOUT`] per fetch).
    ///
    /// # Errors
    /// The HTTP client cannot be built (TLS setup).
    pub fn new(max_content_bytes: HashMap<String, usize>) -> Result<Self, FetcherError> {
        crate::tls::install_provider();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::limited(MAX_REDIRECTS))
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|e| FetcherError(e.to_string()))?;
        Ok(Self {
            max_content_bytes,
            client,
        })
    }

    /// The content limit of `channel`.
    pub fn limit(&self, channel: Option<&str>) -> usize {
        channel
            .and_then(|c| self.max_content_bytes.get(c).copied())
            .unwrap_or(DEFAULT_MAX_CONTENT_BYTES)
    }

    /// GETs `url`, at most `max` bytes of body; the response's Content-Type too.
    async fn fetch(&self, url: &str, max: usize) -> Result<(Vec<u8>, Option<String>), String> {
        let resp = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| format!("fetching {url}: {e}"))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("fetching {url}: HTTP {}", status.as_u16()));
        }
        let ct = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if resp.content_length().is_some_and(|n| n > max as u64) {
            return Err(format!("{url}: larger than the limit of {max} bytes"));
        }
        let mut body = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| format!("fetching {url}: {e}"))?;
            if body.len() + chunk.len() > max {
                return Err(format!("{url}: larger than the limit of {max} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        if body.is_empty() {
            return Err(format!("{url}: empty body"));
        }
        Ok((body, ct))
    }
}

/// Resolves every MMS draft of `items`: fetches, builds, checks the size limit of the
/// message's channel (`channel_of`), and makes the content durable in `store`. Adds to `pins`
/// (also on error, for what was written before it) the pins to drop after the batch's commit
/// — or to hand to `Store::discard_content` when the batch is not stored. Equal drafts in one request are built and stored
/// once; a URL named by several parts is fetched once.
///
/// # Errors
/// [`BatchError::Invalid`] with the line and field (fetch failure, unknown fetched type,
/// content over the limit); [`BatchError::Body`] if the content store fails.
pub async fn resolve(
    mms: &MmsIngress,
    store: &GatewayStore,
    items: &mut [Item],
    channel_of: impl Fn(&super::message::Submission) -> Option<String>,
    pins: &mut Vec<ContentPin>,
) -> Result<(), ResolveError> {
    // By limit, then by draft: a lookup borrows the draft instead of copying its media.
    let mut built: HashMap<usize, HashMap<Draft, Payload>> = HashMap::new();
    let mut fetched: HashMap<String, (Vec<u8>, Option<String>)> = HashMap::new();
    for item in items.iter_mut() {
        let Some(draft) = item.submission.mms.take() else {
            continue;
        };
        let line = item.line;
        let invalid = |field: String, reason: String| {
            ResolveError::Invalid(BatchError::Invalid {
                line,
                error: err(field, reason),
            })
        };
        let limit = mms.limit(channel_of(&item.submission).as_deref());
        if let Some(p) = built.get(&limit).and_then(|m| m.get(&draft)) {
            item.submission.payload = p.clone();
            continue;
        }
        let mut ready = Vec::with_capacity(draft.parts.len());
        for (i, p) in draft.parts.iter().enumerate() {
            let (data, content_type) = match &p.source {
                Source::Inline(d) => (d.clone(), p.content_type.clone().unwrap_or_default()),
                Source::Url(url) => {
                    if !fetched.contains_key(url) {
                        let got = mms
                            .fetch(url, limit)
                            .await
                            .map_err(|r| invalid(format!("parts[{i}].url"), r))?;
                        fetched.insert(url.clone(), got);
                    }
                    let (data, served) = fetched.get(url).cloned().unwrap_or_default();
                    let ct = p.content_type.clone().or(served).ok_or_else(|| {
                        invalid(
                            format!("parts[{i}].content_type"),
                            "missing, and the URL's response names none".into(),
                        )
                    })?;
                    check_media(&ct).map_err(|r| invalid(format!("parts[{i}].url"), r))?;
                    (data, ct)
                }
            };
            ready.push(ReadyPart {
                content_type,
                name: p.name.clone(),
                data,
            });
        }
        let content = build(&ready, draft.smil.as_deref())
            .map_err(|e| invalid("parts".into(), e.to_string()))?;
        if content.body.len() > limit {
            return Err(invalid(
                "parts".into(),
                format!(
                    "content of {} bytes after encoding exceeds the channel's limit of {limit} bytes",
                    content.body.len()
                ),
            ));
        }
        let store2 = store.clone();
        let body = content.body;
        let pin = tokio::task::spawn_blocking(move || store2.put_content(&body))
            .await
            .map_err(|e| ResolveError::Content(e.to_string()))?
            .map_err(|e| {
                if e.is_no_space() {
                    ResolveError::NoSpace(e.to_string())
                } else {
                    ResolveError::Content(e.to_string())
                }
            })?;
        let payload = Payload::Mms {
            subject: draft.subject.clone(),
            content_type: content.content_type,
            digest: *pin.digest(),
            size: pin.size(),
        };
        pins.push(pin);
        built
            .entry(limit)
            .or_default()
            .insert(draft, payload.clone());
        item.submission.payload = payload;
    }
    Ok(())
}

/// Why [`resolve`] failed: a line's fault, or the content store's.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// A line is at fault (422).
    #[error(transparent)]
    Invalid(BatchError),
    /// Writing content failed (500; nothing acknowledged).
    #[error("content store: {0}")]
    Content(String),
    /// The content store's disk is full (503 with `Retry-After`; nothing acknowledged).
    #[error("content store: {0}")]
    NoSpace(String),
}

/// The placeholder payload of a validated MMS before [`resolve`] replaces it; the store
/// refuses nothing here, so accept checks `Submission::mms` is gone instead.
pub(crate) fn unresolved(subject: Option<String>) -> Payload {
    Payload::Mms {
        subject,
        content_type: String::new(),
        digest: [0; 32],
        size: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(ct: &str, name: &str, data: &[u8]) -> ReadyPart {
        ReadyPart {
            content_type: ct.into(),
            name: name.into(),
            data: data.to_vec(),
        }
    }

    #[test]
    fn generated_smil_has_a_slide_per_image_with_its_text() {
        let smil = generate_smil(&[
            part("image/jpeg", "a.jpg", b"x"),
            part("text/plain", "a.txt", b"hi"),
            part("image/png", "b.png", b"y"),
            part("text/plain", "b.txt", b"yo"),
        ]);
        assert_eq!(smil.matches("<par").count(), 2, "{smil}");
        let first = &smil[smil.find("<par").unwrap()..smil.find("</par>").unwrap()];
        assert!(first.contains("src=\"a.jpg\" region=\"Image\""));
        assert!(first.contains("src=\"a.txt\" region=\"Text\""));
        assert!(!first.contains("b.png"));
        assert!(smil.contains("region id=\"Image\"") && smil.contains("region id=\"Text\""));
    }

    #[test]
    fn build_is_deterministic_and_parses_back() {
        let parts = [
            part("image/jpeg", "a.jpg", &[0xFF, 0xD8, 0x00, 0x2D, 0x2D]),
            part("text/plain;charset=utf-8", "a.txt", "你好".as_bytes()),
        ];
        let a = build(&parts, None).unwrap();
        let b = build(&parts, None).unwrap();
        assert_eq!(a, b);
        assert!(a.content_type.contains("type=\"application/smil\""));
        assert!(a.content_type.contains("start=\"<smil>\""));
        let parsed = mime::parse(&a.content_type, &a.body).unwrap();
        assert_eq!(parsed.len(), 3);
        assert_eq!(parsed[0].content_type, "application/smil");
        assert_eq!(parsed[1].body, parts[0].data);
        assert_eq!(parsed[1].content_location.as_deref(), Some("a.jpg"));
        assert_eq!(parsed[2].body, parts[1].data);
        assert!(parsed.iter().all(|p| p.content_id.is_some()));
        // Other bytes, other body.
        let other = build(&[part("image/jpeg", "a.jpg", b"z")], None).unwrap();
        assert_ne!(other.body, a.body);
    }

    #[test]
    fn draft_errors_name_the_field() {
        let p = |f: fn(&mut WirePart)| {
            let mut w = WirePart::default();
            f(&mut w);
            draft(None, Some(vec![w]), None).expect_err("invalid").field
        };
        assert_eq!(
            draft(None, Some(vec![]), None).expect_err("empty").field,
            "parts"
        );
        assert_eq!(p(|_| {}), "parts[0]");
        assert_eq!(
            p(|w| {
                w.content_type = Some("image/jpeg".into());
                w.base64 = Some("not base64!".into());
            }),
            "parts[0].base64"
        );
        assert_eq!(
            p(|w| {
                w.content_type = Some("application/x-evil".into());
                w.base64 = Some("AAAA".into());
            }),
            "parts[0].content_type"
        );
        assert_eq!(
            p(|w| w.base64 = Some("AAAA".into())),
            "parts[0].content_type"
        );
        assert_eq!(p(|w| w.url = Some("ftp://x/y".into())), "parts[0].url");
        assert_eq!(
            p(|w| {
                w.text = Some("x".into());
                w.name = Some("a b".into());
            }),
            "parts[0].name"
        );
        let ok = draft(
            Some("Hi".into()),
            Some(vec![
                WirePart {
                    content_type: Some("image/gif".into()),
                    base64: Some("R0lG\nODlh".into()),
                    ..WirePart::default()
                },
                WirePart {
                    text: Some("hello".into()),
                    ..WirePart::default()
                },
            ]),
            None,
        )
        .expect("valid");
        assert_eq!(ok.parts[0].name, "part1.gif");
        assert_eq!(ok.parts[0].source, Source::Inline(b"GIF89a".to_vec()));
        assert_eq!(ok.parts[1].name, "part2.txt");
    }
}

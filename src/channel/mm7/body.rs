//! Reading an MM7 HTTP body, either way it travels: a bare SOAP envelope (`text/xml`, usual
//! for requests without content such as SubmitRsp and DeliveryReportReq) or
//! multipart/related whose root part is the envelope (`start=` names it by Content-ID; else
//! the first part, RFC 2387) and whose other parts are the content.

use sluice_protocols::mm7::mime::{self, MimeError, Part};
use sluice_protocols::mm7::soap::{self, Envelope, SoapError};

/// Why a body holds no readable envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// The multipart body does not parse.
    #[error("multipart body: {0}")]
    Mime(#[from] MimeError),
    /// A multipart body without parts.
    #[error("multipart body has no parts")]
    NoParts,
    /// The envelope does not decode.
    #[error("SOAP envelope: {0}")]
    Soap(#[from] SoapError),
}

/// A decoded body: the envelope and the parts besides the root (the content).
#[derive(Debug)]
pub struct Decoded {
    /// The SOAP envelope.
    pub envelope: Envelope,
    /// The other top-level parts (empty for a bare envelope).
    pub attachments: Vec<Part>,
}

/// Decodes `body` sent with `content_type` (`None` = no header: read it as XML).
///
/// # Errors
/// [`BodyError`] naming what is wrong; never panics on any input.
pub fn decode(content_type: Option<&str>, body: &[u8]) -> Result<Decoded, BodyError> {
    let ct = content_type.unwrap_or("text/xml");
    if !mime::media_type(ct).starts_with("multipart/") {
        return Ok(Decoded {
            envelope: soap::decode(body)?,
            attachments: Vec::new(),
        });
    }
    let mut parts = mime::parse(ct, body)?;
    let start = mime::header_param(ct, "start")
        .map(|s| s.trim_start_matches('<').trim_end_matches('>').to_owned());
    let root = start
        .and_then(|id| {
            parts
                .iter()
                .position(|p| p.content_id.as_deref() == Some(id.as_str()))
        })
        .unwrap_or(0);
    if parts.is_empty() {
        return Err(BodyError::NoParts);
    }
    let root = parts.remove(root);
    Ok(Decoded {
        envelope: soap::decode(&root.body)?,
        attachments: parts,
    })
}

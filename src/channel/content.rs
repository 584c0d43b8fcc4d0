//! A message's content as SMS parts, for every protocol: the encoding (the client's hint when
//! the protocol defines it and it carries the text, else the cheapest the channel allows) and
//! the split (text by encoding; binary with the client's UDH information elements kept in
//! every part). The protocols then wrap each part in their own request (`smpp/parts.rs`,
//! `cmpp/parts.rs`).

use sluice_protocols::sms::{
    self, Encoding, EncodingSet, SplitOptions, Udh, choose, split_binary, split_text,
};

use crate::channel::egress::Content;

/// Why content cannot be split (a permanent failure of the message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContentError {
    /// No allowed encoding carries the text.
    NoEncoding,
    /// Splitting failed (too many parts, UDH too long, …).
    Split(sms::SplitError),
    /// The client's UDH does not parse.
    Udh(sms::UdhError),
    /// Multimedia content cannot become SMS parts (an MMS routed to an SMS channel).
    NotSms,
}

/// The parts of `content`. `defined` says which encodings the protocol can name (a hint
/// outside it is ignored); `allowed` are those chosen from without a hint.
///
/// # Errors
/// [`ContentError`] when the content cannot go out as configured.
pub fn split_content(
    content: &Content,
    defined: impl Fn(Encoding) -> bool,
    allowed: EncodingSet,
    opts: &SplitOptions,
) -> Result<Vec<sms::Part>, ContentError> {
    match content {
        Content::Text { text, hint } => {
            let hinted = hint
                .filter(|e| defined(*e) && *e != Encoding::Binary && sms::encode(text, *e).is_ok());
            let encoding = match hinted {
                Some(e) => e,
                None => {
                    choose(text, allowed, opts.scheme)
                        .ok_or(ContentError::NoEncoding)?
                        .encoding
                }
            };
            split_text(text, encoding, opts).map_err(ContentError::Split)
        }
        Content::Binary { data, udh } => {
            let ies = match udh {
                Some(u) if !u.is_empty() => Udh::parse(u).map_err(ContentError::Udh)?.0.ies,
                _ => Vec::new(),
            };
            split_binary(data, &ies, opts).map_err(ContentError::Split)
        }
        Content::Mms(_) => Err(ContentError::NotSms),
    }
}

//! Errors of the `wap` module.

use crate::sms::SplitError;

/// A push document could not be encoded or sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WapError {
    /// A date is not `YYYY-MM-DDThh:mm:ssZ` (WAP-167 §8.2.1.1) or is out of range.
    #[error("invalid WAP date {0:?}, expected YYYY-MM-DDThh:mm:ssZ")]
    InvalidDate(String),
    /// A string contains NUL, which would end a WBXML inline string early.
    #[error("string contains NUL, which WBXML inline strings cannot carry")]
    NulInString,
    /// The WSP PDU does not fit the allowed number of SMS parts.
    #[error(transparent)]
    Split(#[from] SplitError),
}

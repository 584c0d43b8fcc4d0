//! MM7 (3GPP TS 23.140), the VASP side and the MMSC side, sans-IO: SOAP 1.1 envelopes inside multipart/related,
//! carried by HTTP POST (the caller's HTTP client and server move the bytes).
//!
//! - [`mime`]: the multipart/related builder and parser (our own, over byte slices).
//! - [`soap`]: encoding and decoding of the MM7 envelopes; REL-5-MM7-1-0 … REL-6-MM7-1-4.
//! - [`rs`]: the MMSC (relay/server) side: the envelopes an MMSC sends, and the requests only
//!   an MMSC reads (SubmitReq with Cc/Bcc, ReadReply, Cancel, Replace).
//! - [`status`]: MM7 status codes mapped to accept / retry / fail.

pub mod mime;
pub mod rs;
pub mod soap;
pub mod status;

pub use mime::{MimeError, Part, TransferEncoding};
pub use soap::{Address, Envelope, Message, SoapError, Status};
pub use status::{Disposition, StatusClass};

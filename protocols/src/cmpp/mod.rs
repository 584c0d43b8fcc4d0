//! CMPP 2.0 / 3.0 (China Mobile SP ↔ ISMG) codec: sans-IO, one code path for both versions.
//!
//! - [`header`]: the 12-byte header and the frame check (length bounds before buffering).
//! - [`Pdu`]: every SP↔ISMG PDU (CONNECT, TERMINATE, SUBMIT, DELIVER incl. status
//!   reports, QUERY, CANCEL, ACTIVE_TEST and their responses), decoded and encoded for a
//!   [`Version`] that supplies the widths that differ.
//! - [`MsgId`]: the packed 64-bit message id. [`auth`]: CONNECT authenticators.
//! - [`session`]: the SP (client) and ISMG (server) session state machines, sans-IO
//!   ([`SpSession`], [`IsmgSession`]).
//! - [`codes`]: command ids, CONNECT statuses, SUBMIT/DELIVER results, Msg_Fmt.
//! - Errors tell the caller what to answer ([`DecodeError::response`]); accepted
//!   deviations come back as [`Tolerated`] with each decoded PDU.
//! - [`view`]: SUBMIT read in place from a [`view::Frame`] split off the read buffer
//!   ([`SubmitRef`]: fields as slices of the frame, `to_owned()` for the owned [`Submit`]).
//! - `codec` (feature `tokio-codec`): `CmppCodec` for `tokio_util::codec::Framed`, and
//!   `CmppViewCodec` yielding [`view::Frame`]s.
//!
//! Invariants: decoding never panics, never allocates more than the frame it was given
//! (which is bounded by the caller's maximum length), and never reads a clock; for every
//! PDU `p` that encodes on a version `v`, decoding the bytes on `v` gives back `p` with an
//! empty `Tolerated` set.

pub mod auth;
mod cancel;
pub mod codes;
mod connect;
mod deliver;
pub mod error;
pub mod header;
mod link;
mod msg_id;
mod octets;
mod pdu;
mod query;
mod report;
pub mod session;
mod submit;
mod tolerated;
mod version;
pub mod view;

#[cfg(feature = "tokio-codec")]
mod codec;

pub use cancel::{Cancel, CancelResp};
#[cfg(feature = "tokio-codec")]
pub use codec::{CmppCodec, CmppViewCodec, CodecError, Frame};
pub use codes::{CommandId, ConnectStatus, MsgFmt, ResultCode};
pub use connect::{Connect, ConnectResp, negotiate};
pub use deliver::{Deliver, DeliverContent, DeliverResp};
pub use error::{DecodeError, DecodeErrorKind, EncodeError, FrameError};
pub use header::{DEFAULT_MAX_LENGTH, HEADER_LEN, Header};
pub use link::ActiveTestResp;
pub use msg_id::{MsgId, MsgIdError, MsgIdParts};
pub use octets::{FixedStr, TooLong};
pub use pdu::{DecodeOneError, Decoded, Pdu, decode_bytes, decode_frame};
pub use query::{Query, QueryResp};
pub use report::StatusReport;
pub use session::{
    CloseReason, ConfigError, ConnectRequest, DeliverRefuseReason, DeliverRefused, IsmgAuth,
    IsmgCloseReason, IsmgConfig, IsmgEvent, IsmgSession, IsmgState, RefuseReason, SpConfig,
    SpEvent, SpSession, SpState, SubmitRefused, Transmit,
};
pub use submit::{MAX_DESTINATIONS, Submit, SubmitResp};
pub use tolerated::{Tolerance, Tolerated};
pub use version::Version;
pub use view::{DecodedRef, PduRef, SubmitRef};

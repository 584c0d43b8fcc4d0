//! SMPP 3.4 / 5.0: sans-IO PDU codec, TLVs and delivery receipts.
//!
//! # Using it
//! - Framing: [`check`]`(buf, max_len)` says whether `buf` starts with a whole PDU
//!   (`Ok(Some(len))`), needs more bytes (`Ok(None)`), or announces a length we refuse
//!   (below 16 or above `max_len`, default [`DEFAULT_MAX_LEN`]), before any allocation.
//! - Decoding: [`decode`]`(Bytes)` / [`decode_slice`]`(&[u8])` turn exactly one PDU into a
//!   [`Decoded`] = [`Command`] `{ status, sequence, pdu }` + the [`Tolerated`] deviations.
//!   String fields are [`Octets`]: inline when short, zero-copy `Bytes` slices when long.
//! - Errors: [`DecodeError::response`] gives the PDU to answer (generic_nack
//!   ESME_RINVCMDLEN / ESME_RINVCMDID, or the request's own response with ESME_RINVMSGLEN…).
//! - Encoding: [`Command::encode`] / [`encode`] compute the length (validating every field)
//!   then write once into a `BytesMut`. Encoding is strict; decoding is tolerant.
//! - Receipts: [`DeliveryReport::from_sm`], [`ReceiptText`], and [`canonical_id`] for
//!   matching hex/decimal ids.
//! - Sessions: [`session::smsc`] is the message-center side of a bind as a sans-IO state
//!   machine (binds, windows, enquire_link, unbind).
//! - Socket path without building owned values: [`Frame::split`] cuts a PDU off the read
//!   buffer, [`Frame::view`] reads submit_sm / deliver_sm in place ([`SmRef`]: slices of the
//!   frame, TLVs and receipt text parsed on demand, [`SmRef::to_owned`] for the owned form),
//!   [`DeliveryReport::from_sm_ref`] reads a receipt from it.
//! - With feature `tokio-codec`: [`SmppCodec`], [`SmppFrameCodec`] and `SmppViewCodec`
//!   (yields [`Frame`]s).
//!
//! # Invariants
//! Decoders never panic, never loop without consuming, and never allocate more than the
//! announced `command_length` (plus small vectors bounded by it). Derived lengths
//! (`command_length`, `sm_length`, `number_of_dests`, `no_unsuccess`, TLV lengths) are never
//! stored, so they cannot disagree with the data. TLVs are kept raw and in order, so every
//! conforming PDU re-encodes byte-identically (see [`pdu`] for the one documented exception).

mod address;
mod alert_notification;
mod bind;
mod cancel_sm;
#[cfg(feature = "tokio-codec")]
mod codec;
mod command_id;
mod command_status;
mod data_sm;
pub mod dlr;
mod error;
mod header;
pub mod message_id;
mod octets;
pub mod pdu;
mod query_sm;
mod replace_sm;
pub mod session;
mod sm;
mod submit_multi;
mod table;
pub mod tlv;
mod tolerated;
pub mod view;
mod wire;

pub use address::Address;
pub use alert_notification::AlertNotification;
pub use bind::{Bind, BindResp, INTERFACE_VERSION_34, INTERFACE_VERSION_50, Outbind};
pub use cancel_sm::CancelSm;
#[cfg(feature = "tokio-codec")]
pub use codec::{CodecError, SmppCodec, SmppFrameCodec, SmppViewCodec};
pub use command_id::CommandId;
pub use command_status::CommandStatus;
pub use data_sm::DataSm;
pub use dlr::{DeliveryReport, ReceiptDate, ReceiptStat, ReceiptText};
pub use error::{BodyError, DecodeError, EncodeError, FrameError};
pub use header::{DEFAULT_MAX_LEN, HEADER_LEN, Header, check};
pub use message_id::{CanonicalId, IdFormat, canonical_id};
pub use octets::Octets;
pub use pdu::{Command, Decoded, Pdu, decode, decode_slice, encode};
pub use query_sm::{QuerySm, QuerySmResp};
pub use replace_sm::ReplaceSm;
pub use sm::{
    DeliverSm, ESM_CLASS_DELIVERY_RECEIPT, ESM_CLASS_TYPE_MASK, ESM_CLASS_UDHI, MessageIdResp, Sm,
    SubmitSm,
};
pub use submit_multi::{DestAddress, SubmitMulti, SubmitMultiResp, UnsuccessSme};
pub use tlv::{MessageState, NetworkErrorCode, Tlv, Tlvs};
pub use tolerated::Tolerated;
pub use view::{
    AddressRef, DecodedRef, DeliverSmRef, Frame, PduRef, SmRef, SubmitSmRef, TlvIter, TlvsRef,
};

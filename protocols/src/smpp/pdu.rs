//! The [`Command`] (header fields + [`Pdu`]) and the one-PDU decode / encode entry points.
//!
//! Decoding takes exactly one PDU (use [`super::check`] to find it in a stream buffer); string
//! fields become [`super::Octets`]: short ones copied inline, long ones (short_message,
//! message_payload) zero-copy slices of the input `Bytes`. Encoding
//! computes the total length first (validating every field), reserves once and writes once:
//! a command that fails validation writes nothing.
//!
//! Responses whose `command_status` is non-zero may come with no body (SMPP 3.4 §4.4.2):
//! we decode them to the body's `Default`, and we encode a non-zero-status response whose
//! body equals `Default` with no body at all. This is the one case in which
//! `encode(decode(bytes))` differs from `bytes` (a peer that sends `"\0"` as the body of an
//! error response gets it back as an empty body).

use bytes::{BufMut, Bytes, BytesMut};

use super::alert_notification::AlertNotification;
use super::bind::{Bind, BindResp, Outbind};
use super::cancel_sm::CancelSm;
use super::command_id::CommandId;
use super::command_status::CommandStatus;
use super::data_sm::DataSm;
use super::error::{BodyError, DecodeError, EncodeError, FrameError};
use super::header::{HEADER_LEN, Header};
use super::query_sm::{QuerySm, QuerySmResp};
use super::replace_sm::ReplaceSm;
use super::sm::{MessageIdResp, Sm};
use super::submit_multi::{SubmitMulti, SubmitMultiResp};
use super::tolerated::Tolerated;
use super::wire::Reader;

/// Decode / length / encode of one PDU body.
pub(crate) trait Body: Sized {
    fn decode(r: &mut Reader<'_>) -> Result<Self, BodyError>;
    fn encoded_len(&self) -> Result<usize, EncodeError>;
    fn encode(&self, buf: &mut BytesMut);
}

/// Decodes a response body, accepting an empty one.
fn decode_resp<T: Body + Default>(r: &mut Reader, status: u32) -> Result<T, BodyError> {
    if r.is_empty() {
        if status == 0 {
            r.tolerated |= Tolerated::EMPTY_RESPONSE_BODY;
        }
        return Ok(T::default());
    }
    T::decode(r)
}

/// Body length of a response: none for an error response with a default body.
fn resp_len<T: Body + Default + PartialEq>(v: &T, status: u32) -> Result<usize, EncodeError> {
    if status != 0 && *v == T::default() {
        return Ok(0);
    }
    v.encoded_len()
}

macro_rules! pdus {
    (
        requests { $( $rv:ident($rt:ty) = $rid:ident; )* }
        responses { $( $sv:ident($st:ty) = $sid:ident; )* }
        empty { $( $uv:ident = $uid:ident; )* }
    ) => {
        /// One SMPP PDU body, by command.
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum Pdu {
            $( #[doc = concat!("`", stringify!($rid), "`")] $rv($rt), )*
            $( #[doc = concat!("`", stringify!($sid), "`")] $sv($st), )*
            $( #[doc = concat!("`", stringify!($uid), "` (no body)")] $uv, )*
        }

        impl Pdu {
            /// The command id on the wire.
            pub const fn command_id(&self) -> CommandId {
                match self {
                    $( Self::$rv(_) => CommandId::$rid, )*
                    $( Self::$sv(_) => CommandId::$sid, )*
                    $( Self::$uv => CommandId::$uid, )*
                }
            }

            #[inline(always)]
            fn decode_body(
                id: CommandId,
                status: u32,
                r: &mut Reader,
            ) -> Option<Result<Self, BodyError>> {
                Some(match id {
                    $( CommandId::$rid => <$rt as Body>::decode(r).map(Self::$rv), )*
                    $( CommandId::$sid => decode_resp::<$st>(r, status).map(Self::$sv), )*
                    $( CommandId::$uid => {
                        r.ignore_rest();
                        Ok(Self::$uv)
                    } )*
                    _ => return None,
                })
            }

            fn body_len(&self, status: u32) -> Result<usize, EncodeError> {
                match self {
                    $( Self::$rv(v) => v.encoded_len(), )*
                    $( Self::$sv(v) => resp_len(v, status), )*
                    $( Self::$uv => Ok(0), )*
                }
            }

            fn encode_body(&self, body_len: usize, buf: &mut BytesMut) {
                if body_len == 0 {
                    return;
                }
                match self {
                    $( Self::$rv(v) => v.encode(buf), )*
                    $( Self::$sv(v) => v.encode(buf), )*
                    $( Self::$uv => {} )*
                }
            }
        }
    };
}

pdus! {
    requests {
        BindTransmitter(Bind) = BindTransmitter;
        BindReceiver(Bind) = BindReceiver;
        BindTransceiver(Bind) = BindTransceiver;
        Outbind(Outbind) = Outbind;
        SubmitSm(Sm) = SubmitSm;
        DeliverSm(Sm) = DeliverSm;
        DataSm(DataSm) = DataSm;
        SubmitMulti(SubmitMulti) = SubmitMulti;
        QuerySm(QuerySm) = QuerySm;
        CancelSm(CancelSm) = CancelSm;
        ReplaceSm(ReplaceSm) = ReplaceSm;
        AlertNotification(AlertNotification) = AlertNotification;
    }
    responses {
        BindTransmitterResp(BindResp) = BindTransmitterResp;
        BindReceiverResp(BindResp) = BindReceiverResp;
        BindTransceiverResp(BindResp) = BindTransceiverResp;
        SubmitSmResp(MessageIdResp) = SubmitSmResp;
        DeliverSmResp(MessageIdResp) = DeliverSmResp;
        DataSmResp(MessageIdResp) = DataSmResp;
        SubmitMultiResp(SubmitMultiResp) = SubmitMultiResp;
        QuerySmResp(QuerySmResp) = QuerySmResp;
    }
    empty {
        Unbind = Unbind;
        UnbindResp = UnbindResp;
        EnquireLink = EnquireLink;
        EnquireLinkResp = EnquireLinkResp;
        GenericNack = GenericNack;
        CancelSmResp = CancelSmResp;
        ReplaceSmResp = ReplaceSmResp;
    }
}

impl Pdu {
    /// The response to a request with this command id, with an empty/default body; `None`
    /// for responses and for requests that have no response (outbind, alert_notification).
    pub fn empty_response_for(id: CommandId) -> Option<Self> {
        Some(match id {
            CommandId::BindTransmitter => Self::BindTransmitterResp(BindResp::default()),
            CommandId::BindReceiver => Self::BindReceiverResp(BindResp::default()),
            CommandId::BindTransceiver => Self::BindTransceiverResp(BindResp::default()),
            CommandId::SubmitSm => Self::SubmitSmResp(MessageIdResp::default()),
            CommandId::DeliverSm => Self::DeliverSmResp(MessageIdResp::default()),
            CommandId::DataSm => Self::DataSmResp(MessageIdResp::default()),
            CommandId::SubmitMulti => Self::SubmitMultiResp(SubmitMultiResp::default()),
            CommandId::QuerySm => Self::QuerySmResp(QuerySmResp::default()),
            CommandId::CancelSm => Self::CancelSmResp,
            CommandId::ReplaceSm => Self::ReplaceSmResp,
            CommandId::Unbind => Self::UnbindResp,
            CommandId::EnquireLink => Self::EnquireLinkResp,
            _ => return None,
        })
    }
}

/// A whole SMPP command: header fields (length is derived) and the body.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Command {
    /// `command_status` (ESME_ROK in requests).
    pub status: CommandStatus,
    /// `sequence_number`, echoed by the response.
    pub sequence: u32,
    /// The body; its variant fixes `command_id`.
    pub pdu: Pdu,
}

/// A decoded command plus the deviations that were tolerated while decoding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The command.
    pub command: Command,
    /// What was bent (empty for a conforming PDU).
    pub tolerated: Tolerated,
}

impl Command {
    /// A command from its parts.
    pub const fn new(status: CommandStatus, sequence: u32, pdu: Pdu) -> Self {
        Self {
            status,
            sequence,
            pdu,
        }
    }

    /// A request (status ESME_ROK).
    pub const fn request(sequence: u32, pdu: Pdu) -> Self {
        Self::new(CommandStatus::EsmeRok, sequence, pdu)
    }

    /// The wire command id.
    pub const fn command_id(&self) -> CommandId {
        self.pdu.command_id()
    }

    /// Total encoded length including the header, validating every field.
    ///
    /// # Errors
    /// [`EncodeError`] when a field cannot be encoded strictly.
    pub fn encoded_len(&self) -> Result<usize, EncodeError> {
        let len = HEADER_LEN + self.pdu.body_len(self.status.to_u32())?;
        if len > u32::MAX as usize {
            return Err(EncodeError::TooLong {
                field: "command_length",
                len,
                max: u32::MAX as usize,
            });
        }
        Ok(len)
    }

    /// Appends the encoded command to `buf` (reserving once).
    ///
    /// # Errors
    /// [`EncodeError`] when a field cannot be encoded; nothing is written then.
    pub fn encode(&self, buf: &mut BytesMut) -> Result<(), EncodeError> {
        let len = self.encoded_len()?;
        buf.reserve(len);
        buf.put_u32(len as u32);
        buf.put_u32(self.command_id().to_u32());
        buf.put_u32(self.status.to_u32());
        buf.put_u32(self.sequence);
        self.pdu.encode_body(len - HEADER_LEN, buf);
        Ok(())
    }

    /// The encoded command as frozen `Bytes`.
    ///
    /// # Errors
    /// As [`Self::encode`].
    pub fn to_bytes(&self) -> Result<Bytes, EncodeError> {
        let mut buf = BytesMut::new();
        self.encode(&mut buf)?;
        Ok(buf.freeze())
    }
}

/// Appends `command` to `buf`; see [`Command::encode`].
///
/// # Errors
/// [`EncodeError`] when a field cannot be encoded strictly.
pub fn encode(command: &Command, buf: &mut BytesMut) -> Result<(), EncodeError> {
    command.encode(buf)
}

/// Decodes exactly one PDU; `pdu.len()` must equal its `command_length`.
///
/// String and octet fields are zero-copy slices of `pdu`.
///
/// # Errors
/// [`DecodeError`]; [`DecodeError::response`] says what to answer.
#[inline]
pub fn decode(pdu: Bytes) -> Result<Decoded, DecodeError> {
    let header = Header::read(&pdu).ok_or(FrameError::LengthMismatch {
        length: 0,
        actual: pdu.len(),
    })?;
    let length = header.command_length as usize;
    if length < HEADER_LEN {
        return Err(FrameError::TooShort {
            length: header.command_length,
            sequence: header.sequence,
        }
        .into());
    }
    if length != pdu.len() {
        return Err(FrameError::LengthMismatch {
            length: header.command_length,
            actual: pdu.len(),
        }
        .into());
    }
    let command_id = CommandId::from_u32(header.command_id);
    let mut r = Reader::new(&pdu, HEADER_LEN);
    let body = match Pdu::decode_body(command_id, header.command_status, &mut r) {
        None => {
            return Err(DecodeError::UnknownCommandId {
                id: header.command_id,
                sequence: header.sequence,
            });
        }
        Some(Err(error)) => {
            return Err(DecodeError::Body {
                command_id,
                sequence: header.sequence,
                error,
            });
        }
        Some(Ok(body)) => body,
    };
    Ok(Decoded {
        command: Command::new(
            CommandStatus::from_u32(header.command_status),
            header.sequence,
            body,
        ),
        tolerated: r.tolerated,
    })
}

/// Decodes exactly one PDU from a borrowed slice (copies it once into `Bytes`).
///
/// # Errors
/// As [`decode`].
pub fn decode_slice(pdu: &[u8]) -> Result<Decoded, DecodeError> {
    // Check the announced length before copying, so a bad frame costs no allocation.
    match Header::read(pdu) {
        Some(h) if h.command_length as usize == pdu.len() => decode(Bytes::copy_from_slice(pdu)),
        Some(h) if (h.command_length as usize) < HEADER_LEN => Err(FrameError::TooShort {
            length: h.command_length,
            sequence: h.sequence,
        }
        .into()),
        h => Err(FrameError::LengthMismatch {
            length: h.map_or(0, |h| h.command_length),
            actual: pdu.len(),
        }
        .into()),
    }
}

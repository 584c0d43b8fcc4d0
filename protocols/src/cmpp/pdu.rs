//! The PDU enum and the two entry points: decode one frame, encode one frame.
//!
//! Decoding is lenient in the documented ways ([`Tolerated`]) and never panics on any
//! input; encoding is strict: a value that the link's version cannot carry exactly is an
//! [`EncodeError`] and nothing is written.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::cancel::{Cancel, CancelResp};
use super::codes::CommandId;
use super::connect::{Connect, ConnectResp};
use super::deliver::{Deliver, DeliverResp};
use super::error::{DecodeError, DecodeErrorKind, EncodeError, FrameError};
use super::header::{self, HEADER_LEN, Header};
use super::link::ActiveTestResp;
use super::msg_id::MsgId;
use super::octets::Reader;
use super::query::{Query, QueryResp};
use super::submit::{Submit, SubmitResp};
use super::tolerated::Tolerated;
use super::version::Version;

/// One CMPP PDU body, by command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pdu {
    /// CMPP_CONNECT.
    Connect(Connect),
    /// CMPP_CONNECT_RESP.
    ConnectResp(ConnectResp),
    /// CMPP_TERMINATE (empty body).
    Terminate,
    /// CMPP_TERMINATE_RESP (empty body).
    TerminateResp,
    /// CMPP_SUBMIT (boxed: it is by far the largest variant).
    Submit(Box<Submit>),
    /// CMPP_SUBMIT_RESP.
    SubmitResp(SubmitResp),
    /// CMPP_DELIVER.
    Deliver(Box<Deliver>),
    /// CMPP_DELIVER_RESP.
    DeliverResp(DeliverResp),
    /// CMPP_QUERY.
    Query(Query),
    /// CMPP_QUERY_RESP.
    QueryResp(QueryResp),
    /// CMPP_CANCEL.
    Cancel(Cancel),
    /// CMPP_CANCEL_RESP.
    CancelResp(CancelResp),
    /// CMPP_ACTIVE_TEST (empty body).
    ActiveTest,
    /// CMPP_ACTIVE_TEST_RESP.
    ActiveTestResp(ActiveTestResp),
}

/// A decoded PDU with its header and the deviations that were accepted on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The header as received.
    pub header: Header,
    /// The body.
    pub pdu: Pdu,
    /// Empty for a PDU that followed the specification exactly.
    pub tolerated: Tolerated,
}

impl Pdu {
    /// The Command_Id this PDU is sent with.
    pub const fn command_id(&self) -> CommandId {
        match self {
            Self::Connect(_) => CommandId::Connect,
            Self::ConnectResp(_) => CommandId::ConnectResp,
            Self::Terminate => CommandId::Terminate,
            Self::TerminateResp => CommandId::TerminateResp,
            Self::Submit(_) => CommandId::Submit,
            Self::SubmitResp(_) => CommandId::SubmitResp,
            Self::Deliver(_) => CommandId::Deliver,
            Self::DeliverResp(_) => CommandId::DeliverResp,
            Self::Query(_) => CommandId::Query,
            Self::QueryResp(_) => CommandId::QueryResp,
            Self::Cancel(_) => CommandId::Cancel,
            Self::CancelResp(_) => CommandId::CancelResp,
            Self::ActiveTest => CommandId::ActiveTest,
            Self::ActiveTestResp(_) => CommandId::ActiveTestResp,
        }
    }

    /// Decodes the body of a frame whose header has been parsed. `body` must hold exactly
    /// `header.total_length - 12` bytes; content fields share its buffer (no copy).
    pub fn decode(header: Header, body: Bytes, version: Version) -> Result<Decoded, DecodeError> {
        let fail = |kind: DecodeErrorKind, msg_id: Option<MsgId>| DecodeError {
            header,
            msg_id,
            kind,
        };
        if header.total_length as usize != HEADER_LEN + body.len() {
            return Err(fail(
                DecodeErrorKind::FrameLength {
                    declared: header.total_length,
                    actual: HEADER_LEN + body.len(),
                },
                None,
            ));
        }
        let mut tolerated = Tolerated::none();
        let tol = &mut tolerated;
        let mut r = Reader::new(&body);
        let r = &mut r;
        let v = version;
        let pdu = match header.command_id {
            CommandId::Connect => Connect::decode(r, tol).map(Self::Connect),
            CommandId::ConnectResp => ConnectResp::decode(r, v, tol).map(Self::ConnectResp),
            CommandId::Terminate => empty(r, tol, Self::Terminate),
            CommandId::TerminateResp => empty(r, tol, Self::TerminateResp),
            CommandId::Submit => Submit::decode(r, v, tol).map(|s| Self::Submit(Box::new(s))),
            CommandId::SubmitResp => SubmitResp::decode(r, v, tol).map(Self::SubmitResp),
            CommandId::Deliver => Deliver::decode(r, v, tol).map(|d| Self::Deliver(Box::new(d))),
            CommandId::DeliverResp => DeliverResp::decode(r, v, tol).map(Self::DeliverResp),
            CommandId::Query => Query::decode(r, tol).map(Self::Query),
            CommandId::QueryResp => QueryResp::decode(r, tol).map(Self::QueryResp),
            CommandId::Cancel => Cancel::decode(r, tol).map(Self::Cancel),
            CommandId::CancelResp => CancelResp::decode(r, v, tol).map(Self::CancelResp),
            CommandId::ActiveTest => empty(r, tol, Self::ActiveTest),
            CommandId::ActiveTestResp => ActiveTestResp::decode(r, tol).map(Self::ActiveTestResp),
            _ => Err(DecodeErrorKind::UnknownCommand),
        };
        match pdu {
            Ok(pdu) => Ok(Decoded {
                header,
                pdu,
                tolerated,
            }),
            Err(kind) => {
                // A DELIVER_RESP must echo the Msg_Id even when the rest is malformed.
                let msg_id = body
                    .first_chunk::<8>()
                    .filter(|_| header.command_id == CommandId::Deliver)
                    .map(|b| MsgId(u64::from_be_bytes(*b)));
                Err(fail(kind, msg_id))
            }
        }
    }

    /// Total encoded length (header included) on a link of `version`, after the strict
    /// checks that [`Pdu::encode`] applies.
    pub fn encoded_len(&self, version: Version) -> Result<usize, EncodeError> {
        let v = version;
        let body = match self {
            Self::Connect(p) => p.body_len(v)?,
            Self::ConnectResp(p) => p.body_len(v)?,
            Self::Terminate | Self::TerminateResp | Self::ActiveTest => 0,
            Self::Submit(p) => p.body_len(v)?,
            Self::SubmitResp(p) => p.body_len(v)?,
            Self::Deliver(p) => p.body_len(v)?,
            Self::DeliverResp(p) => p.body_len(v)?,
            Self::Query(p) => p.body_len(v)?,
            Self::QueryResp(p) => p.body_len(v)?,
            Self::Cancel(p) => p.body_len(v)?,
            Self::CancelResp(p) => p.body_len(v)?,
            Self::ActiveTestResp(_) => 1,
        };
        Ok(HEADER_LEN + body)
    }

    /// Appends the whole frame (header + body) to `dst`. On error nothing is appended.
    pub fn encode(
        &self,
        sequence_id: u32,
        version: Version,
        dst: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        let total = self.encoded_len(version)?;
        let v = version;
        dst.reserve(total);
        let start = dst.len();
        dst.put_u32(total as u32);
        dst.put_u32(self.command_id().raw());
        dst.put_u32(sequence_id);
        match self {
            Self::Connect(p) => p.write(v, dst),
            Self::ConnectResp(p) => p.write(v, dst),
            Self::Terminate | Self::TerminateResp | Self::ActiveTest => {}
            Self::Submit(p) => p.write(v, dst),
            Self::SubmitResp(p) => p.write(v, dst),
            Self::Deliver(p) => p.write(v, dst),
            Self::DeliverResp(p) => p.write(v, dst),
            Self::Query(p) => p.write(v, dst),
            Self::QueryResp(p) => p.write(v, dst),
            Self::Cancel(p) => p.write(v, dst),
            Self::CancelResp(p) => p.write(v, dst),
            Self::ActiveTestResp(p) => p.write(dst),
        }
        debug_assert_eq!(dst.len() - start, total, "{:?} length", self.command_id());
        Ok(())
    }

    /// Convenience: the encoded frame as fresh `Bytes`.
    pub fn to_bytes(&self, sequence_id: u32, version: Version) -> Result<Bytes, EncodeError> {
        let mut dst = BytesMut::new();
        self.encode(sequence_id, version, &mut dst)?;
        Ok(dst.freeze())
    }
}

fn empty(r: &Reader<'_>, tol: &mut Tolerated, pdu: Pdu) -> Result<Pdu, DecodeErrorKind> {
    super::octets::finish(r, tol);
    Ok(pdu)
}

/// Sans-IO stream step: if `buf` starts with a whole frame, removes it and decodes it.
///
/// - `Ok(None)`: need more bytes (nothing consumed).
/// - `Ok(Some(Ok(decoded)))`: one PDU.
/// - `Ok(Some(Err(e)))`: one malformed PDU, consumed; answer with `e.response(version)`
///   and carry on.
/// - `Err(_)`: Total_Length is outside `12..=max_length`; the stream cannot be re-synced.
pub fn decode_frame(
    buf: &mut BytesMut,
    version: Version,
    max_length: u32,
) -> Result<Option<Result<Decoded, DecodeError>>, FrameError> {
    let Some(header) = header::check(buf, max_length)? else {
        return Ok(None);
    };
    // The header is already parsed: step over it and split off only the body (one
    // reference-count increment, no second split).
    buf.advance(HEADER_LEN);
    let body = buf
        .split_to(header.total_length as usize - HEADER_LEN)
        .freeze();
    Ok(Some(Pdu::decode(header, body, version)))
}

/// Decodes one complete frame held in `frame` (header + body, nothing else).
pub fn decode_bytes(
    frame: &Bytes,
    version: Version,
    max_length: u32,
) -> Result<Decoded, DecodeOneError> {
    let header = match header::check(frame, max_length)? {
        Some(h) => h,
        None => return Err(DecodeOneError::NotOneFrame(frame.len())),
    };
    if header.total_length as usize != frame.len() {
        return Err(DecodeOneError::NotOneFrame(frame.len()));
    }
    Ok(Pdu::decode(header, frame.slice(HEADER_LEN..), version)?)
}

/// Why [`decode_bytes`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeOneError {
    /// Total_Length outside the accepted range.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The buffer is not exactly one frame.
    #[error("buffer of {0} bytes is not exactly one frame")]
    NotOneFrame(usize),
    /// The frame is well-formed but its body is not.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

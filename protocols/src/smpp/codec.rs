//! `tokio_util::codec` adapters (feature `tokio-codec`): a thin shell over [`check`],
//! [`decode`] and [`Command::encode`].
//!
//! Three decoders share one framing step:
//! - [`SmppCodec`] yields [`Command`]s; any error ends the stream (tokio-util stops a
//!   `FramedRead` after an error), so use it where a malformed PDU should drop the link.
//! - [`SmppFrameCodec`] yields `Result<Decoded, DecodeError>` per PDU and errors only on
//!   framing (bad `command_length`) and I/O, so a session can answer a malformed body with
//!   [`DecodeError::response`] and keep the bind.
//! - [`SmppViewCodec`] yields [`Frame`]s (framing only); the session reads each with
//!   [`Frame::view`] in place, or [`Frame::decode`] for the owned form.
//!
//! Both check `command_length` against the maximum before buffering the body, then reserve
//! exactly what the PDU still needs.

use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

use super::error::{DecodeError, EncodeError, FrameError};
use super::header::{DEFAULT_MAX_LEN, HEADER_LEN, Header, check};
use super::pdu::{Command, Decoded, decode};
use super::tolerated::Tolerated;
use super::view::Frame;

/// Errors of the tokio adapters.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// Socket error.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// Unacceptable command_length: answer with [`FrameError::response`], then close.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A malformed PDU (only from [`SmppCodec`]).
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A command that cannot be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

/// Framing state shared by both decoders: the maximum length and tolerance counters.
#[derive(Debug, Clone)]
struct Framer {
    max_len: usize,
    tolerated: [u64; Tolerated::ALL.len()],
}

impl Framer {
    fn new(max_len: usize) -> Self {
        Self {
            max_len,
            tolerated: [0; Tolerated::ALL.len()],
        }
    }

    #[inline(always)]
    fn next(
        &mut self,
        src: &mut BytesMut,
    ) -> Result<Option<Result<Decoded, DecodeError>>, FrameError> {
        let Some(len) = check(src, self.max_len)? else {
            if let Some(h) = Header::read(src) {
                src.reserve(h.command_length as usize - src.len());
            } else {
                src.reserve(HEADER_LEN - src.len());
            }
            return Ok(None);
        };
        let frame = src.split_to(len).freeze();
        let decoded = decode(frame);
        if let Ok(d) = &decoded {
            self.count(d.tolerated);
        }
        Ok(Some(decoded))
    }

    fn count(&mut self, t: Tolerated) {
        if t.is_empty() {
            return;
        }
        for (i, (flag, _)) in Tolerated::ALL.iter().enumerate() {
            if t.contains(*flag) {
                self.tolerated[i] += 1;
            }
        }
    }

    fn counts(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        Tolerated::ALL
            .iter()
            .zip(self.tolerated.iter())
            .map(|((_, name), n)| (*name, *n))
    }
}

macro_rules! encoders {
    ($ty:ident) => {
        impl Encoder<Command> for $ty {
            type Error = CodecError;
            fn encode(&mut self, item: Command, dst: &mut BytesMut) -> Result<(), CodecError> {
                Ok(item.encode(dst)?)
            }
        }

        impl Encoder<&Command> for $ty {
            type Error = CodecError;
            fn encode(&mut self, item: &Command, dst: &mut BytesMut) -> Result<(), CodecError> {
                Ok(item.encode(dst)?)
            }
        }

        impl Default for $ty {
            fn default() -> Self {
                Self::new(DEFAULT_MAX_LEN)
            }
        }

        impl $ty {
            /// A codec accepting PDUs up to `max_len` bytes.
            pub fn new(max_len: usize) -> Self {
                Self(Framer::new(max_len))
            }

            /// How many decoded PDUs needed each tolerance, by flag name.
            pub fn tolerated_counts(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
                self.0.counts()
            }
        }
    };
}

/// Decoder yielding commands; every error ends the stream.
#[derive(Debug, Clone)]
pub struct SmppCodec(Framer);

impl Decoder for SmppCodec {
    type Item = Command;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Command>, CodecError> {
        match self.0.next(src)? {
            None => Ok(None),
            Some(d) => Ok(Some(d?.command)),
        }
    }
}

encoders!(SmppCodec);

/// Decoder yielding one result per PDU; only framing and I/O errors end the stream.
#[derive(Debug, Clone)]
pub struct SmppFrameCodec(Framer);

impl Decoder for SmppFrameCodec {
    type Item = Result<Decoded, DecodeError>;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, CodecError> {
        Ok(self.0.next(src)?)
    }
}

encoders!(SmppFrameCodec);

/// Decoder yielding whole [`Frame`]s, nothing decoded: only framing and I/O errors end the
/// stream. Tolerances are counted by whoever reads the frames ([`super::DecodedRef::tolerated`]).
#[derive(Debug, Clone)]
pub struct SmppViewCodec {
    max_len: usize,
}

impl SmppViewCodec {
    /// A codec accepting PDUs up to `max_len` bytes.
    pub fn new(max_len: usize) -> Self {
        Self { max_len }
    }
}

impl Default for SmppViewCodec {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_LEN)
    }
}

impl Decoder for SmppViewCodec {
    type Item = Frame;
    type Error = CodecError;

    #[inline]
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        Ok(Frame::split(src, self.max_len)?)
    }
}

impl Encoder<&Command> for SmppViewCodec {
    type Error = CodecError;
    fn encode(&mut self, item: &Command, dst: &mut BytesMut) -> Result<(), CodecError> {
        Ok(item.encode(dst)?)
    }
}

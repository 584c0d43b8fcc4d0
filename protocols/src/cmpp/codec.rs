//! `tokio_util::codec` adapter: a thin shell over [`decode_frame`] and [`Pdu::encode`].
//!
//! The codec carries the link's negotiated [`Version`]; a session starts it at the version
//! it asks for and calls [`CmppCodec::set_version`] once CONNECT_RESP settles it.
//!
//! [`CmppViewCodec`] only frames: it yields [`view::Frame`]s, read in place with
//! [`view::Frame::view`] (SUBMIT without building the owned value) or [`view::Frame::decode`].
//!
//! Errors: a framing error (Total_Length out of range) or an I/O error ends the stream. A
//! PDU that frames but does not decode is *not* an error of the stream: it is yielded as
//! `Err(DecodeError)` inside the item, so the session can answer it and keep the link.

use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

use super::error::{DecodeError, EncodeError, FrameError};
use super::header::{DEFAULT_MAX_LENGTH, HEADER_LEN};
use super::pdu::{Decoded, Pdu, decode_frame};
use super::version::Version;
use super::view;

/// Errors that end a CMPP stream.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Total_Length out of range: the byte stream cannot be re-synchronised.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A PDU we were asked to send cannot be encoded for the link's version.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The transport failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A frame to send: Sequence_Id and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Sequence_Id for the header.
    pub sequence_id: u32,
    /// The body.
    pub pdu: Pdu,
}

/// CMPP framing for `Framed` transports.
#[derive(Debug, Clone, Copy)]
pub struct CmppCodec {
    version: Version,
    max_length: u32,
}

impl CmppCodec {
    /// A codec for `version` accepting PDUs up to [`DEFAULT_MAX_LENGTH`].
    pub fn new(version: Version) -> Self {
        Self {
            version,
            max_length: DEFAULT_MAX_LENGTH,
        }
    }

    /// Sets the largest Total_Length accepted (at least the 12-byte header).
    pub fn with_max_length(mut self, max_length: u32) -> Self {
        self.max_length = max_length.max(HEADER_LEN as u32);
        self
    }

    /// The version PDUs are decoded and encoded with.
    pub fn version(&self) -> Version {
        self.version
    }

    /// Switches version, e.g. after CONNECT_RESP named a lower one.
    pub fn set_version(&mut self, version: Version) {
        self.version = version;
    }
}

impl Decoder for CmppCodec {
    type Item = Result<Decoded, DecodeError>;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, CodecError> {
        let item = decode_frame(src, self.version, self.max_length)?;
        if item.is_none() && src.len() >= HEADER_LEN {
            // The header passed the length check, so reserving the rest is bounded.
            let total = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
            src.reserve(total.saturating_sub(src.len()));
        }
        Ok(item)
    }
}

impl Encoder<Frame> for CmppCodec {
    type Error = CodecError;

    fn encode(&mut self, item: Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        item.pdu.encode(item.sequence_id, self.version, dst)?;
        Ok(())
    }
}

impl Encoder<&Frame> for CmppCodec {
    type Error = CodecError;

    fn encode(&mut self, item: &Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        item.pdu.encode(item.sequence_id, self.version, dst)?;
        Ok(())
    }
}

/// Framing only: yields whole [`view::Frame`]s; a Total_Length outside
/// `12..=max_length` or an I/O error ends the stream. Encodes like [`CmppCodec`].
#[derive(Debug, Clone, Copy)]
pub struct CmppViewCodec(CmppCodec);

impl CmppViewCodec {
    /// A codec for `version` accepting PDUs up to [`DEFAULT_MAX_LENGTH`].
    pub fn new(version: Version) -> Self {
        Self(CmppCodec::new(version))
    }

    /// Sets the largest Total_Length accepted (at least the 12-byte header).
    pub fn with_max_length(self, max_length: u32) -> Self {
        Self(self.0.with_max_length(max_length))
    }

    /// The version frames are encoded with (and should be read with).
    pub fn version(&self) -> Version {
        self.0.version()
    }
}

impl Decoder for CmppViewCodec {
    type Item = view::Frame;
    type Error = CodecError;

    #[inline]
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<view::Frame>, CodecError> {
        Ok(view::Frame::split(src, self.0.max_length)?)
    }
}

impl Encoder<&Frame> for CmppViewCodec {
    type Error = CodecError;

    fn encode(&mut self, item: &Frame, dst: &mut BytesMut) -> Result<(), CodecError> {
        self.0.encode(item, dst)
    }
}

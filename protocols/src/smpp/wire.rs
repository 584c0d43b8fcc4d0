//! Low-level readers and writers for SMPP field types over a `Bytes` body.
//!
//! Invariants: every read is bounds-checked and returns [`BodyError`] instead of panicking;
//! C-octet strings and octet strings are zero-copy `Bytes` slices of the input. Tolerated
//! deviations are recorded in the reader's [`Tolerated`] set.

use bytes::{BufMut, Bytes, BytesMut};

use super::error::{BodyError, EncodeError};
use super::tolerated::Tolerated;

/// Cursor over one PDU body.
pub(crate) struct Reader {
    buf: Bytes,
    pos: usize,
    pub(crate) tolerated: Tolerated,
}

impl Reader {
    pub(crate) fn new(buf: Bytes) -> Self {
        Self {
            buf,
            pos: 0,
            tolerated: Tolerated::NONE,
        }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, BodyError> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or(BodyError::UnexpectedEnd { field })?;
        self.pos += 1;
        Ok(b)
    }

    /// A trailing single-octet field that some peers omit at the very end of the body.
    pub(crate) fn u8_or_zero(&mut self, field: &'static str) -> Result<u8, BodyError> {
        if self.is_empty() {
            self.tolerated |= Tolerated::MISSING_FIELDS;
            return Ok(0);
        }
        self.u8(field)
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, BodyError> {
        let s = self.octets(4, field)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }

    pub(crate) fn octets(&mut self, n: usize, field: &'static str) -> Result<Bytes, BodyError> {
        if self.remaining() < n {
            return Err(BodyError::UnexpectedEnd { field });
        }
        let s = self.buf.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(s)
    }

    /// A C-octet string without its NUL. A string that runs to the end of the body without
    /// a NUL is accepted (flag [`Tolerated::MISSING_NUL`]); so is an absent string at the
    /// very end of the body (flag [`Tolerated::MISSING_FIELDS`]).
    pub(crate) fn cstr(&mut self, field: &'static str) -> Result<Bytes, BodyError> {
        let _ = field;
        let rest = &self.buf[self.pos..];
        match rest.iter().position(|&b| b == 0) {
            Some(n) => {
                let s = self.buf.slice(self.pos..self.pos + n);
                self.pos += n + 1;
                Ok(s)
            }
            None => {
                self.tolerated |= if rest.is_empty() {
                    Tolerated::MISSING_FIELDS
                } else {
                    Tolerated::MISSING_NUL
                };
                let s = self.buf.slice(self.pos..);
                self.pos = self.buf.len();
                Ok(s)
            }
        }
    }

    /// Everything not yet read.
    pub(crate) fn rest(&mut self) -> Bytes {
        let s = self.buf.slice(self.pos..);
        self.pos = self.buf.len();
        s
    }

    /// Ignores whatever is left, flagging it when non-empty.
    pub(crate) fn ignore_rest(&mut self) {
        if !self.is_empty() {
            self.tolerated |= Tolerated::TRAILING_BYTES;
            self.pos = self.buf.len();
        }
    }
}

/// Encoded length of a C-octet string, checking it holds no NUL.
pub(crate) fn cstr_len(s: &[u8], field: &'static str) -> Result<usize, EncodeError> {
    if s.contains(&0) {
        return Err(EncodeError::NulInCString { field });
    }
    Ok(s.len() + 1)
}

pub(crate) fn put_cstr(buf: &mut BytesMut, s: &[u8]) {
    buf.put_slice(s);
    buf.put_u8(0);
}

/// Encoded length of an `sm_length`-prefixed short_message.
pub(crate) fn short_message_len(s: &[u8]) -> Result<usize, EncodeError> {
    if s.len() > 255 {
        return Err(EncodeError::TooLong {
            field: "short_message",
            len: s.len(),
            max: 255,
        });
    }
    Ok(1 + s.len())
}

pub(crate) fn put_short_message(buf: &mut BytesMut, s: &[u8]) {
    // Length checked by `short_message_len` before any byte is written.
    buf.put_u8(s.len() as u8);
    buf.put_slice(s);
}

//! Minimal on-the-wire helpers for the simulator and the load generator.
//!
//! Job: frame checks, borrowed field parsing and encoders for the handful of SMPP and CMPP
//! PDUs a fake center and a load-generating client need. This is a stop-gap: the full codecs
//! live in `sluice-protocols` (being written in parallel); this module only covers what the
//! test tools need, decodes borrowed from the read buffer (no per-PDU allocation) and never
//! panics on arbitrary input — every read is bounds-checked and returns [`WireError`].

pub(crate) mod cmpp;
pub(crate) mod smpp;

/// Why a PDU could not be framed or parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The length field is below the header size or above the accepted maximum.
    #[error("invalid command length {len} (allowed {min}..={max})")]
    BadLength { len: u32, min: u32, max: u32 },
    /// A field runs past the end of the PDU body.
    #[error("PDU body too short while reading {field}")]
    Truncated { field: &'static str },
    /// A C-octet string has no terminating NUL within its bound.
    #[error("unterminated C-octet string in {field}")]
    Unterminated { field: &'static str },
}

/// Bounds-checked cursor over a PDU body.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub(crate) fn remaining(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, WireError> {
        let b = *self.buf.get(self.pos).ok_or(WireError::Truncated { field })?;
        self.pos += 1;
        Ok(b)
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, WireError> {
        let s = self.bytes(2, field)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, WireError> {
        let s = self.bytes(4, field)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
    }

    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, WireError> {
        let s = self.bytes(8, field)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_be_bytes(a))
    }

    pub(crate) fn bytes(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], WireError> {
        let end = self.pos.checked_add(n).ok_or(WireError::Truncated { field })?;
        let s = self.buf.get(self.pos..end).ok_or(WireError::Truncated { field })?;
        self.pos = end;
        Ok(s)
    }

    /// A NUL-terminated string of at most `max` bytes including the NUL; returned without it.
    pub(crate) fn cstr(&mut self, max: usize, field: &'static str) -> Result<&'a [u8], WireError> {
        let rest = self.remaining();
        let lim = rest.len().min(max);
        let nul = rest[..lim]
            .iter()
            .position(|&b| b == 0)
            .ok_or(WireError::Unterminated { field })?;
        self.pos += nul + 1;
        Ok(&rest[..nul])
    }

    /// A fixed-width, NUL-padded field (CMPP style); returned with trailing NULs trimmed.
    pub(crate) fn fixed(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], WireError> {
        let s = self.bytes(n, field)?;
        let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
        Ok(&s[..end])
    }
}

/// Writes `s` into a fixed-width NUL-padded field of `n` bytes (truncating if longer).
pub(crate) fn put_fixed(dst: &mut bytes::BytesMut, s: &[u8], n: usize) {
    use bytes::BufMut;
    let take = s.len().min(n);
    dst.put_slice(&s[..take]);
    dst.put_bytes(0, n - take);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cstr_requires_nul_within_bound() {
        let mut r = Reader::new(b"abc\0def");
        assert_eq!(r.cstr(4, "x").unwrap(), b"abc");
        assert_eq!(r.cstr(3, "y"), Err(WireError::Unterminated { field: "y" }));
    }

    #[test]
    fn reads_past_end_are_errors() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u16("a").unwrap(), 0x0102);
        assert!(r.u32("b").is_err());
        assert_eq!(r.u8("c").unwrap(), 3);
        assert!(r.u8("d").is_err());
    }
}

//! Fixed-width Octet Strings and the bounds-checked body reader.
//!
//! Invariant of [`FixedStr`]: the value never ends in NUL or space (those are wire padding)
//! and every byte past `len` is zero, so the derived equality is value equality and a
//! decode of an encode gives back the same value.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use super::error::EncodeError;
use super::tolerated::{Tolerance, Tolerated};
use super::version::Version;

/// A value for a fixed-width Octet String field of at most `N` bytes (`N` ≤ 255).
///
/// The wire form is NUL-padded to the field width; the value held here is the content
/// without padding. Bytes are kept raw (most fields are ASCII digits, but nothing forces
/// a peer to send UTF-8).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FixedStr<const N: usize> {
    bytes: [u8; N],
    len: u8,
}

/// A value longer than the field it was meant for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("value of {len} bytes exceeds the {max}-byte field")]
pub struct TooLong {
    /// Length of the rejected value after trimming padding.
    pub len: usize,
    /// The field width.
    pub max: usize,
}

impl<const N: usize> FixedStr<N> {
    /// The empty value (all-NUL on the wire).
    pub const EMPTY: Self = Self {
        bytes: [0; N],
        len: 0,
    };

    /// Builds a value, trimming trailing NULs and spaces first: the wire cannot carry
    /// them, so the value is exactly what the peer will decode.
    pub fn new(value: &[u8]) -> Result<Self, TooLong> {
        let trimmed = trim_padding(value).0;
        if trimmed.len() > N {
            return Err(TooLong {
                len: trimmed.len(),
                max: N,
            });
        }
        let mut bytes = [0u8; N];
        bytes[..trimmed.len()].copy_from_slice(trimmed);
        // N ≤ 255 for every field in this module, so the length fits.
        Ok(Self {
            bytes,
            len: trimmed.len() as u8,
        })
    }

    /// The content bytes (no padding).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// The content as text, if it is UTF-8 (ASCII for nearly every CMPP field).
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(self.as_bytes()).ok()
    }

    /// Content length in bytes.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// True for the all-padding value.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl<const N: usize> Default for FixedStr<N> {
    fn default() -> Self {
        Self::EMPTY
    }
}

impl<const N: usize> TryFrom<&str> for FixedStr<N> {
    type Error = TooLong;

    fn try_from(value: &str) -> Result<Self, TooLong> {
        Self::new(value.as_bytes())
    }
}

impl<const N: usize> fmt::Debug for FixedStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

impl<const N: usize> fmt::Display for FixedStr<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.as_bytes()))
    }
}

/// Strips NUL padding, then any spaces before it; reports whether spaces were stripped.
pub(crate) fn trim_padding(value: &[u8]) -> (&[u8], bool) {
    let nul_end = nul_end(value);
    let mut end = nul_end;
    while end > 0 && matches!(value[end - 1], 0 | b' ') {
        end -= 1;
    }
    (&value[..end], end != nul_end)
}

/// Length of `value` without its trailing NULs. Fields are mostly padding (an 11-digit
/// number in a 32-byte field), so whole zero words are skipped before single bytes.
fn nul_end(value: &[u8]) -> usize {
    let mut end = value.len();
    while let Some(word) = end
        .checked_sub(8)
        .and_then(|s| value.get(s..end))
        .and_then(|w| <[u8; 8]>::try_from(w).ok())
    {
        if u64::from_ne_bytes(word) != 0 {
            break;
        }
        end -= 8;
    }
    while end > 0 && value[end - 1] == 0 {
        end -= 1;
    }
    end
}

/// Where a body ran out: the field being read and how many bytes it needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Short {
    pub(crate) field: &'static str,
    pub(crate) offset: usize,
    pub(crate) needed: usize,
}

/// A cursor over one PDU body. Every read is bounds-checked and names its field.
pub(crate) struct Reader<'a> {
    body: &'a Bytes,
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(body: &'a Bytes) -> Self {
        Self { body, pos: 0 }
    }

    #[inline(always)]
    pub(crate) fn remaining(&self) -> usize {
        self.body.len() - self.pos
    }

    #[inline(always)]
    pub(crate) fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], Short> {
        if self.remaining() < n {
            return Err(Short {
                field,
                offset: self.pos,
                needed: n,
            });
        }
        let start = self.pos;
        self.pos += n;
        Ok(&self.body[start..self.pos])
    }

    /// Like [`Reader::take`] but shares the underlying buffer instead of copying.
    #[inline(always)]
    pub(crate) fn take_bytes(&mut self, n: usize, field: &'static str) -> Result<Bytes, Short> {
        let start = self.pos;
        self.take(n, field)?;
        Ok(self.body.slice(start..self.pos))
    }

    #[inline(always)]
    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, Short> {
        Ok(self.take(1, field)?[0])
    }

    #[inline(always)]
    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, Short> {
        let b = self.take(4, field)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    #[inline(always)]
    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, Short> {
        let b = self.take(8, field)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    /// A status/result field whose width (1 or 4 bytes) depends on the version.
    pub(crate) fn status(&mut self, width: usize, field: &'static str) -> Result<u32, Short> {
        if width == 1 {
            self.u8(field).map(u32::from)
        } else {
            self.u32(field)
        }
    }

    /// A fixed-width Octet String of `width` (≤ `N`) bytes on the wire.
    ///
    /// Hot path of every CMPP decode (ten fields per SUBMIT): inlined so `width` and `N` are
    /// constants at each call, the copy is a fixed-size move and the NUL padding is measured
    /// on the whole `N`-byte array a word at a time ([`padded_len`]).
    #[inline(always)]
    pub(crate) fn fixed<const N: usize>(
        &mut self,
        width: usize,
        field: &'static str,
        tolerated: &mut Tolerated,
    ) -> Result<FixedStr<N>, Short> {
        debug_assert!(width <= N);
        let raw = self.take(width, field)?;
        // Most fields fill their array exactly (width == N): one move, no zeroing first.
        let mut bytes = match raw.first_chunk::<N>() {
            Some(full) => *full,
            None => {
                let mut b = [0u8; N];
                b[..width].copy_from_slice(raw);
                b
            }
        };
        let mut end = padded_len(&bytes);
        if end > 0 && bytes[end - 1] == b' ' {
            // Space padding (rare): trim it and keep the bytes past `len` zero.
            let (value, _) = trim_padding(raw);
            end = value.len();
            bytes[end..width].fill(0);
            tolerated.insert(Tolerance::PaddingSpaces);
        }
        Ok(FixedStr {
            bytes,
            len: end as u8,
        })
    }
}

/// Length of `bytes` without its trailing NULs, for an `N` known at compile time: the last
/// non-zero 8-byte word is found from the end and its leading zero bytes (read
/// little-endian, the bytes after the value) are counted with one instruction; a tail of
/// fewer than eight bytes is read byte by byte.
#[inline(always)]
pub(crate) fn padded_len<const N: usize>(bytes: &[u8; N]) -> usize {
    let words = N / 8;
    let mut i = N;
    // A tail that does not fill a word (N % 8 bytes at the end) first.
    while i > words * 8 {
        if bytes[i - 1] != 0 {
            return i;
        }
        i -= 1;
    }
    let mut w = words;
    while w > 0 {
        let start = (w - 1) * 8;
        let mut word = [0u8; 8];
        word.copy_from_slice(&bytes[start..start + 8]);
        let v = u64::from_le_bytes(word);
        if v != 0 {
            return start + 8 - (v.leading_zeros() / 8) as usize;
        }
        w -= 1;
    }
    0
}

/// Writes `value` NUL-padded to `width`; the caller has checked `value.len() <= width`.
pub(crate) fn put_fixed<const N: usize>(dst: &mut BytesMut, value: &FixedStr<N>, width: usize) {
    let v = value.as_bytes();
    dst.put_slice(v);
    dst.put_bytes(0, width - v.len());
}

/// Writes a status/result field in its version's width; the caller has checked it fits.
pub(crate) fn put_status(dst: &mut BytesMut, value: u32, width: usize) {
    if width == 1 {
        dst.put_u8(value as u8);
    } else {
        dst.put_u32(value);
    }
}

/// Encoder check: does a value of `len` bytes fit a field of `width` in `version`?
pub(crate) fn check_width(
    field: &'static str,
    len: usize,
    width: usize,
    version: Version,
) -> Result<(), EncodeError> {
    if len > width {
        return Err(EncodeError::TooLong {
            field,
            len,
            max: width,
            version,
        });
    }
    Ok(())
}

/// Encoder check: does a status/result value fit its field in `version`?
pub(crate) fn check_status(
    field: &'static str,
    value: u32,
    version: Version,
) -> Result<(), EncodeError> {
    if version.status_len() == 1 && value > u32::from(u8::MAX) {
        return Err(EncodeError::ValueTooLarge {
            field,
            value,
            version,
        });
    }
    Ok(())
}

/// Encoder check: a 3.0-only field must be left at its default on a 2.0 link.
pub(crate) fn check_absent(
    field: &'static str,
    is_set: bool,
    version: Version,
) -> Result<(), EncodeError> {
    if is_set && version == Version::V20 {
        return Err(EncodeError::NotInVersion { field, version });
    }
    Ok(())
}

/// Chooses the Status/Result width for a response body of `body_len` bytes whose other
/// fields take `fixed` bytes: the link's own width when it fits, otherwise the other
/// version's width when the length matches it exactly (recorded as tolerated).
pub(crate) fn response_status_width(
    body_len: usize,
    fixed: usize,
    version: Version,
    tolerated: &mut Tolerated,
) -> usize {
    let own = version.status_len();
    let other = match version {
        Version::V20 => Version::V30,
        Version::V30 => Version::V20,
    }
    .status_len();
    if body_len != fixed + own && body_len == fixed + other {
        tolerated.insert(Tolerance::ResponseWidth);
        return other;
    }
    own
}

/// Marks bytes left after the last field as tolerated.
pub(crate) fn finish(r: &Reader<'_>, tolerated: &mut Tolerated) {
    if r.remaining() > 0 {
        tolerated.insert(Tolerance::TrailingBytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(raw: &[u8]) -> (FixedStr<32>, Tolerated) {
        let body = Bytes::copy_from_slice(raw);
        let mut tol = Tolerated::none();
        let v = Reader::new(&body).fixed(raw.len(), "f", &mut tol).unwrap();
        (v, tol)
    }

    #[test]
    fn padded_len_matches_nul_end() {
        for value_len in 0..=21 {
            for fill in [b'7', 0x80, 0xFF, 1] {
                let mut raw = [0u8; 21];
                raw[..value_len].fill(fill);
                assert_eq!(padded_len(&raw), nul_end(&raw), "{value_len}/{fill}");
                let mut wide = [0u8; 32];
                wide[..value_len].fill(fill);
                assert_eq!(padded_len(&wide), value_len);
            }
        }
        let mut inner = [0u8; 17];
        inner[0] = b'a';
        inner[9] = b'b';
        assert_eq!(padded_len(&inner), 10);
    }

    #[test]
    fn nul_end_matches_a_byte_loop() {
        for len in 0..=32 {
            for value_len in 0..=len {
                let mut raw = vec![0u8; len];
                raw[..value_len].fill(b'7');
                assert_eq!(nul_end(&raw), value_len, "{len}/{value_len}");
            }
        }
        assert_eq!(nul_end(b"a\0b\0\0\0\0\0\0\0\0\0"), 3);
    }

    #[test]
    fn fixed_trims_nul_and_space_padding() {
        let (v, tol) = read(b"13800138000\0\0\0\0\0\0\0\0\0\0");
        assert_eq!((v.as_bytes(), tol.is_empty()), (&b"13800138000"[..], true));
        let (v, tol) = read(b"MJS001 \0 \0  \0\0");
        assert_eq!(v.as_bytes(), b"MJS001");
        assert!(tol.contains(Tolerance::PaddingSpaces));
        assert_eq!(v, FixedStr::new(b"MJS001").unwrap());
        let (v, _) = read(b"a\0b\0\0");
        assert_eq!(v.as_bytes(), b"a\0b");
        let (v, _) = read(b"");
        assert!(v.is_empty());
    }
}

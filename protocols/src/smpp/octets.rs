//! [`Octets`]: the byte-string type of every SMPP string/octet field.
//!
//! Short values (addresses, ids, times, most TLV values: up to [`Octets::INLINE_CAP`] bytes)
//! are stored inline and cost no allocation and no atomic reference count when decoded,
//! cloned or dropped. Longer values (short_message, message_payload) are zero-copy `Bytes`
//! slices of the decoded PDU. Measured here, the reference counting of one `Bytes` slice per
//! field was the largest cost of decoding a submit_sm; inline storage removes it.
//!
//! Equality, ordering and hashing are by content, whatever the representation.

use core::fmt;
use core::hash::{Hash, Hasher};
use core::ops::Deref;

use bytes::Bytes;

/// A byte string stored inline when short, or as a shared `Bytes` slice when long.
#[derive(Clone)]
pub struct Octets(Repr);

#[derive(Clone)]
enum Repr {
    Inline {
        len: u8,
        buf: [u8; Octets::INLINE_CAP],
    },
    Shared(Bytes),
}

impl Octets {
    /// Longest value stored inline: 23 bytes + length fit beside `Bytes`'s non-null vtable
    /// pointer, so `Octets` is exactly as large as `Bytes` (32 bytes), which keeps PDU structs
    /// small to move. Addresses (≤ 21), times (16), system ids and most TLVs fit.
    pub const INLINE_CAP: usize = 23;

    /// The empty string.
    pub const fn new() -> Self {
        Self(Repr::Inline {
            len: 0,
            buf: [0; Self::INLINE_CAP],
        })
    }

    /// Copies `s` (inline when short).
    pub fn copy_from_slice(s: &[u8]) -> Self {
        if s.len() <= Self::INLINE_CAP {
            let mut buf = [0; Self::INLINE_CAP];
            buf[..s.len()].copy_from_slice(s);
            Self(Repr::Inline {
                len: s.len() as u8,
                buf,
            })
        } else {
            Self(Repr::Shared(Bytes::copy_from_slice(s)))
        }
    }

    /// Wraps a static slice without copying when long.
    pub fn from_static(s: &'static [u8]) -> Self {
        if s.len() <= Self::INLINE_CAP {
            Self::copy_from_slice(s)
        } else {
            Self(Repr::Shared(Bytes::from_static(s)))
        }
    }

    /// `src[start..end]`: inline copy when short, shared slice otherwise.
    /// Callers guarantee `start <= end <= src.len()`.
    #[inline]
    pub(crate) fn slice_of(src: &Bytes, start: usize, end: usize) -> Self {
        let len = end - start;
        if len <= Self::INLINE_CAP {
            // A fixed-size copy (two vector moves, no call) is much cheaper than a variable
            // one; the bytes past `len` are never exposed.
            match src[start..].first_chunk::<{ Self::INLINE_CAP }>() {
                Some(block) => Self::inline_prefix(block, len),
                // Near the end of the PDU (its last TLVs): fixed-size moves by the bits of
                // `len`, still no call.
                None => Self::inline_prefix(&short_block(&src[start..end]), len),
            }
        } else {
            Self(Repr::Shared(src.slice(start..end)))
        }
    }

    /// The first `len` bytes of `block`, inline. The rest of `block` is carried along but
    /// never exposed (equality, hashing and `Deref` see only `..len`).
    /// Callers guarantee `len <= INLINE_CAP`.
    #[inline]
    pub(crate) const fn inline_prefix(block: &[u8; Self::INLINE_CAP], len: usize) -> Self {
        Self(Repr::Inline {
            len: len as u8,
            buf: *block,
        })
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, buf } => &buf[..*len as usize],
            Repr::Shared(b) => b,
        }
    }

    /// As `Bytes` (copies inline values).
    pub fn to_bytes(&self) -> Bytes {
        match &self.0 {
            Repr::Inline { .. } => Bytes::copy_from_slice(self.as_slice()),
            Repr::Shared(b) => b.clone(),
        }
    }

    /// The value as UTF-8 text, when it is.
    pub fn as_str(&self) -> Option<&str> {
        core::str::from_utf8(self.as_slice()).ok()
    }
}

/// `s` (at most [`Octets::INLINE_CAP`] bytes) at the start of a zeroed block, copied in
/// power-of-two pieces of fixed size: a variable-length copy would be a `memcpy` call, which
/// costs more than these few moves for values this short.
#[inline(always)]
fn short_block(s: &[u8]) -> [u8; Octets::INLINE_CAP] {
    let mut block = [0; Octets::INLINE_CAP];
    let mut at = 0;
    macro_rules! piece {
        ($n:literal) => {
            if s.len() & $n != 0 {
                if let (Some(dst), Some(src)) = (
                    block
                        .get_mut(at..at + $n)
                        .and_then(|d| d.first_chunk_mut::<$n>()),
                    s.get(at..at + $n).and_then(|d| d.first_chunk::<$n>()),
                ) {
                    *dst = *src;
                }
                at += $n;
            }
        };
    }
    piece!(16);
    piece!(8);
    piece!(4);
    piece!(2);
    piece!(1);
    let _ = at;
    block
}

impl Default for Octets {
    fn default() -> Self {
        Self::new()
    }
}

impl Deref for Octets {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl AsRef<[u8]> for Octets {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl PartialEq for Octets {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Octets {}

impl PartialOrd for Octets {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Octets {
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        self.as_slice().cmp(other.as_slice())
    }
}

impl Hash for Octets {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state);
    }
}

impl PartialEq<[u8]> for Octets {
    fn eq(&self, other: &[u8]) -> bool {
        self.as_slice() == other
    }
}

impl PartialEq<&[u8]> for Octets {
    fn eq(&self, other: &&[u8]) -> bool {
        self.as_slice() == *other
    }
}

impl<const N: usize> PartialEq<&[u8; N]> for Octets {
    fn eq(&self, other: &&[u8; N]) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl PartialEq<&str> for Octets {
    fn eq(&self, other: &&str) -> bool {
        self.as_slice() == other.as_bytes()
    }
}

impl fmt::Debug for Octets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "b\"{}\"", self.as_slice().escape_ascii())
    }
}

impl From<Bytes> for Octets {
    fn from(b: Bytes) -> Self {
        if b.len() <= Self::INLINE_CAP {
            Self::copy_from_slice(&b)
        } else {
            Self(Repr::Shared(b))
        }
    }
}

impl From<Vec<u8>> for Octets {
    fn from(v: Vec<u8>) -> Self {
        Bytes::from(v).into()
    }
}

impl From<String> for Octets {
    fn from(s: String) -> Self {
        s.into_bytes().into()
    }
}

impl From<&[u8]> for Octets {
    fn from(s: &[u8]) -> Self {
        Self::copy_from_slice(s)
    }
}

impl<const N: usize> From<&[u8; N]> for Octets {
    fn from(s: &[u8; N]) -> Self {
        Self::copy_from_slice(s)
    }
}

impl From<&str> for Octets {
    fn from(s: &str) -> Self {
        Self::copy_from_slice(s.as_bytes())
    }
}

impl From<Octets> for Bytes {
    fn from(o: Octets) -> Self {
        match o.0 {
            Repr::Inline { .. } => Self::copy_from_slice(o.as_slice()),
            Repr::Shared(b) => b,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_small_as_bytes() {
        assert_eq!(size_of::<Octets>(), size_of::<Bytes>());
    }

    #[test]
    fn slice_of_is_the_range_anywhere_in_the_pdu() {
        let src = Bytes::from((0u8..64).collect::<Vec<_>>());
        for start in 0..64 {
            for end in start..=64 {
                let o = Octets::slice_of(&src, start, end);
                assert_eq!(o.as_slice(), &src[start..end], "{start}..{end}");
            }
        }
    }

    #[test]
    fn equality_ignores_representation() {
        let long = vec![7u8; 100];
        let a = Octets::from(long.clone());
        let b = Octets::copy_from_slice(&long);
        assert_eq!(a, b);
        assert_eq!(
            Octets::from("abc"),
            Octets::from(Bytes::from_static(b"abc"))
        );
        assert_eq!(Octets::from("abc"), &b"abc"[..]);
        assert!(Octets::new().is_empty());
        assert_eq!(format!("{:?}", Octets::from("a\0")), "b\"a\\x00\"");
        assert_eq!(Bytes::from(Octets::from("xyz")), Bytes::from_static(b"xyz"));
    }
}

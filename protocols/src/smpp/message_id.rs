//! Message-id normalisation for matching delivery receipts to submissions.
//!
//! SMSCs are inconsistent: many return the id in submit_sm_resp in hex and quote it in
//! decimal in the receipt text (or the reverse), with or without leading zeros. Kannel's
//! per-SMSC `msg-id-type` (unset: ids compared as-is; bit 0x01: submit_sm_resp id is hex;
//! bit 0x02: deliver_sm id is hex; an id with non-digits is read as hex whatever the bit)
//! converts both sides to one number. We follow it: the channel configures the format of
//! each side, and both ids are reduced to a [`CanonicalId`].
//!
//! The rule:
//! 1. trim ASCII whitespace;
//! 2. [`IdFormat::Decimal`]: 1..=38 ASCII digits → `Numeric(value)` (leading zeros vanish);
//!    an id that is not all digits but is all hex digits is read as hex (Kannel's fallback);
//! 3. [`IdFormat::Hex`]: optional `0x`/`0X`, then 1..=32 hex digits (any case) →
//!    `Numeric(value)`;
//! 4. anything else, or [`IdFormat::Text`] (Kannel's as-is) → `Text(ASCII upper-cased)`.
//!
//! [`IdFormat::Auto`] picks Decimal when all digits, Hex when all hex digits with at least
//! one letter, else Text: it cannot tell hex "1234" from decimal "1234", so configure the
//! channel whenever the SMSC mixes bases. Hence hex "1A2B" (Hex) and decimal "6699"
//! (Decimal) both become `Numeric(6699)` and match.

use smallvec::SmallVec;

/// How one side writes its ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum IdFormat {
    /// Base-10 digits.
    Decimal,
    /// Base-16 digits.
    Hex,
    /// Opaque; compared case-insensitively.
    Text,
    /// Decimal if all digits, hex if hex with a letter, else text.
    #[default]
    Auto,
}

impl IdFormat {
    /// Kannel's `msg-id-type`: returns (submit_sm_resp format, deliver_sm format).
    pub const fn from_kannel_msg_id_type(v: u8) -> (Self, Self) {
        let submit = if v & 1 != 0 { Self::Hex } else { Self::Decimal };
        let dlr = if v & 2 != 0 { Self::Hex } else { Self::Decimal };
        (submit, dlr)
    }
}

/// Longest text id held without an allocation: SMPP's message_id is at most 64 bytes with its
/// NUL, but the ids centers give are decimal or hex numbers, UUIDs (36) or shorter.
pub const TEXT_INLINE: usize = 40;

/// An id reduced to a form in which equal messages compare equal.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CanonicalId {
    /// A numeric id (from decimal or hex).
    Numeric(u128),
    /// An opaque id, ASCII upper-cased; inline up to [`TEXT_INLINE`] bytes (every id a center
    /// is known to give), so reducing one allocates nothing: a gateway reduces two a message.
    Text(SmallVec<[u8; TEXT_INLINE]>),
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &s[start..end]
}

fn parse_radix(s: &[u8], radix: u32, max_digits: usize) -> Option<u128> {
    if s.is_empty() || s.len() > max_digits {
        return None;
    }
    s.iter().try_fold(0u128, |n, &b| {
        let d = char::from(b).to_digit(radix)?;
        n.checked_mul(u128::from(radix))?.checked_add(u128::from(d))
    })
}

/// Reduces `raw` to its canonical form under `format` (see the module doc for the rule).
pub fn canonical_id(raw: &[u8], format: IdFormat) -> CanonicalId {
    let s = trim(raw);
    let numeric = match format {
        IdFormat::Decimal if s.iter().all(u8::is_ascii_digit) => parse_radix(s, 10, 38),
        IdFormat::Decimal => parse_radix(s, 16, 32),
        IdFormat::Hex => {
            let h = s
                .strip_prefix(b"0x")
                .or_else(|| s.strip_prefix(b"0X"))
                .unwrap_or(s);
            parse_radix(h, 16, 32)
        }
        IdFormat::Text => None,
        IdFormat::Auto => {
            if s.iter().all(u8::is_ascii_digit) {
                parse_radix(s, 10, 38)
            } else if s.iter().any(u8::is_ascii_alphabetic) && s.iter().all(u8::is_ascii_hexdigit) {
                parse_radix(s, 16, 32)
            } else {
                None
            }
        }
    };
    match numeric {
        Some(n) => CanonicalId::Numeric(n),
        None => CanonicalId::Text(s.iter().map(u8::to_ascii_uppercase).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_submit_matches_decimal_receipt() {
        let (submit, dlr) = IdFormat::from_kannel_msg_id_type(1);
        assert_eq!(canonical_id(b"1A2B", submit), canonical_id(b"0006699", dlr));
        assert_eq!(
            canonical_id(b"1a2b", IdFormat::Auto),
            CanonicalId::Numeric(6699)
        );
        assert_eq!(
            canonical_id(b" 0x1A2B ", IdFormat::Hex),
            CanonicalId::Numeric(6699)
        );
    }

    #[test]
    fn opaque_ids_compare_case_insensitively() {
        assert_eq!(
            canonical_id(b"ab-12", IdFormat::Auto),
            canonical_id(b"AB-12", IdFormat::Decimal)
        );
        assert_ne!(
            canonical_id(b"12", IdFormat::Hex),
            canonical_id(b"12", IdFormat::Decimal)
        );
    }

    #[test]
    fn overlong_numbers_fall_back_to_text() {
        let long = [b'9'; 60];
        assert!(matches!(
            canonical_id(&long, IdFormat::Decimal),
            CanonicalId::Text(_)
        ));
    }
}

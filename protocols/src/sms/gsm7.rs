//! GSM 03.38 (3GPP TS 23.038) default alphabet with the default extension table.
//!
//! Job: map text to septets and back, count septets, and pack/unpack septets into octets.
//!
//! Invariants:
//! - A character from the extension table (`^ { } \ [ ~ ] | €` and form feed) is always the
//!   two septets `ESC (0x1B), code`; [`char_septets`] and [`septet_len`] count it as 2.
//! - Septet values are `0..=0x7F`; [`encode_unpacked`] never produces anything else.
//! - Decoding never fails on a septet value: `ESC` + an undefined extension code decodes to the
//!   base-table character (TS 23.038 §6.2.1.1), `ESC ESC` and a trailing lone `ESC` decode to a
//!   space. Only octets above 0x7F are rejected by [`decode_unpacked`].
//!
//! Wire forms:
//! - *unpacked*: one septet per octet. This is what SMPP `data_coding` 0 usually carries; the
//!   SMSC packs it for the air interface.
//! - *packed*: septets laid LSB-first into a bit stream (TS 23.038 §6.1.2.1). When a UDH of
//!   `n` octets precedes the text, the first septet starts on the next septet boundary counted
//!   from the start of the user data, so `fill_bits(n)` zero bits come first (TS 23.040
//!   §9.2.3.24).

use super::Encoding;
use super::error::EncodeError;

/// The escape septet that selects the extension table for the next septet.
pub const ESC: u8 = 0x1B;

/// Base table, indexed by septet value (TS 23.038 §6.2.1). 0x1B (ESC) is shown as a space
/// because that is how a receiver that does not know the extension renders it.
const BASE: [char; 128] = [
    '@', '£', '$', '¥', 'è', 'é', 'ù', 'ì', 'ò', 'Ç', '\n', 'Ø', 'ø', '\r', 'Å', 'å', //
    'Δ', '_', 'Φ', 'Γ', 'Λ', 'Ω', 'Π', 'Ψ', 'Σ', 'Θ', 'Ξ', ' ', 'Æ', 'æ', 'ß', 'É', //
    ' ', '!', '"', '#', '¤', '%', '&', '\'', '(', ')', '*', '+', ',', '-', '.', '/', //
    '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', ':', ';', '<', '=', '>', '?', //
    '¡', 'A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', //
    'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X', 'Y', 'Z', 'Ä', 'Ö', 'Ñ', 'Ü', '§', //
    '¿', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', //
    'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', 'ä', 'ö', 'ñ', 'ü', 'à', //
];

/// Default extension table (TS 23.038 §6.2.1.1): (code after ESC, character).
const EXTENSION: [(u8, char); 10] = [
    (0x0A, '\u{000C}'),
    (0x14, '^'),
    (0x28, '{'),
    (0x29, '}'),
    (0x2F, '\\'),
    (0x3C, '['),
    (0x3D, '~'),
    (0x3E, ']'),
    (0x40, '|'),
    (0x65, '€'),
];

/// Marks "no mapping" in [`ASCII_TO_GSM`].
const NONE: u8 = 0xFF;
/// Set on [`ASCII_TO_GSM`] entries that need the ESC prefix.
const EXT_FLAG: u8 = 0x80;

/// Fast path for ASCII input (the common case in bulk traffic): septet value, `EXT_FLAG | code`
/// for extension characters, or [`NONE`].
const ASCII_TO_GSM: [u8; 128] = build_ascii_table();

const fn build_ascii_table() -> [u8; 128] {
    let mut table = [NONE; 128];
    let mut septet = 0;
    while septet < 128 {
        let c = BASE[septet] as u32;
        // ESC's placeholder space must not shadow the real space at 0x20.
        if c < 128 && septet != ESC as usize {
            table[c as usize] = septet as u8;
        }
        septet += 1;
    }
    let mut i = 0;
    while i < EXTENSION.len() {
        let (code, c) = EXTENSION[i];
        if (c as u32) < 128 {
            table[c as usize] = EXT_FLAG | code;
        }
        i += 1;
    }
    table
}

/// How one character is written in GSM 7-bit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Septets {
    /// A base-table character: one septet.
    One(u8),
    /// An extension-table character: `ESC` then this code (two septets).
    Escaped(u8),
}

impl Septets {
    /// Number of septets this character occupies (1 or 2).
    #[must_use]
    pub const fn len(self) -> usize {
        match self {
            Self::One(_) => 1,
            Self::Escaped(_) => 2,
        }
    }

    /// Always false; present because clippy pairs `len` with `is_empty`.
    #[must_use]
    pub const fn is_empty(self) -> bool {
        false
    }
}

/// Maps one character to its septets, or `None` if the GSM default alphabet and its
/// extension table cannot represent it.
#[must_use]
pub fn char_septets(c: char) -> Option<Septets> {
    let code = c as u32;
    if code < 128 {
        let v = ASCII_TO_GSM[code as usize];
        return match v {
            NONE => None,
            v if v & EXT_FLAG != 0 => Some(Septets::Escaped(v & !EXT_FLAG)),
            v => Some(Septets::One(v)),
        };
    }
    if c == '€' {
        return Some(Septets::Escaped(0x65));
    }
    // Non-ASCII base characters: a linear scan over 128 entries is fine here (rare path).
    BASE.iter()
        .position(|&b| b == c)
        .filter(|&i| i != ESC as usize)
        .map(|i| Septets::One(i as u8))
}

/// Number of septets `text` needs, counting extension characters as 2; `None` if some
/// character is not in the alphabet.
#[must_use]
pub fn septet_len(text: &str) -> Option<usize> {
    text.chars()
        .try_fold(0usize, |n, c| char_septets(c).map(|s| n + s.len()))
}

/// True if every character of `text` is in the default alphabet or its extension table.
#[must_use]
pub fn is_encodable(text: &str) -> bool {
    septet_len(text).is_some()
}

/// Appends the septets of `c` to `out`.
pub(crate) fn push_septets(out: &mut Vec<u8>, s: Septets) {
    match s {
        Septets::One(v) => out.push(v),
        Septets::Escaped(v) => {
            out.push(ESC);
            out.push(v);
        }
    }
}

/// Encodes `text` as unpacked septets (one per octet).
///
/// # Errors
/// [`EncodeError::Unmappable`] naming the first character outside the alphabet.
pub fn encode_unpacked(text: &str) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(text.len());
    for (index, c) in text.char_indices() {
        let s = char_septets(c).ok_or(EncodeError::Unmappable {
            encoding: Encoding::Gsm7,
            ch: c,
            index,
        })?;
        push_septets(&mut out, s);
    }
    Ok(out)
}

/// Decodes unpacked septets (one per octet) to text. See the module doc for how `ESC`
/// sequences that are not in the extension table are rendered.
///
/// # Errors
/// [`EncodeError::InvalidSeptet`] for an octet above 0x7F.
pub fn decode_unpacked(septets: &[u8]) -> Result<String, EncodeError> {
    let mut out = String::with_capacity(septets.len());
    let mut iter = septets.iter().enumerate();
    while let Some((index, &s)) = iter.next() {
        if s > 0x7F {
            return Err(EncodeError::InvalidSeptet { index, value: s });
        }
        if s != ESC {
            out.push(BASE[s as usize]);
            continue;
        }
        match iter.next() {
            None => out.push(' '),
            Some((index, &code)) => {
                if code > 0x7F {
                    return Err(EncodeError::InvalidSeptet { index, value: code });
                }
                let ext = EXTENSION.iter().find(|(k, _)| *k == code).map(|(_, c)| *c);
                out.push(ext.unwrap_or(BASE[code as usize]));
            }
        }
    }
    Ok(out)
}

/// Fill bits needed after a UDH of `udh_octets` octets (UDHL included) so that the first
/// character starts on a septet boundary of the user data (TS 23.040 §9.2.3.24).
///
/// `fill_bits(6) == 1` (8-bit concatenation UDH), `fill_bits(7) == 0`.
#[must_use]
pub const fn fill_bits(udh_octets: usize) -> u8 {
    ((7 - (udh_octets * 8) % 7) % 7) as u8
}

/// Septets that fit in `octets` of user data after a UDH of `udh_octets` octets:
/// `(octets*8 - udh_octets*8 - fill) / 7`. 160 for no UDH, 153 for 6 octets, 152 for 7.
#[must_use]
pub const fn septet_capacity(octets: usize, udh_octets: usize) -> usize {
    let bits = octets * 8;
    let used = udh_octets * 8 + fill_bits(udh_octets) as usize;
    if used >= bits { 0 } else { (bits - used) / 7 }
}

/// Packs septets into octets, LSB first, after `fill_bits` leading zero bits (0..=6).
///
/// The result is `ceil((fill_bits + 7 * septets.len()) / 8)` octets; spare high bits of the
/// last octet are zero. The top bit of each input value is ignored.
#[must_use]
pub fn pack(septets: &[u8], fill_bits: u8) -> Vec<u8> {
    let fill = u32::from(fill_bits % 7);
    let total_bits = fill as usize + septets.len() * 7;
    let mut out = Vec::with_capacity(total_bits.div_ceil(8));
    // Bit accumulator: septets go in at the top, whole octets come out at the bottom.
    let mut acc: u32 = 0;
    let mut nbits = fill;
    for &s in septets {
        acc |= u32::from(s & 0x7F) << nbits;
        nbits += 7;
        if nbits >= 8 {
            out.push(acc as u8);
            acc >>= 8;
            nbits -= 8;
        }
    }
    if nbits > 0 {
        out.push(acc as u8);
    }
    out
}

/// Unpacks up to `max_septets` septets from `octets`, skipping `fill_bits` leading bits.
///
/// Pass the septet count from the TP-UDL (minus the UDH septets) when known; packed data is
/// otherwise ambiguous when 7 spare bits remain (they read as a trailing `@`). Never panics:
/// the count is clamped to what the octets hold.
#[must_use]
pub fn unpack(octets: &[u8], fill_bits: u8, max_septets: usize) -> Vec<u8> {
    let fill = u32::from(fill_bits % 7);
    let available = (octets.len() * 8).saturating_sub(fill as usize) / 7;
    let count = available.min(max_septets);
    let mut out = Vec::with_capacity(count);
    let mut acc: u32 = 0;
    let mut nbits: u32 = 0;
    let mut skip = fill;
    for &o in octets {
        acc |= u32::from(o) << nbits;
        nbits += 8;
        if skip > 0 {
            acc >>= skip;
            nbits -= skip;
            skip = 0;
        }
        while nbits >= 7 && out.len() < count {
            out.push((acc & 0x7F) as u8);
            acc >>= 7;
            nbits -= 7;
        }
        if out.len() == count {
            break;
        }
    }
    out
}

/// Encodes `text` and packs it (no UDH, no fill bits).
///
/// # Errors
/// As [`encode_unpacked`].
pub fn encode_packed(text: &str) -> Result<Vec<u8>, EncodeError> {
    Ok(pack(&encode_unpacked(text)?, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_example_hellohello_packs() {
        let packed = encode_packed("hellohello").unwrap();
        assert_eq!(
            packed,
            [0xE8, 0x32, 0x9B, 0xFD, 0x46, 0x97, 0xD9, 0xEC, 0x37]
        );
        let septets = unpack(&packed, 0, 10);
        assert_eq!(decode_unpacked(&septets).unwrap(), "hellohello");
    }

    #[test]
    fn extension_chars_are_two_septets() {
        assert_eq!(septet_len("^{}\\[~]|€\u{000C}"), Some(20));
        assert_eq!(encode_unpacked("€").unwrap(), [ESC, 0x65]);
        assert_eq!(encode_unpacked("[").unwrap(), [ESC, 0x3C]);
        assert_eq!(septet_len("@£$"), Some(3));
        assert_eq!(septet_len("中"), None);
        assert_eq!(septet_len("`"), None);
    }

    #[test]
    fn base_table_round_trips() {
        for (i, &c) in BASE.iter().enumerate() {
            if i == usize::from(ESC) {
                continue;
            }
            assert_eq!(char_septets(c), Some(Septets::One(i as u8)), "{c:?}");
        }
        for (code, c) in EXTENSION {
            assert_eq!(char_septets(c), Some(Septets::Escaped(code)), "{c:?}");
        }
        let all: String = BASE
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != usize::from(ESC))
            .map(|(_, c)| *c)
            .chain(EXTENSION.iter().map(|(_, c)| *c))
            .collect();
        let septets = encode_unpacked(&all).unwrap();
        assert_eq!(decode_unpacked(&septets).unwrap(), all);
        assert_eq!(septets.len(), 127 + 20);
    }

    #[test]
    fn odd_escapes_decode_without_error() {
        assert_eq!(decode_unpacked(&[ESC, 0x41]).unwrap(), "A");
        assert_eq!(decode_unpacked(&[ESC, ESC]).unwrap(), " ");
        assert_eq!(decode_unpacked(&[0x41, ESC]).unwrap(), "A ");
        assert!(decode_unpacked(&[0x80]).is_err());
        assert!(decode_unpacked(&[ESC, 0x80]).is_err());
    }

    #[test]
    fn fill_bits_and_capacity() {
        assert_eq!(fill_bits(6), 1);
        assert_eq!(fill_bits(7), 0);
        assert_eq!(fill_bits(12), 2);
        assert_eq!(septet_capacity(140, 0), 160);
        assert_eq!(septet_capacity(140, 6), 153);
        assert_eq!(septet_capacity(140, 7), 152);
    }

    #[test]
    fn pack_with_fill_bits_round_trips() {
        let septets = encode_unpacked("Hello world, {fill} test").unwrap();
        for fill in 0..7 {
            let packed = pack(&septets, fill);
            assert_eq!(
                packed.len(),
                (usize::from(fill) + septets.len() * 7).div_ceil(8)
            );
            assert_eq!(unpack(&packed, fill, septets.len()), septets);
        }
        // 1 fill bit: the first septet 'H' (0x48) is shifted left by one.
        assert_eq!(pack(&[0x48], 1), [0x90]);
    }
}

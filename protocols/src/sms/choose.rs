//! Encoding choice: the cheapest encoding the channel allows for a text.
//!
//! Rule (in order):
//! 1. GSM 7-bit, if allowed and every character is in the default alphabet or its extension
//!    table (extension characters cost 2 septets).
//! 2. Otherwise the cheapest of the other allowed encodings that can carry the text, by
//!    fewest parts, then fewest octets. On a tie UCS-2 beats GBK (every handset renders
//!    UCS-2), and Latin-1 is taken only when strictly cheaper than UCS-2.
//!
//! Part counts depend on the concatenation scheme, so the caller passes it in.

use std::ops::BitOr;

use super::split::{ConcatScheme, count_parts};
use super::{Encoding, gsm7};

/// A set of text encodings a channel accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct EncodingSet(u8);

impl EncodingSet {
    /// Nothing allowed.
    pub const EMPTY: Self = Self(0);
    /// GSM 7-bit default alphabet.
    pub const GSM7: Self = Self(1);
    /// ISO-8859-1.
    pub const LATIN1: Self = Self(2);
    /// UCS-2 / UTF-16BE.
    pub const UCS2: Self = Self(4);
    /// GBK.
    pub const GBK: Self = Self(8);
    /// ASCII / IA5 (CMPP `Msg_Fmt` 0).
    pub const ASCII: Self = Self(16);
    /// What every SMPP SMSC accepts: GSM 7-bit and UCS-2.
    pub const SMPP_DEFAULT: Self = Self(1 | 4);
    /// CMPP ISMGs: ASCII, UCS-2 and GBK. Pure-ASCII text goes as ASCII (`Msg_Fmt` 0, one
    /// octet per character); GSM 7-bit is left out on purpose: CMPP `Msg_Fmt` 0 means ASCII
    /// octets, not GSM septets (`@` would become 0x00).
    pub const CMPP_DEFAULT: Self = Self(4 | 8 | 16);

    /// True if every encoding in `other` is in `self`.
    #[must_use]
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// The union of two sets.
    #[must_use]
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// The set's flag for a text encoding (`EMPTY` for binary).
    #[must_use]
    pub const fn of(encoding: Encoding) -> Self {
        match encoding {
            Encoding::Gsm7 => Self::GSM7,
            Encoding::Latin1 => Self::LATIN1,
            Encoding::Ucs2 => Self::UCS2,
            Encoding::Gbk => Self::GBK,
            Encoding::Ascii => Self::ASCII,
            Encoding::Binary => Self::EMPTY,
        }
    }
}

impl BitOr for EncodingSet {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        self.union(rhs)
    }
}

/// The outcome of [`choose`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Choice {
    /// The encoding to use.
    pub encoding: Encoding,
    /// How many parts the text will need under the scheme passed to [`choose`].
    pub parts: usize,
}

/// Octets the encoded text takes (GSM 7-bit counted packed), for the tie-break.
fn octets(text: &str, encoding: Encoding) -> Option<usize> {
    match encoding {
        Encoding::Gsm7 => gsm7::septet_len(text).map(|s| (s * 7).div_ceil(8)),
        Encoding::Latin1 => text
            .chars()
            .all(super::latin1::is_latin1)
            .then(|| text.chars().count()),
        Encoding::Ucs2 => Some(super::ucs2::unit_len(text) * 2),
        Encoding::Gbk => super::gbk::encode(text).ok().map(|v| v.len()),
        Encoding::Ascii => text.is_ascii().then_some(text.len()),
        Encoding::Binary => None,
    }
}

/// Picks the cheapest allowed encoding for `text`; `None` if no allowed encoding can carry it
/// (e.g. only GSM 7-bit allowed and the text has Chinese characters).
#[must_use]
pub fn choose(text: &str, allowed: EncodingSet, scheme: ConcatScheme) -> Option<Choice> {
    // count_parts is None exactly when some character is outside the GSM alphabet.
    if allowed.contains(EncodingSet::GSM7)
        && let Some(parts) = count_parts(text, Encoding::Gsm7, scheme)
    {
        return Some(Choice {
            encoding: Encoding::Gsm7,
            parts,
        });
    }
    let cost = |e: Encoding| -> Option<(usize, usize)> {
        if !allowed.contains(EncodingSet::of(e)) {
            return None;
        }
        Some((count_parts(text, e, scheme)?, octets(text, e)?))
    };
    let mut best: Option<(Encoding, (usize, usize))> = None;
    // Evaluation order is the tie-break order: a later candidate must be strictly cheaper.
    // ASCII first: for pure-ASCII text it ties with GBK and is the plainer format.
    for e in [
        Encoding::Ascii,
        Encoding::Ucs2,
        Encoding::Gbk,
        Encoding::Latin1,
    ] {
        if let Some(c) = cost(e)
            && best.is_none_or(|(_, b)| c < b)
        {
            best = Some((e, c));
        }
    }
    best.map(|(encoding, (parts, _))| Choice { encoding, parts })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: EncodingSet = EncodingSet(1 | 2 | 4 | 8);

    #[test]
    fn gsm_text_stays_gsm() {
        let c = choose("Hello {world} €5", ALL, ConcatScheme::Udh8).unwrap();
        assert_eq!(
            c,
            Choice {
                encoding: Encoding::Gsm7,
                parts: 1
            }
        );
        let long = "x".repeat(161);
        assert_eq!(choose(&long, ALL, ConcatScheme::Udh8).unwrap().parts, 2);
    }

    #[test]
    fn latin1_beats_ucs2_when_allowed() {
        // 'ç' is not in the GSM table (only 'Ç' is).
        let text = "garçon";
        assert_eq!(
            choose(text, ALL, ConcatScheme::Udh8).unwrap().encoding,
            Encoding::Latin1
        );
        let c = choose(text, EncodingSet::SMPP_DEFAULT, ConcatScheme::Udh8).unwrap();
        assert_eq!(c.encoding, Encoding::Ucs2);
    }

    #[test]
    fn chinese_prefers_ucs2_on_tie_and_gbk_when_cheaper() {
        let c = choose("你好", ALL, ConcatScheme::Udh8).unwrap();
        assert_eq!(c.encoding, Encoding::Ucs2);
        // Mostly ASCII with one Chinese char: 100 octets in GBK, 198 in UCS-2 (3 parts).
        let text = format!("{}中", "a".repeat(98));
        let c = choose(&text, ALL, ConcatScheme::Udh8).unwrap();
        assert_eq!(
            c,
            Choice {
                encoding: Encoding::Gbk,
                parts: 1
            }
        );
    }

    #[test]
    fn cmpp_ascii_goes_as_ascii() {
        let c = choose(
            "Hello @ sluice",
            EncodingSet::CMPP_DEFAULT,
            ConcatScheme::Udh8,
        )
        .unwrap();
        assert_eq!(
            c,
            Choice {
                encoding: Encoding::Ascii,
                parts: 1
            }
        );
        assert_eq!(c.encoding.cmpp_msg_fmt(), Some(0));
        // 161 ASCII characters: 140 octets per part, 134 with a UDH.
        let long = "a".repeat(161);
        let c = choose(&long, EncodingSet::CMPP_DEFAULT, ConcatScheme::Udh8).unwrap();
        assert_eq!((c.encoding, c.parts), (Encoding::Ascii, 2));
        // Not pure ASCII: GBK / UCS-2 as before.
        let c = choose("你好 sluice", EncodingSet::CMPP_DEFAULT, ConcatScheme::Udh8).unwrap();
        assert_ne!(c.encoding, Encoding::Ascii);
    }

    #[test]
    fn smpp_defaults_never_choose_ascii() {
        for text in ["Hello @ sluice", "garçon", "你好"] {
            let c = choose(text, EncodingSet::SMPP_DEFAULT, ConcatScheme::Udh8).unwrap();
            assert_ne!(c.encoding, Encoding::Ascii, "{text}");
        }
    }

    #[test]
    fn nothing_fits_gives_none() {
        assert_eq!(choose("中", EncodingSet::GSM7, ConcatScheme::Udh8), None);
        assert_eq!(
            choose(
                "😀",
                EncodingSet::GSM7 | EncodingSet::GBK,
                ConcatScheme::Sar
            ),
            None
        );
    }
}

//! SMS content: character encodings, encoding choice, splitting and reassembly. Sans-IO,
//! pure functions; no dependency on the SMPP or CMPP codecs (concatenation numbers are plain
//! integers so either codec can carry them as UDH or TLVs).
//!
//! - [`gsm7`]: GSM 03.38 default alphabet + extension table; packed and unpacked forms.
//! - [`ucs2`], [`latin1`], [`gbk`], [`ascii`]: the other text encodings.
//! - [`choose()`]: the cheapest encoding a channel allows for a text.
//! - [`split`]: text or binary → [`Part`]s with UDH (IE 0x00 / 0x08) or SAR numbers.
//! - [`udh`]: User Data Header parse/build; concatenation and port IEs.
//! - [`reassembly`]: incoming parts → whole messages, bounded memory, caller-driven expiry.
//!
//! Typical outbound use:
//! ```
//! use sluice_protocols::sms::{choose, split_text, ConcatScheme, EncodingSet, SplitOptions};
//! let text = "Hello from sluice";
//! let choice = choose(text, EncodingSet::SMPP_DEFAULT, ConcatScheme::Udh8).unwrap();
//! let parts = split_text(text, choice.encoding, &SplitOptions::new(ConcatScheme::Udh8, 42)).unwrap();
//! assert_eq!(parts.len(), 1);
//! assert_eq!(parts[0].smpp_data_coding(), Some(0));
//!
//! // Or in one call; 80 UCS-2 characters need two parts with an 8-bit-reference UDH.
//! let opts = SplitOptions::new(ConcatScheme::Udh8, 43);
//! let parts = sluice_protocols::sms::split_auto(&"短".repeat(80), EncodingSet::SMPP_DEFAULT, &opts).unwrap();
//! assert_eq!(parts.len(), 2);
//! assert_eq!(parts[0].udh.as_deref(), Some(&[0x05, 0x00, 0x03, 43, 2, 1][..]));
//! ```

pub mod ascii;
pub mod choose;
pub mod error;
pub mod gbk;
pub mod gsm7;
pub mod latin1;
pub mod reassembly;
pub mod split;
pub mod ucs2;
pub mod udh;

pub use choose::{Choice, EncodingSet, choose};
pub use error::{EncodeError, SplitError, UdhError};
pub use reassembly::{MessageKey, Outcome, Reassembler, ReassemblyConfig};
pub use split::{
    ConcatScheme, Gsm7Form, MAX_USER_DATA, Part, SplitOptions, count_parts, split_binary,
    split_text,
};
pub use udh::{Concat, InformationElement, Ports, Udh};

/// How a message's payload is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// GSM 03.38 default alphabet (7-bit).
    Gsm7,
    /// ISO-8859-1.
    Latin1,
    /// UCS-2 / UTF-16BE (surrogate pairs for characters outside the BMP).
    Ucs2,
    /// GBK (CMPP only).
    Gbk,
    /// ASCII / IA5: 7-bit clean octets (CMPP `Msg_Fmt` 0; SMPP `data_coding` 1, which the
    /// SMPP defaults never choose).
    Ascii,
    /// 8-bit binary data.
    Binary,
}

impl Encoding {
    /// SMPP `data_coding`: 0 (SMSC default alphabet, GSM 7-bit), 1 (IA5/ASCII), 3
    /// (Latin-1), 8 (UCS-2), 4 (8-bit binary). `None` for GBK, which SMPP does not define.
    #[must_use]
    pub const fn smpp_data_coding(self) -> Option<u8> {
        match self {
            Self::Gsm7 => Some(0),
            Self::Ascii => Some(1),
            Self::Latin1 => Some(3),
            Self::Ucs2 => Some(8),
            Self::Binary => Some(4),
            Self::Gbk => None,
        }
    }

    /// CMPP `Msg_Fmt`: 0 (ASCII), 8 (UCS-2), 15 (GBK), 4 (binary). `None` for Latin-1 and
    /// GSM 7-bit, which CMPP does not define: `Msg_Fmt` 0 carries ASCII octets, not GSM
    /// septets (GSM `@` is 0x00), so GSM text must go as [`Encoding::Ascii`], UCS-2 or GBK.
    #[must_use]
    pub const fn cmpp_msg_fmt(self) -> Option<u8> {
        match self {
            Self::Ascii => Some(0),
            Self::Ucs2 => Some(8),
            Self::Gbk => Some(15),
            Self::Binary => Some(4),
            Self::Latin1 | Self::Gsm7 => None,
        }
    }

    /// Interprets an SMPP `data_coding` (incl. the GSM 0xF0..=0xF7 message-class forms);
    /// `None` for values sluice does not decode (IA5, JIS, ...).
    #[must_use]
    pub const fn from_smpp_data_coding(dc: u8) -> Option<Self> {
        match dc {
            0 | 0xF0..=0xF3 => Some(Self::Gsm7),
            3 => Some(Self::Latin1),
            8 => Some(Self::Ucs2),
            2 | 4 | 0xF4..=0xF7 => Some(Self::Binary),
            _ => None,
        }
    }

    /// Interprets a CMPP `Msg_Fmt` (0 is ASCII).
    #[must_use]
    pub const fn from_cmpp_msg_fmt(fmt: u8) -> Option<Self> {
        match fmt {
            0 => Some(Self::Ascii),
            8 => Some(Self::Ucs2),
            15 => Some(Self::Gbk),
            4 => Some(Self::Binary),
            _ => None,
        }
    }
}

/// Chooses the cheapest allowed encoding for `text` ([`choose()`]) and splits it with `opts`:
/// the one call a channel makes per outgoing text message.
///
/// # Errors
/// [`SplitError::NoEncoding`] when no allowed encoding fits, else as [`split_text`].
pub fn split_auto(
    text: &str,
    allowed: EncodingSet,
    opts: &SplitOptions,
) -> Result<Vec<Part>, SplitError> {
    let choice = choose(text, allowed, opts.scheme).ok_or(SplitError::NoEncoding)?;
    split_text(text, choice.encoding, opts)
}

/// Encodes `text` in a text encoding; GSM 7-bit comes out unpacked (one septet per octet).
///
/// # Errors
/// [`EncodeError::Unmappable`] for a character the encoding lacks (and for
/// [`Encoding::Binary`], which is not a text encoding).
pub fn encode(text: &str, encoding: Encoding) -> Result<Vec<u8>, EncodeError> {
    match encoding {
        Encoding::Gsm7 => gsm7::encode_unpacked(text),
        Encoding::Latin1 => latin1::encode(text),
        Encoding::Ucs2 => Ok(ucs2::encode(text)),
        Encoding::Gbk => gbk::encode(text),
        Encoding::Ascii => ascii::encode(text),
        Encoding::Binary => match text.chars().next() {
            None => Ok(Vec::new()),
            Some(ch) => Err(EncodeError::Unmappable {
                encoding,
                ch,
                index: 0,
            }),
        },
    }
}

/// Decodes a payload (GSM 7-bit unpacked) to text.
///
/// # Errors
/// As the per-encoding decoders; binary is decoded as Latin-1 (never fails).
pub fn decode(bytes: &[u8], encoding: Encoding) -> Result<String, EncodeError> {
    match encoding {
        Encoding::Gsm7 => gsm7::decode_unpacked(bytes),
        Encoding::Latin1 | Encoding::Binary => Ok(latin1::decode(bytes)),
        Encoding::Ucs2 => ucs2::decode(bytes),
        Encoding::Gbk => gbk::decode(bytes),
        Encoding::Ascii => ascii::decode(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmpp_format_0_is_ascii_and_smpp_dc_0_stays_gsm() {
        assert_eq!(Encoding::from_cmpp_msg_fmt(0), Some(Encoding::Ascii));
        assert_eq!(Encoding::Ascii.cmpp_msg_fmt(), Some(0));
        assert_eq!(Encoding::Gsm7.cmpp_msg_fmt(), None);
        assert_eq!(Encoding::from_smpp_data_coding(0), Some(Encoding::Gsm7));
        assert_eq!(Encoding::Gsm7.smpp_data_coding(), Some(0));
        assert_ne!(Encoding::Ascii.smpp_data_coding(), Some(0));
        assert_eq!(encode("a@b", Encoding::Ascii).unwrap(), b"a@b");
        assert_eq!(decode(b"a@b", Encoding::Ascii).unwrap(), "a@b");
    }
}

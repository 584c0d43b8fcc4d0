//! Errors of the `sms` module, one enum per operation. None of them allocate.

use super::Encoding;

/// Text could not be converted to or from an encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// A character has no code in the target encoding (the caller usually falls back to UCS-2).
    #[error("{encoding:?} cannot represent {ch:?} at byte {index}")]
    Unmappable {
        /// The encoding that was asked for.
        encoding: Encoding,
        /// The first character that does not map.
        ch: char,
        /// Byte offset of `ch` in the input text.
        index: usize,
    },
    /// A GSM 7-bit input octet above 0x7F.
    #[error("invalid GSM septet 0x{value:02X} at octet {index}")]
    InvalidSeptet {
        /// Offset of the octet.
        index: usize,
        /// Its value.
        value: u8,
    },
    /// UCS-2 / UTF-16BE input with an odd number of octets.
    #[error("UCS-2 data has odd length {len}")]
    OddLength {
        /// Octets received.
        len: usize,
    },
    /// UTF-16 input with a surrogate that has no partner.
    #[error("unpaired UTF-16 surrogate 0x{unit:04X} at octet {index}")]
    UnpairedSurrogate {
        /// Offset of the code unit.
        index: usize,
        /// The code unit.
        unit: u16,
    },
    /// Bytes that are not valid in a multi-byte encoding (GBK).
    #[error("malformed {encoding:?} data")]
    Malformed {
        /// The encoding being decoded.
        encoding: Encoding,
    },
}

/// A text or binary message could not be split into SMS parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SplitError {
    /// The text does not fit the chosen encoding.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// More parts are needed than the caller allows.
    #[error("message needs {needed} parts, at most {max} allowed")]
    TooManyParts {
        /// Parts the message needs (a lower bound when it exceeds 255).
        needed: usize,
        /// The caller's limit.
        max: usize,
    },
    /// The caller's UDH leaves no room for any payload.
    #[error("UDH of {udh_octets} octets leaves no room for payload")]
    UdhTooLong {
        /// Octets the UDH (with UDHL and concatenation IE) would take.
        udh_octets: usize,
    },
    /// None of the allowed encodings can represent the text (UCS-2 not allowed).
    #[error("no allowed encoding can represent the text")]
    NoEncoding,
    /// The encoding is not usable for this operation (binary text, GBK under SAR/UDH etc.).
    #[error("{0:?} cannot be used here")]
    UnsupportedEncoding(Encoding),
}

/// A User Data Header could not be parsed or built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UdhError {
    /// No octets at all where a UDHL was expected.
    #[error("empty user data, no UDHL")]
    Empty,
    /// UDHL points past the end of the user data.
    #[error("UDHL {udhl} exceeds the {available} octets that follow")]
    LengthOverrun {
        /// The UDHL octet.
        udhl: usize,
        /// Octets after the UDHL.
        available: usize,
    },
    /// An information element's length runs past the end of the header.
    #[error("IE 0x{id:02X} at offset {offset} declares {len} octets, header has {remaining}")]
    IeOverrun {
        /// IEI.
        id: u8,
        /// Offset of the IEI inside the header.
        offset: usize,
        /// IEDL.
        len: usize,
        /// Octets left in the header after IEDL.
        remaining: usize,
    },
    /// A header being built would exceed 255 octets (UDHL is one octet).
    #[error("UDH of {len} octets exceeds 255")]
    TooLong {
        /// The length it would have had.
        len: usize,
    },
    /// An IE being built has more than 255 octets of data.
    #[error("IE 0x{id:02X} data of {len} octets exceeds 255")]
    IeTooLong {
        /// IEI.
        id: u8,
        /// Data length.
        len: usize,
    },
}

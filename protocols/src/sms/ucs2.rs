//! UCS-2 / UTF-16BE (SMPP `data_coding` 8, CMPP `Msg_Fmt` 8), on std's UTF-16 support.
//!
//! Invariant: characters outside the BMP (emoji) are written as surrogate pairs, i.e. real
//! UTF-16, which is what handsets display. A pair is one unit for splitting purposes
//! ([`char_units`]), so a splitter can never cut it in half.

use super::error::EncodeError;

/// UTF-16 code units of one character: 1 in the BMP, 2 (a surrogate pair) above it.
#[must_use]
pub const fn char_units(c: char) -> usize {
    c.len_utf16()
}

/// UTF-16 code units of `text`.
#[must_use]
pub fn unit_len(text: &str) -> usize {
    text.encode_utf16().count()
}

/// Encodes `text` as UTF-16BE. Infallible: every `char` has a UTF-16 form.
#[must_use]
pub fn encode(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() * 2);
    for unit in text.encode_utf16() {
        out.extend_from_slice(&unit.to_be_bytes());
    }
    out
}

/// Decodes UTF-16BE.
///
/// # Errors
/// [`EncodeError::OddLength`] or [`EncodeError::UnpairedSurrogate`].
pub fn decode(bytes: &[u8]) -> Result<String, EncodeError> {
    if !bytes.len().is_multiple_of(2) {
        return Err(EncodeError::OddLength { len: bytes.len() });
    }
    let units = bytes
        .chunks_exact(2)
        .map(|p| u16::from_be_bytes([p[0], p[1]]));
    let mut out = String::with_capacity(bytes.len() / 2);
    let mut units_read = 0usize;
    for r in char::decode_utf16(units) {
        match r {
            Ok(c) => {
                units_read += c.len_utf16();
                out.push(c);
            }
            Err(e) => {
                return Err(EncodeError::UnpairedSurrogate {
                    index: units_read * 2,
                    unit: e.unpaired_surrogate(),
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bmp_and_emoji_round_trip() {
        let text = "Hi 你好 😀";
        let bytes = encode(text);
        assert_eq!(&bytes[..4], [0x00, 0x48, 0x00, 0x69]);
        // U+1F600 = D83D DE00
        assert_eq!(&bytes[bytes.len() - 4..], [0xD8, 0x3D, 0xDE, 0x00]);
        assert_eq!(decode(&bytes).unwrap(), text);
        assert_eq!(unit_len(text), 8);
        assert_eq!(char_units('😀'), 2);
    }

    #[test]
    fn bad_input_is_an_error() {
        assert_eq!(decode(&[0x00]), Err(EncodeError::OddLength { len: 1 }));
        assert_eq!(
            decode(&[0x00, 0x41, 0xD8, 0x3D]),
            Err(EncodeError::UnpairedSurrogate {
                index: 2,
                unit: 0xD83D
            })
        );
        assert!(decode(&[0xDE, 0x00]).is_err());
    }
}

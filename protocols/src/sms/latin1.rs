//! ISO-8859-1 (SMPP `data_coding` 3): one octet per character, U+0000..=U+00FF.

use super::Encoding;
use super::error::EncodeError;

/// True if `c` is in ISO-8859-1.
#[must_use]
pub const fn is_latin1(c: char) -> bool {
    (c as u32) <= 0xFF
}

/// Encodes `text` as ISO-8859-1.
///
/// # Errors
/// [`EncodeError::Unmappable`] for the first character above U+00FF.
pub fn encode(text: &str) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(text.len());
    for (index, ch) in text.char_indices() {
        if !is_latin1(ch) {
            return Err(EncodeError::Unmappable {
                encoding: Encoding::Latin1,
                ch,
                index,
            });
        }
        out.push(ch as u32 as u8);
    }
    Ok(out)
}

/// Decodes ISO-8859-1. Infallible: every octet is a character.
#[must_use]
pub fn decode(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_reject() {
        let text = "Café ÿ";
        let bytes = encode(text).unwrap();
        assert_eq!(bytes, b"Caf\xE9 \xFF");
        assert_eq!(decode(&bytes), text);
        assert!(matches!(
            encode("a€"),
            Err(EncodeError::Unmappable {
                ch: '€',
                index: 1,
                ..
            })
        ));
    }
}

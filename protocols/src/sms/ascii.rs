//! ASCII / IA5 (CMPP `Msg_Fmt` 0, SMPP `data_coding` 1): one octet per character,
//! U+0000..=U+007F, the octet being the character's code (7-bit clean).
//!
//! Not GSM 7-bit: CMPP's format 0 carries ASCII octets, so `@` is 0x40 here (GSM's 0x00).

use super::Encoding;
use super::error::EncodeError;

/// True if `c` is ASCII.
#[must_use]
pub const fn is_ascii(c: char) -> bool {
    c.is_ascii()
}

/// Encodes `text` as ASCII octets.
///
/// # Errors
/// [`EncodeError::Unmappable`] for the first character above U+007F.
pub fn encode(text: &str) -> Result<Vec<u8>, EncodeError> {
    if let Some((index, ch)) = text.char_indices().find(|(_, c)| !c.is_ascii()) {
        return Err(EncodeError::Unmappable {
            encoding: Encoding::Ascii,
            ch,
            index,
        });
    }
    Ok(text.as_bytes().to_vec())
}

/// Decodes ASCII octets.
///
/// # Errors
/// [`EncodeError::Malformed`] for an octet above 0x7F (not 7-bit clean).
pub fn decode(bytes: &[u8]) -> Result<String, EncodeError> {
    if bytes.is_ascii() {
        Ok(bytes.iter().map(|&b| char::from(b)).collect())
    } else {
        Err(EncodeError::Malformed {
            encoding: Encoding::Ascii,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusals() {
        let text = "Hello @ sluice {1}~";
        let bytes = encode(text).unwrap();
        assert_eq!(bytes[6], 0x40, "@ is 0x40, not GSM's 0x00");
        assert_eq!(decode(&bytes).unwrap(), text);
        assert!(matches!(
            encode("café"),
            Err(EncodeError::Unmappable {
                ch: 'é',
                index: 3,
                ..
            })
        ));
        assert!(decode(&[0x41, 0x80]).is_err());
    }
}

//! GBK (CMPP `Msg_Fmt` 15) through `encoding_rs`.
//!
//! `encoding_rs::Encoding::encode` would turn unmappable characters into `&#NNNN;`; this
//! module uses `encode_from_utf8_without_replacement` instead and reports them, so the caller
//! can fall back to UCS-2.

use encoding_rs::{EncoderResult, GBK};

use super::Encoding;
use super::error::EncodeError;

/// Encodes `text` as GBK.
///
/// # Errors
/// [`EncodeError::Unmappable`] naming the first character GBK cannot represent.
pub fn encode(text: &str) -> Result<Vec<u8>, EncodeError> {
    let mut encoder = GBK.new_encoder();
    let cap = encoder
        .max_buffer_length_from_utf8_without_replacement(text.len())
        .unwrap_or(text.len() * 4 + 16);
    let mut out = vec![0u8; cap];
    let (result, read, written) =
        encoder.encode_from_utf8_without_replacement(text, &mut out, true);
    match result {
        EncoderResult::InputEmpty => {
            out.truncate(written);
            Ok(out)
        }
        EncoderResult::Unmappable(ch) => Err(EncodeError::Unmappable {
            encoding: Encoding::Gbk,
            ch,
            index: read - ch.len_utf8(),
        }),
        // The buffer was sized by the encoder's own bound, so this cannot happen; report it
        // as unmappable rather than panic.
        EncoderResult::OutputFull => Err(EncodeError::Malformed {
            encoding: Encoding::Gbk,
        }),
    }
}

/// GBK octets of one character (1 for ASCII, 2 otherwise), or `None` if unmappable.
#[must_use]
pub fn char_len(c: char) -> Option<usize> {
    if c.is_ascii() {
        return Some(1);
    }
    let mut buf = [0u8; 4];
    encode(c.encode_utf8(&mut buf)).ok().map(|v| v.len())
}

/// Decodes GBK.
///
/// # Errors
/// [`EncodeError::Malformed`] on byte sequences GBK does not define.
pub fn decode(bytes: &[u8]) -> Result<String, EncodeError> {
    GBK.decode_without_bom_handling_and_without_replacement(bytes)
        .map(std::borrow::Cow::into_owned)
        .ok_or(EncodeError::Malformed {
            encoding: Encoding::Gbk,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chinese_round_trips() {
        let bytes = encode("中文ab").unwrap();
        assert_eq!(bytes, [0xD6, 0xD0, 0xCE, 0xC4, b'a', b'b']);
        assert_eq!(decode(&bytes).unwrap(), "中文ab");
        assert_eq!(char_len('中'), Some(2));
    }

    #[test]
    fn emoji_is_unmappable() {
        assert_eq!(
            encode("ab😀"),
            Err(EncodeError::Unmappable {
                encoding: Encoding::Gbk,
                ch: '😀',
                index: 2
            })
        );
        assert_eq!(char_len('😀'), None);
        assert!(decode(&[0xD6]).is_err());
    }
}

//! The 16-byte SMPP header and the "has a whole PDU arrived?" check.
//!
//! Wire format (all big-endian u32): `command_length`, `command_id`, `command_status`,
//! `sequence_number`. `command_length` counts the header itself, so it is never below 16.
//! [`check`] looks only at the first four bytes and decides before anything is allocated.

use super::error::FrameError;

/// Length of the fixed SMPP header.
pub const HEADER_LEN: usize = 16;

/// Default largest PDU we accept (64 KiB): a submit_sm with a full message_payload fits.
pub const DEFAULT_MAX_LEN: usize = 64 * 1024;

/// The four header words as read from the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Total PDU length including the header.
    pub command_length: u32,
    /// Raw command id.
    pub command_id: u32,
    /// Raw command status.
    pub command_status: u32,
    /// Sequence number, echoed in the response.
    pub sequence: u32,
}

impl Header {
    /// Reads the header from the first 16 bytes; `None` when fewer are given.
    pub fn read(buf: &[u8]) -> Option<Self> {
        let h: &[u8; HEADER_LEN] = buf.get(..HEADER_LEN)?.try_into().ok()?;
        let word = |i: usize| u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        Some(Self {
            command_length: word(0),
            command_id: word(4),
            command_status: word(8),
            sequence: word(12),
        })
    }
}

/// Decides whether `buf` starts with one complete PDU.
///
/// Returns `Ok(Some(len))` with the PDU's total length when all of it is in `buf`,
/// `Ok(None)` when more bytes are needed (fewer than 16, or the body has not arrived), and an
/// error as soon as the header is readable and `command_length` is below 16 or above
/// `max_len`. The length is checked before the caller buffers the body, so a hostile length
/// never causes an allocation.
///
/// # Errors
/// [`FrameError::TooShort`] / [`FrameError::TooLong`]; answer with
/// [`FrameError::response`] and close the connection (the stream cannot be resynchronised).
pub fn check(buf: &[u8], max_len: usize) -> Result<Option<usize>, FrameError> {
    let Some(header) = Header::read(buf) else {
        return Ok(None);
    };
    let len = header.command_length as usize;
    if len < HEADER_LEN {
        return Err(FrameError::TooShort {
            length: header.command_length,
            sequence: header.sequence,
        });
    }
    if len > max_len {
        return Err(FrameError::TooLong {
            length: header.command_length,
            max: max_len,
            sequence: header.sequence,
        });
    }
    Ok((buf.len() >= len).then_some(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_header_needs_more() {
        assert_eq!(check(&[0, 0, 0], DEFAULT_MAX_LEN), Ok(None));
    }

    #[test]
    fn partial_body_needs_more() {
        let mut b = vec![0, 0, 0, 20, 0, 0, 0, 0x15, 0, 0, 0, 0, 0, 0, 0, 1];
        assert_eq!(check(&b, DEFAULT_MAX_LEN), Ok(None));
        b.extend_from_slice(&[0; 4]);
        assert_eq!(check(&b, DEFAULT_MAX_LEN), Ok(Some(20)));
    }

    #[test]
    fn rejects_bad_lengths() {
        let short = [0, 0, 0, 15, 0, 0, 0, 0x15, 0, 0, 0, 0, 0, 0, 0, 7];
        assert!(matches!(
            check(&short, DEFAULT_MAX_LEN),
            Err(FrameError::TooShort {
                length: 15,
                sequence: 7
            })
        ));
        let long = [
            0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0x15, 0, 0, 0, 0, 0, 0, 0, 7,
        ];
        assert!(matches!(
            check(&long, DEFAULT_MAX_LEN),
            Err(FrameError::TooLong { .. })
        ));
    }
}

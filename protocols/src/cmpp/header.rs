//! The 12-byte header and the frame check that runs before any body is buffered.
//!
//! `Total_Length` (u32, whole PDU including the header), `Command_Id` (u32), `Sequence_Id`
//! (u32), all big-endian. [`check`] rejects a `Total_Length` below 12 or above the caller's
//! maximum as soon as the header is readable, so a hostile length never makes anyone
//! reserve memory; it returns `Ok(None)` while the frame is incomplete.

use super::codes::CommandId;
use super::error::FrameError;

/// Length of the header in bytes.
pub const HEADER_LEN: usize = 12;

/// Largest PDU accepted unless the caller says otherwise (64 KiB; a full 3.0 SUBMIT to 100
/// terminals is under 4 KiB).
pub const DEFAULT_MAX_LENGTH: u32 = 64 * 1024;

/// A parsed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Header {
    /// Whole PDU length in bytes, header included.
    pub total_length: u32,
    /// What the body is.
    pub command_id: CommandId,
    /// Matches a response to its request.
    pub sequence_id: u32,
}

impl Header {
    /// Reads the three header fields from the first 12 bytes (no validation).
    pub fn parse(bytes: &[u8; HEADER_LEN]) -> Self {
        let word =
            |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        Self {
            total_length: word(0),
            command_id: CommandId::from_raw(word(4)),
            sequence_id: word(8),
        }
    }

    /// Body length implied by `total_length` (0 if it is below the header length).
    pub fn body_len(&self) -> usize {
        (self.total_length as usize).saturating_sub(HEADER_LEN)
    }
}

/// Looks at the start of `buf`: `Ok(None)` if the header or the body has not fully
/// arrived, `Ok(Some(header))` once `header.total_length` bytes are present, and an error
/// for a length outside `12..=max_length` (checked as soon as 12 bytes are present).
pub fn check(buf: &[u8], max_length: u32) -> Result<Option<Header>, FrameError> {
    let Some(first) = buf.first_chunk::<HEADER_LEN>() else {
        return Ok(None);
    };
    let header = Header::parse(first);
    if (header.total_length as usize) < HEADER_LEN {
        return Err(FrameError::TooShort {
            total_length: header.total_length,
        });
    }
    if header.total_length > max_length {
        return Err(FrameError::TooLong {
            total_length: header.total_length,
            max: max_length,
        });
    }
    if buf.len() < header.total_length as usize {
        return Ok(None);
    }
    Ok(Some(header))
}

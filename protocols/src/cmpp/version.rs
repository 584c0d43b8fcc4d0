//! The negotiated protocol version and the field widths that depend on it.
//!
//! CMPP 2.0 and 3.0 share one code path: every PDU asks `Version` for the widths that
//! differ (terminal ids 21 vs 32 octets, 1- vs 4-byte result fields, 60- vs 71-byte status
//! reports) instead of keeping two copies of each PDU.

use std::fmt;

/// A CMPP protocol version as negotiated by CONNECT / CONNECT_RESP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Version {
    /// CMPP 2.0, Version byte 0x20.
    V20,
    /// CMPP 3.0, Version byte 0x30.
    V30,
}

impl Version {
    /// The Version byte sent in CONNECT / CONNECT_RESP.
    pub const fn byte(self) -> u8 {
        match self {
            Self::V20 => 0x20,
            Self::V30 => 0x30,
        }
    }

    /// Reads a Version byte by its major nibble: 0x20..=0x2F is 2.0, 0x30..=0x3F is 3.0.
    ///
    /// Returns the version and whether the byte was exact (0x20 / 0x30); some ISMGs send
    /// 0x21 or 0x31 and mean the same protocol, which callers count as a tolerance.
    pub const fn from_byte(byte: u8) -> Option<(Self, bool)> {
        match byte >> 4 {
            2 => Some((Self::V20, byte == 0x20)),
            3 => Some((Self::V30, byte == 0x30)),
            _ => None,
        }
    }

    /// Width of Fee_terminal_Id, Dest_terminal_Id, Src_terminal_Id and the report's
    /// Dest_terminal_Id: 21 octets in 2.0, widened to 32 in 3.0.
    pub const fn terminal_id_len(self) -> usize {
        match self {
            Self::V20 => 21,
            Self::V30 => 32,
        }
    }

    /// Width of CONNECT_RESP Status, SUBMIT_RESP / DELIVER_RESP Result and CANCEL_RESP
    /// Success_Id: one byte in 2.0, four in 3.0.
    pub const fn status_len(self) -> usize {
        match self {
            Self::V20 => 1,
            Self::V30 => 4,
        }
    }

    /// Length of the status-report struct carried in DELIVER Msg_Content:
    /// 8 + 7 + 10 + 10 + terminal id + 4 = 60 (2.0) or 71 (3.0).
    pub const fn report_len(self) -> usize {
        8 + 7 + 10 + 10 + self.terminal_id_len() + 4
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::V20 => "CMPP 2.0",
            Self::V30 => "CMPP 3.0",
        })
    }
}

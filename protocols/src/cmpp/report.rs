//! The status report carried in a DELIVER's Msg_Content when Registered_Delivery = 1.
//!
//! Msg_Id(8) Stat(7) Submit_time(10) Done_time(10) Dest_terminal_Id(21 in 2.0, 32 in 3.0)
//! SMSC_sequence(4): 60 bytes in 2.0, 71 in 3.0. The struct's length, not the link's
//! version, decides the terminal id width on decode (a mismatch is tolerated and noted).

use bytes::{BufMut, Bytes, BytesMut};

use super::error::{DecodeErrorKind, EncodeError};
use super::msg_id::MsgId;
use super::octets::{FixedStr, Reader, check_width, put_fixed};
use super::tolerated::{Tolerance, Tolerated};
use super::version::Version;

/// A delivery status report for an earlier SUBMIT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatusReport {
    /// The Msg_Id the ISMG returned in SUBMIT_RESP.
    pub msg_id: MsgId,
    /// Final state: DELIVRD, EXPIRED, DELETED, UNDELIV, ACCEPTD, UNKNOWN, REJECTD, or an
    /// ISMG-specific code.
    pub stat: FixedStr<7>,
    /// `YYMMDDHHMM` the message was submitted.
    pub submit_time: FixedStr<10>,
    /// `YYMMDDHHMM` the message reached its final state.
    pub done_time: FixedStr<10>,
    /// The destination terminal, 21 octets in 2.0, 32 in 3.0.
    pub dest_terminal_id: FixedStr<32>,
    /// The SMSC's sequence number for the message.
    pub smsc_sequence: u32,
}

impl StatusReport {
    /// Whether the message reached the handset (Stat = DELIVRD).
    pub fn is_delivered(&self) -> bool {
        self.stat.as_bytes() == b"DELIVRD"
    }

    /// Parses a report from Msg_Content of 60 or 71 bytes.
    pub(crate) fn decode(
        content: &Bytes,
        v: Version,
        tol: &mut Tolerated,
    ) -> Result<Self, DecodeErrorKind> {
        let width = if content.len() == Version::V20.report_len() {
            Version::V20
        } else if content.len() == Version::V30.report_len() {
            Version::V30
        } else {
            return Err(DecodeErrorKind::ReportLength(content.len() as u8));
        };
        if width != v {
            tol.insert(Tolerance::ReportWidth);
        }
        let mut r = Reader::new(content);
        Ok(Self {
            msg_id: MsgId(r.u64("Msg_Id")?),
            stat: r.fixed(7, "Stat", tol)?,
            submit_time: r.fixed(10, "Submit_time", tol)?,
            done_time: r.fixed(10, "Done_time", tol)?,
            dest_terminal_id: r.fixed(width.terminal_id_len(), "Dest_terminal_Id", tol)?,
            smsc_sequence: r.u32("SMSC_sequence")?,
        })
    }

    pub(crate) fn check(&self, v: Version) -> Result<usize, EncodeError> {
        check_width(
            "Dest_terminal_Id",
            self.dest_terminal_id.len(),
            v.terminal_id_len(),
            v,
        )?;
        Ok(v.report_len())
    }

    pub(crate) fn write(&self, v: Version, dst: &mut BytesMut) {
        dst.put_u64(self.msg_id.0);
        put_fixed(dst, &self.stat, 7);
        put_fixed(dst, &self.submit_time, 10);
        put_fixed(dst, &self.done_time, 10);
        put_fixed(dst, &self.dest_terminal_id, v.terminal_id_len());
        dst.put_u32(self.smsc_sequence);
    }
}

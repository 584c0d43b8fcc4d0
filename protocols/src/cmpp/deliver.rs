//! CMPP_DELIVER (mobile-originated message or status report) and CMPP_DELIVER_RESP.
//!
//! DELIVER body (3.0-only fields marked ³, widths "2.0/3.0"): Msg_Id(8) Dest_Id(21)
//! Service_Id(10) TP_pid(1) TP_udhi(1) Msg_Fmt(1) Src_terminal_Id(21/32)
//! Src_terminal_type(1)³ Registered_Delivery(1) Msg_Length(1) Msg_Content then Reserved(8)
//! in 2.0 or LinkID(20) in 3.0.
//!
//! Registered_Delivery is derived: 1 exactly when the content is a [`StatusReport`]. A
//! value other than 0 or 1 from a peer is read as an MO message.
//!
//! DELIVER_RESP: Msg_Id(8) Result(1 in 2.0, 4 in 3.0).

use bytes::{BufMut, Bytes, BytesMut};

use super::codes::{MsgFmt, ResultCode};
use super::error::{DecodeErrorKind, EncodeError};
use super::msg_id::MsgId;
use super::octets::{FixedStr, Reader, check_absent, check_width, finish, put_fixed};
use super::report::StatusReport;
use super::submit::{decode_id_result, id_result_len, write_id_result};
use super::tolerated::{Tolerance, Tolerated};
use super::version::Version;

/// What a DELIVER carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliverContent {
    /// A mobile-originated message: raw Msg_Content (≤ 255 bytes), encoded per Msg_Fmt.
    Message(Bytes),
    /// A status report (Registered_Delivery = 1).
    Report(StatusReport),
}

impl Default for DeliverContent {
    fn default() -> Self {
        Self::Message(Bytes::new())
    }
}

/// CMPP_DELIVER: ISMG → SP.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Deliver {
    /// The ISMG's id for this DELIVER (echoed in DELIVER_RESP).
    pub msg_id: MsgId,
    /// The SP service number the MO was sent to (for a report: the original Src_Id).
    pub dest_id: FixedStr<21>,
    /// Service code, 10 octets.
    pub service_id: FixedStr<10>,
    /// GSM TP-PID.
    pub tp_pid: u8,
    /// GSM TP-UDHI: 1 when the content starts with a UDH.
    pub tp_udhi: u8,
    /// How Msg_Content is encoded.
    pub msg_fmt: MsgFmt,
    /// The sending handset (for a report: the destination of the original message).
    pub src_terminal_id: FixedStr<32>,
    /// 3.0 only: 0 real number, 1 pseudo-code.
    pub src_terminal_type: u8,
    /// MO message or status report.
    pub content: DeliverContent,
    /// 3.0 only: LinkID, 20 octets.
    pub link_id: FixedStr<20>,
}

impl Deliver {
    /// The status report, if this DELIVER is one.
    pub fn report(&self) -> Option<&StatusReport> {
        match &self.content {
            DeliverContent::Report(r) => Some(r),
            DeliverContent::Message(_) => None,
        }
    }

    pub(crate) fn decode(
        r: &mut Reader<'_>,
        v: Version,
        tol: &mut Tolerated,
    ) -> Result<Self, DecodeErrorKind> {
        let msg_id = MsgId(r.u64("Msg_Id")?);
        let dest_id = r.fixed(21, "Dest_Id", tol)?;
        let service_id = r.fixed(10, "Service_Id", tol)?;
        let tp_pid = r.u8("TP_pid")?;
        let tp_udhi = r.u8("TP_udhi")?;
        let msg_fmt = MsgFmt::from_raw(r.u8("Msg_Fmt")?);
        let src_terminal_id = r.fixed(v.terminal_id_len(), "Src_terminal_Id", tol)?;
        let src_terminal_type = match v {
            Version::V20 => 0,
            Version::V30 => r.u8("Src_terminal_type")?,
        };
        let registered_delivery = r.u8("Registered_Delivery")?;
        let len = r.u8("Msg_Length")?;
        let raw = r.take_bytes(len.into(), "Msg_Content")?;
        let content = if registered_delivery == 1 {
            DeliverContent::Report(StatusReport::decode(&raw, v, tol)?)
        } else {
            DeliverContent::Message(raw)
        };
        let link_id = match (v, r.remaining()) {
            (_, 0) => {
                tol.insert(Tolerance::MissingTrailer);
                FixedStr::EMPTY
            }
            (Version::V20, _) => {
                r.take(8, "Reserved")?;
                FixedStr::EMPTY
            }
            (Version::V30, _) => r.fixed(20, "LinkID", tol)?,
        };
        finish(r, tol);
        Ok(Self {
            msg_id,
            dest_id,
            service_id,
            tp_pid,
            tp_udhi,
            msg_fmt,
            src_terminal_id,
            src_terminal_type,
            content,
            link_id,
        })
    }

    pub(crate) fn body_len(&self, v: Version) -> Result<usize, EncodeError> {
        let tid = v.terminal_id_len();
        check_width("Src_terminal_Id", self.src_terminal_id.len(), tid, v)?;
        check_absent("Src_terminal_type", self.src_terminal_type != 0, v)?;
        check_absent("LinkID", !self.link_id.is_empty(), v)?;
        let content_len = match &self.content {
            DeliverContent::Message(m) => {
                check_width("Msg_Content", m.len(), 255, v)?;
                m.len()
            }
            DeliverContent::Report(r) => r.check(v)?,
        };
        let version_extra = match v {
            Version::V20 => 8,      // Reserved
            Version::V30 => 1 + 20, // Src_terminal_type, LinkID
        };
        Ok(8 + 21 + 10 + 3 + tid + 2 + content_len + version_extra)
    }

    pub(crate) fn write(&self, v: Version, dst: &mut BytesMut) {
        dst.put_u64(self.msg_id.0);
        put_fixed(dst, &self.dest_id, 21);
        put_fixed(dst, &self.service_id, 10);
        dst.put_u8(self.tp_pid);
        dst.put_u8(self.tp_udhi);
        dst.put_u8(self.msg_fmt.raw());
        put_fixed(dst, &self.src_terminal_id, v.terminal_id_len());
        if v == Version::V30 {
            dst.put_u8(self.src_terminal_type);
        }
        match &self.content {
            DeliverContent::Message(m) => {
                dst.put_u8(0);
                dst.put_u8(m.len() as u8);
                dst.put_slice(m);
            }
            DeliverContent::Report(r) => {
                dst.put_u8(1);
                dst.put_u8(v.report_len() as u8);
                r.write(v, dst);
            }
        }
        match v {
            Version::V20 => dst.put_bytes(0, 8),
            Version::V30 => put_fixed(dst, &self.link_id, 20),
        }
    }
}

/// CMPP_DELIVER_RESP: the SP acknowledges a DELIVER.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliverResp {
    /// The DELIVER's Msg_Id, echoed.
    pub msg_id: MsgId,
    /// 0 accepted; other values as for SUBMIT_RESP.
    pub result: ResultCode,
}

impl DeliverResp {
    pub(crate) fn decode(
        r: &mut Reader<'_>,
        v: Version,
        tol: &mut Tolerated,
    ) -> Result<Self, DecodeErrorKind> {
        let (msg_id, result) = decode_id_result(r, v, tol)?;
        Ok(Self { msg_id, result })
    }

    pub(crate) fn body_len(&self, v: Version) -> Result<usize, EncodeError> {
        id_result_len(self.result, v)
    }

    pub(crate) fn write(&self, v: Version, dst: &mut BytesMut) {
        write_id_result(self.msg_id, self.result, v, dst);
    }
}

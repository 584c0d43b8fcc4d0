//! CMPP_SUBMIT and CMPP_SUBMIT_RESP, one layout parameterised by [`Version`].
//!
//! SUBMIT body, in order (3.0-only fields marked ³, widths "2.0/3.0"):
//! Msg_Id(8) Pk_total(1) Pk_number(1) Registered_Delivery(1) Msg_level(1) Service_Id(10)
//! Fee_UserType(1) Fee_terminal_Id(21/32) Fee_terminal_type(1)³ TP_pId(1) TP_udhi(1)
//! Msg_Fmt(1) Msg_src(6) FeeType(2) FeeCode(6) ValId_Time(17) At_Time(17) Src_Id(21)
//! DestUsr_tl(1) Dest_terminal_Id(21/32 × DestUsr_tl) Dest_terminal_type(1)³
//! Msg_Length(1) Msg_Content(Msg_Length) then Reserve(8) in 2.0 or LinkID(20) in 3.0.
//!
//! SUBMIT_RESP: Msg_Id(8) Result(1 in 2.0, 4 in 3.0).
//!
//! Msg_Length is derived from `msg_content` and DestUsr_tl from `dest_terminal_ids`; neither
//! is stored, so they can never disagree with the data.

use bytes::{BufMut, Bytes, BytesMut};

use super::codes::{MsgFmt, ResultCode};
use super::error::{DecodeErrorKind, EncodeError};
use super::msg_id::MsgId;
use super::octets::{
    FixedStr, Reader, check_absent, check_status, check_width, finish, put_fixed, put_status,
    response_status_width,
};
use super::tolerated::{Tolerance, Tolerated};
use super::version::Version;

/// Most destination terminals one SUBMIT may name.
pub const MAX_DESTINATIONS: usize = 100;

/// CMPP_SUBMIT: one mobile-terminated message (or one part of a long one).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Submit {
    /// Left 0 by the SP; the ISMG assigns it in SUBMIT_RESP.
    pub msg_id: MsgId,
    /// Number of parts with the same Msg_Id (from 1).
    pub pk_total: u8,
    /// This part's number (from 1).
    pub pk_number: u8,
    /// 0 no status report, 1 status report wanted (2 = SMC bill in 2.0).
    pub registered_delivery: u8,
    /// Message priority.
    pub msg_level: u8,
    /// Service code (业务代码), 10 octets.
    pub service_id: FixedStr<10>,
    /// Who pays: 0 destination, 1 source, 2 SP, 3 the Fee_terminal_Id.
    pub fee_user_type: u8,
    /// Paying terminal, 21 octets in 2.0, 32 in 3.0.
    pub fee_terminal_id: FixedStr<32>,
    /// 3.0 only: 0 real number, 1 pseudo-code.
    pub fee_terminal_type: u8,
    /// GSM TP-PID.
    pub tp_pid: u8,
    /// GSM TP-UDHI: 1 when Msg_Content starts with a UDH.
    pub tp_udhi: u8,
    /// How Msg_Content is encoded.
    pub msg_fmt: MsgFmt,
    /// SP id (企业代码), 6 octets.
    pub msg_src: FixedStr<6>,
    /// Fee type: "01" free, "02" per message, "03" monthly, …
    pub fee_type: FixedStr<2>,
    /// Fee in fen, 6 octets.
    pub fee_code: FixedStr<6>,
    /// Validity period, SMPP absolute/relative time format (16 chars + NUL).
    pub valid_time: FixedStr<17>,
    /// Scheduled delivery time, same format.
    pub at_time: FixedStr<17>,
    /// Source number (SP service number + extension), 21 octets.
    pub src_id: FixedStr<21>,
    /// 1..=100 destinations, each 21 octets in 2.0, 32 in 3.0.
    pub dest_terminal_ids: Vec<FixedStr<32>>,
    /// 3.0 only: 0 real number, 1 pseudo-code.
    pub dest_terminal_type: u8,
    /// Raw content, as encoded per `msg_fmt` (with the UDH when `tp_udhi` = 1); ≤ 255 bytes.
    pub msg_content: Bytes,
    /// 3.0 only: LinkID for on-demand services, 20 octets.
    pub link_id: FixedStr<20>,
}

impl Submit {
    /// The semantic checks an ISMG makes beyond the layout (the decoder only checks the
    /// layout): `Err` carries the SUBMIT_RESP Result to refuse with. Used by the ISMG side
    /// (our simulator); an SP can call it before sending to fail early.
    ///
    /// - Pk_total ≥ 1 and 1 ≤ Pk_number ≤ Pk_total, Fee_UserType ≤ 3, TP_udhi ≤ 1 and
    ///   Registered_Delivery ≤ 2, else 1 (message structure error);
    /// - FeeCode made of digits, else 5 (fee code error);
    /// - Msg_Content ≤ 160 bytes for ASCII, ≤ 140 for other formats, else 6 (too long).
    pub fn check(&self) -> Result<(), ResultCode> {
        if self.pk_total == 0
            || self.pk_number == 0
            || self.pk_number > self.pk_total
            || self.fee_user_type > 3
            || self.tp_udhi > 1
            || self.registered_delivery > 2
        {
            return Err(ResultCode::MessageStructureError);
        }
        if !self.fee_code.as_bytes().iter().all(u8::is_ascii_digit) {
            return Err(ResultCode::FeeCodeError);
        }
        let max = if self.msg_fmt == MsgFmt::Ascii {
            160
        } else {
            140
        };
        if self.msg_content.len() > max {
            return Err(ResultCode::ContentTooLong);
        }
        Ok(())
    }

    pub(crate) fn decode(
        r: &mut Reader<'_>,
        v: Version,
        tol: &mut Tolerated,
    ) -> Result<Self, DecodeErrorKind> {
        let tid = v.terminal_id_len();
        let msg_id = MsgId(r.u64("Msg_Id")?);
        let pk_total = r.u8("Pk_total")?;
        let pk_number = r.u8("Pk_number")?;
        let registered_delivery = r.u8("Registered_Delivery")?;
        let msg_level = r.u8("Msg_level")?;
        let service_id = r.fixed(10, "Service_Id", tol)?;
        let fee_user_type = r.u8("Fee_UserType")?;
        let fee_terminal_id = r.fixed(tid, "Fee_terminal_Id", tol)?;
        let fee_terminal_type = match v {
            Version::V20 => 0,
            Version::V30 => r.u8("Fee_terminal_type")?,
        };
        let tp_pid = r.u8("TP_pId")?;
        let tp_udhi = r.u8("TP_udhi")?;
        let msg_fmt = MsgFmt::from_raw(r.u8("Msg_Fmt")?);
        let msg_src = r.fixed(6, "Msg_src", tol)?;
        let fee_type = r.fixed(2, "FeeType", tol)?;
        let fee_code = r.fixed(6, "FeeCode", tol)?;
        let valid_time = r.fixed(17, "ValId_Time", tol)?;
        let at_time = r.fixed(17, "At_Time", tol)?;
        let src_id = r.fixed(21, "Src_Id", tol)?;
        let count = r.u8("DestUsr_tl")?;
        if count == 0 || usize::from(count) > MAX_DESTINATIONS {
            return Err(DecodeErrorKind::DestCount(count));
        }
        // Bounds-check the whole list before allocating for it.
        if r.remaining() < usize::from(count) * tid {
            r.take(usize::from(count) * tid, "Dest_terminal_Id")?;
        }
        let mut dest_terminal_ids = Vec::with_capacity(count.into());
        for _ in 0..count {
            dest_terminal_ids.push(r.fixed(tid, "Dest_terminal_Id", tol)?);
        }
        let dest_terminal_type = match v {
            Version::V20 => 0,
            Version::V30 => r.u8("Dest_terminal_type")?,
        };
        let len = r.u8("Msg_Length")?;
        let msg_content = r.take_bytes(len.into(), "Msg_Content")?;
        let link_id = match (v, r.remaining()) {
            (_, 0) => {
                tol.insert(Tolerance::MissingTrailer);
                FixedStr::EMPTY
            }
            (Version::V20, _) => {
                r.take(8, "Reserve")?;
                FixedStr::EMPTY
            }
            (Version::V30, _) => r.fixed(20, "LinkID", tol)?,
        };
        finish(r, tol);
        Ok(Self {
            msg_id,
            pk_total,
            pk_number,
            registered_delivery,
            msg_level,
            service_id,
            fee_user_type,
            fee_terminal_id,
            fee_terminal_type,
            tp_pid,
            tp_udhi,
            msg_fmt,
            msg_src,
            fee_type,
            fee_code,
            valid_time,
            at_time,
            src_id,
            dest_terminal_ids,
            dest_terminal_type,
            msg_content,
            link_id,
        })
    }

    /// The length of this SUBMIT's frame in `v`, header included, with every check its
    /// encoding makes: what [`super::Pdu::encoded_len`] answers for it, without a `Pdu` around
    /// a copy of it (a sender validates each part it builds).
    ///
    /// # Errors
    /// [`EncodeError`] for a field the frame cannot hold in `v`.
    pub fn encoded_len(&self, v: Version) -> Result<usize, EncodeError> {
        Ok(super::header::HEADER_LEN + self.body_len(v)?)
    }

    pub(crate) fn body_len(&self, v: Version) -> Result<usize, EncodeError> {
        let tid = v.terminal_id_len();
        let n = self.dest_terminal_ids.len();
        if n == 0 || n > MAX_DESTINATIONS {
            return Err(EncodeError::DestCount(n));
        }
        check_width("Fee_terminal_Id", self.fee_terminal_id.len(), tid, v)?;
        for d in &self.dest_terminal_ids {
            check_width("Dest_terminal_Id", d.len(), tid, v)?;
        }
        check_width("Msg_Content", self.msg_content.len(), 255, v)?;
        check_absent("Fee_terminal_type", self.fee_terminal_type != 0, v)?;
        check_absent("Dest_terminal_type", self.dest_terminal_type != 0, v)?;
        check_absent("LinkID", !self.link_id.is_empty(), v)?;
        let fixed = 8 + 4 + 10 + 1 + tid + 3 + 6 + 2 + 6 + 17 + 17 + 21 + 1 + 1;
        let version_extra = match v {
            Version::V20 => 8,          // Reserve
            Version::V30 => 1 + 1 + 20, // Fee_terminal_type, Dest_terminal_type, LinkID
        };
        Ok(fixed + n * tid + self.msg_content.len() + version_extra)
    }

    pub(crate) fn write(&self, v: Version, dst: &mut BytesMut) {
        let tid = v.terminal_id_len();
        dst.put_u64(self.msg_id.0);
        dst.put_u8(self.pk_total);
        dst.put_u8(self.pk_number);
        dst.put_u8(self.registered_delivery);
        dst.put_u8(self.msg_level);
        put_fixed(dst, &self.service_id, 10);
        dst.put_u8(self.fee_user_type);
        put_fixed(dst, &self.fee_terminal_id, tid);
        if v == Version::V30 {
            dst.put_u8(self.fee_terminal_type);
        }
        dst.put_u8(self.tp_pid);
        dst.put_u8(self.tp_udhi);
        dst.put_u8(self.msg_fmt.raw());
        put_fixed(dst, &self.msg_src, 6);
        put_fixed(dst, &self.fee_type, 2);
        put_fixed(dst, &self.fee_code, 6);
        put_fixed(dst, &self.valid_time, 17);
        put_fixed(dst, &self.at_time, 17);
        put_fixed(dst, &self.src_id, 21);
        dst.put_u8(self.dest_terminal_ids.len() as u8);
        for d in &self.dest_terminal_ids {
            put_fixed(dst, d, tid);
        }
        if v == Version::V30 {
            dst.put_u8(self.dest_terminal_type);
        }
        dst.put_u8(self.msg_content.len() as u8);
        dst.put_slice(&self.msg_content);
        match v {
            Version::V20 => dst.put_bytes(0, 8),
            Version::V30 => put_fixed(dst, &self.link_id, 20),
        }
    }
}

/// CMPP_SUBMIT_RESP: the ISMG's Msg_Id for the part and whether it was accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubmitResp {
    /// The id status reports will carry.
    pub msg_id: MsgId,
    /// 0 accepted; 8 = flow control (throttle).
    pub result: ResultCode,
}

impl SubmitResp {
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

/// Decodes `Msg_Id` + `Result`, the body SUBMIT_RESP and DELIVER_RESP share (Result is
/// 1 byte in 2.0 and 4 in 3.0; a peer using the other width is tolerated and counted).
pub(crate) fn decode_id_result(
    r: &mut Reader<'_>,
    v: Version,
    tol: &mut Tolerated,
) -> Result<(MsgId, ResultCode), DecodeErrorKind> {
    let width = response_status_width(r.remaining(), 8, v, tol);
    let msg_id = MsgId(r.u64("Msg_Id")?);
    let result = ResultCode::from_raw(r.status(width, "Result")?);
    finish(r, tol);
    Ok((msg_id, result))
}

/// Encoded length of a `Msg_Id` + `Result` body; fails when `result` does not fit `v`.
pub(crate) fn id_result_len(result: ResultCode, v: Version) -> Result<usize, EncodeError> {
    check_status("Result", result.raw(), v)?;
    Ok(8 + v.status_len())
}

/// Writes a `Msg_Id` + `Result` body (checked by [`id_result_len`] first).
pub(crate) fn write_id_result(msg_id: MsgId, result: ResultCode, v: Version, dst: &mut BytesMut) {
    dst.put_u64(msg_id.0);
    put_status(dst, result.raw(), v.status_len());
}

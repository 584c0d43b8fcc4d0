//! CMPP_QUERY and CMPP_QUERY_RESP: traffic statistics (same layout in 2.0 and 3.0).
//!
//! QUERY: Time(8, YYYYMMDD) Query_Type(1) Query_Code(10) Reserve(8) = 27 bytes.
//! QUERY_RESP: Time(8) Query_Type(1) Query_Code(10) then eight u32 counters = 51 bytes.

use bytes::{BufMut, BytesMut};

use super::error::{DecodeErrorKind, EncodeError};
use super::octets::{FixedStr, Reader, finish, put_fixed};
use super::tolerated::Tolerated;
use super::version::Version;

/// CMPP_QUERY: ask the ISMG for a day's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Query {
    /// The day, `YYYYMMDD`.
    pub time: FixedStr<8>,
    /// 0 totals, 1 by service (Query_Code = Service_Id).
    pub query_type: u8,
    /// The Service_Id when `query_type` = 1.
    pub query_code: FixedStr<10>,
}

impl Query {
    pub(crate) fn decode(r: &mut Reader<'_>, tol: &mut Tolerated) -> Result<Self, DecodeErrorKind> {
        let time = r.fixed(8, "Time", tol)?;
        let query_type = r.u8("Query_Type")?;
        let query_code = r.fixed(10, "Query_Code", tol)?;
        r.take(8, "Reserve")?;
        finish(r, tol);
        Ok(Self {
            time,
            query_type,
            query_code,
        })
    }

    pub(crate) fn body_len(&self, _v: Version) -> Result<usize, EncodeError> {
        Ok(27)
    }

    pub(crate) fn write(&self, _v: Version, dst: &mut BytesMut) {
        put_fixed(dst, &self.time, 8);
        dst.put_u8(self.query_type);
        put_fixed(dst, &self.query_code, 10);
        dst.put_bytes(0, 8);
    }
}

/// CMPP_QUERY_RESP: the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct QueryResp {
    /// The day queried, `YYYYMMDD`.
    pub time: FixedStr<8>,
    /// As in the query.
    pub query_type: u8,
    /// As in the query.
    pub query_code: FixedStr<10>,
    /// MT_TLMsg: messages received from the SP.
    pub mt_tl_msg: u32,
    /// MT_Tlusr: users received from the SP.
    pub mt_tl_usr: u32,
    /// MT_Scs: forwarded successfully.
    pub mt_scs: u32,
    /// MT_WT: waiting to be forwarded.
    pub mt_wt: u32,
    /// MT_FL: forwarding failed.
    pub mt_fl: u32,
    /// MO_Scs: delivered to the SP.
    pub mo_scs: u32,
    /// MO_WT: waiting for delivery to the SP.
    pub mo_wt: u32,
    /// MO_FL: delivery to the SP failed.
    pub mo_fl: u32,
}

impl QueryResp {
    pub(crate) fn decode(r: &mut Reader<'_>, tol: &mut Tolerated) -> Result<Self, DecodeErrorKind> {
        let q = Self {
            time: r.fixed(8, "Time", tol)?,
            query_type: r.u8("Query_Type")?,
            query_code: r.fixed(10, "Query_Code", tol)?,
            mt_tl_msg: r.u32("MT_TLMsg")?,
            mt_tl_usr: r.u32("MT_Tlusr")?,
            mt_scs: r.u32("MT_Scs")?,
            mt_wt: r.u32("MT_WT")?,
            mt_fl: r.u32("MT_FL")?,
            mo_scs: r.u32("MO_Scs")?,
            mo_wt: r.u32("MO_WT")?,
            mo_fl: r.u32("MO_FL")?,
        };
        finish(r, tol);
        Ok(q)
    }

    pub(crate) fn body_len(&self, _v: Version) -> Result<usize, EncodeError> {
        Ok(51)
    }

    pub(crate) fn write(&self, _v: Version, dst: &mut BytesMut) {
        put_fixed(dst, &self.time, 8);
        dst.put_u8(self.query_type);
        put_fixed(dst, &self.query_code, 10);
        for c in [
            self.mt_tl_msg,
            self.mt_tl_usr,
            self.mt_scs,
            self.mt_wt,
            self.mt_fl,
            self.mo_scs,
            self.mo_wt,
            self.mo_fl,
        ] {
            dst.put_u32(c);
        }
    }
}

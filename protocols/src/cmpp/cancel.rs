//! CMPP_CANCEL and CMPP_CANCEL_RESP.
//!
//! CANCEL: Msg_Id(8). CANCEL_RESP: Success_Id, 1 byte in 2.0 and 4 bytes in 3.0
//! (0 cancelled, 1 failed).

use bytes::{BufMut, BytesMut};

use super::error::{DecodeErrorKind, EncodeError};
use super::msg_id::MsgId;
use super::octets::{Reader, check_status, finish, put_status, response_status_width};
use super::tolerated::Tolerated;
use super::version::Version;

/// CMPP_CANCEL: withdraw a submitted message that has not been delivered yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Cancel {
    /// The Msg_Id from SUBMIT_RESP.
    pub msg_id: MsgId,
}

impl Cancel {
    pub(crate) fn decode(r: &mut Reader<'_>, tol: &mut Tolerated) -> Result<Self, DecodeErrorKind> {
        let msg_id = MsgId(r.u64("Msg_Id")?);
        finish(r, tol);
        Ok(Self { msg_id })
    }

    pub(crate) fn body_len(&self, _v: Version) -> Result<usize, EncodeError> {
        Ok(8)
    }

    pub(crate) fn write(&self, _v: Version, dst: &mut BytesMut) {
        dst.put_u64(self.msg_id.0);
    }
}

/// CMPP_CANCEL_RESP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CancelResp {
    /// 0 cancelled, 1 failed.
    pub success_id: u32,
}

impl CancelResp {
    pub(crate) fn decode(
        r: &mut Reader<'_>,
        v: Version,
        tol: &mut Tolerated,
    ) -> Result<Self, DecodeErrorKind> {
        let width = response_status_width(r.remaining(), 0, v, tol);
        let success_id = r.status(width, "Success_Id")?;
        finish(r, tol);
        Ok(Self { success_id })
    }

    pub(crate) fn body_len(&self, v: Version) -> Result<usize, EncodeError> {
        check_status("Success_Id", self.success_id, v)?;
        Ok(v.status_len())
    }

    pub(crate) fn write(&self, v: Version, dst: &mut BytesMut) {
        put_status(dst, self.success_id, v.status_len());
    }
}

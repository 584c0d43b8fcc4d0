//! Link maintenance bodies: ACTIVE_TEST_RESP's Reserved byte.
//!
//! TERMINATE, TERMINATE_RESP and ACTIVE_TEST have empty bodies and are unit variants of
//! [`super::Pdu`]; ACTIVE_TEST_RESP carries one Reserved byte in both versions.

use bytes::{BufMut, BytesMut};

use super::error::DecodeErrorKind;
use super::octets::{Reader, finish};
use super::tolerated::{Tolerance, Tolerated};

/// CMPP_ACTIVE_TEST_RESP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ActiveTestResp {
    /// Reserved; 0 when we send it, kept as received.
    pub reserved: u8,
}

impl ActiveTestResp {
    pub(crate) fn decode(r: &mut Reader<'_>, tol: &mut Tolerated) -> Result<Self, DecodeErrorKind> {
        // Some ISMGs answer with an empty body; the byte carries nothing, so accept that.
        if r.remaining() == 0 {
            tol.insert(Tolerance::MissingTrailer);
            return Ok(Self { reserved: 0 });
        }
        let reserved = r.u8("Reserved")?;
        finish(r, tol);
        Ok(Self { reserved })
    }

    pub(crate) fn write(&self, dst: &mut BytesMut) {
        dst.put_u8(self.reserved);
    }
}

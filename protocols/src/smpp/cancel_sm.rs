//! cancel_sm: withdraw a pending message (by id, or all matching source/dest/service_type).

use bytes::BytesMut;

use super::address::{Address, DEST, SOURCE};
use super::error::{BodyError, EncodeError};
use super::octets::Octets;
use super::pdu::Body;
use super::wire::{Reader, cstr_len, put_cstr};

/// Body of cancel_sm (cancel_sm_resp has no body).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct CancelSm {
    /// Service type of the messages to cancel.
    pub service_type: Octets,
    /// Message to cancel; empty = all matching.
    pub message_id: Octets,
    /// Source address of the message(s).
    pub source: Address,
    /// Destination address of the message(s).
    pub dest: Address,
}

impl Body for CancelSm {
    fn decode(r: &mut Reader<'_>) -> Result<Self, BodyError> {
        let v = Self {
            service_type: r.cstr("service_type")?,
            message_id: r.cstr("message_id")?,
            source: Address::decode(r, SOURCE)?,
            dest: Address::decode(r, DEST)?,
        };
        r.ignore_rest();
        Ok(v)
    }

    fn encoded_len(&self) -> Result<usize, EncodeError> {
        Ok(cstr_len(&self.service_type, "service_type")?
            + cstr_len(&self.message_id, "message_id")?
            + self.source.encoded_len("source_addr")?
            + self.dest.encoded_len("destination_addr")?)
    }

    fn encode(&self, buf: &mut BytesMut) {
        put_cstr(buf, &self.service_type);
        put_cstr(buf, &self.message_id);
        self.source.encode(buf);
        self.dest.encode(buf);
    }
}

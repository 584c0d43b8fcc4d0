//! replace_sm: replace the text/schedule of a pending message (replace_sm_resp has no body).

use bytes::{BufMut, BytesMut};

use super::address::{Address, SOURCE};
use super::error::{BodyError, EncodeError};
use super::octets::Octets;
use super::pdu::Body;
use super::sm::decode_message_and_tlvs;
use super::tlv::Tlvs;
use super::wire::{Reader, cstr_len, put_cstr, put_short_message, short_message_len};

/// Body of replace_sm.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ReplaceSm {
    /// The message to replace.
    pub message_id: Octets,
    /// Its source address.
    pub source: Address,
    /// New scheduled delivery time.
    pub schedule_delivery_time: Octets,
    /// New validity period.
    pub validity_period: Octets,
    /// New receipt flags.
    pub registered_delivery: u8,
    /// New canned message index.
    pub sm_default_msg_id: u8,
    /// New user data (sm_length derived).
    pub short_message: Octets,
    /// Optional parameters (5.0: message_payload).
    pub tlvs: Tlvs,
}

impl Body for ReplaceSm {
    fn decode(r: &mut Reader<'_>) -> Result<Self, BodyError> {
        let message_id = r.cstr("message_id")?;
        let source = Address::decode(r, SOURCE)?;
        let schedule_delivery_time = r.cstr("schedule_delivery_time")?;
        let validity_period = r.cstr("validity_period")?;
        let registered_delivery = r.u8("registered_delivery")?;
        let sm_default_msg_id = r.u8("sm_default_msg_id")?;
        let (short_message, tlvs) = decode_message_and_tlvs(r)?;
        Ok(Self {
            message_id,
            source,
            schedule_delivery_time,
            validity_period,
            registered_delivery,
            sm_default_msg_id,
            short_message,
            tlvs,
        })
    }

    fn encoded_len(&self) -> Result<usize, EncodeError> {
        Ok(cstr_len(&self.message_id, "message_id")?
            + self.source.encoded_len("source_addr")?
            + cstr_len(&self.schedule_delivery_time, "schedule_delivery_time")?
            + cstr_len(&self.validity_period, "validity_period")?
            + 2
            + short_message_len(&self.short_message)?
            + self.tlvs.encoded_len()?)
    }

    fn encode(&self, buf: &mut BytesMut) {
        put_cstr(buf, &self.message_id);
        self.source.encode(buf);
        put_cstr(buf, &self.schedule_delivery_time);
        put_cstr(buf, &self.validity_period);
        buf.put_u8(self.registered_delivery);
        buf.put_u8(self.sm_default_msg_id);
        put_short_message(buf, &self.short_message);
        self.tlvs.encode(buf);
    }
}

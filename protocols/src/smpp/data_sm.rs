//! data_sm: the TLV-centred alternative to submit_sm/deliver_sm (text in message_payload).

use bytes::{BufMut, BytesMut};

use super::address::{Address, DEST, SOURCE};
use super::error::{BodyError, EncodeError};
use super::octets::Octets;
use super::pdu::Body;
use super::tlv::Tlvs;
use super::wire::{Reader, cstr_len, put_cstr};

/// Body of data_sm.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct DataSm {
    /// SMS application service.
    pub service_type: Octets,
    /// Originator.
    pub source: Address,
    /// Recipient.
    pub dest: Address,
    /// Messaging mode and type.
    pub esm_class: u8,
    /// Receipt request flags.
    pub registered_delivery: u8,
    /// Data coding scheme.
    pub data_coding: u8,
    /// Optional parameters (message_payload carries the user data).
    pub tlvs: Tlvs,
}

impl Body for DataSm {
    fn decode(r: &mut Reader<'_>) -> Result<Self, BodyError> {
        Ok(Self {
            service_type: r.cstr("service_type")?,
            source: Address::decode(r, SOURCE)?,
            dest: Address::decode(r, DEST)?,
            esm_class: r.u8("esm_class")?,
            registered_delivery: r.u8("registered_delivery")?,
            data_coding: r.u8("data_coding")?,
            tlvs: Tlvs::decode(r),
        })
    }

    fn encoded_len(&self) -> Result<usize, EncodeError> {
        Ok(cstr_len(&self.service_type, "service_type")?
            + self.source.encoded_len("source_addr")?
            + self.dest.encoded_len("destination_addr")?
            + 3
            + self.tlvs.encoded_len()?)
    }

    fn encode(&self, buf: &mut BytesMut) {
        put_cstr(buf, &self.service_type);
        self.source.encode(buf);
        self.dest.encode(buf);
        buf.put_u8(self.esm_class);
        buf.put_u8(self.registered_delivery);
        buf.put_u8(self.data_coding);
        self.tlvs.encode(buf);
    }
}

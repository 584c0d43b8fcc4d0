//! submit_multi (one message to up to 255 SME addresses or distribution lists) and its
//! response listing the destinations that failed (`unsuccess_sme`).
//!
//! `number_of_dests` and `no_unsuccess` are derived from the vectors, never stored.
//! Decoding allocates at most 255 entries, bounded further by the body length.

use bytes::{BufMut, BytesMut};

use super::address::{Address, DEST, SOURCE};
use super::command_status::CommandStatus;
use super::error::{BodyError, EncodeError};
use super::octets::Octets;
use super::pdu::Body;
use super::sm::decode_message_and_tlvs;
use super::tlv::Tlvs;
use super::wire::{Reader, cstr_len, put_cstr, put_short_message, short_message_len};

/// One destination of submit_multi.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DestAddress {
    /// dest_flag 1: an SME address.
    Sme(Address),
    /// dest_flag 2: a distribution list name.
    DistributionList(Octets),
}

/// Body of submit_multi.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct SubmitMulti {
    /// SMS application service.
    pub service_type: Octets,
    /// Originator.
    pub source: Address,
    /// Destinations (at most 255).
    pub dests: Vec<DestAddress>,
    /// Messaging mode and type.
    pub esm_class: u8,
    /// GSM protocol identifier.
    pub protocol_id: u8,
    /// Priority level.
    pub priority_flag: u8,
    /// Scheduled delivery time; empty = immediate.
    pub schedule_delivery_time: Octets,
    /// Expiry; empty = SMSC default.
    pub validity_period: Octets,
    /// Receipt request flags.
    pub registered_delivery: u8,
    /// Replace flag.
    pub replace_if_present_flag: u8,
    /// Data coding scheme.
    pub data_coding: u8,
    /// Canned message index.
    pub sm_default_msg_id: u8,
    /// User data (sm_length derived).
    pub short_message: Octets,
    /// Optional parameters.
    pub tlvs: Tlvs,
}

fn count_len(n: usize, field: &'static str) -> Result<(), EncodeError> {
    if n > 255 {
        return Err(EncodeError::TooLong {
            field,
            len: n,
            max: 255,
        });
    }
    Ok(())
}

impl Body for SubmitMulti {
    fn decode(r: &mut Reader<'_>) -> Result<Self, BodyError> {
        let service_type = r.cstr("service_type")?;
        let source = Address::decode(r, SOURCE)?;
        let n = r.u8("number_of_dests")?;
        // Each destination needs at least two octets: bound the reservation by the body.
        let mut dests = Vec::with_capacity((n as usize).min(r.remaining() / 2));
        for _ in 0..n {
            let flag = r.u8("dest_flag")?;
            dests.push(match flag {
                1 => DestAddress::Sme(Address::decode(r, DEST)?),
                2 => DestAddress::DistributionList(r.cstr("dl_name")?),
                flag => return Err(BodyError::DestFlag { flag }),
            });
        }
        let esm_class = r.u8("esm_class")?;
        let protocol_id = r.u8("protocol_id")?;
        let priority_flag = r.u8("priority_flag")?;
        let schedule_delivery_time = r.cstr("schedule_delivery_time")?;
        let validity_period = r.cstr("validity_period")?;
        let registered_delivery = r.u8("registered_delivery")?;
        let replace_if_present_flag = r.u8("replace_if_present_flag")?;
        let data_coding = r.u8("data_coding")?;
        let sm_default_msg_id = r.u8("sm_default_msg_id")?;
        let (short_message, tlvs) = decode_message_and_tlvs(r)?;
        Ok(Self {
            service_type,
            source,
            dests,
            esm_class,
            protocol_id,
            priority_flag,
            schedule_delivery_time,
            validity_period,
            registered_delivery,
            replace_if_present_flag,
            data_coding,
            sm_default_msg_id,
            short_message,
            tlvs,
        })
    }

    fn encoded_len(&self) -> Result<usize, EncodeError> {
        count_len(self.dests.len(), "number_of_dests")?;
        let mut dests = 0;
        for d in &self.dests {
            dests += 1 + match d {
                DestAddress::Sme(a) => a.encoded_len("destination_addr")?,
                DestAddress::DistributionList(name) => cstr_len(name, "dl_name")?,
            };
        }
        Ok(cstr_len(&self.service_type, "service_type")?
            + self.source.encoded_len("source_addr")?
            + 1
            + dests
            + 3
            + cstr_len(&self.schedule_delivery_time, "schedule_delivery_time")?
            + cstr_len(&self.validity_period, "validity_period")?
            + 4
            + short_message_len(&self.short_message)?
            + self.tlvs.encoded_len()?)
    }

    fn encode(&self, buf: &mut BytesMut) {
        put_cstr(buf, &self.service_type);
        self.source.encode(buf);
        buf.put_u8(self.dests.len() as u8);
        for d in &self.dests {
            match d {
                DestAddress::Sme(a) => {
                    buf.put_u8(1);
                    a.encode(buf);
                }
                DestAddress::DistributionList(name) => {
                    buf.put_u8(2);
                    put_cstr(buf, name);
                }
            }
        }
        buf.put_u8(self.esm_class);
        buf.put_u8(self.protocol_id);
        buf.put_u8(self.priority_flag);
        put_cstr(buf, &self.schedule_delivery_time);
        put_cstr(buf, &self.validity_period);
        buf.put_u8(self.registered_delivery);
        buf.put_u8(self.replace_if_present_flag);
        buf.put_u8(self.data_coding);
        buf.put_u8(self.sm_default_msg_id);
        put_short_message(buf, &self.short_message);
        self.tlvs.encode(buf);
    }
}

/// A destination submit_multi could not deliver to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UnsuccessSme {
    /// The destination.
    pub dest: Address,
    /// Why it failed.
    pub error_status: CommandStatus,
}

/// Body of submit_multi_resp.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct SubmitMultiResp {
    /// The SMSC's message id.
    pub message_id: Octets,
    /// Failed destinations (at most 255; `no_unsuccess` is derived).
    pub unsuccess: Vec<UnsuccessSme>,
    /// Optional parameters (5.0).
    pub tlvs: Tlvs,
}

impl Body for SubmitMultiResp {
    fn decode(r: &mut Reader<'_>) -> Result<Self, BodyError> {
        let message_id = r.cstr("message_id")?;
        let n = r.u8_or_zero("no_unsuccess")?;
        // Each entry needs at least seven octets.
        let mut unsuccess = Vec::with_capacity((n as usize).min(r.remaining() / 7));
        for _ in 0..n {
            let dest = Address::decode(r, DEST)?;
            let error_status = CommandStatus::from_u32(r.u32("error_status_code")?);
            unsuccess.push(UnsuccessSme { dest, error_status });
        }
        Ok(Self {
            message_id,
            unsuccess,
            tlvs: Tlvs::decode(r),
        })
    }

    fn encoded_len(&self) -> Result<usize, EncodeError> {
        count_len(self.unsuccess.len(), "no_unsuccess")?;
        let mut n = cstr_len(&self.message_id, "message_id")? + 1;
        for u in &self.unsuccess {
            n += u.dest.encoded_len("destination_addr")? + 4;
        }
        Ok(n + self.tlvs.encoded_len()?)
    }

    fn encode(&self, buf: &mut BytesMut) {
        put_cstr(buf, &self.message_id);
        buf.put_u8(self.unsuccess.len() as u8);
        for u in &self.unsuccess {
            u.dest.encode(buf);
            buf.put_u32(u.error_status.to_u32());
        }
        self.tlvs.encode(buf);
    }
}

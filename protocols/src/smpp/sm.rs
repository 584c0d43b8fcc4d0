//! submit_sm and deliver_sm (identical bodies), and the message-id responses shared by
//! submit_sm_resp, deliver_sm_resp and data_sm_resp.
//!
//! `sm_length` is not stored: it is `short_message.len()`, written at encode time, so it can
//! never disagree with the text. A peer that announces an `sm_length` past the end of the body
//! while carrying the text in message_payload is tolerated
//! ([`Tolerated::SM_LENGTH_OVERRUN`]); without message_payload that is ESME_RINVMSGLEN.

use bytes::{BufMut, BytesMut};

use super::address::{Address, DEST, SOURCE};
use super::error::{BodyError, EncodeError};
use super::octets::Octets;
use super::pdu::Body;
use super::tlv::Tlvs;
use super::tolerated::Tolerated;
use super::wire::{Reader, cstr_len, put_cstr, put_short_message, short_message_len};

/// esm_class message-type bits (2..=5) that mark an SMSC delivery receipt.
pub const ESM_CLASS_DELIVERY_RECEIPT: u8 = 0x04;
/// esm_class bit: short_message starts with a User Data Header.
pub const ESM_CLASS_UDHI: u8 = 0x40;
/// esm_class mask of the message-type bits.
pub const ESM_CLASS_TYPE_MASK: u8 = 0x3C;

/// Body of submit_sm and deliver_sm.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Sm {
    /// SMS application service ("" = default).
    pub service_type: Octets,
    /// Originator.
    pub source: Address,
    /// Recipient.
    pub dest: Address,
    /// Messaging mode and message type (0x04 receipt, 0x40 UDHI).
    pub esm_class: u8,
    /// GSM protocol identifier.
    pub protocol_id: u8,
    /// Priority level.
    pub priority_flag: u8,
    /// Absolute or relative time format; empty = immediate.
    pub schedule_delivery_time: Octets,
    /// Absolute or relative expiry; empty = SMSC default.
    pub validity_period: Octets,
    /// Receipt request flags.
    pub registered_delivery: u8,
    /// Replace an existing message with the same source/dest/service_type.
    pub replace_if_present_flag: u8,
    /// Encoding of the user data (0 default, 3 Latin-1, 4 binary, 8 UCS-2).
    pub data_coding: u8,
    /// Canned message index (0 = none).
    pub sm_default_msg_id: u8,
    /// Up to 255 octets of user data (sm_length is derived from it).
    pub short_message: Octets,
    /// Optional parameters in wire order.
    pub tlvs: Tlvs,
}

/// submit_sm body.
pub type SubmitSm = Sm;
/// deliver_sm body.
pub type DeliverSm = Sm;

impl Sm {
    /// True when esm_class marks an SMSC delivery receipt.
    pub const fn is_delivery_receipt(&self) -> bool {
        self.esm_class & ESM_CLASS_TYPE_MASK == ESM_CLASS_DELIVERY_RECEIPT
    }

    /// True when short_message starts with a User Data Header.
    pub const fn has_udh(&self) -> bool {
        self.esm_class & ESM_CLASS_UDHI != 0
    }

    /// The user data: message_payload when present, else short_message.
    pub fn payload(&self) -> &Octets {
        self.tlvs.message_payload().unwrap_or(&self.short_message)
    }

    /// Length of the encoded body, every field validated as [`Command::encode`] validates
    /// it: a sender checks a body once, when it builds it, without making a command of it.
    ///
    /// [`Command::encode`]: super::pdu::Command::encode
    ///
    /// # Errors
    /// [`EncodeError`] when a field cannot be encoded strictly.
    pub fn encoded_body_len(&self) -> Result<usize, EncodeError> {
        self.encoded_len()
    }
}

/// Reads `sm_length` + short_message + TLVs, shared by submit_sm, deliver_sm and submit_multi.
#[inline(always)]
pub(crate) fn decode_message_and_tlvs(r: &mut Reader) -> Result<(Octets, Tlvs), BodyError> {
    let sm_length = r.u8("sm_length")?;
    if (sm_length as usize) <= r.remaining() {
        let short_message = r.octets(sm_length as usize, "short_message")?;
        return Ok((short_message, Tlvs::decode(r)));
    }
    let remaining = r.remaining();
    let tlvs = Tlvs::decode(r);
    if tlvs.message_payload().is_some() {
        r.tolerated |= Tolerated::SM_LENGTH_OVERRUN;
        Ok((Octets::new(), tlvs))
    } else {
        Err(BodyError::SmLength {
            sm_length,
            remaining,
        })
    }
}

impl Body for Sm {
    #[inline(always)]
    fn decode(r: &mut Reader<'_>) -> Result<Self, BodyError> {
        let service_type = r.cstr("service_type")?;
        let source = Address::decode(r, SOURCE)?;
        let dest = Address::decode(r, DEST)?;
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
            dest,
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
        Ok(cstr_len(&self.service_type, "service_type")?
            + self.source.encoded_len("source_addr")?
            + self.dest.encoded_len("destination_addr")?
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
        self.dest.encode(buf);
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

/// Body of submit_sm_resp, deliver_sm_resp and data_sm_resp.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct MessageIdResp {
    /// The SMSC's id for the message (empty in deliver_sm_resp).
    pub message_id: Octets,
    /// Optional parameters (SMPP 5.0 adds some to all three).
    pub tlvs: Tlvs,
}

impl MessageIdResp {
    /// A response carrying `message_id`.
    pub fn new(message_id: impl Into<Octets>) -> Self {
        Self {
            message_id: message_id.into(),
            tlvs: Tlvs::new(),
        }
    }
}

impl Body for MessageIdResp {
    fn decode(r: &mut Reader<'_>) -> Result<Self, BodyError> {
        Ok(Self {
            message_id: r.cstr("message_id")?,
            tlvs: Tlvs::decode(r),
        })
    }

    fn encoded_len(&self) -> Result<usize, EncodeError> {
        Ok(cstr_len(&self.message_id, "message_id")? + self.tlvs.encoded_len()?)
    }

    fn encode(&self, buf: &mut BytesMut) {
        put_cstr(buf, &self.message_id);
        self.tlvs.encode(buf);
    }
}

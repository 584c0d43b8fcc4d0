//! Optional parameters (TLVs): stored raw, read through typed accessors.
//!
//! Wire format: `tag: u16`, `length: u16`, `value: length octets`, repeated to the end of the
//! body. We keep them as an ordered list of raw `(tag, value)` pairs, so a decoded PDU
//! re-encodes byte-identically, unknown and repeated tags included. Typed accessors return
//! the first occurrence of a tag and `None` when it is absent or its value has the wrong
//! size for the type.

use bytes::{BufMut, BytesMut};
use smallvec::SmallVec;

use super::error::EncodeError;
use super::octets::Octets;
use super::tolerated::Tolerated;
use super::wire::Reader;

/// Well-known TLV tags (SMPP 3.4 §5.3.2, SMPP 5.0 §4.8.4).
pub mod tags {
    /// dest_addr_subunit (u8).
    pub const DEST_ADDR_SUBUNIT: u16 = 0x0005;
    /// source_addr_subunit (u8).
    pub const SOURCE_ADDR_SUBUNIT: u16 = 0x000D;
    /// payload_type (u8).
    pub const PAYLOAD_TYPE: u16 = 0x0019;
    /// receipted_message_id (C-octet string).
    pub const RECEIPTED_MESSAGE_ID: u16 = 0x001E;
    /// user_message_reference (u16).
    pub const USER_MESSAGE_REFERENCE: u16 = 0x0204;
    /// source_port (u16).
    pub const SOURCE_PORT: u16 = 0x020A;
    /// destination_port (u16).
    pub const DESTINATION_PORT: u16 = 0x020B;
    /// sar_msg_ref_num (u16).
    pub const SAR_MSG_REF_NUM: u16 = 0x020C;
    /// sar_total_segments (u8).
    pub const SAR_TOTAL_SEGMENTS: u16 = 0x020E;
    /// sar_segment_seqnum (u8).
    pub const SAR_SEGMENT_SEQNUM: u16 = 0x020F;
    /// sc_interface_version (u8).
    pub const SC_INTERFACE_VERSION: u16 = 0x0210;
    /// network_error_code (3 octets: network type u8, error code u16).
    pub const NETWORK_ERROR_CODE: u16 = 0x0423;
    /// message_payload (octets).
    pub const MESSAGE_PAYLOAD: u16 = 0x0424;
    /// delivery_failure_reason (u8).
    pub const DELIVERY_FAILURE_REASON: u16 = 0x0425;
    /// message_state (u8).
    pub const MESSAGE_STATE: u16 = 0x0427;
    /// ms_availability_status (u8).
    pub const MS_AVAILABILITY_STATUS: u16 = 0x0422;
}

/// One optional parameter, raw.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tlv {
    /// The tag.
    pub tag: u16,
    /// The value octets (length is derived).
    pub value: Octets,
}

/// `message_state` values (SMPP 3.4 §5.2.28).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageState {
    /// 0: scheduled (5.0).
    Scheduled,
    /// 1: enroute.
    Enroute,
    /// 2: delivered.
    Delivered,
    /// 3: expired.
    Expired,
    /// 4: deleted.
    Deleted,
    /// 5: undeliverable.
    Undeliverable,
    /// 6: accepted.
    Accepted,
    /// 7: unknown.
    Unknown,
    /// 8: rejected.
    Rejected,
    /// 9: skipped (5.0).
    Skipped,
    /// Any other value.
    Other(u8),
}

impl MessageState {
    /// From the wire octet.
    pub const fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::Scheduled,
            1 => Self::Enroute,
            2 => Self::Delivered,
            3 => Self::Expired,
            4 => Self::Deleted,
            5 => Self::Undeliverable,
            6 => Self::Accepted,
            7 => Self::Unknown,
            8 => Self::Rejected,
            9 => Self::Skipped,
            o => Self::Other(o),
        }
    }

    /// The wire octet.
    pub const fn to_u8(self) -> u8 {
        match self {
            Self::Scheduled => 0,
            Self::Enroute => 1,
            Self::Delivered => 2,
            Self::Expired => 3,
            Self::Deleted => 4,
            Self::Undeliverable => 5,
            Self::Accepted => 6,
            Self::Unknown => 7,
            Self::Rejected => 8,
            Self::Skipped => 9,
            Self::Other(o) => o,
        }
    }

    /// True for states after which nothing more will happen to the message.
    ///
    /// Follows the "final" column of the SMPP 5.0 message_state table: ACCEPTED (manually
    /// read on the subscriber's behalf) is final; UNKNOWN is not, because the MC may still
    /// resolve an invalid/unknown state (it can be intermediate or permanent), and SCHEDULED
    /// and ENROUTE are intermediate. Unassigned values are treated as not final.
    pub const fn is_final(self) -> bool {
        matches!(
            self,
            Self::Delivered
                | Self::Expired
                | Self::Deleted
                | Self::Undeliverable
                | Self::Accepted
                | Self::Rejected
                | Self::Skipped
        )
    }
}

/// `network_error_code`: network type (1 ANSI-136, 2 IS-95, 3 GSM, …) and its error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NetworkErrorCode {
    /// Network type.
    pub network_type: u8,
    /// Network-specific error code.
    pub error_code: u16,
}

/// TLVs stored inline before spilling to the heap: a segmented submit_sm carries three (the
/// SAR set), a receipt deliver_sm up to three (receipted_message_id, message_state,
/// network_error_code), so decoding them allocates nothing.
const INLINE_TLVS: usize = 3;

/// Ordered list of TLVs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Tlvs(SmallVec<[Tlv; INLINE_TLVS]>);

impl Tlvs {
    /// No TLVs.
    pub const fn new() -> Self {
        Self(SmallVec::new_const())
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Iterates in wire order.
    pub fn iter(&self) -> core::slice::Iter<'_, Tlv> {
        self.0.iter()
    }

    /// The first value for `tag`.
    pub fn get(&self, tag: u16) -> Option<&Octets> {
        self.0.iter().find(|t| t.tag == tag).map(|t| &t.value)
    }

    /// Appends a TLV (keeps any earlier one with the same tag).
    pub fn push(&mut self, tag: u16, value: impl Into<Octets>) {
        self.0.push(Tlv {
            tag,
            value: value.into(),
        });
    }

    /// Replaces the first TLV with `tag` in place, or appends it.
    pub fn set(&mut self, tag: u16, value: impl Into<Octets>) {
        let value = value.into();
        match self.0.iter_mut().find(|t| t.tag == tag) {
            Some(t) => t.value = value,
            None => self.0.push(Tlv { tag, value }),
        }
    }

    /// Removes every TLV with `tag`.
    pub fn remove(&mut self, tag: u16) {
        self.0.retain(|t| t.tag != tag);
    }

    fn get_u8(&self, tag: u16) -> Option<u8> {
        match self.get(tag)?.as_ref() {
            [b] => Some(*b),
            _ => None,
        }
    }

    fn get_u16(&self, tag: u16) -> Option<u16> {
        match self.get(tag)?.as_ref() {
            [a, b] => Some(u16::from_be_bytes([*a, *b])),
            _ => None,
        }
    }

    /// receipted_message_id (0x001E) without its NUL (tolerated if missing).
    pub fn receipted_message_id(&self) -> Option<&[u8]> {
        let v = self.get(tags::RECEIPTED_MESSAGE_ID)?.as_ref();
        Some(v.strip_suffix(&[0]).unwrap_or(v))
    }

    /// Sets receipted_message_id (adds the NUL).
    pub fn set_receipted_message_id(&mut self, id: &[u8]) {
        let mut v = Vec::with_capacity(id.len() + 1);
        v.extend_from_slice(id);
        v.push(0);
        self.set(tags::RECEIPTED_MESSAGE_ID, v);
    }

    /// message_state (0x0427).
    pub fn message_state(&self) -> Option<MessageState> {
        self.get_u8(tags::MESSAGE_STATE).map(MessageState::from_u8)
    }

    /// Sets message_state.
    pub fn set_message_state(&mut self, state: MessageState) {
        self.set(tags::MESSAGE_STATE, vec![state.to_u8()]);
    }

    /// network_error_code (0x0423).
    pub fn network_error_code(&self) -> Option<NetworkErrorCode> {
        match self.get(tags::NETWORK_ERROR_CODE)?.as_ref() {
            [t, a, b] => Some(NetworkErrorCode {
                network_type: *t,
                error_code: u16::from_be_bytes([*a, *b]),
            }),
            _ => None,
        }
    }

    /// Sets network_error_code.
    pub fn set_network_error_code(&mut self, code: NetworkErrorCode) {
        let [a, b] = code.error_code.to_be_bytes();
        self.set(tags::NETWORK_ERROR_CODE, vec![code.network_type, a, b]);
    }

    /// sar_msg_ref_num (0x020C).
    pub fn sar_msg_ref_num(&self) -> Option<u16> {
        self.get_u16(tags::SAR_MSG_REF_NUM)
    }

    /// sar_total_segments (0x020E).
    pub fn sar_total_segments(&self) -> Option<u8> {
        self.get_u8(tags::SAR_TOTAL_SEGMENTS)
    }

    /// sar_segment_seqnum (0x020F).
    pub fn sar_segment_seqnum(&self) -> Option<u8> {
        self.get_u8(tags::SAR_SEGMENT_SEQNUM)
    }

    /// Sets the three SAR TLVs at once (reference, total, this part's 1-based number).
    pub fn set_sar(&mut self, reference: u16, total: u8, seqnum: u8) {
        self.set(tags::SAR_MSG_REF_NUM, reference.to_be_bytes().to_vec());
        self.set(tags::SAR_TOTAL_SEGMENTS, vec![total]);
        self.set(tags::SAR_SEGMENT_SEQNUM, vec![seqnum]);
    }

    /// message_payload (0x0424).
    pub fn message_payload(&self) -> Option<&Octets> {
        self.get(tags::MESSAGE_PAYLOAD)
    }

    /// user_message_reference (0x0204).
    pub fn user_message_reference(&self) -> Option<u16> {
        self.get_u16(tags::USER_MESSAGE_REFERENCE)
    }

    /// source_port (0x020A).
    pub fn source_port(&self) -> Option<u16> {
        self.get_u16(tags::SOURCE_PORT)
    }

    /// destination_port (0x020B).
    pub fn destination_port(&self) -> Option<u16> {
        self.get_u16(tags::DESTINATION_PORT)
    }

    /// sc_interface_version (0x0210).
    pub fn sc_interface_version(&self) -> Option<u8> {
        self.get_u8(tags::SC_INTERFACE_VERSION)
    }

    /// delivery_failure_reason (0x0425).
    pub fn delivery_failure_reason(&self) -> Option<u8> {
        self.get_u8(tags::DELIVERY_FAILURE_REASON)
    }

    /// Reads TLVs to the end of the body. Bytes that do not form a whole TLV (fewer than
    /// four left, or a length past the end) are ignored and flagged
    /// [`Tolerated::TRAILING_BYTES`]: peers pad bodies, and a half TLV carries nothing usable.
    #[inline(always)]
    pub(crate) fn decode(r: &mut Reader<'_>) -> Self {
        let (buf, mut pos, end) = r.take_rest();
        if pos == end {
            return Self::new();
        }
        let mut out = SmallVec::new();
        while end - pos >= 4 {
            let tag = u16::from_be_bytes([buf[pos], buf[pos + 1]]);
            let len = u16::from_be_bytes([buf[pos + 2], buf[pos + 3]]) as usize;
            if end - pos - 4 < len {
                break;
            }
            out.push(Tlv {
                tag,
                value: Octets::slice_of(buf, pos + 4, pos + 4 + len),
            });
            pos += 4 + len;
        }
        if pos != end {
            r.tolerated |= Tolerated::TRAILING_BYTES;
        }
        Self(out)
    }

    pub(crate) fn encoded_len(&self) -> Result<usize, EncodeError> {
        let mut n = 0;
        for t in &self.0 {
            if t.value.len() > u16::MAX as usize {
                return Err(EncodeError::TooLong {
                    field: "tlv value",
                    len: t.value.len(),
                    max: u16::MAX as usize,
                });
            }
            n += 4 + t.value.len();
        }
        Ok(n)
    }

    pub(crate) fn encode(&self, buf: &mut BytesMut) {
        for t in &self.0 {
            buf.put_u16(t.tag);
            // Checked by `encoded_len` before anything was written.
            buf.put_u16(t.value.len() as u16);
            buf.put_slice(&t.value);
        }
    }
}

impl FromIterator<Tlv> for Tlvs {
    fn from_iter<I: IntoIterator<Item = Tlv>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

#[cfg(test)]
mod message_state_tests {
    use super::MessageState;

    #[test]
    fn final_states_follow_smpp5_table() {
        let finals: Vec<u8> = (0..=10)
            .filter(|&v| MessageState::from_u8(v).is_final())
            .collect();
        assert_eq!(finals, vec![2, 3, 4, 5, 6, 8, 9]);
    }
}

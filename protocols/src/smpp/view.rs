//! Borrowed views of the PDUs on the socket path: submit_sm and deliver_sm read in place.
//!
//! Why: decoding a submit_sm into the owned [`Sm`] builds a 350-byte value (six inline
//! [`Octets`], an inline TLV list) that is moved through the decode chain and dropped again;
//! most of a decode's instructions went there, not into reading the wire. A view validates
//! the frame once — every C-octet string found, `sm_length` and every TLV length checked
//! against the body — and then hands out `&[u8]` slices of the frame and parses the rest
//! (TLV values, the receipt text) only when asked. Nothing is allocated or copied.
//!
//! - [`Frame`]: one whole PDU split off the read buffer as `Bytes` (the split is the only
//!   reference-count step); [`Frame::split`] is the sans-IO framing step and
//!   `SmppViewCodec` its tokio adapter.
//! - [`Frame::view`] → [`DecodedRef`]: submit_sm / deliver_sm as [`SmRef`]; any other command
//!   is left to [`Frame::decode`] (owned, as before).
//! - [`SmRef::to_owned`] / [`DecodedRef::to_owned`] give exactly what [`decode`] gives for the
//!   same bytes (same values, same [`Tolerated`] flags, same errors);
//!   the long fields stay zero-copy slices of the frame.
//!
//! [`decode`]: super::decode

use bytes::{Bytes, BytesMut};

use super::address::Address;
use super::command_id::CommandId;
use super::command_status::CommandStatus;
use super::error::{BodyError, DecodeError, FrameError};
use super::header::{HEADER_LEN, Header, check};
use super::octets::Octets;
use super::pdu::{Command, Decoded, Pdu, decode};
use super::sm::{ESM_CLASS_DELIVERY_RECEIPT, ESM_CLASS_TYPE_MASK, ESM_CLASS_UDHI, Sm};
use super::tlv::{MessageState, NetworkErrorCode, Tlv, Tlvs, tags};
use super::tolerated::Tolerated;
use super::wire::{find_nul, nul_in_block};

/// One whole PDU, split off a read buffer: `command_length` equals its length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame(Bytes);

impl Frame {
    /// Splits the first whole PDU off `buf`: `Ok(None)` while it has not fully arrived
    /// (having reserved what it still needs, so the next read fills it), an error for a
    /// `command_length` below 16 or above `max_len` (answer with [`FrameError::response`],
    /// then close: the stream cannot be resynchronised).
    ///
    /// # Errors
    /// [`FrameError::TooShort`] / [`FrameError::TooLong`].
    #[inline]
    pub fn split(buf: &mut BytesMut, max_len: usize) -> Result<Option<Self>, FrameError> {
        let Some(len) = check(buf, max_len)? else {
            // `check` passed the announced length, so the reservation is bounded by max_len.
            let want = Header::read(buf).map_or(HEADER_LEN, |h| h.command_length as usize);
            buf.reserve(want - buf.len());
            return Ok(None);
        };
        Ok(Some(Self(buf.split_to(len).freeze())))
    }

    /// Wraps one whole PDU.
    ///
    /// # Errors
    /// [`FrameError::LengthMismatch`] unless `bytes` holds exactly the PDU its header
    /// announces; [`FrameError::TooShort`] for a `command_length` below 16.
    pub fn new(bytes: Bytes) -> Result<Self, FrameError> {
        match Header::read(&bytes) {
            Some(h) if h.command_length as usize == bytes.len() && bytes.len() >= HEADER_LEN => {
                Ok(Self(bytes))
            }
            Some(h) if (h.command_length as usize) < HEADER_LEN => Err(FrameError::TooShort {
                length: h.command_length,
                sequence: h.sequence,
            }),
            h => Err(FrameError::LengthMismatch {
                length: h.map_or(0, |h| h.command_length),
                actual: bytes.len(),
            }),
        }
    }

    /// The four header words.
    #[inline(always)]
    pub fn header(&self) -> Header {
        // A frame always holds at least the header.
        Header::read(&self.0).unwrap_or(Header {
            command_length: 0,
            command_id: 0,
            command_status: 0,
            sequence: 0,
        })
    }

    /// The PDU's bytes, header included.
    pub fn bytes(&self) -> &Bytes {
        &self.0
    }

    /// The PDU's bytes, header included.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// Decodes into the owned [`Decoded`] (string fields share the frame's buffer).
    ///
    /// # Errors
    /// As [`super::decode`].
    pub fn decode(&self) -> Result<Decoded, DecodeError> {
        decode(self.0.clone())
    }

    /// Reads the frame in place: submit_sm and deliver_sm as [`SmRef`]s (validated now);
    /// any other command is [`PduRef::Other`], left for [`Frame::decode`] (or
    /// [`DecodedRef::to_owned`]) so the view stays small and is built without a copy.
    ///
    /// # Errors
    /// For submit_sm / deliver_sm, exactly the error [`super::decode`] gives for the same
    /// bytes; never for another command.
    #[inline(always)]
    pub fn view(&self) -> Result<DecodedRef<'_>, DecodeError> {
        let h = self.header();
        let command_id = CommandId::from_u32(h.command_id);
        let fail = |error| DecodeError::Body {
            command_id,
            sequence: h.sequence,
            error,
        };
        let (pdu, tolerated) = match command_id {
            CommandId::SubmitSm => {
                let (sm, t) = SmRef::parse(&self.0).map_err(fail)?;
                (PduRef::SubmitSm(sm), t)
            }
            CommandId::DeliverSm => {
                let (sm, t) = SmRef::parse(&self.0).map_err(fail)?;
                (PduRef::DeliverSm(sm), t)
            }
            _ => (PduRef::Other, Tolerated::NONE),
        };
        Ok(DecodedRef {
            frame: self,
            pdu,
            tolerated,
        })
    }
}

/// A command read in place from a [`Frame`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedRef<'a> {
    frame: &'a Frame,
    /// The body.
    pub pdu: PduRef<'a>,
    /// What was bent while reading a viewed body (empty for [`PduRef::Other`], whose
    /// tolerances come with its [`Frame::decode`]).
    pub tolerated: Tolerated,
}

impl DecodedRef<'_> {
    /// `command_status`.
    pub fn status(&self) -> CommandStatus {
        CommandStatus::from_u32(self.frame.header().command_status)
    }

    /// `sequence_number`.
    pub fn sequence(&self) -> u32 {
        self.frame.header().sequence
    }

    /// The frame read.
    pub fn frame(&self) -> &Frame {
        self.frame
    }

    /// The owned form, equal to what [`super::decode`] gives for the same bytes.
    ///
    /// # Errors
    /// Only for [`PduRef::Other`]: the owned decode's error.
    pub fn to_owned(&self) -> Result<Decoded, DecodeError> {
        let pdu = match &self.pdu {
            PduRef::SubmitSm(sm) => Pdu::SubmitSm(sm.to_owned()),
            PduRef::DeliverSm(sm) => Pdu::DeliverSm(sm.to_owned()),
            PduRef::Other => return self.frame.decode(),
        };
        Ok(Decoded {
            command: Command::new(self.status(), self.sequence(), pdu),
            tolerated: self.tolerated,
        })
    }
}

/// The body of a [`DecodedRef`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PduRef<'a> {
    /// submit_sm, in place.
    SubmitSm(SmRef<'a>),
    /// deliver_sm, in place.
    DeliverSm(SmRef<'a>),
    /// Any other command: not viewed; [`Frame::decode`] gives it owned.
    Other,
}

/// An address triple in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddressRef<'a> {
    /// Type of number.
    pub ton: u8,
    /// Numbering plan indicator.
    pub npi: u8,
    /// The address, without its NUL.
    pub addr: &'a [u8],
}

/// submit_sm / deliver_sm read in place: every field a slice of the frame or an octet.
///
/// Validated when made (all C-octet strings bounded, `sm_length` and every TLV length
/// within the body), so the accessors cannot fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmRef<'a> {
    frame: &'a Bytes,
    service_type: &'a [u8],
    source: AddressRef<'a>,
    dest: AddressRef<'a>,
    esm_class: u8,
    protocol_id: u8,
    priority_flag: u8,
    registered_delivery: u8,
    replace_if_present_flag: u8,
    data_coding: u8,
    sm_default_msg_id: u8,
    schedule_delivery_time: &'a [u8],
    validity_period: &'a [u8],
    short_message: &'a [u8],
    tlvs: TlvsRef<'a>,
}

/// submit_sm body in place.
pub type SubmitSmRef<'a> = SmRef<'a>;
/// deliver_sm body in place.
pub type DeliverSmRef<'a> = SmRef<'a>;

/// Cursor over a frame for the view: the same reads and tolerances as `wire::Reader`,
/// returning slices instead of [`Octets`].
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    tolerated: Tolerated,
}

impl<'a> Cursor<'a> {
    #[inline(always)]
    fn u8(&mut self, field: &'static str) -> Result<u8, BodyError> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or(BodyError::UnexpectedEnd { field })?;
        self.pos += 1;
        Ok(b)
    }

    /// A C-octet string without its NUL; tolerances as `wire::Reader::cstr`.
    #[inline(always)]
    fn cstr(&mut self) -> &'a [u8] {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let n = match rest.first_chunk::<24>() {
            Some(block) => nul_in_block(block).or_else(|| find_nul(rest)),
            None => find_nul(rest),
        };
        match n {
            Some(n) => {
                self.pos += n + 1;
                &rest[..n]
            }
            None => self.unterminated(rest),
        }
    }

    #[cold]
    fn unterminated(&mut self, rest: &'a [u8]) -> &'a [u8] {
        self.tolerated |= if rest.is_empty() {
            Tolerated::MISSING_FIELDS
        } else {
            Tolerated::MISSING_NUL
        };
        self.pos = self.buf.len();
        rest
    }

    #[inline(always)]
    fn address(&mut self, names: [&'static str; 3]) -> Result<AddressRef<'a>, BodyError> {
        Ok(AddressRef {
            ton: self.u8(names[0])?,
            npi: self.u8(names[1])?,
            addr: self.cstr(),
        })
    }
}

/// Walks the TLVs of `s` (to its end): the length of the whole TLVs and whether
/// message_payload is among them. Stops at the first TLV that does not fit, as
/// `Tlvs::decode` does.
#[inline(always)]
fn walk_tlvs(s: &[u8]) -> (usize, bool) {
    let mut pos = 0;
    let mut payload = false;
    while let Some(h) = s.get(pos..).and_then(<[u8]>::first_chunk::<4>) {
        let tag = u16::from_be_bytes([h[0], h[1]]);
        let len = u16::from_be_bytes([h[2], h[3]]) as usize;
        if s.len() - pos - 4 < len {
            break;
        }
        payload |= tag == tags::MESSAGE_PAYLOAD;
        pos += 4 + len;
    }
    (pos, payload)
}

impl<'a> SmRef<'a> {
    /// Reads a submit_sm / deliver_sm body from `frame` (a whole PDU: the header is
    /// skipped, its command id is not looked at).
    ///
    /// # Errors
    /// The [`BodyError`] the owned decode gives for the same body.
    #[inline(always)]
    pub(crate) fn parse(frame: &'a Bytes) -> Result<(Self, Tolerated), BodyError> {
        use super::address::{DEST, SOURCE};
        let buf: &'a [u8] = frame;
        let mut c = Cursor {
            buf,
            pos: HEADER_LEN.min(buf.len()),
            tolerated: Tolerated::NONE,
        };
        let service_type = c.cstr();
        let source = c.address(SOURCE)?;
        let dest = c.address(DEST)?;
        let esm_class = c.u8("esm_class")?;
        let protocol_id = c.u8("protocol_id")?;
        let priority_flag = c.u8("priority_flag")?;
        let schedule_delivery_time = c.cstr();
        let validity_period = c.cstr();
        let registered_delivery = c.u8("registered_delivery")?;
        let replace_if_present_flag = c.u8("replace_if_present_flag")?;
        let data_coding = c.u8("data_coding")?;
        let sm_default_msg_id = c.u8("sm_default_msg_id")?;
        let sm_length = c.u8("sm_length")? as usize;
        let rest = &buf[c.pos..];
        let (short_message, tlv_area) = match rest.split_at_checked(sm_length) {
            Some(split) => split,
            None => {
                // sm_length overruns the body: tolerated only when message_payload
                // carries the text (then the TLVs start right after sm_length).
                if !walk_tlvs(rest).1 {
                    return Err(BodyError::SmLength {
                        sm_length: sm_length as u8,
                        remaining: rest.len(),
                    });
                }
                c.tolerated |= Tolerated::SM_LENGTH_OVERRUN;
                (&rest[..0], rest)
            }
        };
        let (whole, _) = walk_tlvs(tlv_area);
        if whole != tlv_area.len() {
            c.tolerated |= Tolerated::TRAILING_BYTES;
        }
        Ok((
            Self {
                frame,
                service_type,
                source,
                dest,
                esm_class,
                protocol_id,
                priority_flag,
                registered_delivery,
                replace_if_present_flag,
                data_coding,
                sm_default_msg_id,
                schedule_delivery_time,
                validity_period,
                short_message,
                tlvs: TlvsRef(&tlv_area[..whole]),
            },
            c.tolerated,
        ))
    }

    /// SMS application service ("" = default).
    pub fn service_type(&self) -> &'a [u8] {
        self.service_type
    }
    /// Originator.
    pub fn source(&self) -> AddressRef<'a> {
        self.source
    }
    /// Recipient.
    pub fn dest(&self) -> AddressRef<'a> {
        self.dest
    }
    /// Messaging mode and message type (0x04 receipt, 0x40 UDHI).
    pub fn esm_class(&self) -> u8 {
        self.esm_class
    }
    /// GSM protocol identifier.
    pub fn protocol_id(&self) -> u8 {
        self.protocol_id
    }
    /// Priority level.
    pub fn priority_flag(&self) -> u8 {
        self.priority_flag
    }
    /// Scheduled delivery time; empty = immediate.
    pub fn schedule_delivery_time(&self) -> &'a [u8] {
        self.schedule_delivery_time
    }
    /// Expiry; empty = SMSC default.
    pub fn validity_period(&self) -> &'a [u8] {
        self.validity_period
    }
    /// Receipt request flags.
    pub fn registered_delivery(&self) -> u8 {
        self.registered_delivery
    }
    /// replace_if_present_flag.
    pub fn replace_if_present_flag(&self) -> u8 {
        self.replace_if_present_flag
    }
    /// Encoding of the user data.
    pub fn data_coding(&self) -> u8 {
        self.data_coding
    }
    /// Canned message index.
    pub fn sm_default_msg_id(&self) -> u8 {
        self.sm_default_msg_id
    }
    /// The short_message octets (empty when a tolerated `sm_length` overran the body).
    pub fn short_message(&self) -> &'a [u8] {
        self.short_message
    }
    /// The optional parameters, in wire order.
    pub fn tlvs(&self) -> TlvsRef<'a> {
        self.tlvs
    }

    /// True when esm_class marks an SMSC delivery receipt.
    pub const fn is_delivery_receipt(&self) -> bool {
        self.esm_class & ESM_CLASS_TYPE_MASK == ESM_CLASS_DELIVERY_RECEIPT
    }

    /// True when short_message starts with a User Data Header.
    pub const fn has_udh(&self) -> bool {
        self.esm_class & ESM_CLASS_UDHI != 0
    }

    /// The user data: message_payload when present, else short_message.
    pub fn payload(&self) -> &'a [u8] {
        self.tlvs.message_payload().unwrap_or(self.short_message)
    }

    /// `s` (a slice of the frame) as [`Octets`]: inline when short, a shared slice of the
    /// frame when long, as the owned decode makes it.
    fn octets(&self, s: &[u8]) -> Octets {
        if s.is_empty() {
            return Octets::new();
        }
        // Every slice the view hands out lies inside `frame`, so the difference of the
        // addresses is its offset.
        let start = s.as_ptr() as usize - self.frame.as_ptr() as usize;
        Octets::slice_of(self.frame, start, start + s.len())
    }

    /// The owned body, equal to what [`super::decode`] gives for the same bytes.
    pub fn to_owned(&self) -> Sm {
        let addr = |a: AddressRef<'_>| Address {
            ton: a.ton,
            npi: a.npi,
            addr: self.octets(a.addr),
        };
        Sm {
            service_type: self.octets(self.service_type),
            source: addr(self.source),
            dest: addr(self.dest),
            esm_class: self.esm_class,
            protocol_id: self.protocol_id,
            priority_flag: self.priority_flag,
            schedule_delivery_time: self.octets(self.schedule_delivery_time),
            validity_period: self.octets(self.validity_period),
            registered_delivery: self.registered_delivery,
            replace_if_present_flag: self.replace_if_present_flag,
            data_coding: self.data_coding,
            sm_default_msg_id: self.sm_default_msg_id,
            short_message: self.octets(self.short_message),
            tlvs: self
                .tlvs
                .iter()
                .map(|(tag, value)| Tlv {
                    tag,
                    value: self.octets(value),
                })
                .collect::<Tlvs>(),
        }
    }
}

/// The TLVs of a view: whole TLVs only (checked when the view was made), read on demand.
/// Typed accessors return the first occurrence of a tag, like [`Tlvs`]'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TlvsRef<'a>(&'a [u8]);

/// Iterator over `(tag, value)` in wire order.
#[derive(Debug, Clone)]
pub struct TlvIter<'a>(&'a [u8]);

impl<'a> Iterator for TlvIter<'a> {
    type Item = (u16, &'a [u8]);

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let h = self.0.first_chunk::<4>()?;
        let tag = u16::from_be_bytes([h[0], h[1]]);
        let len = u16::from_be_bytes([h[2], h[3]]) as usize;
        // Whole TLVs only (checked at parse), so the value is there; stop cleanly if not.
        let value = self.0.get(4..4 + len)?;
        self.0 = &self.0[4 + len..];
        Some((tag, value))
    }
}

impl<'a> TlvsRef<'a> {
    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The raw TLV octets (tag, length, value … in wire order).
    pub fn as_bytes(&self) -> &'a [u8] {
        self.0
    }

    /// Iterates `(tag, value)` in wire order.
    pub fn iter(&self) -> TlvIter<'a> {
        TlvIter(self.0)
    }

    /// The first value for `tag`.
    #[inline]
    pub fn get(&self, tag: u16) -> Option<&'a [u8]> {
        self.iter().find(|(t, _)| *t == tag).map(|(_, v)| v)
    }

    fn get_u8(&self, tag: u16) -> Option<u8> {
        match self.get(tag)? {
            [b] => Some(*b),
            _ => None,
        }
    }

    fn get_u16(&self, tag: u16) -> Option<u16> {
        match self.get(tag)? {
            [a, b] => Some(u16::from_be_bytes([*a, *b])),
            _ => None,
        }
    }

    /// receipted_message_id (0x001E) without its NUL (tolerated if missing).
    pub fn receipted_message_id(&self) -> Option<&'a [u8]> {
        let v = self.get(tags::RECEIPTED_MESSAGE_ID)?;
        Some(v.strip_suffix(&[0]).unwrap_or(v))
    }

    /// message_state (0x0427).
    pub fn message_state(&self) -> Option<MessageState> {
        self.get_u8(tags::MESSAGE_STATE).map(MessageState::from_u8)
    }

    /// network_error_code (0x0423).
    pub fn network_error_code(&self) -> Option<NetworkErrorCode> {
        match self.get(tags::NETWORK_ERROR_CODE)? {
            [t, a, b] => Some(NetworkErrorCode {
                network_type: *t,
                error_code: u16::from_be_bytes([*a, *b]),
            }),
            _ => None,
        }
    }

    /// message_payload (0x0424).
    pub fn message_payload(&self) -> Option<&'a [u8]> {
        self.get(tags::MESSAGE_PAYLOAD)
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smpp::{Command, Pdu};

    fn frame(sm: Sm, deliver: bool) -> Frame {
        let pdu = if deliver {
            Pdu::DeliverSm(sm)
        } else {
            Pdu::SubmitSm(sm)
        };
        Frame::new(Command::request(7, pdu).to_bytes().unwrap()).unwrap()
    }

    #[test]
    fn view_reads_every_field_and_owns_back_equal() {
        let mut tlvs = Tlvs::new();
        tlvs.set_sar(0x1234, 2, 1);
        tlvs.push(tags::SOURCE_PORT, vec![0x0B, 0x84]);
        let sm = Sm {
            service_type: "CMT".into(),
            source: Address::new(5, 0, "sluice"),
            dest: Address::new(1, 1, "8613800138000"),
            esm_class: 0x40,
            protocol_id: 3,
            priority_flag: 1,
            schedule_delivery_time: "261126015300000+".into(),
            validity_period: "000001000000000R".into(),
            registered_delivery: 1,
            replace_if_present_flag: 1,
            data_coding: 8,
            sm_default_msg_id: 2,
            short_message: vec![7u8; 100].into(),
            tlvs,
        };
        let f = frame(sm.clone(), false);
        let d = f.view().unwrap();
        assert!(d.tolerated.is_empty());
        let PduRef::SubmitSm(v) = &d.pdu else {
            panic!("not a submit_sm view: {:?}", d.pdu)
        };
        assert_eq!(v.source().addr, b"sluice");
        assert_eq!(v.dest().addr, b"8613800138000");
        assert_eq!(v.service_type(), b"CMT");
        assert_eq!(v.short_message(), &[7u8; 100][..]);
        assert_eq!(v.tlvs().sar_msg_ref_num(), Some(0x1234));
        assert_eq!(v.tlvs().sar_total_segments(), Some(2));
        assert_eq!(v.tlvs().sar_segment_seqnum(), Some(1));
        assert_eq!(v.tlvs().source_port(), Some(0x0B84));
        assert!(v.has_udh() && !v.is_delivery_receipt());
        assert_eq!(v.to_owned(), sm);
        assert_eq!(d.to_owned(), f.decode());
        assert_eq!((d.sequence(), d.status()), (7, CommandStatus::EsmeRok));
    }

    #[test]
    fn overrun_sm_length_is_tolerated_only_with_message_payload() {
        let mut sm = Sm::default();
        sm.tlvs.push(tags::MESSAGE_PAYLOAD, "long text".as_bytes());
        let mut b = frame(sm, true).into_bytes().to_vec();
        // sm_length is the byte before the TLV (4 + 9 bytes): claim 200.
        let at = b.len() - 4 - 9 - 1;
        b[at] = 200;
        let f = Frame::new(Bytes::from(b.clone())).unwrap();
        let d = f.view().unwrap();
        assert!(d.tolerated.contains(Tolerated::SM_LENGTH_OVERRUN));
        assert_eq!(d.to_owned(), f.decode());
        // Without message_payload (tag changed) it is ESME_RINVMSGLEN, as the owned decode.
        b[at + 2] = 0x99;
        let f = Frame::new(Bytes::from(b)).unwrap();
        assert_eq!(f.view().unwrap_err(), f.decode().unwrap_err());
        assert!(matches!(
            f.view().unwrap_err(),
            DecodeError::Body {
                error: BodyError::SmLength { .. },
                ..
            }
        ));
    }

    #[test]
    fn split_frames_a_read_buffer() {
        let one = frame(Sm::default(), false).into_bytes();
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&one);
        buf.extend_from_slice(&one[..10]);
        let f = Frame::split(&mut buf, 1024).unwrap().unwrap();
        assert_eq!(f.bytes(), &one);
        assert_eq!(Frame::split(&mut buf, 1024), Ok(None));
        buf.extend_from_slice(&one[10..]);
        assert!(Frame::split(&mut buf, 1024).unwrap().is_some());
        buf.extend_from_slice(&[0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 9]);
        assert!(matches!(
            Frame::split(&mut buf, 1024),
            Err(FrameError::TooShort {
                length: 3,
                sequence: 9
            })
        ));
    }
}

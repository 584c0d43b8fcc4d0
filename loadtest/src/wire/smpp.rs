//! SMPP 3.4 / 5.0 framing, borrowed parsing and encoders used by the simulator and the ESME
//! load generator. Numbers follow DESIGN.md §5.

use bytes::{BufMut, BytesMut};

use super::{Reader, WireError};

pub(crate) const HEADER_LEN: usize = 16;
/// Largest PDU either tool accepts; bigger length fields are treated as garbage.
pub(crate) const MAX_PDU: u32 = 64 * 1024;

pub(crate) const BIND_RECEIVER: u32 = 0x1;
pub(crate) const BIND_TRANSMITTER: u32 = 0x2;
pub(crate) const SUBMIT_SM: u32 = 0x4;
pub(crate) const DELIVER_SM: u32 = 0x5;
pub(crate) const UNBIND: u32 = 0x6;
pub(crate) const BIND_TRANSCEIVER: u32 = 0x9;
pub(crate) const ENQUIRE_LINK: u32 = 0x15;
pub(crate) const GENERIC_NACK: u32 = 0x8000_0000;
pub(crate) const RESP: u32 = 0x8000_0000;

pub(crate) const ROK: u32 = 0x0;
pub(crate) const RINVCMDLEN: u32 = 0x2;
pub(crate) const RINVCMDID: u32 = 0x3;
pub(crate) const RINVBNDSTS: u32 = 0x4;
pub(crate) const RALYBND: u32 = 0x5;
pub(crate) const RSYSERR: u32 = 0x8;
pub(crate) const RBINDFAIL: u32 = 0xD;
pub(crate) const RINVPASWD: u32 = 0xE;
pub(crate) const RINVSYSID: u32 = 0xF;
pub(crate) const RMSGQFUL: u32 = 0x14;
pub(crate) const RTHROTTLED: u32 = 0x58;

pub(crate) const TLV_RECEIPTED_MESSAGE_ID: u16 = 0x001E;
pub(crate) const TLV_SAR_MSG_REF_NUM: u16 = 0x020C;
pub(crate) const TLV_SAR_TOTAL_SEGMENTS: u16 = 0x020E;
pub(crate) const TLV_SAR_SEGMENT_SEQNUM: u16 = 0x020F;
pub(crate) const TLV_SC_INTERFACE_VERSION: u16 = 0x0210;
pub(crate) const TLV_MESSAGE_PAYLOAD: u16 = 0x0424;
pub(crate) const TLV_MESSAGE_STATE: u16 = 0x0427;

pub(crate) const ESM_UDHI: u8 = 0x40;
pub(crate) const ESM_RECEIPT: u8 = 0x04;

/// The four header fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) len: u32,
    pub(crate) id: u32,
    pub(crate) status: u32,
    pub(crate) seq: u32,
}

/// Returns the header of the first PDU if all of it is buffered, `Ok(None)` if more bytes are
/// needed, and an error if the length field is garbage (the stream cannot be resynchronised).
pub(crate) fn check(buf: &[u8]) -> Result<Option<Header>, WireError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let be = |i: usize| u32::from_be_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
    let len = be(0);
    if len < HEADER_LEN as u32 || len > MAX_PDU {
        return Err(WireError::BadLength { len, min: HEADER_LEN as u32, max: MAX_PDU });
    }
    if buf.len() < len as usize {
        return Ok(None);
    }
    Ok(Some(Header { len, id: be(4), status: be(8), seq: be(12) }))
}

/// Starts a PDU; the length is patched by [`finish`].
pub(crate) fn begin(dst: &mut BytesMut, id: u32, status: u32, seq: u32) -> usize {
    let start = dst.len();
    dst.put_u32(0);
    dst.put_u32(id);
    dst.put_u32(status);
    dst.put_u32(seq);
    start
}

/// Patches the command_length of the PDU begun at `start`.
pub(crate) fn finish(dst: &mut BytesMut, start: usize) {
    let len = (dst.len() - start) as u32;
    dst[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

fn put_cstr(dst: &mut BytesMut, s: &[u8]) {
    dst.put_slice(s);
    dst.put_u8(0);
}

/// A header-only PDU (enquire_link, unbind, their responses, generic_nack).
pub(crate) fn put_empty(dst: &mut BytesMut, id: u32, status: u32, seq: u32) {
    let s = begin(dst, id, status, seq);
    finish(dst, s);
}

/// bind_*_resp carrying our system_id and, for 3.4+ peers, sc_interface_version.
pub(crate) fn put_bind_resp(dst: &mut BytesMut, bind_id: u32, status: u32, seq: u32, system_id: &[u8]) {
    let s = begin(dst, bind_id | RESP, status, seq);
    put_cstr(dst, system_id);
    if status == ROK {
        dst.put_u16(TLV_SC_INTERFACE_VERSION);
        dst.put_u16(1);
        dst.put_u8(0x34);
    }
    finish(dst, s);
}

/// submit_sm_resp; the body is omitted for a non-zero status (SMPP 3.4 §4.4.2).
pub(crate) fn put_submit_resp(dst: &mut BytesMut, status: u32, seq: u32, message_id: &[u8]) {
    let s = begin(dst, SUBMIT_SM | RESP, status, seq);
    if status == ROK {
        put_cstr(dst, message_id);
    }
    finish(dst, s);
}

/// Parsed bind_* body (borrowed).
#[derive(Debug)]
pub(crate) struct Bind<'a> {
    pub(crate) system_id: &'a [u8],
    pub(crate) password: &'a [u8],
    pub(crate) interface_version: u8,
}

pub(crate) fn parse_bind(body: &[u8]) -> Result<Bind<'_>, WireError> {
    let mut r = Reader::new(body);
    let system_id = r.cstr(16, "system_id")?;
    let password = r.cstr(9, "password")?;
    let _system_type = r.cstr(13, "system_type")?;
    let interface_version = r.u8("interface_version")?;
    Ok(Bind { system_id, password, interface_version })
}

/// Writes a bind_* request (load generator side).
pub(crate) fn put_bind(dst: &mut BytesMut, id: u32, seq: u32, system_id: &[u8], password: &[u8]) {
    let s = begin(dst, id, 0, seq);
    put_cstr(dst, system_id);
    put_cstr(dst, password);
    put_cstr(dst, b"");
    dst.put_u8(0x34);
    dst.put_u8(0);
    dst.put_u8(0);
    put_cstr(dst, b"");
    finish(dst, s);
}

/// SAR concatenation TLVs of a short message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sar {
    pub(crate) reference: u16,
    pub(crate) total: u8,
    pub(crate) seq: u8,
}

/// Parsed submit_sm / deliver_sm body (same layout), borrowed from the read buffer.
#[derive(Debug, Default)]
pub(crate) struct ShortMessage<'a> {
    pub(crate) source: &'a [u8],
    pub(crate) dest: &'a [u8],
    pub(crate) esm_class: u8,
    pub(crate) registered_delivery: u8,
    pub(crate) data_coding: u8,
    /// short_message, or the message_payload TLV when short_message is empty.
    pub(crate) payload: &'a [u8],
    pub(crate) sar: Option<Sar>,
    pub(crate) receipted_message_id: Option<&'a [u8]>,
    pub(crate) message_state: Option<u8>,
}

pub(crate) fn parse_short_message(body: &[u8]) -> Result<ShortMessage<'_>, WireError> {
    let mut r = Reader::new(body);
    let _service_type = r.cstr(6, "service_type")?;
    let _ston = r.u8("source_addr_ton")?;
    let _snpi = r.u8("source_addr_npi")?;
    let source = r.cstr(65, "source_addr")?;
    let _dton = r.u8("dest_addr_ton")?;
    let _dnpi = r.u8("dest_addr_npi")?;
    let dest = r.cstr(65, "destination_addr")?;
    let esm_class = r.u8("esm_class")?;
    let _pid = r.u8("protocol_id")?;
    let _prio = r.u8("priority_flag")?;
    let _sched = r.cstr(17, "schedule_delivery_time")?;
    let _valid = r.cstr(17, "validity_period")?;
    let registered_delivery = r.u8("registered_delivery")?;
    let _replace = r.u8("replace_if_present_flag")?;
    let data_coding = r.u8("data_coding")?;
    let _default_id = r.u8("sm_default_msg_id")?;
    let sm_len = r.u8("sm_length")? as usize;
    let mut payload = r.bytes(sm_len, "short_message")?;
    let mut m = ShortMessage { source, dest, esm_class, registered_delivery, data_coding, payload, ..Default::default() };
    let (mut sar_ref, mut sar_total, mut sar_seq) = (None, None, None);
    while !r.remaining().is_empty() {
        let tag = r.u16("tlv tag")?;
        let len = r.u16("tlv length")? as usize;
        let v = r.bytes(len, "tlv value")?;
        match (tag, len) {
            (TLV_SAR_MSG_REF_NUM, 2) => sar_ref = Some(u16::from_be_bytes([v[0], v[1]])),
            (TLV_SAR_TOTAL_SEGMENTS, 1) => sar_total = Some(v[0]),
            (TLV_SAR_SEGMENT_SEQNUM, 1) => sar_seq = Some(v[0]),
            (TLV_MESSAGE_PAYLOAD, _) if payload.is_empty() => payload = v,
            (TLV_RECEIPTED_MESSAGE_ID, _) => {
                m.receipted_message_id = Some(v.split(|&b| b == 0).next().unwrap_or(v));
            }
            (TLV_MESSAGE_STATE, 1) => m.message_state = Some(v[0]),
            _ => {}
        }
    }
    m.payload = payload;
    if let (Some(reference), Some(total), Some(seq)) = (sar_ref, sar_total, sar_seq) {
        m.sar = Some(Sar { reference, total, seq });
    }
    Ok(m)
}

/// Fields of an outgoing submit_sm / deliver_sm.
#[derive(Debug, Default)]
pub(crate) struct OutMessage<'a> {
    pub(crate) source: &'a [u8],
    pub(crate) dest: &'a [u8],
    pub(crate) esm_class: u8,
    pub(crate) registered_delivery: u8,
    pub(crate) data_coding: u8,
    pub(crate) short_message: &'a [u8],
    pub(crate) sar: Option<Sar>,
    pub(crate) receipted_message_id: Option<&'a [u8]>,
    pub(crate) message_state: Option<u8>,
}

/// Writes a submit_sm (0x4) or deliver_sm (0x5) with the given fields.
pub(crate) fn put_short_message(dst: &mut BytesMut, id: u32, seq: u32, m: &OutMessage<'_>) {
    let s = begin(dst, id, 0, seq);
    put_cstr(dst, b"");
    dst.put_u8(1); // ton international
    dst.put_u8(1); // npi isdn
    put_cstr(dst, m.source);
    dst.put_u8(1);
    dst.put_u8(1);
    put_cstr(dst, m.dest);
    dst.put_u8(m.esm_class);
    dst.put_u8(0);
    dst.put_u8(0);
    put_cstr(dst, b"");
    put_cstr(dst, b"");
    dst.put_u8(m.registered_delivery);
    dst.put_u8(0);
    dst.put_u8(m.data_coding);
    dst.put_u8(0);
    let sm = &m.short_message[..m.short_message.len().min(254)];
    dst.put_u8(sm.len() as u8);
    dst.put_slice(sm);
    if let Some(sar) = m.sar {
        dst.put_u16(TLV_SAR_MSG_REF_NUM);
        dst.put_u16(2);
        dst.put_u16(sar.reference);
        dst.put_u16(TLV_SAR_TOTAL_SEGMENTS);
        dst.put_u16(1);
        dst.put_u8(sar.total);
        dst.put_u16(TLV_SAR_SEGMENT_SEQNUM);
        dst.put_u16(1);
        dst.put_u8(sar.seq);
    }
    if let Some(id) = m.receipted_message_id {
        dst.put_u16(TLV_RECEIPTED_MESSAGE_ID);
        dst.put_u16(id.len() as u16 + 1);
        put_cstr(dst, id);
    }
    if let Some(state) = m.message_state {
        dst.put_u16(TLV_MESSAGE_STATE);
        dst.put_u16(1);
        dst.put_u8(state);
    }
    finish(dst, s);
}

/// The message_id of a submit_sm_resp body (empty when the body is absent).
pub(crate) fn parse_submit_resp(body: &[u8]) -> &[u8] {
    let end = body.iter().position(|&b| b == 0).unwrap_or(body.len());
    &body[..end.min(65)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn submit_round_trip_with_sar() {
        let mut b = BytesMut::new();
        let m = OutMessage {
            source: b"123",
            dest: b"8613800138000",
            esm_class: 0,
            registered_delivery: 1,
            data_coding: 8,
            short_message: b"\x00h\x00i",
            sar: Some(Sar { reference: 7, total: 2, seq: 1 }),
            ..Default::default()
        };
        put_short_message(&mut b, SUBMIT_SM, 42, &m);
        let h = check(&b).unwrap().unwrap();
        assert_eq!((h.id, h.seq, h.len as usize), (SUBMIT_SM, 42, b.len()));
        let p = parse_short_message(&b[HEADER_LEN..]).unwrap();
        assert_eq!(p.dest, b"8613800138000");
        assert_eq!(p.payload, b"\x00h\x00i");
        assert_eq!(p.sar, Some(Sar { reference: 7, total: 2, seq: 1 }));
        assert_eq!(p.registered_delivery, 1);
    }

    #[test]
    fn check_rejects_bad_lengths_and_waits_for_more() {
        assert_eq!(check(&[0; 10]).unwrap(), None);
        let mut b = BytesMut::new();
        put_empty(&mut b, ENQUIRE_LINK, 0, 1);
        assert_eq!(check(&b[..15]).unwrap(), None);
        assert!(check(&b).unwrap().is_some());
        assert!(check(&[0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        #[test]
        fn parsers_never_panic(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = check(&data);
            let _ = parse_short_message(&data);
            let _ = parse_bind(&data);
            let _ = parse_submit_resp(&data);
        }
    }
}

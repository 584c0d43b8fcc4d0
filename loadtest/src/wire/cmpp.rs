//! CMPP 2.0 / 3.0 framing, borrowed parsing and encoders for the ISMG side of the simulator
//! (and the CMPP client used in tests). Field widths per DESIGN.md §5: 3.0 widens terminal
//! ids from 21 to 32 bytes, adds terminal types and LinkID, and widens Result/Status to 4 bytes.

use bytes::{BufMut, BytesMut};
use md5::{Digest, Md5};

use super::{Reader, WireError, put_fixed};

pub(crate) const HEADER_LEN: usize = 12;
pub(crate) const MAX_PDU: u32 = 64 * 1024;

pub(crate) const CONNECT: u32 = 0x1;
pub(crate) const TERMINATE: u32 = 0x2;
pub(crate) const SUBMIT: u32 = 0x4;
pub(crate) const DELIVER: u32 = 0x5;
pub(crate) const ACTIVE_TEST: u32 = 0x8;
pub(crate) const RESP: u32 = 0x8000_0000;

/// SUBMIT_RESP Result for flow control (too fast / too many outstanding).
pub(crate) const RESULT_FLOW_CONTROL: u32 = 8;

/// Protocol generation, chosen by the Version byte of CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    V20,
    V30,
}

impl Version {
    pub(crate) fn from_byte(v: u8) -> Self {
        if v >= 0x30 { Self::V30 } else { Self::V20 }
    }
    pub(crate) fn byte(self) -> u8 {
        match self {
            Self::V20 => 0x20,
            Self::V30 => 0x30,
        }
    }
    fn terminal_len(self) -> usize {
        match self {
            Self::V20 => 21,
            Self::V30 => 32,
        }
    }
    fn put_result(self, dst: &mut BytesMut, v: u32) {
        match self {
            Self::V20 => dst.put_u8(v.min(255) as u8),
            Self::V30 => dst.put_u32(v),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) len: u32,
    pub(crate) id: u32,
    pub(crate) seq: u32,
}

/// Same contract as the SMPP check: `Ok(None)` until a whole PDU is buffered.
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
    Ok(Some(Header { len, id: be(4), seq: be(8) }))
}

pub(crate) fn begin(dst: &mut BytesMut, id: u32, seq: u32) -> usize {
    let start = dst.len();
    dst.put_u32(0);
    dst.put_u32(id);
    dst.put_u32(seq);
    start
}

pub(crate) fn finish(dst: &mut BytesMut, start: usize) {
    let len = (dst.len() - start) as u32;
    dst[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// Parsed CONNECT.
#[derive(Debug)]
pub(crate) struct Connect<'a> {
    pub(crate) source_addr: &'a [u8],
    pub(crate) authenticator: [u8; 16],
    pub(crate) version: u8,
    pub(crate) timestamp: u32,
}

pub(crate) fn parse_connect(body: &[u8]) -> Result<Connect<'_>, WireError> {
    let mut r = Reader::new(body);
    let source_addr = r.fixed(6, "Source_Addr")?;
    let mut authenticator = [0u8; 16];
    authenticator.copy_from_slice(r.bytes(16, "AuthenticatorSource")?);
    let version = r.u8("Version")?;
    let timestamp = r.u32("Timestamp")?;
    Ok(Connect { source_addr, authenticator, version, timestamp })
}

/// AuthenticatorSource = MD5(Source_Addr + 9 zero bytes + secret + timestamp as "MMDDHHMMSS").
pub(crate) fn authenticator_source(source_addr: &[u8], secret: &[u8], timestamp: u32) -> [u8; 16] {
    let mut h = Md5::new();
    h.update(source_addr);
    h.update([0u8; 9]);
    h.update(secret);
    h.update(format!("{timestamp:010}").as_bytes());
    h.finalize().into()
}

/// AuthenticatorISMG = MD5(Status + AuthenticatorSource + secret), Status 1 or 4 bytes.
pub(crate) fn authenticator_ismg(version: Version, status: u32, source_auth: &[u8; 16], secret: &[u8]) -> [u8; 16] {
    let mut h = Md5::new();
    match version {
        Version::V20 => h.update([status.min(255) as u8]),
        Version::V30 => h.update(status.to_be_bytes()),
    }
    h.update(source_auth);
    h.update(secret);
    h.finalize().into()
}

pub(crate) fn put_connect(dst: &mut BytesMut, seq: u32, source_addr: &[u8], secret: &[u8], version: Version, timestamp: u32) {
    let s = begin(dst, CONNECT, seq);
    put_fixed(dst, source_addr, 6);
    dst.put_slice(&authenticator_source(source_addr, secret, timestamp));
    dst.put_u8(version.byte());
    dst.put_u32(timestamp);
    finish(dst, s);
}

pub(crate) fn put_connect_resp(dst: &mut BytesMut, version: Version, seq: u32, status: u32, auth: &[u8; 16]) {
    let s = begin(dst, CONNECT | RESP, seq);
    version.put_result(dst, status);
    dst.put_slice(auth);
    dst.put_u8(version.byte());
    finish(dst, s);
}

/// Parsed SUBMIT (first destination only is used as identity; more are counted).
#[derive(Debug)]
pub(crate) struct Submit<'a> {
    pub(crate) pk_total: u8,
    pub(crate) pk_number: u8,
    pub(crate) registered_delivery: u8,
    pub(crate) tp_udhi: u8,
    pub(crate) msg_fmt: u8,
    pub(crate) src_id: &'a [u8],
    pub(crate) dests: Vec<&'a [u8]>,
    pub(crate) content: &'a [u8],
}

pub(crate) fn parse_submit(version: Version, body: &[u8]) -> Result<Submit<'_>, WireError> {
    let tl = version.terminal_len();
    let mut r = Reader::new(body);
    let _msg_id = r.u64("Msg_Id")?;
    let pk_total = r.u8("Pk_total")?;
    let pk_number = r.u8("Pk_number")?;
    let registered_delivery = r.u8("Registered_Delivery")?;
    let _level = r.u8("Msg_level")?;
    let _service = r.bytes(10, "Service_Id")?;
    let _fee_user_type = r.u8("Fee_UserType")?;
    let _fee_terminal = r.bytes(tl, "Fee_terminal_Id")?;
    if version == Version::V30 {
        r.u8("Fee_terminal_type")?;
    }
    let _pid = r.u8("TP_pId")?;
    let tp_udhi = r.u8("TP_udhi")?;
    let msg_fmt = r.u8("Msg_Fmt")?;
    let _msg_src = r.bytes(6, "Msg_src")?;
    let _fee_type = r.bytes(2, "FeeType")?;
    let _fee_code = r.bytes(6, "FeeCode")?;
    let _valid = r.bytes(17, "ValId_Time")?;
    let _at = r.bytes(17, "At_Time")?;
    let src_id = r.fixed(21, "Src_Id")?;
    let n = r.u8("DestUsr_tl")? as usize;
    let mut dests = Vec::with_capacity(n.min(100));
    for _ in 0..n {
        dests.push(r.fixed(tl, "Dest_terminal_Id")?);
    }
    if version == Version::V30 {
        r.u8("Dest_terminal_type")?;
    }
    let len = r.u8("Msg_Length")? as usize;
    let content = r.bytes(len, "Msg_Content")?;
    // Reserve (8) / LinkID (20) trail the content; tolerate peers that omit them.
    Ok(Submit { pk_total, pk_number, registered_delivery, tp_udhi, msg_fmt, src_id, dests, content })
}

/// Fields of an outgoing SUBMIT (test client side).
#[derive(Debug)]
pub(crate) struct OutSubmit<'a> {
    pub(crate) src_id: &'a [u8],
    pub(crate) dest: &'a [u8],
    pub(crate) registered_delivery: u8,
    pub(crate) msg_fmt: u8,
    pub(crate) tp_udhi: u8,
    pub(crate) pk_total: u8,
    pub(crate) pk_number: u8,
    pub(crate) content: &'a [u8],
}

pub(crate) fn put_submit(dst: &mut BytesMut, version: Version, seq: u32, m: &OutSubmit<'_>) {
    let tl = version.terminal_len();
    let s = begin(dst, SUBMIT, seq);
    dst.put_u64(0);
    dst.put_u8(m.pk_total);
    dst.put_u8(m.pk_number);
    dst.put_u8(m.registered_delivery);
    dst.put_u8(0);
    put_fixed(dst, b"sluice", 10);
    dst.put_u8(0);
    put_fixed(dst, b"", tl);
    if version == Version::V30 {
        dst.put_u8(0);
    }
    dst.put_u8(0);
    dst.put_u8(m.tp_udhi);
    dst.put_u8(m.msg_fmt);
    put_fixed(dst, b"sluice", 6);
    put_fixed(dst, b"01", 2);
    put_fixed(dst, b"000000", 6);
    put_fixed(dst, b"", 17);
    put_fixed(dst, b"", 17);
    put_fixed(dst, m.src_id, 21);
    dst.put_u8(1);
    put_fixed(dst, m.dest, tl);
    if version == Version::V30 {
        dst.put_u8(0);
    }
    let c = &m.content[..m.content.len().min(255)];
    dst.put_u8(c.len() as u8);
    dst.put_slice(c);
    match version {
        Version::V20 => put_fixed(dst, b"", 8),
        Version::V30 => put_fixed(dst, b"", 20),
    }
    finish(dst, s);
}

/// SUBMIT_RESP / DELIVER_RESP: Msg_Id + Result.
pub(crate) fn put_msgid_resp(dst: &mut BytesMut, version: Version, id: u32, seq: u32, msg_id: u64, result: u32) {
    let s = begin(dst, id | RESP, seq);
    dst.put_u64(msg_id);
    version.put_result(dst, result);
    finish(dst, s);
}

/// (Msg_Id, Result) of a SUBMIT_RESP / DELIVER_RESP.
pub(crate) fn parse_msgid_resp(version: Version, body: &[u8]) -> Result<(u64, u32), WireError> {
    let mut r = Reader::new(body);
    let id = r.u64("Msg_Id")?;
    let result = match version {
        Version::V20 => r.u8("Result")? as u32,
        Version::V30 => r.u32("Result")?,
    };
    Ok((id, result))
}

pub(crate) fn put_active_test_resp(dst: &mut BytesMut, seq: u32) {
    let s = begin(dst, ACTIVE_TEST | RESP, seq);
    dst.put_u8(0);
    finish(dst, s);
}

pub(crate) fn put_empty(dst: &mut BytesMut, id: u32, seq: u32) {
    let s = begin(dst, id, seq);
    finish(dst, s);
}

/// An outgoing DELIVER: an MO message, or a status report when `report` is set.
#[derive(Debug)]
pub(crate) struct OutDeliver<'a> {
    pub(crate) msg_id: u64,
    pub(crate) dest_id: &'a [u8],
    pub(crate) src_terminal: &'a [u8],
    pub(crate) msg_fmt: u8,
    pub(crate) content: &'a [u8],
    pub(crate) report: Option<Report<'a>>,
}

/// Status report body carried in a DELIVER with Registered_Delivery = 1.
#[derive(Debug)]
pub(crate) struct Report<'a> {
    pub(crate) msg_id: u64,
    pub(crate) stat: &'a [u8],
    pub(crate) submit_time: &'a [u8],
    pub(crate) done_time: &'a [u8],
    pub(crate) dest_terminal: &'a [u8],
}

pub(crate) fn put_deliver(dst: &mut BytesMut, version: Version, seq: u32, d: &OutDeliver<'_>) {
    let tl = version.terminal_len();
    let s = begin(dst, DELIVER, seq);
    dst.put_u64(d.msg_id);
    put_fixed(dst, d.dest_id, 21);
    put_fixed(dst, b"", 10);
    dst.put_u8(0);
    dst.put_u8(0);
    dst.put_u8(d.msg_fmt);
    put_fixed(dst, d.src_terminal, tl);
    if version == Version::V30 {
        dst.put_u8(0);
    }
    match &d.report {
        Some(rep) => {
            dst.put_u8(1);
            let len = 8 + 7 + 10 + 10 + tl + 4;
            dst.put_u8(len as u8);
            dst.put_u64(rep.msg_id);
            put_fixed(dst, rep.stat, 7);
            put_fixed(dst, rep.submit_time, 10);
            put_fixed(dst, rep.done_time, 10);
            put_fixed(dst, rep.dest_terminal, tl);
            dst.put_u32(0);
        }
        None => {
            dst.put_u8(0);
            let c = &d.content[..d.content.len().min(255)];
            dst.put_u8(c.len() as u8);
            dst.put_slice(c);
        }
    }
    match version {
        Version::V20 => put_fixed(dst, b"", 8),
        Version::V30 => put_fixed(dst, b"", 20),
    }
    finish(dst, s);
}

/// Parsed DELIVER (client side of tests): Msg_Id, whether it is a report, and for reports
/// the reported Msg_Id and Stat; for MO the content.
#[derive(Debug)]
pub(crate) struct Deliver<'a> {
    pub(crate) msg_id: u64,
    pub(crate) src_terminal: &'a [u8],
    pub(crate) is_report: bool,
    pub(crate) content: &'a [u8],
    pub(crate) report_msg_id: Option<u64>,
    pub(crate) report_stat: Option<&'a [u8]>,
}

pub(crate) fn parse_deliver(version: Version, body: &[u8]) -> Result<Deliver<'_>, WireError> {
    let tl = version.terminal_len();
    let mut r = Reader::new(body);
    let msg_id = r.u64("Msg_Id")?;
    let _dest = r.bytes(21, "Dest_Id")?;
    let _svc = r.bytes(10, "Service_Id")?;
    let _pid = r.u8("TP_pid")?;
    let _udhi = r.u8("TP_udhi")?;
    let _fmt = r.u8("Msg_Fmt")?;
    let src_terminal = r.fixed(tl, "Src_terminal_Id")?;
    if version == Version::V30 {
        r.u8("Src_terminal_type")?;
    }
    let is_report = r.u8("Registered_Delivery")? == 1;
    let len = r.u8("Msg_Length")? as usize;
    let content = r.bytes(len, "Msg_Content")?;
    let (mut report_msg_id, mut report_stat) = (None, None);
    if is_report {
        let mut c = Reader::new(content);
        report_msg_id = Some(c.u64("report Msg_Id")?);
        report_stat = Some(c.fixed(7, "Stat")?);
    }
    Ok(Deliver { msg_id, src_terminal, is_report, content, report_msg_id, report_stat })
}

/// CMPP Msg_Id: month(4) day(5) hour(5) minute(6) second(6) gateway(22) sequence(16).
pub(crate) fn make_msg_id(now: &jiff::civil::DateTime, gateway: u32, seq: u16) -> u64 {
    ((now.month() as u64) << 60)
        | ((now.day() as u64) << 55)
        | ((now.hour() as u64) << 50)
        | ((now.minute() as u64) << 44)
        | ((now.second() as u64) << 38)
        | (((gateway & 0x3F_FFFF) as u64) << 16)
        | seq as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn submit_round_trip_both_versions() {
        for v in [Version::V20, Version::V30] {
            let mut b = BytesMut::new();
            let m = OutSubmit {
                src_id: b"1065",
                dest: b"13800138000",
                registered_delivery: 1,
                msg_fmt: 8,
                tp_udhi: 0,
                pk_total: 1,
                pk_number: 1,
                content: b"\x4f\x60\x59\x7d",
            };
            put_submit(&mut b, v, 9, &m);
            let h = check(&b).unwrap().unwrap();
            assert_eq!(h.len as usize, b.len());
            let p = parse_submit(v, &b[HEADER_LEN..]).unwrap();
            assert_eq!(p.dests, vec![&b"13800138000"[..]]);
            assert_eq!(p.content, b"\x4f\x60\x59\x7d");
            assert_eq!((p.registered_delivery, p.msg_fmt, p.src_id), (1, 8, &b"1065"[..]));
        }
    }

    #[test]
    fn report_round_trip() {
        for v in [Version::V20, Version::V30] {
            let mut b = BytesMut::new();
            let rep = Report { msg_id: 77, stat: b"DELIVRD", submit_time: b"2611260100", done_time: b"2611260101", dest_terminal: b"138" };
            let d = OutDeliver { msg_id: 5, dest_id: b"1065", src_terminal: b"138", msg_fmt: 0, content: b"", report: Some(rep) };
            put_deliver(&mut b, v, 1, &d);
            let p = parse_deliver(v, &b[HEADER_LEN..]).unwrap();
            assert!(p.is_report);
            assert_eq!(p.report_msg_id, Some(77));
            assert_eq!(p.report_stat, Some(&b"DELIVRD"[..]));
        }
    }

    #[test]
    fn authenticators_match_between_sides() {
        let a = authenticator_source(b"901234", b"secret", 1126015500);
        let mut b = BytesMut::new();
        put_connect(&mut b, 1, b"901234", b"secret", Version::V30, 1126015500);
        let c = parse_connect(&b[HEADER_LEN..]).unwrap();
        assert_eq!(c.authenticator, a);
        assert_eq!(Version::from_byte(c.version), Version::V30);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        #[test]
        fn parsers_never_panic(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = check(&data);
            let _ = parse_connect(&data);
            for v in [Version::V20, Version::V30] {
                let _ = parse_submit(v, &data);
                let _ = parse_deliver(v, &data);
                let _ = parse_msgid_resp(v, &data);
            }
        }
    }
}

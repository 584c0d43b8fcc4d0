//! Hand-assembled PDUs from the CMPP 2.0 / 3.0 field tables: bytes built field by field
//! here (not by the encoder) must decode to the expected values, and encode back to the
//! same bytes. Also the tolerated deviations, the error → response mapping, Msg_Id layout
//! and the length bounds.

use bytes::{Bytes, BytesMut};
use md5::{Digest, Md5};
use sluice_protocols::cmpp::*;

fn pad(s: &[u8], n: usize) -> Vec<u8> {
    let mut v = s.to_vec();
    v.resize(n, 0);
    v
}

fn frame(command: u32, seq: u32, body: &[u8]) -> Bytes {
    let mut v = Vec::new();
    v.extend_from_slice(&((12 + body.len()) as u32).to_be_bytes());
    v.extend_from_slice(&command.to_be_bytes());
    v.extend_from_slice(&seq.to_be_bytes());
    v.extend_from_slice(body);
    Bytes::from(v)
}

fn fs<const N: usize>(s: &str) -> FixedStr<N> {
    FixedStr::new(s.as_bytes()).unwrap()
}

fn decode(bytes: &Bytes, v: Version) -> Decoded {
    decode_bytes(bytes, v, DEFAULT_MAX_LENGTH).unwrap()
}

fn encode(p: &Pdu, seq: u32, v: Version) -> Bytes {
    p.to_bytes(seq, v).unwrap()
}

#[test]
fn connect_with_known_authenticator() {
    // SP 901234, secret "secret", 26 Nov 01:53:07 → Timestamp 1126015307.
    let ts = auth::timestamp(11, 26, 1, 53, 7).unwrap();
    assert_eq!(ts, 1_126_015_307);
    let mut md5_input = b"901234".to_vec();
    md5_input.extend_from_slice(&[0; 9]);
    md5_input.extend_from_slice(b"secret");
    md5_input.extend_from_slice(b"1126015307");
    let auth_src: [u8; 16] = Md5::digest(&md5_input).into();

    let mut body = b"901234".to_vec();
    body.extend_from_slice(&auth_src);
    body.push(0x30);
    body.extend_from_slice(&ts.to_be_bytes());
    assert_eq!(body.len(), 27);
    let bytes = frame(0x0000_0001, 1, &body);

    let want = Connect::new(fs("901234"), b"secret", Version::V30, ts);
    assert_eq!(want.authenticator_source, auth_src);
    let d = decode(&bytes, Version::V30);
    assert_eq!(d.pdu, Pdu::Connect(want.clone()));
    assert!(d.tolerated.is_empty());
    assert_eq!(encode(&Pdu::Connect(want), 1, Version::V30), bytes);
    assert!(auth::verify_source(b"901234", b"secret", ts, &auth_src));
}

#[test]
fn connect_resp_status_width_per_version() {
    let auth_src = auth::authenticator_source(b"901234", b"secret", 1_126_015_307);
    for (v, status_bytes) in [
        (Version::V20, vec![0u8]),
        (Version::V30, vec![0u8, 0, 0, 0]),
    ] {
        let mut md5_input = status_bytes.clone();
        md5_input.extend_from_slice(&auth_src);
        md5_input.extend_from_slice(b"secret");
        let ismg: [u8; 16] = Md5::digest(&md5_input).into();
        assert_eq!(
            auth::authenticator_ismg(v, ConnectStatus::Ok, &auth_src, b"secret"),
            ismg
        );

        let mut body = status_bytes;
        body.extend_from_slice(&ismg);
        body.push(v.byte());
        assert_eq!(body.len(), 17 + v.status_len());
        let bytes = frame(0x8000_0001, 1, &body);
        let p = Pdu::ConnectResp(ConnectResp {
            status: ConnectStatus::Ok,
            authenticator_ismg: ismg,
            version: v.byte(),
        });
        assert_eq!(decode(&bytes, v).pdu, p);
        assert_eq!(encode(&p, 1, v), bytes);
    }
}

fn submit_body(v: Version) -> Vec<u8> {
    let tid = v.terminal_id_len();
    let mut b = Vec::new();
    b.extend_from_slice(&0u64.to_be_bytes()); // Msg_Id
    b.extend_from_slice(&[1, 1, 1, 0]); // Pk_total Pk_number Registered_Delivery Msg_level
    b.extend_from_slice(&pad(b"MJS0019901", 10)); // Service_Id
    b.push(2); // Fee_UserType
    b.extend_from_slice(&pad(b"", tid)); // Fee_terminal_Id
    if v == Version::V30 {
        b.push(0); // Fee_terminal_type
    }
    b.extend_from_slice(&[0, 0, 8]); // TP_pId TP_udhi Msg_Fmt
    b.extend_from_slice(b"901234"); // Msg_src
    b.extend_from_slice(b"01"); // FeeType
    b.extend_from_slice(b"000000"); // FeeCode
    b.extend_from_slice(&pad(b"", 17)); // ValId_Time
    b.extend_from_slice(&pad(b"", 17)); // At_Time
    b.extend_from_slice(&pad(b"1069001234", 21)); // Src_Id
    b.push(2); // DestUsr_tl
    b.extend_from_slice(&pad(b"13800138000", tid));
    b.extend_from_slice(&pad(b"8613900139000", tid));
    if v == Version::V30 {
        b.push(0); // Dest_terminal_type
    }
    b.push(4); // Msg_Length
    b.extend_from_slice(&[0x4F, 0x60, 0x59, 0x7D]); // "你好" UCS-2
    match v {
        Version::V20 => b.extend_from_slice(&[0; 8]), // Reserve
        Version::V30 => b.extend_from_slice(&pad(b"LINK0001", 20)), // LinkID
    }
    b
}

fn expected_submit(v: Version) -> Submit {
    Submit {
        msg_id: MsgId(0),
        pk_total: 1,
        pk_number: 1,
        registered_delivery: 1,
        msg_level: 0,
        service_id: fs("MJS0019901"),
        fee_user_type: 2,
        fee_terminal_id: FixedStr::EMPTY,
        fee_terminal_type: 0,
        tp_pid: 0,
        tp_udhi: 0,
        msg_fmt: MsgFmt::Ucs2,
        msg_src: fs("901234"),
        fee_type: fs("01"),
        fee_code: fs("000000"),
        valid_time: FixedStr::EMPTY,
        at_time: FixedStr::EMPTY,
        src_id: fs("1069001234"),
        dest_terminal_ids: vec![fs("13800138000"), fs("8613900139000")],
        dest_terminal_type: 0,
        msg_content: Bytes::from_static(&[0x4F, 0x60, 0x59, 0x7D]),
        link_id: if v == Version::V30 {
            fs("LINK0001")
        } else {
            FixedStr::EMPTY
        },
    }
}

#[test]
fn submit_layout_per_version() {
    for (v, len) in [
        (
            Version::V20,
            8 + 4 + 10 + 1 + 21 + 3 + 6 + 2 + 6 + 34 + 21 + 1 + 42 + 1 + 4 + 8,
        ),
        (
            Version::V30,
            8 + 4 + 10 + 1 + 32 + 1 + 3 + 6 + 2 + 6 + 34 + 21 + 1 + 64 + 1 + 1 + 4 + 20,
        ),
    ] {
        let body = submit_body(v);
        assert_eq!(body.len(), len, "{v}");
        let bytes = frame(0x0000_0004, 7, &body);
        let p = Pdu::Submit(Box::new(expected_submit(v)));
        let d = decode(&bytes, v);
        assert_eq!(d.pdu, p, "{v}");
        assert!(d.tolerated.is_empty());
        assert_eq!(encode(&p, 7, v), bytes, "{v}");
    }
}

#[test]
fn submit_resp_result_width_per_version() {
    let id = MsgId(0x1234_5678_9ABC_DEF0);
    for (v, result) in [(Version::V20, vec![8u8]), (Version::V30, vec![0, 0, 0, 8])] {
        let mut body = id.0.to_be_bytes().to_vec();
        body.extend_from_slice(&result);
        let bytes = frame(0x8000_0004, 9, &body);
        let p = Pdu::SubmitResp(SubmitResp {
            msg_id: id,
            result: ResultCode::FlowControl,
        });
        assert_eq!(decode(&bytes, v).pdu, p);
        assert_eq!(encode(&p, 9, v), bytes);
        assert!(ResultCode::FlowControl.is_throttle());
    }
}

fn report_bytes(v: Version) -> Vec<u8> {
    let mut r = MsgId(0xAABB_CCDD_0011_2233).0.to_be_bytes().to_vec();
    r.extend_from_slice(b"DELIVRD");
    r.extend_from_slice(b"2611260153");
    r.extend_from_slice(b"2611260154");
    r.extend_from_slice(&pad(b"13800138000", v.terminal_id_len()));
    r.extend_from_slice(&42u32.to_be_bytes());
    r
}

fn deliver_body(v: Version, registered: u8, content: &[u8]) -> Vec<u8> {
    let mut b = MsgId(77).0.to_be_bytes().to_vec();
    b.extend_from_slice(&pad(b"1069001234", 21)); // Dest_Id
    b.extend_from_slice(&pad(b"MJS0019901", 10)); // Service_Id
    b.extend_from_slice(&[0, 0, 15]); // TP_pid TP_udhi Msg_Fmt
    b.extend_from_slice(&pad(b"13800138000", v.terminal_id_len())); // Src_terminal_Id
    if v == Version::V30 {
        b.push(1); // Src_terminal_type
    }
    b.push(registered);
    b.push(content.len() as u8);
    b.extend_from_slice(content);
    match v {
        Version::V20 => b.extend_from_slice(&[0; 8]),
        Version::V30 => b.extend_from_slice(&pad(b"", 20)),
    }
    b
}

fn expected_deliver(v: Version, content: DeliverContent) -> Deliver {
    Deliver {
        msg_id: MsgId(77),
        dest_id: fs("1069001234"),
        service_id: fs("MJS0019901"),
        tp_pid: 0,
        tp_udhi: 0,
        msg_fmt: MsgFmt::Gbk,
        src_terminal_id: fs("13800138000"),
        src_terminal_type: u8::from(v == Version::V30),
        content,
        link_id: FixedStr::EMPTY,
    }
}

#[test]
fn deliver_status_report_is_60_or_71_bytes() {
    for (v, len) in [(Version::V20, 60), (Version::V30, 71)] {
        let report = report_bytes(v);
        assert_eq!(report.len(), len);
        assert_eq!(v.report_len(), len);
        let bytes = frame(0x0000_0005, 3, &deliver_body(v, 1, &report));
        let want = StatusReport {
            msg_id: MsgId(0xAABB_CCDD_0011_2233),
            stat: fs("DELIVRD"),
            submit_time: fs("2611260153"),
            done_time: fs("2611260154"),
            dest_terminal_id: fs("13800138000"),
            smsc_sequence: 42,
        };
        let p = Pdu::Deliver(Box::new(expected_deliver(v, DeliverContent::Report(want))));
        let d = decode(&bytes, v);
        assert_eq!(d.pdu, p, "{v}");
        assert!(d.tolerated.is_empty());
        let Pdu::Deliver(got) = &d.pdu else {
            unreachable!()
        };
        assert!(got.report().unwrap().is_delivered());
        assert_eq!(encode(&p, 3, v), bytes);
    }
}

#[test]
fn deliver_mo_keeps_content_raw() {
    let gbk = [0xC4, 0xE3, 0xBA, 0xC3]; // "你好" in GBK
    for v in [Version::V20, Version::V30] {
        let bytes = frame(0x0000_0005, 4, &deliver_body(v, 0, &gbk));
        let p = Pdu::Deliver(Box::new(expected_deliver(
            v,
            DeliverContent::Message(Bytes::copy_from_slice(&gbk)),
        )));
        assert_eq!(decode(&bytes, v).pdu, p);
        assert_eq!(encode(&p, 4, v), bytes);
    }
}

#[test]
fn small_pdus_per_version() {
    let cases: Vec<(Version, u32, Vec<u8>, Pdu)> = vec![
        (Version::V20, 0x2, vec![], Pdu::Terminate),
        (Version::V30, 0x8000_0002, vec![], Pdu::TerminateResp),
        (Version::V20, 0x8, vec![], Pdu::ActiveTest),
        (
            Version::V30,
            0x8000_0008,
            vec![0],
            Pdu::ActiveTestResp(ActiveTestResp { reserved: 0 }),
        ),
        (
            Version::V20,
            0x7,
            5u64.to_be_bytes().to_vec(),
            Pdu::Cancel(Cancel { msg_id: MsgId(5) }),
        ),
        (
            Version::V20,
            0x8000_0007,
            vec![1],
            Pdu::CancelResp(CancelResp { success_id: 1 }),
        ),
        (
            Version::V30,
            0x8000_0007,
            vec![0, 0, 0, 1],
            Pdu::CancelResp(CancelResp { success_id: 1 }),
        ),
        (
            Version::V20,
            0x8000_0005,
            [9u64.to_be_bytes().as_slice(), &[0]].concat(),
            Pdu::DeliverResp(DeliverResp {
                msg_id: MsgId(9),
                result: ResultCode::Success,
            }),
        ),
        (
            Version::V30,
            0x8000_0005,
            [9u64.to_be_bytes().as_slice(), &[0, 0, 0, 0]].concat(),
            Pdu::DeliverResp(DeliverResp {
                msg_id: MsgId(9),
                result: ResultCode::Success,
            }),
        ),
        (
            Version::V30,
            0x6,
            [
                b"20261126".as_slice(),
                &[1],
                &pad(b"MJS0019901", 10),
                &[0; 8],
            ]
            .concat(),
            Pdu::Query(Query {
                time: fs("20261126"),
                query_type: 1,
                query_code: fs("MJS0019901"),
            }),
        ),
    ];
    for (v, cmd, body, p) in cases {
        let bytes = frame(cmd, 11, &body);
        assert_eq!(decode(&bytes, v).pdu, p, "{cmd:#x}");
        assert_eq!(encode(&p, 11, v), bytes, "{cmd:#x}");
    }
    let mut qr = [b"20261126".as_slice(), &[0], &[0; 10]].concat();
    for c in 1u32..=8 {
        qr.extend_from_slice(&c.to_be_bytes());
    }
    assert_eq!(qr.len(), 51);
    let d = decode(&frame(0x8000_0006, 1, &qr), Version::V20);
    let Pdu::QueryResp(q) = d.pdu else {
        panic!("{:?}", d.pdu)
    };
    assert_eq!((q.mt_tl_msg, q.mt_fl, q.mo_fl), (1, 5, 8));
}

// ---- tolerated deviations ----

#[test]
fn tolerates_minor_version_byte() {
    let mut body = b"901234".to_vec();
    body.extend_from_slice(&[0; 16]);
    body.push(0x31);
    body.extend_from_slice(&0u32.to_be_bytes());
    let d = decode(&frame(1, 1, &body), Version::V30);
    assert!(d.tolerated.contains(Tolerance::VersionMinor));
    assert_eq!(negotiate(0x31, Version::V30), Ok(Version::V30));
    assert_eq!(negotiate(0x30, Version::V20), Ok(Version::V20));
    assert_eq!(negotiate(0x21, Version::V30), Ok(Version::V20));
    assert_eq!(
        negotiate(0x40, Version::V30),
        Err(ConnectStatus::VersionTooHigh)
    );
    assert_eq!(
        negotiate(0x12, Version::V30),
        Err(ConnectStatus::StructureError)
    );
}

#[test]
fn tolerates_space_padding_and_trailing_bytes() {
    let mut body = submit_body(Version::V20);
    body[12..22].copy_from_slice(b"MJS001    "); // Service_Id padded with spaces
    body.extend_from_slice(&[0xEE; 3]);
    let d = decode(&frame(4, 1, &body), Version::V20);
    let Pdu::Submit(s) = &d.pdu else { panic!() };
    assert_eq!(s.service_id.as_str(), Some("MJS001"));
    assert!(d.tolerated.contains(Tolerance::PaddingSpaces));
    assert!(d.tolerated.contains(Tolerance::TrailingBytes));
    assert_eq!(d.tolerated.to_string(), "trailing_bytes,padding_spaces");
}

#[test]
fn tolerates_missing_reserve_and_link_id() {
    for (v, trailer) in [(Version::V20, 8), (Version::V30, 20)] {
        let mut body = submit_body(v);
        body.truncate(body.len() - trailer);
        let d = decode(&frame(4, 1, &body), v);
        assert!(d.tolerated.contains(Tolerance::MissingTrailer), "{v}");
        let Pdu::Submit(s) = d.pdu else { panic!() };
        assert_eq!(s.dest_terminal_ids.len(), 2);
        // A partial trailer is not tolerated: it is a length error.
        let mut body = submit_body(v);
        body.truncate(body.len() - 1);
        let e = decode_bytes(&frame(4, 1, &body), v, DEFAULT_MAX_LENGTH).unwrap_err();
        let DecodeOneError::Decode(e) = e else {
            panic!()
        };
        assert_eq!(e.result_code(), ResultCode::MessageLengthError);
    }
}

#[test]
fn tolerates_other_versions_response_width() {
    // A 2.0-width SUBMIT_RESP on a 3.0 link, and the reverse.
    let id = 0x0102_0304_0506_0708u64.to_be_bytes();
    let d = decode(
        &frame(0x8000_0004, 1, &[id.as_slice(), &[8]].concat()),
        Version::V30,
    );
    assert!(d.tolerated.contains(Tolerance::ResponseWidth));
    assert_eq!(
        d.pdu,
        Pdu::SubmitResp(SubmitResp {
            msg_id: MsgId(0x0102_0304_0506_0708),
            result: ResultCode::FlowControl
        })
    );
    let d = decode(
        &frame(
            0x8000_0001,
            1,
            &[&[0, 0, 0, 3], [0u8; 16].as_slice(), &[0x30]].concat(),
        ),
        Version::V20,
    );
    assert!(d.tolerated.contains(Tolerance::ResponseWidth));
    let Pdu::ConnectResp(c) = d.pdu else { panic!() };
    assert_eq!(c.status, ConnectStatus::AuthenticationError);
}

#[test]
fn tolerates_other_versions_report_width() {
    let bytes = frame(
        5,
        1,
        &deliver_body(Version::V20, 1, &report_bytes(Version::V30)),
    );
    let d = decode(&bytes, Version::V20);
    assert!(d.tolerated.contains(Tolerance::ReportWidth));
    let Pdu::Deliver(dl) = d.pdu else { panic!() };
    assert_eq!(
        dl.report().unwrap().dest_terminal_id.as_str(),
        Some("13800138000")
    );
}

// ---- errors say what to answer ----

fn decode_err(bytes: &Bytes, v: Version) -> DecodeError {
    match decode_bytes(bytes, v, DEFAULT_MAX_LENGTH) {
        Err(DecodeOneError::Decode(e)) => e,
        other => panic!("expected a decode error, got {other:?}"),
    }
}

#[test]
fn malformed_submit_is_answered_with_a_result_code() {
    let mut body = submit_body(Version::V30);
    let dest_count_at = 8 + 4 + 10 + 1 + 32 + 1 + 3 + 6 + 2 + 6 + 34 + 21;
    body[dest_count_at] = 101;
    let e = decode_err(&frame(4, 99, &body), Version::V30);
    assert_eq!(e.kind, DecodeErrorKind::DestCount(101));
    assert_eq!(
        e.response(Version::V30),
        Some(Pdu::SubmitResp(SubmitResp {
            msg_id: MsgId(0),
            result: ResultCode::MessageStructureError
        }))
    );
    assert_eq!(e.header.sequence_id, 99);

    let e = decode_err(&frame(4, 5, &submit_body(Version::V30)[..40]), Version::V30);
    assert!(matches!(e.kind, DecodeErrorKind::Truncated { .. }));
    assert_eq!(e.result_code(), ResultCode::MessageLengthError);
}

#[test]
fn malformed_deliver_answer_echoes_msg_id() {
    let report = report_bytes(Version::V20);
    let bytes = frame(5, 1, &deliver_body(Version::V20, 1, &report[..59]));
    let e = decode_err(&bytes, Version::V20);
    assert_eq!(e.kind, DecodeErrorKind::ReportLength(59));
    assert_eq!(
        e.response(Version::V20),
        Some(Pdu::DeliverResp(DeliverResp {
            msg_id: MsgId(77),
            result: ResultCode::MessageLengthError
        }))
    );
}

#[test]
fn malformed_connect_is_answered_with_structure_error() {
    let e = decode_err(&frame(1, 1, b"9012"), Version::V20);
    let Some(Pdu::ConnectResp(r)) = e.response(Version::V20) else {
        panic!()
    };
    assert_eq!(r.status, ConnectStatus::StructureError);
    assert_eq!(r.status.raw(), 1);
    assert_eq!(
        ConnectStatus::from_raw(2),
        ConnectStatus::IllegalSourceAddress
    );
    assert_eq!(
        ConnectStatus::from_raw(3),
        ConnectStatus::AuthenticationError
    );
    assert_eq!(ConnectStatus::from_raw(4), ConnectStatus::VersionTooHigh);
}

#[test]
fn unknown_command_survives_as_other() {
    let e = decode_err(&frame(0x0000_0099, 1, &[1, 2, 3]), Version::V20);
    assert_eq!(e.header.command_id, CommandId::Other(0x99));
    assert_eq!(e.kind, DecodeErrorKind::UnknownCommand);
    assert_eq!(e.response(Version::V20), None);
    assert_eq!(CommandId::from_raw(0x8000_0004), CommandId::SubmitResp);
    assert!(CommandId::SubmitResp.is_response());
    assert_eq!(CommandId::Other(0x99).raw(), 0x99);
}

#[test]
fn encoding_is_strict() {
    let big = Pdu::SubmitResp(SubmitResp {
        msg_id: MsgId(1),
        result: ResultCode::from_raw(300),
    });
    assert!(matches!(
        big.to_bytes(1, Version::V20),
        Err(EncodeError::ValueTooLarge { .. })
    ));
    assert!(big.to_bytes(1, Version::V30).is_ok());

    let mut s = expected_submit(Version::V30);
    assert!(matches!(
        Pdu::Submit(Box::new(s.clone())).to_bytes(1, Version::V20),
        Err(EncodeError::NotInVersion {
            field: "LinkID",
            ..
        })
    ));
    s.dest_terminal_ids.clear();
    assert!(matches!(
        Pdu::Submit(Box::new(s.clone())).to_bytes(1, Version::V30),
        Err(EncodeError::DestCount(0))
    ));
    s.dest_terminal_ids = vec![fs("1"); 101];
    assert!(matches!(
        Pdu::Submit(Box::new(s.clone())).to_bytes(1, Version::V30),
        Err(EncodeError::DestCount(101))
    ));
    s.dest_terminal_ids = vec![fs("1")];
    s.msg_content = Bytes::from(vec![0; 256]);
    assert!(matches!(
        Pdu::Submit(Box::new(s)).to_bytes(1, Version::V30),
        Err(EncodeError::TooLong {
            field: "Msg_Content",
            ..
        })
    ));
    assert!(FixedStr::<6>::new(b"1234567").is_err());
    assert_eq!(FixedStr::<6>::new(b"12 \0\0").unwrap().as_bytes(), b"12");
}

// ---- framing ----

#[test]
fn length_bounds_are_checked_before_buffering() {
    let mut head = BytesMut::new();
    head.extend_from_slice(&(DEFAULT_MAX_LENGTH + 1).to_be_bytes());
    head.extend_from_slice(&4u32.to_be_bytes());
    head.extend_from_slice(&1u32.to_be_bytes());
    // Only the header has arrived, and it is already rejected.
    assert_eq!(
        decode_frame(&mut head, Version::V30, DEFAULT_MAX_LENGTH),
        Err(FrameError::TooLong {
            total_length: DEFAULT_MAX_LENGTH + 1,
            max: DEFAULT_MAX_LENGTH
        })
    );
    let mut short = BytesMut::from(&[0u8, 0, 0, 11, 0, 0, 0, 8, 0, 0, 0, 1][..]);
    assert_eq!(
        decode_frame(&mut short, Version::V30, DEFAULT_MAX_LENGTH),
        Err(FrameError::TooShort { total_length: 11 })
    );
    // Incomplete: nothing consumed.
    let full = encode(
        &Pdu::ActiveTestResp(ActiveTestResp::default()),
        3,
        Version::V20,
    );
    let mut partial = BytesMut::from(&full[..12]);
    assert_eq!(
        decode_frame(&mut partial, Version::V20, DEFAULT_MAX_LENGTH),
        Ok(None)
    );
    assert_eq!(partial.len(), 12);
    partial.extend_from_slice(&full[12..]);
    let d = decode_frame(&mut partial, Version::V20, DEFAULT_MAX_LENGTH)
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(d.pdu, Pdu::ActiveTestResp(ActiveTestResp { reserved: 0 }));
    assert!(partial.is_empty());
    assert_eq!(header::check(&full[..5], 100), Ok(None));
}

// ---- Msg_Id ----

#[test]
fn msg_id_bit_layout() {
    // Oracle: the spec's layout written as a bit string, independent of the shifts.
    let bits = format!(
        "{:04b}{:05b}{:05b}{:06b}{:06b}{:022b}{:016b}",
        11, 26, 1, 53, 7, 123_456, 789
    );
    let want = u64::from_str_radix(&bits, 2).unwrap();
    let id = MsgId::from_parts(MsgIdParts {
        month: 11,
        day: 26,
        hour: 1,
        minute: 53,
        second: 7,
        gateway: 123_456,
        sequence: 789,
    })
    .unwrap();
    assert_eq!(id.0, want);
    assert_eq!(id.to_readable(), "1126015307012345600789");
    assert_eq!(id.to_string(), want.to_string());
    assert_eq!(id.to_padded_decimal().len(), 20);
    assert_eq!(format!("{id:x}").len(), 16);
    assert_eq!("1126015307012345600789".parse::<MsgId>().unwrap(), id);
    assert!(
        MsgId::from_parts(MsgIdParts {
            month: 13,
            ..id.parts()
        })
        .is_err()
    );
    assert!(
        MsgId::from_parts(MsgIdParts {
            gateway: 1 << 22,
            ..id.parts()
        })
        .is_err()
    );
    assert!("12a".parse::<MsgId>().is_err());
    assert!("".parse::<MsgId>().is_err());
    assert!("99999999999999999999".parse::<MsgId>().is_err()); // > u64::MAX
    // Any u64 unpacks without panicking, even with out-of-range parts.
    assert_eq!(MsgId(u64::MAX).parts().month, 15);
}

#[test]
fn submit_semantic_check_names_the_result() {
    let ok = expected_submit(Version::V30);
    assert_eq!(ok.check(), Ok(()));
    let bad_parts = Submit {
        pk_number: 2,
        ..ok.clone()
    };
    assert_eq!(bad_parts.check(), Err(ResultCode::MessageStructureError));
    let bad_fee = Submit {
        fee_code: fs("1O"),
        ..ok.clone()
    };
    assert_eq!(bad_fee.check(), Err(ResultCode::FeeCodeError));
    let long_ucs2 = Submit {
        msg_content: Bytes::from(vec![0; 141]),
        ..ok.clone()
    };
    assert_eq!(long_ucs2.check(), Err(ResultCode::ContentTooLong));
    let long_ascii = Submit {
        msg_fmt: MsgFmt::Ascii,
        msg_content: Bytes::from(vec![b'a'; 160]),
        ..ok
    };
    assert_eq!(long_ascii.check(), Ok(()));
}

//! Round trips for every SMPP PDU, spec byte examples, tolerances and error responses.

#[path = "smpp_common/mod.rs"]
mod common;

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use sluice_protocols::smpp::*;

fn enc(c: &Command) -> Bytes {
    c.to_bytes().expect("generated commands are encodable")
}

/// 4 000 cases normally, ten times more with SLUICE_LONG_TESTS=1.
fn cases() -> u32 {
    if std::env::var_os("SLUICE_LONG_TESTS").is_some_and(|v| v == "1") {
        40_000
    } else {
        4_000
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn decode_encode_roundtrip(cmd in common::command()) {
        let bytes = enc(&cmd);
        prop_assert_eq!(bytes.len(), cmd.encoded_len().unwrap());
        prop_assert_eq!(check(&bytes, usize::MAX), Ok(Some(bytes.len())));
        let d = decode(bytes.clone()).unwrap();
        prop_assert_eq!(&d.command, &cmd);
        // Generated PDUs conform, except for arbitrary interface versions.
        prop_assert!(Tolerated::UNKNOWN_INTERFACE_VERSION.contains(d.tolerated));
        prop_assert_eq!(enc(&d.command), bytes.clone());
        prop_assert_eq!(decode_slice(&bytes).unwrap().command, cmd);
    }

    /// A body's own length check is the command's, header aside.
    #[test]
    fn a_bodys_length_is_its_commands_less_the_header(sm in common::sm()) {
        let cmd = Command::request(1, Pdu::SubmitSm(sm.clone()));
        prop_assert_eq!(sm.encoded_body_len().unwrap() + 16, cmd.encoded_len().unwrap());
        let mut bad = sm;
        bad.service_type = Bytes::from_static(b"a\0b").into();
        prop_assert!(bad.encoded_body_len().is_err());
    }
}

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn spec_enquire_link() {
    let b = hex("00000010 00000015 00000000 00000001");
    let d = decode_slice(&b).unwrap();
    assert_eq!(d.command, Command::request(1, Pdu::EnquireLink));
    assert!(d.tolerated.is_empty());
    assert_eq!(Command::request(1, Pdu::EnquireLink).to_bytes().unwrap(), b);
}

#[test]
fn spec_bind_transceiver() {
    // system_id "smppclient1", password "password", system_type "", version 0x34, ton 0, npi 0, range "".
    let b = hex("0000002A 00000009 00000000 00000001
         736D7070636C69656E743100 70617373776F726400 00 34 00 00 00");
    let d = decode_slice(&b).unwrap();
    let Pdu::BindTransceiver(bind) = &d.command.pdu else {
        panic!("{:?}", d.command)
    };
    assert_eq!(&bind.system_id[..], b"smppclient1");
    assert_eq!(&bind.password[..], b"password");
    assert_eq!(bind.interface_version, INTERFACE_VERSION_34);
    assert_eq!(d.command.to_bytes().unwrap(), b);
}

#[test]
fn spec_submit_sm_with_tlvs() {
    let cmd = Command::request(
        7,
        Pdu::SubmitSm(Sm {
            source: Address::new(5, 0, "sluice"),
            dest: Address::new(1, 1, "8613800138000"),
            registered_delivery: 1,
            short_message: Octets::from_static(b"Hi"),
            tlvs: {
                let mut t = Tlvs::new();
                t.set_sar(0x1234, 2, 1);
                t
            },
            ..Sm::default()
        }),
    );
    let expect = hex("00000046 00000004 00000000 00000007
         00 05 00 736C7569636500 01 01 3836313338303031333830303000
         00 00 00 00 00 01 00 00 00 02 4869
         020C 0002 1234 020E 0001 02 020F 0001 01");
    assert_eq!(cmd.to_bytes().unwrap(), expect);
    let d = decode_slice(&expect).unwrap();
    let Pdu::SubmitSm(sm) = &d.command.pdu else {
        panic!()
    };
    assert_eq!(sm.tlvs.sar_msg_ref_num(), Some(0x1234));
    assert_eq!(sm.tlvs.sar_total_segments(), Some(2));
    assert_eq!(sm.tlvs.sar_segment_seqnum(), Some(1));
}

#[test]
fn unknown_tlvs_survive_in_order() {
    let mut t = Tlvs::new();
    t.push(0x1401, b"vendor".to_vec());
    t.push(0x0204, vec![0, 9]);
    t.push(0x1401, Vec::new());
    let cmd = Command::request(
        3,
        Pdu::DataSm(DataSm {
            tlvs: t,
            ..DataSm::default()
        }),
    );
    let b = cmd.to_bytes().unwrap();
    let d = decode(b.clone()).unwrap();
    assert_eq!(d.command, cmd);
    let Pdu::DataSm(ds) = &d.command.pdu else {
        panic!()
    };
    assert_eq!(ds.tlvs.user_message_reference(), Some(9));
    assert_eq!(d.command.to_bytes().unwrap(), b);
}

#[test]
fn error_response_without_body() {
    let b = hex("00000010 80000004 00000058 00000009");
    let d = decode_slice(&b).unwrap();
    assert_eq!(d.command.status, CommandStatus::EsmeRthrottled);
    assert_eq!(d.command.pdu, Pdu::SubmitSmResp(MessageIdResp::default()));
    assert!(d.tolerated.is_empty());
    assert_eq!(d.command.to_bytes().unwrap(), b);
    // Status 0 with an empty body is bent: accepted and flagged.
    let b = hex("00000010 80000004 00000000 00000009");
    let d = decode_slice(&b).unwrap();
    assert_eq!(d.tolerated, Tolerated::EMPTY_RESPONSE_BODY);
}

#[test]
fn tolerates_missing_nul_trailing_bytes_and_odd_versions() {
    // submit_sm_resp "12345" without NUL.
    let b = hex("00000015 80000004 00000000 00000002 3132333435");
    let d = decode_slice(&b).unwrap();
    assert_eq!(
        d.command.pdu,
        Pdu::SubmitSmResp(MessageIdResp::new("12345"))
    );
    assert!(d.tolerated.contains(Tolerated::MISSING_NUL));

    // enquire_link with two bytes of padding.
    let b = hex("00000012 00000015 00000000 00000002 0000");
    let d = decode_slice(&b).unwrap();
    assert_eq!(d.command.pdu, Pdu::EnquireLink);
    assert_eq!(d.tolerated, Tolerated::TRAILING_BYTES);

    // bind_transmitter with interface_version 0x99 and no address fields at all.
    let b = hex("00000015 00000002 00000000 00000003 6100 00 00 99");
    let d = decode_slice(&b).unwrap();
    let Pdu::BindTransmitter(bind) = &d.command.pdu else {
        panic!()
    };
    assert_eq!(bind.interface_version, 0x99);
    assert!(d.tolerated.contains(Tolerated::UNKNOWN_INTERFACE_VERSION));
    assert!(d.tolerated.contains(Tolerated::MISSING_FIELDS));
}

#[test]
fn sm_length_overrun_with_message_payload() {
    let mut body = hex("00 00 00 3100 00 00 3200 00 00 00 00 00 00 00 08 00 FF");
    body.extend_from_slice(&hex("0424 0004 00480069"));
    let mut b = BytesMut::new();
    b.extend_from_slice(&((16 + body.len()) as u32).to_be_bytes());
    b.extend_from_slice(&hex("00000004 00000000 00000004"));
    b.extend_from_slice(&body);
    let d = decode(b.freeze()).unwrap();
    let Pdu::SubmitSm(sm) = &d.command.pdu else {
        panic!()
    };
    assert!(sm.short_message.is_empty());
    assert_eq!(&sm.payload()[..], &hex("00480069")[..]);
    assert!(d.tolerated.contains(Tolerated::SM_LENGTH_OVERRUN));
}

#[test]
fn errors_say_what_to_answer() {
    // Unknown command id → generic_nack ESME_RINVCMDID with the sequence.
    let b = hex("00000010 00000099 00000000 0000002A");
    let e = decode_slice(&b).unwrap_err();
    let r = e.response().unwrap();
    assert_eq!(r.pdu, Pdu::GenericNack);
    assert_eq!(r.status, CommandStatus::EsmeRinvcmdid);
    assert_eq!(r.sequence, 42);

    // Truncated submit_sm → submit_sm_resp ESME_RINVMSGLEN.
    let b = hex("00000013 00000004 00000000 0000002B 00 01 01");
    let e = decode_slice(&b).unwrap_err();
    let r = e.response().unwrap();
    assert_eq!(r.pdu, Pdu::SubmitSmResp(MessageIdResp::default()));
    assert_eq!(r.status, CommandStatus::EsmeRinvmsglen);
    assert_eq!(r.sequence, 43);
    // The error response encodes with an empty body.
    assert_eq!(r.to_bytes().unwrap().len(), 16);

    // sm_length past the end without message_payload.
    let b = hex(
        "00000024 00000004 00000000 00000001 00 00 00 3100 00 00 3200 00 00 00 00 00 00 00 00 00 05 41",
    );
    let e = decode_slice(&b).unwrap_err();
    assert!(matches!(
        e,
        DecodeError::Body {
            error: BodyError::SmLength {
                sm_length: 5,
                remaining: 1
            },
            ..
        }
    ));

    // Bad length → generic_nack ESME_RINVCMDLEN.
    let b = hex("0000000F 00000015 00000000 00000005");
    let e = decode_slice(&b).unwrap_err();
    let r = e.response().unwrap();
    assert_eq!((r.status, r.sequence), (CommandStatus::EsmeRinvcmdlen, 5));
    let big = hex("00100001 00000004 00000000 00000006");
    let e = check(&big, DEFAULT_MAX_LEN).unwrap_err();
    assert!(matches!(
        e,
        FrameError::TooLong {
            length: 0x0010_0001,
            max: DEFAULT_MAX_LEN,
            sequence: 6
        }
    ));
    assert_eq!(e.response().status, CommandStatus::EsmeRinvcmdlen);

    // A malformed response is not answered.
    let b = hex("00000011 80000021 00000000 00000001 00");
    assert!(decode_slice(&b).is_ok());
    let b = hex("00000013 80000021 00000000 00000001 00 01 01");
    assert!(decode_slice(&b).unwrap_err().response().is_none());
}

#[test]
fn strict_encoding_rejects_what_cannot_be_framed() {
    let nul = Command::request(1, Pdu::SubmitSmResp(MessageIdResp::new(&b"a\0b"[..])));
    assert_eq!(
        nul.to_bytes(),
        Err(EncodeError::NulInCString {
            field: "message_id"
        })
    );
    let long = Command::request(
        1,
        Pdu::SubmitSm(Sm {
            short_message: Octets::from(vec![0u8; 256]),
            ..Sm::default()
        }),
    );
    assert!(matches!(
        long.to_bytes(),
        Err(EncodeError::TooLong {
            field: "short_message",
            ..
        })
    ));
    let mut buf = BytesMut::new();
    assert!(encode(&long, &mut buf).is_err());
    assert!(buf.is_empty(), "a failed encode writes nothing");
}

#[test]
fn code_tables_round_trip_every_value() {
    for v in [0u32, 1, 3, 0x58, 0xC4, 0x112, 0x9999, u32::MAX] {
        assert_eq!(CommandStatus::from_u32(v).to_u32(), v);
    }
    for v in [0x8000_0000u32, 4, 0x8000_0004, 0x103, 0x104, u32::MAX] {
        assert_eq!(CommandId::from_u32(v).to_u32(), v);
    }
    assert_eq!(CommandStatus::from_u32(0x58), CommandStatus::EsmeRthrottled);
    assert_eq!(CommandId::from_u32(0x104), CommandId::Other(0x104));
    assert!(
        CommandStatus::EsmeRthrottled
            .to_string()
            .contains("ESME_RTHROTTLED")
    );
}

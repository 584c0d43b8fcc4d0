//! Differential tests against the independent `rusmpp` 0.4 codec: bytes we encode are
//! decoded by rusmpp, re-encoded by rusmpp, and decoded by us again, for submit_sm,
//! deliver_sm, bind_transceiver and enquire_link; plus commands built with rusmpp's own
//! builders decoded by us.
//!
//! Inputs are limited to what rusmpp's typed fields accept (address ≤ 20 chars, times empty or
//! 16 chars, known message states): that is the overlap in which both must agree.

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use rusmpp::tokio_codec::CommandCodec;
use sluice_protocols::smpp::*;
use tokio_util::codec::{Decoder, Encoder};

fn ascii(max: usize) -> impl Strategy<Value = Octets> {
    vec(0x21u8..0x7F, 0..=max).prop_map(Octets::from)
}

fn time() -> impl Strategy<Value = Octets> {
    prop_oneof![
        Just(Octets::new()),
        "[0-9]{12}[0-9]00[+-]".prop_map(|s| Octets::from(s.into_bytes())),
        "0000[0-9]{8}000R".prop_map(|s| Octets::from(s.into_bytes())),
    ]
}

fn address() -> impl Strategy<Value = Address> {
    (0u8..=6, prop_oneof![Just(0u8), Just(1), Just(8)], ascii(20))
        .prop_map(|(ton, npi, addr)| Address { ton, npi, addr })
}

fn submit_tlvs() -> impl Strategy<Value = Tlvs> {
    (
        any::<Option<u16>>(),
        any::<Option<(u16, u8, u8)>>(),
        vec(any::<u8>(), 0..20),
        any::<bool>(),
    )
        .prop_map(|(umr, sar, payload, with_payload)| {
            let mut t = Tlvs::new();
            if let Some(r) = umr {
                t.push(tlv::tags::USER_MESSAGE_REFERENCE, r.to_be_bytes().to_vec());
            }
            if let Some((r, total, seq)) = sar {
                t.set_sar(r, total, seq);
            }
            if with_payload {
                t.push(tlv::tags::MESSAGE_PAYLOAD, payload);
            }
            t
        })
}

fn deliver_tlvs() -> impl Strategy<Value = Tlvs> {
    (
        proptest::option::of((ascii(64), 1u8..=8)),
        any::<Option<u16>>(),
    )
        .prop_map(|(receipt, umr)| {
            let mut t = Tlvs::new();
            if let Some((id, state)) = receipt {
                t.set_receipted_message_id(&id);
                t.set_message_state(MessageState::from_u8(state));
            }
            if let Some(r) = umr {
                t.push(tlv::tags::USER_MESSAGE_REFERENCE, r.to_be_bytes().to_vec());
            }
            t
        })
}

fn sm(tlvs: BoxedStrategy<Tlvs>) -> impl Strategy<Value = Sm> {
    (
        (ascii(5), address(), address(), any::<u8>(), 0u8..=3),
        (
            time(),
            time(),
            0u8..=1,
            0u8..=1,
            prop_oneof![Just(0u8), Just(3), Just(4), Just(8)],
        ),
        (vec(any::<u8>(), 0..=160), tlvs),
    )
        .prop_map(
            |(
                (service_type, source, dest, protocol_id, priority_flag),
                (s, v, rd, rip, dc),
                (text, tlvs),
            )| Sm {
                service_type,
                source,
                dest,
                esm_class: 0,
                protocol_id,
                priority_flag,
                schedule_delivery_time: s,
                validity_period: v,
                registered_delivery: rd,
                replace_if_present_flag: rip,
                data_coding: dc,
                sm_default_msg_id: 0,
                short_message: Octets::from(text),
                tlvs,
            },
        )
}

fn bind() -> impl Strategy<Value = Bind> {
    (
        ascii(15),
        ascii(8),
        ascii(12),
        prop_oneof![Just(0x34u8), Just(0x50)],
        0u8..=6,
        0u8..=1,
        ascii(40),
    )
        .prop_map(
            |(
                system_id,
                password,
                system_type,
                interface_version,
                addr_ton,
                addr_npi,
                address_range,
            )| Bind {
                system_id,
                password,
                system_type,
                interface_version,
                addr_ton,
                addr_npi,
                address_range,
            },
        )
}

fn command() -> impl Strategy<Value = Command> {
    let pdu = prop_oneof![
        sm(submit_tlvs().boxed()).prop_map(Pdu::SubmitSm),
        sm(deliver_tlvs().boxed()).prop_map(|mut s| {
            s.esm_class = ESM_CLASS_DELIVERY_RECEIPT;
            Pdu::DeliverSm(s)
        }),
        bind().prop_map(Pdu::BindTransceiver),
        Just(Pdu::EnquireLink),
    ];
    (1u32..0x7FFF_FFFF, pdu).prop_map(|(seq, pdu)| Command::request(seq, pdu))
}

fn rusmpp_decode(bytes: &[u8]) -> rusmpp::Command {
    let mut buf = BytesMut::from(bytes);
    let cmd = CommandCodec::new()
        .with_max_length(DEFAULT_MAX_LEN)
        .decode(&mut buf)
        .expect("rusmpp decodes our bytes")
        .expect("one whole PDU");
    assert!(buf.is_empty(), "rusmpp consumed the whole PDU");
    cmd
}

fn rusmpp_encode(cmd: rusmpp::Command) -> Bytes {
    let mut buf = BytesMut::new();
    CommandCodec::new()
        .encode(cmd, &mut buf)
        .expect("rusmpp encodes");
    buf.freeze()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn ours_to_rusmpp_and_back(cmd in command()) {
        let ours = cmd.to_bytes().unwrap();
        let theirs = rusmpp_decode(&ours);
        prop_assert_eq!(theirs.sequence_number(), cmd.sequence);
        prop_assert_eq!(u32::from(theirs.id()), cmd.command_id().to_u32());
        let back = rusmpp_encode(theirs);
        prop_assert_eq!(&back, &ours);
        let d = decode(back).unwrap();
        prop_assert!(d.tolerated.is_empty());
        prop_assert_eq!(d.command, cmd);
    }
}

#[test]
fn rusmpp_builders_decode_with_ours() {
    use rusmpp::pdus::{BindTransceiver, DeliverSm, SubmitSm};
    use rusmpp::types::{COctetString, OctetString};
    use rusmpp::values::{Npi, Ton};

    let submit = SubmitSm::builder()
        .source_addr_ton(Ton::Alphanumeric)
        .source_addr(COctetString::from_static_slice(b"sluice\0").unwrap())
        .dest_addr_ton(Ton::International)
        .dest_addr_npi(Npi::Isdn)
        .destination_addr(COctetString::from_static_slice(b"8613800138000\0").unwrap())
        .short_message(OctetString::from_static_slice(b"hello").unwrap())
        .build();
    let bytes = rusmpp_encode(rusmpp::Command::new(
        rusmpp::CommandStatus::EsmeRok,
        5,
        submit,
    ));
    let d = decode(bytes.clone()).unwrap();
    assert!(d.tolerated.is_empty());
    let Pdu::SubmitSm(sm) = &d.command.pdu else {
        panic!("{:?}", d.command)
    };
    assert_eq!((sm.source.ton, &sm.source.addr[..]), (5, &b"sluice"[..]));
    assert_eq!(
        (sm.dest.ton, sm.dest.npi, &sm.dest.addr[..]),
        (1, 1, &b"8613800138000"[..])
    );
    assert_eq!(&sm.short_message[..], b"hello");
    assert_eq!(d.command.sequence, 5);
    assert_eq!(d.command.to_bytes().unwrap(), bytes);

    let deliver = DeliverSm::builder()
        .source_addr(COctetString::from_static_slice(b"8613800138000\0").unwrap())
        .short_message(OctetString::from_static_slice(b"id:1A2B sub:001 dlvrd:001 submit date:2511260101 done date:2511260102 stat:DELIVRD err:000 text:hi").unwrap())
        .build();
    let bytes = rusmpp_encode(rusmpp::Command::new(
        rusmpp::CommandStatus::EsmeRok,
        6,
        deliver,
    ));
    let d = decode(bytes.clone()).unwrap();
    let Pdu::DeliverSm(sm) = &d.command.pdu else {
        panic!()
    };
    let text = ReceiptText::parse(&sm.short_message);
    assert_eq!(text.id, Some(&b"1A2B"[..]));
    assert_eq!(text.stat, Some(ReceiptStat::Delivered));
    assert_eq!(d.command.to_bytes().unwrap(), bytes);

    let bind = BindTransceiver::builder()
        .system_id(COctetString::from_static_slice(b"esme\0").unwrap())
        .password(COctetString::from_static_slice(b"secret\0").unwrap())
        .build();
    let bytes = rusmpp_encode(rusmpp::Command::new(
        rusmpp::CommandStatus::EsmeRok,
        7,
        bind,
    ));
    let d = decode(bytes.clone()).unwrap();
    let Pdu::BindTransceiver(b) = &d.command.pdu else {
        panic!()
    };
    assert_eq!(
        (&b.system_id[..], &b.password[..]),
        (&b"esme"[..], &b"secret"[..])
    );
    assert_eq!(d.command.to_bytes().unwrap(), bytes);

    let bytes = rusmpp_encode(rusmpp::Command::new(
        rusmpp::CommandStatus::EsmeRok,
        8,
        rusmpp::Pdu::EnquireLink,
    ));
    assert_eq!(
        decode(bytes).unwrap().command,
        Command::request(8, Pdu::EnquireLink)
    );
}

//! Property tests: for every PDU on both versions, decode(encode(x)) == x with nothing
//! tolerated, and the encoded length is what `encoded_len` promised.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use sluice_protocols::cmpp::*;

fn fs<const N: usize>(max: usize) -> impl Strategy<Value = FixedStr<N>> {
    proptest::collection::vec(any::<u8>(), 0..=max).prop_map(|v| FixedStr::<N>::new(&v).unwrap())
}

fn status_value(v: Version) -> impl Strategy<Value = u32> {
    match v {
        Version::V20 => (0u32..=255).boxed(),
        Version::V30 => any::<u32>().boxed(),
    }
}

fn v3_byte(v: Version) -> BoxedStrategy<u8> {
    match v {
        Version::V20 => Just(0u8).boxed(),
        Version::V30 => any::<u8>().boxed(),
    }
}

fn v3_link_id(v: Version) -> BoxedStrategy<FixedStr<20>> {
    match v {
        Version::V20 => Just(FixedStr::EMPTY).boxed(),
        Version::V30 => fs::<20>(20).boxed(),
    }
}

fn content() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..=255).prop_map(Bytes::from)
}

fn submit(v: Version) -> impl Strategy<Value = Submit> {
    let tid = v.terminal_id_len();
    (
        (
            any::<u64>(),
            any::<u8>(),
            any::<u8>(),
            any::<u8>(),
            any::<u8>(),
        ),
        (
            fs::<10>(10),
            any::<u8>(),
            fs::<32>(tid),
            v3_byte(v),
            any::<u8>(),
            any::<u8>(),
        ),
        (
            any::<u8>(),
            fs::<6>(6),
            fs::<2>(2),
            fs::<6>(6),
            fs::<17>(17),
            fs::<17>(17),
        ),
        (
            fs::<21>(21),
            proptest::collection::vec(fs::<32>(tid), 1..=MAX_DESTINATIONS),
            v3_byte(v),
            content(),
            v3_link_id(v),
        ),
    )
        .prop_map(
            |(
                (msg_id, pk_total, pk_number, registered_delivery, msg_level),
                (service_id, fee_user_type, fee_terminal_id, fee_terminal_type, tp_pid, tp_udhi),
                (fmt, msg_src, fee_type, fee_code, valid_time, at_time),
                (src_id, dest_terminal_ids, dest_terminal_type, msg_content, link_id),
            )| Submit {
                msg_id: MsgId(msg_id),
                pk_total,
                pk_number,
                registered_delivery,
                msg_level,
                service_id,
                fee_user_type,
                fee_terminal_id,
                fee_terminal_type,
                tp_pid,
                tp_udhi,
                msg_fmt: MsgFmt::from_raw(fmt),
                msg_src,
                fee_type,
                fee_code,
                valid_time,
                at_time,
                src_id,
                dest_terminal_ids,
                dest_terminal_type,
                msg_content,
                link_id,
            },
        )
}

fn report(v: Version) -> impl Strategy<Value = StatusReport> {
    (
        any::<u64>(),
        fs::<7>(7),
        fs::<10>(10),
        fs::<10>(10),
        fs::<32>(v.terminal_id_len()),
        any::<u32>(),
    )
        .prop_map(
            |(msg_id, stat, submit_time, done_time, dest_terminal_id, smsc_sequence)| {
                StatusReport {
                    msg_id: MsgId(msg_id),
                    stat,
                    submit_time,
                    done_time,
                    dest_terminal_id,
                    smsc_sequence,
                }
            },
        )
}

fn deliver(v: Version) -> impl Strategy<Value = Deliver> {
    let body = prop_oneof![
        content().prop_map(DeliverContent::Message),
        report(v).prop_map(DeliverContent::Report),
    ];
    (
        (
            any::<u64>(),
            fs::<21>(21),
            fs::<10>(10),
            any::<u8>(),
            any::<u8>(),
        ),
        (
            any::<u8>(),
            fs::<32>(v.terminal_id_len()),
            v3_byte(v),
            body,
            v3_link_id(v),
        ),
    )
        .prop_map(
            |(
                (msg_id, dest_id, service_id, tp_pid, tp_udhi),
                (fmt, src_terminal_id, src_terminal_type, content, link_id),
            )| Deliver {
                msg_id: MsgId(msg_id),
                dest_id,
                service_id,
                tp_pid,
                tp_udhi,
                msg_fmt: MsgFmt::from_raw(fmt),
                src_terminal_id,
                src_terminal_type,
                content,
                link_id,
            },
        )
}

fn pdu(v: Version) -> impl Strategy<Value = Pdu> {
    let version_byte = prop_oneof![Just(0x20u8), Just(0x30u8)];
    prop_oneof![
        (
            fs::<6>(6),
            any::<[u8; 16]>(),
            version_byte.clone(),
            any::<u32>()
        )
            .prop_map(|(source_addr, authenticator_source, version, timestamp)| {
                Pdu::Connect(Connect {
                    source_addr,
                    authenticator_source,
                    version,
                    timestamp,
                })
            }),
        (status_value(v), any::<[u8; 16]>(), version_byte).prop_map(|(s, a, version)| {
            Pdu::ConnectResp(ConnectResp {
                status: ConnectStatus::from_raw(s),
                authenticator_ismg: a,
                version,
            })
        }),
        Just(Pdu::Terminate),
        Just(Pdu::TerminateResp),
        submit(v).prop_map(|s| Pdu::Submit(Box::new(s))),
        (any::<u64>(), status_value(v)).prop_map(|(m, r)| Pdu::SubmitResp(SubmitResp {
            msg_id: MsgId(m),
            result: ResultCode::from_raw(r),
        })),
        deliver(v).prop_map(|d| Pdu::Deliver(Box::new(d))),
        (any::<u64>(), status_value(v)).prop_map(|(m, r)| Pdu::DeliverResp(DeliverResp {
            msg_id: MsgId(m),
            result: ResultCode::from_raw(r),
        })),
        (fs::<8>(8), any::<u8>(), fs::<10>(10)).prop_map(|(time, query_type, query_code)| {
            Pdu::Query(Query {
                time,
                query_type,
                query_code,
            })
        }),
        (fs::<8>(8), any::<u8>(), fs::<10>(10), any::<[u32; 8]>()).prop_map(|(time, qt, qc, c)| {
            Pdu::QueryResp(QueryResp {
                time,
                query_type: qt,
                query_code: qc,
                mt_tl_msg: c[0],
                mt_tl_usr: c[1],
                mt_scs: c[2],
                mt_wt: c[3],
                mt_fl: c[4],
                mo_scs: c[5],
                mo_wt: c[6],
                mo_fl: c[7],
            })
        }),
        any::<u64>().prop_map(|m| Pdu::Cancel(Cancel { msg_id: MsgId(m) })),
        status_value(v).prop_map(|success_id| Pdu::CancelResp(CancelResp { success_id })),
        Just(Pdu::ActiveTest),
        any::<u8>().prop_map(|reserved| Pdu::ActiveTestResp(ActiveTestResp { reserved })),
    ]
}

fn round_trip(p: &Pdu, seq: u32, v: Version) -> Result<(), TestCaseError> {
    let mut buf = BytesMut::new();
    p.encode(seq, v, &mut buf)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(buf.len(), p.encoded_len(v).unwrap());
    if let Pdu::Submit(s) = p {
        // A SUBMIT checked on its own (a sender validating its parts) agrees with the frame.
        prop_assert_eq!(s.encoded_len(v).unwrap(), buf.len());
    }
    let bytes = buf.freeze();
    let d = decode_bytes(&bytes, v, u32::MAX).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(d.header.sequence_id, seq);
    prop_assert_eq!(d.header.command_id, p.command_id());
    prop_assert_eq!(d.header.total_length as usize, bytes.len());
    prop_assert!(d.tolerated.is_empty(), "tolerated {}", d.tolerated);
    prop_assert_eq!(&d.pdu, p);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn every_pdu_round_trips_v20(p in pdu(Version::V20), seq in any::<u32>()) {
        round_trip(&p, seq, Version::V20)?;
    }

    #[test]
    fn every_pdu_round_trips_v30(p in pdu(Version::V30), seq in any::<u32>()) {
        round_trip(&p, seq, Version::V30)?;
    }

    /// A 3.0-width terminal id on a 2.0 link is refused, never truncated.
    #[test]
    fn wide_terminal_ids_are_refused_on_v20(mut s in submit(Version::V30)) {
        s.fee_terminal_type = 0;
        s.dest_terminal_type = 0;
        s.link_id = FixedStr::EMPTY;
        let too_wide = FixedStr::<32>::new(&[b'1'; 22]).unwrap();
        s.dest_terminal_ids[0] = too_wide;
        let p = Pdu::Submit(Box::new(s));
        let mut buf = BytesMut::new();
        let err = p.encode(1, Version::V20, &mut buf).unwrap_err();
        let is_too_long = matches!(err, EncodeError::TooLong { .. });
        prop_assert!(is_too_long);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn msg_id_parts_round_trip(
        month in 1u8..=12, day in 1u8..=31, hour in 0u8..=23, minute in 0u8..=59,
        second in 0u8..=59, gateway in 0u32..(1 << 22), sequence in any::<u16>(),
    ) {
        let parts = MsgIdParts { month, day, hour, minute, second, gateway, sequence };
        let id = MsgId::from_parts(parts).unwrap();
        prop_assert_eq!(id.parts(), parts);
        prop_assert_eq!(MsgId::parse_readable(&id.to_readable()).unwrap(), id);
        prop_assert_eq!(id.to_readable().parse::<MsgId>().unwrap(), id);
        prop_assert_eq!(id.to_string().parse::<MsgId>().unwrap(), id);
        prop_assert_eq!(id.to_padded_decimal().parse::<MsgId>().unwrap(), id);
        prop_assert_eq!(id.to_padded_decimal().len(), 20);
    }
}

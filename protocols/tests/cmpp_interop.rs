//! Interop with the `cmppprotocol` crate (CMPP 2.0, client side only), our 2.0 oracle.
//!
//! 1. Byte level: their encoder → our decoder (CONNECT, SUBMIT, DELIVER MO + report,
//!    ACTIVE_TEST, TERMINATE) and our encoder → their decoder (CONNECT, SUBMIT,
//!    CONNECT_RESP, SUBMIT_RESP, DELIVER MO + report, DELIVER_RESP, ACTIVE_TEST_RESP),
//!    asserting field values on both sides.
//! 2. Socket level: their `CmppConnection` client logs in, submits, receives a DELIVER MO
//!    and a status report, answers ACTIVE_TEST and terminates against a tiny ISMG here on
//!    127.0.0.1 that uses only our sans-IO decoder and encoder. Their client verifies our
//!    AuthenticatorISMG, so a wrong digest fails the login.
//!
//! The crate is a Rust dev-dependency, so it is always present (no skip path needed).
//! It has no 3.0 support, so 3.0 layouts are checked only against the hand-assembled
//! examples in `cmpp_spec.rs`.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use cmppprotocol as peer;
use sluice_protocols::cmpp::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const V: Version = Version::V20;
const SECRET: &str = "s3cret!";

fn fs<const N: usize>(s: &str) -> FixedStr<N> {
    FixedStr::new(s.as_bytes()).unwrap()
}

fn ours(bytes: &[u8]) -> Decoded {
    decode_bytes(&Bytes::copy_from_slice(bytes), V, DEFAULT_MAX_LENGTH).unwrap()
}

fn theirs(bytes: &[u8]) -> peer::Pdu {
    let word = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap());
    let header = peer::CmppHeader {
        total_length: word(0),
        command_id: word(4),
        sequence_id: word(8),
    };
    assert_eq!(header.total_length as usize, bytes.len());
    peer::Pdu::decode(header, &bytes[12..]).unwrap()
}

fn msg_id() -> MsgId {
    MsgId::from_parts(MsgIdParts {
        month: 11,
        day: 26,
        hour: 2,
        minute: 3,
        second: 4,
        gateway: 100_001,
        sequence: 42,
    })
    .unwrap()
}

fn report_deliver() -> Deliver {
    Deliver {
        msg_id: MsgId(0x0102_0304_0506_0708),
        dest_id: fs("10690001"),
        service_id: fs("SVC"),
        src_terminal_id: fs("13800138000"),
        content: DeliverContent::Report(StatusReport {
            msg_id: msg_id(),
            stat: fs("DELIVRD"),
            submit_time: fs("2611260203"),
            done_time: fs("2611260204"),
            dest_terminal_id: fs("13800138000"),
            smsc_sequence: 4242,
        }),
        ..Deliver::default()
    }
}

fn mo_deliver() -> Deliver {
    Deliver {
        msg_id: MsgId(0x1111_2222_3333_4444),
        dest_id: fs("1069000188"),
        service_id: fs("SVC"),
        msg_fmt: MsgFmt::Ucs2,
        src_terminal_id: fs("13900139000"),
        content: DeliverContent::Message(Bytes::from_static(&[0x4F, 0x60, 0x59, 0x7D])),
        ..Deliver::default()
    }
}

#[test]
fn their_requests_decode_here() {
    // CONNECT with a fixed timestamp: their authenticator must equal ours.
    let ts = 1_126_020_304;
    let their_auth = peer::compute_authenticator_source("901234", SECRET, ts);
    assert_eq!(
        their_auth,
        auth::authenticator_source(b"901234", SECRET.as_bytes(), ts)
    );
    let connect = peer::Connect {
        source_addr: "901234".into(),
        authenticator_source: their_auth,
        version: peer::CMPP_VERSION_20,
        timestamp: ts,
    };
    let d = ours(&peer::Pdu::Connect(connect).encode(3));
    assert_eq!(d.header.sequence_id, 3);
    assert!(d.tolerated.is_empty());
    let Pdu::Connect(c) = d.pdu else {
        panic!("{:?}", d.pdu)
    };
    assert_eq!(c.source_addr.as_str(), Some("901234"));
    assert_eq!((c.version, c.timestamp), (0x20, ts));
    assert!(auth::verify_source(
        c.source_addr.as_bytes(),
        SECRET.as_bytes(),
        c.timestamp,
        &c.authenticator_source
    ));

    // SUBMIT built by their options helper (UCS-2 text, two destinations).
    let opts = peer::SubmitOptions::new("SVC", "901234", "10690001", "13800138000")
        .dest_terminal_ids(vec!["13800138000".into(), "13900139000".into()])
        .fee(2, "02", "000010");
    let submits = opts.build_submits("你好");
    assert_eq!(submits.len(), 1);
    let d = ours(&peer::Pdu::Submit(Box::new(submits[0].clone())).encode(4));
    assert!(d.tolerated.is_empty(), "{}", d.tolerated);
    let Pdu::Submit(s) = d.pdu else { panic!() };
    assert_eq!((s.pk_total, s.pk_number, s.registered_delivery), (1, 1, 1));
    assert_eq!(s.service_id.as_str(), Some("SVC"));
    assert_eq!(s.msg_src.as_str(), Some("901234"));
    assert_eq!(s.src_id.as_str(), Some("10690001"));
    assert_eq!(
        (s.fee_user_type, s.fee_type.as_str(), s.fee_code.as_str()),
        (2, Some("02"), Some("000010"))
    );
    assert_eq!(
        s.dest_terminal_ids,
        vec![fs("13800138000"), fs("13900139000")]
    );
    assert_eq!(s.msg_fmt, MsgFmt::Ucs2);
    assert_eq!(&s.msg_content[..], &[0x4F, 0x60, 0x59, 0x7D]);

    // A long message: their UDH split arrives as tp_udhi = 1 parts.
    let parts = opts.build_submits(&"长".repeat(80));
    assert!(parts.len() > 1);
    for (i, part) in parts.iter().enumerate() {
        let d = ours(&peer::Pdu::Submit(Box::new(part.clone())).encode(10 + i as u32));
        let Pdu::Submit(s) = d.pdu else { panic!() };
        assert_eq!(
            (s.tp_udhi, s.pk_number as usize, s.pk_total as usize),
            (1, i + 1, parts.len())
        );
        assert_eq!(&s.msg_content[..], &part.msg_content[..]);
    }

    // DELIVER (an ISMG would send it; their encoder is the oracle for the layout).
    let mut report = 0x0102_0304_0506_0708u64.to_be_bytes().to_vec();
    report.extend_from_slice(b"EXPIRED2611260203261126020413800138000");
    report.extend_from_slice(&[0; 10]); // rest of the 21-byte terminal id
    report.extend_from_slice(&7u32.to_be_bytes());
    assert_eq!(report.len(), 60);
    let their_deliver = peer::Deliver {
        msg_id: [9; 8],
        dest_id: "10690001".into(),
        service_id: "SVC".into(),
        tp_pid: 0,
        tp_udhi: 0,
        msg_fmt: 0,
        src_terminal_id: "13800138000".into(),
        registered_delivery: 1,
        msg_content: report,
    };
    let d = ours(&peer::Pdu::Deliver(their_deliver.clone()).encode(5));
    let Pdu::Deliver(dl) = d.pdu else { panic!() };
    assert_eq!(dl.msg_id, MsgId(u64::from_be_bytes([9; 8])));
    let r = dl.report().expect("status report");
    assert_eq!(r.msg_id, MsgId(0x0102_0304_0506_0708));
    assert_eq!(r.stat.as_str(), Some("EXPIRED"));
    assert!(!r.is_delivered());
    assert_eq!(
        (r.submit_time.as_str(), r.done_time.as_str()),
        (Some("2611260203"), Some("2611260204"))
    );
    assert_eq!(r.dest_terminal_id.as_str(), Some("13800138000"));
    assert_eq!(r.smsc_sequence, 7);

    let mo = peer::Deliver {
        registered_delivery: 0,
        msg_fmt: 15,
        msg_content: vec![0xC4, 0xE3],
        ..their_deliver
    };
    let d = ours(&peer::Pdu::Deliver(mo).encode(6));
    let Pdu::Deliver(dl) = d.pdu else { panic!() };
    assert_eq!(dl.msg_fmt, MsgFmt::Gbk);
    assert_eq!(
        dl.content,
        DeliverContent::Message(Bytes::from_static(&[0xC4, 0xE3]))
    );

    assert_eq!(ours(&peer::Pdu::ActiveTest.encode(7)).pdu, Pdu::ActiveTest);
    assert_eq!(
        ours(&peer::Pdu::ActiveTestResp.encode(8)).pdu,
        Pdu::ActiveTestResp(ActiveTestResp { reserved: 0 })
    );
    assert_eq!(ours(&peer::Pdu::Terminate.encode(9)).pdu, Pdu::Terminate);
    assert_eq!(
        ours(&peer::Pdu::TerminateResp.encode(10)).pdu,
        Pdu::TerminateResp
    );
}

#[test]
fn our_responses_and_delivers_decode_there() {
    let auth_src = auth::authenticator_source(b"901234", SECRET.as_bytes(), 1_126_020_304);
    let ismg = auth::authenticator_ismg(V, ConnectStatus::Ok, &auth_src, SECRET.as_bytes());
    let resp = Pdu::ConnectResp(ConnectResp {
        status: ConnectStatus::Ok,
        authenticator_ismg: ismg,
        version: 0x20,
    });
    let peer::Pdu::ConnectResp(c) = theirs(&resp.to_bytes(1, V).unwrap()) else {
        panic!()
    };
    assert_eq!((c.status, c.version), (0, 0x20));
    assert_eq!(
        c.authenticator_ismg,
        peer::compute_authenticator_ismg(0, &auth_src, SECRET)
    );

    let refused = Pdu::ConnectResp(ConnectResp {
        status: ConnectStatus::AuthenticationError,
        authenticator_ismg: [0; 16],
        version: 0x20,
    });
    let peer::Pdu::ConnectResp(c) = theirs(&refused.to_bytes(1, V).unwrap()) else {
        panic!()
    };
    assert_eq!(c.status, 3);

    let sr = Pdu::SubmitResp(SubmitResp {
        msg_id: msg_id(),
        result: ResultCode::FlowControl,
    });
    let peer::Pdu::SubmitResp(s) = theirs(&sr.to_bytes(2, V).unwrap()) else {
        panic!()
    };
    assert_eq!(s.msg_id, msg_id().0.to_be_bytes());
    assert_eq!(s.result, 8);

    let peer::Pdu::Deliver(d) = theirs(
        &Pdu::Deliver(Box::new(report_deliver()))
            .to_bytes(3, V)
            .unwrap(),
    ) else {
        panic!()
    };
    assert_eq!(d.registered_delivery, 1);
    assert_eq!(d.msg_id, 0x0102_0304_0506_0708u64.to_be_bytes());
    assert_eq!(
        (d.dest_id.as_str(), d.service_id.as_str()),
        ("10690001", "SVC")
    );
    let r = d.report().expect("their parser sees a report");
    assert_eq!(r.msg_id, msg_id().0.to_be_bytes());
    assert_eq!(r.stat, "DELIVRD");
    assert_eq!(
        (r.submit_time.as_str(), r.done_time.as_str()),
        ("2611260203", "2611260204")
    );
    assert_eq!(r.dest_terminal_id, "13800138000");
    assert_eq!(r.smsc_sequence, 4242);

    let peer::Pdu::Deliver(d) =
        theirs(&Pdu::Deliver(Box::new(mo_deliver())).to_bytes(4, V).unwrap())
    else {
        panic!()
    };
    assert_eq!((d.registered_delivery, d.msg_fmt), (0, 8));
    assert_eq!(d.src_terminal_id, "13900139000");
    assert_eq!(d.msg_content, vec![0x4F, 0x60, 0x59, 0x7D]);
    assert_eq!(
        peer::decode_msg_content(d.msg_fmt, d.tp_udhi, &d.msg_content),
        "你好"
    );

    let dr = Pdu::DeliverResp(DeliverResp {
        msg_id: MsgId(77),
        result: ResultCode::Success,
    });
    let peer::Pdu::DeliverResp(r) = theirs(&dr.to_bytes(5, V).unwrap()) else {
        panic!()
    };
    assert_eq!((r.msg_id, r.result), (77u64.to_be_bytes(), 0));
    assert_eq!(
        theirs(
            &Pdu::ActiveTestResp(ActiveTestResp::default())
                .to_bytes(6, V)
                .unwrap()
        ),
        peer::Pdu::ActiveTestResp
    );
    assert_eq!(
        theirs(&Pdu::ActiveTest.to_bytes(7, V).unwrap()),
        peer::Pdu::ActiveTest
    );
    assert_eq!(
        theirs(&Pdu::TerminateResp.to_bytes(8, V).unwrap()),
        peer::Pdu::TerminateResp
    );
}

#[test]
fn our_requests_decode_there() {
    let ts = 1_126_020_304;
    let connect = Pdu::Connect(Connect::new(fs("901234"), SECRET.as_bytes(), V, ts));
    let peer::Pdu::Connect(c) = theirs(&connect.to_bytes(1, V).unwrap()) else {
        panic!()
    };
    assert_eq!(
        (c.source_addr.as_str(), c.version, c.timestamp),
        ("901234", 0x20, ts)
    );
    assert_eq!(
        c.authenticator_source,
        peer::compute_authenticator_source("901234", SECRET, ts)
    );

    let submit = Submit {
        pk_total: 2,
        pk_number: 1,
        registered_delivery: 1,
        service_id: fs("SVC"),
        fee_user_type: 2,
        tp_udhi: 1,
        msg_fmt: MsgFmt::Ucs2,
        msg_src: fs("901234"),
        fee_type: fs("02"),
        fee_code: fs("000010"),
        valid_time: fs("261127020304032+"),
        src_id: fs("10690001"),
        dest_terminal_ids: vec![fs("13800138000"), fs("13900139000")],
        msg_content: Bytes::from_static(&[0x05, 0x00, 0x03, 0x2A, 0x02, 0x01, 0x4F, 0x60]),
        ..Submit::default()
    };
    let peer::Pdu::Submit(s) = theirs(&Pdu::Submit(Box::new(submit)).to_bytes(2, V).unwrap())
    else {
        panic!()
    };
    assert_eq!(
        (
            s.pk_total,
            s.pk_number,
            s.registered_delivery,
            s.tp_udhi,
            s.msg_fmt
        ),
        (2, 1, 1, 1, 8)
    );
    assert_eq!(
        (s.service_id.as_str(), s.msg_src.as_str(), s.src_id.as_str()),
        ("SVC", "901234", "10690001")
    );
    assert_eq!(
        (s.fee_user_type, s.fee_type.as_str(), s.fee_code.as_str()),
        (2, "02", "000010")
    );
    assert_eq!(s.valid_time, "261127020304032+");
    assert_eq!(
        s.dest_terminal_ids,
        vec!["13800138000".to_string(), "13900139000".to_string()]
    );
    assert_eq!(
        s.msg_content,
        vec![0x05, 0x00, 0x03, 0x2A, 0x02, 0x01, 0x4F, 0x60]
    );
}

/// What the in-test ISMG saw, in order.
#[derive(Debug)]
enum Seen {
    Connect(Connect),
    Submit(Box<Submit>),
    DeliverResp(DeliverResp),
    ActiveTestFromClient,
    ActiveTestResp,
    Terminate,
}

async fn send(sock: &mut TcpStream, seq: u32, pdu: Pdu) {
    let mut out = BytesMut::new();
    pdu.encode(seq, V, &mut out).unwrap();
    // The client may already be gone after TERMINATE; that is not the codec's concern.
    let _ = sock.write_all(&out).await;
}

/// A minimal ISMG built on the sans-IO codec only.
async fn ismg(listener: TcpListener, seen: mpsc::UnboundedSender<Seen>) {
    let (mut sock, _) = listener.accept().await.unwrap();
    let mut buf = BytesMut::new();
    let mut deliver_resps = 0;
    loop {
        while let Some(item) = decode_frame(&mut buf, V, DEFAULT_MAX_LENGTH).unwrap() {
            let d = item.unwrap();
            assert!(d.tolerated.is_empty(), "{:?}: {}", d.header, d.tolerated);
            let seq = d.header.sequence_id;
            match d.pdu {
                Pdu::Connect(c) => {
                    let ok = auth::verify_source(
                        c.source_addr.as_bytes(),
                        SECRET.as_bytes(),
                        c.timestamp,
                        &c.authenticator_source,
                    );
                    let status = if ok {
                        ConnectStatus::Ok
                    } else {
                        ConnectStatus::AuthenticationError
                    };
                    let ismg = auth::authenticator_ismg(
                        V,
                        status,
                        &c.authenticator_source,
                        SECRET.as_bytes(),
                    );
                    send(
                        &mut sock,
                        seq,
                        Pdu::ConnectResp(ConnectResp {
                            status,
                            authenticator_ismg: ismg,
                            version: V.byte(),
                        }),
                    )
                    .await;
                    seen.send(Seen::Connect(c)).unwrap();
                }
                Pdu::Submit(s) => {
                    send(
                        &mut sock,
                        seq,
                        Pdu::SubmitResp(SubmitResp {
                            msg_id: msg_id(),
                            result: ResultCode::Success,
                        }),
                    )
                    .await;
                    send(&mut sock, 1000, Pdu::Deliver(Box::new(mo_deliver()))).await;
                    send(&mut sock, 1001, Pdu::Deliver(Box::new(report_deliver()))).await;
                    seen.send(Seen::Submit(s)).unwrap();
                }
                Pdu::DeliverResp(r) => {
                    seen.send(Seen::DeliverResp(r)).unwrap();
                    deliver_resps += 1;
                    if deliver_resps == 2 {
                        send(&mut sock, 1002, Pdu::ActiveTest).await;
                    }
                }
                Pdu::ActiveTest => {
                    send(
                        &mut sock,
                        seq,
                        Pdu::ActiveTestResp(ActiveTestResp::default()),
                    )
                    .await;
                    seen.send(Seen::ActiveTestFromClient).unwrap();
                }
                Pdu::ActiveTestResp(_) => {
                    assert_eq!(seq, 1002);
                    seen.send(Seen::ActiveTestResp).unwrap();
                }
                Pdu::Terminate => {
                    send(&mut sock, seq, Pdu::TerminateResp).await;
                    seen.send(Seen::Terminate).unwrap();
                    return;
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        if sock.read_buf(&mut buf).await.unwrap() == 0 {
            return;
        }
    }
}

async fn session() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let server = tokio::spawn(ismg(listener, seen_tx));

    let config = peer::CmppConfig {
        host: "127.0.0.1".into(),
        port: i32::from(port),
        account: "901234".into(),
        password: SECRET.into(),
        version: peer::CMPP_VERSION_20,
        protocol_params: peer::CmppProtocolParams::default(),
    };
    // Their connect() only returns after verifying our AuthenticatorISMG.
    let conn = peer::CmppConnection::connect(config)
        .await
        .expect("login against our ISMG");
    let mut events = conn.take_events().await.unwrap();
    let opts = peer::SubmitOptions::new("SVC", "901234", "10690001", "13800138000");
    let seqs = conn.submit(&opts, "Hello sluice", None).await.unwrap();
    assert_eq!(seqs.len(), 1);

    let mut submit_resp = None;
    let mut delivers = Vec::new();
    while submit_resp.is_none() || delivers.len() < 2 {
        match events.recv().await.expect("event") {
            peer::Event::SubmitResp {
                sequence_id,
                msg_id,
                result,
            } => {
                submit_resp = Some((sequence_id, msg_id, result));
            }
            peer::Event::Deliver(d) => delivers.push(d),
            other => panic!("unexpected event {other:?}"),
        }
    }
    assert_eq!(submit_resp, Some((seqs[0], msg_id().0.to_be_bytes(), 0)));
    assert_eq!(delivers[0].src_terminal_id, "13900139000");
    assert_eq!(
        peer::decode_msg_content(
            delivers[0].msg_fmt,
            delivers[0].tp_udhi,
            &delivers[0].msg_content
        ),
        "你好"
    );
    let report = delivers[1].report().expect("report");
    assert_eq!(
        (report.msg_id, report.stat.as_str()),
        (msg_id().0.to_be_bytes(), "DELIVRD")
    );

    // Wait until the ISMG has seen the client's answer to its ACTIVE_TEST, then hang up.
    let mut log = Vec::new();
    loop {
        let s = seen.recv().await.expect("ismg alive");
        let done = matches!(s, Seen::ActiveTestResp);
        log.push(s);
        if done {
            break;
        }
    }
    conn.close().await;
    server.await.unwrap();
    while let Ok(s) = seen.try_recv() {
        log.push(s);
    }

    let Seen::Connect(c) = &log[0] else {
        panic!("{log:?}")
    };
    assert_eq!((c.source_addr.as_str(), c.version), (Some("901234"), 0x20));
    let submit = log
        .iter()
        .find_map(|s| match s {
            Seen::Submit(s) => Some(s),
            _ => None,
        })
        .unwrap();
    assert_eq!(submit.dest_terminal_ids, vec![fs("13800138000")]);
    assert_eq!(
        (submit.msg_fmt, &submit.msg_content[..]),
        (MsgFmt::Ascii, &b"Hello sluice"[..])
    );
    assert_eq!(submit.src_id.as_str(), Some("10690001"));
    let resps: Vec<_> = log
        .iter()
        .filter_map(|s| match s {
            Seen::DeliverResp(r) => Some(*r),
            _ => None,
        })
        .collect();
    assert_eq!(
        resps,
        vec![
            DeliverResp {
                msg_id: mo_deliver().msg_id,
                result: ResultCode::Success
            },
            DeliverResp {
                msg_id: report_deliver().msg_id,
                result: ResultCode::Success
            },
        ]
    );
    // Their heartbeat fires at connect, so the ISMG answered at least one ACTIVE_TEST.
    assert!(
        log.iter().any(|s| matches!(s, Seen::ActiveTestFromClient)),
        "{log:?}"
    );
    assert!(matches!(log.last(), Some(Seen::Terminate)), "{log:?}");
}

#[tokio::test]
async fn their_client_against_our_ismg_over_tcp() {
    // A hang guard only: the exchange is event-driven and takes milliseconds.
    tokio::time::timeout(Duration::from_secs(60), session())
        .await
        .expect("session stalled");
}

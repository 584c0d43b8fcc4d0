//! Wire-level tests of the simulator with a raw socket: bind rules, garbage handling,
//! window, CMPP 3.0, MO generation.

use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{SimHandle, Simulator};
use crate::config::{Account, ListenerConfig, MoConfig, Protocol, SimConfig};
use crate::dist::Delay;
use sluice_protocols::cmpp::{
    self as cm, ConnectStatus, DeliverContent, FixedStr, MsgFmt, ResultCode, Version, auth,
};
use sluice_protocols::smpp::{
    self as p, Address, Bind, Command, CommandStatus as St, MessageIdResp, Octets, Pdu, Sm,
};

const BIND_TRANSMITTER: u32 = 0x2;
const BIND_RECEIVER: u32 = 0x1;
const BIND_TRANSCEIVER: u32 = 0x9;
const RESP: u32 = 0x8000_0000;
const SUBMIT_SM: u32 = 0x4;
const DELIVER_SM: u32 = 0x5;
const UNBIND: u32 = 0x6;
const ENQUIRE_LINK: u32 = 0x15;
const GENERIC_NACK: u32 = 0x8000_0000;

fn enc(c: Command) -> BytesMut {
    let mut b = BytesMut::new();
    c.encode(&mut b).unwrap();
    b
}

async fn sim(l: ListenerConfig) -> SimHandle {
    Simulator::start(SimConfig {
        listeners: vec![l],
        seed: Some(1),
        ..Default::default()
    })
    .await
    .unwrap()
}

fn accounts() -> Vec<Account> {
    vec![Account {
        system_id: "esme".into(),
        password: "pw".into(),
        max_binds: 2,
    }]
}

/// Reads SMPP PDUs until `n` arrived (or 2 s passed): (id, status, seq, command).
async fn read_smpp(
    s: &mut TcpStream,
    buf: &mut BytesMut,
    n: usize,
) -> Vec<(u32, u32, u32, Command)> {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            while let Ok(Some(len)) = p::check(buf, p::DEFAULT_MAX_LEN) {
                let c = p::decode(buf.split_to(len).freeze()).unwrap().command;
                out.push((
                    c.pdu.command_id().to_u32(),
                    c.status.to_u32(),
                    c.sequence,
                    c,
                ));
                if out.len() == n {
                    return;
                }
            }
            if s.read_buf(buf).await.unwrap_or(0) == 0 {
                return;
            }
        }
    })
    .await;
    out
}

async fn bind(addr: std::net::SocketAddr, id: u32, pw: &str) -> (TcpStream, BytesMut, u32) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&bind_pdu(id, 1, "esme", pw)).await.unwrap();
    let mut r = BytesMut::new();
    let got = read_smpp(&mut s, &mut r, 1).await;
    assert_eq!(got[0].0, id | RESP);
    (s, r, got[0].1)
}

fn bind_pdu(id: u32, seq: u32, system_id: &str, pw: &str) -> BytesMut {
    let b = Bind {
        system_id: Octets::from(system_id),
        password: Octets::from(pw),
        ..Bind::default()
    };
    let pdu = match id {
        BIND_RECEIVER => Pdu::BindReceiver(b),
        BIND_TRANSCEIVER => Pdu::BindTransceiver(b),
        _ => Pdu::BindTransmitter(b),
    };
    enc(Command::new(St::EsmeRok, seq, pdu))
}

fn submit(seq: u32, text: &[u8], rd: u8) -> BytesMut {
    let sm = Sm {
        source: Address::new(1, 1, Octets::from("1065")),
        dest: Address::new(1, 1, Octets::from("8613800000001")),
        short_message: Octets::copy_from_slice(text),
        registered_delivery: rd,
        ..Sm::default()
    };
    enc(Command::new(St::EsmeRok, seq, Pdu::SubmitSm(sm)))
}

fn empty(id: u32, seq: u32) -> BytesMut {
    let mut b = BytesMut::new();
    for v in [16u32, id, 0, seq] {
        b.extend_from_slice(&v.to_be_bytes());
    }
    b
}

#[tokio::test]
async fn bind_rules() {
    let h = sim(ListenerConfig {
        accounts: accounts(),
        ..Default::default()
    })
    .await;
    let a = h.addrs()[0];
    assert_eq!(bind(a, BIND_TRANSMITTER, "bad").await.2, 0xE);
    let (mut s1, mut r1, st) = bind(a, BIND_TRANSCEIVER, "pw").await;
    assert_eq!(st, 0);
    let (_s2, _, st) = bind(a, BIND_RECEIVER, "pw").await;
    assert_eq!(st, 0);
    assert_eq!(
        bind(a, BIND_TRANSMITTER, "pw").await.2,
        0xD,
        "max_binds = 2"
    );
    // Second bind on the same session.
    s1.write_all(&bind_pdu(BIND_TRANSMITTER, 2, "esme", "pw"))
        .await
        .unwrap();
    assert_eq!(read_smpp(&mut s1, &mut r1, 1).await[0].1, 0x5);
    // Unknown system_id.
    let mut s = TcpStream::connect(a).await.unwrap();
    s.write_all(&bind_pdu(BIND_TRANSMITTER, 1, "who", "pw"))
        .await
        .unwrap();
    let mut r = BytesMut::new();
    assert_eq!(read_smpp(&mut s, &mut r, 1).await[0].1, 0xF);
    let t = h.shutdown().await.unwrap();
    assert_eq!((t.binds, t.bind_failures), (2, 3));
}

#[tokio::test]
async fn submit_needs_a_transmitting_bind_and_garbage_gets_generic_nack() {
    let h = sim(ListenerConfig::default()).await;
    let a = h.addrs()[0];
    // Not bound yet.
    let mut s = TcpStream::connect(a).await.unwrap();
    s.write_all(&submit(5, b"x", 0)).await.unwrap();
    let mut r = BytesMut::new();
    let got = read_smpp(&mut s, &mut r, 1).await;
    assert_eq!((got[0].0, got[0].1, got[0].2), (SUBMIT_SM | RESP, 0x4, 5));
    // Receiver bind cannot submit.
    let (mut s, mut r, _) = bind(a, BIND_RECEIVER, "any").await;
    s.write_all(&submit(6, b"x", 0)).await.unwrap();
    assert_eq!(read_smpp(&mut s, &mut r, 1).await[0].1, 0x4);
    let (mut s, mut r, _) = bind(a, BIND_TRANSMITTER, "any").await;
    // Unknown command id, truncated body, enquire_link, then a garbage length.
    let mut b = empty(0x0000_0999, 7);
    // A submit_sm whose body ends inside service_type.
    b.extend_from_slice(&[0, 0, 0, 18, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 8, b'x', b'y']);
    b.extend_from_slice(&empty(ENQUIRE_LINK, 9));
    b.extend_from_slice(&[0, 0, 0, 3, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0, 0, 0, 0, 0]);
    s.write_all(&b).await.unwrap();
    let got = read_smpp(&mut s, &mut r, 4).await;
    let got: Vec<(u32, u32, u32)> = got.iter().map(|x| (x.0, x.1, x.2)).collect();
    assert_eq!(
        got,
        vec![
            (GENERIC_NACK, 0x3, 7),
            (SUBMIT_SM | RESP, 0x1, 8),
            (ENQUIRE_LINK | RESP, 0, 9),
            (GENERIC_NACK, 0x2, 0),
        ]
    );
    // ... and the connection is closed after the unrecoverable one.
    let mut rest = [0u8; 1];
    assert_eq!(
        tokio::time::timeout(Duration::from_secs(2), s.read(&mut rest))
            .await
            .unwrap()
            .unwrap(),
        0
    );
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn window_is_enforced_per_bind() {
    let h = sim(ListenerConfig {
        window: 2,
        latency: Delay::Fixed { ms: 100.0 },
        ..Default::default()
    })
    .await;
    let (mut s, mut r, _) = bind(h.addrs()[0], BIND_TRANSMITTER, "x").await;
    let mut b = BytesMut::new();
    for seq in 10..15 {
        b.extend_from_slice(&submit(seq, format!("w{seq}").as_bytes(), 0));
    }
    s.write_all(&b).await.unwrap();
    let got = read_smpp(&mut s, &mut r, 5).await;
    let mut by_seq: Vec<(u32, u32)> = got.iter().map(|x| (x.2, x.1)).collect();
    by_seq.sort();
    assert_eq!(
        by_seq,
        vec![(10, 0), (11, 0), (12, 0x14), (13, 0x14), (14, 0x14)]
    );
    let t = h.shutdown().await.unwrap();
    assert_eq!((t.unique_messages, t.submits_received), (2, 5));
}

#[tokio::test]
async fn hex_ids_unbind_and_spontaneous_mo() {
    let mo = MoConfig {
        rate: 50.0,
        texts: vec!["HELP".into()],
        ..Default::default()
    };
    let h = sim(ListenerConfig {
        mo,
        ..Default::default()
    })
    .await;
    let (mut s, mut r, _) = bind(h.addrs()[0], BIND_TRANSCEIVER, "x").await;
    let got = read_smpp(&mut s, &mut r, 3).await;
    assert!(got.len() >= 2, "MOs arrive at about 50/s");
    for (id, _, seq, c) in &got {
        assert_eq!(*id, DELIVER_SM);
        let Pdu::DeliverSm(m) = &c.pdu else {
            panic!("{c:?}")
        };
        assert_eq!(
            (m.payload().as_slice(), m.esm_class, m.dest.addr.as_slice()),
            (&b"HELP"[..], 0, &b"10086"[..])
        );
        s.write_all(&enc(Command::new(
            St::EsmeRok,
            *seq,
            Pdu::DeliverSmResp(MessageIdResp::default()),
        )))
        .await
        .unwrap();
    }
    s.write_all(&submit(3, b"hello", 0)).await.unwrap();
    let resp = loop {
        let got = read_smpp(&mut s, &mut r, 1).await;
        if got[0].0 == SUBMIT_SM | RESP {
            break got[0].3.clone();
        }
    };
    let Pdu::SubmitSmResp(resp) = resp.pdu else {
        panic!()
    };
    let id = resp.message_id.as_slice();
    assert!(
        !id.is_empty() && id.iter().all(|c| c.is_ascii_hexdigit()),
        "{id:?}"
    );
    s.write_all(&empty(UNBIND, 4)).await.unwrap();
    let got = read_smpp(&mut s, &mut r, 10).await;
    assert!(got.iter().any(|x| x.0 == UNBIND | RESP && x.2 == 4));
    let t = h.shutdown().await.unwrap();
    assert!(t.mo_sent >= 2 && t.deliver_resps_received >= 2, "{t:?}");
    assert!(t.mo_scheduled >= t.mo_sent, "{t:?}");
}

/// Reads CMPP PDUs until `n` arrived (or 2 s passed).
async fn read_cmpp(s: &mut TcpStream, buf: &mut BytesMut, v: Version, n: usize) -> Vec<cm::Pdu> {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            while let Ok(Some(d)) = cm::decode_frame(buf, v, cm::DEFAULT_MAX_LENGTH) {
                out.push(d.unwrap().pdu);
                if out.len() == n {
                    return;
                }
            }
            if s.read_buf(buf).await.unwrap_or(0) == 0 {
                return;
            }
        }
    })
    .await;
    out
}

fn connect_pdu(v: Version, secret: &[u8]) -> BytesMut {
    let ts = 1126015500;
    let c = cm::Connect {
        source_addr: FixedStr::new(b"901234").unwrap(),
        authenticator_source: auth::authenticator_source(b"901234", secret, ts),
        version: v.byte(),
        timestamp: ts,
    };
    let mut b = BytesMut::new();
    cm::Pdu::Connect(c).encode(1, v, &mut b).unwrap();
    b
}

#[tokio::test]
async fn cmpp30_connect_submit_report_and_throttle() {
    let l = ListenerConfig {
        protocol: Protocol::Cmpp,
        accounts: vec![Account {
            system_id: "901234".into(),
            password: "s3".into(),
            max_binds: 0,
        }],
        throughput: 1.0,
        burst: 2.0,
        ..Default::default()
    };
    let h = sim(l).await;
    let mut s = TcpStream::connect(h.addrs()[0]).await.unwrap();
    let v = Version::V30;
    s.write_all(&connect_pdu(v, b"s3")).await.unwrap();
    let mut r = BytesMut::new();
    let got = read_cmpp(&mut s, &mut r, v, 1).await;
    let cm::Pdu::ConnectResp(resp) = &got[0] else {
        panic!("{got:?}")
    };
    assert_eq!((resp.status, resp.version), (ConnectStatus::Ok, 0x30));
    let src_auth = auth::authenticator_source(b"901234", b"s3", 1126015500);
    assert!(auth::verify_ismg(
        v,
        ConnectStatus::Ok,
        &src_auth,
        b"s3",
        &resp.authenticator_ismg
    ));
    let mut b = BytesMut::new();
    for seq in 2..5 {
        let m = cm::Submit {
            registered_delivery: 1,
            pk_total: 1,
            pk_number: 1,
            msg_fmt: MsgFmt::Ascii,
            src_id: FixedStr::new(b"1065").unwrap(),
            dest_terminal_ids: vec![FixedStr::new(b"13800138000").unwrap()],
            msg_content: format!("cmpp30 {seq}").into_bytes().into(),
            ..Default::default()
        };
        cm::Pdu::Submit(Box::new(m)).encode(seq, v, &mut b).unwrap();
    }
    s.write_all(&b).await.unwrap();
    let got = read_cmpp(&mut s, &mut r, v, 5).await;
    let resps: Vec<(u64, ResultCode)> = got
        .iter()
        .filter_map(|p| {
            if let cm::Pdu::SubmitResp(x) = p {
                Some((x.msg_id.0, x.result))
            } else {
                None
            }
        })
        .collect();
    assert_eq!(
        resps.iter().map(|r| r.1).collect::<Vec<_>>(),
        vec![
            ResultCode::Success,
            ResultCode::Success,
            ResultCode::FlowControl
        ],
        "burst 2, then flow control"
    );
    let reports: Vec<u64> = got
        .iter()
        .filter_map(|p| match p {
            cm::Pdu::Deliver(d) => match &d.content {
                DeliverContent::Report(rep) => {
                    assert_eq!(rep.stat.as_bytes(), b"DELIVRD");
                    Some(rep.msg_id.0)
                }
                DeliverContent::Message(m) => panic!("unexpected MO {m:?}"),
            },
            _ => None,
        })
        .collect();
    assert_eq!(reports, vec![resps[0].0, resps[1].0]);
    assert_ne!(resps[0].0, resps[1].0);
    let t = h.shutdown().await.unwrap();
    assert_eq!(t.rejected.get("cmpp:8"), Some(&1));
}

#[tokio::test]
async fn cmpp_bad_authenticator_is_refused_with_status_3() {
    let l = ListenerConfig {
        protocol: Protocol::Cmpp,
        accounts: vec![Account {
            system_id: "901234".into(),
            password: "s3".into(),
            max_binds: 0,
        }],
        ..Default::default()
    };
    let h = sim(l).await;
    let mut s = TcpStream::connect(h.addrs()[0]).await.unwrap();
    s.write_all(&connect_pdu(Version::V20, b"nope"))
        .await
        .unwrap();
    let mut r = BytesMut::new();
    let got = read_cmpp(&mut s, &mut r, Version::V20, 1).await;
    let cm::Pdu::ConnectResp(resp) = &got[0] else {
        panic!("{got:?}")
    };
    assert_eq!(resp.status, ConnectStatus::AuthenticationError);
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn receipts_wait_for_a_receiver_bind_of_the_same_account() {
    let h = sim(ListenerConfig {
        accounts: accounts(),
        ..Default::default()
    })
    .await;
    let a = h.addrs()[0];
    // A transmitter cannot receive: the receipt waits in the center.
    let (mut tx, mut rtx, _) = bind(a, BIND_TRANSMITTER, "pw").await;
    tx.write_all(&submit(2, b"dlr later", 1)).await.unwrap();
    let got = read_smpp(&mut tx, &mut rtx, 1).await;
    let Pdu::SubmitSmResp(resp) = &got[0].3.pdu else {
        panic!("{got:?}")
    };
    let id = resp.message_id.as_slice().to_vec();
    // A receiver of the same account binds later and gets it.
    let (mut rx, mut rrx, _) = bind(a, BIND_RECEIVER, "pw").await;
    let got = read_smpp(&mut rx, &mut rrx, 1).await;
    assert_eq!(got.len(), 1, "receipt routed to the receiver bind");
    let Pdu::DeliverSm(sm) = &got[0].3.pdu else {
        panic!("{got:?}")
    };
    let rep = p::DeliveryReport::from_sm(sm).expect("a receipt");
    assert_eq!(rep.message_id, &id[..]);
    assert_eq!(rep.state, Some(p::MessageState::Delivered));
    assert_eq!(
        sm.source.addr.as_slice(),
        b"8613800000001",
        "from the handset"
    );
    let t = h.shutdown().await.unwrap();
    assert_eq!(t.dlrs_sent, 1);
}

/// The receipt of a submit on a fresh transceiver bind: (submit's message_id, the
/// deliver_sm's message_id from its receipt text).
async fn submit_and_take_receipt(
    s: &mut TcpStream,
    r: &mut BytesMut,
    seq: u32,
    text: &[u8],
) -> (Vec<u8>, Vec<u8>, u32) {
    s.write_all(&submit(seq, text, 1)).await.unwrap();
    let got = read_smpp(s, r, 2).await;
    assert_eq!(got.len(), 2, "submit_sm_resp and deliver_sm: {got:?}");
    let Some(Pdu::SubmitSmResp(resp)) = got
        .iter()
        .map(|g| &g.3.pdu)
        .find(|p| matches!(p, Pdu::SubmitSmResp(_)))
    else {
        panic!("{got:?}")
    };
    let (dseq, sm) = got
        .iter()
        .find_map(|g| match &g.3.pdu {
            Pdu::DeliverSm(sm) => Some((g.2, sm)),
            _ => None,
        })
        .expect("a deliver_sm");
    let rep = p::DeliveryReport::from_sm(sm).expect("a receipt");
    (
        resp.message_id.as_slice().to_vec(),
        rep.message_id.to_vec(),
        dseq,
    )
}

#[tokio::test]
async fn an_unanswered_receipt_is_resent_after_the_client_binds_again() {
    let h = sim(ListenerConfig {
        accounts: accounts(),
        ..Default::default()
    })
    .await;
    let a = h.addrs()[0];
    let (mut s, mut r, st) = bind(a, BIND_TRANSCEIVER, "pw").await;
    assert_eq!(st, 0);
    let (id, receipt_id, _) = submit_and_take_receipt(&mut s, &mut r, 2, b"resend me").await;
    assert_eq!(id, receipt_id);
    // The client goes away without answering the deliver_sm.
    drop(s);
    let (mut s, mut r, _) = bind(a, BIND_TRANSCEIVER, "pw").await;
    let got = read_smpp(&mut s, &mut r, 1).await;
    let Some((DELIVER_SM, _, seq, c)) = got.first() else {
        panic!("the receipt again on the new bind: {got:?}")
    };
    let Pdu::DeliverSm(sm) = &c.pdu else {
        panic!("{c:?}")
    };
    assert_eq!(
        p::DeliveryReport::from_sm(sm)
            .expect("a receipt")
            .message_id,
        &id[..]
    );
    // Answered this time: it is not sent a third time.
    s.write_all(&enc(Command::new(
        St::EsmeRok,
        *seq,
        Pdu::DeliverSmResp(MessageIdResp::default()),
    )))
    .await
    .unwrap();
    s.write_all(&empty(UNBIND, 9)).await.unwrap();
    let got = read_smpp(&mut s, &mut r, 1).await;
    assert_eq!(got.first().map(|g| g.0), Some(UNBIND | RESP), "{got:?}");
    drop(s);
    let t = h.shutdown().await.unwrap();
    assert_eq!(
        (t.dlrs_sent, t.resent, t.resent_mo, t.deliver_resps_received),
        (2, 1, 0, 1),
        "{t:?}"
    );
}

#[tokio::test]
async fn resending_can_be_turned_off() {
    let h = sim(ListenerConfig {
        accounts: accounts(),
        resend_unanswered: false,
        ..Default::default()
    })
    .await;
    let a = h.addrs()[0];
    let (mut s, mut r, _) = bind(a, BIND_TRANSCEIVER, "pw").await;
    let (first, _, _) = submit_and_take_receipt(&mut s, &mut r, 2, b"lost").await;
    drop(s);
    let (mut s, mut r, _) = bind(a, BIND_TRANSCEIVER, "pw").await;
    // The next deliver_sm is the new message's receipt: the first one is gone.
    let (second, receipt, _) = submit_and_take_receipt(&mut s, &mut r, 2, b"kept").await;
    assert_eq!(second, receipt);
    assert_ne!(first, second);
    drop(s);
    let t = h.shutdown().await.unwrap();
    assert_eq!((t.dlrs_sent, t.resent), (2, 0), "{t:?}");
}

/// CMPP PDUs with their sequence ids until `n` arrived (or 2 s passed).
async fn read_cmpp_seq(
    s: &mut TcpStream,
    buf: &mut BytesMut,
    v: Version,
    n: usize,
) -> Vec<(u32, cm::Pdu)> {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            while let Ok(Some(d)) = cm::decode_frame(buf, v, cm::DEFAULT_MAX_LENGTH) {
                let d = d.unwrap();
                out.push((d.header.sequence_id, d.pdu));
                if out.len() == n {
                    return;
                }
            }
            if s.read_buf(buf).await.unwrap_or(0) == 0 {
                return;
            }
        }
    })
    .await;
    out
}

#[tokio::test]
async fn an_unanswered_cmpp_report_is_resent_after_the_client_logs_in_again() {
    let h = sim(ListenerConfig {
        protocol: Protocol::Cmpp,
        accounts: vec![Account {
            system_id: "901234".into(),
            password: "s3".into(),
            max_binds: 0,
        }],
        ..Default::default()
    })
    .await;
    let v = Version::V30;
    let login = || async {
        let mut s = TcpStream::connect(h.addrs()[0]).await.unwrap();
        s.write_all(&connect_pdu(v, b"s3")).await.unwrap();
        let mut r = BytesMut::new();
        let got = read_cmpp_seq(&mut s, &mut r, v, 1).await;
        assert!(
            matches!(&got[0].1, cm::Pdu::ConnectResp(c) if c.status == ConnectStatus::Ok),
            "{got:?}"
        );
        (s, r)
    };
    let report_of = |pdus: &[(u32, cm::Pdu)]| {
        pdus.iter().find_map(|(seq, p)| match p {
            cm::Pdu::Deliver(d) => match &d.content {
                DeliverContent::Report(rep) => Some((*seq, d.msg_id, rep.msg_id.0)),
                DeliverContent::Message(_) => None,
            },
            _ => None,
        })
    };
    let (mut s, mut r) = login().await;
    let m = cm::Submit {
        registered_delivery: 1,
        pk_total: 1,
        pk_number: 1,
        msg_fmt: MsgFmt::Ascii,
        src_id: FixedStr::new(b"1065").unwrap(),
        dest_terminal_ids: vec![FixedStr::new(b"13800138000").unwrap()],
        msg_content: b"resend me".to_vec().into(),
        ..Default::default()
    };
    let mut b = BytesMut::new();
    cm::Pdu::Submit(Box::new(m)).encode(2, v, &mut b).unwrap();
    s.write_all(&b).await.unwrap();
    let got = read_cmpp_seq(&mut s, &mut r, v, 2).await;
    let submitted = got
        .iter()
        .find_map(|(_, p)| match p {
            cm::Pdu::SubmitResp(x) => Some(x.msg_id.0),
            _ => None,
        })
        .expect("SUBMIT_RESP");
    let (_, _, reported) = report_of(&got).expect("the report");
    assert_eq!(reported, submitted);
    drop(s);
    let (mut s, mut r) = login().await;
    let got = read_cmpp_seq(&mut s, &mut r, v, 1).await;
    let (seq, msg_id, reported) = report_of(&got).expect("the report again after the new login");
    assert_eq!(reported, submitted);
    let mut b = BytesMut::new();
    cm::Pdu::DeliverResp(cm::DeliverResp {
        msg_id,
        result: ResultCode::Success,
    })
    .encode(seq, v, &mut b)
    .unwrap();
    s.write_all(&b).await.unwrap();
    let mut b = BytesMut::new();
    cm::Pdu::Terminate.encode(3, v, &mut b).unwrap();
    s.write_all(&b).await.unwrap();
    let got = read_cmpp_seq(&mut s, &mut r, v, 1).await;
    assert!(
        matches!(got.first(), Some((3, cm::Pdu::TerminateResp))),
        "{got:?}"
    );
    drop(s);
    let t = h.shutdown().await.unwrap();
    assert_eq!((t.resent, t.deliver_resps_received), (1, 1), "{t:?}");
}

#[tokio::test]
async fn the_first_binds_are_refused_then_accepted() {
    let h = sim(ListenerConfig {
        refuse_binds: 2,
        ..Default::default()
    })
    .await;
    let a = h.addrs()[0];
    assert_eq!(
        bind(a, BIND_TRANSMITTER, "x").await.2,
        0xD,
        "ESME_RBINDFAIL"
    );
    assert_eq!(bind(a, BIND_TRANSMITTER, "x").await.2, 0xD);
    assert_eq!(bind(a, BIND_TRANSMITTER, "x").await.2, 0, "then accepted");
    let t = h.shutdown().await.unwrap();
    assert_eq!((t.binds, t.bind_failures, t.connections), (1, 2, 3));
}

#[tokio::test]
async fn dropped_responses_and_repeated_or_unknown_receipts() {
    let h = sim(ListenerConfig {
        drop_response_share: 0.5,
        dlr: crate::config::DlrConfig {
            duplicate: true,
            unknown_share: 1.0,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let (mut s, mut r, _) = bind(h.addrs()[0], BIND_TRANSCEIVER, "x").await;
    let mut b = BytesMut::new();
    for seq in 1..=20 {
        b.extend_from_slice(&submit(seq, format!("d{seq}").as_bytes(), 1));
    }
    s.write_all(&b).await.unwrap();
    // Until 2 s of silence: the answered submits, and three receipts for each of them.
    let got = read_smpp(&mut s, &mut r, 1000).await;
    let answered: Vec<String> = got
        .iter()
        .filter(|x| x.0 == SUBMIT_SM | RESP)
        .filter_map(|x| match &x.3.pdu {
            Pdu::SubmitSmResp(m) => Some(String::from_utf8_lossy(m.message_id.as_slice()).into()),
            _ => None,
        })
        .collect();
    let receipts: Vec<String> = got
        .iter()
        .filter(|x| x.0 == DELIVER_SM)
        .filter_map(|x| match &x.3.pdu {
            Pdu::DeliverSm(sm) => sm
                .tlvs
                .receipted_message_id()
                .map(|id| String::from_utf8_lossy(id).into_owned()),
            _ => None,
        })
        .collect();
    let t = h.shutdown().await.unwrap();
    assert_eq!(t.unique_messages, 20, "dropped answers, kept messages");
    assert_eq!(t.responses_dropped as usize, 20 - answered.len());
    assert!(t.responses_dropped > 0 && !answered.is_empty(), "{t:?}");
    assert_eq!(
        receipts.len(),
        3 * answered.len(),
        "original, copy, unknown"
    );
    for id in &answered {
        assert_eq!(
            receipts.iter().filter(|r| *r == id).count(),
            2,
            "{id} twice"
        );
    }
    let unknown = receipts.iter().filter(|r| !answered.contains(r)).count();
    assert_eq!(unknown, answered.len());
    assert_eq!(t.unknown_receipts as usize, answered.len());
    assert_eq!(t.duplicate_receipts as usize, answered.len());
}

//! Wire-level tests of the simulator with a raw socket: bind rules, garbage handling,
//! window, CMPP 3.0, MO generation.

use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{SimHandle, Simulator};
use crate::config::{Account, ListenerConfig, MoConfig, Protocol, SimConfig};
use crate::dist::Delay;
use crate::wire::{cmpp, smpp};

async fn sim(l: ListenerConfig) -> SimHandle {
    Simulator::start(SimConfig { listeners: vec![l], seed: Some(1), ..Default::default() }).await.unwrap()
}

fn accounts() -> Vec<Account> {
    vec![Account { system_id: "esme".into(), password: "pw".into(), max_binds: 2 }]
}

/// Reads SMPP PDUs until `n` arrived (or 2 s passed): (id, status, seq, body).
async fn read_smpp(s: &mut TcpStream, buf: &mut BytesMut, n: usize) -> Vec<(u32, u32, u32, Vec<u8>)> {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            while let Ok(Some(h)) = smpp::check(buf) {
                out.push((h.id, h.status, h.seq, buf[16..h.len as usize].to_vec()));
                buf.advance(h.len as usize);
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
    let mut b = BytesMut::new();
    smpp::put_bind(&mut b, id, 1, b"esme", pw.as_bytes());
    s.write_all(&b).await.unwrap();
    let mut r = BytesMut::new();
    let p = read_smpp(&mut s, &mut r, 1).await;
    assert_eq!(p[0].0, id | smpp::RESP);
    (s, r, p[0].1)
}

fn submit(seq: u32, text: &[u8], rd: u8) -> BytesMut {
    let mut b = BytesMut::new();
    let m = smpp::OutMessage { source: b"1065", dest: b"8613800000001", short_message: text, registered_delivery: rd, ..Default::default() };
    smpp::put_short_message(&mut b, smpp::SUBMIT_SM, seq, &m);
    b
}

#[tokio::test]
async fn bind_rules() {
    let h = sim(ListenerConfig { accounts: accounts(), ..Default::default() }).await;
    let a = h.addrs()[0];
    assert_eq!(bind(a, smpp::BIND_TRANSMITTER, "bad").await.2, smpp::RINVPASWD);
    let (mut s1, mut r1, st) = bind(a, smpp::BIND_TRANSCEIVER, "pw").await;
    assert_eq!(st, smpp::ROK);
    let (_s2, _, st) = bind(a, smpp::BIND_RECEIVER, "pw").await;
    assert_eq!(st, smpp::ROK);
    assert_eq!(bind(a, smpp::BIND_TRANSMITTER, "pw").await.2, smpp::RBINDFAIL, "max_binds = 2");
    // Second bind on the same session.
    let mut b = BytesMut::new();
    smpp::put_bind(&mut b, smpp::BIND_TRANSMITTER, 2, b"esme", b"pw");
    s1.write_all(&b).await.unwrap();
    assert_eq!(read_smpp(&mut s1, &mut r1, 1).await[0].1, smpp::RALYBND);
    // Unknown system_id.
    let mut s = TcpStream::connect(a).await.unwrap();
    let mut b = BytesMut::new();
    smpp::put_bind(&mut b, smpp::BIND_TRANSMITTER, 1, b"who", b"pw");
    s.write_all(&b).await.unwrap();
    let mut r = BytesMut::new();
    assert_eq!(read_smpp(&mut s, &mut r, 1).await[0].1, smpp::RINVSYSID);
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
    let p = read_smpp(&mut s, &mut r, 1).await;
    assert_eq!((p[0].0, p[0].1, p[0].2), (smpp::SUBMIT_SM | smpp::RESP, smpp::RINVBNDSTS, 5));
    // Receiver bind cannot submit.
    let (mut s, mut r, _) = bind(a, smpp::BIND_RECEIVER, "any").await;
    s.write_all(&submit(6, b"x", 0)).await.unwrap();
    assert_eq!(read_smpp(&mut s, &mut r, 1).await[0].1, smpp::RINVBNDSTS);
    let (mut s, mut r, _) = bind(a, smpp::BIND_TRANSMITTER, "any").await;
    // Unknown command id, truncated body, enquire_link, then a garbage length.
    let mut b = BytesMut::new();
    smpp::put_empty(&mut b, 0x0000_0999, 0, 7);
    let st = smpp::begin(&mut b, smpp::SUBMIT_SM, 0, 8);
    b.extend_from_slice(&[0, 1]);
    smpp::finish(&mut b, st);
    smpp::put_empty(&mut b, smpp::ENQUIRE_LINK, 0, 9);
    b.extend_from_slice(&[0, 0, 0, 3, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0, 0, 0, 0, 0]);
    s.write_all(&b).await.unwrap();
    let p = read_smpp(&mut s, &mut r, 4).await;
    let got: Vec<(u32, u32, u32)> = p.iter().map(|x| (x.0, x.1, x.2)).collect();
    assert_eq!(
        got,
        vec![
            (smpp::GENERIC_NACK, smpp::RINVCMDID, 7),
            (smpp::GENERIC_NACK, smpp::RINVCMDLEN, 8),
            (smpp::ENQUIRE_LINK | smpp::RESP, 0, 9),
            (smpp::GENERIC_NACK, smpp::RINVCMDLEN, 0),
        ]
    );
    // ... and the connection is closed after the unrecoverable one.
    let mut rest = [0u8; 1];
    assert_eq!(tokio::time::timeout(Duration::from_secs(2), s.read(&mut rest)).await.unwrap().unwrap(), 0);
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn window_is_enforced_per_bind() {
    let h = sim(ListenerConfig { window: 2, latency: Delay::Fixed { ms: 100.0 }, ..Default::default() }).await;
    let (mut s, mut r, _) = bind(h.addrs()[0], smpp::BIND_TRANSMITTER, "x").await;
    let mut b = BytesMut::new();
    for seq in 10..15 {
        b.extend_from_slice(&submit(seq, format!("w{seq}").as_bytes(), 0));
    }
    s.write_all(&b).await.unwrap();
    let p = read_smpp(&mut s, &mut r, 5).await;
    let mut by_seq: Vec<(u32, u32)> = p.iter().map(|x| (x.2, x.1)).collect();
    by_seq.sort();
    assert_eq!(by_seq, vec![(10, 0), (11, 0), (12, smpp::RMSGQFUL), (13, smpp::RMSGQFUL), (14, smpp::RMSGQFUL)]);
    let t = h.shutdown().await.unwrap();
    assert_eq!((t.unique_messages, t.submits_received), (2, 5));
}

#[tokio::test]
async fn hex_ids_unbind_and_spontaneous_mo() {
    let mo = MoConfig { rate: 50.0, texts: vec!["HELP".into()], ..Default::default() };
    let h = sim(ListenerConfig { mo, ..Default::default() }).await;
    let (mut s, mut r, _) = bind(h.addrs()[0], smpp::BIND_TRANSCEIVER, "x").await;
    let p = read_smpp(&mut s, &mut r, 3).await;
    assert!(p.len() >= 2, "MOs arrive at about 50/s");
    for (id, _, seq, body) in &p {
        assert_eq!(*id, smpp::DELIVER_SM);
        let m = smpp::parse_short_message(body).unwrap();
        assert_eq!((m.payload, m.esm_class, m.dest), (&b"HELP"[..], 0, &b"10086"[..]));
        let mut b = BytesMut::new();
        smpp::put_empty(&mut b, smpp::DELIVER_SM | smpp::RESP, 0, *seq);
        s.write_all(&b).await.unwrap();
    }
    s.write_all(&submit(3, b"hello", 0)).await.unwrap();
    let resp = loop {
        let p = read_smpp(&mut s, &mut r, 1).await;
        if p[0].0 == smpp::SUBMIT_SM | smpp::RESP {
            break p[0].clone();
        }
    };
    let id = smpp::parse_submit_resp(&resp.3);
    assert!(!id.is_empty() && id.iter().all(|c| c.is_ascii_hexdigit()), "{id:?}");
    let mut b = BytesMut::new();
    smpp::put_empty(&mut b, smpp::UNBIND, 0, 4);
    s.write_all(&b).await.unwrap();
    let p = read_smpp(&mut s, &mut r, 10).await;
    assert!(p.iter().any(|x| x.0 == smpp::UNBIND | smpp::RESP && x.2 == 4));
    let t = h.shutdown().await.unwrap();
    assert!(t.mo_sent >= 2 && t.deliver_resps_received >= 2, "{t:?}");
}

/// Reads CMPP PDUs until `n` arrived: (id, seq, body).
async fn read_cmpp(s: &mut TcpStream, buf: &mut BytesMut, n: usize) -> Vec<(u32, u32, Vec<u8>)> {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            while let Ok(Some(h)) = cmpp::check(buf) {
                out.push((h.id, h.seq, buf[12..h.len as usize].to_vec()));
                buf.advance(h.len as usize);
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
async fn cmpp30_connect_submit_report_and_throttle() {
    let l = ListenerConfig {
        protocol: Protocol::Cmpp,
        accounts: vec![Account { system_id: "901234".into(), password: "s3".into(), max_binds: 0 }],
        throughput: 1.0,
        burst: 2.0,
        ..Default::default()
    };
    let h = sim(l).await;
    let mut s = TcpStream::connect(h.addrs()[0]).await.unwrap();
    let v = cmpp::Version::V30;
    let mut b = BytesMut::new();
    cmpp::put_connect(&mut b, 1, b"901234", b"s3", v, 1126015500);
    s.write_all(&b).await.unwrap();
    let mut r = BytesMut::new();
    let p = read_cmpp(&mut s, &mut r, 1).await;
    assert_eq!(p[0].0, cmpp::CONNECT | cmpp::RESP);
    assert_eq!(p[0].2.len(), 21, "3.0 CONNECT_RESP: Status 4 + Auth 16 + Version 1");
    assert_eq!(&p[0].2[..4], &[0, 0, 0, 0]);
    let src_auth = cmpp::authenticator_source(b"901234", b"s3", 1126015500);
    assert_eq!(&p[0].2[4..20], &cmpp::authenticator_ismg(v, 0, &src_auth, b"s3"));
    let mut b = BytesMut::new();
    for seq in 2..5 {
        let text = format!("cmpp30 {seq}");
        let m = cmpp::OutSubmit { src_id: b"1065", dest: b"13800138000", registered_delivery: 1, msg_fmt: 0, tp_udhi: 0, pk_total: 1, pk_number: 1, content: text.as_bytes() };
        cmpp::put_submit(&mut b, v, seq, &m);
    }
    s.write_all(&b).await.unwrap();
    let p = read_cmpp(&mut s, &mut r, 5).await;
    let resps: Vec<(u64, u32)> = p.iter().filter(|x| x.0 == cmpp::SUBMIT | cmpp::RESP).map(|x| cmpp::parse_msgid_resp(v, &x.2).unwrap()).collect();
    assert_eq!(resps.iter().map(|r| r.1).collect::<Vec<_>>(), vec![0, 0, cmpp::RESULT_FLOW_CONTROL], "burst 2, then flow control");
    let reports: Vec<u64> = p
        .iter()
        .filter(|x| x.0 == cmpp::DELIVER)
        .map(|x| {
            let d = cmpp::parse_deliver(v, &x.2).unwrap();
            assert!(d.is_report);
            assert_eq!(d.report_stat, Some(&b"DELIVRD"[..]));
            d.report_msg_id.unwrap()
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
        accounts: vec![Account { system_id: "901234".into(), password: "s3".into(), max_binds: 0 }],
        ..Default::default()
    };
    let h = sim(l).await;
    let mut s = TcpStream::connect(h.addrs()[0]).await.unwrap();
    let mut b = BytesMut::new();
    cmpp::put_connect(&mut b, 1, b"901234", b"nope", cmpp::Version::V20, 1126015500);
    s.write_all(&b).await.unwrap();
    let mut r = BytesMut::new();
    let p = read_cmpp(&mut s, &mut r, 1).await;
    assert_eq!(p[0].2[0], 3);
    h.shutdown().await.unwrap();
}

#[tokio::test]
async fn mm7_is_refused_until_written() {
    let r = Simulator::start(SimConfig { listeners: vec![ListenerConfig { protocol: Protocol::Mm7, ..Default::default() }], ..Default::default() }).await;
    assert!(matches!(r, Err(super::SimError::Unsupported { .. })));
}

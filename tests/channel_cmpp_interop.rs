//! CMPP 2.0 interop of sluice's CMPP channel with software nobody here wrote: the ISMG in this
//! file frames, decodes and encodes every PDU with the third-party `cmppprotocol` crate
//! (`CmppFrameCodec`, its `Pdu` types and its authenticator functions), and sluice's channel
//! (`sluice::channel::cmpp::spawn`, fed directly as `channel_common` feeds the SMPP worker)
//! is the SP client on 127.0.0.1.
//!
//! What the ISMG checks and does:
//! - CONNECT: decoded by their codec; Version 0x20, Source_Addr, and AuthenticatorSource
//!   recomputed with their `compute_authenticator_source` from the Timestamp we sent;
//!   answered with their `compute_authenticator_ismg`.
//! - SUBMIT: decoded by their codec; every 7th (counting from the 3rd) is answered with
//!   Result 8 (flow control) and must come again; the others get a fresh Msg_Id and, as
//!   Registered_Delivery asks, a status-report DELIVER whose DELIVER_RESP must echo the
//!   DELIVER's Msg_Id with Result 0. Reports not yet answered are sent again after a
//!   reconnect, as an ISMG does.
//! - The first connection is dropped on the 15th SUBMIT without an answer: the channel must
//!   reconnect, log in again and resend what was left unanswered.
//! - ACTIVE_TEST both ways: ours is answered, theirs (sent on the second connection) must be
//!   answered.
//! - After the run the accepted parts are reassembled by UDH reference and Pk_total /
//!   Pk_number (checking UDH and Pk numbers agree) and decoded per Msg_Fmt with encoding_rs
//!   (ASCII, UCS-2 big-endian, GBK); every text must come back exactly as sent.
//!
//! On the gateway side every message must end `Sent` with the ISMG's Msg_Ids (as decimal, the
//! form the receipt layer correlates), and a receipt event must arrive for every one of them.
//!
//! Not covered here: CMPP 3.0. `cmppprotocol` 0.1.0 only has 2.0 layouts (21-octet terminal
//! ids, one-octet Result, no LinkID), so it cannot decode a 3.0 SUBMIT or encode a 3.0
//! DELIVER. 3.0 is covered against our simulator's ISMG instead: `tests/e2e_cmpp.rs` (the
//! channel through `serve`) and `loadtest/tests/load_cmpp.rs` (the same `SpSession` under load).

use crate::channel_common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::num::NonZeroU32;
use std::time::Duration;

use channel_common::{Rig, WAIT, center_ids};
use cmppprotocol as peer;
use futures::{SinkExt, StreamExt};
use sluice::channel::backoff::Backoff;
use sluice::channel::cmpp::CmppChannelConfig;
use sluice::channel::{ChannelEvent, Content, OutboundMessage, Outcome};
use sluice_protocols::cmpp::{SpConfig, Version};
use sluice_protocols::sms::Encoding;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::codec::Framed;

const SP: &str = "901234";
const SECRET: &str = "s3cret!";
/// The first connection is dropped when this SUBMIT (counted over the whole run) arrives.
const DROP_AT: u64 = 15;

/// Everything the ISMG saw, for the assertions at the end.
#[derive(Debug, Default, Clone)]
struct Log {
    /// Logins accepted (one per connection).
    logins: u32,
    /// Anything the ISMG found wrong with what we sent.
    faults: Vec<String>,
    submits: u64,
    flow_controlled: u64,
    /// Accepted parts by the Msg_Id the ISMG gave them.
    accepted: HashMap<u64, peer::Submit>,
    /// Status reports sent and not yet answered with Result 0: DELIVER Msg_Id → report.
    unanswered: BTreeMap<[u8; 8], peer::Deliver>,
    reports_sent: u64,
    deliver_resps: u64,
    active_tests_received: u32,
    active_test_resps_received: u32,
    dropped: bool,
}

type Shared = watch::Sender<Log>;

/// Runs the ISMG: one connection at a time (the channel keeps one).
async fn ismg(listener: TcpListener, log: Shared) {
    let mut connection = 0u32;
    while let Ok((stream, _)) = listener.accept().await {
        connection += 1;
        serve(stream, connection, &log).await;
    }
}

fn fault(log: &Shared, what: String) {
    log.send_modify(|l| l.faults.push(what));
}

async fn serve(stream: TcpStream, connection: u32, log: &Shared) {
    let mut framed = Framed::new(stream, peer::CmppFrameCodec);
    let Some(Ok(first)) = framed.next().await else {
        fault(log, format!("connection {connection}: no CONNECT"));
        return;
    };
    let peer::Pdu::Connect(c) = first.pdu else {
        fault(
            log,
            format!("connection {connection}: first PDU {:?}", first.pdu),
        );
        return;
    };
    let expected = peer::compute_authenticator_source(&c.source_addr, SECRET, c.timestamp);
    let status = if c.version != peer::CMPP_VERSION_20 {
        fault(log, format!("CONNECT version {:#04x}", c.version));
        4
    } else if c.source_addr != SP || c.authenticator_source != expected {
        fault(log, format!("CONNECT authentication failed: {c:?}"));
        3
    } else {
        0
    };
    let resp = peer::ConnectResp {
        status,
        authenticator_ismg: peer::compute_authenticator_ismg(
            status,
            &c.authenticator_source,
            SECRET,
        ),
        version: peer::CMPP_VERSION_20,
    };
    if framed
        .send(peer::Frame::new(
            first.sequence_id,
            peer::Pdu::ConnectResp(resp),
        ))
        .await
        .is_err()
        || status != 0
    {
        return;
    }
    log.send_modify(|l| l.logins += 1);
    // Reports left unanswered on an earlier connection go out again.
    let resend: Vec<peer::Deliver> = log.borrow().unanswered.values().cloned().collect();
    let mut seq = 0x4000_0000u32;
    for d in resend {
        seq += 1;
        if framed
            .send(peer::Frame::new(seq, peer::Pdu::Deliver(d)))
            .await
            .is_err()
        {
            return;
        }
    }
    if connection > 1 {
        seq += 1;
        if framed
            .send(peer::Frame::new(seq, peer::Pdu::ActiveTest))
            .await
            .is_err()
        {
            return;
        }
    }
    while let Some(frame) = framed.next().await {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                fault(log, format!("their codec refused our bytes: {e}"));
                return;
            }
        };
        let answer = match frame.pdu {
            peer::Pdu::Submit(s) => {
                let mut n = 0;
                log.send_modify(|l| {
                    l.submits += 1;
                    n = l.submits;
                });
                if connection == 1 && n == DROP_AT {
                    log.send_modify(|l| l.dropped = true);
                    return;
                }
                if n % 7 == 3 {
                    log.send_modify(|l| l.flow_controlled += 1);
                    let resp = peer::SubmitResp {
                        msg_id: [0; 8],
                        result: 8,
                    };
                    Some(peer::Pdu::SubmitResp(resp))
                } else {
                    let id = 0x0123_0000_0000_0000u64 + n;
                    let report = (s.registered_delivery == 1).then(|| report_of(&s, id, n));
                    log.send_modify(|l| {
                        l.accepted.insert(id, (*s).clone());
                    });
                    let resp = peer::SubmitResp {
                        msg_id: id.to_be_bytes(),
                        result: 0,
                    };
                    if framed
                        .send(peer::Frame::new(
                            frame.sequence_id,
                            peer::Pdu::SubmitResp(resp),
                        ))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    match report {
                        Some(d) => {
                            log.send_modify(|l| {
                                l.reports_sent += 1;
                                l.unanswered.insert(d.msg_id, d.clone());
                            });
                            seq += 1;
                            Some(peer::Pdu::Deliver(d))
                        }
                        None => {
                            fault(log, "SUBMIT without Registered_Delivery".into());
                            None
                        }
                    }
                }
            }
            peer::Pdu::DeliverResp(r) => {
                log.send_modify(|l| {
                    l.deliver_resps += 1;
                    if l.unanswered.contains_key(&r.msg_id) {
                        if r.result == 0 {
                            l.unanswered.remove(&r.msg_id);
                        } else {
                            l.faults.push(format!("DELIVER_RESP result {}", r.result));
                        }
                    } else {
                        l.faults
                            .push(format!("DELIVER_RESP for an unknown Msg_Id {:?}", r.msg_id));
                    }
                });
                None
            }
            peer::Pdu::ActiveTest => {
                log.send_modify(|l| l.active_tests_received += 1);
                Some(peer::Pdu::ActiveTestResp)
            }
            peer::Pdu::ActiveTestResp => {
                log.send_modify(|l| l.active_test_resps_received += 1);
                None
            }
            peer::Pdu::Terminate => {
                let _ = framed
                    .send(peer::Frame::new(
                        frame.sequence_id,
                        peer::Pdu::TerminateResp,
                    ))
                    .await;
                return;
            }
            other => {
                fault(log, format!("unexpected PDU from the SP: {other:?}"));
                None
            }
        };
        let Some(pdu) = answer else { continue };
        // A DELIVER is our request (its own sequence id); the rest answer the SP's request.
        let out = match pdu {
            peer::Pdu::Deliver(d) => peer::Frame::new(seq, peer::Pdu::Deliver(d)),
            other => peer::Frame::new(frame.sequence_id, other),
        };
        if framed.send(out).await.is_err() {
            return;
        }
    }
}

/// The status-report DELIVER for the part accepted as `id`: their `Deliver` with the 60-octet
/// 2.0 report layout (Msg_Id, Stat, Submit_time, Done_time, Dest_terminal_Id, SMSC_sequence).
fn report_of(s: &peer::Submit, id: u64, n: u64) -> peer::Deliver {
    let dest = s.dest_terminal_ids.first().cloned().unwrap_or_default();
    let mut content = id.to_be_bytes().to_vec();
    content.extend_from_slice(b"DELIVRD");
    content.extend_from_slice(b"2612051200");
    content.extend_from_slice(b"2612051201");
    let mut terminal = dest.clone().into_bytes();
    terminal.resize(21, 0);
    content.extend_from_slice(&terminal);
    content.extend_from_slice(&u32::try_from(n).unwrap_or(0).to_be_bytes());
    assert_eq!(content.len(), 60);
    peer::Deliver {
        msg_id: (0x0777_0000_0000_0000u64 + n).to_be_bytes(),
        dest_id: s.src_id.clone(),
        service_id: s.service_id.clone(),
        tp_pid: 0,
        tp_udhi: 0,
        msg_fmt: 0,
        src_terminal_id: dest,
        registered_delivery: 1,
        msg_content: content,
    }
}

fn message(id: u64, text: String, hint: Option<Encoding>) -> OutboundMessage {
    OutboundMessage {
        id,
        attempt: 0,
        from: Some("10086".into()),
        to: compact_str::format_compact!("+86138{id:08}"),
        content: Content::Text { text, hint },
    }
}

/// Short and long ASCII, short Chinese (UCS-2 by the channel's choice), long Chinese hinted
/// UCS-2, long Chinese hinted GBK.
fn messages() -> Vec<(OutboundMessage, u8)> {
    let mut v = Vec::new();
    for id in 1..=6u64 {
        v.push((message(id, format!("hello {id}"), None), 0));
    }
    for id in 7..=9u64 {
        let text = format!("long ascii {id} ") + &"abcdefghij".repeat(30);
        v.push((message(id, text, None), 0));
    }
    for id in 10..=12u64 {
        // The channel's own choice: UCS-2 (GBK only when asked: the air interface has none).
        v.push((message(id, format!("你好，世界 {id}"), None), 8));
    }
    for id in 13..=15u64 {
        let text = format!("长短信 {id} ") + &"短信测试".repeat(40);
        v.push((message(id, text, Some(Encoding::Ucs2)), 8));
    }
    for id in 16..=18u64 {
        let text = format!("中文GBK {id} ") + &"国标扩展编码".repeat(20);
        v.push((message(id, text, Some(Encoding::Gbk)), 15));
    }
    v
}

/// One accepted part: (UDH reference, Pk_total, Msg_Fmt, content without the UDH).
type Piece = (Option<u8>, u8, u8, Vec<u8>);

/// Reassembles the accepted parts per destination by UDH reference and Pk numbers, decodes
/// per Msg_Fmt with encoding_rs, and returns destination → (text, Msg_Fmt).
fn reassemble(accepted: &HashMap<u64, peer::Submit>) -> HashMap<String, (String, u8)> {
    let mut by_dest: HashMap<String, BTreeMap<u8, Piece>> = HashMap::new();
    for s in accepted.values() {
        assert_eq!(s.dest_terminal_ids.len(), 1, "{s:?}");
        assert_eq!(s.msg_src, SP);
        assert_eq!(s.service_id, "MSGTEST");
        assert_eq!(
            s.src_id, "10690001",
            "a sender outside src_id is replaced by it"
        );
        let (reference, body) = if s.tp_udhi == 1 {
            let c = &s.msg_content;
            assert!(c.len() > 6 && c[..3] == [5, 0, 3], "UDH IE 0x00: {c:?}");
            assert_eq!(
                (c[4], c[5]),
                (s.pk_total, s.pk_number),
                "UDH and Pk numbers agree"
            );
            (Some(c[3]), c[6..].to_vec())
        } else {
            assert_eq!((s.pk_total, s.pk_number), (1, 1));
            (None, s.msg_content.clone())
        };
        let parts = by_dest.entry(s.dest_terminal_ids[0].clone()).or_default();
        let part = (reference, s.pk_total, s.msg_fmt, body);
        if let Some(earlier) = parts.insert(s.pk_number, part.clone()) {
            // A part resent after the drop: the same bytes.
            assert_eq!(earlier, part, "a resent part differs");
        }
    }
    by_dest
        .into_iter()
        .map(|(dest, parts)| {
            let (reference, total, fmt, _) = parts.values().next().cloned().expect("a part");
            assert_eq!(parts.len(), usize::from(total), "{dest}: all parts arrived");
            let mut whole = Vec::new();
            for (k, (r, t, f, body)) in &parts {
                assert_eq!((*r, *t, *f), (reference, total, fmt), "{dest} part {k}");
                whole.extend_from_slice(body);
            }
            let text = match fmt {
                0 => String::from_utf8(whole).expect("ASCII"),
                8 => {
                    let (t, malformed) = encoding_rs::UTF_16BE.decode_without_bom_handling(&whole);
                    assert!(!malformed);
                    t.into_owned()
                }
                15 => {
                    let (t, malformed) = encoding_rs::GBK.decode_without_bom_handling(&whole);
                    assert!(!malformed);
                    t.into_owned()
                }
                other => panic!("{dest}: Msg_Fmt {other}"),
            };
            (dest, (text, fmt))
        })
        .collect()
}

fn channel(addr: String) -> CmppChannelConfig {
    let session = SpConfig {
        source_addr: SP.into(),
        shared_secret: SECRET.into(),
        version: Version::V20,
        window: 8,
        response_timeout: Duration::from_secs(2),
        active_test_interval: Duration::from_millis(300),
        ..SpConfig::default()
    };
    let mut c = CmppChannelConfig::new("ismg", addr, session, NonZeroU32::new(5_000).unwrap());
    c.parts.service_id = "MSGTEST".into();
    c.parts.src_id = "10690001".into();
    c.reconnect = Backoff {
        base: Duration::from_millis(20),
        max: Duration::from_millis(200),
    };
    c.limits.retry.backoff = Backoff {
        base: Duration::from_millis(10),
        max: Duration::from_millis(50),
    };
    c
}

async fn wait_log(rx: &mut watch::Receiver<Log>, what: &str, done: impl FnMut(&Log) -> bool) {
    let ok = matches!(
        tokio::time::timeout(WAIT, rx.wait_for(done)).await,
        Ok(Ok(_))
    );
    assert!(ok, "timed out waiting for {what}: {:?}", *rx.borrow());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_against_a_cmppprotocol_ismg() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (log, mut rx) = watch::channel(Log::default());
    let server = tokio::spawn(ismg(listener, log));

    let sent = messages();
    let mut rig = Rig::start_cmpp(channel(addr));
    let outcomes = rig
        .run_all(sent.iter().map(|(m, _)| m.clone()).collect())
        .await;

    // Every message went out, each part with the ISMG's Msg_Id in decimal.
    let accepted = rx.borrow().accepted.clone();
    let ids: HashSet<String> = accepted.keys().map(u64::to_string).collect();
    let mut part_ids = Vec::new();
    for (m, _) in &sent {
        let o = &outcomes[&m.id];
        assert!(matches!(o, Outcome::Sent { .. }), "{}: {o:?}", m.id);
        for id in &center_ids(o) {
            assert!(ids.contains(id), "{}: {id} is not an ISMG Msg_Id", m.id);
            part_ids.push(id.clone());
        }
    }

    // Reassembled by the ISMG from UDH + Pk numbers, decoded per Msg_Fmt: exactly our texts.
    let texts = reassemble(&accepted);
    for (m, fmt) in &sent {
        let Content::Text { text, .. } = &m.content else {
            unreachable!()
        };
        let dest = m.to.trim_start_matches('+');
        assert_eq!(texts.get(dest), Some(&(text.clone(), *fmt)), "{}", m.id);
    }

    // A receipt event for every part, correlated by the Msg_Id as decimal.
    let wanted: HashSet<String> = part_ids.iter().cloned().collect();
    rig.events_until(|seen| {
        let got: HashSet<&str> = seen
            .iter()
            .filter_map(|e| match e {
                ChannelEvent::Receipt { center_id, .. } => Some(center_id.as_str()),
                ChannelEvent::Mo { .. } => None,
            })
            .collect();
        wanted.iter().all(|w| got.contains(w.as_str()))
    })
    .await;
    let receipts = rig.receipts();
    for id in &part_ids {
        assert_eq!(
            receipts.get(id).map(String::as_str),
            Some("DELIVRD"),
            "{id}"
        );
    }
    for e in &rig.seen {
        if let ChannelEvent::Receipt { source, .. } = e {
            assert!(
                source.starts_with("86138"),
                "handset from Dest_terminal_Id: {source}"
            );
        }
    }

    // Every report answered (DELIVER_RESP, Result 0, the DELIVER's Msg_Id echoed), both
    // ACTIVE_TESTs answered, the drop and the flow control happened and were recovered from.
    wait_log(&mut rx, "DELIVER_RESPs", |l| {
        l.unanswered.is_empty() && l.reports_sent > 0
    })
    .await;
    wait_log(&mut rx, "ACTIVE_TEST both ways", |l| {
        l.active_tests_received > 0 && l.active_test_resps_received > 0
    })
    .await;
    let l = rx.borrow().clone();
    assert!(l.faults.is_empty(), "{:#?}", l.faults);
    assert!(
        l.dropped && l.logins >= 2,
        "reconnected after the drop: {l:?}"
    );
    assert!(l.flow_controlled >= 3, "{l:?}");
    assert_eq!(l.reports_sent, accepted.len() as u64);
    assert!(l.deliver_resps >= l.reports_sent);

    rig.stop().await;
    server.abort();
}

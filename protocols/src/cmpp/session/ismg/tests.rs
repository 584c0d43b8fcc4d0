//! ISMG session tests: the session against the crate's own [`SpSession`] in memory, every
//! PDU encoded and decoded, on a manual clock; raw frames for what an SP session would never
//! send. Nothing sleeps and no socket is opened.

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;

use super::*;
use crate::cmpp::session::{CloseReason, IsmgAuth, SpConfig, SpEvent, SpSession, SpState};
use crate::cmpp::{DeliverContent, StatusReport, decode_bytes};

const VERSIONS: [Version; 2] = [Version::V20, Version::V30];
const TIMESTAMP: u32 = 1_126_015_300;
const SECRET: &[u8] = b"secret";

fn sp_config(version: Version) -> SpConfig {
    SpConfig {
        source_addr: "901234".into(),
        shared_secret: "secret".into(),
        version,
        window: 8,
        response_timeout: Duration::from_secs(5),
        active_test_interval: Duration::from_secs(30),
        active_test_misses: 3,
        ..SpConfig::default()
    }
}

fn ismg_config(highest: Version) -> IsmgConfig {
    IsmgConfig {
        highest_version: highest,
        connect_timeout: Duration::from_secs(10),
        submit_window: 4,
        deliver_window: 2,
        response_timeout: Duration::from_secs(5),
        active_test_interval: Duration::from_secs(20),
        active_test_misses: 2,
        ..IsmgConfig::default()
    }
}

fn submit(text: &str) -> Box<Submit> {
    Box::new(Submit {
        pk_total: 1,
        pk_number: 1,
        registered_delivery: 1,
        service_id: FixedStr::try_from("SVC").expect("fits"),
        msg_src: FixedStr::try_from("901234").expect("fits"),
        src_id: FixedStr::try_from("10690001").expect("fits"),
        dest_terminal_ids: vec![FixedStr::try_from("13800138000").expect("fits")],
        msg_content: Bytes::from(text.to_owned()),
        ..Submit::default()
    })
}

fn report(deliver_id: u64, of: MsgId) -> Box<Deliver> {
    Box::new(Deliver {
        msg_id: MsgId(deliver_id),
        dest_id: FixedStr::try_from("10690001").expect("fits"),
        src_terminal_id: FixedStr::try_from("13800138000").expect("fits"),
        content: DeliverContent::Report(StatusReport {
            msg_id: of,
            stat: FixedStr::try_from("DELIVRD").expect("fits"),
            submit_time: FixedStr::try_from("2611260100").expect("fits"),
            done_time: FixedStr::try_from("2611260101").expect("fits"),
            dest_terminal_id: FixedStr::try_from("13800138000").expect("fits"),
            smsc_sequence: 7,
        }),
        ..Deliver::default()
    })
}

fn frame(command_id: u32, sequence: u32, body: &[u8]) -> BytesMut {
    let mut b = BytesMut::new();
    b.put_u32(12 + body.len() as u32);
    b.put_u32(command_id);
    b.put_u32(sequence);
    b.put_slice(body);
    b
}

/// SP session + ISMG session + manual clock.
struct Pair {
    now: Instant,
    sp: SpSession<u32>,
    ismg: IsmgSession<u32>,
    sp_events: Vec<SpEvent<u32>>,
    ismg_events: Vec<IsmgEvent<u32>>,
    /// Every PDU the ISMG wrote, decoded by the SP's version.
    ismg_sent: Vec<(u32, Pdu)>,
    /// Answer CONNECT automatically with this status (None: leave it to the test).
    auto_connect: Option<ConnectStatus>,
}

impl Pair {
    fn new(sp: SpConfig, ismg: IsmgConfig) -> Self {
        let now = Instant::now();
        Self {
            now,
            sp: SpSession::new(sp, now, TIMESTAMP).expect("valid config"),
            ismg: IsmgSession::new(ismg, now),
            sp_events: Vec::new(),
            ismg_events: Vec::new(),
            ismg_sent: Vec::new(),
            auto_connect: Some(ConnectStatus::Ok),
        }
    }

    fn connected(version: Version) -> Self {
        let mut p = Self::new(sp_config(version), ismg_config(version));
        p.drive();
        assert_eq!(p.sp.state(), &SpState::Connected);
        assert_eq!(p.ismg.state(), &IsmgState::Connected);
        p.sp_events.clear();
        p.ismg_events.clear();
        p.ismg_sent.clear();
        p
    }

    /// Moves PDUs both ways until both sides are quiet.
    fn drive(&mut self) {
        loop {
            let mut moved = false;
            let mut to_ismg = BytesMut::new();
            while let Some(t) = self.sp.poll_transmit() {
                t.encode(self.sp.version(), &mut to_ismg)
                    .expect("SP PDU encodes");
            }
            if !to_ismg.is_empty() {
                self.ismg.handle_bytes(self.now, &mut to_ismg);
                moved = true;
            }
            while let Some(e) = self.ismg.poll_event() {
                if let (IsmgEvent::ConnectRequest(c), Some(status)) = (&e, self.auto_connect) {
                    assert!(c.verifies(SECRET));
                    self.ismg.answer_connect(self.now, status, SECRET);
                }
                self.ismg_events.push(e);
            }
            let mut to_sp = BytesMut::new();
            while let Some(t) = self.ismg.poll_transmit() {
                t.encode(self.ismg.version(), &mut to_sp)
                    .expect("ISMG PDU encodes");
                self.ismg_sent.push((t.sequence_id, t.pdu));
            }
            if !to_sp.is_empty() {
                self.sp.handle_bytes(self.now, &mut to_sp);
                moved = true;
            }
            while let Some(e) = self.sp.poll_event() {
                self.sp_events.push(e);
            }
            if !moved {
                break;
            }
        }
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.sp.handle_timeout(self.now);
        self.ismg.handle_timeout(self.now);
        self.drive();
    }

    /// Raw bytes straight into the ISMG; returns what it wrote, decoded on its version.
    fn raw(&mut self, mut bytes: BytesMut) -> Vec<(u32, Pdu)> {
        self.ismg.handle_bytes(self.now, &mut bytes);
        let mut out = Vec::new();
        while let Some(t) = self.ismg.poll_transmit() {
            let mut b = BytesMut::new();
            t.encode(self.ismg.version(), &mut b).expect("encodes");
            let d = decode_bytes(&b.freeze(), self.ismg.version(), DEFAULT_MAX_LENGTH)
                .expect("decodes");
            out.push((d.header.sequence_id, d.pdu));
        }
        while let Some(e) = self.ismg.poll_event() {
            self.ismg_events.push(e);
        }
        out
    }

    fn ismg_submits(&self) -> Vec<u32> {
        self.ismg_events
            .iter()
            .filter_map(|e| match e {
                IsmgEvent::Submit { sequence, .. } => Some(*sequence),
                _ => None,
            })
            .collect()
    }
}

fn encode(pdu: &Pdu, sequence: u32, version: Version) -> BytesMut {
    let mut b = BytesMut::new();
    pdu.encode(sequence, version, &mut b).expect("encodes");
    b
}

fn connect_pdu(version_byte: u8, secret: &[u8]) -> Pdu {
    let mut c = Connect::new(
        FixedStr::try_from("901234").expect("fits"),
        secret,
        Version::V30,
        TIMESTAMP,
    );
    c.version = version_byte;
    Pdu::Connect(c)
}

#[test]
fn sp_logs_in_and_verifies_the_ismg_authenticator_on_both_versions() {
    for version in VERSIONS {
        let mut p = Pair::new(sp_config(version), ismg_config(Version::V30));
        p.drive();
        let Some(IsmgEvent::ConnectRequest(c)) = p.ismg_events.first() else {
            panic!("CONNECT surfaced first: {:?}", p.ismg_events)
        };
        assert_eq!(c.source_addr.as_bytes(), b"901234");
        assert_eq!(c.requested_version, version.byte());
        assert_eq!(c.version, version);
        assert_eq!(c.timestamp, TIMESTAMP);
        assert!(!c.verifies(b"other"));
        assert_eq!(
            p.ismg_events[1],
            IsmgEvent::Connected { version },
            "then connected"
        );
        assert_eq!(
            p.sp_events,
            vec![SpEvent::Connected {
                version,
                ismg_auth: IsmgAuth::Verified
            }]
        );
        assert_eq!(p.ismg.version(), version);
        assert!(p.ismg.can_deliver());
    }
}

#[test]
fn higher_request_is_negotiated_down() {
    let mut p = Pair::new(sp_config(Version::V30), ismg_config(Version::V20));
    p.drive();
    assert_eq!(p.ismg.version(), Version::V20);
    assert_eq!(p.sp.version(), Version::V20);
    assert_eq!(p.sp.state(), &SpState::Connected);
    // Traffic flows on 2.0 both ways.
    let seq = p.sp.submit(p.now, 1, submit("hi")).expect("accepted");
    p.drive();
    p.ismg.respond_submit(seq, MsgId(77), ResultCode::Success);
    p.drive();
    assert!(matches!(
        p.sp_events.last(),
        Some(SpEvent::Response {
            tag: 1,
            msg_id: MsgId(77),
            result: ResultCode::Success,
            ..
        })
    ));
}

#[test]
fn refusal_carries_the_status_and_closes_both_sides() {
    for version in VERSIONS {
        let mut p = Pair::new(sp_config(version), ismg_config(Version::V30));
        p.auto_connect = None;
        p.drive();
        assert_eq!(p.ismg.state(), &IsmgState::Authenticating);
        assert_eq!(p.ismg.poll_timeout(), None, "the caller decides, no timer");
        p.ismg
            .answer_connect(p.now, ConnectStatus::AuthenticationError, b"");
        p.drive();
        assert_eq!(
            p.ismg.state(),
            &IsmgState::Closed(IsmgCloseReason::ConnectRefused(
                ConnectStatus::AuthenticationError
            ))
        );
        assert_eq!(
            p.sp.state(),
            &SpState::Closed(CloseReason::ConnectRefused(
                ConnectStatus::AuthenticationError
            ))
        );
    }
}

#[test]
fn unknown_version_byte_is_refused_by_the_session() {
    for (byte, status) in [
        (0x50, ConnectStatus::VersionTooHigh),
        (0x10, ConnectStatus::StructureError),
    ] {
        let mut p = Pair::new(sp_config(Version::V30), ismg_config(Version::V30));
        let out = p.raw(encode(&connect_pdu(byte, SECRET), 9, Version::V30));
        let [(9, Pdu::ConnectResp(resp))] = out.as_slice() else {
            panic!("one CONNECT_RESP: {out:?}")
        };
        assert_eq!(resp.status, status);
        assert_eq!(resp.version, Version::V20.byte());
        assert_eq!(
            p.ismg.state(),
            &IsmgState::Closed(IsmgCloseReason::ConnectRefused(status))
        );
        assert!(
            !p.ismg_events
                .iter()
                .any(|e| matches!(e, IsmgEvent::ConnectRequest(_)))
        );
    }
}

#[test]
fn minor_version_byte_is_read_by_its_major() {
    let mut p = Pair::new(sp_config(Version::V30), ismg_config(Version::V30));
    p.raw(encode(&connect_pdu(0x21, SECRET), 1, Version::V30));
    assert!(
        p.ismg_events.iter().any(|e| matches!(
            e,
            IsmgEvent::ConnectRequest(ConnectRequest {
                requested_version: 0x21,
                version: Version::V20,
                ..
            })
        )),
        "{:?}",
        p.ismg_events
    );
    p.ismg.answer_connect(p.now, ConnectStatus::Ok, SECRET);
    let Some(Transmit {
        pdu: Pdu::ConnectResp(resp),
        ..
    }) = p.ismg.poll_transmit()
    else {
        panic!("CONNECT_RESP")
    };
    assert_eq!(resp.version, 0x20);
    let src = auth::authenticator_source(b"901234", SECRET, TIMESTAMP);
    assert_eq!(
        resp.authenticator_ismg,
        auth::authenticator_ismg(Version::V20, ConnectStatus::Ok, &src, SECRET)
    );
}

#[test]
fn anything_but_connect_before_login_closes() {
    let mut p = Pair::new(sp_config(Version::V30), ismg_config(Version::V30));
    let out = p.raw(encode(&Pdu::ActiveTest, 1, Version::V30));
    assert!(out.is_empty());
    assert_eq!(
        p.ismg.state(),
        &IsmgState::Closed(IsmgCloseReason::NotLoggedIn)
    );
    // Also while the CONNECT waits for the caller.
    let mut p = Pair::new(sp_config(Version::V30), ismg_config(Version::V30));
    p.raw(encode(&connect_pdu(0x30, SECRET), 1, Version::V30));
    assert_eq!(p.ismg.state(), &IsmgState::Authenticating);
    p.raw(encode(&Pdu::Submit(submit("early")), 2, Version::V30));
    assert_eq!(
        p.ismg.state(),
        &IsmgState::Closed(IsmgCloseReason::NotLoggedIn)
    );
    p.ismg.answer_connect(p.now, ConnectStatus::Ok, SECRET);
    assert_eq!(p.ismg.poll_transmit(), None, "too late to answer");
}

#[test]
fn malformed_connect_gets_status_1() {
    let mut p = Pair::new(sp_config(Version::V30), ismg_config(Version::V30));
    let out = p.raw(frame(0x1, 4, &[0; 10]));
    let [(4, Pdu::ConnectResp(resp))] = out.as_slice() else {
        panic!("CONNECT_RESP: {out:?}")
    };
    assert_eq!(resp.status, ConnectStatus::StructureError);
    assert_eq!(
        p.ismg.state(),
        &IsmgState::Closed(IsmgCloseReason::ConnectRefused(
            ConnectStatus::StructureError
        ))
    );
}

#[test]
fn connect_timeout_closes() {
    let mut p = Pair::new(sp_config(Version::V30), ismg_config(Version::V30));
    let at = p.ismg.poll_timeout().expect("connect timer");
    assert_eq!(at, p.now + Duration::from_secs(10));
    p.ismg.handle_timeout(at - Duration::from_millis(1));
    assert_eq!(p.ismg.state(), &IsmgState::AwaitingConnect);
    p.ismg.handle_timeout(at);
    assert_eq!(
        p.ismg.state(),
        &IsmgState::Closed(IsmgCloseReason::ConnectTimeout)
    );
}

#[test]
fn submits_are_answered_in_any_order() {
    for version in VERSIONS {
        let mut p = Pair::connected(version);
        let seqs: Vec<u32> = (0..3)
            .map(|tag| p.sp.submit(p.now, tag, submit("x")).expect("accepted"))
            .collect();
        p.drive();
        assert_eq!(p.ismg_submits(), seqs);
        assert_eq!(p.ismg.submits_waiting(), 3);
        for (i, &seq) in seqs.iter().enumerate().rev() {
            let result = if i == 1 {
                ResultCode::FlowControl
            } else {
                ResultCode::Success
            };
            p.ismg.respond_submit(seq, MsgId(100 + i as u64), result);
        }
        // Answering twice is ignored.
        p.ismg
            .respond_submit(seqs[0], MsgId(1), ResultCode::Success);
        p.drive();
        let got: Vec<(u32, MsgId, ResultCode)> = p
            .sp_events
            .iter()
            .filter_map(|e| match e {
                SpEvent::Response {
                    tag,
                    msg_id,
                    result,
                    ..
                } => Some((*tag, *msg_id, *result)),
                _ => None,
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (2, MsgId(102), ResultCode::Success),
                (1, MsgId(101), ResultCode::FlowControl),
                (0, MsgId(100), ResultCode::Success),
            ]
        );
        assert_eq!(p.ismg.submits_waiting(), 0);
    }
}

#[test]
fn wide_result_on_2_0_is_sent_as_9() {
    let mut p = Pair::connected(Version::V20);
    let seq = p.sp.submit(p.now, 0, submit("x")).expect("accepted");
    p.drive();
    p.ismg
        .respond_submit(seq, MsgId(1), ResultCode::from_raw(300));
    p.drive();
    assert!(matches!(
        p.sp_events.last(),
        Some(SpEvent::Response {
            result: ResultCode::FeeTerminalNotServed,
            ..
        })
    ));
}

#[test]
fn submit_window_and_duplicate_sequence_get_result_8_at_once() {
    let mut p = Pair::connected(Version::V30);
    for seq in 1..=4 {
        assert!(
            p.raw(encode(&Pdu::Submit(submit("x")), seq, Version::V30))
                .is_empty()
        );
    }
    let over = p.raw(encode(&Pdu::Submit(submit("x")), 5, Version::V30));
    let dup = {
        p.ismg.respond_submit(4, MsgId(4), ResultCode::Success);
        let _ = p.ismg.poll_transmit();
        p.raw(encode(&Pdu::Submit(submit("x")), 1, Version::V30))
    };
    for out in [over, dup] {
        let [(_, Pdu::SubmitResp(r))] = out.as_slice() else {
            panic!("immediate SUBMIT_RESP: {out:?}")
        };
        assert_eq!(r.result, ResultCode::FlowControl);
    }
    assert_eq!(p.ismg_submits(), vec![1, 2, 3, 4]);
}

#[test]
fn delivers_respect_the_window_and_report_responses() {
    for version in VERSIONS {
        let mut p = Pair::connected(version);
        let a = p
            .ismg
            .deliver(p.now, 10, report(1, MsgId(9)))
            .expect("room");
        let b = p
            .ismg
            .deliver(p.now, 11, report(2, MsgId(9)))
            .expect("room");
        assert_ne!(a, b);
        let refused = p
            .ismg
            .deliver(p.now, 12, report(3, MsgId(9)))
            .expect_err("window of 2");
        assert_eq!(refused.reason, DeliverRefuseReason::WindowFull);
        assert_eq!(refused.tag, 12);
        assert!(!p.ismg.can_deliver());
        p.drive();
        let delivers: Vec<(u32, MsgId)> = p
            .sp_events
            .iter()
            .filter_map(|e| match e {
                SpEvent::Deliver { sequence, deliver } => Some((*sequence, deliver.msg_id)),
                _ => None,
            })
            .collect();
        assert_eq!(delivers, vec![(a, MsgId(1)), (b, MsgId(2))]);
        p.sp.answer_deliver(b, MsgId(2), ResultCode::FlowControl);
        p.sp.answer_deliver(a, MsgId(1), ResultCode::Success);
        p.drive();
        let got: Vec<(u32, MsgId, ResultCode)> = p
            .ismg_events
            .iter()
            .filter_map(|e| match e {
                IsmgEvent::DeliverResponse {
                    tag,
                    msg_id,
                    result,
                    ..
                } => Some((*tag, *msg_id, *result)),
                _ => None,
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (11, MsgId(2), ResultCode::FlowControl),
                (10, MsgId(1), ResultCode::Success)
            ]
        );
        assert_eq!(p.ismg.in_flight(), 0);
    }
}

#[test]
fn deliver_that_does_not_encode_is_refused() {
    let mut p = Pair::connected(Version::V20);
    let mut d = report(1, MsgId(1));
    d.link_id = FixedStr::try_from("LINK").expect("fits");
    let refused = p.ismg.deliver(p.now, 1, d).expect_err("3.0-only field");
    assert!(matches!(
        refused.reason,
        DeliverRefuseReason::Unencodable(_)
    ));
    assert_eq!(p.ismg.in_flight(), 0);
}

#[test]
fn deliver_before_login_is_refused() {
    let mut p = Pair::new(sp_config(Version::V30), ismg_config(Version::V30));
    let refused = p
        .ismg
        .deliver(p.now, 1, report(1, MsgId(1)))
        .expect_err("not connected");
    assert_eq!(refused.reason, DeliverRefuseReason::NotConnected);
}

#[test]
fn unanswered_deliver_times_out_once_and_frees_its_slot() {
    let mut p = Pair::connected(Version::V30);
    p.ismg.deliver(p.now, 1, report(1, MsgId(1))).expect("room");
    p.drive(); // the SP surfaces it and the test never answers
    assert_eq!(p.ismg.poll_timeout(), Some(p.now + Duration::from_secs(5)));
    p.advance(Duration::from_secs(5));
    let timeouts: Vec<_> = p
        .ismg_events
        .iter()
        .filter(|e| matches!(e, IsmgEvent::DeliverTimeout { tag: 1, .. }))
        .collect();
    assert_eq!(timeouts.len(), 1);
    assert_eq!(p.ismg.in_flight(), 0);
    // A late answer is ignored.
    let before = p.ismg_events.len();
    p.raw(encode(
        &Pdu::DeliverResp(DeliverResp {
            msg_id: MsgId(1),
            result: ResultCode::Success,
        }),
        1,
        Version::V30,
    ));
    assert_eq!(p.ismg_events.len(), before);
}

#[test]
fn disconnect_aborts_open_delivers_in_send_order() {
    let mut p = Pair::connected(Version::V30);
    p.ismg.deliver(p.now, 7, report(1, MsgId(1))).expect("room");
    p.now += Duration::from_millis(1);
    p.ismg.deliver(p.now, 3, report(2, MsgId(1))).expect("room");
    p.ismg.handle_disconnect();
    assert_eq!(
        p.ismg.poll_transmit(),
        None,
        "requests are dropped on close"
    );
    let tags: Vec<u32> = std::iter::from_fn(|| p.ismg.poll_event())
        .filter_map(|e| match e {
            IsmgEvent::DeliverAborted { tag, .. } => Some(tag),
            _ => None,
        })
        .collect();
    assert_eq!(tags, vec![7, 3]);
    assert_eq!(p.ismg.poll_timeout(), None);
}

#[test]
fn active_test_both_ways() {
    let mut p = Pair::connected(Version::V30);
    // The SP's own ACTIVE_TEST (after its 30 s) is answered; ours goes out after 20 s of
    // silence and the SP answers it.
    p.advance(Duration::from_secs(20));
    assert!(
        p.ismg_sent
            .iter()
            .any(|(_, pdu)| matches!(pdu, Pdu::ActiveTest))
    );
    assert_eq!(p.ismg.state(), &IsmgState::Connected);
    let out = p.raw(encode(&Pdu::ActiveTest, 55, Version::V30));
    assert!(matches!(out.as_slice(), [(55, Pdu::ActiveTestResp(_))]));
}

#[test]
fn unanswered_active_tests_close_after_the_misses() {
    let mut p = Pair::connected(Version::V30);
    // The SP goes silent: drive only the ISMG.
    p.now += Duration::from_secs(20);
    p.ismg.handle_timeout(p.now);
    assert!(matches!(
        p.ismg.poll_transmit(),
        Some(Transmit {
            pdu: Pdu::ActiveTest,
            ..
        })
    ));
    p.now += Duration::from_secs(5);
    p.ismg.handle_timeout(p.now);
    assert!(matches!(
        p.ismg.poll_transmit(),
        Some(Transmit {
            pdu: Pdu::ActiveTest,
            ..
        })
    ));
    assert_eq!(p.ismg.state(), &IsmgState::Connected);
    p.now += Duration::from_secs(5);
    p.ismg.handle_timeout(p.now);
    assert_eq!(
        p.ismg.state(),
        &IsmgState::Closed(IsmgCloseReason::ActiveTestTimeout)
    );
}

#[test]
fn sp_terminate_is_answered_and_closes() {
    let mut p = Pair::connected(Version::V20);
    p.ismg.deliver(p.now, 1, report(1, MsgId(1))).expect("room");
    p.sp.terminate(p.now);
    p.drive();
    assert_eq!(
        p.ismg.state(),
        &IsmgState::Closed(IsmgCloseReason::PeerTerminate)
    );
    assert_eq!(p.sp.state(), &SpState::Closed(CloseReason::Terminated));
    assert!(
        p.ismg_events
            .iter()
            .any(|e| matches!(e, IsmgEvent::DeliverAborted { tag: 1, .. }))
            || p.ismg_events
                .iter()
                .any(|e| matches!(e, IsmgEvent::DeliverResponse { tag: 1, .. }))
    );
}

#[test]
fn ismg_terminate_waits_for_the_deliver_window() {
    let mut p = Pair::connected(Version::V30);
    let seq = p.ismg.deliver(p.now, 1, report(1, MsgId(1))).expect("room");
    p.ismg.terminate(p.now);
    assert_eq!(p.ismg.state(), &IsmgState::Terminating);
    let refused = p
        .ismg
        .deliver(p.now, 2, report(2, MsgId(1)))
        .expect_err("terminating");
    assert_eq!(refused.reason, DeliverRefuseReason::NotConnected);
    p.drive();
    assert!(
        !p.ismg_sent
            .iter()
            .any(|(_, pdu)| matches!(pdu, Pdu::Terminate))
    );
    p.sp.answer_deliver(seq, MsgId(1), ResultCode::Success);
    p.drive();
    assert_eq!(
        p.ismg.state(),
        &IsmgState::Closed(IsmgCloseReason::Terminated)
    );
    assert_eq!(p.sp.state(), &SpState::Closed(CloseReason::PeerTerminate));
}

#[test]
fn ismg_terminate_gives_up_after_the_response_timeout() {
    let mut p = Pair::connected(Version::V30);
    p.ismg.terminate(p.now);
    let Some(Transmit {
        pdu: Pdu::Terminate,
        ..
    }) = p.ismg.poll_transmit()
    else {
        panic!("TERMINATE at once: the window is empty")
    };
    p.now += Duration::from_secs(5);
    p.ismg.handle_timeout(p.now);
    assert_eq!(
        p.ismg.state(),
        &IsmgState::Closed(IsmgCloseReason::Terminated)
    );
}

#[test]
fn malformed_submit_is_answered_as_the_codec_says() {
    for version in VERSIONS {
        let mut p = Pair::connected(version);
        let mut whole = encode(&Pdu::Submit(submit("hello")), 42, version);
        // Cut the body short but keep Total_Length consistent with the bytes.
        whole.truncate(40);
        let len = whole.len() as u32;
        whole[..4].copy_from_slice(&len.to_be_bytes());
        let out = p.raw(whole);
        let [(42, Pdu::SubmitResp(r))] = out.as_slice() else {
            panic!("SUBMIT_RESP: {out:?}")
        };
        assert_ne!(r.result, ResultCode::Success);
        assert!(
            p.ismg_events
                .iter()
                .any(|e| matches!(e, IsmgEvent::Undecodable(_)))
        );
        assert_eq!(p.ismg.state(), &IsmgState::Connected);
    }
}

#[test]
fn requests_an_ismg_does_not_serve_get_a_refusal() {
    let mut p = Pair::connected(Version::V30);
    let out = p.raw(encode(&connect_pdu(0x30, SECRET), 3, Version::V30));
    assert!(matches!(
        out.as_slice(),
        [(
            3,
            Pdu::ConnectResp(ConnectResp {
                status: ConnectStatus::OtherError,
                ..
            })
        )]
    ));
    let out = p.raw(encode(&Pdu::Deliver(report(5, MsgId(6))), 4, Version::V30));
    assert!(matches!(
        out.as_slice(),
        [(
            4,
            Pdu::DeliverResp(DeliverResp {
                msg_id: MsgId(5),
                result: ResultCode::CommandWordError
            })
        )]
    ));
    assert_eq!(p.ismg.state(), &IsmgState::Connected);
}

#[test]
fn bad_total_length_closes_with_protocol() {
    let mut p = Pair::connected(Version::V30);
    let mut b = BytesMut::new();
    b.put_u32(5);
    b.put_u32(0x4);
    b.put_u32(1);
    assert!(p.raw(b).is_empty());
    assert_eq!(
        p.ismg.state(),
        &IsmgState::Closed(IsmgCloseReason::Protocol)
    );
}

const COMMANDS: [u32; 16] = [
    0x1,
    0x8000_0001,
    0x2,
    0x8000_0002,
    0x4,
    0x8000_0004,
    0x5,
    0x8000_0005,
    0x6,
    0x8000_0006,
    0x7,
    0x8000_0007,
    0x8,
    0x8000_0008,
    0x9,
    0xDEAD_BEEF,
];

fn chunk() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64),
        (
            prop::sample::select(COMMANDS.to_vec()),
            any::<u32>(),
            prop::collection::vec(any::<u8>(), 0..200)
        )
            .prop_map(|(id, seq, body)| frame(id, seq, &body).to_vec()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Random input in any state never panics, everything queued encodes, and every
    /// DELIVER leaves the window exactly once.
    #[test]
    fn random_input_never_panics(
        v30 in any::<bool>(),
        connect in any::<bool>(),
        chunks in prop::collection::vec(chunk(), 0..12),
        steps in prop::collection::vec(0u64..20, 0..12),
    ) {
        let version = if v30 { Version::V30 } else { Version::V20 };
        let mut p = if connect {
            Pair::connected(version)
        } else {
            Pair::new(sp_config(version), ismg_config(version))
        };
        let mut delivered = Vec::new();
        for tag in 0..2 {
            if p.ismg.deliver(p.now, tag, report(u64::from(tag), MsgId(1))).is_ok() {
                delivered.push(tag);
            }
        }
        let mut buf = BytesMut::new();
        for (i, c) in chunks.iter().enumerate() {
            buf.extend_from_slice(c);
            p.ismg.handle_bytes(p.now, &mut buf);
            if let Some(s) = steps.get(i) {
                p.now += Duration::from_secs(*s);
                p.ismg.handle_timeout(p.now);
            }
            let _ = p.ismg.poll_timeout();
            while let Some(e) = p.ismg.poll_event() {
                match e {
                    IsmgEvent::ConnectRequest(_) => {
                        p.ismg.answer_connect(p.now, ConnectStatus::Ok, SECRET);
                    }
                    IsmgEvent::Submit { sequence, .. } => {
                        p.ismg.respond_submit(sequence, MsgId(1), ResultCode::Success);
                    }
                    IsmgEvent::DeliverResponse { tag, .. }
                    | IsmgEvent::DeliverTimeout { tag, .. }
                    | IsmgEvent::DeliverAborted { tag, .. } => p.ismg_events.push(
                        IsmgEvent::DeliverAborted { tag, sent_at: p.now },
                    ),
                    _ => {}
                }
            }
            while let Some(t) = p.ismg.poll_transmit() {
                let mut out = BytesMut::new();
                prop_assert!(t.encode(p.ismg.version(), &mut out).is_ok());
            }
            prop_assert!(p.ismg.in_flight() <= p.ismg.config().deliver_window);
        }
        p.ismg.handle_disconnect();
        while let Some(e) = p.ismg.poll_event() {
            p.ismg_events.push(e);
        }
        let mut left: Vec<u32> = p
            .ismg_events
            .iter()
            .filter_map(|e| match e {
                IsmgEvent::DeliverResponse { tag, .. }
                | IsmgEvent::DeliverTimeout { tag, .. }
                | IsmgEvent::DeliverAborted { tag, .. } => Some(*tag),
                _ => None,
            })
            .collect();
        left.sort_unstable();
        prop_assert_eq!(left, delivered);
    }
}

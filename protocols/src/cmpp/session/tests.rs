//! SP session tests: the session and a small in-memory ISMG exchange encoded bytes on a
//! manual clock (quinn-proto's `Pair` shape), on both 2.0 and 3.0. Nothing sleeps and no
//! socket is opened.

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;

use super::*;
use crate::cmpp::{DeliverContent, StatusReport, Tolerance, decode_bytes, negotiate};
use crate::window::MAX_SEQUENCE;

const VERSIONS: [Version; 2] = [Version::V20, Version::V30];
const TIMESTAMP: u32 = 1_126_015_300;
const SECRET: &str = "secret";

/// What the fake ISMG does with a SUBMIT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// SUBMIT_RESP Result 0 with a fresh Msg_Id.
    Accept,
    /// SUBMIT_RESP with this Result.
    Result(ResultCode),
    /// Keep the sequence in `held`; the test answers later.
    Hold,
    /// Never answer.
    Silent,
}

/// A minimal ISMG, sans-IO, enough to exercise the session.
struct MiniIsmg {
    highest: Version,
    secret: &'static str,
    /// Negotiated on CONNECT.
    version: Option<Version>,
    /// Answer CONNECT with this Status whatever the check says.
    force_status: Option<ConnectStatus>,
    /// Send an all-zero AuthenticatorISMG.
    zero_auth: bool,
    answer: Answer,
    answer_active_test: bool,
    answer_terminate: bool,
    next_msg_id: u64,
    next_seq: u32,
    /// Bytes on their way to the session.
    out: BytesMut,
    held: Vec<u32>,
    /// Every PDU received, decoded, with its Sequence_Id.
    received: Vec<(u32, Pdu)>,
}

impl MiniIsmg {
    fn new(highest: Version) -> Self {
        Self {
            highest,
            secret: SECRET,
            version: None,
            force_status: None,
            zero_auth: false,
            answer: Answer::Accept,
            answer_active_test: true,
            answer_terminate: true,
            next_msg_id: 0x1000,
            next_seq: 1,
            out: BytesMut::new(),
            held: Vec::new(),
            received: Vec::new(),
        }
    }

    fn link_version(&self) -> Version {
        self.version.unwrap_or(self.highest)
    }

    fn reply(&mut self, sequence: u32, pdu: &Pdu) {
        pdu.encode(sequence, self.link_version(), &mut self.out)
            .expect("ISMG PDU encodes");
    }

    /// Sends a request of its own; returns its Sequence_Id.
    fn send(&mut self, pdu: &Pdu) -> u32 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.reply(seq, pdu);
        seq
    }

    fn submit_resp(&mut self, sequence: u32, result: ResultCode) {
        let msg_id = MsgId(self.next_msg_id);
        self.next_msg_id += 1;
        self.reply(sequence, &Pdu::SubmitResp(SubmitResp { msg_id, result }));
    }

    fn handle(&mut self, frame: Bytes) {
        let d = decode_bytes(&frame, self.link_version(), DEFAULT_MAX_LENGTH).expect("decodes");
        assert!(d.tolerated.is_empty(), "session sent a deviation");
        let seq = d.header.sequence_id;
        self.received.push((seq, d.pdu.clone()));
        match d.pdu {
            Pdu::Connect(c) => {
                let version = negotiate(c.version, self.highest).expect("known version");
                let ok = auth::verify_source(
                    c.source_addr.as_bytes(),
                    self.secret.as_bytes(),
                    c.timestamp,
                    &c.authenticator_source,
                );
                let status = self.force_status.unwrap_or(if ok {
                    ConnectStatus::Ok
                } else {
                    ConnectStatus::AuthenticationError
                });
                let authenticator_ismg = if self.zero_auth {
                    [0; 16]
                } else {
                    auth::authenticator_ismg(
                        version,
                        status,
                        &c.authenticator_source,
                        self.secret.as_bytes(),
                    )
                };
                self.version = Some(version);
                self.reply(
                    seq,
                    &Pdu::ConnectResp(ConnectResp {
                        status,
                        authenticator_ismg,
                        version: version.byte(),
                    }),
                );
            }
            Pdu::Submit(_) => match self.answer {
                Answer::Accept => self.submit_resp(seq, ResultCode::Success),
                Answer::Result(r) => self.submit_resp(seq, r),
                Answer::Hold => self.held.push(seq),
                Answer::Silent => {}
            },
            Pdu::ActiveTest if self.answer_active_test => {
                self.reply(seq, &Pdu::ActiveTestResp(ActiveTestResp::default()));
            }
            Pdu::Terminate if self.answer_terminate => self.reply(seq, &Pdu::TerminateResp),
            _ => {}
        }
    }

    fn count(&self, id: CommandId) -> usize {
        self.received
            .iter()
            .filter(|(_, p)| p.command_id() == id)
            .count()
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

fn report(deliver_id: u64, of: MsgId) -> Deliver {
    Deliver {
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
    }
}

fn config(version: Version) -> SpConfig {
    SpConfig {
        source_addr: "901234".into(),
        shared_secret: SECRET.into(),
        version,
        window: 3,
        response_timeout: Duration::from_secs(5),
        active_test_interval: Duration::from_secs(30),
        active_test_misses: 3,
        ..SpConfig::default()
    }
}

/// Session + ISMG + manual clock; every PDU goes through encode and decode.
struct Pair {
    now: Instant,
    session: SpSession<u32>,
    ismg: MiniIsmg,
    events: Vec<SpEvent<u32>>,
}

impl Pair {
    fn new(config: SpConfig, highest: Version) -> Self {
        let now = Instant::now();
        Self {
            now,
            session: SpSession::new(config, now, TIMESTAMP).expect("valid config"),
            ismg: MiniIsmg::new(highest),
            events: Vec::new(),
        }
    }

    /// Connected on `version` (both sides), events cleared.
    fn connected(version: Version) -> Self {
        let mut p = Self::new(config(version), version);
        p.drive();
        assert_eq!(p.session.state(), &SpState::Connected);
        p.events.clear();
        p
    }

    /// Moves PDUs both ways until both sides are quiet.
    fn drive(&mut self) {
        loop {
            let mut moved = false;
            while let Some(t) = self.session.poll_transmit() {
                let mut buf = BytesMut::new();
                t.encode(self.session.version(), &mut buf)
                    .expect("session PDU encodes");
                self.ismg.handle(buf.freeze());
                moved = true;
            }
            if !self.ismg.out.is_empty() {
                let mut inbound = self.ismg.out.split();
                self.session.handle_bytes(self.now, &mut inbound);
                assert!(inbound.is_empty() || self.session.is_closed());
                moved = true;
            }
            while let Some(e) = self.session.poll_event() {
                self.events.push(e);
            }
            if !moved {
                break;
            }
        }
    }

    /// Advances the clock to the session's next timer and fires it; returns the step.
    fn advance_to_timer(&mut self) -> Duration {
        let at = self.session.poll_timeout().expect("a timer is armed");
        let step = at.saturating_duration_since(self.now);
        self.now = self.now.max(at);
        self.session.handle_timeout(self.now);
        self.drive();
        step
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
        self.session.handle_timeout(self.now);
        self.drive();
    }

    fn submit(&mut self, tag: u32) -> u32 {
        let seq = self
            .session
            .submit(self.now, tag, submit("hello"))
            .expect("accepted");
        self.drive();
        seq
    }

    fn take_events(&mut self) -> Vec<SpEvent<u32>> {
        std::mem::take(&mut self.events)
    }

    fn last_sent(&self) -> (u32, Pdu) {
        self.ismg.received.last().expect("something sent").clone()
    }
}

fn frame(command_id: u32, sequence: u32, body: &[u8]) -> BytesMut {
    let mut b = BytesMut::new();
    b.put_u32(12 + body.len() as u32);
    b.put_u32(command_id);
    b.put_u32(sequence);
    b.put_slice(body);
    b
}

#[test]
fn connects_with_authenticated_connect_on_both_versions() {
    for version in VERSIONS {
        let mut p = Pair::new(config(version), version);
        p.drive();
        let (seq, pdu) = p.ismg.received[0].clone();
        assert_eq!(seq, 1);
        let Pdu::Connect(c) = pdu else {
            panic!("first PDU is CONNECT")
        };
        assert_eq!(c.source_addr.as_bytes(), b"901234");
        assert_eq!(c.version, version.byte());
        assert_eq!(c.timestamp, TIMESTAMP);
        assert!(auth::verify_source(
            b"901234",
            SECRET.as_bytes(),
            TIMESTAMP,
            &c.authenticator_source
        ));
        assert_eq!(
            p.take_events(),
            vec![SpEvent::Connected {
                version,
                ismg_auth: IsmgAuth::Verified
            }]
        );
        assert_eq!(p.session.state(), &SpState::Connected);
        assert!(p.session.can_submit());
    }
}

#[test]
fn wrong_secret_is_refused_with_a_readable_reason() {
    for version in VERSIONS {
        let mut c = config(version);
        c.shared_secret = "wrong".into();
        let mut p = Pair::new(c, version);
        p.drive();
        let reason = CloseReason::ConnectRefused(ConnectStatus::AuthenticationError);
        assert_eq!(p.take_events(), vec![SpEvent::Closed(reason.clone())]);
        assert_eq!(p.session.state(), &SpState::Closed(reason.clone()));
        assert!(reason.to_string().contains("authentication error"));
        assert_eq!(p.session.poll_timeout(), None);
    }
}

#[test]
fn every_refusal_status_is_carried() {
    for version in VERSIONS {
        for status in [
            ConnectStatus::StructureError,
            ConnectStatus::IllegalSourceAddress,
            ConnectStatus::VersionTooHigh,
            ConnectStatus::OtherError,
            ConnectStatus::Other(77),
        ] {
            let mut p = Pair::new(config(version), version);
            p.ismg.force_status = Some(status);
            p.drive();
            assert_eq!(
                p.take_events(),
                vec![SpEvent::Closed(CloseReason::ConnectRefused(status))]
            );
        }
    }
    let text = CloseReason::ConnectRefused(ConnectStatus::IllegalSourceAddress).to_string();
    assert!(text.contains("illegal source address"), "{text}");
    let text = CloseReason::ConnectRefused(ConnectStatus::VersionTooHigh).to_string();
    assert!(text.contains("version too high"), "{text}");
}

#[test]
fn ismg_authenticator_absent_or_wrong_does_not_fail_login() {
    for version in VERSIONS {
        let mut p = Pair::new(config(version), version);
        p.ismg.zero_auth = true;
        p.drive();
        assert_eq!(
            p.take_events(),
            vec![SpEvent::Connected {
                version,
                ismg_auth: IsmgAuth::Absent
            }]
        );

        let mut p = Pair::new(config(version), version);
        p.ismg.secret = "other";
        p.ismg.force_status = Some(ConnectStatus::Ok);
        p.drive();
        assert_eq!(
            p.take_events(),
            vec![SpEvent::Connected {
                version,
                ismg_auth: IsmgAuth::Mismatch
            }]
        );
    }
}

#[test]
fn downgrade_to_2_0_is_followed_for_encoding_and_decoding() {
    let mut p = Pair::new(config(Version::V30), Version::V20);
    p.drive();
    // The 2.0 CONNECT_RESP (1-byte Status) arrives while the link still decodes as 3.0.
    let mut width = Tolerated::none();
    width.insert(Tolerance::ResponseWidth);
    assert_eq!(
        p.take_events(),
        vec![
            SpEvent::Tolerated {
                command_id: CommandId::ConnectResp,
                tolerated: width
            },
            SpEvent::Connected {
                version: Version::V20,
                ismg_auth: IsmgAuth::Verified
            }
        ]
    );
    assert_eq!(p.session.version(), Version::V20);
    p.submit(1);
    assert!(matches!(
        p.take_events().as_slice(),
        [SpEvent::Response {
            tag: 1,
            result: ResultCode::Success,
            ..
        }]
    ));
    // A 3.0-only field cannot go out on the 2.0 link: refused, handed back.
    let mut s = submit("x");
    s.link_id = FixedStr::try_from("L1").expect("fits");
    let refused = p.session.submit(p.now, 2, s).expect_err("unencodable");
    assert_eq!(refused.tag, 2);
    assert!(matches!(
        refused.reason,
        RefuseReason::Unencodable(EncodeError::NotInVersion { .. })
    ));
    assert_eq!(p.session.in_flight(), 0);
}

#[test]
fn version_above_the_request_closes() {
    let mut p = Pair::new(config(Version::V20), Version::V20);
    p.session.poll_transmit().expect("CONNECT");
    let mut bytes = BytesMut::new();
    Pdu::ConnectResp(ConnectResp {
        status: ConnectStatus::Ok,
        authenticator_ismg: [0; 16],
        version: 0x30,
    })
    .encode(1, Version::V20, &mut bytes)
    .expect("encodes");
    p.session.handle_bytes(p.now, &mut bytes);
    assert_eq!(
        p.session.state(),
        &SpState::Closed(CloseReason::VersionUnsupported(0x30))
    );
}

#[test]
fn connect_timeout_closes() {
    let mut p = Pair::new(config(Version::V30), Version::V30);
    p.session.poll_transmit().expect("CONNECT");
    assert!(!p.session.can_submit());
    let refused = p
        .session
        .submit(p.now, 1, submit("x"))
        .expect_err("not connected");
    assert_eq!(refused.reason, RefuseReason::NotConnected);
    assert_eq!(p.advance_to_timer(), Duration::from_secs(5));
    assert_eq!(
        p.take_events(),
        vec![SpEvent::Closed(CloseReason::ConnectTimeout)]
    );
}

#[test]
fn bad_config_is_rejected() {
    let now = Instant::now();
    let mut c = config(Version::V30);
    c.source_addr = "9012345".into();
    assert!(matches!(
        SpSession::<u32>::new(c, now, TIMESTAMP),
        Err(ConfigError::SourceAddrTooLong(_))
    ));
    for bad in [
        0,
        1_326_000_000,
        1_132_000_000,
        1_126_240_000,
        1_126_016_000,
        99,
    ] {
        assert_eq!(
            SpSession::<u32>::new(config(Version::V30), now, bad).err(),
            Some(ConfigError::Timestamp(bad)),
            "{bad}"
        );
    }
    assert!(SpSession::<u32>::new(config(Version::V30), now, 101_000_000).is_ok());
    let mut c = config(Version::V30);
    c.shared_secret = "hunter2".into();
    let debug = format!("{c:?}");
    assert!(!debug.contains("hunter2"), "{debug}");
}

#[test]
fn window_is_enforced_and_refusal_returns_the_message() {
    for version in VERSIONS {
        let mut p = Pair::connected(version);
        p.ismg.answer = Answer::Silent;
        for tag in 0..3 {
            p.submit(tag);
        }
        assert!(!p.session.can_submit());
        let refused = p
            .session
            .submit(p.now, 9, submit("overflow"))
            .expect_err("window full");
        assert_eq!(refused.reason, RefuseReason::WindowFull);
        assert_eq!(refused.tag, 9);
        assert_eq!(refused.submit.msg_content, Bytes::from_static(b"overflow"));
        assert_eq!(p.session.in_flight(), 3);
    }
}

#[test]
fn responses_are_matched_out_of_order() {
    for version in VERSIONS {
        let mut p = Pair::connected(version);
        p.ismg.answer = Answer::Hold;
        let seqs: Vec<u32> = (10..13).map(|tag| p.submit(tag)).collect();
        assert_eq!(seqs, vec![2, 3, 4]);
        assert!(p.take_events().is_empty());
        // Answer in reverse, each with its own Msg_Id and a distinct Result.
        let results = [
            ResultCode::Success,
            ResultCode::FlowControl,
            ResultCode::Other(200),
        ];
        for (i, seq) in seqs.iter().rev().enumerate() {
            p.ismg.submit_resp(*seq, results[i]);
        }
        p.drive();
        let got: Vec<(u32, MsgId, ResultCode)> = p
            .take_events()
            .into_iter()
            .map(|e| match e {
                SpEvent::Response {
                    tag,
                    msg_id,
                    result,
                    ..
                } => (tag, msg_id, result),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (12, MsgId(0x1000), ResultCode::Success),
                (11, MsgId(0x1001), ResultCode::FlowControl),
                (10, MsgId(0x1002), ResultCode::Other(200)),
            ]
        );
        assert_eq!(p.session.in_flight(), 0);
        // A late duplicate is ignored.
        p.ismg.submit_resp(seqs[0], ResultCode::Success);
        p.drive();
        assert!(p.take_events().is_empty());
    }
}

#[test]
fn error_results_are_reported_with_their_tag() {
    for version in VERSIONS {
        let mut p = Pair::connected(version);
        p.ismg.answer = Answer::Result(ResultCode::FlowControl);
        p.submit(7);
        let events = p.take_events();
        let [SpEvent::Response { tag: 7, result, .. }] = events.as_slice() else {
            panic!("{events:?}")
        };
        assert!(result.is_throttle());
        assert!(p.session.can_submit());
    }
}

#[test]
fn response_timeout_frees_the_slot_and_reports_once() {
    for version in VERSIONS {
        let mut p = Pair::connected(version);
        p.ismg.answer = Answer::Hold;
        let t0 = p.now;
        let seq = p.submit(1);
        p.advance(Duration::from_secs(2));
        p.submit(2);
        assert_eq!(p.advance_to_timer(), Duration::from_secs(3));
        assert_eq!(
            p.take_events(),
            vec![SpEvent::ResponseTimeout {
                tag: 1,
                sent_at: t0
            }]
        );
        assert_eq!(p.session.in_flight(), 1);
        assert!(p.session.can_submit());
        // The late answer finds nothing: the entry already left.
        p.ismg.submit_resp(seq, ResultCode::Success);
        p.drive();
        assert!(p.take_events().is_empty());
        p.advance_to_timer();
        assert!(matches!(
            p.take_events().as_slice(),
            [SpEvent::ResponseTimeout { tag: 2, .. }]
        ));
    }
}

#[test]
fn disconnect_aborts_outstanding_in_send_order() {
    for version in VERSIONS {
        let mut p = Pair::connected(version);
        p.ismg.answer = Answer::Silent;
        let t0 = p.now;
        p.submit(5);
        p.advance(Duration::from_secs(1));
        p.submit(6);
        p.session.handle_disconnect();
        p.drive();
        assert_eq!(
            p.take_events(),
            vec![
                SpEvent::Aborted {
                    tag: 5,
                    sent_at: t0
                },
                SpEvent::Aborted {
                    tag: 6,
                    sent_at: t0 + Duration::from_secs(1)
                },
                SpEvent::Closed(CloseReason::Disconnected),
            ]
        );
        assert_eq!(p.session.in_flight(), 0);
        assert_eq!(p.session.poll_timeout(), None);
        // Nothing more once closed.
        p.session.handle_disconnect();
        p.session.handle_timeout(p.now + Duration::from_secs(100));
        assert_eq!(p.session.poll_event(), None);
    }
}

#[test]
fn active_test_from_ismg_is_answered() {
    for version in VERSIONS {
        let mut p = Pair::connected(version);
        let seq = p.ismg.send(&Pdu::ActiveTest);
        p.drive();
        assert_eq!(
            p.last_sent(),
            (seq, Pdu::ActiveTestResp(ActiveTestResp::default()))
        );
        assert!(p.take_events().is_empty());
    }
}

#[test]
fn active_test_after_silence_keeps_the_link() {
    for version in VERSIONS {
        let mut p = Pair::connected(version);
        assert_eq!(p.advance_to_timer(), Duration::from_secs(30));
        assert_eq!(p.ismg.count(CommandId::ActiveTest), 1);
        // Answered: the next one is a full interval later.
        assert_eq!(p.advance_to_timer(), Duration::from_secs(30));
        assert_eq!(p.ismg.count(CommandId::ActiveTest), 2);
        // Traffic from the ISMG pushes the timer back.
        p.advance(Duration::from_secs(20));
        p.ismg.send(&Pdu::ActiveTest);
        p.drive();
        assert_eq!(p.advance_to_timer(), Duration::from_secs(30));
        assert_eq!(p.ismg.count(CommandId::ActiveTest), 3);
        assert_eq!(p.session.state(), &SpState::Connected);
    }
}

#[test]
fn unanswered_active_tests_close_after_the_misses() {
    for version in VERSIONS {
        let mut p = Pair::connected(version);
        p.ismg.answer_active_test = false;
        p.ismg.answer = Answer::Silent;
        let start = p.now;
        assert_eq!(p.advance_to_timer(), Duration::from_secs(30));
        let t = p.now;
        p.submit(1);
        // Misses 1 and 2 resend; the submit times out in between.
        assert_eq!(p.advance_to_timer(), Duration::from_secs(5));
        assert_eq!(p.ismg.count(CommandId::ActiveTest), 2);
        assert_eq!(
            p.take_events(),
            vec![SpEvent::ResponseTimeout { tag: 1, sent_at: t }]
        );
        assert_eq!(p.advance_to_timer(), Duration::from_secs(5));
        assert_eq!(p.ismg.count(CommandId::ActiveTest), 3);
        p.submit(2);
        assert_eq!(p.advance_to_timer(), Duration::from_secs(5));
        assert_eq!(p.now - start, Duration::from_secs(45));
        assert_eq!(p.ismg.count(CommandId::ActiveTest), 3);
        assert_eq!(
            p.take_events(),
            vec![
                SpEvent::Aborted {
                    tag: 2,
                    sent_at: t + Duration::from_secs(10)
                },
                SpEvent::Closed(CloseReason::ActiveTestTimeout)
            ]
        );
    }
}

#[test]
fn any_pdu_resets_the_miss_count() {
    let mut p = Pair::connected(Version::V30);
    p.ismg.answer_active_test = false;
    p.advance_to_timer(); // first ACTIVE_TEST
    p.advance_to_timer(); // miss 1, resend
    p.advance_to_timer(); // miss 2, resend
    p.ismg.send(&Pdu::Deliver(Box::new(report(1, MsgId(1)))));
    p.drive();
    p.advance_to_timer(); // silence again: a fresh ACTIVE_TEST, count restarted
    p.advance_to_timer();
    p.advance_to_timer();
    assert_eq!(p.session.state(), &SpState::Connected);
    p.advance_to_timer();
    assert_eq!(
        p.session.state(),
        &SpState::Closed(CloseReason::ActiveTestTimeout)
    );
}

#[test]
fn status_report_is_answered_only_when_the_caller_says() {
    for version in VERSIONS {
        let mut p = Pair::connected(version);
        p.submit(1);
        let msg_id = match p.take_events().as_slice() {
            [SpEvent::Response { msg_id, .. }] => *msg_id,
            other => panic!("{other:?}"),
        };
        let d = report(0xABCD, msg_id);
        let seq = p.ismg.send(&Pdu::Deliver(Box::new(d.clone())));
        p.drive();
        let events = p.take_events();
        let [SpEvent::Deliver { sequence, deliver }] = events.as_slice() else {
            panic!("{events:?}")
        };
        assert_eq!(*sequence, seq);
        assert_eq!(**deliver, d);
        assert_eq!(deliver.report().expect("a report").msg_id, msg_id);
        // Not answered yet, even after time passes and other traffic flows.
        p.advance(Duration::from_secs(1));
        p.submit(2);
        assert_eq!(p.ismg.count(CommandId::DeliverResp), 0);
        p.session.answer_deliver(seq, d.msg_id, ResultCode::Success);
        p.drive();
        assert_eq!(
            p.last_sent(),
            (
                seq,
                Pdu::DeliverResp(DeliverResp {
                    msg_id: MsgId(0xABCD),
                    result: ResultCode::Success
                })
            )
        );
    }
}

#[test]
fn mo_that_could_not_be_kept_is_answered_with_flow_control() {
    for version in VERSIONS {
        let mut p = Pair::connected(version);
        let mo = Deliver {
            msg_id: MsgId(77),
            src_terminal_id: FixedStr::try_from("13800138000").expect("fits"),
            content: DeliverContent::Message(Bytes::from_static(b"TD")),
            ..Deliver::default()
        };
        let seq = p.ismg.send(&Pdu::Deliver(Box::new(mo)));
        p.drive();
        assert!(matches!(
            p.take_events().as_slice(),
            [SpEvent::Deliver { deliver, .. }] if deliver.report().is_none()
        ));
        p.session
            .answer_deliver(seq, MsgId(77), ResultCode::FlowControl);
        // A code too wide for 2.0 still gets an answer.
        p.session
            .answer_deliver(seq, MsgId(78), ResultCode::Other(300));
        p.drive();
        let n = p.ismg.received.len();
        assert_eq!(
            p.ismg.received[n - 2],
            (
                seq,
                Pdu::DeliverResp(DeliverResp {
                    msg_id: MsgId(77),
                    result: ResultCode::FlowControl
                })
            )
        );
        let want = match version {
            Version::V20 => ResultCode::FeeTerminalNotServed,
            Version::V30 => ResultCode::Other(300),
        };
        assert_eq!(
            p.ismg.received[n - 1],
            (
                seq,
                Pdu::DeliverResp(DeliverResp {
                    msg_id: MsgId(78),
                    result: want
                })
            )
        );
    }
}

#[test]
fn deliver_before_login_is_left_for_the_ismg_to_resend() {
    let mut p = Pair::new(config(Version::V30), Version::V30);
    p.session.poll_transmit().expect("CONNECT");
    let mut bytes = BytesMut::new();
    Pdu::Deliver(Box::new(report(1, MsgId(2))))
        .encode(9, Version::V30, &mut bytes)
        .expect("encodes");
    p.session.handle_bytes(p.now, &mut bytes);
    assert_eq!(p.session.poll_transmit(), None);
    assert_eq!(p.session.poll_event(), None);
}

#[test]
fn peer_terminate_is_answered_and_aborts_the_window() {
    for version in VERSIONS {
        let mut p = Pair::connected(version);
        p.ismg.answer = Answer::Silent;
        p.submit(1);
        p.submit(2);
        let seq = p.ismg.send(&Pdu::Terminate);
        p.drive();
        assert_eq!(p.last_sent(), (seq, Pdu::TerminateResp));
        let events = p.take_events();
        assert!(matches!(
            events.as_slice(),
            [
                SpEvent::Aborted { tag: 1, .. },
                SpEvent::Aborted { tag: 2, .. },
                SpEvent::Closed(CloseReason::PeerTerminate)
            ]
        ));
    }
}

#[test]
fn requests_not_yet_written_are_dropped_on_close() {
    let mut p = Pair::connected(Version::V30);
    p.session
        .submit(p.now, 1, submit("queued"))
        .expect("accepted");
    let mut bytes = frame(CommandId::Terminate.raw(), 40, &[]);
    p.session.handle_bytes(p.now, &mut bytes);
    assert_eq!(
        p.session.poll_transmit(),
        Some(Transmit {
            sequence_id: 40,
            pdu: Pdu::TerminateResp
        })
    );
    assert_eq!(p.session.poll_transmit(), None);
    assert!(matches!(
        p.session.poll_event(),
        Some(SpEvent::Aborted { tag: 1, .. })
    ));
}

#[test]
fn terminate_waits_for_the_window_then_closes_on_terminate_resp() {
    for version in VERSIONS {
        let mut p = Pair::connected(version);
        p.ismg.answer = Answer::Hold;
        p.submit(1);
        p.submit(2);
        p.session.terminate(p.now);
        p.drive();
        assert_eq!(p.session.state(), &SpState::Terminating);
        assert_eq!(p.ismg.count(CommandId::Terminate), 0);
        let refused = p
            .session
            .submit(p.now, 3, submit("late"))
            .expect_err("terminating");
        assert_eq!(refused.reason, RefuseReason::NotConnected);
        // A DELIVER still arrives and can be answered while terminating.
        let seq = p.ismg.send(&Pdu::Deliver(Box::new(report(5, MsgId(6)))));
        p.drive();
        p.session.answer_deliver(seq, MsgId(5), ResultCode::Success);
        p.drive();
        assert_eq!(p.ismg.count(CommandId::DeliverResp), 1);
        let held = std::mem::take(&mut p.ismg.held);
        for s in held {
            p.ismg.submit_resp(s, ResultCode::Success);
        }
        p.drive();
        assert_eq!(p.ismg.count(CommandId::Terminate), 1);
        let events = p.take_events();
        assert!(
            matches!(
                events.as_slice(),
                [
                    SpEvent::Deliver { .. },
                    SpEvent::Response { tag: 1, .. },
                    SpEvent::Response { tag: 2, .. },
                    SpEvent::Closed(CloseReason::Terminated)
                ]
            ),
            "{events:?}"
        );
    }
}

#[test]
fn terminate_gives_up_after_timeouts() {
    for version in VERSIONS {
        let mut p = Pair::connected(version);
        p.ismg.answer = Answer::Silent;
        p.ismg.answer_terminate = false;
        p.submit(1);
        p.advance(Duration::from_secs(1));
        p.session.terminate(p.now);
        p.drive();
        // The SUBMIT times out (4 s), then TERMINATE goes out and waits 5 s.
        assert_eq!(p.advance_to_timer(), Duration::from_secs(4));
        assert_eq!(p.ismg.count(CommandId::Terminate), 1);
        assert_eq!(p.advance_to_timer(), Duration::from_secs(5));
        let events = p.take_events();
        assert!(matches!(
            events.as_slice(),
            [
                SpEvent::ResponseTimeout { tag: 1, .. },
                SpEvent::Closed(CloseReason::Terminated)
            ]
        ));
        // Terminate on an idle link goes out at once; no ACTIVE_TEST while terminating.
        let mut p = Pair::connected(version);
        p.ismg.answer_terminate = false;
        p.session.terminate(p.now);
        p.drive();
        assert_eq!(p.ismg.count(CommandId::Terminate), 1);
        assert_eq!(p.advance_to_timer(), Duration::from_secs(5));
        assert_eq!(p.ismg.count(CommandId::ActiveTest), 0);
        assert!(p.session.is_closed());
    }
}

#[test]
fn sequence_ids_wrap_and_skip_outstanding() {
    let mut p = Pair::connected(Version::V30);
    p.session.config.window = 8;
    p.ismg.answer = Answer::Hold;
    assert_eq!(p.submit(1), 2);
    p.session.window.set_next_sequence(MAX_SEQUENCE);
    assert_eq!(p.submit(2), MAX_SEQUENCE);
    assert_eq!(p.submit(3), 1);
    assert_eq!(p.submit(4), 3, "2 is still in the window");
    let held = p.ismg.held.clone();
    assert_eq!(held, vec![2, MAX_SEQUENCE, 1, 3]);
    for s in held {
        p.ismg.submit_resp(s, ResultCode::Success);
    }
    p.drive();
    let tags: Vec<u32> = p
        .take_events()
        .into_iter()
        .filter_map(|e| match e {
            SpEvent::Response { tag, .. } => Some(tag),
            _ => None,
        })
        .collect();
    assert_eq!(tags, vec![1, 2, 3, 4]);
}

#[test]
fn malformed_deliver_is_answered_with_the_codec_result() {
    for version in VERSIONS {
        let mut p = Pair::connected(version);
        let mut body = 0x0102_0304_0506_0708u64.to_be_bytes().to_vec();
        body.extend_from_slice(b"1069");
        let mut bytes = frame(CommandId::Deliver.raw(), 33, &body);
        p.session.handle_bytes(p.now, &mut bytes);
        assert_eq!(
            p.session.poll_transmit(),
            Some(Transmit {
                sequence_id: 33,
                pdu: Pdu::DeliverResp(DeliverResp {
                    msg_id: MsgId(0x0102_0304_0506_0708),
                    result: ResultCode::MessageLengthError
                })
            })
        );
        assert!(matches!(
            p.session.poll_event(),
            Some(SpEvent::Undecodable(e)) if e.header.sequence_id == 33
        ));
        assert_eq!(p.session.state(), &SpState::Connected);
    }
}

#[test]
fn unknown_command_is_reported_not_answered() {
    let mut p = Pair::connected(Version::V20);
    let mut bytes = frame(CommandId::Fwd.raw(), 3, &[1, 2, 3]);
    bytes.extend_from_slice(&frame(0x0000_0099, 4, &[]));
    p.session.handle_bytes(p.now, &mut bytes);
    assert_eq!(p.session.poll_transmit(), None);
    assert!(matches!(
        p.session.poll_event(),
        Some(SpEvent::Undecodable(_))
    ));
    assert!(matches!(
        p.session.poll_event(),
        Some(SpEvent::Undecodable(_))
    ));
    assert_eq!(p.session.state(), &SpState::Connected);
}

#[test]
fn requests_an_sp_does_not_serve_get_a_refusal() {
    let mut p = Pair::connected(Version::V30);
    let seq = p.ismg.send(&Pdu::Submit(submit("from the ISMG?")));
    p.drive();
    assert_eq!(
        p.last_sent(),
        (
            seq,
            Pdu::SubmitResp(SubmitResp {
                msg_id: MsgId(0),
                result: ResultCode::CommandWordError
            })
        )
    );
}

#[test]
fn bad_total_length_closes_with_protocol() {
    for bad in [5u32, 1_000_000] {
        let mut p = Pair::connected(Version::V30);
        p.ismg.answer = Answer::Silent;
        p.submit(1);
        let mut bytes = BytesMut::new();
        bytes.put_u32(bad);
        bytes.put_u32(CommandId::Deliver.raw());
        bytes.put_u32(1);
        bytes.put_slice(&[0; 40]);
        p.session.handle_bytes(p.now, &mut bytes);
        assert!(bytes.is_empty());
        p.drive();
        assert!(matches!(
            p.take_events().as_slice(),
            [
                SpEvent::Aborted { tag: 1, .. },
                SpEvent::Closed(CloseReason::Protocol)
            ]
        ));
    }
}

#[test]
fn malformed_connect_resp_closes() {
    let mut p = Pair::new(config(Version::V30), Version::V30);
    p.session.poll_transmit().expect("CONNECT");
    let mut bytes = frame(CommandId::ConnectResp.raw(), 1, &[0, 0, 0]);
    p.session.handle_bytes(p.now, &mut bytes);
    assert!(matches!(
        p.session.poll_event(),
        Some(SpEvent::Undecodable(_))
    ));
    assert_eq!(
        p.session.poll_event(),
        Some(SpEvent::Closed(CloseReason::MalformedConnectResp))
    );
}

#[test]
fn tolerated_deviations_are_reported() {
    let mut p = Pair::connected(Version::V30);
    p.advance_to_timer(); // ACTIVE_TEST out; the ISMG's answer is replaced below
    let mut bytes = frame(CommandId::ActiveTestResp.raw(), 99, &[]);
    p.session.handle_bytes(p.now, &mut bytes);
    let mut tolerated = Tolerated::none();
    tolerated.insert(Tolerance::MissingTrailer);
    assert_eq!(
        p.session.poll_event(),
        Some(SpEvent::Tolerated {
            command_id: CommandId::ActiveTestResp,
            tolerated
        })
    );
}

#[test]
fn split_frames_are_reassembled_by_the_caller_buffer() {
    let mut p = Pair::connected(Version::V20);
    let mut whole = BytesMut::new();
    Pdu::Deliver(Box::new(report(3, MsgId(4))))
        .encode(8, Version::V20, &mut whole)
        .expect("encodes");
    let mut buf = whole.split_to(20);
    p.session.handle_bytes(p.now, &mut buf);
    assert_eq!(buf.len(), 20, "an incomplete frame stays in the buffer");
    assert_eq!(p.session.poll_event(), None);
    buf.extend_from_slice(&whole);
    p.session.handle_bytes(p.now, &mut buf);
    assert!(buf.is_empty());
    assert!(matches!(
        p.session.poll_event(),
        Some(SpEvent::Deliver { sequence: 8, .. })
    ));
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

/// Raw bytes, or a frame with a real header and a random body (which gets further).
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

    /// Random input in any state never panics, and every SUBMIT still leaves the window
    /// exactly once.
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
            Pair::new(config(version), version)
        };
        p.ismg.answer = Answer::Silent;
        let mut submitted = Vec::new();
        for tag in 0..2 {
            if p.session.submit(p.now, tag, submit("x")).is_ok() {
                submitted.push(tag);
            }
        }
        let mut buf = BytesMut::new();
        for (i, c) in chunks.iter().enumerate() {
            buf.extend_from_slice(c);
            p.session.handle_bytes(p.now, &mut buf);
            if let Some(s) = steps.get(i) {
                p.now += Duration::from_secs(*s);
                p.session.handle_timeout(p.now);
            }
            let _ = p.session.poll_timeout();
            while let Some(t) = p.session.poll_transmit() {
                let mut out = BytesMut::new();
                prop_assert!(t.encode(p.session.version(), &mut out).is_ok());
            }
            prop_assert!(p.session.in_flight() <= p.session.config().window);
        }
        p.session.handle_disconnect();
        let mut left = Vec::new();
        while let Some(e) = p.session.poll_event() {
            match e {
                SpEvent::Response { tag, .. }
                | SpEvent::ResponseTimeout { tag, .. }
                | SpEvent::Aborted { tag, .. } => left.push(tag),
                _ => {}
            }
        }
        left.sort_unstable();
        prop_assert_eq!(left, submitted);
    }
}

//! Session tests: the session and a small in-memory center exchange encoded bytes on a
//! manual clock (quinn-proto's `Pair` shape). Nothing sleeps.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::smpp::Octets;
use crate::smpp::{Address, BindResp, Command, CommandStatus, MessageIdResp, Pdu, Sm, decode};
use bytes::{Bytes, BytesMut};

use super::*;
use crate::window::MAX_SEQUENCE;

/// What the fake center does with a submit_sm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// submit_sm_resp ROK with a hex id.
    Accept,
    /// Answer with this status.
    Status(CommandStatus),
    /// Never answer.
    Silent,
}

/// A minimal SMSC, sans-IO, enough to exercise the session.
struct MiniCenter {
    bind_status: CommandStatus,
    answer: Answer,
    answer_enquire_link: bool,
    next_id: u32,
    next_seq: u32,
    out: VecDeque<Command>,
    /// Every command received, decoded.
    received: Vec<Command>,
}

impl MiniCenter {
    fn new() -> Self {
        Self {
            bind_status: CommandStatus::EsmeRok,
            answer: Answer::Accept,
            answer_enquire_link: true,
            next_id: 0x1A2B,
            next_seq: 1,
            out: VecDeque::new(),
            received: Vec::new(),
        }
    }

    fn handle(&mut self, c: Command) {
        self.received.push(c.clone());
        let seq = c.sequence;
        let reply = match c.pdu {
            Pdu::BindTransceiver(_) => Some(Pdu::BindTransceiverResp(BindResp {
                system_id: Octets::from_static(b"mini"),
                ..BindResp::default()
            })),
            Pdu::BindTransmitter(_) => Some(Pdu::BindTransmitterResp(BindResp::default())),
            Pdu::BindReceiver(_) => Some(Pdu::BindReceiverResp(BindResp::default())),
            Pdu::SubmitSm(_) => match self.answer {
                Answer::Silent => None,
                Answer::Accept => {
                    let id = format!("{:X}", self.next_id);
                    self.next_id += 1;
                    Some(Pdu::SubmitSmResp(MessageIdResp::new(id)))
                }
                Answer::Status(status) => {
                    self.out.push_back(Command::new(
                        status,
                        seq,
                        Pdu::SubmitSmResp(MessageIdResp::default()),
                    ));
                    None
                }
            },
            Pdu::EnquireLink if self.answer_enquire_link => Some(Pdu::EnquireLinkResp),
            Pdu::Unbind => Some(Pdu::UnbindResp),
            _ => None,
        };
        if let Some(pdu) = reply {
            let status = if matches!(
                pdu,
                Pdu::BindTransceiverResp(_)
                    | Pdu::BindTransmitterResp(_)
                    | Pdu::BindReceiverResp(_)
            ) {
                self.bind_status
            } else {
                CommandStatus::EsmeRok
            };
            self.out.push_back(Command::new(status, seq, pdu));
        }
    }

    fn request(&mut self, pdu: Pdu) -> u32 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.out.push_back(Command::request(seq, pdu));
        seq
    }
}

fn receipt(id: &str) -> Sm {
    Sm {
        source: Address::new(1, 1, "8613800138000"),
        dest: Address::new(0, 0, "10086"),
        esm_class: 0x04,
        short_message: Octets::from(format!(
            "id:{id} sub:001 dlvrd:001 submit date:2611260100 done date:2611260101 stat:DELIVRD err:000 text:hi"
        )),
        ..Sm::default()
    }
}

fn sm(text: &str) -> Box<Sm> {
    Box::new(Sm {
        source: Address::new(0, 0, "10086"),
        dest: Address::new(1, 1, "8613800138000"),
        registered_delivery: 1,
        short_message: Octets::from(text.to_owned()),
        ..Sm::default()
    })
}

/// Session + center + manual clock; every PDU goes through encode and decode.
struct Pair {
    now: Instant,
    session: Session<u32>,
    center: MiniCenter,
    events: Vec<Event<u32>>,
}

impl Pair {
    fn new(config: SessionConfig) -> Self {
        let now = Instant::now();
        Self {
            now,
            session: Session::new(config, now),
            center: MiniCenter::new(),
            events: Vec::new(),
        }
    }

    fn wire(c: &Command) -> Command {
        let mut buf = BytesMut::new();
        c.encode(&mut buf).expect("encodes");
        decode(buf.freeze()).expect("decodes").command
    }

    /// Moves PDUs both ways until both sides are quiet.
    fn drive(&mut self) {
        loop {
            let mut moved = false;
            while let Some(c) = self.session.poll_transmit() {
                self.center.handle(Self::wire(&c));
                moved = true;
            }
            while let Some(c) = self.center.out.pop_front() {
                self.session.handle_pdu(self.now, Self::wire(&c));
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

    /// Advances the clock to the session's next timer and fires it.
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

    fn take_events(&mut self) -> Vec<Event<u32>> {
        std::mem::take(&mut self.events)
    }
}

fn config() -> SessionConfig {
    SessionConfig {
        system_id: "esme".into(),
        password: "secret".into(),
        window: 3,
        response_timeout: Duration::from_secs(5),
        enquire_link_interval: Duration::from_secs(30),
        ..SessionConfig::default()
    }
}

fn bound() -> Pair {
    let mut p = Pair::new(config());
    p.drive();
    assert_eq!(p.session.state(), &State::Bound);
    assert_eq!(
        p.take_events(),
        vec![Event::Bound {
            system_id: Octets::from_static(b"mini")
        }]
    );
    p
}

#[test]
fn binds_with_configured_credentials() {
    let p = bound();
    match &p.center.received[0].pdu {
        Pdu::BindTransceiver(b) => {
            assert_eq!(b.system_id.as_ref(), b"esme");
            assert_eq!(b.password.as_ref(), b"secret");
            assert_eq!(b.interface_version, 0x34);
        }
        other => panic!("expected bind_transceiver, got {other:?}"),
    }
}

#[test]
fn bind_rejected_closes() {
    let mut p = Pair::new(config());
    p.center.bind_status = CommandStatus::EsmeRinvpaswd;
    p.drive();
    assert_eq!(
        p.take_events(),
        vec![Event::Closed(CloseReason::BindRejected(
            CommandStatus::EsmeRinvpaswd
        ))]
    );
    assert!(p.session.poll_timeout().is_none());
}

#[test]
fn bind_timeout_closes() {
    let mut p = Pair::new(config());
    // Swallow the bind.
    assert!(p.session.poll_transmit().is_some());
    assert_eq!(p.advance_to_timer(), Duration::from_secs(5));
    assert_eq!(
        p.take_events(),
        vec![Event::Closed(CloseReason::BindTimeout)]
    );
}

#[test]
fn submit_matches_responses_by_sequence() {
    let mut p = bound();
    assert!(p.session.can_submit());
    p.session.submit(p.now, 10, sm("a")).unwrap();
    p.session.submit(p.now, 11, sm("b")).unwrap();
    assert_eq!(p.session.in_flight(), 2);
    p.drive();
    let events = p.take_events();
    assert_eq!(events.len(), 2);
    let ids: Vec<(u32, Octets)> = events
        .into_iter()
        .map(|e| match e {
            Event::Response {
                tag,
                status,
                message_id,
                ..
            } => {
                assert!(status.is_ok());
                (tag, message_id)
            }
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        ids,
        vec![
            (10, Octets::from_static(b"1A2B")),
            (11, Octets::from_static(b"1A2C"))
        ]
    );
    assert_eq!(p.session.in_flight(), 0);
}

#[test]
fn window_is_enforced_and_refusal_returns_the_message() {
    let mut p = bound();
    p.center.answer = Answer::Silent;
    for tag in 0..3 {
        p.session.submit(p.now, tag, sm("x")).unwrap();
    }
    assert!(!p.session.can_submit());
    let refused = p.session.submit(p.now, 99, sm("kept")).unwrap_err();
    assert_eq!(refused.reason, RefuseReason::WindowFull);
    assert_eq!(refused.tag, 99);
    assert_eq!(refused.sm.short_message.as_ref(), b"kept");
}

#[test]
fn response_timeout_frees_the_window_slot() {
    let mut p = bound();
    p.center.answer = Answer::Silent;
    let t0 = p.now;
    p.session.submit(p.now, 1, sm("x")).unwrap();
    p.drive();
    p.advance(Duration::from_secs(2));
    p.session.submit(p.now, 2, sm("y")).unwrap();
    p.drive();
    // First deadline at t0 + 5 s.
    assert_eq!(p.session.poll_timeout(), Some(t0 + Duration::from_secs(5)));
    p.advance_to_timer();
    assert_eq!(
        p.take_events(),
        vec![Event::ResponseTimeout {
            tag: 1,
            sent_at: t0
        }]
    );
    assert_eq!(p.session.in_flight(), 1);
    p.advance_to_timer();
    assert_eq!(
        p.take_events(),
        vec![Event::ResponseTimeout {
            tag: 2,
            sent_at: t0 + Duration::from_secs(2)
        }]
    );
    // A late response for a timed-out sequence is ignored.
    p.session.handle_pdu(
        p.now,
        Command::new(
            CommandStatus::EsmeRok,
            2,
            Pdu::SubmitSmResp(MessageIdResp::new("late")),
        ),
    );
    assert!(p.session.poll_event().is_none());
}

#[test]
fn error_statuses_are_reported_with_their_tag() {
    let mut p = bound();
    p.center.answer = Answer::Status(CommandStatus::EsmeRthrottled);
    p.session.submit(p.now, 7, sm("x")).unwrap();
    p.drive();
    match p.take_events().as_slice() {
        [Event::Response { tag: 7, status, .. }] => {
            assert_eq!(*status, CommandStatus::EsmeRthrottled);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn generic_nack_answers_the_submit_it_names() {
    let mut p = bound();
    p.center.answer = Answer::Silent;
    let seq = p.session.submit(p.now, 5, sm("x")).unwrap();
    p.drive();
    p.center.out.push_back(Command::new(
        CommandStatus::EsmeRinvcmdlen,
        seq,
        Pdu::GenericNack,
    ));
    p.drive();
    assert!(matches!(
        p.take_events().as_slice(),
        [Event::Response {
            tag: 5,
            status: CommandStatus::EsmeRinvcmdlen,
            ..
        }]
    ));
}

#[test]
fn generic_nack_with_ok_status_is_a_system_error() {
    let mut p = bound();
    p.center.answer = Answer::Silent;
    let seq = p.session.submit(p.now, 6, sm("x")).unwrap();
    p.drive();
    p.center
        .out
        .push_back(Command::new(CommandStatus::EsmeRok, seq, Pdu::GenericNack));
    p.drive();
    assert!(matches!(
        p.take_events().as_slice(),
        [Event::Response {
            tag: 6,
            status: CommandStatus::EsmeRsyserr,
            ..
        }]
    ));
}

#[test]
fn answers_deliver_sm_and_reports_it() {
    let mut p = bound();
    let seq = p.center.request(Pdu::DeliverSm(receipt("1A2B")));
    p.drive();
    // Not answered until the caller says the receipt is safe.
    assert!(
        !p.center
            .received
            .iter()
            .any(|c| matches!(c.pdu, Pdu::DeliverSmResp(_)))
    );
    match p.take_events().as_slice() {
        [
            Event::Deliver {
                sequence,
                data_sm: false,
                sm,
            },
        ] => {
            assert_eq!(*sequence, seq);
            assert!(sm.is_delivery_receipt());
        }
        other => panic!("unexpected {other:?}"),
    }
    p.session.answer_deliver(seq, false, CommandStatus::EsmeRok);
    p.drive();
    let resp = p.center.received.last().unwrap();
    assert_eq!(resp.sequence, seq);
    assert_eq!(resp.status, CommandStatus::EsmeRok);
    assert!(matches!(resp.pdu, Pdu::DeliverSmResp(_)));
}

#[test]
fn dlr_before_submit_resp_is_still_delivered() {
    // The center sends the receipt first, then the response: both surface, in that order.
    let mut p = bound();
    p.center.answer = Answer::Silent;
    let seq = p.session.submit(p.now, 3, sm("x")).unwrap();
    p.drive();
    p.center.request(Pdu::DeliverSm(receipt("77")));
    p.center.out.push_back(Command::new(
        CommandStatus::EsmeRok,
        seq,
        Pdu::SubmitSmResp(MessageIdResp::new("77")),
    ));
    p.drive();
    let events = p.take_events();
    assert!(matches!(events[0], Event::Deliver { .. }));
    assert!(
        matches!(&events[1], Event::Response { tag: 3, message_id, .. } if message_id.as_ref() == b"77")
    );
}

#[test]
fn deliver_on_transmitter_bind_gets_rinvbndsts() {
    let mut p = Pair::new(SessionConfig {
        bind_kind: BindKind::Transmitter,
        ..config()
    });
    p.drive();
    p.take_events();
    p.center.request(Pdu::DeliverSm(receipt("1")));
    p.drive();
    let resp = p.center.received.last().unwrap();
    assert_eq!(resp.status, CommandStatus::EsmeRinvbndsts);
    assert!(p.take_events().is_empty());
}

#[test]
fn receiver_bind_cannot_submit() {
    let mut p = Pair::new(SessionConfig {
        bind_kind: BindKind::Receiver,
        ..config()
    });
    p.drive();
    assert_eq!(p.session.state(), &State::Bound);
    let refused = p.session.submit(p.now, 1, sm("x")).unwrap_err();
    assert_eq!(refused.reason, RefuseReason::NotBound);
}

#[test]
fn enquire_link_from_center_is_answered() {
    let mut p = bound();
    let seq = p.center.request(Pdu::EnquireLink);
    p.drive();
    let resp = p.center.received.last().unwrap();
    assert_eq!((resp.sequence, &resp.pdu), (seq, &Pdu::EnquireLinkResp));
}

#[test]
fn enquire_link_sent_after_silence_and_kept_alive() {
    let mut p = bound();
    let step = p.advance_to_timer();
    assert_eq!(step, Duration::from_secs(30));
    assert_eq!(p.center.received.last().unwrap().pdu, Pdu::EnquireLink);
    // Answered: next one 30 s after the answer.
    assert_eq!(p.session.state(), &State::Bound);
    assert_eq!(p.advance_to_timer(), Duration::from_secs(30));
    let links = p
        .center
        .received
        .iter()
        .filter(|c| c.pdu == Pdu::EnquireLink)
        .count();
    assert_eq!(links, 2);
}

#[test]
fn unanswered_enquire_link_closes_and_aborts_window() {
    let mut p = bound();
    p.center.answer = Answer::Silent;
    p.center.answer_enquire_link = false;
    let t0 = p.now;
    p.session.submit(p.now, 1, sm("x")).unwrap();
    p.session.submit(p.now, 2, sm("y")).unwrap();
    p.drive();
    // Submits time out at 5 s; enquire_link goes out at 30 s, dies at 35 s.
    p.advance_to_timer();
    let timeouts = p.take_events();
    assert_eq!(timeouts.len(), 2);
    p.session.submit(p.now, 3, sm("z")).unwrap();
    p.drive();
    p.advance(Duration::from_secs(4));
    p.session.handle_timeout(p.now);
    let mut guard = 0;
    while !p.session.is_closed() {
        p.advance_to_timer();
        guard += 1;
        assert!(guard < 10, "session never closed");
    }
    let events = p.take_events();
    assert_eq!(
        events.last(),
        Some(&Event::Closed(CloseReason::EnquireLinkTimeout))
    );
    assert!(p.now >= t0 + Duration::from_secs(35));
    // Submit 3 timed out before the link died (5 s after 5 s), so nothing aborted here.
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::ResponseTimeout { tag: 3, .. }))
    );
}

#[test]
fn disconnect_aborts_outstanding_in_send_order() {
    let mut p = bound();
    p.center.answer = Answer::Silent;
    for tag in [4, 5, 6] {
        p.session.submit(p.now, tag, sm("x")).unwrap();
        p.now += Duration::from_millis(1);
    }
    p.drive();
    p.session.handle_disconnect();
    let tags: Vec<u32> = std::iter::from_fn(|| p.session.poll_event())
        .filter_map(|e| match e {
            Event::Aborted { tag, .. } => Some(tag),
            _ => None,
        })
        .collect();
    assert_eq!(tags, vec![4, 5, 6]);
    assert!(p.session.is_closed());
}

#[test]
fn graceful_unbind() {
    let mut p = bound();
    p.center.answer = Answer::Silent;
    p.session.submit(p.now, 1, sm("x")).unwrap();
    p.drive();
    p.session.unbind(p.now);
    assert_eq!(p.session.state(), &State::Unbinding);
    assert!(!p.session.can_submit());
    // Deliveries are still taken while unbinding.
    p.center.request(Pdu::DeliverSm(receipt("9")));
    p.drive();
    let events = p.take_events();
    assert!(matches!(events[0], Event::Deliver { .. }));
    // The center answered the unbind in the same drive; the open submit is aborted.
    assert_eq!(
        &events[1..],
        &[
            Event::Aborted {
                tag: 1,
                sent_at: p.now
            },
            Event::Closed(CloseReason::Unbound)
        ]
    );
}

#[test]
fn peer_unbind_is_answered_and_closes() {
    let mut p = bound();
    let seq = p.center.request(Pdu::Unbind);
    p.drive();
    let resp = p.center.received.last().unwrap();
    assert_eq!((resp.sequence, &resp.pdu), (seq, &Pdu::UnbindResp));
    assert_eq!(
        p.take_events(),
        vec![Event::Closed(CloseReason::PeerUnbind)]
    );
}

#[test]
fn garbage_gets_generic_nack() {
    let mut p = bound();
    // Unknown command id 0x00000077, sequence 42.
    let mut raw = Vec::new();
    raw.extend_from_slice(&16u32.to_be_bytes());
    raw.extend_from_slice(&0x77u32.to_be_bytes());
    raw.extend_from_slice(&0u32.to_be_bytes());
    raw.extend_from_slice(&42u32.to_be_bytes());
    let err = decode(Bytes::from(raw)).unwrap_err();
    p.session.handle_decode_error(p.now, &err);
    let nack = p.session.poll_transmit().unwrap();
    assert_eq!(nack.pdu, Pdu::GenericNack);
    assert_eq!(nack.sequence, 42);
    assert_eq!(nack.status, CommandStatus::EsmeRinvcmdid);
    assert_eq!(p.session.state(), &State::Bound);
}

#[test]
fn center_request_we_do_not_serve_gets_rinvbndsts() {
    let mut p = bound();
    let seq = p.center.request(Pdu::SubmitSm(*sm("from center")));
    p.drive();
    let resp = p.center.received.last().unwrap();
    assert_eq!(resp.sequence, seq);
    assert_eq!(resp.status, CommandStatus::EsmeRinvbndsts);
    assert!(matches!(resp.pdu, Pdu::SubmitSmResp(_)));
}

#[test]
fn sequence_numbers_wrap_and_skip_outstanding() {
    let mut p = bound();
    p.center.answer = Answer::Silent;
    p.session.window.set_next_sequence(MAX_SEQUENCE);
    let a = p.session.submit(p.now, 1, sm("a")).unwrap();
    let b = p.session.submit(p.now, 2, sm("b")).unwrap();
    assert_eq!((a, b), (MAX_SEQUENCE, 1));
    // Force the counter back onto an outstanding number: it is skipped.
    p.session.window.set_next_sequence(1);
    let c = p.session.submit(p.now, 3, sm("c")).unwrap();
    assert_eq!(c, 2);
}

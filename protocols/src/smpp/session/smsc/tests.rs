//! Smsc session tests: PDUs go through the real encoder and decoder (bytes in memory) on a
//! manual clock. Nothing sleeps.

use std::time::{Duration, Instant};

use super::*;
use crate::smpp::{Address, Bind, CommandId, decode, decode_slice};

fn cfg() -> SmscConfig {
    SmscConfig {
        system_id: "sluice".into(),
        bind_timeout: Duration::from_secs(5),
        submit_window: 2,
        deliver_window: 2,
        response_timeout: Duration::from_secs(3),
        enquire_link_interval: Duration::from_secs(30),
    }
}

/// Feeds `c` as bytes (encode → decode), like the driver does.
fn feed(s: &mut Smsc<u32>, now: Instant, c: Command) {
    let bytes = c.to_bytes().expect("encodes");
    match decode(bytes) {
        Ok(d) => s.handle_pdu(now, d.command),
        Err(e) => s.handle_decode_error(now, &e),
    }
}

fn out(s: &mut Smsc<u32>) -> Vec<Command> {
    std::iter::from_fn(|| s.poll_transmit()).collect()
}

fn events(s: &mut Smsc<u32>) -> Vec<Event<u32>> {
    std::iter::from_fn(|| s.poll_event()).collect()
}

fn bind(kind: BindKind, version: u8) -> Pdu {
    let b = Bind {
        system_id: "esme".into(),
        password: "secret".into(),
        interface_version: version,
        ..Bind::default()
    };
    match kind {
        BindKind::Transmitter => Pdu::BindTransmitter(b),
        BindKind::Receiver => Pdu::BindReceiver(b),
        BindKind::Transceiver => Pdu::BindTransceiver(b),
    }
}

fn bound(kind: BindKind, t0: Instant) -> Smsc<u32> {
    let mut s = Smsc::new(cfg(), t0);
    feed(&mut s, t0, Command::request(1, bind(kind, 0x34)));
    assert!(matches!(events(&mut s)[..], [Event::BindRequest { .. }]));
    s.accept_bind(t0);
    let o = out(&mut s);
    assert_eq!(o.len(), 1);
    assert!(o[0].status.is_ok());
    s
}

fn submit(seq: u32) -> Command {
    Command::request(
        seq,
        Pdu::SubmitSm(Sm {
            dest: Address::new(1, 1, "8613800138000"),
            short_message: "hi".into(),
            ..Sm::default()
        }),
    )
}

#[test]
fn bind_accept_answers_with_our_id_and_version() {
    let t0 = Instant::now();
    let mut s: Smsc<u32> = Smsc::new(cfg(), t0);
    feed(
        &mut s,
        t0,
        Command::request(7, bind(BindKind::Transceiver, 0x50)),
    );
    let ev = events(&mut s);
    assert_eq!(
        ev,
        vec![Event::BindRequest {
            kind: BindKind::Transceiver,
            system_id: "esme".into(),
            password: "secret".into(),
            interface_version: 0x50,
        }]
    );
    assert!(
        out(&mut s).is_empty(),
        "nothing answered before the driver decides"
    );
    s.accept_bind(t0);
    let o = out(&mut s);
    assert_eq!(o[0].sequence, 7);
    let Pdu::BindTransceiverResp(r) = &o[0].pdu else {
        panic!("{o:?}")
    };
    assert_eq!(r.system_id, Octets::from("sluice"));
    assert_eq!(r.tlvs.sc_interface_version(), Some(0x50));
    assert_eq!(s.state(), &State::Bound(BindKind::Transceiver));
}

#[test]
fn old_and_unknown_versions_are_treated_as_3_4() {
    let t0 = Instant::now();
    for v in [0x00, 0x33, 0x34, 0x40] {
        let mut s: Smsc<u32> = Smsc::new(cfg(), t0);
        feed(
            &mut s,
            t0,
            Command::request(1, bind(BindKind::Transmitter, v)),
        );
        let ev = events(&mut s);
        assert!(
            matches!(
                ev[..],
                [Event::BindRequest {
                    interface_version: 0x34,
                    ..
                }]
            ),
            "{v:#x}: {ev:?}"
        );
        s.accept_bind(t0);
        let o = out(&mut s);
        let Pdu::BindTransmitterResp(r) = &o[0].pdu else {
            panic!()
        };
        // A 3.3 (or 0x00) peer gets no TLV it cannot parse.
        assert_eq!(r.tlvs.sc_interface_version().is_some(), v >= 0x34, "{v:#x}");
    }
}

#[test]
fn rejected_bind_answers_status_and_closes() {
    let t0 = Instant::now();
    let mut s: Smsc<u32> = Smsc::new(cfg(), t0);
    feed(
        &mut s,
        t0,
        Command::request(3, bind(BindKind::Receiver, 0x34)),
    );
    events(&mut s);
    s.reject_bind(CommandStatus::EsmeRinvpaswd);
    let o = out(&mut s);
    assert_eq!(o[0].status, CommandStatus::EsmeRinvpaswd);
    assert_eq!(o[0].command_id(), CommandId::BindReceiverResp);
    assert_eq!(
        events(&mut s),
        vec![Event::Closed(CloseReason::BindRejected(
            CommandStatus::EsmeRinvpaswd
        ))]
    );
    assert!(s.is_closed());
}

#[test]
fn pdus_before_bind_get_rinvbndsts_and_enquire_link_is_answered() {
    let t0 = Instant::now();
    let mut s: Smsc<u32> = Smsc::new(cfg(), t0);
    feed(&mut s, t0, submit(1));
    feed(&mut s, t0, Command::request(2, Pdu::EnquireLink));
    feed(&mut s, t0, Command::request(3, Pdu::Unbind));
    let o = out(&mut s);
    assert_eq!(o[0].status, CommandStatus::EsmeRinvbndsts);
    assert_eq!(o[0].command_id(), CommandId::SubmitSmResp);
    assert_eq!(
        (o[1].command_id(), o[1].status),
        (CommandId::EnquireLinkResp, CommandStatus::EsmeRok)
    );
    assert_eq!(
        (o[2].command_id(), o[2].status),
        (CommandId::UnbindResp, CommandStatus::EsmeRinvbndsts)
    );
    assert!(events(&mut s).is_empty());
}

#[test]
fn a_flood_before_bind_is_answered_then_closed() {
    let t0 = Instant::now();
    let mut s: Smsc<u32> = Smsc::new(cfg(), t0);
    s.limit_unbound_requests(Some(3));
    // enquire_link is not a refusal: it does not count.
    feed(&mut s, t0, Command::request(1, Pdu::EnquireLink));
    for seq in 2..=4 {
        feed(&mut s, t0, submit(seq));
    }
    assert!(!s.is_closed());
    feed(&mut s, t0, submit(5));
    let o = out(&mut s);
    assert_eq!(o.len(), 5);
    assert!(
        o[1..]
            .iter()
            .all(|c| c.status == CommandStatus::EsmeRinvbndsts)
    );
    assert_eq!(s.state(), &State::Closed(CloseReason::UnboundFlood));
    // Closed: nothing more is answered.
    feed(&mut s, t0, submit(6));
    assert!(out(&mut s).is_empty());
}

#[test]
fn the_unbound_limit_does_not_touch_a_bound_session() {
    let t0 = Instant::now();
    let mut s = bound(BindKind::Transmitter, t0);
    s.limit_unbound_requests(Some(0));
    // deliver_sm from an ESME is refused ESME_RINVBNDSTS while bound too: never closes.
    for seq in 10..20 {
        feed(
            &mut s,
            t0,
            Command::request(seq, Pdu::DeliverSm(Sm::default())),
        );
    }
    assert!(!s.is_closed());
}

#[test]
fn second_bind_gets_ralybnd() {
    let t0 = Instant::now();
    let mut s = bound(BindKind::Transmitter, t0);
    feed(
        &mut s,
        t0,
        Command::request(9, bind(BindKind::Transmitter, 0x34)),
    );
    let o = out(&mut s);
    assert_eq!(o[0].status, CommandStatus::EsmeRalybnd);
    assert_eq!(s.state(), &State::Bound(BindKind::Transmitter));
}

#[test]
fn idle_connection_without_bind_is_closed() {
    let t0 = Instant::now();
    let mut s: Smsc<u32> = Smsc::new(cfg(), t0);
    assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(5)));
    s.handle_timeout(t0 + Duration::from_secs(4));
    assert!(!s.is_closed());
    s.handle_timeout(t0 + Duration::from_secs(5));
    assert_eq!(
        events(&mut s),
        vec![Event::Closed(CloseReason::BindTimeout)]
    );
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn submits_are_surfaced_and_answered_later_with_the_id() {
    let t0 = Instant::now();
    let mut s = bound(BindKind::Transceiver, t0);
    feed(&mut s, t0, submit(10));
    let ev = events(&mut s);
    let [
        Event::Submit {
            sequence: 10,
            submit: Submit::Sm(sm),
        },
    ] = &ev[..]
    else {
        panic!("{ev:?}")
    };
    assert_eq!(sm.short_message, Octets::from("hi"));
    assert!(out(&mut s).is_empty(), "not answered before durable");
    s.respond_submit(10, Ok("01JD3Q5V8Q0000000000000001".into()));
    let o = out(&mut s);
    let Pdu::SubmitSmResp(r) = &o[0].pdu else {
        panic!()
    };
    assert_eq!((o[0].sequence, o[0].status), (10, CommandStatus::EsmeRok));
    assert_eq!(r.message_id, Octets::from("01JD3Q5V8Q0000000000000001"));
    // A second answer for the same sequence is ignored.
    s.respond_submit(10, Ok("x".into()));
    assert!(out(&mut s).is_empty());
}

#[test]
fn data_sm_and_submit_multi_get_their_own_responses() {
    let t0 = Instant::now();
    let mut s = bound(BindKind::Transmitter, t0);
    feed(
        &mut s,
        t0,
        Command::request(1, Pdu::DataSm(DataSm::default())),
    );
    feed(
        &mut s,
        t0,
        Command::request(2, Pdu::SubmitMulti(SubmitMulti::default())),
    );
    assert_eq!(events(&mut s).len(), 2);
    s.respond_submit(2, Err(CommandStatus::EsmeRinvdstadr));
    s.respond_submit(1, Ok("id1".into()));
    let o = out(&mut s);
    assert_eq!(
        (o[0].command_id(), o[0].status),
        (CommandId::SubmitMultiResp, CommandStatus::EsmeRinvdstadr)
    );
    assert_eq!(
        (o[1].command_id(), o[1].status),
        (CommandId::DataSmResp, CommandStatus::EsmeRok)
    );
}

#[test]
fn submit_window_overflow_is_throttled_and_receiver_cannot_submit() {
    let t0 = Instant::now();
    let mut s = bound(BindKind::Transmitter, t0);
    for seq in 1..=3 {
        feed(&mut s, t0, submit(seq));
    }
    assert_eq!(events(&mut s).len(), 2);
    let o = out(&mut s);
    assert_eq!(
        (o[0].sequence, o[0].status),
        (3, CommandStatus::EsmeRthrottled)
    );
    let mut r = bound(BindKind::Receiver, t0);
    feed(&mut r, t0, submit(5));
    assert_eq!(out(&mut r)[0].status, CommandStatus::EsmeRinvbndsts);
    assert!(events(&mut r).is_empty());
}

#[test]
fn garbage_is_nacked_as_the_codec_says() {
    let t0 = Instant::now();
    let mut s = bound(BindKind::Transceiver, t0);
    // Unknown command id 0x00000077.
    let mut unknown = vec![0, 0, 0, 16, 0, 0, 0, 0x77, 0, 0, 0, 0, 0, 0, 0, 42];
    match decode_slice(&unknown) {
        Err(e) => s.handle_decode_error(t0, &e),
        Ok(d) => panic!("decoded {d:?}"),
    }
    // submit_sm with a truncated body.
    unknown = vec![0, 0, 0, 18, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 43, 0, 1];
    match decode_slice(&unknown) {
        Err(e) => s.handle_decode_error(t0, &e),
        Ok(d) => panic!("decoded {d:?}"),
    }
    let o = out(&mut s);
    assert_eq!(
        (o[0].command_id(), o[0].status, o[0].sequence),
        (CommandId::GenericNack, CommandStatus::EsmeRinvcmdid, 42)
    );
    assert_eq!(
        (o[1].command_id(), o[1].status, o[1].sequence),
        (CommandId::SubmitSmResp, CommandStatus::EsmeRinvmsglen, 43)
    );
    assert!(!s.is_closed());
    // A command_length below the header cannot be resynchronised: nack, then close.
    let bad = [0, 0, 0, 8, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 44];
    match decode_slice(&bad) {
        Err(e) => s.handle_decode_error(t0, &e),
        Ok(d) => panic!("decoded {d:?}"),
    }
    let o = out(&mut s);
    assert_eq!(
        (o[0].command_id(), o[0].status),
        (CommandId::GenericNack, CommandStatus::EsmeRinvcmdlen)
    );
    assert_eq!(events(&mut s), vec![Event::Closed(CloseReason::Protocol)]);
}

fn dlr() -> Box<Sm> {
    Box::new(Sm {
        esm_class: 0x04,
        short_message: "id:1 stat:DELIVRD".into(),
        ..Sm::default()
    })
}

#[test]
fn deliver_window_responses_timeouts_and_aborts() {
    let t0 = Instant::now();
    let mut tx = bound(BindKind::Transmitter, t0);
    let refused = tx
        .deliver(t0, 1, dlr())
        .expect_err("transmitter takes no deliver_sm");
    assert!(!refused.window_full);

    let mut s = bound(BindKind::Receiver, t0);
    let a = s.deliver(t0, 1, dlr()).expect("sent");
    let b = s.deliver(t0, 2, dlr()).expect("sent");
    assert!(
        s.deliver(t0, 3, dlr())
            .expect_err("window of 2")
            .window_full
    );
    assert!(!s.can_deliver());
    let o = out(&mut s);
    assert_eq!(o.len(), 2);
    assert_ne!(a, b);
    feed(
        &mut s,
        t0,
        Command::request(a, Pdu::DeliverSmResp(MessageIdResp::default())),
    );
    feed(
        &mut s,
        t0,
        Command::new(CommandStatus::EsmeRok, b, Pdu::GenericNack),
    );
    assert_eq!(
        events(&mut s),
        vec![
            Event::DeliverResponse {
                tag: 1,
                status: CommandStatus::EsmeRok
            },
            Event::DeliverResponse {
                tag: 2,
                status: CommandStatus::EsmeRsyserr
            },
        ]
    );
    // Timeout.
    s.deliver(t0, 4, dlr()).expect("sent");
    assert_eq!(s.poll_timeout(), Some(t0 + Duration::from_secs(3)));
    s.handle_timeout(t0 + Duration::from_secs(3));
    assert_eq!(events(&mut s), vec![Event::DeliverTimeout { tag: 4 }]);
    // Abort on disconnect.
    s.deliver(t0, 5, dlr()).expect("sent");
    s.handle_disconnect();
    assert_eq!(
        events(&mut s),
        vec![
            Event::DeliverAborted { tag: 5 },
            Event::Closed(CloseReason::Disconnected)
        ]
    );
}

#[test]
fn enquire_link_sent_after_silence_and_dead_link_closes() {
    let t0 = Instant::now();
    let mut s = bound(BindKind::Transceiver, t0);
    let t1 = t0 + Duration::from_secs(30);
    assert_eq!(s.poll_timeout(), Some(t1));
    s.handle_timeout(t1);
    let o = out(&mut s);
    assert_eq!(o[0].command_id(), CommandId::EnquireLink);
    feed(
        &mut s,
        t1,
        Command::request(o[0].sequence, Pdu::EnquireLinkResp),
    );
    let t2 = t1 + Duration::from_secs(30);
    s.handle_timeout(t2);
    let o = out(&mut s);
    assert_eq!(o[0].command_id(), CommandId::EnquireLink);
    s.handle_timeout(t2 + Duration::from_secs(3));
    assert_eq!(
        events(&mut s),
        vec![Event::Closed(CloseReason::EnquireLinkTimeout)]
    );
}

#[test]
fn our_unbind_waits_for_the_response_and_peer_unbind_is_answered() {
    let t0 = Instant::now();
    let mut s = bound(BindKind::Transceiver, t0);
    s.deliver(t0, 1, dlr()).expect("sent");
    s.unbind(t0);
    let o = out(&mut s);
    let unbind = o
        .iter()
        .find(|c| c.command_id() == CommandId::Unbind)
        .expect("unbind");
    // Submits after our unbind are refused; deliver responses still count.
    feed(&mut s, t0, submit(77));
    assert_eq!(out(&mut s)[0].status, CommandStatus::EsmeRinvbndsts);
    let seq = o[0].sequence;
    feed(
        &mut s,
        t0,
        Command::request(seq, Pdu::DeliverSmResp(MessageIdResp::default())),
    );
    feed(
        &mut s,
        t0,
        Command::request(unbind.sequence, Pdu::UnbindResp),
    );
    assert_eq!(
        events(&mut s),
        vec![
            Event::DeliverResponse {
                tag: 1,
                status: CommandStatus::EsmeRok
            },
            Event::Closed(CloseReason::Unbound)
        ]
    );

    let mut p = bound(BindKind::Transmitter, t0);
    feed(&mut p, t0, Command::request(5, Pdu::Unbind));
    assert_eq!(out(&mut p)[0].command_id(), CommandId::UnbindResp);
    assert_eq!(events(&mut p), vec![Event::Closed(CloseReason::PeerUnbind)]);
}

#[test]
fn unsupported_requests_get_their_failure_status() {
    let t0 = Instant::now();
    let mut s = bound(BindKind::Transceiver, t0);
    feed(
        &mut s,
        t0,
        Command::request(1, Pdu::DeliverSm(Sm::default())),
    );
    feed(
        &mut s,
        t0,
        Command::request(2, Pdu::QuerySm(Default::default())),
    );
    let o = out(&mut s);
    assert_eq!(
        (o[0].command_id(), o[0].status),
        (CommandId::DeliverSmResp, CommandStatus::EsmeRinvbndsts)
    );
    assert_eq!(
        (o[1].command_id(), o[1].status),
        (CommandId::QuerySmResp, CommandStatus::EsmeRqueryfail)
    );
}

#[test]
fn refused_bind_keeps_the_connection_open_for_another_try() {
    let t0 = Instant::now();
    let mut s: Smsc<u32> = Smsc::new(cfg(), t0);
    feed(
        &mut s,
        t0,
        Command::request(3, bind(BindKind::Transmitter, 0x34)),
    );
    events(&mut s);
    s.refuse_bind(CommandStatus::EsmeRinvpaswd);
    let o = out(&mut s);
    assert_eq!(o[0].status, CommandStatus::EsmeRinvpaswd);
    assert_eq!(o[0].command_id(), CommandId::BindTransmitterResp);
    assert!(events(&mut s).is_empty());
    assert_eq!(s.state(), &State::Open);
    // A second refusal without a bind is ignored; a new bind is surfaced again.
    s.refuse_bind(CommandStatus::EsmeRinvpaswd);
    assert!(out(&mut s).is_empty());
    feed(
        &mut s,
        t0,
        Command::request(4, bind(BindKind::Transmitter, 0x34)),
    );
    assert!(matches!(events(&mut s)[..], [Event::BindRequest { .. }]));
    s.accept_bind(t0);
    assert_eq!(out(&mut s)[0].sequence, 4);
    assert_eq!(s.state(), &State::Bound(BindKind::Transmitter));
}

#[test]
fn submit_response_can_be_taken_for_a_later_write() {
    let t0 = Instant::now();
    let mut s = bound(BindKind::Transceiver, t0);
    feed(&mut s, t0, submit(10));
    feed(&mut s, t0, submit(11));
    events(&mut s);
    let c = s
        .take_submit_response(11, Err(CommandStatus::EsmeRmsgqful))
        .expect("waiting");
    assert_eq!((c.sequence, c.status), (11, CommandStatus::EsmeRmsgqful));
    assert_eq!(c.command_id(), CommandId::SubmitSmResp);
    assert!(out(&mut s).is_empty(), "handed to the driver, not queued");
    assert_eq!(s.submits_waiting(), 1);
    // A receipt may go out before the held response.
    let c = s.take_submit_response(10, Ok("7".into())).expect("waiting");
    let Pdu::SubmitSmResp(r) = &c.pdu else {
        panic!("{c:?}")
    };
    assert_eq!(r.message_id, Octets::from("7"));
    assert!(s.take_submit_response(10, Ok("7".into())).is_none());
    assert_eq!(s.submits_waiting(), 0);
}

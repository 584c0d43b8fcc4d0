//! One ESME connection of the load generator toward an SMPP server (the simulator's SMSC,
//! sluice's SMPP server, or any other): connect, bind (transceiver with `--dlr`, transmitter
//! otherwise), keep the window full, count every submit_sm_resp by status, answer receipts
//! and MO (deliver_sm) and match receipts to submit times, resubmit on throttle / queue-full
//! / temporary errors and on disconnect, then unbind.
//!
//! The protocol is `sluice_protocols::smpp::session::esme::Session`, the same sans-IO session
//! the gateway's SMPP channel drives; this file only frames bytes, moves them and maps the
//! session's events onto the run's shared counters — there is no second SMPP state machine
//! here. Structure and counters follow the CMPP generator (`cmpp.rs`).
//!
//! Invariants:
//! - every part handed to the session comes back exactly once (`Response`,
//!   `ResponseTimeout` or `Aborted`) and is then accepted, failed or requeued — so the run's
//!   `unresolved` count reaches zero and the run ends;
//! - a response timeout is a dead center: the connection is dropped (as before the port), so
//!   every part left unanswered is counted in `unacked_at_disconnect`, the bound on
//!   duplicates at the center;
//! - writes are batched: everything the session queued goes out in one `write_all` per turn;
//!   reads frame and hand every complete PDU in the buffer to the session before writing;
//! - network input never panics: undecodable PDUs are answered by the session, a bad frame
//!   closes the session, and a close is a reconnect (bounded by [`MAX_BIND_FAILURES`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::payload::Part;
use super::report::new_histogram;
use super::{PartFeed, PartRef, Shared};
use crate::sim::smpp_put as put;
use crate::tally::lock;
use sluice_protocols::smpp::session::esme::{
    BindKind, CloseReason, Event, Session, SessionConfig, State,
};
use sluice_protocols::smpp::{self as p, Address, CommandStatus as St, Octets, Pdu, Sm};

/// Consecutive failed connects/binds after which a connection gives up.
const MAX_BIND_FAILURES: u32 = 20;

/// How long the final unbind may wait for its unbind_resp.
const UNBIND_WAIT: Duration = Duration::from_secs(1);

enum End {
    /// Nothing left to do; unbound.
    Done,
    /// The connection broke (or timed out); in-flight parts were requeued.
    Dropped,
    /// Connect or bind failed (refused, timed out, closed); the connection was never usable.
    BindFailed,
}

struct Conn {
    s: Arc<Shared>,
    submit_hist: Histogram<u64>,
    dlr_hist: Histogram<u64>,
    /// Parts to send next (started messages, retries, new claims).
    feed: PartFeed,
    /// The run's source address, built once.
    source: Address,
}

/// Per-connection flow state the events act on.
struct Flow {
    bound: bool,
    /// AIMD on the window: halve on throttle / queue-full (at most once per 10 ms), grow by
    /// one per window's worth of accepted submits, so a center that honours a smaller window
    /// or a lower rate is not hammered with resubmits.
    eff_window: usize,
    since_grow: usize,
    last_cut: Instant,
    paused_until: Option<Instant>,
    /// A submit got no response in time: drop the connection after this batch of events.
    timed_out: bool,
}

pub(crate) async fn run_connection(
    s: Arc<Shared>,
    _idx: usize,
    addr: String,
    system_id: String,
    password: String,
) {
    let mut c = Conn {
        s: s.clone(),
        submit_hist: new_histogram(),
        dlr_hist: new_histogram(),
        feed: PartFeed::default(),
        source: Address::new(
            1,
            1,
            Octets::copy_from_slice(s.cfg.payload.source.as_bytes()),
        ),
    };
    let config = SessionConfig {
        bind_kind: if s.cfg.dlr {
            BindKind::Transceiver
        } else {
            BindKind::Transmitter
        },
        system_id,
        password,
        window: s.cfg.window,
        response_timeout: s.cfg.response_timeout,
        enquire_link_interval: Duration::from_secs(30),
        ..SessionConfig::default()
    };
    let mut failures = 0u32;
    loop {
        if c.feed.local.is_empty() && s.finished() && !(s.cfg.dlr && s.dlrs_outstanding()) {
            break;
        }
        // Connect and bind share one deadline, as `bind_timeout` promises.
        let bind_deadline = Instant::now() + s.cfg.bind_timeout;
        let end = match tokio::time::timeout(s.cfg.bind_timeout, TcpStream::connect(&addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                c.drive(stream, config.clone(), bind_deadline).await
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "SMPP connect failed");
                End::BindFailed
            }
            Err(_) => {
                tracing::debug!("SMPP connect timed out");
                End::BindFailed
            }
        };
        match end {
            End::Done => break,
            End::Dropped => {
                failures = 0;
                s.c.disconnects.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            End::BindFailed => {
                failures += 1;
                s.c.bind_failures.fetch_add(1, Ordering::Relaxed);
                if failures >= MAX_BIND_FAILURES || s.sending_closed() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    // Hand unsent parts back so another connection can finish them.
    while let Some(p) = c.feed.local.pop_front() {
        lock(&s.retry).push_back(p);
    }
    s.merge_hist(&c.submit_hist, &c.dlr_hist);
}

/// Statuses worth resubmitting: the center is busy, not the message bad.
fn retryable(status: St) -> bool {
    matches!(
        status,
        St::EsmeRthrottled
            | St::EsmeRmsgqful
            | St::EsmeRsyserr
            | St::EsmeRsubmitfail
            | St::EsmeRxTAppn
    )
}

impl Conn {
    fn part(&mut self, p: PartRef) -> Part {
        self.feed.part(&self.s, p)
    }

    fn next_part(&mut self) -> Option<PartRef> {
        self.feed.next(&self.s)
    }

    /// The submit_sm body of one part.
    fn sm_of(&mut self, pr: PartRef) -> Box<Sm> {
        let part = self.part(pr);
        let mut sm = Sm {
            source: self.source.clone(),
            dest: Address::new(1, 1, Octets::from(part.dest.into_bytes())),
            esm_class: if part.udhi { p::ESM_CLASS_UDHI } else { 0 },
            registered_delivery: u8::from(self.s.cfg.dlr),
            data_coding: part.data_coding,
            short_message: Octets::from(part.short_message),
            ..Sm::default()
        };
        if let Some((reference, total, n)) = part.sar {
            sm.tlvs.set_sar(reference, total, n);
        }
        Box::new(sm)
    }

    /// Maps one session event onto the run's counters. `nack` is the generic_nack status when
    /// the event is the session's answer to a generic_nack just handed in. Returns the close
    /// reason on [`Event::Closed`].
    fn on_event(
        &mut self,
        session: &mut Session<PartRef>,
        flow: &mut Flow,
        ev: Event<PartRef>,
        nack: Option<St>,
        now: Instant,
    ) -> Option<CloseReason> {
        let s = &*self.s;
        let cfg = &s.cfg;
        match ev {
            Event::Bound { .. } => flow.bound = true,
            Event::Response {
                tag,
                status,
                message_id,
                sent_at,
            } => {
                if let Some(nack_status) = nack {
                    // The center could not parse the submit: resubmit, whatever the status.
                    // Not a response: no latency sample, as before the port.
                    s.count_error(format!("smpp:generic_nack:0x{:08X}", nack_status.to_u32()));
                    s.requeue(tag);
                    return None;
                }
                s.note_response(now);
                self.submit_hist
                    .saturating_record(micros(now.saturating_duration_since(sent_at)));
                if status == St::EsmeRok {
                    s.part_accepted(tag);
                    flow.since_grow += 1;
                    if flow.since_grow >= flow.eff_window && flow.eff_window < cfg.window {
                        flow.eff_window += 1;
                        flow.since_grow = 0;
                    }
                    if cfg.dlr {
                        s.c.dlr_expected.fetch_add(1, Ordering::Relaxed);
                        // A receipt may have beaten its submit_sm_resp (early DLR).
                        if let Some(at) = s.note_submitted(&message_id, sent_at) {
                            s.c.dlr_matched.fetch_add(1, Ordering::Relaxed);
                            self.dlr_hist
                                .saturating_record(micros(at.saturating_duration_since(sent_at)));
                        }
                    }
                } else {
                    s.count_error(format!("smpp:0x{:08X}", status.to_u32()));
                    if retryable(status) {
                        s.requeue(tag);
                        if matches!(status, St::EsmeRthrottled | St::EsmeRmsgqful) {
                            flow.paused_until = Some(now + Duration::from_millis(2));
                            if now.duration_since(flow.last_cut) > Duration::from_millis(10) {
                                flow.eff_window = (flow.eff_window / 2).max(1);
                                flow.since_grow = 0;
                                flow.last_cut = now;
                            }
                        }
                    } else {
                        s.part_failed(tag);
                    }
                }
            }
            Event::ResponseTimeout { tag, .. } => {
                // Its fate is unknown: resubmitted, so a possible duplicate like any part
                // unanswered at a disconnect — which it becomes, below.
                s.c.unacked_at_disconnect.fetch_add(1, Ordering::Relaxed);
                s.requeue(tag);
                flow.timed_out = true;
            }
            Event::Aborted { tag, .. } => {
                s.c.unacked_at_disconnect.fetch_add(1, Ordering::Relaxed);
                s.requeue(tag);
            }
            Event::Deliver {
                sequence,
                data_sm,
                sm,
            } => {
                self.deliver(&sm, now);
                // Nothing to keep durable here: answer at once.
                session.answer_deliver(sequence, data_sm, St::EsmeRok);
            }
            Event::Closed(reason) => return Some(reason),
        }
        None
    }

    /// Maps every queued event; stops at [`Event::Closed`] and returns its reason.
    fn drain(
        &mut self,
        session: &mut Session<PartRef>,
        flow: &mut Flow,
        nack: Option<St>,
        now: Instant,
    ) -> Option<CloseReason> {
        while let Some(ev) = session.poll_event() {
            if let Some(reason) = self.on_event(session, flow, ev, nack, now) {
                return Some(reason);
            }
        }
        None
    }

    fn deliver(&mut self, sm: &Sm, now: Instant) {
        let Some(report) = p::DeliveryReport::from_sm(sm) else {
            self.s.c.mo_received.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let stat = report.text.and_then(|t| t.stat).map_or_else(
            || format!("{:?}", report.state),
            |st| String::from_utf8_lossy(st.as_bytes()).into_owned(),
        );
        if let Some(t0) = self.s.note_receipt(report.message_id, &stat, now) {
            self.s.c.dlr_matched.fetch_add(1, Ordering::Relaxed);
            self.dlr_hist
                .saturating_record(micros(now.saturating_duration_since(t0)));
        }
    }

    /// Frames every complete PDU in `rbuf` and hands it to the session. A generic_nack's
    /// events are mapped at once, so its response can be told apart from a submit_sm_resp.
    fn read(
        &mut self,
        session: &mut Session<PartRef>,
        flow: &mut Flow,
        rbuf: &mut BytesMut,
        now: Instant,
    ) -> Option<CloseReason> {
        loop {
            match p::check(rbuf, p::DEFAULT_MAX_LEN) {
                Ok(Some(len)) => match p::decode(rbuf.split_to(len).freeze()) {
                    Ok(decoded) => {
                        let c = decoded.command;
                        let nack = matches!(c.pdu, Pdu::GenericNack).then_some(c.status);
                        if nack.is_some() {
                            // Earlier PDUs' events first, so only the nack's carry its status.
                            if let Some(reason) = self.drain(session, flow, None, now) {
                                return Some(reason);
                            }
                            session.handle_pdu(now, c);
                            if let Some(reason) = self.drain(session, flow, nack, now) {
                                return Some(reason);
                            }
                        } else {
                            session.handle_pdu(now, c);
                        }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "undecodable SMPP PDU");
                        self.s.count_error("smpp:undecodable".to_owned());
                        session.handle_decode_error(now, &e);
                    }
                },
                Ok(None) => return None,
                Err(e) => {
                    tracing::debug!(error = %e, "bad SMPP frame; closing");
                    session.handle_decode_error(now, &e.into());
                    rbuf.clear();
                    return None;
                }
            }
            if session.is_closed() {
                return None;
            }
        }
    }

    async fn drive(
        &mut self,
        stream: TcpStream,
        config: SessionConfig,
        bind_deadline: Instant,
    ) -> End {
        let s = self.s.clone();
        let cfg = &s.cfg;
        let mut session = Session::<PartRef>::new(config, Instant::now());
        let (mut rd, mut wr) = stream.into_split();
        let mut rbuf = BytesMut::with_capacity(128 * 1024);
        let mut wbuf = BytesMut::with_capacity(64 * 1024);
        let mut flow = Flow {
            bound: false,
            eff_window: cfg.window,
            since_grow: 0,
            last_cut: Instant::now() - Duration::from_secs(1),
            paused_until: None,
            timed_out: false,
        };
        let mut finishing: Option<Instant> = None;
        let mut unbind_deadline: Option<Instant> = None;
        let mut closed: Option<CloseReason> = None;
        loop {
            let now = Instant::now();
            // 1. Events.
            if closed.is_none() {
                closed = self.drain(&mut session, &mut flow, None, now);
            }
            if flow.timed_out && closed.is_none() {
                // A silent center is a dead connection: requeue the rest and reconnect.
                flow.timed_out = false;
                s.c.response_timeouts.fetch_add(1, Ordering::Relaxed);
                session.handle_disconnect();
                continue;
            }
            if let Some(reason) = closed {
                // Answers still owed (deliver_sm_resp, unbind_resp) go out first.
                flush(&mut session, &mut wbuf);
                if !wbuf.is_empty() {
                    let _ = wr.write_all(&wbuf).await;
                }
                return match reason {
                    _ if unbind_deadline.is_some() => End::Done,
                    CloseReason::Unbound => End::Done,
                    _ if !flow.bound => {
                        tracing::debug!(?reason, "SMPP bind failed");
                        End::BindFailed
                    }
                    _ => End::Dropped,
                };
            }
            // 2. Fill the window.
            let paused = flow.paused_until.is_some_and(|t| now < t);
            let mut rate_limited = false;
            if !paused && *session.state() == State::Bound && session.in_flight() < flow.eff_window
            {
                let room = (flow.eff_window - session.in_flight()) as u64;
                let n = match &s.rate {
                    Some(b) => {
                        let n = lock(b).take_up_to(room, now);
                        rate_limited = n < room;
                        n
                    }
                    None => room,
                };
                let mut sent = 0u64;
                for _ in 0..n {
                    let Some(pr) = self.next_part() else { break };
                    let sm = self.sm_of(pr);
                    match session.submit(now, pr, sm) {
                        Ok(_) => sent += 1,
                        Err(refused) => {
                            // Not bound / window full: cannot happen after the checks above;
                            // keep the part for the next turn rather than lose it.
                            self.feed.local.push_front(refused.tag);
                            break;
                        }
                    }
                }
                s.c.submits_sent.fetch_add(sent, Ordering::Relaxed);
            }
            // 3. Done? Unbind once the window is empty and receipts are in (or waited for).
            if *session.state() == State::Bound
                && session.in_flight() == 0
                && self.feed.local.is_empty()
                && s.finished()
            {
                let since = *finishing.get_or_insert(now);
                if !(cfg.dlr && s.dlrs_outstanding() && since.elapsed() < cfg.dlr_wait) {
                    session.unbind(now);
                    unbind_deadline = Some(now + UNBIND_WAIT);
                }
            }
            if (!flow.bound && now >= bind_deadline) || unbind_deadline.is_some_and(|t| now >= t) {
                session.handle_disconnect();
                continue;
            }
            // 4. Write.
            flush(&mut session, &mut wbuf);
            if !wbuf.is_empty() {
                if wr.write_all(&wbuf).await.is_err() {
                    session.handle_disconnect();
                    wbuf.clear();
                    continue;
                }
                wbuf.clear();
            }
            // 5. Wait for input, a timer, the next rate token, the pause end or the DLR wait.
            let mut wake = match session.poll_timeout() {
                Some(t) => t.saturating_duration_since(now),
                None => Duration::from_millis(100),
            };
            if paused {
                wake = wake.min(flow.paused_until.map_or(Duration::from_millis(1), |t| {
                    t.saturating_duration_since(now)
                }));
            } else if rate_limited {
                let w = s
                    .rate
                    .as_ref()
                    .map_or(Duration::from_millis(1), |b| lock(b).wait_time())
                    .max(Duration::from_micros(500));
                wake = wake.min(w);
            }
            if session.in_flight() < flow.eff_window || finishing.is_some() {
                // Work may appear (requeued parts from another connection) or the DLR wait end.
                wake = wake.min(Duration::from_millis(5));
            }
            if !flow.bound {
                wake = wake.min(bind_deadline.saturating_duration_since(now));
            }
            if let Some(t) = unbind_deadline {
                wake = wake.min(t.saturating_duration_since(now));
            }
            if rbuf.capacity() - rbuf.len() < 16 * 1024 {
                rbuf.reserve(128 * 1024);
            }
            tokio::select! {
                r = rd.read_buf(&mut rbuf) => match r {
                    Ok(0) | Err(_) => session.handle_disconnect(),
                    Ok(_) => {
                        let now = Instant::now();
                        closed = self.read(&mut session, &mut flow, &mut rbuf, now);
                        // A busy link may never reach the sleep branch: fire due timers here.
                        if session.poll_timeout().is_some_and(|t| t <= now) {
                            session.handle_timeout(now);
                        }
                    }
                },
                () = tokio::time::sleep(wake) => session.handle_timeout(Instant::now()),
            }
        }
    }
}

/// Encodes everything the session queued into `wbuf`.
fn flush(session: &mut Session<PartRef>, wbuf: &mut BytesMut) {
    while let Some(c) = session.poll_transmit() {
        put(wbuf, c);
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

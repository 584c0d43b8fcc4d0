//! One SMPP connection on the SMSC side: a thin tokio shell around the protocols crate's
//! sans-IO [`Smsc`] session, plus the simulator's behaviour.
//!
//! Job: the reader loop reads as much as the socket has, frame-checks and decodes (zero
//! copy) every complete PDU in the buffer, feeds it to the session and acts on the session's
//! events — binds are checked against the listener's accounts and `max_binds`, submits are
//! judged (window → queue full, throughput → throttled, error shares), tallied, given an id,
//! a receipt and reply rules. All immediate output of a read batch goes to the writer as one
//! chunk (one syscall per batch); delayed submit responses go to the writer's timer heap.
//! Deliveries (receipts, MOs) come from the listener's scheduler as items and go out through
//! the session, which numbers and tracks each deliver_sm.
//!
//! Invariants:
//! - The session owns the protocol: bind states, sequence numbers of what we originate,
//!   enquire_link, unbind, generic_nack and the answers to garbage (a framing error is
//!   nacked, then the connection closes after a flush). Its timers are off (the simulator
//!   never probes or times out a client), so it never needs `handle_timeout`.
//! - Every submit the session surfaces is answered exactly once, now or after the drawn
//!   latency; a submit whose receipt went out early is held back `dlr.early_lead_ms`. The
//!   `outstanding` counter covers exactly the responses this driver produced, until the
//!   writer has written them.
//! - A refused bind leaves the connection open (the ESME may try again), as before.
//! - A random disconnect drops the connection without flushing what is queued.
//! - A submit drawn by `drop_response_share` is kept (tallied) but never answered and gets no
//!   receipt; the first `refuse_binds` binds are refused with `refuse_bind_status`.
//! - A deliver_sm still unanswered when the connection ends (the client closed it, we
//!   dropped it, or it unbound) goes back to the scheduler and out again on the account's
//!   next receiver bind, as a real SMSC's store-and-forward does; counted in the tally's
//!   `resent` (off with the listener's `resend_unanswered = false`).
//! - Nothing from the network can make this task panic.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use rand::RngExt;
use rand::rngs::SmallRng;
use sluice_protocols::smpp::session::smsc::{BindKind, Event, Smsc, SmscConfig, Submit};
use sluice_protocols::smpp::{self as p, Command, CommandStatus as St, DecodeError, Pdu, Sm};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::center::{BindRefusal, Center, SessionHandle, Verdict};
use super::dlr::{Delivery, Item, MsgRef, smpp_sm};
use super::mo::TextCoding;
use super::submit::{Accepted, Receipt, on_accepted};
use super::writer::{self, Out};
use crate::tally::{Concat, split_udh};

/// "Never" for the session's timers: the simulator does not time clients out.
const FOREVER: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

enum Next {
    Continue,
    /// Drop the connection without flushing (random disconnect).
    Abort,
}

struct Session {
    center: Arc<Center>,
    id: u64,
    /// Each deliver_sm in the window is tagged with its delivery, to resend if unanswered.
    smsc: Smsc<Delivery>,
    tx: mpsc::UnboundedSender<Out>,
    items: mpsc::UnboundedSender<Vec<Delivery>>,
    outstanding: Arc<AtomicUsize>,
    rng: SmallRng,
    /// The account, once bound.
    account: Option<Arc<str>>,
    registered: bool,
    out: BytesMut,
    responses: usize,
    /// Receipts to queue once the responses now in `out` are with the writer.
    deferred: Vec<Delivery>,
}

/// Serves one accepted connection until it closes or the simulator shuts down.
pub(crate) async fn serve(
    center: Arc<Center>,
    stream: TcpStream,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let id = center.new_session_id();
    let (mut rd, wr) = stream.into_split();
    let (tx, rx) = mpsc::unbounded_channel();
    let (items, mut items_rx) = mpsc::unbounded_channel();
    let outstanding = Arc::new(AtomicUsize::new(0));
    let writer = tokio::spawn(writer::run(wr, rx, outstanding.clone()));
    let rng = center.session_rng(id);
    let cfg = SmscConfig {
        system_id: center.cfg.system_id.clone(),
        bind_timeout: FOREVER,
        // The simulator's own window check answers ESME_RMSGQFUL; every submit is answered
        // (for the session) as soon as it is judged.
        submit_window: usize::MAX,
        // No deliver_sm window: receipts and MOs go out as they fall due.
        deliver_window: usize::MAX,
        response_timeout: FOREVER,
        enquire_link_interval: FOREVER,
    };
    let mut s = Session {
        smsc: Smsc::new(cfg, std::time::Instant::now()),
        center,
        id,
        tx,
        items,
        outstanding,
        rng,
        account: None,
        registered: false,
        out: BytesMut::with_capacity(64 * 1024),
        responses: 0,
        deferred: Vec::new(),
    };
    s.read_loop(&mut rd, &mut items_rx, &mut shutdown).await;
    if s.registered {
        s.center.unregister(s.id);
    }
    // Whatever the client never answered is resent on its next bind.
    s.smsc.handle_disconnect();
    let _ = s.events(false);
    // Deliveries routed here after the end go back to the scheduler for another receiver.
    items_rx.close();
    while let Ok(batch) = items_rx.try_recv() {
        for d in batch {
            let _ = s.center.deliveries.send(d);
        }
    }
    drop(s);
    let _ = writer.await;
}

impl Session {
    async fn read_loop(
        &mut self,
        rd: &mut OwnedReadHalf,
        items: &mut mpsc::UnboundedReceiver<Vec<Delivery>>,
        shutdown: &mut watch::Receiver<bool>,
    ) {
        let mut rbuf = BytesMut::with_capacity(128 * 1024);
        loop {
            if rbuf.capacity() - rbuf.len() < 16 * 1024 {
                rbuf.reserve(128 * 1024);
            }
            let n = tokio::select! {
                r = rd.read_buf(&mut rbuf) => r.unwrap_or(0),
                Some(batch) = items.recv() => {
                    self.deliver(batch);
                    self.flush();
                    continue;
                }
                _ = shutdown.changed() => 0,
            };
            if n == 0 {
                self.flush();
                return;
            }
            let now = std::time::Instant::now();
            let mut submits = 0u64;
            loop {
                match p::check(&rbuf, p::DEFAULT_MAX_LEN) {
                    Ok(None) => break,
                    Ok(Some(len)) => match p::decode(rbuf.split_to(len).freeze()) {
                        Ok(d) => {
                            let pdu = &d.command.pdu;
                            if matches!(pdu, Pdu::SubmitSm(_)) {
                                submits += 1;
                            }
                            let deliver_resp = matches!(pdu, Pdu::DeliverSmResp(_));
                            self.smsc.handle_pdu(now, d.command);
                            self.drain_transmit();
                            if let Next::Abort = self.events(deliver_resp) {
                                self.center.tally.count_submits(submits);
                                self.center
                                    .tally
                                    .disconnects
                                    .fetch_add(1, Ordering::Relaxed);
                                let _ = self.tx.send(Out::Abort);
                                return;
                            }
                        }
                        Err(e) => {
                            self.smsc.handle_decode_error(now, &e);
                            self.drain_transmit();
                        }
                    },
                    Err(e) => {
                        self.smsc.handle_decode_error(now, &DecodeError::Frame(e));
                        self.drain_transmit();
                    }
                }
                if self.smsc.is_closed() {
                    self.center.tally.count_submits(submits);
                    self.flush();
                    let _ = self.tx.send(Out::Close);
                    return;
                }
            }
            self.center.tally.count_submits(submits);
            self.flush();
        }
    }

    /// Hands everything encoded so far to the writer as one chunk, then queues the
    /// receipts that had to wait for their responses.
    fn flush(&mut self) {
        if !self.out.is_empty() {
            let bytes = self.out.split().freeze();
            let _ = self.tx.send(Out::Now {
                bytes,
                responses: self.responses,
            });
            self.responses = 0;
            self.out.reserve(64 * 1024);
        }
        for d in self.deferred.drain(..) {
            let _ = self.center.deliveries.send(d);
        }
    }

    /// Encodes what the session wants written.
    fn drain_transmit(&mut self) {
        while let Some(c) = self.smsc.poll_transmit() {
            put(&mut self.out, c);
        }
    }

    /// Acts on the session's events; `deliver_resp`: the PDU just fed was a deliver_sm_resp.
    fn events(&mut self, deliver_resp: bool) -> Next {
        let mut next = Next::Continue;
        while let Some(ev) = self.smsc.poll_event() {
            match ev {
                Event::BindRequest {
                    kind,
                    system_id,
                    password,
                    ..
                } => self.bind(kind, &system_id, &password),
                Event::Submit { sequence, submit } => {
                    let n = match submit {
                        Submit::Sm(sm) => self.submit(sequence, &sm),
                        // Not offered by this center (as before the session port).
                        Submit::Multi(_) | Submit::Data(_) => {
                            let r = self
                                .smsc
                                .take_submit_response(sequence, Err(St::EsmeRinvcmdid));
                            if let Some(c) = r {
                                put(&mut self.out, c);
                            }
                            Next::Continue
                        }
                    };
                    if let Next::Abort = n {
                        next = Next::Abort;
                    }
                }
                Event::DeliverResponse { status, .. } => {
                    if deliver_resp {
                        let tally = &self.center.tally;
                        tally.deliver_resps.fetch_add(1, Ordering::Relaxed);
                        if status != St::EsmeRok {
                            tally.deliver_resps_refused.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                Event::DeliverAborted { tag } => super::dlr::resend(&self.center, tag),
                // Timers are off: no timeouts.
                Event::DeliverTimeout { .. } | Event::Closed(_) => {}
            }
        }
        self.drain_transmit();
        next
    }

    fn bind(&mut self, kind: BindKind, system_id: &[u8], password: &[u8]) {
        let status = match self.center.authenticate(system_id, password) {
            Err(BindRefusal::UnknownAccount) => Some(St::EsmeRinvsysid),
            Err(_) => Some(St::EsmeRinvpaswd),
            Ok(()) if self.center.refuses_bind_now() => {
                Some(St::from_u32(self.center.cfg.refuse_bind_status))
            }
            Ok(()) => None,
        };
        if let Some(status) = status {
            self.refuse(status);
            return;
        }
        let account: Arc<str> = Arc::from(String::from_utf8_lossy(system_id).as_ref());
        let handle = SessionHandle {
            id: self.id,
            account: account.clone(),
            receives: kind.receives(),
            tx: self.tx.clone(),
            items: Some(self.items.clone()),
            delivers: None,
        };
        self.flush();
        // The bind_resp reaches the writer before the session becomes routable.
        let center = self.center.clone();
        let (smsc, tx) = (&mut self.smsc, &self.tx);
        let res = center.register(handle, || {
            smsc.accept_bind(std::time::Instant::now());
            let mut pending = BytesMut::new();
            while let Some(c) = smsc.poll_transmit() {
                put(&mut pending, c);
            }
            let _ = tx.send(Out::Now {
                bytes: pending.freeze(),
                responses: 0,
            });
        });
        match res {
            Ok(()) => {
                self.center.tally.binds.fetch_add(1, Ordering::Relaxed);
                self.account = Some(account);
                self.registered = true;
            }
            Err(_) => self.refuse(St::EsmeRbindfail),
        }
    }

    /// Refuses the pending bind; the connection stays open for another try.
    fn refuse(&mut self, status: St) {
        self.center
            .tally
            .bind_failures
            .fetch_add(1, Ordering::Relaxed);
        self.smsc.refuse_bind(status);
    }

    fn submit(&mut self, seq: u32, m: &Sm) -> Next {
        // The session surfaces submits only from a bound transmitter / transceiver.
        let Some(account) = self.account.clone() else {
            self.respond(seq, Err(St::EsmeRinvbndsts), None);
            return Next::Continue;
        };
        let outstanding = self.outstanding.load(Ordering::Relaxed) + 1;
        let center = self.center.clone();
        let status = match center.judge(outstanding, &mut self.rng) {
            Verdict::Accept => St::EsmeRok,
            Verdict::QueueFull => St::EsmeRmsgqful,
            Verdict::Throttled => St::EsmeRthrottled,
            Verdict::Permanent => St::from_u32(center.cfg.errors.permanent_status),
            Verdict::Temporary => St::from_u32(center.cfg.errors.temporary_status),
        };
        if status != St::EsmeRok {
            center.tally.count_rejected(&status_key(status.to_u32()));
            self.respond(seq, Err(status), None);
            return Next::Continue;
        }
        let payload: &[u8] = m.payload();
        let (concat, payload) = if m.has_udh() {
            split_udh(payload)
        } else {
            let t = &m.tlvs;
            let sar = match (
                t.sar_msg_ref_num(),
                t.sar_total_segments(),
                t.sar_segment_seqnum(),
            ) {
                (Some(reference), Some(total), Some(seq)) => Some(Concat {
                    reference,
                    total,
                    seq,
                }),
                _ => None,
            };
            (sar, payload)
        };
        // Kept, but its answer is lost: no receipt either (the client never learns the id).
        let dropped = center.drops_response(&mut self.rng);
        let mut idbuf = [0u8; 24];
        let id = center.smpp_message_id(&mut idbuf);
        let id_str = std::str::from_utf8(id).unwrap_or("0");
        let coding = if m.data_coding == 8 {
            TextCoding::Ucs2
        } else {
            TextCoding::Bytes
        };
        let whole: &[u8] = m.payload();
        let acc = Accepted {
            source: &m.source.addr,
            dest: &m.dest.addr,
            payload,
            concat,
            udh: &whole[..whole.len() - payload.len()],
            eight_bit: crate::tally::smpp_eight_bit(m.data_coding),
            receipt: if dropped { 0 } else { m.registered_delivery },
            coding,
        };
        let receipt = on_accepted(
            &center,
            &account,
            self.id,
            acc,
            MsgRef::Smpp(id_str.into()),
            &mut self.rng,
        );
        if dropped {
            return Next::Continue;
        }
        let hold = matches!(receipt, Receipt::Early)
            .then(|| Duration::from_millis(center.cfg.dlr.early_lead_ms));
        let due = self.respond(seq, Ok(id_str.to_owned()), hold);
        if let Receipt::After(all) = receipt {
            for mut d in all {
                d.at = d.at.max(due);
                self.deferred.push(d);
            }
        }
        let p = center.cfg.disconnect_probability;
        if p > 0.0 && self.rng.random::<f64>() < p {
            return Next::Abort;
        }
        Next::Continue
    }

    /// Takes the submit_sm_resp from the session and writes it now or after the latency
    /// draw (at least `hold`); returns when it is due.
    fn respond(&mut self, seq: u32, result: Result<String, St>, hold: Option<Duration>) -> Instant {
        let now = Instant::now();
        let Some(resp) = self.smsc.take_submit_response(seq, result) else {
            return now;
        };
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        let lat = &self.center.cfg.latency;
        let mut delay = if lat.is_zero() {
            Duration::ZERO
        } else {
            lat.sample(&mut self.rng)
        };
        if let Some(h) = hold {
            delay = delay.max(h);
        }
        if delay.is_zero() {
            put(&mut self.out, resp);
            self.responses += 1;
            now
        } else {
            let mut b = BytesMut::with_capacity(64);
            put(&mut b, resp);
            let _ = self.tx.send(Out::At {
                at: now + delay,
                bytes: b.freeze(),
                responses: 1,
            });
            now + delay
        }
    }

    /// Hands due receipts and MOs to the session as deliver_sm; what it cannot take now
    /// (not bound as a receiver any more) goes back to the scheduler.
    fn deliver(&mut self, batch: Vec<Delivery>) {
        let now = jiff::Timestamp::now();
        let at = std::time::Instant::now();
        let (mut dlrs, mut mos) = (0u64, 0u64);
        for d in batch {
            let sm = smpp_sm(&d.item, now);
            let receipt = matches!(d.item, Item::Receipt { .. });
            match self.smsc.deliver(at, d, Box::new(sm)) {
                Ok(_) if receipt => dlrs += 1,
                Ok(_) => mos += 1,
                Err(refused) => {
                    let _ = self.center.deliveries.send(refused.tag);
                }
            }
        }
        self.drain_transmit();
        // Drops window bookkeeping for answered deliver_sm (the timers themselves are off).
        let _ = self.smsc.poll_timeout();
        let tally = &self.center.tally;
        tally.dlrs_sent.fetch_add(dlrs, Ordering::Relaxed);
        tally.mo_sent.fetch_add(mos, Ordering::Relaxed);
    }
}

/// Encodes `c`; our own PDUs always satisfy the codec's field limits, so a failure is a bug
/// worth a log line, not a crash.
pub(crate) fn put(out: &mut BytesMut, c: Command) {
    if let Err(e) = c.encode(out) {
        tracing::error!(error = %e, "encoding an SMPP PDU failed");
    }
}

/// Tally key of a rejection status.
pub(crate) fn status_key(status: u32) -> String {
    format!("smpp:0x{status:08X}")
}

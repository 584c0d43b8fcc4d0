//! One CMPP connection on the ISMG side (2.0 or 3.0, chosen by the client's CONNECT), driven
//! through the protocols crate's sans-IO [`IsmgSession`]: the session owns the protocol
//! (CONNECT_RESP and its authenticator, version negotiation, ACTIVE_TEST / TERMINATE,
//! answers to undecodable frames, DELIVER numbering and DELIVER_RESP matching); this driver
//! owns the simulator's behaviour and the socket.
//!
//! Same batching as the SMPP session: frames are decoded one at a time from the read
//! buffer, fed to the session, and what it queues is gathered into one chunk for the writer.
//! CONNECT is checked against the account's shared secret (AuthenticatorSource); status 2 =
//! unknown Source_Addr, 3 = authentication failure, 5 = too many connections; the session
//! itself refuses a Version byte it cannot run. Anything but CONNECT before login closes the
//! connection (as do the first `refuse_binds` CONNECTs, with status 3). SUBMIT results: 0 accepted, 8 flow control (window, throughput and temporary
//! errors: CMPP has no other retryable code), 9 permanent error.
//!
//! Invariants: the session's own timers and windows are set out of reach (the simulator's
//! window, latency and error knobs decide SUBMIT answers; DELIVERs are not windowed and
//! no ACTIVE_TEST is originated), so driving the session changes no observable behaviour;
//! every SUBMIT_RESP written counts against the window until the writer has sent it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use rand::RngExt;
use rand::rngs::SmallRng;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::center::{Center, SessionHandle, Verdict};
use super::dlr::Delivery;
use super::dlr::MsgRef;
use super::mo::TextCoding;
use super::submit::{Accepted, Receipt, on_accepted};
use super::writer::{self, Out};
use crate::tally::{Concat, split_udh};
use sluice_protocols::cmpp::{
    self as c, CommandId, ConnectRequest, ConnectStatus, DeliverRefuseReason, IsmgCloseReason,
    IsmgConfig, IsmgEvent, IsmgSession, MsgFmt, MsgId, Pdu, ResultCode, Transmit, Version,
};

enum Next {
    Continue,
    Close,
    Abort,
}

/// Far enough to never fire in a run: the simulator has no idle or response timeouts.
const NEVER: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// The session's own limits, all out of reach (see the module invariants).
fn ismg_config() -> IsmgConfig {
    IsmgConfig {
        highest_version: Version::V30,
        connect_timeout: NEVER,
        submit_window: usize::MAX,
        deliver_window: usize::MAX,
        response_timeout: NEVER,
        active_test_interval: NEVER,
        active_test_misses: 1,
        max_length: c::DEFAULT_MAX_LENGTH,
    }
}

struct Session {
    center: Arc<Center>,
    id: u64,
    tx: mpsc::UnboundedSender<Out>,
    outstanding: Arc<AtomicUsize>,
    rng: SmallRng,
    /// Each DELIVER in the window is tagged with its delivery, to resend if unanswered.
    ismg: IsmgSession<Delivery>,
    /// DELIVERs from the scheduler, handed to the bind's [`SessionHandle`] on login.
    delivers: mpsc::UnboundedSender<Vec<(Delivery, c::Deliver)>>,
    /// The account, once logged in.
    account: Option<Arc<str>>,
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
    let (delivers, mut delivers_rx) = mpsc::unbounded_channel();
    let outstanding = Arc::new(AtomicUsize::new(0));
    let writer = tokio::spawn(writer::run(wr, rx, outstanding.clone()));
    let rng = center.session_rng(id);
    let mut s = Session {
        center,
        id,
        tx,
        outstanding,
        rng,
        ismg: IsmgSession::new(ismg_config(), std::time::Instant::now()),
        delivers,
        account: None,
        out: BytesMut::with_capacity(64 * 1024),
        responses: 0,
        deferred: Vec::new(),
    };
    s.read_loop(&mut rd, &mut shutdown, &mut delivers_rx).await;
    if s.account.is_some() {
        s.center.unregister(s.id);
    }
    // Whatever the client never answered is resent on its next login; DELIVERs routed here
    // after the end go back to the scheduler for another receiver.
    s.ismg.handle_disconnect();
    let _ = s.pump(std::time::Instant::now());
    delivers_rx.close();
    while let Ok(batch) = delivers_rx.try_recv() {
        for (d, _) in batch {
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
        shutdown: &mut watch::Receiver<bool>,
        delivers: &mut mpsc::UnboundedReceiver<Vec<(Delivery, c::Deliver)>>,
    ) {
        let mut rbuf = BytesMut::with_capacity(128 * 1024);
        // One timer, re-armed only when the session's next deadline comes earlier than the
        // armed one or the armed one fired (a per-read timer would cost a wheel insert per
        // read batch); firing early is harmless, the session checks its own deadlines.
        let mut armed = Instant::now() + NEVER;
        let timer = tokio::time::sleep_until(armed);
        tokio::pin!(timer);
        loop {
            if rbuf.capacity() - rbuf.len() < 16 * 1024 {
                rbuf.reserve(128 * 1024);
            }
            if let Some(at) = self.ismg.poll_timeout().map(Instant::from_std)
                && at < armed
            {
                armed = at;
                timer.as_mut().reset(at);
            }
            let mut batch = None;
            tokio::select! {
                r = rd.read_buf(&mut rbuf) => {
                    if r.unwrap_or(0) == 0 {
                        self.ismg.handle_disconnect();
                        self.flush();
                        return;
                    }
                }
                Some(b) = delivers.recv() => batch = Some(b),
                _ = shutdown.changed() => {
                    self.flush();
                    return;
                }
                () = &mut timer => {
                    self.ismg.handle_timeout(std::time::Instant::now());
                    armed = self
                        .ismg
                        .poll_timeout()
                        .map_or(Instant::now() + NEVER, Instant::from_std);
                    timer.as_mut().reset(armed);
                }
            }
            let now = std::time::Instant::now();
            if let Some(batch) = batch {
                self.deliver(now, batch);
            }
            let mut next = self.pump(now);
            while matches!(next, Next::Continue) {
                match c::decode_frame(&mut rbuf, self.ismg.version(), c::DEFAULT_MAX_LENGTH) {
                    Ok(None) => break,
                    Ok(Some(Ok(d))) => self.ismg.handle_pdu(now, d),
                    Ok(Some(Err(e))) => self.ismg.handle_decode_error(now, &e),
                    Err(e) => {
                        self.ismg.handle_frame_error(now, &e);
                        rbuf.clear();
                    }
                }
                next = self.pump(now);
            }
            match next {
                Next::Continue => self.flush(),
                Next::Close => {
                    self.flush();
                    let _ = self.tx.send(Out::Close);
                    return;
                }
                Next::Abort => {
                    self.center
                        .tally
                        .disconnects
                        .fetch_add(1, Ordering::Relaxed);
                    let _ = self.tx.send(Out::Abort);
                    return;
                }
            }
        }
    }

    /// Acts on what the session reported and queues what it wants written.
    fn pump(&mut self, now: std::time::Instant) -> Next {
        self.write_transmits();
        let mut next = Next::Continue;
        while let Some(event) = self.ismg.poll_event() {
            match event {
                IsmgEvent::ConnectRequest(req) => self.connect(now, &req),
                IsmgEvent::Submit { sequence, submit } => {
                    self.center.tally.count_submits(1);
                    if let Next::Abort = self.submit(sequence, &submit) {
                        return Next::Abort;
                    }
                }
                IsmgEvent::DeliverResponse { result, .. } => {
                    let tally = &self.center.tally;
                    tally.deliver_resps.fetch_add(1, Ordering::Relaxed);
                    if result != ResultCode::Success {
                        tally.deliver_resps_refused.fetch_add(1, Ordering::Relaxed);
                    }
                }
                IsmgEvent::DeliverAborted { tag, .. } => super::dlr::resend(&self.center, tag),
                // A SUBMIT that did not decode is answered by the session (Result 1 / 4)
                // and still counts as a submit received.
                IsmgEvent::Undecodable(e)
                    if e.header.command_id == CommandId::Submit && self.account.is_some() =>
                {
                    self.center.tally.count_submits(1);
                }
                IsmgEvent::Closed(reason) => {
                    if let IsmgCloseReason::ConnectRefused(_) = reason {
                        self.center
                            .tally
                            .bind_failures
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    next = Next::Close;
                }
                _ => {}
            }
        }
        self.write_transmits();
        next
    }

    /// Encodes everything the session queued into the read batch's chunk; SUBMIT_RESPs
    /// count against the window until written.
    fn write_transmits(&mut self) {
        let version = self.ismg.version();
        while let Some(t) = self.ismg.poll_transmit() {
            if matches!(t.pdu, Pdu::SubmitResp(_)) {
                self.outstanding.fetch_add(1, Ordering::Relaxed);
                self.responses += 1;
            }
            put(&mut self.out, &t, version);
        }
    }

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

    /// DELIVERs from the scheduler: the session numbers them and tracks DELIVER_RESPs.
    fn deliver(&mut self, now: std::time::Instant, batch: Vec<(Delivery, c::Deliver)>) {
        for (d, deliver) in batch {
            if let Err(refused) = self.ismg.deliver(now, d, Box::new(deliver)) {
                match refused.reason {
                    DeliverRefuseReason::Unencodable(e) => {
                        tracing::error!(error = %e, "encoding a CMPP DELIVER failed");
                    }
                    // Not (or no longer) logged in: another receiver gets it.
                    _ => {
                        let _ = self.center.deliveries.send(refused.tag);
                    }
                }
            }
        }
    }

    fn connect(&mut self, now: std::time::Instant, req: &ConnectRequest) {
        let source = req.source_addr.as_bytes();
        let secret = match self.center.password_of(source) {
            Ok(s) => s.map(|s| s.as_bytes().to_vec()),
            Err(_) => {
                self.ismg
                    .answer_connect(now, ConnectStatus::IllegalSourceAddress, b"");
                return;
            }
        };
        if (secret.as_ref().is_some_and(|s| !req.verifies(s))) || self.center.refuses_bind_now() {
            self.ismg
                .answer_connect(now, ConnectStatus::AuthenticationError, b"");
            return;
        }
        let secret = secret.unwrap_or_default();
        let account: Arc<str> = Arc::from(String::from_utf8_lossy(source).as_ref());
        let handle = SessionHandle {
            id: self.id,
            account: account.clone(),
            receives: true,
            tx: self.tx.clone(),
            items: None,
            delivers: Some(self.delivers.clone()),
        };
        self.flush();
        let center = self.center.clone();
        let (ismg, tx) = (&mut self.ismg, &self.tx);
        // The CONNECT_RESP is queued under the registry lock, so no DELIVER overtakes it.
        let res = center.register(handle, || {
            ismg.answer_connect(now, ConnectStatus::Ok, &secret);
            let mut pending = BytesMut::new();
            let version = ismg.version();
            while let Some(t) = ismg.poll_transmit() {
                put(&mut pending, &t, version);
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
            }
            Err(_) => self
                .ismg
                .answer_connect(now, ConnectStatus::OtherError, b""),
        }
    }

    fn submit(&mut self, seq: u32, m: &c::Submit) -> Next {
        let Some(account) = self.account.clone() else {
            return Next::Continue;
        };
        let Some(dest) = m.dest_terminal_ids.first() else {
            let _ = self.respond(seq, 0, ResultCode::MessageStructureError, None);
            return Next::Continue;
        };
        let outstanding = self.outstanding.load(Ordering::Relaxed) + 1;
        let center = self.center.clone();
        let result = match center.judge(outstanding, &mut self.rng) {
            Verdict::Accept => ResultCode::Success,
            Verdict::QueueFull | Verdict::Throttled | Verdict::Temporary => ResultCode::FlowControl,
            Verdict::Permanent => ResultCode::FeeTerminalNotServed,
        };
        if result != ResultCode::Success {
            center
                .tally
                .count_rejected(&format!("cmpp:{}", result.raw()));
            let _ = self.respond(seq, 0, result, None);
            return Next::Continue;
        }
        let (concat, payload) = if m.tp_udhi != 0 {
            split_udh(&m.msg_content)
        } else {
            (None::<Concat>, &m.msg_content[..])
        };
        // Kept, but its answer is lost: no report either (the client never learns the id).
        let dropped = center.drops_response(&mut self.rng);
        let msg_id = center.cmpp_msg_id();
        let coding = match m.msg_fmt {
            MsgFmt::Ucs2 => TextCoding::Ucs2,
            MsgFmt::Gbk => TextCoding::Gbk,
            _ => TextCoding::Bytes,
        };
        let receipt = if m.registered_delivery == 1 && !dropped {
            1
        } else {
            0
        };
        let acc = Accepted {
            source: m.src_id.as_bytes(),
            dest: dest.as_bytes(),
            payload,
            concat,
            udh: &m.msg_content[..m.msg_content.len() - payload.len()],
            eight_bit: m.msg_fmt == MsgFmt::Binary,
            receipt,
            coding,
        };
        let receipt = on_accepted(
            &center,
            &account,
            self.id,
            acc,
            MsgRef::Cmpp(msg_id),
            &mut self.rng,
        );
        if dropped {
            return Next::Continue;
        }
        let hold = matches!(receipt, Receipt::Early)
            .then(|| Duration::from_millis(center.cfg.dlr.early_lead_ms));
        let due = self.respond(seq, msg_id, ResultCode::Success, hold);
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

    /// Answers SUBMIT `seq` through the session, now or after the sampled latency (at
    /// least `hold`); returns when the answer is due.
    fn respond(
        &mut self,
        seq: u32,
        msg_id: u64,
        result: ResultCode,
        hold: Option<Duration>,
    ) -> Instant {
        // Whatever the session queued before stays ahead of this answer.
        self.write_transmits();
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
        let now = Instant::now();
        self.ismg.respond_submit(seq, MsgId(msg_id), result);
        let Some(t) = self.ismg.poll_transmit() else {
            // Not waiting any more (cannot happen while logged in): nothing to count.
            self.outstanding.fetch_sub(1, Ordering::Relaxed);
            return now;
        };
        let version = self.ismg.version();
        if delay.is_zero() {
            put(&mut self.out, &t, version);
            self.responses += 1;
            now
        } else {
            let mut b = BytesMut::with_capacity(24);
            put(&mut b, &t, version);
            let _ = self.tx.send(Out::At {
                at: now + delay,
                bytes: b.freeze(),
                responses: 1,
            });
            now + delay
        }
    }
}

/// Encodes a PDU the session queued; it only queues PDUs that encode on its version, so a
/// failure is a logged bug.
fn put(out: &mut BytesMut, t: &Transmit, version: Version) {
    if let Err(e) = t.encode(version, out) {
        tracing::error!(error = %e, "encoding a CMPP PDU failed");
    }
}

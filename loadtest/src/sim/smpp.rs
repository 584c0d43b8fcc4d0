//! One SMPP connection on the SMSC side.
//!
//! The reader loop reads as much as the socket has, handles every complete PDU in the buffer
//! and hands all immediate responses to the writer as one chunk (one syscall per read
//! batch). Bind state: open → bound (tx / rx / trx) → closed. Garbage: an unknown command
//! gets generic_nack(ESME_RINVCMDID); an unparseable body generic_nack(ESME_RINVCMDLEN); an
//! impossible command_length generic_nack then close (the stream cannot be resynchronised).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Buf, BytesMut};
use rand::RngExt;
use rand::rngs::SmallRng;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::center::{BindRefusal, Center, SessionHandle, SessionKind, Verdict};
use super::dlr::MsgRef;
use super::mo::TextCoding;
use super::submit::{Accepted, on_accepted};
use super::writer::{self, Out};
use crate::tally::split_udh;
use crate::wire::smpp::{self as w, HEADER_LEN};

struct Bound {
    account: Arc<str>,
    transmit: bool,
}

enum Next {
    Continue,
    /// Flush, then close (unbind, fatal framing error).
    Close,
    /// Drop the connection without flushing (random disconnect).
    Abort,
}

struct Session {
    center: Arc<Center>,
    id: u64,
    tx: mpsc::UnboundedSender<Out>,
    outstanding: Arc<AtomicUsize>,
    seq: Arc<AtomicU32>,
    rng: SmallRng,
    bound: Option<Bound>,
    out: BytesMut,
    responses: usize,
}

/// Serves one accepted connection until it closes or the simulator shuts down.
pub(crate) async fn serve(center: Arc<Center>, stream: TcpStream, mut shutdown: watch::Receiver<bool>) {
    let _ = stream.set_nodelay(true);
    let id = center.new_session_id();
    let (mut rd, wr) = stream.into_split();
    let (tx, rx) = mpsc::unbounded_channel();
    let outstanding = Arc::new(AtomicUsize::new(0));
    let writer = tokio::spawn(writer::run(wr, rx, outstanding.clone()));
    let rng = center.session_rng(id);
    let mut s = Session {
        center,
        id,
        tx,
        outstanding,
        seq: Arc::new(AtomicU32::new(1)),
        rng,
        bound: None,
        out: BytesMut::with_capacity(64 * 1024),
        responses: 0,
    };
    s.read_loop(&mut rd, &mut shutdown).await;
    if s.bound.is_some() {
        s.center.unregister(s.id);
    }
    drop(s);
    let _ = writer.await;
}

impl Session {
    async fn read_loop(&mut self, rd: &mut OwnedReadHalf, shutdown: &mut watch::Receiver<bool>) {
        let mut rbuf = BytesMut::with_capacity(128 * 1024);
        loop {
            if rbuf.capacity() - rbuf.len() < 16 * 1024 {
                rbuf.reserve(128 * 1024);
            }
            let n = tokio::select! {
                r = rd.read_buf(&mut rbuf) => r.unwrap_or(0),
                _ = shutdown.changed() => 0,
            };
            if n == 0 {
                self.flush();
                return;
            }
            let mut submits = 0u64;
            loop {
                let next = match w::check(&rbuf) {
                    Ok(None) => break,
                    Ok(Some(h)) => {
                        if h.id == w::SUBMIT_SM {
                            submits += 1;
                        }
                        let next = self.handle(h, &rbuf[HEADER_LEN..h.len as usize]);
                        rbuf.advance(h.len as usize);
                        next
                    }
                    Err(_) => {
                        w::put_empty(&mut self.out, w::GENERIC_NACK, w::RINVCMDLEN, 0);
                        Next::Close
                    }
                };
                match next {
                    Next::Continue => {}
                    Next::Close => {
                        self.center.tally.count_submits(submits);
                        self.flush();
                        let _ = self.tx.send(Out::Close);
                        return;
                    }
                    Next::Abort => {
                        self.center.tally.count_submits(submits);
                        self.center.tally.disconnects.fetch_add(1, Ordering::Relaxed);
                        let _ = self.tx.send(Out::Abort);
                        return;
                    }
                }
            }
            self.center.tally.count_submits(submits);
            self.flush();
        }
    }

    /// Hands everything encoded so far to the writer as one chunk.
    fn flush(&mut self) {
        if !self.out.is_empty() {
            let bytes = self.out.split().freeze();
            let _ = self.tx.send(Out::Now { bytes, responses: self.responses });
            self.responses = 0;
            self.out.reserve(64 * 1024);
        }
    }

    fn handle(&mut self, h: w::Header, body: &[u8]) -> Next {
        match h.id {
            w::SUBMIT_SM => self.submit(h.seq, body),
            w::BIND_TRANSMITTER | w::BIND_RECEIVER | w::BIND_TRANSCEIVER => self.bind(h, body),
            w::ENQUIRE_LINK => {
                w::put_empty(&mut self.out, w::ENQUIRE_LINK | w::RESP, w::ROK, h.seq);
                Next::Continue
            }
            w::UNBIND => {
                w::put_empty(&mut self.out, w::UNBIND | w::RESP, w::ROK, h.seq);
                Next::Close
            }
            id if id == w::DELIVER_SM | w::RESP => {
                self.center.tally.deliver_resps.fetch_add(1, Ordering::Relaxed);
                Next::Continue
            }
            id if id & w::RESP != 0 => Next::Continue,
            _ => {
                w::put_empty(&mut self.out, w::GENERIC_NACK, w::RINVCMDID, h.seq);
                Next::Continue
            }
        }
    }

    fn bind(&mut self, h: w::Header, body: &[u8]) -> Next {
        let sysid = self.center.cfg.system_id.clone();
        if self.bound.is_some() {
            w::put_bind_resp(&mut self.out, h.id, w::RALYBND, h.seq, sysid.as_bytes());
            return Next::Continue;
        }
        let Ok(b) = w::parse_bind(body) else {
            w::put_empty(&mut self.out, w::GENERIC_NACK, w::RINVCMDLEN, h.seq);
            return Next::Continue;
        };
        let refuse = |s: &mut Self, status| {
            s.center.tally.bind_failures.fetch_add(1, Ordering::Relaxed);
            w::put_bind_resp(&mut s.out, h.id, status, h.seq, sysid.as_bytes());
            Next::Continue
        };
        match self.center.authenticate(b.system_id, b.password) {
            Err(BindRefusal::UnknownAccount) => return refuse(self, w::RINVSYSID),
            Err(_) => return refuse(self, w::RINVPASWD),
            Ok(()) => {}
        }
        let account: Arc<str> = Arc::from(String::from_utf8_lossy(b.system_id).as_ref());
        let handle = SessionHandle {
            id: self.id,
            account: account.clone(),
            kind: SessionKind::Smpp,
            receives: h.id != w::BIND_TRANSMITTER,
            tx: self.tx.clone(),
            seq: self.seq.clone(),
        };
        // The bind_resp must reach the writer before the scheduler can route a receipt here.
        let mut pending = self.out.split();
        w::put_bind_resp(&mut pending, h.id, w::ROK, h.seq, sysid.as_bytes());
        let tx = self.tx.clone();
        let responses = std::mem::take(&mut self.responses);
        let res = self.center.register(handle, move || {
            let _ = tx.send(Out::Now { bytes: pending.freeze(), responses });
        });
        match res {
            Ok(()) => {
                self.center.tally.binds.fetch_add(1, Ordering::Relaxed);
                self.bound = Some(Bound { account, transmit: h.id != w::BIND_RECEIVER });
                Next::Continue
            }
            Err(_) => refuse(self, w::RBINDFAIL),
        }
    }

    fn submit(&mut self, seq: u32, body: &[u8]) -> Next {
        let account = match &self.bound {
            Some(b) if b.transmit => b.account.clone(),
            _ => {
                self.respond(w::RINVBNDSTS, seq, b"", None);
                return Next::Continue;
            }
        };
        let Ok(m) = w::parse_short_message(body) else {
            w::put_empty(&mut self.out, w::GENERIC_NACK, w::RINVCMDLEN, seq);
            return Next::Continue;
        };
        let outstanding = self.outstanding.load(Ordering::Relaxed) + 1;
        let center = self.center.clone();
        let status = match center.judge(outstanding, &mut self.rng) {
            Verdict::Accept => w::ROK,
            Verdict::QueueFull => w::RMSGQFUL,
            Verdict::Throttled => w::RTHROTTLED,
            Verdict::Permanent => center.cfg.errors.permanent_status,
            Verdict::Temporary => center.cfg.errors.temporary_status,
        };
        if status != w::ROK {
            center.tally.count_rejected(&status_key(status));
            self.respond(status, seq, b"", None);
            return Next::Continue;
        }
        let (concat, payload) = if m.esm_class & w::ESM_UDHI != 0 {
            split_udh(m.payload)
        } else {
            (m.sar.map(|s| crate::tally::Concat { reference: s.reference, total: s.total, seq: s.seq }), m.payload)
        };
        let mut idbuf = [0u8; 24];
        let id = center.smpp_message_id(&mut idbuf);
        let id_str = std::str::from_utf8(id).unwrap_or("0");
        let coding = if m.data_coding == 8 { TextCoding::Ucs2 } else { TextCoding::Bytes };
        let acc = Accepted { source: m.source, dest: m.dest, payload, concat, receipt: m.registered_delivery, coding };
        let early = on_accepted(&center, &account, self.id, acc, MsgRef::Smpp(id_str.into()), &mut self.rng);
        let hold = early.then(|| Duration::from_millis(center.cfg.dlr.early_lead_ms));
        self.respond(w::ROK, seq, id, hold);
        let p = center.cfg.disconnect_probability;
        if p > 0.0 && self.rng.random::<f64>() < p {
            return Next::Abort;
        }
        Next::Continue
    }

    /// Encodes a submit_sm_resp now or after the latency draw (at least `hold`).
    fn respond(&mut self, status: u32, seq: u32, id: &[u8], hold: Option<Duration>) {
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        let lat = &self.center.cfg.latency;
        let mut delay = if lat.is_zero() { Duration::ZERO } else { lat.sample(&mut self.rng) };
        if let Some(h) = hold {
            delay = delay.max(h);
        }
        if delay.is_zero() {
            w::put_submit_resp(&mut self.out, status, seq, id);
            self.responses += 1;
        } else {
            let mut b = BytesMut::with_capacity(32 + id.len());
            w::put_submit_resp(&mut b, status, seq, id);
            let _ = self.tx.send(Out::At { at: Instant::now() + delay, bytes: b.freeze(), responses: 1 });
        }
    }
}

/// Tally key of a rejection status.
pub(crate) fn status_key(status: u32) -> String {
    format!("smpp:0x{status:08X}")
}

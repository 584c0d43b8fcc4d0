//! One CMPP connection on the ISMG side (2.0 or 3.0, chosen by the client's CONNECT).
//!
//! Same batching as the SMPP session. CONNECT is checked against the account's shared secret
//! (AuthenticatorSource); status 2 = unknown Source_Addr, 3 = authentication failure, 5 =
//! too many connections. Anything but CONNECT before login closes the connection. SUBMIT
//! results: 0 accepted, 8 flow control (window, throughput and temporary errors: CMPP has no
//! other retryable code), 9 permanent error.

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
use crate::tally::{Concat, split_udh};
use crate::wire::cmpp::{self as w, HEADER_LEN, Version};

const RESULT_PERMANENT: u32 = 9;

enum Next {
    Continue,
    Close,
    Abort,
}

struct Session {
    center: Arc<Center>,
    id: u64,
    tx: mpsc::UnboundedSender<Out>,
    outstanding: Arc<AtomicUsize>,
    seq: Arc<AtomicU32>,
    rng: SmallRng,
    login: Option<(Arc<str>, Version)>,
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
        login: None,
        out: BytesMut::with_capacity(64 * 1024),
        responses: 0,
    };
    s.read_loop(&mut rd, &mut shutdown).await;
    if s.login.is_some() {
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
            loop {
                let next = match w::check(&rbuf) {
                    Ok(None) => break,
                    Ok(Some(h)) => {
                        let next = self.handle(h, &rbuf[HEADER_LEN..h.len as usize]);
                        rbuf.advance(h.len as usize);
                        next
                    }
                    Err(_) => Next::Close,
                };
                match next {
                    Next::Continue => {}
                    Next::Close => {
                        self.flush();
                        let _ = self.tx.send(Out::Close);
                        return;
                    }
                    Next::Abort => {
                        self.center.tally.disconnects.fetch_add(1, Ordering::Relaxed);
                        let _ = self.tx.send(Out::Abort);
                        return;
                    }
                }
            }
            self.flush();
        }
    }

    fn flush(&mut self) {
        if !self.out.is_empty() {
            let bytes = self.out.split().freeze();
            let _ = self.tx.send(Out::Now { bytes, responses: self.responses });
            self.responses = 0;
            self.out.reserve(64 * 1024);
        }
    }

    fn handle(&mut self, h: w::Header, body: &[u8]) -> Next {
        let Some((account, version)) = self.login.clone() else {
            return if h.id == w::CONNECT { self.connect(h, body) } else { Next::Close };
        };
        match h.id {
            w::SUBMIT => {
                self.center.tally.count_submits(1);
                self.submit(&account, version, h.seq, body)
            }
            w::ACTIVE_TEST => {
                w::put_active_test_resp(&mut self.out, h.seq);
                Next::Continue
            }
            w::TERMINATE => {
                w::put_empty(&mut self.out, w::TERMINATE | w::RESP, h.seq);
                Next::Close
            }
            id if id == w::DELIVER | w::RESP => {
                self.center.tally.deliver_resps.fetch_add(1, Ordering::Relaxed);
                Next::Continue
            }
            w::CONNECT => Next::Continue,
            _ => Next::Continue,
        }
    }

    fn connect(&mut self, h: w::Header, body: &[u8]) -> Next {
        let Ok(c) = w::parse_connect(body) else {
            return Next::Close;
        };
        let version = Version::from_byte(c.version);
        let secret = match self.center.password_of(c.source_addr) {
            Ok(s) => s.map(|s| s.as_bytes().to_vec()),
            Err(_) => return self.refuse(version, h.seq, 2, &c.authenticator),
        };
        if let Some(secret) = &secret
            && w::authenticator_source(c.source_addr, secret, c.timestamp) != c.authenticator
        {
            return self.refuse(version, h.seq, 3, &c.authenticator);
        }
        let secret = secret.unwrap_or_default();
        let account: Arc<str> = Arc::from(String::from_utf8_lossy(c.source_addr).as_ref());
        let handle = SessionHandle {
            id: self.id,
            account: account.clone(),
            kind: SessionKind::Cmpp(version),
            receives: true,
            tx: self.tx.clone(),
            seq: self.seq.clone(),
        };
        let mut pending = self.out.split();
        let auth = w::authenticator_ismg(version, 0, &c.authenticator, &secret);
        w::put_connect_resp(&mut pending, version, h.seq, 0, &auth);
        let tx = self.tx.clone();
        let responses = std::mem::take(&mut self.responses);
        let res = self.center.register(handle, move || {
            let _ = tx.send(Out::Now { bytes: pending.freeze(), responses });
        });
        match res {
            Ok(()) => {
                self.center.tally.binds.fetch_add(1, Ordering::Relaxed);
                self.login = Some((account, version));
                Next::Continue
            }
            Err(BindRefusal::TooManyBinds | BindRefusal::UnknownAccount | BindRefusal::BadPassword) => {
                self.refuse(version, h.seq, 5, &c.authenticator)
            }
        }
    }

    fn refuse(&mut self, version: Version, seq: u32, status: u32, auth: &[u8; 16]) -> Next {
        self.center.tally.bind_failures.fetch_add(1, Ordering::Relaxed);
        let a = w::authenticator_ismg(version, status, auth, b"");
        w::put_connect_resp(&mut self.out, version, seq, status, &a);
        Next::Close
    }

    fn submit(&mut self, account: &Arc<str>, version: Version, seq: u32, body: &[u8]) -> Next {
        let Ok(m) = w::parse_submit(version, body) else {
            self.respond(version, seq, 0, 1, None);
            return Next::Continue;
        };
        let Some(dest) = m.dests.first().copied() else {
            self.respond(version, seq, 0, 1, None);
            return Next::Continue;
        };
        let outstanding = self.outstanding.load(Ordering::Relaxed) + 1;
        let center = self.center.clone();
        let result = match center.judge(outstanding, &mut self.rng) {
            Verdict::Accept => 0,
            Verdict::QueueFull | Verdict::Throttled | Verdict::Temporary => w::RESULT_FLOW_CONTROL,
            Verdict::Permanent => RESULT_PERMANENT,
        };
        if result != 0 {
            center.tally.count_rejected(&format!("cmpp:{result}"));
            self.respond(version, seq, 0, result, None);
            return Next::Continue;
        }
        let (concat, payload) = if m.tp_udhi != 0 { split_udh(m.content) } else { (None::<Concat>, m.content) };
        let _ = (m.pk_total, m.pk_number);
        let msg_id = center.cmpp_msg_id();
        let coding = match m.msg_fmt {
            8 => TextCoding::Ucs2,
            15 => TextCoding::Gbk,
            _ => TextCoding::Bytes,
        };
        let receipt = if m.registered_delivery == 1 { 1 } else { 0 };
        let acc = Accepted { source: m.src_id, dest, payload, concat, receipt, coding };
        let early = on_accepted(&center, account, self.id, acc, MsgRef::Cmpp(msg_id), &mut self.rng);
        let hold = early.then(|| Duration::from_millis(center.cfg.dlr.early_lead_ms));
        self.respond(version, seq, msg_id, 0, hold);
        let p = center.cfg.disconnect_probability;
        if p > 0.0 && self.rng.random::<f64>() < p {
            return Next::Abort;
        }
        Next::Continue
    }

    fn respond(&mut self, version: Version, seq: u32, msg_id: u64, result: u32, hold: Option<Duration>) {
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        let lat = &self.center.cfg.latency;
        let mut delay = if lat.is_zero() { Duration::ZERO } else { lat.sample(&mut self.rng) };
        if let Some(h) = hold {
            delay = delay.max(h);
        }
        if delay.is_zero() {
            w::put_msgid_resp(&mut self.out, version, w::SUBMIT, seq, msg_id, result);
            self.responses += 1;
        } else {
            let mut b = BytesMut::with_capacity(24);
            w::put_msgid_resp(&mut b, version, w::SUBMIT, seq, msg_id, result);
            let _ = self.tx.send(Out::At { at: Instant::now() + delay, bytes: b.freeze(), responses: 1 });
        }
    }
}

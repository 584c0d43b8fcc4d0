//! One CMPP connection on the ISMG side (2.0 or 3.0, chosen by the client's CONNECT), on
//! `sluice_protocols::cmpp` (`decode_frame` over our read buffer, `Pdu::encode`).
//!
//! Same batching as the SMPP session. CONNECT is checked against the account's shared secret
//! (AuthenticatorSource); status 2 = unknown Source_Addr, 3 = authentication failure, 5 =
//! too many connections. Anything but CONNECT before login closes the connection. SUBMIT
//! results: 0 accepted, 8 flow control (window, throughput and temporary errors: CMPP has no
//! other retryable code), 9 permanent error.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use rand::RngExt;
use rand::rngs::SmallRng;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::center::{BindRefusal, Center, SessionHandle, SessionKind, Verdict};
use super::dlr::Delivery;
use super::dlr::MsgRef;
use super::mo::TextCoding;
use super::submit::{Accepted, Receipt, on_accepted};
use super::writer::{self, Out};
use crate::tally::{Concat, split_udh};
use sluice_protocols::cmpp::{
    self as c, ActiveTestResp, ConnectResp, ConnectStatus, MsgFmt, MsgId, Pdu, ResultCode,
    SubmitResp, Version, auth,
};

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
        deferred: Vec::new(),
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
                let version = self.login.as_ref().map_or(Version::V30, |l| l.1);
                let next = match c::decode_frame(&mut rbuf, version, c::DEFAULT_MAX_LENGTH) {
                    Ok(None) => break,
                    Ok(Some(Ok(d))) => self.handle(d.header.sequence_id, d.pdu),
                    Ok(Some(Err(e))) => match (&self.login, e.response(version)) {
                        (Some(_), Some(resp)) => {
                            if matches!(resp, Pdu::SubmitResp(_)) {
                                self.center.tally.count_submits(1);
                                self.outstanding.fetch_add(1, Ordering::Relaxed);
                                self.responses += 1;
                            }
                            put(&mut self.out, e.header.sequence_id, version, &resp);
                            Next::Continue
                        }
                        _ => Next::Close,
                    },
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
                        self.center
                            .tally
                            .disconnects
                            .fetch_add(1, Ordering::Relaxed);
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

    fn handle(&mut self, seq: u32, pdu: Pdu) -> Next {
        let Some((account, version)) = self.login.clone() else {
            return match pdu {
                Pdu::Connect(conn) => self.connect(seq, &conn),
                _ => Next::Close,
            };
        };
        match pdu {
            Pdu::Submit(m) => {
                self.center.tally.count_submits(1);
                self.submit(&account, version, seq, &m)
            }
            Pdu::ActiveTest => {
                put(
                    &mut self.out,
                    seq,
                    version,
                    &Pdu::ActiveTestResp(ActiveTestResp::default()),
                );
                Next::Continue
            }
            Pdu::Terminate => {
                put(&mut self.out, seq, version, &Pdu::TerminateResp);
                Next::Close
            }
            Pdu::DeliverResp(_) => {
                self.center
                    .tally
                    .deliver_resps
                    .fetch_add(1, Ordering::Relaxed);
                Next::Continue
            }
            _ => Next::Continue,
        }
    }

    fn connect(&mut self, seq: u32, conn: &c::Connect) -> Next {
        let source = conn.source_addr.as_bytes();
        let version = match c::negotiate(conn.version, Version::V30) {
            Ok(v) => v,
            Err(status) => {
                return self.refuse(Version::V20, seq, status, &conn.authenticator_source);
            }
        };
        let secret = match self.center.password_of(source) {
            Ok(s) => s.map(|s| s.as_bytes().to_vec()),
            Err(_) => {
                return self.refuse(
                    version,
                    seq,
                    ConnectStatus::IllegalSourceAddress,
                    &conn.authenticator_source,
                );
            }
        };
        if let Some(secret) = &secret
            && !auth::verify_source(source, secret, conn.timestamp, &conn.authenticator_source)
        {
            return self.refuse(
                version,
                seq,
                ConnectStatus::AuthenticationError,
                &conn.authenticator_source,
            );
        }
        let secret = secret.unwrap_or_default();
        let account: Arc<str> = Arc::from(String::from_utf8_lossy(source).as_ref());
        let handle = SessionHandle {
            id: self.id,
            account: account.clone(),
            kind: SessionKind::Cmpp(version),
            receives: true,
            tx: self.tx.clone(),
            seq: self.seq.clone(),
            items: None,
        };
        self.flush();
        let mut pending = BytesMut::new();
        let resp = ConnectResp {
            status: ConnectStatus::Ok,
            authenticator_ismg: auth::authenticator_ismg(
                version,
                ConnectStatus::Ok,
                &conn.authenticator_source,
                &secret,
            ),
            version: version.byte(),
        };
        put(&mut pending, seq, version, &Pdu::ConnectResp(resp));
        let tx = self.tx.clone();
        let res = self.center.register(handle, move || {
            let _ = tx.send(Out::Now {
                bytes: pending.freeze(),
                responses: 0,
            });
        });
        match res {
            Ok(()) => {
                self.center.tally.binds.fetch_add(1, Ordering::Relaxed);
                self.login = Some((account, version));
                Next::Continue
            }
            Err(
                BindRefusal::TooManyBinds | BindRefusal::UnknownAccount | BindRefusal::BadPassword,
            ) => self.refuse(
                version,
                seq,
                ConnectStatus::OtherError,
                &conn.authenticator_source,
            ),
        }
    }

    fn refuse(
        &mut self,
        version: Version,
        seq: u32,
        status: ConnectStatus,
        auth_source: &[u8; 16],
    ) -> Next {
        self.center
            .tally
            .bind_failures
            .fetch_add(1, Ordering::Relaxed);
        let resp = ConnectResp {
            status,
            authenticator_ismg: auth::authenticator_ismg(version, status, auth_source, b""),
            version: version.byte(),
        };
        put(&mut self.out, seq, version, &Pdu::ConnectResp(resp));
        Next::Close
    }

    fn submit(&mut self, account: &Arc<str>, version: Version, seq: u32, m: &c::Submit) -> Next {
        let Some(dest) = m.dest_terminal_ids.first() else {
            let _ = self.respond(version, seq, 0, ResultCode::MessageStructureError, None);
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
            let _ = self.respond(version, seq, 0, result, None);
            return Next::Continue;
        }
        let (concat, payload) = if m.tp_udhi != 0 {
            split_udh(&m.msg_content)
        } else {
            (None::<Concat>, &m.msg_content[..])
        };
        let msg_id = center.cmpp_msg_id();
        let coding = match m.msg_fmt {
            MsgFmt::Ucs2 => TextCoding::Ucs2,
            MsgFmt::Gbk => TextCoding::Gbk,
            _ => TextCoding::Bytes,
        };
        let receipt = if m.registered_delivery == 1 { 1 } else { 0 };
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
            account,
            self.id,
            acc,
            MsgRef::Cmpp(msg_id),
            &mut self.rng,
        );
        let hold = matches!(receipt, Receipt::Early)
            .then(|| Duration::from_millis(center.cfg.dlr.early_lead_ms));
        let due = self.respond(version, seq, msg_id, ResultCode::Success, hold);
        if let Receipt::After(mut d) = receipt {
            d.at = d.at.max(due);
            self.deferred.push(d);
        }
        let p = center.cfg.disconnect_probability;
        if p > 0.0 && self.rng.random::<f64>() < p {
            return Next::Abort;
        }
        Next::Continue
    }

    fn respond(
        &mut self,
        version: Version,
        seq: u32,
        msg_id: u64,
        result: ResultCode,
        hold: Option<Duration>,
    ) -> Instant {
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
        if delay.is_zero() {
            put(
                &mut self.out,
                seq,
                version,
                &Pdu::SubmitResp(SubmitResp {
                    msg_id: MsgId(msg_id),
                    result,
                }),
            );
            self.responses += 1;
            now
        } else {
            let mut b = BytesMut::with_capacity(24);
            put(
                &mut b,
                seq,
                version,
                &Pdu::SubmitResp(SubmitResp {
                    msg_id: MsgId(msg_id),
                    result,
                }),
            );
            let _ = self.tx.send(Out::At {
                at: now + delay,
                bytes: b.freeze(),
                responses: 1,
            });
            now + delay
        }
    }
}

/// Encodes `pdu`; our own PDUs always fit the codec's limits, so a failure is a logged bug.
pub(crate) fn put(out: &mut BytesMut, seq: u32, version: Version, pdu: &Pdu) {
    if let Err(e) = pdu.encode(seq, version, out) {
        tracing::error!(error = %e, "encoding a CMPP PDU failed");
    }
}

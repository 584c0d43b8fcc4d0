//! One SMPP connection on the SMSC side, on `sluice_protocols::smpp` (frame check, then
//! zero-copy decode of each PDU split off the read buffer).
//!
//! The reader loop reads as much as the socket has, handles every complete PDU in the buffer
//! and hands all immediate responses to the writer as one chunk (one syscall per read
//! batch). Bind state: open → bound (tx / rx / trx) → closed. Garbage: an unknown command
//! gets generic_nack(ESME_RINVCMDID); an unparseable body generic_nack(ESME_RINVCMDLEN); an
//! impossible command_length generic_nack then close (the stream cannot be resynchronised).

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
use sluice_protocols::smpp::{
    self as p, BindResp, Command, CommandId, CommandStatus as St, MessageIdResp, Octets, Pdu,
};

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
        bound: None,
        out: BytesMut::with_capacity(64 * 1024),
        responses: 0,
        deferred: Vec::new(),
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
                let next = match p::check(&rbuf, p::DEFAULT_MAX_LEN) {
                    Ok(None) => break,
                    Ok(Some(len)) => match p::decode(rbuf.split_to(len).freeze()) {
                        Ok(d) => {
                            if matches!(d.command.pdu, Pdu::SubmitSm(_)) {
                                submits += 1;
                            }
                            self.handle(d.command)
                        }
                        Err(e) => {
                            if let Some(r) = e.response() {
                                put(&mut self.out, r);
                            }
                            Next::Continue
                        }
                    },
                    Err(e) => {
                        put(&mut self.out, e.response());
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
                        self.center
                            .tally
                            .disconnects
                            .fetch_add(1, Ordering::Relaxed);
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

    fn handle(&mut self, cmd: Command) -> Next {
        let seq = cmd.sequence;
        match cmd.pdu {
            Pdu::SubmitSm(sm) => self.submit(seq, &sm),
            Pdu::BindTransmitter(b) => self.bind(CommandId::BindTransmitter, seq, &b),
            Pdu::BindReceiver(b) => self.bind(CommandId::BindReceiver, seq, &b),
            Pdu::BindTransceiver(b) => self.bind(CommandId::BindTransceiver, seq, &b),
            Pdu::EnquireLink => {
                put(
                    &mut self.out,
                    Command::new(St::EsmeRok, seq, Pdu::EnquireLinkResp),
                );
                Next::Continue
            }
            Pdu::Unbind => {
                put(
                    &mut self.out,
                    Command::new(St::EsmeRok, seq, Pdu::UnbindResp),
                );
                Next::Close
            }
            Pdu::DeliverSmResp(_) => {
                self.center
                    .tally
                    .deliver_resps
                    .fetch_add(1, Ordering::Relaxed);
                Next::Continue
            }
            pdu => {
                // Requests this center does not implement get their own response with
                // ESME_RINVCMDID; responses to nothing are ignored.
                if let Some(resp) = Pdu::empty_response_for(pdu.command_id()) {
                    put(&mut self.out, Command::new(St::EsmeRinvcmdid, seq, resp));
                } else if !is_response(pdu.command_id()) {
                    put(
                        &mut self.out,
                        Command::new(St::EsmeRinvcmdid, seq, Pdu::GenericNack),
                    );
                }
                Next::Continue
            }
        }
    }

    fn bind(&mut self, id: CommandId, seq: u32, b: &p::Bind) -> Next {
        let resp = |status: St, sysid: &str| {
            let body = BindResp {
                system_id: Octets::copy_from_slice(sysid.as_bytes()),
                tlvs: Default::default(),
            };
            let mut body = body;
            if status == St::EsmeRok {
                // sc_interface_version: 5.0 to a 5.0 ESME, else 3.4.
                let v = if b.interface_version >= 0x50 {
                    0x50
                } else {
                    0x34
                };
                body.tlvs.push(0x0210, Octets::copy_from_slice(&[v]));
            }
            let pdu = match id {
                CommandId::BindReceiver => Pdu::BindReceiverResp(body),
                CommandId::BindTransceiver => Pdu::BindTransceiverResp(body),
                _ => Pdu::BindTransmitterResp(body),
            };
            Command::new(status, seq, pdu)
        };
        let sysid = self.center.cfg.system_id.clone();
        if self.bound.is_some() {
            put(&mut self.out, resp(St::EsmeRalybnd, &sysid));
            return Next::Continue;
        }
        let refuse = |s: &mut Self, status| {
            s.center.tally.bind_failures.fetch_add(1, Ordering::Relaxed);
            put(&mut s.out, resp(status, &sysid));
            Next::Continue
        };
        match self.center.authenticate(&b.system_id, &b.password) {
            Err(BindRefusal::UnknownAccount) => return refuse(self, St::EsmeRinvsysid),
            Err(_) => return refuse(self, St::EsmeRinvpaswd),
            Ok(()) => {}
        }
        let account: Arc<str> = Arc::from(String::from_utf8_lossy(&b.system_id).as_ref());
        let handle = SessionHandle {
            id: self.id,
            account: account.clone(),
            kind: SessionKind::Smpp,
            receives: id != CommandId::BindTransmitter,
            tx: self.tx.clone(),
            seq: self.seq.clone(),
        };
        self.flush();
        // The bind_resp must reach the writer before the scheduler can route a receipt here.
        let mut pending = BytesMut::new();
        put(&mut pending, resp(St::EsmeRok, &sysid));
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
                self.bound = Some(Bound {
                    account,
                    transmit: id != CommandId::BindReceiver,
                });
                Next::Continue
            }
            Err(_) => refuse(self, St::EsmeRbindfail),
        }
    }

    fn submit(&mut self, seq: u32, m: &p::SubmitSm) -> Next {
        let account = match &self.bound {
            Some(b) if b.transmit => b.account.clone(),
            _ => {
                let _ = self.respond(St::EsmeRinvbndsts, seq, b"", None);
                return Next::Continue;
            }
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
            let _ = self.respond(status, seq, b"", None);
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
            receipt: m.registered_delivery,
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
        let hold = matches!(receipt, Receipt::Early)
            .then(|| Duration::from_millis(center.cfg.dlr.early_lead_ms));
        let due = self.respond(St::EsmeRok, seq, id, hold);
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

    /// Encodes a submit_sm_resp now or after the latency draw (at least `hold`).
    fn respond(&mut self, status: St, seq: u32, id: &[u8], hold: Option<Duration>) -> Instant {
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
            put(&mut self.out, submit_resp(status, seq, id));
            self.responses += 1;
            now
        } else {
            let mut b = BytesMut::with_capacity(32 + id.len());
            put(&mut b, submit_resp(status, seq, id));
            let _ = self.tx.send(Out::At {
                at: now + delay,
                bytes: b.freeze(),
                responses: 1,
            });
            now + delay
        }
    }
}

/// submit_sm_resp; the codec omits the body for a non-zero status (SMPP 3.4 §4.4.2).
fn submit_resp(status: St, seq: u32, id: &[u8]) -> Command {
    let body = if status == St::EsmeRok {
        MessageIdResp::new(Octets::copy_from_slice(id))
    } else {
        MessageIdResp::default()
    };
    Command::new(status, seq, Pdu::SubmitSmResp(body))
}

/// Encodes `c`; our own PDUs always satisfy the codec's field limits, so a failure is a bug
/// worth a log line, not a crash.
pub(crate) fn put(out: &mut BytesMut, c: Command) {
    if let Err(e) = c.encode(out) {
        tracing::error!(error = %e, "encoding an SMPP PDU failed");
    }
}

fn is_response(id: CommandId) -> bool {
    id.to_u32() & 0x8000_0000 != 0
}

/// Tally key of a rejection status.
pub(crate) fn status_key(status: u32) -> String {
    format!("smpp:0x{status:08X}")
}

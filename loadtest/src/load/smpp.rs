//! One ESME connection of the load generator (on `sluice_protocols::smpp`): connect, bind, keep the window full, match
//! responses to submit times, acknowledge and match receipts, resubmit on throttle /
//! queue-full / temporary errors and on disconnect, then unbind.
//!
//! Writes are batched: every free window slot is filled and written with one `write_all`;
//! reads drain every complete PDU in the buffer before the next write.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::payload::Part;
use super::report::new_histogram;
use super::{Claim, PartRef, Shared};
use crate::sim::smpp_put as put;
use crate::tally::lock;
use sluice_protocols::smpp::{
    self as p, Address, Bind, Command, CommandStatus as St, MessageIdResp, Octets, Pdu, Sm,
};

/// Consecutive failed connects/binds after which a connection gives up.
const MAX_BIND_FAILURES: u32 = 20;

enum End {
    /// Nothing left to do; unbound.
    Done,
    /// The connection broke; in-flight parts were requeued.
    Dropped,
}

struct Conn {
    s: Arc<Shared>,
    submit_hist: Histogram<u64>,
    dlr_hist: Histogram<u64>,
    /// Parts of started messages not yet written.
    local: VecDeque<PartRef>,
    cache: Option<(u64, Vec<Part>)>,
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
        local: VecDeque::new(),
        cache: None,
    };
    let mut failures = 0u32;
    loop {
        if c.local.is_empty() && s.finished() && !(s.cfg.dlr && s.dlrs_outstanding()) {
            break;
        }
        match tokio::time::timeout(
            s.cfg.bind_timeout,
            connect_bind(&addr, &system_id, &password, s.cfg.dlr),
        )
        .await
        {
            Ok(Ok(stream)) => {
                failures = 0;
                match c.drive(stream).await {
                    End::Done => break,
                    End::Dropped => {
                        s.c.disconnects.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "bind failed");
                failures += 1;
                s.c.bind_failures.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                tracing::debug!("bind timed out");
                failures += 1;
                s.c.bind_failures.fetch_add(1, Ordering::Relaxed);
            }
        }
        if failures > 0 {
            if failures >= MAX_BIND_FAILURES || s.sending_closed() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Hand unsent parts back so another connection can finish them.
    while let Some(p) = c.local.pop_front() {
        lock(&s.retry).push_back(p);
    }
    s.merge_hist(&c.submit_hist, &c.dlr_hist);
}

async fn connect_bind(
    addr: &str,
    system_id: &str,
    password: &str,
    trx: bool,
) -> std::io::Result<TcpStream> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let mut b = BytesMut::new();
    let bind = Bind {
        system_id: Octets::copy_from_slice(system_id.as_bytes()),
        password: Octets::copy_from_slice(password.as_bytes()),
        ..Bind::default()
    };
    let pdu = if trx {
        Pdu::BindTransceiver(bind)
    } else {
        Pdu::BindTransmitter(bind)
    };
    Command::new(St::EsmeRok, 1, pdu)
        .encode(&mut b)
        .map_err(std::io::Error::other)?;
    stream.write_all(&b).await?;
    let mut r = BytesMut::with_capacity(4096);
    loop {
        if stream.read_buf(&mut r).await? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "closed during bind",
            ));
        }
        while let Some(len) = p::check(&r, p::DEFAULT_MAX_LEN).map_err(std::io::Error::other)? {
            let c = p::decode(r.split_to(len).freeze())
                .map_err(std::io::Error::other)?
                .command;
            if matches!(
                c.pdu,
                Pdu::BindTransceiverResp(_) | Pdu::BindTransmitterResp(_)
            ) {
                if c.status != St::EsmeRok {
                    return Err(std::io::Error::other(format!("bind refused: {}", c.status)));
                }
                return Ok(stream);
            }
        }
    }
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
        if self.cache.as_ref().is_none_or(|(m, _)| *m != p.msg) {
            self.cache = Some((p.msg, self.s.cfg.payload.parts(p.msg)));
        }
        let parts = self.cache.as_ref().map(|c| &c.1);
        parts
            .and_then(|v| v.get(p.part as usize))
            .cloned()
            .unwrap_or_else(|| Part {
                dest: String::new(),
                data_coding: 0,
                short_message: Vec::new(),
                udhi: false,
                sar: None,
            })
    }

    fn next_part(&mut self) -> Option<PartRef> {
        if let Some(p) = self.local.pop_front() {
            return Some(p);
        }
        match self.s.claim()? {
            Claim::Retry(p) => Some(p),
            Claim::New(i) => {
                let parts = self.s.cfg.payload.parts(i);
                let total = parts.len() as u8;
                self.s.started_parts(i, total);
                for k in 1..total {
                    self.local.push_back(PartRef {
                        msg: i,
                        part: k,
                        total,
                    });
                }
                self.cache = Some((i, parts));
                Some(PartRef {
                    msg: i,
                    part: 0,
                    total,
                })
            }
        }
    }

    async fn drive(&mut self, stream: TcpStream) -> End {
        let s = self.s.clone();
        let cfg = &s.cfg;
        let (mut rd, mut wr) = stream.into_split();
        let mut rbuf = BytesMut::with_capacity(128 * 1024);
        let mut wbuf = BytesMut::with_capacity(64 * 1024);
        let mut inflight: HashMap<u32, (PartRef, Instant)> = HashMap::with_capacity(cfg.window * 2);
        let mut seq = 2u32;
        let mut paused_until: Option<Instant> = None;
        let mut finishing: Option<Instant> = None;
        let mut last_timeout_check = Instant::now();
        // AIMD on the window: halve on throttle / queue-full (at most once per 10 ms), grow
        // by one per window's worth of accepted submits, so a center that honours a smaller
        // window or a lower rate is not hammered with resubmits.
        let mut eff_window = cfg.window;
        let mut since_grow = 0usize;
        let mut last_cut = Instant::now() - Duration::from_secs(1);
        let source = cfg.payload.source.clone();
        let rd_flag = if cfg.dlr { 1 } else { 0 };
        loop {
            let now = Instant::now();
            // 1. Fill the window.
            let paused = paused_until.is_some_and(|t| now < t);
            let mut rate_limited = false;
            if !paused && inflight.len() < eff_window {
                let room = (eff_window - inflight.len()) as u64;
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
                    let part = self.part(pr);
                    let mut sm = Sm {
                        source: Address::new(1, 1, Octets::copy_from_slice(source.as_bytes())),
                        dest: Address::new(1, 1, Octets::from(part.dest.into_bytes())),
                        esm_class: if part.udhi { p::ESM_CLASS_UDHI } else { 0 },
                        registered_delivery: rd_flag,
                        data_coding: part.data_coding,
                        short_message: Octets::from(part.short_message),
                        ..Sm::default()
                    };
                    if let Some((reference, total, n)) = part.sar {
                        sm.tlvs.set_sar(reference, total, n);
                    }
                    put(&mut wbuf, Command::new(St::EsmeRok, seq, Pdu::SubmitSm(sm)));
                    inflight.insert(seq, (pr, now));
                    seq = if seq >= 0x7FFF_FFFF { 2 } else { seq + 1 };
                    sent += 1;
                }
                s.c.submits_sent.fetch_add(sent, Ordering::Relaxed);
            }
            if !wbuf.is_empty() {
                if wr.write_all(&wbuf).await.is_err() {
                    return self.dropped(inflight);
                }
                wbuf.clear();
            }
            // 2. Done?
            if inflight.is_empty() && self.local.is_empty() && s.finished() {
                let since = *finishing.get_or_insert(now);
                if !(cfg.dlr && s.dlrs_outstanding() && since.elapsed() < cfg.dlr_wait) {
                    return unbind(&mut rd, &mut wr, seq).await;
                }
            }
            // 3. Wait for input (or the next rate token / pause end / timeout check).
            let wait = if paused {
                paused_until.map_or(Duration::from_millis(1), |t| {
                    t.saturating_duration_since(now)
                })
            } else if rate_limited {
                s.rate
                    .as_ref()
                    .map_or(Duration::from_millis(1), |b| lock(b).wait_time())
                    .max(Duration::from_micros(500))
            } else if inflight.is_empty() {
                Duration::from_millis(5)
            } else {
                Duration::from_millis(100)
            };
            if rbuf.capacity() - rbuf.len() < 16 * 1024 {
                rbuf.reserve(128 * 1024);
            }
            tokio::select! {
                r = rd.read_buf(&mut rbuf) => match r {
                    Ok(0) | Err(_) => return self.dropped(inflight),
                    Ok(_) => {}
                },
                _ = tokio::time::sleep(wait) => {}
            }
            // 4. Handle every complete PDU.
            let now = Instant::now();
            loop {
                let c = match p::check(&rbuf, p::DEFAULT_MAX_LEN) {
                    Ok(Some(len)) => match p::decode(rbuf.split_to(len).freeze()) {
                        Ok(d) => d.command,
                        Err(_) => continue,
                    },
                    Ok(None) => break,
                    Err(_) => return self.dropped(inflight),
                };
                let seq_in = c.sequence;
                match c.pdu {
                    Pdu::SubmitSmResp(resp) => {
                        if let Some((pr, t0)) = inflight.remove(&seq_in) {
                            s.note_response(now);
                            self.submit_hist.saturating_record(micros(now - t0));
                            if c.status == St::EsmeRok {
                                s.part_accepted(pr);
                                since_grow += 1;
                                if since_grow >= eff_window && eff_window < cfg.window {
                                    eff_window += 1;
                                    since_grow = 0;
                                }
                                if cfg.dlr {
                                    s.c.dlr_expected.fetch_add(1, Ordering::Relaxed);
                                    if let Some(at) = s.note_submitted(&resp.message_id, t0) {
                                        s.c.dlr_matched.fetch_add(1, Ordering::Relaxed);
                                        self.dlr_hist.saturating_record(micros(
                                            at.saturating_duration_since(t0),
                                        ));
                                    }
                                }
                            } else {
                                s.count_error(format!("smpp:0x{:08X}", c.status.to_u32()));
                                if retryable(c.status) {
                                    s.requeue(pr);
                                    if matches!(c.status, St::EsmeRthrottled | St::EsmeRmsgqful) {
                                        paused_until = Some(now + Duration::from_millis(2));
                                        if now.duration_since(last_cut) > Duration::from_millis(10)
                                        {
                                            eff_window = (eff_window / 2).max(1);
                                            since_grow = 0;
                                            last_cut = now;
                                        }
                                    }
                                } else {
                                    s.part_failed(pr);
                                }
                            }
                        }
                    }
                    Pdu::DeliverSm(sm) => {
                        put(
                            &mut wbuf,
                            Command::new(
                                St::EsmeRok,
                                seq_in,
                                Pdu::DeliverSmResp(MessageIdResp::default()),
                            ),
                        );
                        self.deliver(&sm, now);
                    }
                    Pdu::EnquireLink => put(
                        &mut wbuf,
                        Command::new(St::EsmeRok, seq_in, Pdu::EnquireLinkResp),
                    ),
                    Pdu::Unbind => {
                        put(
                            &mut wbuf,
                            Command::new(St::EsmeRok, seq_in, Pdu::UnbindResp),
                        );
                        let _ = wr.write_all(&wbuf).await;
                        return self.dropped(inflight);
                    }
                    Pdu::GenericNack => {
                        if let Some((pr, _)) = inflight.remove(&seq_in) {
                            s.count_error(format!("smpp:generic_nack:0x{:08X}", c.status.to_u32()));
                            s.requeue(pr);
                        }
                    }
                    _ => {}
                }
            }
            // 5. Response timeouts: a silent center is treated as a dead connection.
            if now.duration_since(last_timeout_check) > Duration::from_millis(200) {
                last_timeout_check = now;
                if inflight
                    .values()
                    .any(|(_, t0)| now.duration_since(*t0) > cfg.response_timeout)
                {
                    s.c.response_timeouts.fetch_add(1, Ordering::Relaxed);
                    return self.dropped(inflight);
                }
            }
        }
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

    fn dropped(&mut self, inflight: HashMap<u32, (PartRef, Instant)>) -> End {
        self.s
            .c
            .unacked_at_disconnect
            .fetch_add(inflight.len() as u64, Ordering::Relaxed);
        for (_, (p, _)) in inflight {
            self.s.requeue(p);
        }
        End::Dropped
    }
}

async fn unbind(
    rd: &mut tokio::net::tcp::OwnedReadHalf,
    wr: &mut tokio::net::tcp::OwnedWriteHalf,
    seq: u32,
) -> End {
    let mut b = BytesMut::new();
    put(&mut b, Command::new(St::EsmeRok, seq, Pdu::Unbind));
    if wr.write_all(&b).await.is_ok() {
        let mut r = BytesMut::with_capacity(4096);
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            loop {
                match rd.read_buf(&mut r).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                while let Ok(Some(len)) = p::check(&r, p::DEFAULT_MAX_LEN) {
                    let frame = r.split_to(len);
                    if frame.len() >= 8 && frame[4..8] == 0x8000_0006u32.to_be_bytes() {
                        return;
                    }
                }
            }
        })
        .await;
    }
    End::Done
}

fn micros(d: Duration) -> u64 {
    (d.as_micros() as u64).max(1)
}

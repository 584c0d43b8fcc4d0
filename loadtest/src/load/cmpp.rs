//! One SP connection of the load generator toward a CMPP 2.0 / 3.0 ISMG (the simulator's
//! ISMG side, or any other): connect, log in, keep the window full, count every SUBMIT_RESP
//! by Result, answer status reports and MO (DELIVER) with DELIVER_RESP and match reports to
//! submit times, resubmit on flow control (Result 8), timeouts and disconnects, then
//! TERMINATE.
//!
//! The protocol is `sluice_protocols::cmpp::SpSession`, the same sans-IO session the
//! gateway's CMPP channel drives; this file only moves bytes and maps its events onto the
//! run's shared counters — there is no second CMPP state machine here.
//!
//! Invariants:
//! - every part handed to the session comes back exactly once (`Response`,
//!   `ResponseTimeout` or `Aborted`) and is then accepted, failed or requeued — so the run's
//!   `unresolved` count reaches zero and the run ends;
//! - writes are batched: everything the session queued goes out in one `write_all` per turn;
//!   reads hand the whole buffer to the session, which decodes every complete frame;
//! - network input never panics: the session answers or closes on malformed input, and a
//!   close is a reconnect (bounded by [`MAX_CONNECT_FAILURES`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::payload::Part;
use super::report::new_histogram;
use super::{CmppVersion, PartFeed, PartRef, Shared};
use crate::tally::lock;
use sluice_protocols::cmpp::{
    CloseReason, FixedStr, MsgFmt, ResultCode, SpConfig, SpEvent, SpSession, SpState, Submit, auth,
};

/// Consecutive failed connects / logins after which a connection gives up.
const MAX_CONNECT_FAILURES: u32 = 20;

/// The ISMG account and SUBMIT fields of a CMPP run.
#[derive(Debug, Clone)]
pub(crate) struct CmppTarget {
    pub(crate) addr: String,
    pub(crate) source_addr: String,
    pub(crate) shared_secret: String,
    pub(crate) version: CmppVersion,
    pub(crate) service_id: String,
    pub(crate) src_id: String,
    /// Send the Chinese (UCS-2) messages as GBK (Msg_Fmt 15) instead.
    pub(crate) gbk: bool,
}

enum End {
    /// Nothing left to do; terminated.
    Done,
    /// The connection broke or the ISMG closed it; in-flight parts were requeued.
    Dropped,
    /// The ISMG refused the login (or it timed out); the connection was never usable.
    LoginFailed,
}

struct Conn {
    s: Arc<Shared>,
    t: Arc<CmppTarget>,
    submit_hist: Histogram<u64>,
    dlr_hist: Histogram<u64>,
    /// Parts to send next (started messages, retries, new claims).
    feed: PartFeed,
}

pub(crate) async fn run_connection(s: Arc<Shared>, t: Arc<CmppTarget>) {
    let mut c = Conn {
        s: s.clone(),
        t: t.clone(),
        submit_hist: new_histogram(),
        dlr_hist: new_histogram(),
        feed: PartFeed::default(),
    };
    let mut failures = 0u32;
    loop {
        if c.feed.local.is_empty() && s.finished() && !(s.cfg.dlr && s.dlrs_outstanding()) {
            break;
        }
        let stream = tokio::time::timeout(s.cfg.bind_timeout, TcpStream::connect(&t.addr)).await;
        let end = match stream {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                c.drive(stream).await
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "CMPP connect failed");
                End::LoginFailed
            }
            Err(_) => {
                tracing::debug!("CMPP connect timed out");
                End::LoginFailed
            }
        };
        match end {
            End::Done => break,
            End::Dropped => {
                failures = 0;
                s.c.disconnects.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            End::LoginFailed => {
                failures += 1;
                s.c.bind_failures.fetch_add(1, Ordering::Relaxed);
                if failures >= MAX_CONNECT_FAILURES || s.sending_closed() {
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

/// CONNECT's Timestamp: `MMDDHHMMSS` in China Standard Time (UTC+8), the zone ISMGs run in
/// and the gateway's default; the ISMG hashes it with the secret.
fn timestamp() -> u32 {
    let now = jiff::tz::TimeZone::fixed(jiff::tz::offset(8)).to_datetime(jiff::Timestamp::now());
    let part = |v: i8| u8::try_from(v).unwrap_or(0);
    auth::timestamp(
        part(now.month()),
        part(now.day()),
        part(now.hour()),
        part(now.minute()),
        part(now.second()),
    )
    // Unreachable for a real clock; any valid stamp still logs in with an ISMG that
    // does not check skew.
    .unwrap_or(101_000_000)
}

impl Conn {
    fn part(&mut self, p: PartRef) -> Part {
        self.feed.part(&self.s, p)
    }

    fn next_part(&mut self) -> Option<PartRef> {
        self.feed.next(&self.s)
    }

    /// The SUBMIT of one part: the payload's SMPP-shaped part mapped onto CMPP (ASCII or
    /// UCS-2, optionally re-encoded as GBK; SAR numbering becomes a UDH since CMPP has no
    /// TLVs), numbered in Pk_total / Pk_number as ISMGs expect.
    fn submit_of(&mut self, pr: PartRef) -> Submit {
        let part = self.part(pr);
        let t = &self.t;
        let mut content = match part.sar {
            Some((reference, total, seq)) => {
                let mut v = vec![5, 0x00, 3, reference.to_be_bytes()[1], total, seq];
                v.extend_from_slice(&part.short_message);
                v
            }
            None => part.short_message,
        };
        let udhi = part.udhi || part.sar.is_some();
        let mut fmt = if part.data_coding == 8 {
            MsgFmt::Ucs2
        } else {
            MsgFmt::Ascii
        };
        if fmt == MsgFmt::Ucs2 && t.gbk {
            content = ucs2_to_gbk(&content, udhi);
            fmt = MsgFmt::Gbk;
        }
        Submit {
            pk_total: pr.total.max(1),
            pk_number: pr.part.saturating_add(1),
            registered_delivery: u8::from(self.s.cfg.dlr),
            service_id: fixed(&t.service_id),
            msg_src: fixed(&t.source_addr),
            fee_type: fixed("01"),
            fee_code: fixed("000000"),
            src_id: fixed(&t.src_id),
            dest_terminal_ids: vec![fixed(&part.dest)],
            tp_udhi: u8::from(udhi),
            msg_fmt: fmt,
            msg_content: Bytes::from(content),
            ..Submit::default()
        }
    }

    fn session_config(&self) -> SpConfig {
        let cfg = &self.s.cfg;
        SpConfig {
            source_addr: self.t.source_addr.clone(),
            shared_secret: self.t.shared_secret.clone(),
            version: self.t.version.version(),
            window: cfg.window,
            response_timeout: cfg.response_timeout,
            active_test_interval: Duration::from_secs(30),
            ..SpConfig::default()
        }
    }

    async fn drive(&mut self, stream: TcpStream) -> End {
        let s = self.s.clone();
        let cfg = &s.cfg;
        let mut session =
            match SpSession::<PartRef>::new(self.session_config(), Instant::now(), timestamp()) {
                Ok(session) => session,
                Err(e) => {
                    tracing::warn!(error = %e, "CMPP session settings refused");
                    return End::LoginFailed;
                }
            };
        let (mut rd, mut wr) = stream.into_split();
        let mut rbuf = BytesMut::with_capacity(128 * 1024);
        let mut wbuf = BytesMut::with_capacity(64 * 1024);
        let mut connected = false;
        let mut paused_until: Option<Instant> = None;
        let mut finishing: Option<Instant> = None;
        let login_deadline = Instant::now() + cfg.bind_timeout;
        // AIMD on the window, as in the SMPP generator: halve on flow control (at most once
        // per 10 ms), grow by one per window's worth of accepted SUBMITs.
        let mut eff_window = cfg.window;
        let mut since_grow = 0usize;
        let mut last_cut = Instant::now() - Duration::from_secs(1);
        loop {
            let now = Instant::now();
            // 1. Events.
            while let Some(ev) = session.poll_event() {
                match ev {
                    SpEvent::Connected { .. } => connected = true,
                    SpEvent::Response {
                        tag,
                        msg_id,
                        result,
                        sent_at,
                    } => {
                        s.note_response(now);
                        self.submit_hist
                            .saturating_record(micros(now.saturating_duration_since(sent_at)));
                        if result == ResultCode::Success {
                            s.part_accepted(tag);
                            since_grow += 1;
                            if since_grow >= eff_window && eff_window < cfg.window {
                                eff_window += 1;
                                since_grow = 0;
                            }
                            if cfg.dlr {
                                s.c.dlr_expected.fetch_add(1, Ordering::Relaxed);
                                let id = msg_id.0.to_string();
                                if let Some(at) = s.note_submitted(id.as_bytes(), sent_at) {
                                    s.c.dlr_matched.fetch_add(1, Ordering::Relaxed);
                                    self.dlr_hist.saturating_record(micros(
                                        at.saturating_duration_since(sent_at),
                                    ));
                                }
                            }
                        } else {
                            s.count_error(format!("cmpp:{}", result.raw()));
                            if result == ResultCode::FlowControl {
                                s.requeue(tag);
                                paused_until = Some(now + Duration::from_millis(2));
                                if now.duration_since(last_cut) > Duration::from_millis(10) {
                                    eff_window = (eff_window / 2).max(1);
                                    since_grow = 0;
                                    last_cut = now;
                                }
                            } else {
                                s.part_failed(tag);
                            }
                        }
                    }
                    SpEvent::ResponseTimeout { tag, .. } => {
                        s.c.response_timeouts.fetch_add(1, Ordering::Relaxed);
                        s.requeue(tag);
                    }
                    SpEvent::Aborted { tag, .. } => {
                        s.c.unacked_at_disconnect.fetch_add(1, Ordering::Relaxed);
                        s.requeue(tag);
                    }
                    SpEvent::Deliver { sequence, deliver } => {
                        match deliver.report() {
                            Some(report) => {
                                let stat = String::from_utf8_lossy(report.stat.as_bytes())
                                    .trim()
                                    .to_owned();
                                let id = report.msg_id.0.to_string();
                                if let Some(t0) = s.note_receipt(id.as_bytes(), &stat, now) {
                                    s.c.dlr_matched.fetch_add(1, Ordering::Relaxed);
                                    self.dlr_hist.saturating_record(micros(
                                        now.saturating_duration_since(t0),
                                    ));
                                }
                            }
                            None => {
                                s.c.mo_received.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        session.answer_deliver(sequence, deliver.msg_id, ResultCode::Success);
                    }
                    SpEvent::Tolerated { .. } => {}
                    SpEvent::Undecodable(e) => {
                        s.count_error(format!("cmpp:undecodable:{:?}", e.header.command_id))
                    }
                    SpEvent::Closed(reason) => {
                        // Answers still owed (DELIVER_RESP, TERMINATE_RESP) go out first.
                        flush(&mut session, &mut wbuf);
                        let _ = wr.write_all(&wbuf).await;
                        return match reason {
                            CloseReason::Terminated => End::Done,
                            _ if !connected => {
                                s.count_error(format!("cmpp:login:{reason}"));
                                End::LoginFailed
                            }
                            _ => End::Dropped,
                        };
                    }
                }
            }
            // 2. Fill the window.
            let paused = paused_until.is_some_and(|t| now < t);
            let mut rate_limited = false;
            if connected
                && !paused
                && *session.state() == SpState::Connected
                && session.in_flight() < eff_window
            {
                let room = (eff_window - session.in_flight()) as u64;
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
                    let submit = self.submit_of(pr);
                    match session.submit(now, pr, Box::new(submit)) {
                        Ok(_) => sent += 1,
                        Err(refused) => {
                            // Unencodable for this version (e.g. a too long field): permanent.
                            s.count_error(format!("cmpp:refused:{}", refused.reason));
                            s.part_failed(refused.tag);
                        }
                    }
                }
                s.c.submits_sent.fetch_add(sent, Ordering::Relaxed);
            }
            // 3. Done? Terminate once the window is empty and receipts are in (or waited for).
            if connected
                && *session.state() == SpState::Connected
                && session.in_flight() == 0
                && self.feed.local.is_empty()
                && s.finished()
            {
                let since = *finishing.get_or_insert(now);
                if !(cfg.dlr && s.dlrs_outstanding() && since.elapsed() < cfg.dlr_wait) {
                    session.terminate(now);
                }
            }
            if !connected && now >= login_deadline {
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
                wake = wake.min(paused_until.map_or(Duration::from_millis(1), |t| {
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
            if session.in_flight() < eff_window || finishing.is_some() {
                // Work may appear (requeued parts from another connection) or the DLR wait end.
                wake = wake.min(Duration::from_millis(5));
            }
            if !connected {
                wake = wake.min(login_deadline.saturating_duration_since(now));
            }
            if rbuf.capacity() - rbuf.len() < 16 * 1024 {
                rbuf.reserve(128 * 1024);
            }
            tokio::select! {
                r = rd.read_buf(&mut rbuf) => match r {
                    Ok(0) | Err(_) => session.handle_disconnect(),
                    Ok(_) => session.handle_bytes(Instant::now(), &mut rbuf),
                },
                () = tokio::time::sleep(wake) => session.handle_timeout(Instant::now()),
            }
        }
    }
}

/// Encodes everything the session queued into `wbuf` on the link's version.
fn flush(session: &mut SpSession<PartRef>, wbuf: &mut BytesMut) {
    let version = session.version();
    while let Some(t) = session.poll_transmit() {
        if let Err(e) = t.encode(version, wbuf) {
            // The session only queues PDUs that encode on its version: a bug, not input.
            tracing::error!(error = %e, "CMPP PDU does not encode");
        }
    }
}

/// UCS-2 content (with its UDH when `udhi`) re-encoded as GBK; the UDH is kept as is.
fn ucs2_to_gbk(content: &[u8], udhi: bool) -> Vec<u8> {
    let udh_len = if udhi {
        content.first().map_or(0, |&l| usize::from(l) + 1)
    } else {
        0
    };
    let udh_len = udh_len.min(content.len());
    let (udh, body) = content.split_at(udh_len);
    let units: Vec<u16> = body
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    let text = String::from_utf16_lossy(&units);
    let (gbk, _, _) = encoding_rs::GBK.encode(&text);
    let mut out = udh.to_vec();
    out.extend_from_slice(&gbk);
    out
}

/// A fixed-width field from our own settings; too long is truncated to the width.
fn fixed<const N: usize>(s: &str) -> FixedStr<N> {
    let b = s.as_bytes();
    FixedStr::new(&b[..b.len().min(N)]).unwrap_or_default()
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gbk_keeps_the_udh_and_recodes_the_text() {
        let mut ucs2 = vec![5, 0, 3, 7, 2, 1];
        ucs2.extend("你a".encode_utf16().flat_map(u16::to_be_bytes));
        assert_eq!(
            ucs2_to_gbk(&ucs2, true),
            vec![5, 0, 3, 7, 2, 1, 0xC4, 0xE3, b'a']
        );
        let plain: Vec<u8> = "好".encode_utf16().flat_map(u16::to_be_bytes).collect();
        assert_eq!(ucs2_to_gbk(&plain, false), vec![0xBA, 0xC3]);
    }
}

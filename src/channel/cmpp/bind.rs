//! The connection driver: one tokio task per CMPP connection that connects, logs in, moves
//! bytes between the socket and the sans-IO `SpSession`, and reconnects with jittered
//! exponential backoff.
//!
//! The task owns the socket and the session and nothing else — the same contract as the SMPP
//! bind driver:
//! - SUBMITs are *pulled* from the channel's shared queue only while the session's window has
//!   room, so a slow connection never hoards work another could send;
//! - every submitted part comes back to the worker exactly once as a [`BindReport::Outcome`]
//!   (response, timeout, or aborted when the connection dies);
//! - status reports and MO become [`ChannelEvent`]s right here ([`Inbound`]); their
//!   DELIVER_RESP goes out only once the receipt layer has made them durable (Result 0), or
//!   with Result 8 so the ISMG resends when they could not be kept;
//! - writes are batched: everything the session queued is encoded into one buffer and
//!   written with one `write_all`; reads decode every whole PDU in the buffer per wake-up.
//!
//! Shutdown: stop pulling SUBMITs, let the answers already owed arrive (or time out), then
//! TERMINATE and return. Tolerated deviations of the ISMG are counted per kind
//! (`sluice_channel_tolerated_total`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures::FutureExt;
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use jiff::tz::TimeZone;
use metrics::{counter, gauge};
use sluice_protocols::cmpp::{
    CloseReason, MsgId, ResultCode, SpConfig, SpEvent, SpSession, SpState, Submit,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::{Instrument, debug, info, info_span, warn};

use super::inbound::Inbound;
use crate::channel::backoff::Backoff;
use crate::channel::egress::{BindReport, PartJob, PartOutcome, PartTag, WorkerLinks};
use crate::channel::{ChannelEvent, DeliverAck};
use crate::metrics::{
    CHANNEL_BINDS_DOWN, CHANNEL_BINDS_UP, CHANNEL_SUBMITS, CHANNEL_TOLERATED, CHANNEL_WINDOW_IN_USE,
};

/// Everything one connection task needs.
#[derive(Debug, Clone)]
pub struct ConnSpec {
    /// Channel name (for logs, metrics and events).
    pub channel: Arc<str>,
    /// Connection index within the channel.
    pub index: usize,
    /// `host:port` of the ISMG.
    pub addr: String,
    /// Session settings.
    pub session: SpConfig,
    /// Reconnect policy.
    pub backoff: Backoff,
    /// Limit for the TCP connect.
    pub connect_timeout: Duration,
    /// Zone of the CONNECT timestamp.
    pub tz: TimeZone,
}

/// Channels a connection task talks on.
#[derive(Debug, Clone)]
pub struct ConnLinks {
    /// The part queue, reports and shutdown shared with the channel's worker.
    pub worker: WorkerLinks<Submit>,
    /// Receipts and MO to the receipt layer.
    pub events: mpsc::Sender<ChannelEvent>,
    /// MO reassembly shared by the channel's connections.
    pub inbound: Arc<Inbound>,
}

/// CONNECT's Timestamp: the SP's local time as the decimal number MMDDHHMMSS.
#[must_use]
pub fn timestamp(tz: &TimeZone) -> u32 {
    let now = tz.to_datetime(jiff::Timestamp::now());
    let (mo, d, h, mi, s) = (
        now.month(),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
    );
    [mo, d, h, mi, s]
        .iter()
        .fold(0u32, |acc, v| acc * 100 + u32::try_from(*v).unwrap_or(0))
}

/// Runs one connection until shutdown: connect, log in, serve, reconnect.
pub async fn run(spec: ConnSpec, links: ConnLinks) {
    let span = info_span!("bind", channel = %spec.channel, bind = spec.index);
    async move {
        let mut failures: u32 = 0;
        let mut shutdown = links.worker.shutdown.clone();
        loop {
            if *shutdown.borrow() {
                return;
            }
            let mut queue_closed = false;
            let logged_in = match connect(&spec).await {
                Ok(stream) => match Connection::new(&spec, stream) {
                    Ok(mut conn) => {
                        let result = conn.serve(&links).await;
                        queue_closed = conn.queue_closed;
                        counter!(CHANNEL_BINDS_DOWN, "channel" => spec.channel.to_string(), "bind" => spec.index.to_string()).increment(1);
                        gauge!(CHANNEL_WINDOW_IN_USE, "channel" => spec.channel.to_string(), "bind" => spec.index.to_string()).set(0.0);
                        if conn.was_connected {
                            let _ = links
                                .worker
                                .reports
                                .send(BindReport::Down {
                                    bind: spec.index,
                                    reason: result.clone(),
                                })
                                .await;
                        }
                        info!(reason = %result, "Connection closed.");
                        conn.was_connected
                    }
                    Err(e) => {
                        // The config is validated at start; this is a bug, not input.
                        warn!(error = %e, "CMPP session settings refused.");
                        false
                    }
                },
                Err(e) => {
                    warn!(addr = %spec.addr, error = %e, "Connect failed.");
                    false
                }
            };
            if *shutdown.borrow() || queue_closed {
                return;
            }
            failures = if logged_in { 0 } else { failures.saturating_add(1) };
            let delay = spec.backoff.delay_random(failures);
            debug!(?delay, "Reconnecting after backoff.");
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }
    .instrument(span)
    .await;
}

async fn connect(spec: &ConnSpec) -> std::io::Result<TcpStream> {
    let stream = tokio::time::timeout(spec.connect_timeout, TcpStream::connect(&spec.addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// One TCP connection's worth of driving.
struct Connection<'a> {
    spec: &'a ConnSpec,
    stream: TcpStream,
    session: SpSession<PartTag>,
    read: BytesMut,
    write: BytesMut,
    was_connected: bool,
    /// The worker dropped the part queue: the channel is stopping, do not reconnect.
    queue_closed: bool,
    submits: metrics::Counter,
    window_in_use: metrics::Gauge,
    /// DELIVERs handed to the receipt layer and not yet durable: (sequence, Msg_Id, kept).
    acks: FuturesUnordered<BoxFuture<'static, (u32, MsgId, bool)>>,
}

/// What the select loop woke up for.
enum Wake {
    Read(std::io::Result<usize>),
    Timer,
    Part(Option<PartJob<Submit>>),
    Shutdown,
    Ack(u32, MsgId, bool),
}

impl<'a> Connection<'a> {
    fn new(
        spec: &'a ConnSpec,
        stream: TcpStream,
    ) -> Result<Self, sluice_protocols::cmpp::ConfigError> {
        Ok(Self {
            session: SpSession::new(spec.session.clone(), Instant::now(), timestamp(&spec.tz))?,
            spec,
            stream,
            read: BytesMut::with_capacity(64 * 1024),
            write: BytesMut::with_capacity(64 * 1024),
            was_connected: false,
            queue_closed: false,
            submits: counter!(CHANNEL_SUBMITS, "channel" => spec.channel.to_string()),
            window_in_use: gauge!(CHANNEL_WINDOW_IN_USE, "channel" => spec.channel.to_string(), "bind" => spec.index.to_string()),
            acks: FuturesUnordered::new(),
        })
    }

    /// Serves the connection until the session closes or the socket fails; returns why.
    async fn serve(&mut self, links: &ConnLinks) -> String {
        let mut shutting_down = false;
        let mut shutdown = links.worker.shutdown.clone();
        loop {
            if let Err(e) = self.flush().await {
                self.session.handle_disconnect();
                self.drain_events(links).await;
                return format!("write failed: {e}");
            }
            if let Some(reason) = self.drain_events(links).await {
                return reason;
            }
            if !shutting_down && *shutdown.borrow() {
                shutting_down = true;
                if !matches!(self.session.state(), SpState::Connected) {
                    // Not logged in yet: nothing to terminate, just go.
                    self.session.handle_disconnect();
                    continue;
                }
            }
            // Drain, then TERMINATE: the session sends it once the window is empty (or after
            // the response timeout) and closes on TERMINATE_RESP.
            if shutting_down && matches!(self.session.state(), SpState::Connected) {
                self.session.terminate(Instant::now());
                continue;
            }
            let timer = self.session.poll_timeout();
            let want_part = !shutting_down && self.session.can_submit();
            let wake = {
                let sleep = async {
                    match timer {
                        Some(t) => tokio::time::sleep_until(t.into()).await,
                        None => std::future::pending().await,
                    }
                };
                let part = async {
                    if want_part {
                        links.worker.parts.lock().await.recv().await
                    } else {
                        std::future::pending().await
                    }
                };
                let stop = async {
                    if shutting_down {
                        std::future::pending::<()>().await;
                    }
                    let _ = shutdown.wait_for(|s| *s).await;
                };
                tokio::select! {
                    biased;
                    r = self.stream.read_buf(&mut self.read) => Wake::Read(r),
                    () = sleep => Wake::Timer,
                    Some((seq, id, kept)) = self.acks.next(), if !self.acks.is_empty() => {
                        Wake::Ack(seq, id, kept)
                    }
                    () = stop => Wake::Shutdown,
                    p = part => Wake::Part(p),
                }
            };
            match wake {
                Wake::Read(Ok(0)) => {
                    self.session.handle_disconnect();
                    self.drain_events(links).await;
                    return "ISMG closed the connection".into();
                }
                Wake::Read(Err(e)) => {
                    self.session.handle_disconnect();
                    self.drain_events(links).await;
                    return format!("read failed: {e}");
                }
                Wake::Read(Ok(_)) => self.session.handle_bytes(Instant::now(), &mut self.read),
                Wake::Timer => self.session.handle_timeout(Instant::now()),
                Wake::Shutdown => {}
                Wake::Ack(seq, id, kept) => {
                    self.answer(seq, id, kept);
                    // Answer every DELIVER already settled in the same write.
                    while let Some(Some((seq, id, kept))) = self.acks.next().now_or_never() {
                        self.answer(seq, id, kept);
                    }
                }
                Wake::Part(None) => {
                    // The worker dropped the queue: the channel is stopping (drain, terminate).
                    self.queue_closed = true;
                    shutting_down = true;
                }
                Wake::Part(Some(job)) => {
                    self.submit(job, links).await;
                    // Take more without waiting, so one write carries many SUBMITs.
                    while self.session.can_submit() {
                        let next = match links.worker.parts.try_lock() {
                            Ok(mut q) => q.try_recv().ok(),
                            Err(_) => None,
                        };
                        match next {
                            Some(job) => self.submit(job, links).await,
                            None => break,
                        }
                    }
                }
            }
        }
    }

    async fn submit(&mut self, job: PartJob<Submit>, links: &ConnLinks) {
        let now = Instant::now();
        match self.session.submit(now, job.tag, job.body) {
            Ok(_) => self.submits.increment(1),
            Err(refused) => {
                debug!(reason = ?refused.reason, "SUBMIT refused by the session.");
                let _ = links
                    .worker
                    .reports
                    .send(BindReport::Outcome {
                        bind: self.spec.index,
                        tag: refused.tag,
                        outcome: PartOutcome::Aborted,
                        sent_at: now,
                        at: now,
                    })
                    .await;
            }
        }
    }

    fn answer(&mut self, sequence: u32, msg_id: MsgId, kept: bool) {
        let result = if kept {
            ResultCode::Success
        } else {
            ResultCode::FlowControl
        };
        self.session.answer_deliver(sequence, msg_id, result);
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        let version = self.session.version();
        while let Some(t) = self.session.poll_transmit() {
            if let Err(e) = t.encode(version, &mut self.write) {
                // SUBMITs are validated before they are queued, so this is a bug, not input.
                warn!(error = %e, sequence = t.sequence_id, "Dropping PDU that does not encode.");
            }
        }
        if !self.write.is_empty() {
            self.stream.write_all(&self.write).await?;
            self.write.clear();
        }
        Ok(())
    }

    /// Hands a DELIVER to the receipt layer; answered once it is kept (see [`DeliverAck`]),
    /// at once for an MO part held for reassembly.
    async fn deliver(
        &mut self,
        sequence: u32,
        deliver: &sluice_protocols::cmpp::Deliver,
        links: &ConnLinks,
        now: Instant,
    ) {
        let msg_id = deliver.msg_id;
        let Some(mut event) = links.inbound.event(deliver, now) else {
            self.session
                .answer_deliver(sequence, msg_id, ResultCode::Success);
            return;
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        match &mut event {
            ChannelEvent::Receipt { ack, .. } | ChannelEvent::Mo { ack, .. } => {
                *ack = DeliverAck::new(tx);
            }
        }
        if links.events.send(event).await.is_err() {
            self.answer(sequence, msg_id, false);
            return;
        }
        // Dropped without an answer counts as kept (see DeliverAck).
        self.acks
            .push(async move { (sequence, msg_id, rx.await.unwrap_or(true)) }.boxed());
    }

    /// Forwards session events; returns the close reason once the session is closed.
    async fn drain_events(&mut self, links: &ConnLinks) -> Option<String> {
        let bind = self.spec.index;
        let mut closed = None;
        while let Some(event) = self.session.poll_event() {
            let now = Instant::now();
            let report = match event {
                SpEvent::Connected { version, ismg_auth } => {
                    self.was_connected = true;
                    info!(?version, ?ismg_auth, "Connected.");
                    counter!(CHANNEL_BINDS_UP, "channel" => self.spec.channel.to_string(), "bind" => bind.to_string()).increment(1);
                    Some(BindReport::Up { bind, sends: true })
                }
                SpEvent::Response {
                    tag,
                    msg_id,
                    result,
                    sent_at,
                } => Some(BindReport::Outcome {
                    bind,
                    tag,
                    outcome: PartOutcome::Response {
                        status: result.raw(),
                        center_id: msg_id.0.to_string(),
                    },
                    sent_at,
                    at: now,
                }),
                SpEvent::ResponseTimeout { tag, sent_at } => Some(BindReport::Outcome {
                    bind,
                    tag,
                    outcome: PartOutcome::Timeout,
                    sent_at,
                    at: now,
                }),
                SpEvent::Aborted { tag, sent_at } => Some(BindReport::Outcome {
                    bind,
                    tag,
                    outcome: PartOutcome::Aborted,
                    sent_at,
                    at: now,
                }),
                SpEvent::Deliver { sequence, deliver } => {
                    self.deliver(sequence, &deliver, links, now).await;
                    None
                }
                SpEvent::Tolerated { tolerated, .. } => {
                    for t in tolerated.iter() {
                        counter!(CHANNEL_TOLERATED, "channel" => self.spec.channel.to_string(), "kind" => t.name()).increment(1);
                    }
                    None
                }
                SpEvent::Undecodable(e) => {
                    warn!(error = %e, "Undecodable PDU from the ISMG.");
                    None
                }
                SpEvent::Closed(reason) => {
                    closed = Some(describe(&reason));
                    None
                }
            };
            if let Some(report) = report {
                // The worker may be gone during shutdown; nothing else to tell then.
                let _ = links.worker.reports.send(report).await;
            }
        }
        self.window_in_use.set(self.session.in_flight() as f64);
        closed
    }
}

fn describe(reason: &CloseReason) -> String {
    reason.to_string()
}

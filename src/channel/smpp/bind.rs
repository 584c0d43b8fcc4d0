//! The bind driver: one tokio task per bind that connects, binds, moves bytes between the
//! socket and the sans-IO [`Session`], and reconnects with jittered exponential backoff.
//!
//! The task owns the socket and the session and nothing else:
//! - parts to submit are *pulled* from the channel's shared queue only while the session's
//!   window has room, so a slow bind never hoards work another bind could send;
//! - every submitted part comes back to the worker exactly once as a [`BindReport::Outcome`]
//!   (response, timeout, or aborted when the connection dies);
//! - delivery receipts and MO messages are turned into [`ChannelEvent`]s right here (by
//!   [`Inbound`]) and sent to the receipt layer directly (they need no worker state, see the
//!   contract in `channel/mod.rs`);
//! - writes are batched: everything the session queued is encoded into one buffer and
//!   written with one `write_all`; reads decode every whole PDU in the buffer per wake-up.
//!
//! Shutdown: when the shutdown signal fires the driver stops pulling parts, lets the
//! responses already owed arrive (or time out), then unbinds and returns.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures::FutureExt;
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use metrics::{counter, gauge};
use sluice_protocols::smpp::{CommandStatus, DEFAULT_MAX_LEN, Sm, check, decode};
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
use sluice_protocols::smpp::session::esme::{
    CloseReason, Event, RefuseReason, Session, SessionConfig, State,
};

/// Everything one bind task needs.
#[derive(Debug, Clone)]
pub struct BindSpec {
    /// Channel name (for logs, metrics and events).
    pub channel: Arc<str>,
    /// Bind index within the channel.
    pub index: usize,
    /// `host:port` of the center.
    pub addr: String,
    /// Session settings (credentials, bind kind, window, timers).
    pub session: SessionConfig,
    /// Reconnect policy.
    pub backoff: Backoff,
    /// Limit for the TCP connect.
    pub connect_timeout: Duration,
    /// Largest PDU accepted from the center.
    pub max_pdu: usize,
}

impl BindSpec {
    /// A spec with default reconnect policy and limits.
    #[must_use]
    pub fn new(channel: Arc<str>, index: usize, addr: String, session: SessionConfig) -> Self {
        Self {
            channel,
            index,
            addr,
            session,
            backoff: Backoff::default(),
            connect_timeout: Duration::from_secs(10),
            max_pdu: DEFAULT_MAX_LEN,
        }
    }
}

/// Channels a bind task talks on.
#[derive(Debug, Clone)]
pub struct BindLinks {
    /// The part queue, reports and shutdown shared with the channel's worker.
    pub worker: WorkerLinks<Sm>,
    /// Receipts and MO to the receipt layer.
    pub events: mpsc::Sender<ChannelEvent>,
    /// MO reassembly shared by the channel's binds.
    pub inbound: Arc<Inbound>,
}

/// Runs one bind until shutdown: connect, bind, serve, reconnect.
pub async fn run(spec: BindSpec, mut links: BindLinks) {
    let span = info_span!("bind", channel = %spec.channel, bind = spec.index);
    async move {
        let mut failures: u32 = 0;
        loop {
            if *links.worker.shutdown.borrow() {
                return;
            }
            let mut queue_closed = false;
            let bound = match connect(&spec).await {
                Ok(stream) => {
                    let mut conn = Connection::new(&spec, stream);
                    let result = conn.serve(&mut links).await;
                    queue_closed = conn.queue_closed;
                    counter!(CHANNEL_BINDS_DOWN, "channel" => spec.channel.to_string(), "bind" => spec.index.to_string()).increment(1);
                    gauge!(CHANNEL_WINDOW_IN_USE, "channel" => spec.channel.to_string(), "bind" => spec.index.to_string()).set(0.0);
                    if conn.was_bound {
                        let _ = links
                            .worker
                            .reports
                            .send(BindReport::Down {
                                bind: spec.index,
                                reason: result.clone(),
                            })
                            .await;
                    }
                    info!(reason = %result, "Bind closed.");
                    conn.was_bound
                }
                Err(e) => {
                    warn!(addr = %spec.addr, error = %e, "Connect failed.");
                    false
                }
            };
            if *links.worker.shutdown.borrow() || queue_closed {
                return;
            }
            failures = if bound { 0 } else { failures.saturating_add(1) };
            let delay = spec.backoff.delay_random(failures);
            debug!(?delay, "Reconnecting after backoff.");
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                _ = links.worker.shutdown.wait_for(|s| *s) => return,
            }
        }
    }
    .instrument(span)
    .await;
}

async fn connect(spec: &BindSpec) -> std::io::Result<TcpStream> {
    let stream = tokio::time::timeout(spec.connect_timeout, TcpStream::connect(&spec.addr))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// One TCP connection's worth of driving.
struct Connection<'a> {
    spec: &'a BindSpec,
    stream: TcpStream,
    session: Session<PartTag>,
    read: BytesMut,
    write: BytesMut,
    was_bound: bool,
    /// The worker dropped the part queue: the channel is stopping, do not reconnect.
    queue_closed: bool,
    labels: [(&'static str, String); 2],
    /// Metric handles, registered once per connection (not per PDU).
    submits: metrics::Counter,
    window_in_use: metrics::Gauge,
    /// Receipts handed to the receipt layer and not yet durable: (sequence, data_sm, kept).
    /// Their deliver_sm_resp goes out only when one resolves, so a crash before the receipt
    /// is stored makes the center resend it.
    acks: FuturesUnordered<BoxFuture<'static, (u32, bool, bool)>>,
}

/// What the select loop woke up for.
enum Wake {
    Read(std::io::Result<usize>),
    Timer,
    Part(Option<PartJob<Sm>>),
    Shutdown,
    Ack(u32, bool, bool),
}

impl<'a> Connection<'a> {
    fn new(spec: &'a BindSpec, stream: TcpStream) -> Self {
        Self {
            session: Session::new(spec.session.clone(), Instant::now()),
            spec,
            stream,
            read: BytesMut::with_capacity(64 * 1024),
            write: BytesMut::with_capacity(64 * 1024),
            was_bound: false,
            queue_closed: false,
            labels: [
                ("channel", spec.channel.to_string()),
                ("bind", spec.index.to_string()),
            ],
            submits: counter!(CHANNEL_SUBMITS, "channel" => spec.channel.to_string()),
            window_in_use: gauge!(CHANNEL_WINDOW_IN_USE, "channel" => spec.channel.to_string(), "bind" => spec.index.to_string()),
            acks: FuturesUnordered::new(),
        }
    }

    /// Serves the connection until the session closes or the socket fails; returns why.
    async fn serve(&mut self, links: &mut BindLinks) -> String {
        let mut shutting_down = false;
        loop {
            if let Err(e) = self.flush().await {
                self.session.handle_disconnect();
                self.drain_events(links).await;
                return format!("write failed: {e}");
            }
            if let Some(reason) = self.drain_events(links).await {
                return reason;
            }
            if !shutting_down && *links.worker.shutdown.borrow() {
                shutting_down = true;
                if !matches!(self.session.state(), State::Bound) {
                    // Not bound (still binding): nothing to unbind, just go.
                    self.session.handle_disconnect();
                    continue;
                }
            }
            // Drain, then unbind: no new parts are taken while shutting down, and the unbind
            // goes out once every submit in the window is answered (or has timed out, which
            // the session guarantees within `response_timeout`).
            if shutting_down
                && matches!(self.session.state(), State::Bound)
                && self.session.in_flight() == 0
            {
                self.session.unbind(Instant::now());
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
                let shutdown = async {
                    if shutting_down {
                        std::future::pending::<()>().await;
                    }
                    let _ = links.worker.shutdown.wait_for(|s| *s).await;
                };
                tokio::select! {
                    biased;
                    r = self.stream.read_buf(&mut self.read) => Wake::Read(r),
                    () = sleep => Wake::Timer,
                    Some((seq, data_sm, kept)) = self.acks.next(), if !self.acks.is_empty() => {
                        Wake::Ack(seq, data_sm, kept)
                    }
                    () = shutdown => Wake::Shutdown,
                    p = part => Wake::Part(p),
                }
            };
            match wake {
                Wake::Read(Ok(0)) => {
                    self.session.handle_disconnect();
                    self.drain_events(links).await;
                    return "center closed the connection".into();
                }
                Wake::Read(Err(e)) => {
                    self.session.handle_disconnect();
                    self.drain_events(links).await;
                    return format!("read failed: {e}");
                }
                Wake::Read(Ok(_)) => self.decode_all(),
                Wake::Timer => self.session.handle_timeout(Instant::now()),
                Wake::Shutdown => {}
                Wake::Ack(seq, data_sm, kept) => {
                    self.answer_receipt(seq, data_sm, kept);
                    // Answer every receipt already settled in the same write.
                    while let Some(Some((seq, data_sm, kept))) = self.acks.next().now_or_never() {
                        self.answer_receipt(seq, data_sm, kept);
                    }
                }
                Wake::Part(None) => {
                    // The worker dropped the queue: the channel is stopping (drain, unbind).
                    self.queue_closed = true;
                    shutting_down = true;
                }
                Wake::Part(Some(job)) => {
                    self.submit(job, links).await;
                    // Take more without waiting, so one write carries many submits.
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

    async fn submit(&mut self, job: PartJob<Sm>, links: &BindLinks) {
        let now = Instant::now();
        match self.session.submit(now, job.tag, job.body) {
            Ok(_) => {
                self.submits.increment(1);
            }
            Err(refused) => {
                debug_assert!(matches!(
                    refused.reason,
                    RefuseReason::NotBound | RefuseReason::WindowFull
                ));
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

    fn decode_all(&mut self) {
        let now = Instant::now();
        loop {
            match check(&self.read, self.spec.max_pdu) {
                Ok(Some(len)) => {
                    let pdu = self.read.split_to(len).freeze();
                    match decode(pdu) {
                        Ok(decoded) => {
                            for kind in decoded.tolerated.names() {
                                counter!(CHANNEL_TOLERATED, "channel" => self.spec.channel.to_string(), "kind" => kind).increment(1);
                            }
                            self.session.handle_pdu(now, decoded.command);
                        }
                        Err(e) => {
                            warn!(error = %e, "Undecodable PDU from center.");
                            self.session.handle_decode_error(now, &e);
                        }
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    warn!(error = %e, "Bad frame from center; closing.");
                    self.session.handle_decode_error(now, &e.into());
                    self.read.clear();
                    return;
                }
            }
            if self.session.is_closed() {
                return;
            }
        }
    }

    /// Hands a deliver_sm to the receipt layer. A receipt or a whole MO is answered once the
    /// receipt layer says it is kept ([`DeliverAck`]); an MO part held for reassembly is
    /// answered at once. If the receipt layer is gone, the center gets ESME_RX_T_APPN and
    /// resends later.
    async fn deliver(
        &mut self,
        sequence: u32,
        data_sm: bool,
        sm: &Sm,
        links: &BindLinks,
        now: Instant,
    ) {
        let Some(mut event) = links.inbound.event(sm, now) else {
            self.session
                .answer_deliver(sequence, data_sm, CommandStatus::EsmeRok);
            return;
        };
        let wait = match &mut event {
            ChannelEvent::Receipt { ack, .. } | ChannelEvent::Mo { ack, .. } => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                *ack = DeliverAck::new(tx);
                Some(rx)
            }
        };
        if links.events.send(event).await.is_err() {
            self.session
                .answer_deliver(sequence, data_sm, CommandStatus::EsmeRxTAppn);
            return;
        }
        match wait {
            // Dropped without an answer counts as kept (see DeliverAck).
            Some(rx) => self
                .acks
                .push(async move { (sequence, data_sm, rx.await.unwrap_or(true)) }.boxed()),
            None => self
                .session
                .answer_deliver(sequence, data_sm, CommandStatus::EsmeRok),
        }
    }

    fn answer_receipt(&mut self, sequence: u32, data_sm: bool, kept: bool) {
        let status = if kept {
            CommandStatus::EsmeRok
        } else {
            CommandStatus::EsmeRxTAppn
        };
        self.session.answer_deliver(sequence, data_sm, status);
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        while let Some(command) = self.session.poll_transmit() {
            if let Err(e) = command.encode(&mut self.write) {
                // Parts are validated before they are queued, so this is a bug, not input.
                warn!(error = %e, sequence = command.sequence, "Dropping PDU that does not encode.");
            }
        }
        if !self.write.is_empty() {
            self.stream.write_all(&self.write).await?;
            self.write.clear();
        }
        Ok(())
    }

    /// Forwards session events; returns the close reason once the session is closed.
    async fn drain_events(&mut self, links: &BindLinks) -> Option<String> {
        let bind = self.spec.index;
        let mut closed = None;
        while let Some(event) = self.session.poll_event() {
            let now = Instant::now();
            let report = match event {
                Event::Bound { system_id } => {
                    self.was_bound = true;
                    info!(center = %String::from_utf8_lossy(&system_id), "Bound.");
                    counter!(CHANNEL_BINDS_UP, &self.labels).increment(1);
                    Some(BindReport::Up {
                        bind,
                        sends: self.spec.session.bind_kind.sends(),
                    })
                }
                Event::Response {
                    tag,
                    status,
                    message_id,
                    sent_at,
                } => Some(BindReport::Outcome {
                    bind,
                    tag,
                    outcome: PartOutcome::Response {
                        status: status.to_u32(),
                        center_id: String::from_utf8_lossy(&message_id).into_owned(),
                    },
                    sent_at,
                    at: now,
                }),
                Event::ResponseTimeout { tag, sent_at } => Some(BindReport::Outcome {
                    bind,
                    tag,
                    outcome: PartOutcome::Timeout,
                    sent_at,
                    at: now,
                }),
                Event::Aborted { tag, sent_at } => Some(BindReport::Outcome {
                    bind,
                    tag,
                    outcome: PartOutcome::Aborted,
                    sent_at,
                    at: now,
                }),
                Event::Deliver {
                    sequence,
                    data_sm,
                    sm,
                } => {
                    self.deliver(sequence, data_sm, &sm, links, now).await;
                    None
                }
                Event::Closed(reason) => {
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
    match reason {
        CloseReason::Unbound => "unbound".into(),
        CloseReason::PeerUnbind => "center unbound".into(),
        CloseReason::BindRejected(status) => format!("bind rejected: {status}"),
        CloseReason::BindTimeout => "bind timed out".into(),
        CloseReason::EnquireLinkTimeout => "enquire_link timed out".into(),
        CloseReason::Protocol => "protocol error".into(),
        CloseReason::Disconnected => "disconnected".into(),
    }
}

//! The connection driver every protocol's binds share: one tokio task per bind that
//! connects, lets the protocol's sans-IO session log in, moves bytes and timers between the
//! socket and the session, and reconnects with jittered exponential backoff.
//!
//! A protocol plugs in with a [`Link`]: its session plus the few conversions only it knows
//! (how to decode what was read, how to wind down, what an event means). Everything else is
//! here, once:
//! - parts to submit are *pulled* from the channel's shared queue only while the session's
//!   window has room, so a slow bind never hoards work another bind could send;
//! - every submitted part comes back to the worker exactly once as a
//!   [`BindReport::Outcome`] (response, timeout, or aborted when the connection dies);
//! - receipts and MO go to the receipt layer as [`ChannelEvent`]s; the center's request is
//!   answered only when the receipt layer says the event is durable ([`DeliverAck`]), and as
//!   "not kept" (the center resends) when the receipt layer is gone;
//! - writes are batched (`coalesce`): everything the session queued is encoded into one
//!   buffer and written with one `write_all` once nothing else is ready (or after
//!   [`WAKES_PER_WRITE`](crate::coalesce::WAKES_PER_WRITE) wake-ups), so the submits and
//!   answers of several wake-ups share a write; reads hand the session every whole PDU per
//!   wake-up.
//!
//! A center that keeps the link alive (enquire_link / ACTIVE_TEST answered) but stops
//! answering submits is treated as down: after [`SILENT_TIMEOUTS`] submits in a row time out
//! with no submit response in between, the connection is dropped (its open parts go back to
//! the worker as aborted) and the bind reconnects — and such a connection does not count as
//! having been up, so the backoff keeps growing while the center stays silent. Without this
//! the bind re-sent its whole window every response timeout into a center that may be
//! keeping every copy (tests/center_faults.rs `submits_never_answered_*`).
//!
//! Shutdown: the driver stops pulling parts and asks the link to wind down (SMPP unbinds once
//! its window is empty, CMPP sends TERMINATE); the session closes when the peer answers or
//! its response timer runs out, which it guarantees.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use metrics::{counter, gauge};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tracing::{Instrument, debug, info, info_span, warn};

use crate::channel::backoff::Backoff;
use crate::channel::egress::{BindReport, PartJob, PartOutcome, PartTag, WorkerLinks};
use crate::channel::{ChannelEvent, DeliverAck};
use crate::coalesce::Coalescer;
use crate::metrics::{
    CHANNEL_BINDS_DOWN, CHANNEL_BINDS_UP, CHANNEL_CONNECT_ATTEMPTS, CHANNEL_SUBMITS,
    CHANNEL_WINDOW_IN_USE,
};
use crate::tls::client::ClientTls;
use crate::tls::stream::MaybeTls;

/// What a protocol's session tells the driver, already in the channel's terms.
#[derive(Debug)]
pub enum Output<A> {
    /// Logged in (bound / connected); `sends` when this bind may submit.
    Up {
        /// Transmitter / transceiver / CMPP connection: yes; receiver: no.
        sends: bool,
    },
    /// A submitted part ended.
    Part {
        /// Which part.
        tag: PartTag,
        /// How.
        outcome: PartOutcome,
        /// When it was submitted.
        sent_at: Instant,
    },
    /// A receipt or MO for the receipt layer; answer the center with `ack` once it is kept.
    Inbound {
        /// The event (its `ack` field is wired by the driver).
        event: ChannelEvent,
        /// What answering the center's request needs.
        ack: A,
    },
    /// The session is over, for this reason.
    Closed(String),
}

/// One protocol session as the driver sees it.
pub trait Link: Send + 'static {
    /// One part's request body.
    type Part: Send + Sync + 'static;
    /// What answering one inbound request needs (sequence number, ids).
    type Ack: Send + 'static;

    /// Encodes every PDU the session has queued into `out`.
    fn encode_queued(&mut self, out: &mut BytesMut);
    /// Hands the session every whole PDU in `buf` (a partial one stays in `buf`).
    fn read(&mut self, now: Instant, buf: &mut BytesMut);
    /// Fires the session's timers due at `now`.
    fn handle_timeout(&mut self, now: Instant);
    /// When [`Link::handle_timeout`] is next due.
    fn poll_timeout(&mut self) -> Option<Instant>;
    /// The socket is gone.
    fn handle_disconnect(&mut self);
    /// Logged in with room in the window.
    fn can_submit(&self) -> bool;
    /// Requests in the window.
    fn in_flight(&self) -> usize;
    /// Submits a part; gives the tag back when the session refuses it.
    ///
    /// # Errors
    /// The tag of a part the session would not take (not logged in, window full).
    fn submit(&mut self, now: Instant, tag: PartTag, body: Box<Self::Part>) -> Result<(), PartTag>;
    /// Called on every turn while shutting down (`first` on the first): close politely when
    /// logged in (once the window allows), or just drop a link that is not logged in yet.
    fn wind_down(&mut self, now: Instant, first: bool);
    /// Answers an inbound request: `kept` when the receipt layer made it durable.
    fn answer(&mut self, ack: Self::Ack, kept: bool);
    /// The next thing the session has for the driver (events it handles itself, such as an
    /// MO part held for reassembly or a tolerated deviation counted, never come out).
    fn poll_output(&mut self) -> Option<Output<Self::Ack>>;
}

/// Submit timeouts in a row, with no submit response between them, after which a bind
/// gives up on its connection (see the module doc). Small, because every timeout is a part
/// that will be sent again; above one, so a single lost response does not cost a rebind.
pub const SILENT_TIMEOUTS: u32 = 3;

/// Parts one wake-up takes from the queue at most before the write.
const PARTS_PER_WRITE: u32 = 64;

/// The protocol-neutral half of a bind's settings.
#[derive(Debug, Clone)]
pub struct DriverSpec {
    /// Channel name (for logs, metrics and events).
    pub channel: Arc<str>,
    /// Bind index within the channel.
    pub index: usize,
    /// `host:port` of the center.
    pub addr: String,
    /// Reconnect policy.
    pub backoff: Backoff,
    /// Limit for the TCP connect (and, with `tls`, the handshake after it).
    pub connect_timeout: Duration,
    /// TLS toward the center; `None`: plaintext TCP.
    pub tls: Option<ClientTls>,
}

impl DriverSpec {
    /// A spec with the default reconnect policy and a 10 s connect limit.
    #[must_use]
    pub fn new(channel: Arc<str>, index: usize, addr: String) -> Self {
        Self {
            channel,
            index,
            addr,
            backoff: Backoff::default(),
            connect_timeout: Duration::from_secs(10),
            tls: None,
        }
    }
}

/// Runs one bind until shutdown: connect, let `new_link` start a session on the fresh
/// connection, serve it, reconnect.
pub async fn run<L: Link>(
    spec: DriverSpec,
    worker: WorkerLinks<L::Part>,
    events: mpsc::Sender<ChannelEvent>,
    mut new_link: impl FnMut() -> Result<L, String> + Send,
) {
    let span = info_span!("bind", channel = %spec.channel, bind = spec.index);
    async move {
        let mut failures: u32 = 0;
        let mut shutdown = worker.shutdown.clone();
        let labels = [
            ("channel", spec.channel.to_string()),
            ("bind", spec.index.to_string()),
        ];
        loop {
            if *shutdown.borrow() {
                return;
            }
            let mut queue_closed = false;
            counter!(CHANNEL_CONNECT_ATTEMPTS, &labels).increment(1);
            let up = match connect(&spec).await {
                Ok(stream) => match new_link() {
                    Ok(link) => {
                        let mut conn = Connection::new(&spec, stream, link, &labels);
                        let reason = conn.serve(&worker, &events).await;
                        queue_closed = conn.queue_closed;
                        counter!(CHANNEL_BINDS_DOWN, &labels).increment(1);
                        gauge!(CHANNEL_WINDOW_IN_USE, &labels).set(0.0);
                        if conn.was_up {
                            if conn.silent_timeouts >= SILENT_TIMEOUTS {
                                warn!(%reason, "Center stopped answering submits; reconnecting.");
                            }
                            let _ = worker
                                .reports
                                .send(BindReport::Down {
                                    bind: spec.index,
                                    reason: reason.clone(),
                                })
                                .await;
                        }
                        info!(%reason, "Bind closed.");
                        // A bind whose center went silent was not really up: keep backing off.
                        conn.was_up && conn.silent_timeouts < SILENT_TIMEOUTS
                    }
                    Err(e) => {
                        // Settings are validated at start; this is a bug, not input.
                        warn!(error = %e, "Session settings refused.");
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
            failures = if up { 0 } else { failures.saturating_add(1) };
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

async fn connect(spec: &DriverSpec) -> std::io::Result<MaybeTls> {
    let timed_out = |what: &str| std::io::Error::new(std::io::ErrorKind::TimedOut, what);
    let stream = tokio::time::timeout(spec.connect_timeout, TcpStream::connect(&spec.addr))
        .await
        .map_err(|_| timed_out("connect timed out"))??;
    stream.set_nodelay(true)?;
    match &spec.tls {
        None => Ok(MaybeTls::Plain(stream)),
        Some(tls) => tokio::time::timeout(spec.connect_timeout, tls.connect(stream))
            .await
            .map_err(|_| timed_out("TLS handshake timed out"))?,
    }
}

/// One TCP connection's worth of driving.
struct Connection<'a, L: Link> {
    spec: &'a DriverSpec,
    labels: &'a [(&'static str, String); 2],
    stream: MaybeTls,
    link: L,
    read: BytesMut,
    write: BytesMut,
    was_up: bool,
    /// Submits timed out in a row since the last submit response (see [`SILENT_TIMEOUTS`]).
    silent_timeouts: u32,
    /// The worker dropped the part queue: the channel is stopping, do not reconnect.
    queue_closed: bool,
    /// Metric handles, registered once per connection (not per PDU).
    submits: metrics::Counter,
    window_in_use: metrics::Gauge,
    /// Inbound requests handed to the receipt layer and not yet durable.
    acks: AckTable<L::Ack>,
}

/// The inbound requests of a connection waiting for the receipt layer's answer, by token
/// ([`DeliverAck::to_bind`]): tokens are given in order and answered about in order, so a
/// queue from the oldest unanswered token holds them without a map.
struct AckTable<A> {
    /// The link's ack of token `first + i` at `i`; `None` once answered.
    waiting: std::collections::VecDeque<Option<A>>,
    first: u64,
    /// Where every [`DeliverAck`] of this connection sends its answer.
    tx: mpsc::UnboundedSender<(u64, bool)>,
    rx: mpsc::UnboundedReceiver<(u64, bool)>,
}

impl<A> AckTable<A> {
    fn new() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            waiting: std::collections::VecDeque::new(),
            first: 0,
            tx,
            rx,
        }
    }

    /// Keeps `ack` until its answer comes; the [`DeliverAck`] the receipt layer answers.
    fn wait(&mut self, ack: A) -> DeliverAck {
        let token = self.first + self.waiting.len() as u64;
        self.waiting.push_back(Some(ack));
        DeliverAck::to_bind(token, self.tx.clone())
    }

    fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// The link's ack for an answer to `token`, if it still waits.
    fn settle(&mut self, token: u64) -> Option<A> {
        let i = usize::try_from(token.checked_sub(self.first)?).ok()?;
        let ack = self.waiting.get_mut(i)?.take();
        while self.waiting.front().is_some_and(Option::is_none) {
            self.waiting.pop_front();
            self.first += 1;
        }
        ack
    }
}

/// What the select loop woke up for.
enum Wake<P> {
    Read(std::io::Result<usize>),
    Timer,
    Part(Option<PartJob<P>>),
    Shutdown,
    Ack(u64, bool),
}

impl<'a, L: Link> Connection<'a, L> {
    fn new(
        spec: &'a DriverSpec,
        stream: MaybeTls,
        link: L,
        labels: &'a [(&'static str, String); 2],
    ) -> Self {
        Self {
            spec,
            labels,
            stream,
            link,
            read: BytesMut::with_capacity(64 * 1024),
            write: BytesMut::with_capacity(64 * 1024),
            was_up: false,
            silent_timeouts: 0,
            queue_closed: false,
            submits: counter!(CHANNEL_SUBMITS, "channel" => spec.channel.to_string()),
            window_in_use: gauge!(CHANNEL_WINDOW_IN_USE, labels),
            acks: AckTable::new(),
        }
    }

    /// Serves the connection until the session closes or the socket fails; returns why.
    async fn serve(
        &mut self,
        worker: &WorkerLinks<L::Part>,
        events: &mpsc::Sender<ChannelEvent>,
    ) -> String {
        let mut shutting_down = false;
        let mut shutdown = worker.shutdown.clone();
        let mut batch = Coalescer::default();
        loop {
            if let Some(reason) = self.drain(worker, events).await {
                return reason;
            }
            if self.silent_timeouts >= SILENT_TIMEOUTS {
                self.link.handle_disconnect();
                self.drain(worker, events).await;
                return format!(
                    "{} submits in a row timed out without a response",
                    self.silent_timeouts
                );
            }
            let first = !shutting_down && *shutdown.borrow();
            shutting_down |= first;
            if shutting_down {
                // Drain, then close: no new parts are taken while shutting down.
                self.link.wind_down(Instant::now(), first);
                if let Err(e) = self.flush().await {
                    self.link.handle_disconnect();
                    self.drain(worker, events).await;
                    return format!("write failed: {e}");
                }
                if let Some(reason) = self.drain(worker, events).await {
                    return reason;
                }
            }
            // Whatever is ready now is taken before the session's output is written
            // (`coalesce`).
            let ready = batch.ready(self.next_wake(worker, &mut shutdown, shutting_down));
            let wake = match ready {
                Some(wake) => wake,
                None => {
                    if let Err(e) = self.flush().await {
                        self.link.handle_disconnect();
                        self.drain(worker, events).await;
                        return format!("write failed: {e}");
                    }
                    batch.wrote();
                    self.next_wake(worker, &mut shutdown, shutting_down).await
                }
            };
            match wake {
                Wake::Read(Ok(0)) => {
                    self.link.handle_disconnect();
                    self.drain(worker, events).await;
                    return "center closed the connection".into();
                }
                Wake::Read(Err(e)) => {
                    self.link.handle_disconnect();
                    self.drain(worker, events).await;
                    return format!("read failed: {e}");
                }
                Wake::Read(Ok(_)) => self.link.read(Instant::now(), &mut self.read),
                Wake::Timer => self.link.handle_timeout(Instant::now()),
                Wake::Shutdown => {}
                Wake::Ack(token, kept) => {
                    // Answer every request already settled in the same write.
                    let mut next = Some((token, kept));
                    while let Some((token, kept)) = next {
                        if let Some(ack) = self.acks.settle(token) {
                            self.link.answer(ack, kept);
                        }
                        next = self.acks.rx.try_recv().ok();
                    }
                }
                Wake::Part(None) => {
                    // The worker dropped the queue: the channel is stopping (drain, close).
                    self.queue_closed = true;
                    shutting_down = true;
                }
                Wake::Part(Some(job)) => {
                    self.submit(job, worker).await;
                    // Take more without waiting, so one write carries many submits. The
                    // queue is short (see `worker::spawn`), so when it is empty the worker
                    // gets one turn to refill it before the write: a task switch instead of
                    // a write per part.
                    let mut taken = 1;
                    let mut yielded = false;
                    while self.link.can_submit() && taken < PARTS_PER_WRITE {
                        let next = match worker.parts.try_lock() {
                            Ok(mut q) => q.try_recv().ok(),
                            Err(_) => None,
                        };
                        match next {
                            Some(job) => {
                                self.submit(job, worker).await;
                                taken += 1;
                                yielded = false;
                            }
                            None if !yielded => {
                                tokio::task::yield_now().await;
                                yielded = true;
                            }
                            None => break,
                        }
                    }
                }
            }
        }
    }

    /// Waits for the next thing to do: bytes read, the session's timer, an inbound request
    /// made durable, shutdown, or a part to submit (only while the window has room).
    async fn next_wake(
        &mut self,
        worker: &WorkerLinks<L::Part>,
        shutdown: &mut watch::Receiver<bool>,
        shutting_down: bool,
    ) -> Wake<L::Part> {
        let timer = self.link.poll_timeout();
        let want_part = !shutting_down && self.link.can_submit();
        let sleep = async {
            match timer {
                Some(t) => tokio::time::sleep_until(t.into()).await,
                None => std::future::pending().await,
            }
        };
        let part = async {
            if want_part {
                worker.parts.lock().await.recv().await
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
            Some((token, kept)) = self.acks.rx.recv(), if !self.acks.is_empty() => {
                Wake::Ack(token, kept)
            }
            () = stop => Wake::Shutdown,
            p = part => Wake::Part(p),
        }
    }

    async fn submit(&mut self, job: PartJob<L::Part>, worker: &WorkerLinks<L::Part>) {
        let now = Instant::now();
        match self.link.submit(now, job.tag, job.body) {
            Ok(()) => self.submits.increment(1),
            Err(tag) => {
                let _ = worker
                    .reports
                    .send(BindReport::Outcome {
                        bind: self.spec.index,
                        tag,
                        outcome: PartOutcome::Aborted,
                        sent_at: now,
                        at: now,
                    })
                    .await;
            }
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        self.link.encode_queued(&mut self.write);
        if !self.write.is_empty() {
            self.stream.write_all(&self.write).await?;
            // TLS buffers records; plain TCP's flush is a no-op.
            self.stream.flush().await?;
            self.write.clear();
        }
        Ok(())
    }

    /// Forwards the session's outputs; returns the close reason once the session is closed.
    async fn drain(
        &mut self,
        worker: &WorkerLinks<L::Part>,
        events: &mpsc::Sender<ChannelEvent>,
    ) -> Option<String> {
        let bind = self.spec.index;
        let mut closed = None;
        while let Some(output) = self.link.poll_output() {
            let report = match output {
                Output::Up { sends } => {
                    self.was_up = true;
                    counter!(CHANNEL_BINDS_UP, self.labels).increment(1);
                    Some(BindReport::Up { bind, sends })
                }
                Output::Part {
                    tag,
                    outcome,
                    sent_at,
                } => {
                    match &outcome {
                        PartOutcome::Timeout => {
                            self.silent_timeouts = self.silent_timeouts.saturating_add(1);
                        }
                        PartOutcome::Response { .. } => self.silent_timeouts = 0,
                        PartOutcome::Aborted => {}
                    }
                    Some(BindReport::Outcome {
                        bind,
                        tag,
                        outcome,
                        sent_at,
                        at: Instant::now(),
                    })
                }
                Output::Inbound { event, ack } => {
                    self.inbound(event, ack, events).await;
                    None
                }
                Output::Closed(reason) => {
                    closed = Some(reason);
                    None
                }
            };
            if let Some(report) = report {
                // The worker may be gone during shutdown; nothing else to tell then.
                let _ = worker.reports.send(report).await;
            }
        }
        self.window_in_use.set(self.link.in_flight() as f64);
        closed
    }

    /// Hands a receipt or MO to the receipt layer; its answer waits until the event is kept
    /// (dropped without an answer counts as kept, see [`DeliverAck`]). With the receipt layer
    /// gone, the center is told to resend.
    async fn inbound(
        &mut self,
        mut event: ChannelEvent,
        ack: L::Ack,
        events: &mpsc::Sender<ChannelEvent>,
    ) {
        let answer = self.acks.wait(ack);
        match &mut event {
            ChannelEvent::Receipt { ack, .. } | ChannelEvent::Mo { ack, .. } => *ack = answer,
        }
        if let Err(mpsc::error::SendError(event)) = events.send(event).await {
            // The receipt layer is gone: the center is told to resend (the answer goes
            // through the queue like any other).
            let (ChannelEvent::Receipt { ack, .. } | ChannelEvent::Mo { ack, .. }) = &event;
            ack.fail();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_reach_their_requests_in_any_order() {
        let mut table = AckTable::new();
        let acks: Vec<DeliverAck> = (0..4).map(|i| table.wait(i)).collect();
        acks[2].done();
        acks[0].fail();
        let mut answered = Vec::new();
        while let Ok((token, kept)) = table.rx.try_recv() {
            answered.extend(table.settle(token).map(|a| (a, kept)));
        }
        assert_eq!(answered, [(2, true), (0, false)]);
        assert!(!table.is_empty(), "1 and 3 still wait");
        assert_eq!(table.first, 1, "the answered front is let go");
        drop(acks);
        while let Ok((token, kept)) = table.rx.try_recv() {
            answered.extend(table.settle(token).map(|a| (a, kept)));
        }
        assert_eq!(
            answered[2..],
            [(1, true), (3, true)],
            "dropped unanswered: kept"
        );
        assert!(table.is_empty());
        // A token answered twice or never given settles nothing.
        assert_eq!(table.settle(2), None);
        assert_eq!(table.settle(99), None);
    }
}

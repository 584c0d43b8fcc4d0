//! One ESME connection: the tokio shell around the sans-IO `Smsc` session.
//!
//! Job: move bytes between the socket and the session, fire its timers, and act on its
//! events — check binds against the accounts' logins, accept submits through the shared
//! ingress path (answering only after the durable commit), reassemble long messages, and
//! hand outbox entries from the account's pump to the session as deliver_sm.
//!
//! Invariants: every outbox entry handed to this connection is reported back to the pump
//! exactly once ([`Done`]); every submit the session surfaced is answered exactly once
//! (accepted id, refusal status, or dropped with the session when the peer leaves); nothing
//! received from the network can make this task panic.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures::StreamExt;
use sluice_protocols::smpp::session::smsc::{
    BindKind, CloseReason, Event, Smsc, SmscConfig, State, Submit,
};
use sluice_protocols::smpp::{CodecError, CommandStatus, DecodeError, SmppFrameCodec};
use sluice_protocols::sms::{MessageKey, Outcome, Reassembler, ReassemblyConfig};
use subtle::ConstantTimeEq;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::codec::FramedRead;
use tracing::Instrument;

use super::submit::{self, Common, Incoming};
use super::{AccountHub, Done, Outgoing, REASSEMBLY_TTL, Server};
use crate::coalesce::Coalescer;
use crate::ingress::accept::{AcceptError, Prepared};
use crate::ingress::account::key_hash;
use crate::ingress::http::{commit_prepared, prepare_items};
use crate::ingress::screen::screen;
use crate::metrics as m;
use crate::store::MessageId;
use crate::tls::stream::MaybeTls;

type Tag = (super::OutgoingKind, u64);
type SubmitResult = (Vec<u32>, Result<String, CommandStatus>);

/// A frame from the read half, as the codec yields it (`None`: the peer closed).
type Frame = Option<
    Result<
        <SmppFrameCodec as tokio_util::codec::Decoder>::Item,
        <SmppFrameCodec as tokio_util::codec::Decoder>::Error,
    >,
>;

/// What the connection's loop woke up for.
#[allow(
    clippy::large_enum_variant,
    reason = "made and matched once per wake-up, never stored: boxing the frame would allocate per PDU"
)]
enum Wake {
    Frame(Frame),
    Timeout,
    Stalled,
    Task(Result<Vec<SubmitResult>, tokio::task::JoinError>),
    Out(Option<Outgoing>),
    Reject,
    Tick,
    Stop,
}

struct Bound {
    hub: Arc<AccountHub>,
    id: u64,
    kind: BindKind,
    rx: Option<mpsc::Receiver<Outgoing>>,
    /// Submits answered `ESME_ROK`, registered once per bind: a lookup by name and labels
    /// (and the status as text) per answer was 1 % of the gateway's CPU at full speed.
    /// Other statuses are rare and counted through the lookup.
    submits_ok: metrics::Counter,
}

struct Conn {
    server: Arc<Server>,
    peer: SocketAddr,
    smsc: Smsc<Tag>,
    bound: Option<Bound>,
    reject: Option<(Pin<Box<tokio::time::Sleep>>, CommandStatus)>,
    tasks: JoinSet<Vec<SubmitResult>>,
    /// Submits routed and charged but not yet handed to the store.
    pending: Pending,
    reasm: Reassembler,
    /// Long messages being reassembled: the id they will get (pre-allocated, given to the
    /// first parts' responses).
    held: HashMap<MessageKey, MessageId>,
    queued: VecDeque<Outgoing>,
    draining: bool,
    span: tracing::Span,
}

/// Submits routed and charged since the connection last asked the store: the next request
/// stores them together ([`Conn::store_pending`]), when the loop writes, so a batch of
/// wake-ups makes one task and one store request instead of one per submit. None is
/// answered before that request's commit; a session that closes first drops them unstored
/// and unanswered, as it drops the answers of requests in flight.
#[derive(Default)]
struct Pending {
    prepared: Prepared,
    /// Each submit's sequence numbers and how many of `prepared`'s records are its.
    submits: Vec<(Vec<u32>, usize)>,
}

/// The status a submit is answered with when its accept failed.
fn refusal(e: &AcceptError) -> CommandStatus {
    match e {
        AcceptError::Unplaceable { error, .. } if error.field == "to" => {
            CommandStatus::EsmeRinvdstadr
        }
        AcceptError::Unplaceable { .. } => CommandStatus::EsmeRsubmitfail,
        // A full disk is "try later", as the HTTP API's 503.
        AcceptError::Store(e) if e.is_no_space() => CommandStatus::EsmeRmsgqful,
        AcceptError::Store(_) | AcceptError::Refused { .. } => CommandStatus::EsmeRsyserr,
    }
}

/// Every submit of `submits` answered `status`.
fn refuse_all(submits: Vec<(Vec<u32>, usize)>, status: CommandStatus) -> Vec<SubmitResult> {
    submits
        .into_iter()
        .map(|(seqs, _)| (seqs, Err(status)))
        .collect()
}

/// Serves one connection until it closes.
pub(crate) async fn run(
    server: Arc<Server>,
    socket: MaybeTls,
    peer: SocketAddr,
    stop: watch::Receiver<bool>,
) {
    let span = tracing::info_span!("smpp_bind", %peer, account = tracing::field::Empty,
        kind = tracing::field::Empty);
    let now = Instant::now();
    let cfg = SmscConfig {
        system_id: "sluice".into(),
        bind_timeout: server.config.bind_timeout,
        // Until the bind names the account, one request at a time.
        submit_window: 1,
        deliver_window: 1,
        response_timeout: server.config.response_timeout,
        enquire_link_interval: server.config.enquire_link_interval,
    };
    let mut smsc = Smsc::new(cfg, now);
    smsc.limit_unbound_requests(Some(server.config.max_unbound_requests));
    let conn = Conn {
        server,
        peer,
        smsc,
        bound: None,
        reject: None,
        tasks: JoinSet::new(),
        pending: Pending::default(),
        reasm: Reassembler::new(ReassemblyConfig {
            ttl: REASSEMBLY_TTL,
            max_pending: 1024,
            max_total_octets: 1 << 20,
            ..ReassemblyConfig::default()
        }),
        held: HashMap::new(),
        queued: VecDeque::new(),
        draining: false,
        span: span.clone(),
    };
    conn.serve(socket, stop).instrument(span).await;
}

impl Conn {
    async fn serve(mut self, socket: MaybeTls, mut stop: watch::Receiver<bool>) {
        let (read, mut write) = tokio::io::split(socket);
        let mut frames = FramedRead::new(
            Tracked {
                inner: read,
                last_read: Instant::now(),
            },
            SmppFrameCodec::default(),
        );
        let mut buf = BytesMut::with_capacity(4096);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch = Coalescer::default();
        loop {
            self.pump_events();
            self.fill_window();
            while let Some(c) = self.smsc.poll_transmit() {
                if let Err(e) = c.encode(&mut buf) {
                    tracing::error!(error = %e, "Could not encode a PDU; dropped.");
                }
            }
            if self.smsc.is_closed() {
                // What the session said last (an unbind_resp, a generic_nack) still goes out.
                Self::write_out(&mut write, &mut buf).await.ok();
                self.pump_events();
                break;
            }
            if self.draining
                && self.tasks.is_empty()
                && self.pending.submits.is_empty()
                && matches!(self.smsc.state(), State::Bound(_))
            {
                // Pending submits are answered: now unbind (once; unbind() ignores repeats).
                self.smsc.unbind(Instant::now());
                continue;
            }
            // Whatever is ready now is handled before the session's output is written and
            // its submits are stored, so one write carries the answers and deliver_sm of
            // several wake-ups, and one store request their submits (`coalesce`).
            let wake = if buf.is_empty() && self.pending.submits.is_empty() {
                self.next_wake(&mut frames, &mut tick, &mut stop).await
            } else if let Some(wake) =
                batch.ready(self.next_wake(&mut frames, &mut tick, &mut stop))
            {
                wake
            } else {
                batch.wrote();
                self.store_pending();
                if !buf.is_empty()
                    && let Err(e) = Self::write_out(&mut write, &mut buf).await
                {
                    tracing::debug!(error = %e, "Write failed.");
                    self.smsc.handle_disconnect();
                }
                continue;
            };
            match wake {
                Wake::Frame(frame) => {
                    let now = Instant::now();
                    match frame {
                        Some(Ok(Ok(d))) => self.smsc.handle_pdu(now, d.command),
                        Some(Ok(Err(e))) => self.smsc.handle_decode_error(now, &e),
                        Some(Err(CodecError::Frame(f))) => {
                            self.smsc.handle_decode_error(now, &DecodeError::Frame(f));
                        }
                        Some(Err(e)) => {
                            tracing::debug!(error = %e, "Read failed.");
                            self.smsc.handle_disconnect();
                        }
                        None => self.smsc.handle_disconnect(),
                    }
                }
                Wake::Timeout => self.smsc.handle_timeout(Instant::now()),
                Wake::Stalled => {
                    let read_timeout = self.server.config.read_timeout;
                    if !frames.read_buffer().is_empty()
                        && frames.get_ref().last_read + read_timeout <= Instant::now()
                    {
                        tracing::info!(
                            buffered = frames.read_buffer().len(),
                            "Half-sent PDU and no byte within the read timeout; closing."
                        );
                        metrics::counter!(m::SMPP_SERVER_ABUSE, m::LABEL_REASON => "read_timeout")
                            .increment(1);
                        self.smsc.handle_disconnect();
                    }
                }
                Wake::Task(r) => {
                    for (seqs, result) in r.into_iter().flatten() {
                        self.answer(&seqs, &result);
                    }
                }
                Wake::Out(out) => {
                    if let Some(o) = out {
                        self.queued.push_back(o);
                    }
                }
                Wake::Reject => {
                    if let Some((_, status)) = self.reject.take() {
                        self.smsc.reject_bind(status);
                    }
                }
                Wake::Tick => self.expire_parts(),
                Wake::Stop => {
                    self.draining = true;
                    if self.smsc.bind_kind().is_none() {
                        self.smsc.unbind(Instant::now());
                    }
                }
            }
        }
        self.finish();
    }

    /// Writes `buf` out and empties it. flush: TLS buffers records; plain TCP's flush is a
    /// no-op.
    async fn write_out<W: tokio::io::AsyncWrite + Unpin>(
        write: &mut W,
        buf: &mut BytesMut,
    ) -> std::io::Result<()> {
        let written = match write.write_all(buf).await {
            Ok(()) => write.flush().await,
            Err(e) => Err(e),
        };
        buf.clear();
        written
    }

    /// Waits for the next thing to do: a frame read, the session's timer, a half-sent PDU's
    /// read timeout, a submit made durable, an outbox entry to deliver (while the window has
    /// room), a delayed bind refusal, the 1 s tick, or the stop.
    async fn next_wake<R: tokio::io::AsyncRead + Unpin>(
        &mut self,
        frames: &mut FramedRead<Tracked<R>, SmppFrameCodec>,
        tick: &mut tokio::time::Interval,
        stop: &mut watch::Receiver<bool>,
    ) -> Wake {
        let read_timeout = self.server.config.read_timeout;
        let deadline = self.smsc.poll_timeout().map(tokio::time::Instant::from_std);
        // A PDU begun and not finished: its bytes must keep coming. (The 1 s tick below
        // wakes this loop, so a PDU begun after this line is caught on a later turn.)
        let stalled = (!frames.read_buffer().is_empty())
            .then(|| tokio::time::Instant::from_std(frames.get_ref().last_read + read_timeout));
        let can_take = self.smsc.can_deliver() && self.queued.is_empty();
        tokio::select! {
            frame = frames.next() => Wake::Frame(frame),
            () = sleep_until(deadline) => Wake::Timeout,
            () = sleep_until(stalled) => Wake::Stalled,
            Some(r) = self.tasks.join_next(), if !self.tasks.is_empty() => Wake::Task(r),
            out = recv(self.bound.as_mut().and_then(|b| b.rx.as_mut())), if can_take => {
                Wake::Out(out)
            }
            () = reject_timer(self.reject.as_mut()), if self.reject.is_some() => Wake::Reject,
            _ = tick.tick() => Wake::Tick,
            _ = stop.wait_for(|s| *s), if !self.draining => Wake::Stop,
        }
    }

    /// Moves queued outbox entries into the session's window.
    fn fill_window(&mut self) {
        while self.smsc.can_deliver() {
            let Some(o) = self.queued.pop_front() else {
                break;
            };
            let tag = (o.kind, o.seq);
            if let Err(refused) = self.smsc.deliver(Instant::now(), tag, o.sm) {
                self.queued.push_front(Outgoing {
                    kind: o.kind,
                    seq: o.seq,
                    sm: refused.sm,
                });
                break;
            }
        }
    }

    fn report(&self, tag: Tag, ok: bool) {
        if let Some(b) = &self.bound {
            let _ = b.hub.done.send(Done {
                kind: tag.0,
                seq: tag.1,
                ok,
            });
        }
    }

    fn pump_events(&mut self) {
        while let Some(ev) = self.smsc.poll_event() {
            match ev {
                Event::BindRequest {
                    kind,
                    system_id,
                    password,
                    interface_version,
                } => self.on_bind(
                    kind,
                    system_id.as_slice(),
                    password.as_slice(),
                    interface_version,
                ),
                Event::Submit { sequence, submit } => self.on_submit(sequence, &submit),
                Event::DeliverResponse { tag, status } => {
                    if !status.is_ok() {
                        tracing::debug!(%status, "ESME refused a deliver_sm; it will be retried.");
                    }
                    self.report(tag, status.is_ok());
                }
                Event::DeliverTimeout { tag } | Event::DeliverAborted { tag } => {
                    self.report(tag, false);
                }
                Event::Closed(reason) => {
                    tracing::debug!(?reason, "Session closed.");
                    let abuse = match reason {
                        CloseReason::BindTimeout => Some("bind_timeout"),
                        CloseReason::UnboundFlood => Some("unbound_flood"),
                        CloseReason::Protocol => Some("command_length"),
                        _ => None,
                    };
                    if let Some(reason) = abuse {
                        tracing::info!(reason, "SMPP connection closed for abuse.");
                        metrics::counter!(m::SMPP_SERVER_ABUSE, m::LABEL_REASON => reason)
                            .increment(1);
                    }
                }
            }
        }
    }

    fn on_bind(&mut self, kind: BindKind, system_id: &[u8], password: &[u8], version: u8) {
        let ip = self.peer.ip();
        if let Err(refusal) = self.server.guard.bind_attempt(ip, Instant::now()) {
            // Refused before the credentials are looked at: a locked-out guesser learns
            // nothing, and a flood costs no hashing.
            let status = CommandStatus::EsmeRbindfail;
            tracing::info!(reason = refusal.as_str(), "Bind refused before login.");
            metrics::counter!(m::SMPP_SERVER_ABUSE, m::LABEL_REASON => refusal.as_str())
                .increment(1);
            metrics::counter!(m::SMPP_SERVER_BINDS_REFUSED, m::LABEL_STATUS => status.to_string())
                .increment(1);
            self.smsc.reject_bind(status);
            return;
        }
        let hub = std::str::from_utf8(system_id)
            .ok()
            .and_then(|s| self.server.hubs.get(s))
            .cloned();
        let status = match &hub {
            None => Err(CommandStatus::EsmeRinvsysid),
            Some(h) => {
                let presented = key_hash(&String::from_utf8_lossy(password));
                if bool::from(presented.ct_eq(&h.login.password_sha256)) {
                    Ok(Arc::clone(h))
                } else {
                    Err(CommandStatus::EsmeRinvpaswd)
                }
            }
        };
        let hub = match status {
            Ok(h) => h,
            Err(status) => {
                let delay = self.server.guard.failed(ip, Instant::now());
                tracing::info!(%status, delay_ms = delay.as_millis() as u64, "Bind refused.");
                metrics::counter!(m::SMPP_SERVER_BINDS_REFUSED, m::LABEL_STATUS => status.to_string())
                    .increment(1);
                self.reject = Some((Box::pin(tokio::time::sleep(delay)), status));
                return;
            }
        };
        let window = hub.login.window;
        let (tx, rx) = if kind.receives() {
            let (tx, rx) = mpsc::channel(window.max(1));
            (Some(tx), Some(rx))
        } else {
            (None, None)
        };
        let Some(id) = hub.register(kind, tx) else {
            let status = CommandStatus::EsmeRbindfail;
            tracing::info!(account = %hub.name, max = hub.login.max_binds, "Bind refused: too many binds.");
            metrics::counter!(m::SMPP_SERVER_BINDS_REFUSED, m::LABEL_STATUS => status.to_string())
                .increment(1);
            self.smsc.reject_bind(status);
            return;
        };
        self.server.guard.succeeded(ip);
        // The session was built before the account was known: apply its window now.
        self.smsc.set_windows(window, window);
        self.smsc.accept_bind(Instant::now());
        self.span.record("account", hub.name.as_str());
        self.span.record("kind", kind.as_str());
        metrics::gauge!(m::SMPP_SERVER_BINDS_UP, m::LABEL_ACCOUNT => hub.name.clone(),
            m::LABEL_KIND => kind.as_str())
        .increment(1.0);
        tracing::info!(version = format!("{version:#x}"), "ESME bound.");
        let submits_ok = metrics::counter!(m::SMPP_SERVER_SUBMITS,
            m::LABEL_ACCOUNT => hub.name.clone(),
            m::LABEL_STATUS => CommandStatus::EsmeRok.to_string());
        self.bound = Some(Bound {
            hub,
            id,
            kind,
            rx,
            submits_ok,
        });
    }

    fn respond(&mut self, seq: u32, result: Result<String, CommandStatus>) {
        let status = match &result {
            Ok(_) => CommandStatus::EsmeRok,
            Err(s) => *s,
        };
        if let Some(b) = &self.bound {
            if status == CommandStatus::EsmeRthrottled {
                metrics::counter!(m::SMPP_SERVER_THROTTLED, m::LABEL_ACCOUNT => b.hub.name.clone())
                    .increment(1);
            }
            if status == CommandStatus::EsmeRok {
                b.submits_ok.increment(1);
            } else {
                metrics::counter!(m::SMPP_SERVER_SUBMITS, m::LABEL_ACCOUNT => b.hub.name.clone(),
                    m::LABEL_STATUS => status.to_string())
                .increment(1);
            }
        }
        self.smsc.respond_submit(seq, result);
    }

    fn answer(&mut self, seqs: &[u32], result: &Result<String, CommandStatus>) {
        for &s in seqs {
            self.respond(s, result.clone());
        }
    }

    fn on_submit(&mut self, seq: u32, submit: &Submit) {
        if self.draining || self.server.ingress.draining.load(Ordering::Acquire) {
            self.respond(seq, Err(CommandStatus::EsmeRmsgqful));
            return;
        }
        match submit::decode(submit) {
            Err(status) => self.respond(seq, Err(status)),
            Ok(Incoming::Whole { common, data, udh }) => {
                self.accept(vec![seq], &common, &data, udh.as_deref(), None);
            }
            Ok(Incoming::Part {
                common,
                concat,
                data,
            }) => {
                let source = common.from.clone().unwrap_or_default();
                let dest = common.dests.first().cloned().unwrap_or_default();
                let key = MessageKey {
                    source: source.clone(),
                    dest: dest.clone(),
                    reference: concat.reference,
                    total: concat.total,
                };
                match self
                    .reasm
                    .push(&source, &dest, concat, &data, Instant::now())
                {
                    Outcome::Complete(parts) => {
                        let id = self.held.remove(&key);
                        let whole: Vec<u8> = parts.concat();
                        self.accept(vec![seq], &common, &whole, None, id);
                    }
                    Outcome::Pending | Outcome::Duplicate => {
                        // Answered at once with the id the whole message will get: clients
                        // that wait for each part's response before the next (smpplib) must
                        // be able to send the rest. The last part's response waits for the
                        // durable commit and carries any refusal.
                        let ingress = &self.server.ingress;
                        let id = *self
                            .held
                            .entry(key)
                            .or_insert_with(|| ingress.store.ids().next((ingress.now_ms)()));
                        self.respond(seq, Ok(id.to_string()));
                    }
                    Outcome::Rejected => self.respond(seq, Err(CommandStatus::EsmeRinvmsglen)),
                }
                // Forget ids of messages evicted for room.
                let reasm = &self.reasm;
                self.held.retain(|k, _| reasm.is_pending(k));
            }
        }
    }

    fn accept(
        &mut self,
        seqs: Vec<u32>,
        common: &Common,
        data: &[u8],
        udh: Option<&[u8]>,
        id: Option<MessageId>,
    ) {
        let Some(name) = self.bound.as_ref().map(|b| b.hub.name.clone()) else {
            self.answer(&seqs, &Err(CommandStatus::EsmeRinvbndsts));
            return;
        };
        let ingress = Arc::clone(&self.server.ingress);
        let Some(account) = ingress.accounts.get(&name) else {
            self.answer(&seqs, &Err(CommandStatus::EsmeRsyserr));
            return;
        };
        let lane = self
            .bound
            .as_ref()
            .map_or_else(Default::default, |b| b.hub.login.lane);
        let items = match submit::items(common, data, udh, &account.spec.senders, lane) {
            Ok(i) => i,
            Err(status) => {
                self.answer(&seqs, &Err(status));
                return;
            }
        };
        // Destinations a public contact rule refuses are dropped (never stored); a submit
        // left with none is answered with the barred-destination status.
        // SMPP submits carry no client_ref: nothing to look up.
        let (items, refused) = screen(&ingress.rules, items, &|_| false);
        if items.is_empty() {
            if let Some(r) = refused.first() {
                tracing::debug!(reason = %r.refusal, "Submit refused by a public rule.");
            }
            self.answer(&seqs, &Err(submit::REFUSED_BY_RULE));
            return;
        }
        if account.charge(items.len()).is_err() {
            self.answer(&seqs, &Err(CommandStatus::EsmeRthrottled));
            return;
        }
        match prepare_items(&ingress, account, items, id.into_iter().collect()) {
            Ok(prepared) => {
                self.pending.submits.push((seqs, prepared.len()));
                self.pending.prepared.append(prepared);
            }
            Err(e) => self.answer(&seqs, &Err(refusal(&e))),
        }
    }

    /// Hands the pending submits to the store in one request, answered by one task.
    fn store_pending(&mut self) {
        if self.pending.submits.is_empty() {
            return;
        }
        let Pending { prepared, submits } = std::mem::take(&mut self.pending);
        let Some(name) = self.bound.as_ref().map(|b| b.hub.name.clone()) else {
            for (seqs, _) in submits {
                self.answer(&seqs, &Err(CommandStatus::EsmeRinvbndsts));
            }
            return;
        };
        let ingress = Arc::clone(&self.server.ingress);
        self.tasks.spawn(
            async move {
                let Some(account) = ingress.accounts.get(&name) else {
                    return refuse_all(submits, CommandStatus::EsmeRsyserr);
                };
                match commit_prepared(&ingress, account, prepared).await {
                    Ok(accepted) => {
                        // Results come in the order the submits were prepared: each submit
                        // is answered with its first record's id.
                        let mut at = 0;
                        submits
                            .into_iter()
                            .map(|(seqs, n)| {
                                let id = (n > 0)
                                    .then(|| accepted.get(at))
                                    .flatten()
                                    .map(|a| a.id.to_string());
                                at += n;
                                (seqs, id.ok_or(CommandStatus::EsmeRsyserr))
                            })
                            .collect()
                    }
                    Err(e) => refuse_all(submits, refusal(&e)),
                }
            }
            .in_current_span(),
        );
    }

    fn expire_parts(&mut self) {
        for key in self.reasm.expire(Instant::now()) {
            if self.held.remove(&key).is_some() {
                tracing::info!(
                    reference = key.reference,
                    "Long message incomplete after the reassembly TTL; dropped."
                );
            }
        }
    }

    /// Gives back every entry this bind still holds and leaves the hub.
    fn finish(mut self) {
        while let Some(ev) = self.smsc.poll_event() {
            if let Event::DeliverResponse { tag, .. }
            | Event::DeliverTimeout { tag }
            | Event::DeliverAborted { tag } = ev
            {
                let ok = matches!(ev, Event::DeliverResponse { status, .. } if status.is_ok());
                self.report(tag, ok);
            }
        }
        let queued: Vec<Tag> = self.queued.drain(..).map(|o| (o.kind, o.seq)).collect();
        for tag in queued {
            self.report(tag, false);
        }
        if let Some(mut b) = self.bound.take() {
            b.hub.unregister(b.id);
            if let Some(rx) = b.rx.as_mut() {
                rx.close();
                while let Ok(o) = rx.try_recv() {
                    let _ = b.hub.done.send(Done {
                        kind: o.kind,
                        seq: o.seq,
                        ok: false,
                    });
                }
            }
            metrics::gauge!(m::SMPP_SERVER_BINDS_UP, m::LABEL_ACCOUNT => b.hub.name.clone(),
                m::LABEL_KIND => b.kind.as_str())
            .decrement(1.0);
            tracing::info!("ESME unbound.");
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn recv(rx: Option<&mut mpsc::Receiver<Outgoing>>) -> Option<Outgoing> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn reject_timer(t: Option<&mut (Pin<Box<tokio::time::Sleep>>, CommandStatus)>) {
    match t {
        Some((sleep, _)) => sleep.as_mut().await,
        None => std::future::pending().await,
    }
}

/// The read half, noting when bytes last arrived (the read timeout of a half-sent PDU).
struct Tracked<R> {
    inner: R,
    last_read: Instant,
}

impl<R: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Tracked<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.last_read = Instant::now();
        }
        r
    }
}

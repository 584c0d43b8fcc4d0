//! The message-center (SMSC) side of one SMPP connection as a sans-IO state machine.
//!
//! No sockets and no clock: the driver feeds decoded PDUs in with [`Smsc::handle_pdu`]
//! (undecodable ones with [`Smsc::handle_decode_error`]), fires timers with
//! [`Smsc::handle_timeout`], and drains [`Smsc::poll_transmit`] (PDUs to write),
//! [`Smsc::poll_event`] (what the driver must act on) and [`Smsc::poll_timeout`] (when to call
//! `handle_timeout` next). Every input takes `now`, so tests run on a manual clock.
//!
//! Job and invariants:
//! - State: `Open` (connected, not bound) → `Binding` (bind surfaced as
//!   [`Event::BindRequest`], waiting for the driver's [`Smsc::accept_bind`] /
//!   [`Smsc::reject_bind`]) → `Bound` → (`Unbinding`) → `Closed`. A connection that does not
//!   send a bind within `bind_timeout` is closed ([`CloseReason::BindTimeout`]).
//! - Which PDU in which state: enquire_link is answered in every state but `Closed`; a
//!   bind while binding or bound gets `ESME_RALYBND`; submit_sm / submit_multi / data_sm
//!   only from a bound transmitter or transceiver; deliver_sm_resp / data_sm_resp only
//!   match our own window; anything else a center does not take from an ESME gets its own
//!   response (or generic_nack) with `ESME_RINVBNDSTS`. query_sm / cancel_sm / replace_sm are
//!   not offered: `ESME_RQUERYFAIL` / `ESME_RCANCELFAIL` / `ESME_RREPLACEFAIL`.
//! - Every request is answered exactly once. Submits are answered by the driver with
//!   [`Smsc::respond_submit`] once the message is durable (or with
//!   [`Smsc::take_submit_response`], which hands the response to a driver that writes it
//!   later itself); at most `submit_window` of them wait at once, beyond that the ESME gets
//!   `ESME_RTHROTTLED` at once.
//! - A refused bind closes the session ([`Smsc::reject_bind`]) or, with
//!   [`Smsc::refuse_bind`], returns it to `Open` for another try.
//! - deliver_sm we send: sequence numbers run 1..=0x7FFF_FFFF and wrap, skipping ones still
//!   in the window; the window never holds more than `deliver_window` entries, and each
//!   entry leaves exactly once, as [`Event::DeliverResponse`], [`Event::DeliverTimeout`] or
//!   [`Event::DeliverAborted`] (when the session closes with it open), so the driver can put
//!   every undelivered receipt back.
//! - Keep-alive: after `enquire_link_interval` without any PDU from the ESME an
//!   enquire_link goes out; no answer within `response_timeout` closes the session.
//! - Undecodable input is answered as the codec's [`DecodeError::response`] says
//!   (generic_nack `ESME_RINVCMDLEN` / `ESME_RINVCMDID`, or the request's response with
//!   `ESME_RINVMSGLEN`); a framing error closes the session after the nack.
//! - PDU floods before bind: with [`Smsc::limit_unbound_requests`] set to `n`, the session
//!   answers `n` requests `ESME_RINVBNDSTS` while not bound; the next one is answered too and
//!   closes the session ([`CloseReason::UnboundFlood`]), so a client that never binds cannot
//!   keep the server busy answering it.
//! - Never panics on input: every branch of every PDU leads to an answer or is ignored.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::smpp::tlv::tags;
use crate::smpp::{
    BindResp, Command, CommandStatus, DataSm, DecodeError, INTERFACE_VERSION_34,
    INTERFACE_VERSION_50, MessageIdResp, Octets, Pdu, QuerySmResp, Sm, SubmitMulti,
    SubmitMultiResp,
};

use crate::window::Window;

/// Which bind the ESME asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BindKind {
    /// bind_transmitter: submits only.
    Transmitter,
    /// bind_receiver: takes deliver_sm only.
    Receiver,
    /// bind_transceiver: both.
    Transceiver,
}

impl BindKind {
    /// May this bind submit?
    #[must_use]
    pub const fn sends(self) -> bool {
        matches!(self, Self::Transmitter | Self::Transceiver)
    }

    /// May this bind take deliver_sm?
    #[must_use]
    pub const fn receives(self) -> bool {
        matches!(self, Self::Receiver | Self::Transceiver)
    }

    /// Lowercase name for logs and metrics.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Transmitter => "transmitter",
            Self::Receiver => "receiver",
            Self::Transceiver => "transceiver",
        }
    }

    fn response(self, resp: BindResp) -> Pdu {
        match self {
            Self::Transmitter => Pdu::BindTransmitterResp(resp),
            Self::Receiver => Pdu::BindReceiverResp(resp),
            Self::Transceiver => Pdu::BindTransceiverResp(resp),
        }
    }
}

/// Session settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmscConfig {
    /// Our system_id, sent in bind responses.
    pub system_id: String,
    /// Longest wait for a bind after the connection opens.
    pub bind_timeout: Duration,
    /// Submits from the ESME waiting for their answer at once (more: `ESME_RTHROTTLED`).
    pub submit_window: usize,
    /// deliver_sm we may have outstanding at once.
    pub deliver_window: usize,
    /// How long a deliver_sm / enquire_link / unbind may wait for its response.
    pub response_timeout: Duration,
    /// Silence from the ESME after which we send enquire_link.
    pub enquire_link_interval: Duration,
}

impl Default for SmscConfig {
    fn default() -> Self {
        Self {
            system_id: "sluice".into(),
            bind_timeout: Duration::from_secs(10),
            submit_window: 64,
            deliver_window: 64,
            response_timeout: Duration::from_secs(10),
            enquire_link_interval: Duration::from_secs(30),
        }
    }
}

/// Where the session is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Connected, no bind yet.
    Open,
    /// A bind was surfaced; the driver has not decided yet.
    Binding,
    /// Bound as this kind.
    Bound(BindKind),
    /// We sent unbind; responses may still arrive.
    Unbinding(BindKind),
    /// Over; the driver closes the socket once the transmit queue is written.
    Closed(CloseReason),
}

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// Our unbind was answered (or timed out).
    Unbound,
    /// The ESME sent unbind.
    PeerUnbind,
    /// The bind was refused with this status.
    BindRejected(CommandStatus),
    /// No bind within `bind_timeout`.
    BindTimeout,
    /// No enquire_link response in time.
    EnquireLinkTimeout,
    /// The byte stream cannot be trusted (bad command_length).
    Protocol,
    /// The connection is gone.
    Disconnected,
    /// Too many requests before a bind (see [`Smsc::limit_unbound_requests`]).
    UnboundFlood,
}

/// A submit from the ESME, waiting for [`Smsc::respond_submit`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Submit {
    /// submit_sm.
    Sm(Box<Sm>),
    /// submit_multi.
    Multi(Box<SubmitMulti>),
    /// data_sm.
    Data(Box<DataSm>),
}

/// What the session reports to its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<T> {
    /// A bind to check; answer with [`Smsc::accept_bind`] or [`Smsc::reject_bind`].
    BindRequest {
        /// Which bind.
        kind: BindKind,
        /// The ESME's system_id.
        system_id: Octets,
        /// The password as sent.
        password: Octets,
        /// The version the session speaks: 0x50 for 5.0, 0x34 for everything else (0x33,
        /// 0x00 and unknown values are treated as 3.4).
        interface_version: u8,
    },
    /// A submit to accept; answer with [`Smsc::respond_submit`]`(sequence, …)`.
    Submit {
        /// Sequence number to answer.
        sequence: u32,
        /// The request.
        submit: Submit,
    },
    /// A deliver_sm we sent was answered.
    DeliverResponse {
        /// The driver's tag.
        tag: T,
        /// The ESME's status (a generic_nack's status, never ROK for a nack).
        status: CommandStatus,
    },
    /// No deliver_sm_resp within `response_timeout`.
    DeliverTimeout {
        /// The driver's tag.
        tag: T,
    },
    /// The session closed with this deliver_sm unanswered.
    DeliverAborted {
        /// The driver's tag.
        tag: T,
    },
    /// The session is over; no more events follow.
    Closed(CloseReason),
}

/// Why [`Smsc::deliver`] refused; the tag and PDU come back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliverRefused<T> {
    /// The tag, handed back.
    pub tag: T,
    /// The PDU, handed back.
    pub sm: Box<Sm>,
    /// `true`: the window is full (try later); `false`: not bound as a receiver.
    pub window_full: bool,
}

#[derive(Debug, Clone)]
struct Pending<T> {
    tag: T,
}

#[derive(Debug, Clone, Copy)]
struct Control {
    sequence: u32,
    deadline: Instant,
}

/// What a waiting submit is answered with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SubmitKind {
    Sm,
    Multi,
    Data,
}

/// The SMSC side of one connection. `T` tags each deliver_sm (the driver's outbox entry).
#[derive(Debug)]
pub struct Smsc<T> {
    config: SmscConfig,
    state: State,
    bind_deadline: Instant,
    /// (sequence, kind, agreed version, whether the peer understands TLVs (≥ 0x34)).
    bind_sequence: Option<(u32, BindKind, u8, bool)>,
    interface_version: u8,
    /// Outstanding requests, their deadlines and the sequence numbers.
    window: Window<Pending<T>>,
    submits: HashMap<u32, SubmitKind>,
    enquire_link: Option<Control>,
    unbind: Option<Control>,
    last_received: Instant,
    transmit: VecDeque<Command>,
    events: VecDeque<Event<T>>,
    /// Requests answered `ESME_RINVBNDSTS` while not bound, and how many are allowed.
    unbound_requests: u32,
    unbound_limit: Option<u32>,
}

impl<T> Smsc<T> {
    /// A session on a freshly accepted connection.
    #[must_use]
    pub fn new(config: SmscConfig, now: Instant) -> Self {
        Self {
            bind_deadline: now + config.bind_timeout,
            bind_sequence: None,
            interface_version: INTERFACE_VERSION_34,
            state: State::Open,
            window: Window::with_capacity(0),
            submits: HashMap::new(),
            enquire_link: None,
            unbind: None,
            last_received: now,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            config,
            unbound_requests: 0,
            unbound_limit: None,
        }
    }

    /// Closes the session once more than `max` requests arrived before a bind (each is
    /// still answered `ESME_RINVBNDSTS`); `None` (the default) never does.
    pub fn limit_unbound_requests(&mut self, max: Option<u32>) {
        self.unbound_limit = max;
    }

    /// The current state.
    #[must_use]
    pub const fn state(&self) -> &State {
        &self.state
    }

    /// The kind of the bind, once bound (also while unbinding).
    #[must_use]
    pub const fn bind_kind(&self) -> Option<BindKind> {
        match self.state {
            State::Bound(k) | State::Unbinding(k) => Some(k),
            _ => None,
        }
    }

    /// The interface version agreed at bind (0x34 or 0x50).
    #[must_use]
    pub const fn interface_version(&self) -> u8 {
        self.interface_version
    }

    /// deliver_sm outstanding.
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.window.len()
    }

    /// Submits waiting for [`Self::respond_submit`].
    #[must_use]
    pub fn submits_waiting(&self) -> usize {
        self.submits.len()
    }

    /// True when [`Self::deliver`] would take a deliver_sm now.
    #[must_use]
    pub fn can_deliver(&self) -> bool {
        matches!(self.state, State::Bound(k) if k.receives())
            && self.window.len() < self.config.deliver_window
    }

    /// True once closed.
    #[must_use]
    pub const fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed(_))
    }

    /// Changes the windows (the driver learns the account's window only from the bind).
    /// Entries already in a window are kept even if it shrinks below them.
    pub fn set_windows(&mut self, submit_window: usize, deliver_window: usize) {
        self.config.submit_window = submit_window;
        self.config.deliver_window = deliver_window;
    }

    /// Accepts the bind surfaced by [`Event::BindRequest`].
    pub fn accept_bind(&mut self, now: Instant) {
        let Some((sequence, kind, version, tlvs)) = self.bind_sequence.take() else {
            return;
        };
        if self.state != State::Binding {
            return;
        }
        let mut resp = BindResp {
            system_id: Octets::from(self.config.system_id.clone()),
            ..BindResp::default()
        };
        // 3.3 peers know no TLVs; tell 3.4+ peers which version we speak.
        if tlvs {
            resp.tlvs.set(tags::SC_INTERFACE_VERSION, vec![version]);
        }
        self.answer(CommandStatus::EsmeRok, sequence, kind.response(resp));
        self.interface_version = version;
        self.state = State::Bound(kind);
        self.last_received = now;
    }

    /// Refuses the bind surfaced by [`Event::BindRequest`] with `status` (e.g.
    /// `ESME_RINVPASWD`) and closes. The driver delays this call to slow down guessing.
    pub fn reject_bind(&mut self, status: CommandStatus) {
        let Some((sequence, kind, _, _)) = self.bind_sequence.take() else {
            return;
        };
        let status = if status.is_ok() {
            CommandStatus::EsmeRbindfail
        } else {
            status
        };
        self.answer(status, sequence, kind.response(BindResp::default()));
        self.close(CloseReason::BindRejected(status));
    }

    /// Refuses the bind surfaced by [`Event::BindRequest`] with `status` but keeps the
    /// connection open (back to `Open`, so the ESME may bind again), as some centers do.
    /// [`Self::reject_bind`] is the closing variant.
    pub fn refuse_bind(&mut self, status: CommandStatus) {
        let Some((sequence, kind, _, _)) = self.bind_sequence.take() else {
            return;
        };
        if self.state != State::Binding {
            return;
        }
        let status = if status.is_ok() {
            CommandStatus::EsmeRbindfail
        } else {
            status
        };
        self.answer(status, sequence, kind.response(BindResp::default()));
        self.state = State::Open;
    }

    /// Answers the submit with sequence `sequence`: `Ok(message id)` once the message is
    /// durable, `Err(status)` when it was refused. Unknown sequences are ignored (already
    /// answered, or the session closed).
    pub fn respond_submit(&mut self, sequence: u32, result: Result<String, CommandStatus>) {
        if let Some(c) = self.take_submit_response(sequence, result) {
            self.transmit.push_back(c);
        }
    }

    /// Like [`Self::respond_submit`], but the response is handed to the driver instead of
    /// the transmit queue, for a driver that writes it later (simulated latency) or after
    /// something else (a receipt sent before its submit's response). The submit counts as
    /// answered at once. `None` for an unknown sequence or a closed session.
    pub fn take_submit_response(
        &mut self,
        sequence: u32,
        result: Result<String, CommandStatus>,
    ) -> Option<Command> {
        let kind = self.submits.remove(&sequence)?;
        if self.is_closed() {
            return None;
        }
        let (status, id) = match result {
            Ok(id) => (CommandStatus::EsmeRok, Octets::from(id)),
            Err(s) if s.is_ok() => (CommandStatus::EsmeRsyserr, Octets::new()),
            Err(s) => (s, Octets::new()),
        };
        let pdu = match kind {
            SubmitKind::Sm => Pdu::SubmitSmResp(MessageIdResp::new(id)),
            SubmitKind::Data => Pdu::DataSmResp(MessageIdResp::new(id)),
            SubmitKind::Multi => Pdu::SubmitMultiResp(SubmitMultiResp {
                message_id: id,
                ..SubmitMultiResp::default()
            }),
        };
        Some(Command::new(status, sequence, pdu))
    }

    /// Queues a deliver_sm (receipt or MO) tracked under `tag`.
    ///
    /// # Errors
    /// [`DeliverRefused`] (tag and PDU handed back) when not bound as a receiver or the
    /// window is full.
    pub fn deliver(&mut self, now: Instant, tag: T, sm: Box<Sm>) -> Result<u32, DeliverRefused<T>> {
        if !matches!(self.state, State::Bound(k) if k.receives()) {
            return Err(DeliverRefused {
                tag,
                sm,
                window_full: false,
            });
        }
        if self.window.len() >= self.config.deliver_window {
            return Err(DeliverRefused {
                tag,
                sm,
                window_full: true,
            });
        }
        let sequence = self.allocate_sequence();
        self.window.insert(
            sequence,
            Pending { tag },
            now + self.config.response_timeout,
        );
        self.transmit
            .push_back(Command::request(sequence, Pdu::DeliverSm(*sm)));
        Ok(sequence)
    }

    /// Starts a graceful unbind (shutdown). Before a bind the session just closes.
    pub fn unbind(&mut self, now: Instant) {
        match self.state {
            State::Bound(kind) => {
                let sequence = self.allocate_sequence();
                self.transmit
                    .push_back(Command::request(sequence, Pdu::Unbind));
                self.unbind = Some(Control {
                    sequence,
                    deadline: now + self.config.response_timeout,
                });
                self.state = State::Unbinding(kind);
            }
            State::Open | State::Binding => self.close(CloseReason::Unbound),
            State::Unbinding(_) | State::Closed(_) => {}
        }
    }

    /// The connection is gone.
    pub fn handle_disconnect(&mut self) {
        self.close(CloseReason::Disconnected);
    }

    /// What the ESME sent could not be decoded: answer as the error says; a framing error
    /// closes the session after the nack.
    pub fn handle_decode_error(&mut self, now: Instant, error: &DecodeError) {
        if self.is_closed() {
            return;
        }
        self.last_received = now;
        if let Some(answer) = error.response() {
            self.transmit.push_back(answer);
        }
        if matches!(error, DecodeError::Frame(_)) {
            self.close(CloseReason::Protocol);
        }
    }

    /// A decoded PDU from the ESME.
    pub fn handle_pdu(&mut self, now: Instant, command: Command) {
        if self.is_closed() {
            return;
        }
        self.last_received = now;
        let Command {
            sequence,
            pdu,
            status,
            ..
        } = command;
        match pdu {
            Pdu::BindTransmitter(b) => self.on_bind(sequence, BindKind::Transmitter, b),
            Pdu::BindReceiver(b) => self.on_bind(sequence, BindKind::Receiver, b),
            Pdu::BindTransceiver(b) => self.on_bind(sequence, BindKind::Transceiver, b),
            Pdu::EnquireLink => self.answer(CommandStatus::EsmeRok, sequence, Pdu::EnquireLinkResp),
            Pdu::EnquireLinkResp => {
                if self.enquire_link.is_some_and(|c| c.sequence == sequence) {
                    self.enquire_link = None;
                }
            }
            Pdu::Unbind => {
                if matches!(self.state, State::Bound(_) | State::Unbinding(_)) {
                    self.answer(CommandStatus::EsmeRok, sequence, Pdu::UnbindResp);
                    self.close(CloseReason::PeerUnbind);
                } else {
                    self.answer(CommandStatus::EsmeRinvbndsts, sequence, Pdu::UnbindResp);
                }
            }
            Pdu::UnbindResp => {
                if self.unbind.is_some_and(|c| c.sequence == sequence) {
                    self.close(CloseReason::Unbound);
                }
            }
            Pdu::SubmitSm(sm) => self.on_submit(sequence, SubmitKind::Sm, Submit::Sm(Box::new(sm))),
            Pdu::SubmitMulti(m) => {
                self.on_submit(sequence, SubmitKind::Multi, Submit::Multi(Box::new(m)));
            }
            Pdu::DataSm(d) => self.on_submit(sequence, SubmitKind::Data, Submit::Data(Box::new(d))),
            Pdu::DeliverSmResp(_) | Pdu::DataSmResp(_) => self.on_deliver_resp(sequence, status),
            Pdu::GenericNack => {
                if self.window.contains(sequence) {
                    let status = if status.is_ok() {
                        CommandStatus::EsmeRsyserr
                    } else {
                        status
                    };
                    self.on_deliver_resp(sequence, status);
                } else if self.enquire_link.is_some_and(|c| c.sequence == sequence) {
                    self.enquire_link = None;
                } else if self.unbind.is_some_and(|c| c.sequence == sequence) {
                    self.close(CloseReason::Unbound);
                }
            }
            Pdu::QuerySm(_) => self.refuse_bound(
                sequence,
                CommandStatus::EsmeRqueryfail,
                Pdu::QuerySmResp(QuerySmResp::default()),
            ),
            Pdu::CancelSm(_) => {
                self.refuse_bound(sequence, CommandStatus::EsmeRcancelfail, Pdu::CancelSmResp)
            }
            Pdu::ReplaceSm(_) => self.refuse_bound(
                sequence,
                CommandStatus::EsmeRreplacefail,
                Pdu::ReplaceSmResp,
            ),
            other => {
                let id = other.command_id();
                if !id.is_response() {
                    // deliver_sm, outbind, alert_notification: not an ESME's to send.
                    let pdu = Pdu::empty_response_for(id).unwrap_or(Pdu::GenericNack);
                    self.answer(CommandStatus::EsmeRinvbndsts, sequence, pdu);
                }
                // Responses to requests we never sent are ignored.
            }
        }
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::Closed(_) => return,
            State::Open if self.bind_deadline <= now => {
                self.close(CloseReason::BindTimeout);
                return;
            }
            _ => {}
        }
        if self.unbind.is_some_and(|c| c.deadline <= now) {
            self.close(CloseReason::Unbound);
            return;
        }
        if self.enquire_link.is_some_and(|c| c.deadline <= now) {
            self.close(CloseReason::EnquireLinkTimeout);
            return;
        }
        while let Some(p) = self.window.pop_expired(now) {
            self.events.push_back(Event::DeliverTimeout { tag: p.tag });
        }
        if matches!(self.state, State::Bound(_))
            && self.enquire_link.is_none()
            && self.last_received + self.config.enquire_link_interval <= now
        {
            let sequence = self.allocate_sequence();
            self.transmit
                .push_back(Command::request(sequence, Pdu::EnquireLink));
            self.enquire_link = Some(Control {
                sequence,
                deadline: now + self.config.response_timeout,
            });
        }
    }

    /// When [`Self::handle_timeout`] must next be called; `None` when closed.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        if self.is_closed() {
            return None;
        }
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        if self.state == State::Open {
            consider(self.bind_deadline);
        }
        if let Some(c) = self.unbind {
            consider(c.deadline);
        }
        if let Some(deadline) = self.window.next_deadline() {
            consider(deadline);
        }
        match (matches!(self.state, State::Bound(_)), self.enquire_link) {
            (_, Some(c)) => consider(c.deadline),
            (true, None) => consider(self.last_received + self.config.enquire_link_interval),
            (false, None) => {}
        }
        next
    }

    /// The next PDU to write. Call until `None` after every input.
    pub fn poll_transmit(&mut self) -> Option<Command> {
        self.transmit.pop_front()
    }

    /// The next event. Call until `None` after every input.
    pub fn poll_event(&mut self) -> Option<Event<T>> {
        self.events.pop_front()
    }

    fn on_bind(&mut self, sequence: u32, kind: BindKind, bind: crate::smpp::Bind) {
        if self.state != State::Open {
            let status = if matches!(self.state, State::Bound(_) | State::Binding) {
                CommandStatus::EsmeRalybnd
            } else {
                CommandStatus::EsmeRinvbndsts
            };
            self.answer(status, sequence, kind.response(BindResp::default()));
            return;
        }
        let version = if bind.interface_version >= INTERFACE_VERSION_50 {
            INTERFACE_VERSION_50
        } else {
            INTERFACE_VERSION_34
        };
        self.state = State::Binding;
        self.bind_sequence = Some((
            sequence,
            kind,
            version,
            bind.interface_version >= INTERFACE_VERSION_34,
        ));
        self.events.push_back(Event::BindRequest {
            kind,
            system_id: bind.system_id,
            password: bind.password,
            interface_version: version,
        });
    }

    fn on_submit(&mut self, sequence: u32, kind: SubmitKind, submit: Submit) {
        let resp = match kind {
            SubmitKind::Sm => Pdu::SubmitSmResp(MessageIdResp::default()),
            SubmitKind::Data => Pdu::DataSmResp(MessageIdResp::default()),
            SubmitKind::Multi => Pdu::SubmitMultiResp(SubmitMultiResp::default()),
        };
        if !matches!(self.state, State::Bound(k) if k.sends()) {
            self.answer(CommandStatus::EsmeRinvbndsts, sequence, resp);
            return;
        }
        if self.submits.contains_key(&sequence) || self.submits.len() >= self.config.submit_window {
            // Over the window (or a sequence number reused while its first use waits).
            self.answer(CommandStatus::EsmeRthrottled, sequence, resp);
            return;
        }
        self.submits.insert(sequence, kind);
        self.events.push_back(Event::Submit { sequence, submit });
    }

    fn on_deliver_resp(&mut self, sequence: u32, status: CommandStatus) {
        if let Some(p) = self.window.remove(sequence) {
            self.events
                .push_back(Event::DeliverResponse { tag: p.tag, status });
        }
    }

    /// Answers a request we do not serve: bound → `bound_status`, else `ESME_RINVBNDSTS`.
    fn refuse_bound(&mut self, sequence: u32, bound_status: CommandStatus, pdu: Pdu) {
        let status = if matches!(self.state, State::Bound(_)) {
            bound_status
        } else {
            CommandStatus::EsmeRinvbndsts
        };
        self.answer(status, sequence, pdu);
    }

    fn allocate_sequence(&mut self) -> u32 {
        self.window.allocate_sequence()
    }

    fn answer(&mut self, status: CommandStatus, sequence: u32, pdu: Pdu) {
        self.transmit.push_back(Command::new(status, sequence, pdu));
        if status == CommandStatus::EsmeRinvbndsts && matches!(self.state, State::Open) {
            self.unbound_requests = self.unbound_requests.saturating_add(1);
            if self
                .unbound_limit
                .is_some_and(|max| self.unbound_requests > max)
            {
                self.close(CloseReason::UnboundFlood);
            }
        }
    }

    fn close(&mut self, reason: CloseReason) {
        if self.is_closed() {
            return;
        }
        for p in self.window.drain_by(|sequence, _| sequence) {
            self.events.push_back(Event::DeliverAborted { tag: p.tag });
        }
        self.submits.clear();
        self.bind_sequence = None;
        self.enquire_link = None;
        self.unbind = None;
        self.state = State::Closed(reason.clone());
        self.events.push_back(Event::Closed(reason));
    }
}

#[cfg(test)]
mod tests;

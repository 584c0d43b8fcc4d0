//! The SMPP client (ESME) session as a sans-IO state machine.
//!
//! No sockets and no clock: the bind driver feeds decoded PDUs in with
//! [`Session::handle_pdu`], fires timers with [`Session::handle_timeout`], offers messages with
//! [`Session::submit`], and drains [`Session::poll_transmit`] (PDUs to write),
//! [`Session::poll_event`] (what happened) and [`Session::poll_timeout`] (when to call
//! `handle_timeout` next) — the quinn-proto shape. Every input takes `now`, so the tests run
//! two peers in memory on a manual clock.
//!
//! Job and invariants:
//! - Bind state: `Binding` → `Bound` → (`Unbinding`) → `Closed`. Only a bound transmitter or
//!   transceiver submits ([`can_submit`]); only a bound receiver or transceiver takes
//!   deliver_sm ([`can_receive`]); otherwise the center gets `ESME_RINVBNDSTS`.
//! - Sequence numbers run 1..=0x7FFF_FFFF and wrap, skipping numbers still in the window.
//! - The window maps sequence → (caller's tag, sent_at, deadline) for outstanding submits and
//!   never holds more than `window` entries. Each entry leaves exactly once: as
//!   [`Event::Response`], [`Event::ResponseTimeout`] or [`Event::Aborted`] (when the session
//!   closes with it still open) — so the caller can account for every part.
//! - Keep-alive: after `enquire_link_interval` without any PDU from the center an
//!   enquire_link goes out; no answer within `response_timeout` closes the session.
//! - Requests from the center are answered in arrival order: deliver_sm / data_sm with their
//!   response (ROK), enquire_link with enquire_link_resp, unbind with unbind_resp, unknown
//!   ids and undecodable requests with what the codec's error says (generic_nack …).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::smpp::{Bind, Command, CommandStatus, DecodeError, MessageIdResp, Octets, Pdu, Sm};

use crate::window::Window;

/// Which bind PDU the session sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BindKind {
    /// bind_transmitter: submits only.
    Transmitter,
    /// bind_receiver: receives deliver_sm only.
    Receiver,
    /// bind_transceiver: both on one connection.
    Transceiver,
}

impl BindKind {
    /// May this kind of bind submit?
    #[must_use]
    pub const fn sends(self) -> bool {
        matches!(self, Self::Transmitter | Self::Transceiver)
    }

    /// May this kind of bind receive deliver_sm?
    #[must_use]
    pub const fn receives(self) -> bool {
        matches!(self, Self::Receiver | Self::Transceiver)
    }

    fn pdu(self, bind: Bind) -> Pdu {
        match self {
            Self::Transmitter => Pdu::BindTransmitter(bind),
            Self::Receiver => Pdu::BindReceiver(bind),
            Self::Transceiver => Pdu::BindTransceiver(bind),
        }
    }
}

/// Session settings (from the channel's config). `Debug` redacts the password.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// Bind PDU to send.
    pub bind_kind: BindKind,
    /// system_id of our account at the center.
    pub system_id: String,
    /// Password of our account.
    pub password: String,
    /// system_type ("" for most centers).
    pub system_type: String,
    /// 0x34 (SMPP 3.4) or 0x50 (5.0).
    pub interface_version: u8,
    /// Outstanding submits allowed at once.
    pub window: usize,
    /// How long a request may wait for its response (bind, submit, enquire_link, unbind).
    pub response_timeout: Duration,
    /// Silence from the center after which we send enquire_link.
    pub enquire_link_interval: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            bind_kind: BindKind::Transceiver,
            system_id: String::new(),
            password: String::new(),
            system_type: String::new(),
            interface_version: 0x34,
            window: 10,
            response_timeout: Duration::from_secs(10),
            enquire_link_interval: Duration::from_secs(30),
        }
    }
}

/// Where the session is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Bind request sent, waiting for its response.
    Binding,
    /// Bound: traffic flows.
    Bound,
    /// We sent unbind; responses to earlier submits may still arrive.
    Unbinding,
    /// Over; the driver closes the socket.
    Closed(CloseReason),
}

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// Our unbind was answered (or timed out).
    Unbound,
    /// The center sent unbind.
    PeerUnbind,
    /// The center refused the bind with this status.
    BindRejected(CommandStatus),
    /// No bind response in time.
    BindTimeout,
    /// No enquire_link response in time: the link is dead.
    EnquireLinkTimeout,
    /// The byte stream cannot be trusted any more (bad command_length).
    Protocol,
    /// The driver lost the connection.
    Disconnected,
}

/// Can a session in `state` with this `kind` submit? (`false` → do not send submit_sm.)
#[must_use]
pub const fn can_submit(state: &State, kind: BindKind) -> bool {
    matches!(state, State::Bound) && kind.sends()
}

/// Can a session in `state` with this `kind` take a deliver_sm? (`false` → the center gets
/// `ESME_RINVBNDSTS`.) Deliveries are still taken while unbinding: the center may have sent
/// them before it saw our unbind.
#[must_use]
pub const fn can_receive(state: &State, kind: BindKind) -> bool {
    matches!(state, State::Bound | State::Unbinding) && kind.receives()
}

/// What the session reports to its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<T> {
    /// The bind succeeded; `system_id` is the center's.
    Bound {
        /// The center's system_id from the bind response.
        system_id: Octets,
    },
    /// A submit got its response (any status; the caller classifies it).
    Response {
        /// The caller's tag given to [`Session::submit`].
        tag: T,
        /// command_status of the response (generic_nack's status if the center nacked).
        status: CommandStatus,
        /// The center's message id (empty on error).
        message_id: Octets,
        /// When the submit was written.
        sent_at: Instant,
    },
    /// No response within `response_timeout`; the submit's fate is unknown.
    ResponseTimeout {
        /// The caller's tag.
        tag: T,
        /// When the submit was written.
        sent_at: Instant,
    },
    /// The session closed with this submit still unanswered.
    Aborted {
        /// The caller's tag.
        tag: T,
        /// When the submit was written.
        sent_at: Instant,
    },
    /// A deliver_sm (or data_sm, converted) from the center, NOT yet answered: the caller
    /// answers with [`Session::answer_deliver`] once the receipt or reply is safe (durable),
    /// so a crash before that leaves the center to resend it instead of losing it.
    Deliver {
        /// Sequence number to answer.
        sequence: u32,
        /// `true` when it came as data_sm (answered with data_sm_resp).
        data_sm: bool,
        /// The message.
        sm: Box<Sm>,
    },
    /// The session is over; no more events follow.
    Closed(CloseReason),
}

/// Why [`Session::submit`] refused a message; the message comes back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitRefused<T> {
    /// The caller's tag, handed back.
    pub tag: T,
    /// The PDU body, handed back.
    pub sm: Box<Sm>,
    /// Why.
    pub reason: RefuseReason,
}

/// Why a submit was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefuseReason {
    /// Not bound, or bound as receiver only.
    NotBound,
    /// The window is full.
    WindowFull,
}

#[derive(Debug, Clone)]
struct Pending<T> {
    tag: T,
    sent_at: Instant,
}

/// An outstanding control request (bind, enquire_link, unbind).
#[derive(Debug, Clone, Copy)]
struct Control {
    sequence: u32,
    deadline: Instant,
}

/// The ESME side of one SMPP connection. `T` tags each submit (the worker uses it for the
/// message id and part).
#[derive(Debug)]
pub struct Session<T> {
    config: SessionConfig,
    state: State,
    /// Outstanding requests, their deadlines and the sequence numbers.
    window: Window<Pending<T>>,
    bind: Option<Control>,
    enquire_link: Option<Control>,
    unbind: Option<Control>,
    /// Last time anything arrived from the center; the enquire_link timer counts from it.
    last_received: Instant,
    transmit: VecDeque<Command>,
    events: VecDeque<Event<T>>,
}

impl<T> Session<T> {
    /// A session on a freshly connected socket: the bind request is queued at once.
    #[must_use]
    pub fn new(config: SessionConfig, now: Instant) -> Self {
        let mut session = Self {
            state: State::Binding,
            window: Window::with_capacity(config.window),
            bind: None,
            enquire_link: None,
            unbind: None,
            last_received: now,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            config,
        };
        let sequence = session.allocate_sequence();
        let bind = Bind {
            system_id: Octets::from(session.config.system_id.clone()),
            password: Octets::from(session.config.password.clone()),
            system_type: Octets::from(session.config.system_type.clone()),
            interface_version: session.config.interface_version,
            ..Bind::default()
        };
        session.transmit.push_back(Command::request(
            sequence,
            session.config.bind_kind.pdu(bind),
        ));
        session.bind = Some(Control {
            sequence,
            deadline: now + session.config.response_timeout,
        });
        session
    }

    /// The current state.
    #[must_use]
    pub fn state(&self) -> &State {
        &self.state
    }

    /// The configuration the session runs with.
    #[must_use]
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// Outstanding submits.
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.window.len()
    }

    /// True when a submit would be accepted now.
    #[must_use]
    pub fn can_submit(&self) -> bool {
        can_submit(&self.state, self.config.bind_kind) && self.window.len() < self.config.window
    }

    /// True once the session has closed.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed(_))
    }

    /// Queues a submit_sm for `sm` and tracks it in the window under `tag`.
    ///
    /// # Errors
    /// [`SubmitRefused`] (with the tag and PDU handed back) when not bound as a sender or
    /// the window is full.
    pub fn submit(&mut self, now: Instant, tag: T, sm: Box<Sm>) -> Result<u32, SubmitRefused<T>> {
        if !can_submit(&self.state, self.config.bind_kind) {
            return Err(SubmitRefused {
                tag,
                sm,
                reason: RefuseReason::NotBound,
            });
        }
        if self.window.len() >= self.config.window {
            return Err(SubmitRefused {
                tag,
                sm,
                reason: RefuseReason::WindowFull,
            });
        }
        let sequence = self.allocate_sequence();
        let deadline = now + self.config.response_timeout;
        self.window
            .insert(sequence, Pending { tag, sent_at: now }, deadline);
        self.transmit
            .push_back(Command::request(sequence, Pdu::SubmitSm(*sm)));
        Ok(sequence)
    }

    /// Starts a graceful unbind. Submits already in the window may still be answered.
    /// Does nothing unless bound.
    pub fn unbind(&mut self, now: Instant) {
        if self.state != State::Bound {
            return;
        }
        let sequence = self.allocate_sequence();
        self.transmit
            .push_back(Command::request(sequence, Pdu::Unbind));
        self.unbind = Some(Control {
            sequence,
            deadline: now + self.config.response_timeout,
        });
        self.state = State::Unbinding;
    }

    /// The connection is gone (EOF, I/O error): close, aborting what is in the window.
    pub fn handle_disconnect(&mut self) {
        self.close(CloseReason::Disconnected);
    }

    /// The codec could not decode what the center sent.
    ///
    /// Answers as the error says (generic_nack for unknown ids, the command's own response
    /// for malformed bodies). A framing error (bad command_length) means the stream cannot
    /// be resynchronised, so the session closes after queueing the nack.
    pub fn handle_decode_error(&mut self, now: Instant, error: &DecodeError) {
        self.last_received = now;
        if let Some(answer) = error.response() {
            self.transmit.push_back(answer);
        }
        if matches!(error, DecodeError::Frame(_)) {
            self.close(CloseReason::Protocol);
        }
    }

    /// A decoded PDU from the center.
    pub fn handle_pdu(&mut self, now: Instant, command: Command) {
        if self.is_closed() {
            return;
        }
        self.last_received = now;
        let Command {
            status,
            sequence,
            pdu,
        } = command;
        match pdu {
            Pdu::BindTransmitterResp(resp)
            | Pdu::BindReceiverResp(resp)
            | Pdu::BindTransceiverResp(resp) => self.on_bind_resp(sequence, status, resp.system_id),
            Pdu::SubmitSmResp(resp) => self.on_submit_resp(sequence, status, resp.message_id),
            Pdu::GenericNack => self.on_generic_nack(sequence, status),
            Pdu::EnquireLinkResp => {
                if self.enquire_link.is_some_and(|c| c.sequence == sequence) {
                    self.enquire_link = None;
                }
            }
            Pdu::UnbindResp => {
                if self.unbind.is_some_and(|c| c.sequence == sequence) {
                    self.close(CloseReason::Unbound);
                }
            }
            Pdu::EnquireLink => self.answer(CommandStatus::EsmeRok, sequence, Pdu::EnquireLinkResp),
            Pdu::Unbind => {
                self.answer(CommandStatus::EsmeRok, sequence, Pdu::UnbindResp);
                self.close(CloseReason::PeerUnbind);
            }
            Pdu::DeliverSm(sm) => self.on_deliver(sequence, sm, false),
            Pdu::DataSm(data) => {
                let sm = Sm {
                    service_type: data.service_type,
                    source: data.source,
                    dest: data.dest,
                    esm_class: data.esm_class,
                    registered_delivery: data.registered_delivery,
                    data_coding: data.data_coding,
                    tlvs: data.tlvs,
                    ..Sm::default()
                };
                self.on_deliver(sequence, sm, true);
            }
            // An SMSC sends no response to these; nothing to do for an ESME.
            Pdu::Outbind(_) | Pdu::AlertNotification(_) => {}
            other => {
                let id = other.command_id();
                if !id.is_response() {
                    // A request an ESME does not serve (submit_sm from the center, a bind …).
                    let pdu = Pdu::empty_response_for(id).unwrap_or(Pdu::GenericNack);
                    self.answer(CommandStatus::EsmeRinvbndsts, sequence, pdu);
                }
                // Responses to requests we never send are ignored.
            }
        }
    }

    /// Fires every timer that is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.is_closed() {
            return;
        }
        if self.bind.is_some_and(|c| c.deadline <= now) && self.state == State::Binding {
            self.close(CloseReason::BindTimeout);
            return;
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
            self.events.push_back(Event::ResponseTimeout {
                tag: p.tag,
                sent_at: p.sent_at,
            });
        }
        if self.state == State::Bound
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

    /// The next instant at which [`Self::handle_timeout`] must be called; `None` when closed.
    /// Call again after every `handle_*`, `submit` and `unbind`.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        if self.is_closed() {
            return None;
        }
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        if self.state == State::Binding
            && let Some(c) = self.bind
        {
            consider(c.deadline);
        }
        if let Some(c) = self.unbind {
            consider(c.deadline);
        }
        if let Some(deadline) = self.window.next_deadline() {
            consider(deadline);
        }
        match (self.state == State::Bound, self.enquire_link) {
            (_, Some(c)) => consider(c.deadline),
            (true, None) => consider(self.last_received + self.config.enquire_link_interval),
            (false, None) => {}
        }
        next
    }

    /// The next PDU to write, in order. Call until `None` after every input.
    pub fn poll_transmit(&mut self) -> Option<Command> {
        self.transmit.pop_front()
    }

    /// The next event. Call until `None` after every input.
    pub fn poll_event(&mut self) -> Option<Event<T>> {
        self.events.pop_front()
    }

    fn allocate_sequence(&mut self) -> u32 {
        self.window.allocate_sequence()
    }

    fn answer(&mut self, status: CommandStatus, sequence: u32, pdu: Pdu) {
        self.transmit.push_back(Command::new(status, sequence, pdu));
    }

    fn on_bind_resp(&mut self, sequence: u32, status: CommandStatus, system_id: Octets) {
        if self.state != State::Binding || self.bind.is_none_or(|c| c.sequence != sequence) {
            return;
        }
        self.bind = None;
        if status.is_ok() {
            self.state = State::Bound;
            self.events.push_back(Event::Bound { system_id });
        } else {
            self.close(CloseReason::BindRejected(status));
        }
    }

    fn on_submit_resp(&mut self, sequence: u32, status: CommandStatus, message_id: Octets) {
        if let Some(p) = self.window.remove(sequence) {
            self.events.push_back(Event::Response {
                tag: p.tag,
                status,
                message_id,
                sent_at: p.sent_at,
            });
        }
    }

    fn on_generic_nack(&mut self, sequence: u32, status: CommandStatus) {
        // A center nacks a request it could not parse; route the status to whatever
        // request carried that sequence number.
        if self.window.contains(sequence) {
            // A nack is never an acceptance: a (broken) center that nacks with ESME_ROK
            // must not make the submit look accepted with an empty message id.
            let status = if status.is_ok() {
                CommandStatus::EsmeRsyserr
            } else {
                status
            };
            self.on_submit_resp(sequence, status, Octets::new());
        } else if self.bind.is_some_and(|c| c.sequence == sequence) {
            let status = if status.is_ok() {
                CommandStatus::EsmeRbindfail
            } else {
                status
            };
            self.on_bind_resp(sequence, status, Octets::new());
        } else if self.enquire_link.is_some_and(|c| c.sequence == sequence) {
            // It answered, so the link is alive even if it dislikes enquire_link.
            self.enquire_link = None;
        } else if self.unbind.is_some_and(|c| c.sequence == sequence) {
            self.close(CloseReason::Unbound);
        }
    }

    fn on_deliver(&mut self, sequence: u32, sm: Sm, data_sm: bool) {
        let ok = can_receive(&self.state, self.config.bind_kind);
        let status = if ok {
            CommandStatus::EsmeRok
        } else {
            CommandStatus::EsmeRinvbndsts
        };
        if ok {
            self.events.push_back(Event::Deliver {
                sequence,
                data_sm,
                sm: Box::new(sm),
            });
        } else {
            self.answer_deliver(sequence, data_sm, status);
        }
    }

    /// Answers a deliver_sm / data_sm reported by [`Event::Deliver`]: `EsmeRok` once it is
    /// safe, `EsmeRxTAppn` (temporary) when it could not be kept, so the center retries.
    pub fn answer_deliver(&mut self, sequence: u32, data_sm: bool, status: CommandStatus) {
        if self.is_closed() {
            return;
        }
        let resp = MessageIdResp::default();
        let pdu = if data_sm {
            Pdu::DataSmResp(resp)
        } else {
            Pdu::DeliverSmResp(resp)
        };
        self.answer(status, sequence, pdu);
    }

    fn close(&mut self, reason: CloseReason) {
        if self.is_closed() {
            return;
        }
        for p in self.window.drain_by(|sequence, p| (p.sent_at, sequence)) {
            self.events.push_back(Event::Aborted {
                tag: p.tag,
                sent_at: p.sent_at,
            });
        }
        self.bind = None;
        self.enquire_link = None;
        self.unbind = None;
        self.state = State::Closed(reason.clone());
        self.events.push_back(Event::Closed(reason));
    }
}

impl core::fmt::Debug for SessionConfig {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SessionConfig")
            .field("bind_kind", &self.bind_kind)
            .field("system_id", &self.system_id)
            .field("password", &"<redacted>")
            .field("system_type", &self.system_type)
            .field("interface_version", &self.interface_version)
            .field("window", &self.window)
            .field("response_timeout", &self.response_timeout)
            .field("enquire_link_interval", &self.enquire_link_interval)
            .finish()
    }
}

#[cfg(test)]
mod tests;

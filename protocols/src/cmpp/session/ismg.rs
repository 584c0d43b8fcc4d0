//! The ISMG (server) side of one CMPP 2.0 / 3.0 connection from an SP, as a sans-IO state
//! machine: the mirror of [`SpSession`](super::SpSession), with the same driver API.
//!
//! No sockets and no clock: the driver feeds bytes in with [`IsmgSession::handle_bytes`] (or
//! decoded frames with [`IsmgSession::handle_pdu`] / [`IsmgSession::handle_decode_error`] /
//! [`IsmgSession::handle_frame_error`]), fires timers with [`IsmgSession::handle_timeout`],
//! answers what it was asked ([`IsmgSession::answer_connect`],
//! [`IsmgSession::respond_submit`]), offers DELIVERs with [`IsmgSession::deliver`], and
//! drains [`IsmgSession::poll_transmit`], [`IsmgSession::poll_event`] and
//! [`IsmgSession::poll_timeout`]. Every input takes `now`, so tests run on a manual clock.
//!
//! Job and invariants:
//! - State: `AwaitingConnect` → `Authenticating` (CONNECT surfaced as
//!   [`IsmgEvent::ConnectRequest`], waiting for [`IsmgSession::answer_connect`]) →
//!   `Connected` → (`Terminating`) → `Closed`. No CONNECT within `connect_timeout` closes
//!   ([`IsmgCloseReason::ConnectTimeout`]); a refused CONNECT closes after its CONNECT_RESP.
//! - Version: the CONNECT's Version byte is negotiated with [`negotiate`] against
//!   `highest_version`; a byte that names no CMPP 2.x/3.x version is refused by the session
//!   itself (Status 1 or 4). CONNECT_RESP and everything after it encode on the negotiated
//!   version ([`IsmgSession::version`]); until then frames decode as 3.0 (CONNECT is the
//!   same in both).
//! - CONNECT_RESP carries AuthenticatorISMG = MD5(Status + AuthenticatorSource + secret)
//!   ([`auth::authenticator_ismg`]) with the secret the caller passes.
//! - Before login only CONNECT is taken: any other PDU (or an undecodable frame other than a
//!   malformed CONNECT, which gets Status 1) closes with [`IsmgCloseReason::NotLoggedIn`].
//! - Every SUBMIT is answered exactly once: surfaced as [`IsmgEvent::Submit`] and answered
//!   by the caller with [`IsmgSession::respond_submit`] in any order, or at once with
//!   Result 8 when `submit_window` SUBMITs already wait or its Sequence_Id is already
//!   waiting. A SUBMIT that does not decode is answered as [`DecodeError::response`] says.
//! - DELIVERs we send: Sequence_Ids run 1..=0x7FFF_FFFF and wrap, skipping ids still in the
//!   window; the window never holds more than `deliver_window` entries, and each entry
//!   leaves exactly once, as [`IsmgEvent::DeliverResponse`], [`IsmgEvent::DeliverTimeout`]
//!   or [`IsmgEvent::DeliverAborted`] (session closed with it open). Only DELIVERs that
//!   encode on the link's version are queued.
//! - Keep-alive: after `active_test_interval` without any PDU from the SP an ACTIVE_TEST
//!   goes out; `active_test_misses` unanswered in a row (each waiting `response_timeout`)
//!   close the session. ACTIVE_TEST from the SP is answered in every state but before login
//!   and closed.
//! - TERMINATE from the SP is answered and closes; [`IsmgSession::terminate`] stops new
//!   DELIVERs, sends TERMINATE once the DELIVER window is empty, and closes on
//!   TERMINATE_RESP or `response_timeout` after it.
//! - After close, [`IsmgSession::poll_transmit`] yields only answers already owed; queued
//!   requests (DELIVERs reported aborted) are dropped.
//! - Never panics on input: every PDU in every state leads to an answer, a close, or is
//!   ignored.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::Transmit;
use crate::cmpp::auth;
use crate::cmpp::cancel::CancelResp;
use crate::cmpp::codes::{CommandId, ConnectStatus, ResultCode};
use crate::cmpp::connect::{Connect, ConnectResp, negotiate};
use crate::cmpp::deliver::{Deliver, DeliverResp};
use crate::cmpp::error::{DecodeError, EncodeError, FrameError};
use crate::cmpp::header::DEFAULT_MAX_LENGTH;
use crate::cmpp::link::ActiveTestResp;
use crate::cmpp::msg_id::MsgId;
use crate::cmpp::octets::FixedStr;
use crate::cmpp::pdu::{Decoded, Pdu, decode_frame};
use crate::cmpp::query::QueryResp;
use crate::cmpp::submit::{Submit, SubmitResp};
use crate::cmpp::tolerated::Tolerated;
use crate::cmpp::version::Version;

use crate::window::Window;

/// Session settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsmgConfig {
    /// The highest version we run; a CONNECT asking for more gets this one.
    pub highest_version: Version,
    /// Longest wait for CONNECT after the connection opens.
    pub connect_timeout: Duration,
    /// SUBMITs waiting for [`IsmgSession::respond_submit`] at once (more: Result 8 at once).
    pub submit_window: usize,
    /// DELIVERs we may have outstanding at once.
    pub deliver_window: usize,
    /// How long a DELIVER / ACTIVE_TEST / TERMINATE may wait for its response (T).
    pub response_timeout: Duration,
    /// Silence from the SP after which we send ACTIVE_TEST.
    pub active_test_interval: Duration,
    /// Unanswered ACTIVE_TESTs in a row that close the session (C); 0 is read as 1.
    pub active_test_misses: u32,
    /// Largest Total_Length accepted by [`IsmgSession::handle_bytes`].
    pub max_length: u32,
}

impl Default for IsmgConfig {
    /// The specification's link parameters (ACTIVE_TEST after 3 minutes, T = 60 s, C = 3),
    /// CMPP 3.0, windows of 16.
    fn default() -> Self {
        Self {
            highest_version: Version::V30,
            connect_timeout: Duration::from_secs(60),
            submit_window: 16,
            deliver_window: 16,
            response_timeout: Duration::from_secs(60),
            active_test_interval: Duration::from_secs(180),
            active_test_misses: 3,
            max_length: DEFAULT_MAX_LENGTH,
        }
    }
}

/// Where the session is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IsmgState {
    /// Connected socket, no CONNECT yet.
    AwaitingConnect,
    /// CONNECT surfaced; waiting for [`IsmgSession::answer_connect`].
    Authenticating,
    /// Logged in: traffic flows.
    Connected,
    /// [`IsmgSession::terminate`] was called: no new DELIVERs; TERMINATE goes out once the
    /// DELIVER window is empty.
    Terminating,
    /// Over; the driver writes what [`IsmgSession::poll_transmit`] still yields and closes.
    Closed(IsmgCloseReason),
}

/// Why an ISMG session ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IsmgCloseReason {
    /// Our TERMINATE was answered (or timed out).
    #[error("terminated")]
    Terminated,
    /// The SP sent TERMINATE.
    #[error("the SP terminated the link")]
    PeerTerminate,
    /// The CONNECT was refused with this Status (by the caller, or by the session for a
    /// version it cannot run or a CONNECT that did not decode).
    #[error("CONNECT refused: {0}")]
    ConnectRefused(ConnectStatus),
    /// No CONNECT within `connect_timeout`.
    #[error("no CONNECT within the connect timeout")]
    ConnectTimeout,
    /// Something other than CONNECT arrived before login.
    #[error("a PDU other than CONNECT before login")]
    NotLoggedIn,
    /// `active_test_misses` ACTIVE_TESTs in a row went unanswered.
    #[error("ACTIVE_TEST went unanswered")]
    ActiveTestTimeout,
    /// The byte stream cannot be trusted any more (Total_Length out of range).
    #[error("unframeable input (bad Total_Length)")]
    Protocol,
    /// The driver lost the connection.
    #[error("disconnected")]
    Disconnected,
}

/// A CONNECT to authenticate, as sent.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectRequest {
    /// Source_Addr: the SP id.
    pub source_addr: FixedStr<6>,
    /// The Version byte as sent.
    pub requested_version: u8,
    /// The version the link will run if accepted.
    pub version: Version,
    /// AuthenticatorSource as sent.
    pub authenticator_source: [u8; 16],
    /// Timestamp (`MMDDHHMMSS`) as sent.
    pub timestamp: u32,
}

impl ConnectRequest {
    /// Does AuthenticatorSource match `secret`? (constant time)
    #[must_use]
    pub fn verifies(&self, secret: &[u8]) -> bool {
        auth::verify_source(
            self.source_addr.as_bytes(),
            secret,
            self.timestamp,
            &self.authenticator_source,
        )
    }
}

/// Shows the authenticator as a length only: it is a hash of the secret.
impl fmt::Debug for ConnectRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectRequest")
            .field("source_addr", &self.source_addr)
            .field("requested_version", &self.requested_version)
            .field("version", &self.version)
            .field("authenticator_source", &"<16 bytes>")
            .field("timestamp", &self.timestamp)
            .finish()
    }
}

/// What the session reports to its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IsmgEvent<T> {
    /// A CONNECT to check; answer with [`IsmgSession::answer_connect`].
    ConnectRequest(ConnectRequest),
    /// The CONNECT was accepted; the link runs `version`.
    Connected {
        /// The negotiated version.
        version: Version,
    },
    /// A SUBMIT to answer with [`IsmgSession::respond_submit`]`(sequence, …)`.
    Submit {
        /// Sequence_Id to answer.
        sequence: u32,
        /// The message.
        submit: Box<Submit>,
    },
    /// A DELIVER we sent was answered.
    DeliverResponse {
        /// The caller's tag.
        tag: T,
        /// Msg_Id as echoed by the SP.
        msg_id: MsgId,
        /// DELIVER_RESP Result; 0 is accepted.
        result: ResultCode,
        /// When the DELIVER was queued.
        sent_at: Instant,
    },
    /// No DELIVER_RESP within `response_timeout`.
    DeliverTimeout {
        /// The caller's tag.
        tag: T,
        /// When the DELIVER was queued.
        sent_at: Instant,
    },
    /// The session closed with this DELIVER unanswered.
    DeliverAborted {
        /// The caller's tag.
        tag: T,
        /// When the DELIVER was queued.
        sent_at: Instant,
    },
    /// A PDU decoded with accepted deviations from the specification (for metrics).
    Tolerated {
        /// The PDU's command.
        command_id: CommandId,
        /// What was accepted.
        tolerated: Tolerated,
    },
    /// A frame that did not decode; answered as [`DecodeError::response`] says (if at all).
    Undecodable(DecodeError),
    /// The session is over; no more events follow.
    Closed(IsmgCloseReason),
}

/// Why [`IsmgSession::deliver`] refused; the tag and DELIVER come back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliverRefused<T> {
    /// The tag, handed back.
    pub tag: T,
    /// The DELIVER, handed back.
    pub deliver: Box<Deliver>,
    /// Why.
    pub reason: DeliverRefuseReason,
}

/// Why a DELIVER was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliverRefuseReason {
    /// Not connected (before login, terminating or closed).
    #[error("not connected")]
    NotConnected,
    /// The window is full: try again after a response.
    #[error("window full")]
    WindowFull,
    /// The DELIVER does not encode on the link's version.
    #[error(transparent)]
    Unencodable(EncodeError),
}

#[derive(Debug, Clone)]
struct Pending<T> {
    tag: T,
    sent_at: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Control {
    sequence: u32,
    deadline: Instant,
}

/// The ISMG side of one CMPP connection. `T` tags each DELIVER.
#[derive(Debug)]
pub struct IsmgSession<T> {
    config: IsmgConfig,
    state: IsmgState,
    /// The link's version: 3.0 for decoding until CONNECT, then the negotiated one.
    version: Version,
    connect_deadline: Instant,
    /// The CONNECT waiting for the caller: (Sequence_Id, AuthenticatorSource).
    connect: Option<(u32, [u8; 16])>,
    /// Outstanding requests, their deadlines and the sequence numbers.
    window: Window<Pending<T>>,
    /// SUBMIT Sequence_Ids waiting for [`Self::respond_submit`].
    submits: HashSet<u32>,
    active_test: Option<Control>,
    active_test_missed: u32,
    terminate: Option<Control>,
    last_received: Instant,
    transmit: VecDeque<Transmit>,
    events: VecDeque<IsmgEvent<T>>,
}

impl<T> IsmgSession<T> {
    /// A session on a freshly accepted connection.
    #[must_use]
    pub fn new(config: IsmgConfig, now: Instant) -> Self {
        Self {
            state: IsmgState::AwaitingConnect,
            version: Version::V30,
            connect_deadline: now + config.connect_timeout,
            connect: None,
            window: Window::with_capacity(config.deliver_window.min(4096)),
            submits: HashSet::new(),
            active_test: None,
            active_test_missed: 0,
            terminate: None,
            last_received: now,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            config,
        }
    }

    /// The current state.
    #[must_use]
    pub fn state(&self) -> &IsmgState {
        &self.state
    }

    /// The configuration the session runs with.
    #[must_use]
    pub fn config(&self) -> &IsmgConfig {
        &self.config
    }

    /// The version to encode and decode with: 3.0 until a CONNECT is negotiated.
    #[must_use]
    pub fn version(&self) -> Version {
        self.version
    }

    /// Outstanding DELIVERs.
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.window.len()
    }

    /// SUBMITs waiting for [`Self::respond_submit`].
    #[must_use]
    pub fn submits_waiting(&self) -> usize {
        self.submits.len()
    }

    /// True when [`Self::deliver`] would take a DELIVER now (encodability aside).
    #[must_use]
    pub fn can_deliver(&self) -> bool {
        self.state == IsmgState::Connected && self.window.len() < self.config.deliver_window
    }

    /// True once closed.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        matches!(self.state, IsmgState::Closed(_))
    }

    /// Changes the windows (the driver may learn the account's limits only from CONNECT).
    /// Entries already in a window stay even if it shrinks below them.
    pub fn set_windows(&mut self, submit_window: usize, deliver_window: usize) {
        self.config.submit_window = submit_window;
        self.config.deliver_window = deliver_window;
    }

    /// Answers the CONNECT surfaced by [`IsmgEvent::ConnectRequest`]: [`ConnectStatus::Ok`]
    /// logs the SP in, anything else refuses and closes. `secret` is hashed into
    /// AuthenticatorISMG (pass the account's secret, or empty when there is none). Does
    /// nothing when no CONNECT is waiting.
    pub fn answer_connect(&mut self, now: Instant, status: ConnectStatus, secret: &[u8]) {
        if self.state != IsmgState::Authenticating {
            return;
        }
        let Some((sequence, auth_source)) = self.connect.take() else {
            return;
        };
        // 2.0's Status is one byte: a wider refusal is sent as "other error".
        let status = match self.version {
            Version::V20 if status.raw() > 0xFF => ConnectStatus::OtherError,
            _ => status,
        };
        self.send_connect_resp(sequence, status, &auth_source, secret);
        if status == ConnectStatus::Ok {
            self.state = IsmgState::Connected;
            self.last_received = now;
            self.events.push_back(IsmgEvent::Connected {
                version: self.version,
            });
        } else {
            self.close(IsmgCloseReason::ConnectRefused(status));
        }
    }

    /// Answers the SUBMIT with Sequence_Id `sequence` (from [`IsmgEvent::Submit`]), in any
    /// order: `msg_id` is the id status reports will name, `result` the SUBMIT_RESP Result.
    /// A Result that does not fit 2.0's one byte is sent as 9. Unknown sequences (already
    /// answered, or the session closed) are ignored.
    pub fn respond_submit(&mut self, sequence: u32, msg_id: MsgId, result: ResultCode) {
        if !self.submits.remove(&sequence) || self.is_closed() {
            return;
        }
        let mut resp = SubmitResp { msg_id, result };
        if Pdu::SubmitResp(resp).encoded_len(self.version).is_err() {
            resp.result = ResultCode::FeeTerminalNotServed;
        }
        self.answer(sequence, Pdu::SubmitResp(resp));
    }

    /// Queues a DELIVER (status report or MO) tracked under `tag`; returns its Sequence_Id.
    ///
    /// # Errors
    /// [`DeliverRefused`] (tag and DELIVER handed back) when not connected, the window is
    /// full, or the DELIVER does not encode on the link's version.
    pub fn deliver(
        &mut self,
        now: Instant,
        tag: T,
        deliver: Box<Deliver>,
    ) -> Result<u32, DeliverRefused<T>> {
        let refuse = |tag, deliver, reason| {
            Err(DeliverRefused {
                tag,
                deliver,
                reason,
            })
        };
        if self.state != IsmgState::Connected {
            return refuse(tag, deliver, DeliverRefuseReason::NotConnected);
        }
        if self.window.len() >= self.config.deliver_window {
            return refuse(tag, deliver, DeliverRefuseReason::WindowFull);
        }
        if let Err(e) = deliver.body_len(self.version) {
            return refuse(tag, deliver, DeliverRefuseReason::Unencodable(e));
        }
        let sequence = self.allocate_sequence();
        self.transmit.push_back(Transmit {
            sequence_id: sequence,
            pdu: Pdu::Deliver(deliver),
        });
        self.window.insert(
            sequence,
            Pending { tag, sent_at: now },
            now + self.config.response_timeout,
        );
        Ok(sequence)
    }

    /// Starts a graceful TERMINATE (shutdown): no new DELIVERs; TERMINATE goes out once the
    /// DELIVER window is empty. Before login the session just closes.
    pub fn terminate(&mut self, now: Instant) {
        match self.state {
            IsmgState::Connected => {
                self.state = IsmgState::Terminating;
                self.active_test = None;
                self.send_terminate_if_drained(now);
            }
            IsmgState::AwaitingConnect | IsmgState::Authenticating => {
                self.close(IsmgCloseReason::Terminated);
            }
            IsmgState::Terminating | IsmgState::Closed(_) => {}
        }
    }

    /// The connection is gone (EOF, I/O error): close, aborting the DELIVER window.
    pub fn handle_disconnect(&mut self) {
        self.close(IsmgCloseReason::Disconnected);
    }

    /// Feeds bytes read from the socket: decodes every whole frame at the front of `buf` on
    /// the link's current version and handles it. Leaves an incomplete frame in `buf`;
    /// stops when the session closes.
    pub fn handle_bytes(&mut self, now: Instant, buf: &mut BytesMut) {
        while !self.is_closed() {
            match decode_frame(buf, self.version, self.config.max_length) {
                Ok(None) => return,
                Ok(Some(Ok(decoded))) => self.handle_pdu(now, decoded),
                Ok(Some(Err(error))) => self.handle_decode_error(now, &error),
                Err(error) => {
                    self.handle_frame_error(now, &error);
                    buf.clear();
                }
            }
        }
    }

    /// A frame whose Total_Length is out of range: the stream cannot be re-synchronised,
    /// so the session closes.
    pub fn handle_frame_error(&mut self, now: Instant, _error: &FrameError) {
        self.last_received = now;
        self.close(IsmgCloseReason::Protocol);
    }

    /// A frame that did not decode. Logged in: answered as [`DecodeError::response`] says
    /// (e.g. SUBMIT_RESP with Result 1 or 4) and the link kept; a malformed DELIVER_RESP
    /// leaves its DELIVER to time out. Before login: a malformed CONNECT gets CONNECT_RESP
    /// Status 1 and closes, anything else closes.
    pub fn handle_decode_error(&mut self, now: Instant, error: &DecodeError) {
        if self.is_closed() {
            return;
        }
        self.alive(now);
        self.events.push_back(IsmgEvent::Undecodable(error.clone()));
        let logged_in = matches!(self.state, IsmgState::Connected | IsmgState::Terminating);
        if !logged_in {
            if self.state == IsmgState::AwaitingConnect
                && error.header.command_id == CommandId::Connect
            {
                let status = error.connect_status();
                self.send_connect_resp(error.header.sequence_id, status, &[0; 16], b"");
                self.close(IsmgCloseReason::ConnectRefused(status));
            } else {
                self.close(IsmgCloseReason::NotLoggedIn);
            }
            return;
        }
        if let Some(answer) = error.response(self.version) {
            self.answer(error.header.sequence_id, answer);
        }
    }

    /// A decoded PDU from the SP.
    pub fn handle_pdu(&mut self, now: Instant, decoded: Decoded) {
        if self.is_closed() {
            return;
        }
        self.alive(now);
        let Decoded {
            header,
            pdu,
            tolerated,
        } = decoded;
        if !tolerated.is_empty() {
            self.events.push_back(IsmgEvent::Tolerated {
                command_id: header.command_id,
                tolerated,
            });
        }
        let sequence = header.sequence_id;
        match self.state {
            IsmgState::AwaitingConnect => {
                if let Pdu::Connect(connect) = pdu {
                    self.on_connect(sequence, &connect);
                } else {
                    self.close(IsmgCloseReason::NotLoggedIn);
                }
                return;
            }
            IsmgState::Authenticating => {
                // Nothing may overtake the CONNECT_RESP; an SP that does not wait for it
                // is not speaking CMPP.
                self.close(IsmgCloseReason::NotLoggedIn);
                return;
            }
            IsmgState::Connected | IsmgState::Terminating | IsmgState::Closed(_) => {}
        }
        match pdu {
            Pdu::Submit(submit) => self.on_submit(sequence, submit),
            Pdu::DeliverResp(resp) => self.on_deliver_resp(now, sequence, resp),
            Pdu::ActiveTest => {
                self.answer(sequence, Pdu::ActiveTestResp(ActiveTestResp::default()));
            }
            // `alive` has already cleared the outstanding test, whatever its sequence.
            Pdu::ActiveTestResp(_) => {}
            Pdu::Terminate => {
                self.answer(sequence, Pdu::TerminateResp);
                self.close(IsmgCloseReason::PeerTerminate);
            }
            Pdu::TerminateResp => {
                if self.terminate.is_some_and(|c| c.sequence == sequence) {
                    self.close(IsmgCloseReason::Terminated);
                }
            }
            // A second CONNECT on a logged-in link: refused, the link stays.
            Pdu::Connect(c) => {
                self.send_connect_resp(
                    sequence,
                    ConnectStatus::OtherError,
                    &c.authenticator_source,
                    b"",
                );
            }
            // Not offered: empty counters, failed cancel.
            Pdu::Query(q) => self.answer(
                sequence,
                Pdu::QueryResp(QueryResp {
                    time: q.time,
                    query_type: q.query_type,
                    query_code: q.query_code,
                    ..QueryResp::default()
                }),
            ),
            Pdu::Cancel(_) => self.answer(sequence, Pdu::CancelResp(CancelResp { success_id: 1 })),
            // An SP does not deliver.
            Pdu::Deliver(d) => self.answer(
                sequence,
                Pdu::DeliverResp(DeliverResp {
                    msg_id: d.msg_id,
                    result: ResultCode::CommandWordError,
                }),
            ),
            // Responses to requests we never send.
            Pdu::ConnectResp(_) | Pdu::SubmitResp(_) | Pdu::QueryResp(_) | Pdu::CancelResp(_) => {}
        }
    }

    /// Fires every timer that is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            IsmgState::Closed(_) => return,
            IsmgState::AwaitingConnect if self.connect_deadline <= now => {
                self.close(IsmgCloseReason::ConnectTimeout);
                return;
            }
            _ => {}
        }
        if self.terminate.is_some_and(|c| c.deadline <= now) {
            self.close(IsmgCloseReason::Terminated);
            return;
        }
        if self.active_test.is_some_and(|c| c.deadline <= now) {
            self.active_test = None;
            self.active_test_missed += 1;
            if self.active_test_missed >= self.config.active_test_misses.max(1) {
                self.close(IsmgCloseReason::ActiveTestTimeout);
                return;
            }
            self.send_active_test(now);
        }
        while let Some(p) = self.window.pop_expired(now) {
            self.events.push_back(IsmgEvent::DeliverTimeout {
                tag: p.tag,
                sent_at: p.sent_at,
            });
        }
        self.send_terminate_if_drained(now);
        if self.state == IsmgState::Connected
            && self.active_test.is_none()
            && self.last_received + self.config.active_test_interval <= now
        {
            self.send_active_test(now);
        }
    }

    /// When [`Self::handle_timeout`] must next be called; `None` when closed or waiting
    /// only for the caller. Call again after every input.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        if self.is_closed() {
            return None;
        }
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        if self.state == IsmgState::AwaitingConnect {
            consider(self.connect_deadline);
        }
        if let Some(c) = self.terminate {
            consider(c.deadline);
        }
        if let Some(deadline) = self.window.next_deadline() {
            consider(deadline);
        }
        match (self.state == IsmgState::Connected, self.active_test) {
            (_, Some(c)) => consider(c.deadline),
            (true, None) => consider(self.last_received + self.config.active_test_interval),
            (false, None) => {}
        }
        next
    }

    /// The next PDU to write, in order. Call until `None` after every input.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmit.pop_front()
    }

    /// The next event. Call until `None` after every input.
    pub fn poll_event(&mut self) -> Option<IsmgEvent<T>> {
        self.events.pop_front()
    }

    fn alive(&mut self, now: Instant) {
        self.last_received = now;
        self.active_test = None;
        self.active_test_missed = 0;
    }

    fn on_connect(&mut self, sequence: u32, connect: &Connect) {
        match negotiate(connect.version, self.config.highest_version) {
            Ok(version) => {
                self.version = version;
                self.state = IsmgState::Authenticating;
                self.connect = Some((sequence, connect.authenticator_source));
                self.events
                    .push_back(IsmgEvent::ConnectRequest(ConnectRequest {
                        source_addr: connect.source_addr,
                        requested_version: connect.version,
                        version,
                        authenticator_source: connect.authenticator_source,
                        timestamp: connect.timestamp,
                    }));
            }
            Err(status) => {
                // The peer's width is unknown; 2.0's one-byte Status is the safe reading.
                self.version = Version::V20;
                self.send_connect_resp(sequence, status, &connect.authenticator_source, b"");
                self.close(IsmgCloseReason::ConnectRefused(status));
            }
        }
    }

    fn send_connect_resp(
        &mut self,
        sequence: u32,
        status: ConnectStatus,
        auth_source: &[u8; 16],
        secret: &[u8],
    ) {
        let resp = ConnectResp {
            status,
            authenticator_ismg: auth::authenticator_ismg(self.version, status, auth_source, secret),
            version: self.version.byte(),
        };
        self.answer(sequence, Pdu::ConnectResp(resp));
    }

    fn on_submit(&mut self, sequence: u32, submit: Box<Submit>) {
        if self.state != IsmgState::Connected
            || self.submits.len() >= self.config.submit_window
            || self.submits.contains(&sequence)
        {
            // Terminating, over the window, or a Sequence_Id reused while its first use
            // waits: the SP may retry.
            self.answer(
                sequence,
                Pdu::SubmitResp(SubmitResp {
                    msg_id: MsgId::default(),
                    result: ResultCode::FlowControl,
                }),
            );
            return;
        }
        self.submits.insert(sequence);
        self.events
            .push_back(IsmgEvent::Submit { sequence, submit });
    }

    fn on_deliver_resp(&mut self, now: Instant, sequence: u32, resp: DeliverResp) {
        if let Some(p) = self.window.remove(sequence) {
            self.events.push_back(IsmgEvent::DeliverResponse {
                tag: p.tag,
                msg_id: resp.msg_id,
                result: resp.result,
                sent_at: p.sent_at,
            });
            self.send_terminate_if_drained(now);
        }
    }

    fn allocate_sequence(&mut self) -> u32 {
        self.window.allocate_sequence()
    }

    fn answer(&mut self, sequence_id: u32, pdu: Pdu) {
        self.transmit.push_back(Transmit { sequence_id, pdu });
    }

    fn send_active_test(&mut self, now: Instant) {
        let sequence = self.allocate_sequence();
        self.answer(sequence, Pdu::ActiveTest);
        self.active_test = Some(Control {
            sequence,
            deadline: now + self.config.response_timeout,
        });
    }

    fn send_terminate_if_drained(&mut self, now: Instant) {
        if self.state == IsmgState::Terminating
            && self.terminate.is_none()
            && self.window.is_empty()
        {
            let sequence = self.allocate_sequence();
            self.answer(sequence, Pdu::Terminate);
            self.terminate = Some(Control {
                sequence,
                deadline: now + self.config.response_timeout,
            });
        }
    }

    fn close(&mut self, reason: IsmgCloseReason) {
        if self.is_closed() {
            return;
        }
        for p in self.window.drain_by(|sequence, p| (p.sent_at, sequence)) {
            self.events.push_back(IsmgEvent::DeliverAborted {
                tag: p.tag,
                sent_at: p.sent_at,
            });
        }
        self.transmit.retain(|t| t.pdu.command_id().is_response());
        self.submits.clear();
        self.connect = None;
        self.active_test = None;
        self.terminate = None;
        self.state = IsmgState::Closed(reason.clone());
        self.events.push_back(IsmgEvent::Closed(reason));
    }
}

#[cfg(test)]
mod tests;

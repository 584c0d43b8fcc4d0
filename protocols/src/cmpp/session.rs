//! The SP (client) side of one CMPP 2.0 / 3.0 connection to an ISMG, as a sans-IO state
//! machine.
//!
//! No sockets and no clock: the driver feeds bytes in with [`SpSession::handle_bytes`] (or
//! already decoded frames with [`SpSession::handle_pdu`] / [`SpSession::handle_decode_error`]
//! / [`SpSession::handle_frame_error`]), fires timers with [`SpSession::handle_timeout`],
//! offers messages with [`SpSession::submit`], and drains [`SpSession::poll_transmit`] (PDUs
//! to write), [`SpSession::poll_event`] (what happened) and [`SpSession::poll_timeout`] (when
//! to call `handle_timeout` next) — the quinn-proto shape, and the same API as the gateway's
//! SMPP ESME session so one kind of driver runs both. Every input takes `now`; the CONNECT
//! timestamp (`MMDDHHMMSS`) is passed in by the caller because the session reads no wall
//! clock.
//!
//! The other end of the link, the ISMG (server) side, is [`ismg::IsmgSession`] with the same
//! driver API; its tests run it against this session in memory.
//!
//! Job and invariants:
//! - State: `Connecting` (CONNECT sent) → `Connected` → (`Terminating`) → `Closed`. Only a
//!   connected session submits. A CONNECT_RESP with Status ≠ 0 closes with
//!   [`CloseReason::ConnectRefused`] carrying that status.
//! - The link runs the version the ISMG named in CONNECT_RESP when it is not above the one
//!   we asked for ([`SpSession::version`]); the driver encodes and decodes with it
//!   ([`SpSession::handle_bytes`] does that by itself).
//! - Sequence ids run 1..=0x7FFF_FFFF and wrap, skipping ids still in the window.
//! - The window maps Sequence_Id → (caller's tag, sent_at) for outstanding SUBMITs and
//!   never holds more than `window` entries. Each entry leaves exactly once: as
//!   [`SpEvent::Response`], [`SpEvent::ResponseTimeout`] or [`SpEvent::Aborted`] (when the
//!   session closes with it still open) — so the caller can account for every part.
//! - Every PDU the session queues encodes on the link's version: a SUBMIT that does not is
//!   refused at [`SpSession::submit`], not discovered by the driver.
//! - DELIVERs are reported ([`SpEvent::Deliver`]) and answered only when the caller says so
//!   ([`SpSession::answer_deliver`]), after the receipt or MO is durable: a crash before that
//!   leaves the ISMG to resend it instead of losing it.
//! - Keep-alive: after `active_test_interval` without any PDU from the ISMG an ACTIVE_TEST
//!   goes out; each one unanswered for `response_timeout` is a miss and is retried, and
//!   `active_test_misses` misses in a row close the session (the specification's T and C).
//!   Any PDU from the ISMG proves the link alive and resets the count.
//! - Requests from the ISMG are answered in arrival order: ACTIVE_TEST with
//!   ACTIVE_TEST_RESP, TERMINATE with TERMINATE_RESP (then close), malformed requests with
//!   what [`DecodeError::response`] says. CMPP has no generic NACK, so anything else is
//!   ignored.
//! - After close, [`SpSession::poll_transmit`] yields only answers already owed (e.g. the
//!   TERMINATE_RESP); requests not yet written are dropped, so a SUBMIT reported as
//!   [`SpEvent::Aborted`] before it reached the socket is never written afterwards.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::auth;
use super::cancel::CancelResp;
use super::codes::{CommandId, ConnectStatus, ResultCode};
use super::connect::{Connect, ConnectResp};
use super::deliver::{Deliver, DeliverResp};
use super::error::{DecodeError, EncodeError, FrameError};
use super::header::DEFAULT_MAX_LENGTH;
use super::link::ActiveTestResp;
use super::msg_id::MsgId;
use super::octets::FixedStr;
use super::pdu::{Decoded, Pdu, decode_frame};
use super::submit::{Submit, SubmitResp};
use super::tolerated::Tolerated;
use super::version::Version;

use crate::window::Window;

pub mod ismg;

pub use ismg::{
    ConnectRequest, DeliverRefuseReason, DeliverRefused, IsmgCloseReason, IsmgConfig, IsmgEvent,
    IsmgSession, IsmgState,
};

/// Session settings (from the channel's config).
#[derive(Clone, PartialEq, Eq)]
pub struct SpConfig {
    /// SP id (企业代码), at most 6 characters; CONNECT's Source_Addr.
    pub source_addr: String,
    /// The shared secret hashed into AuthenticatorSource.
    pub shared_secret: String,
    /// The version asked for in CONNECT (the ISMG may answer with a lower one).
    pub version: Version,
    /// Outstanding SUBMITs allowed at once.
    pub window: usize,
    /// How long a request may wait for its response (CONNECT, SUBMIT, ACTIVE_TEST,
    /// TERMINATE): the specification's T.
    pub response_timeout: Duration,
    /// Silence from the ISMG after which we send ACTIVE_TEST.
    pub active_test_interval: Duration,
    /// Unanswered ACTIVE_TESTs in a row that close the session: the specification's C.
    /// 0 is read as 1.
    pub active_test_misses: u32,
    /// Largest Total_Length accepted by [`SpSession::handle_bytes`].
    pub max_length: u32,
}

impl Default for SpConfig {
    /// The specification's link parameters: ACTIVE_TEST after 3 minutes of silence, T =
    /// 60 s, C = 3; a window of 16 (the ISMG's usual sliding window).
    fn default() -> Self {
        Self {
            source_addr: String::new(),
            shared_secret: String::new(),
            version: Version::V30,
            window: 16,
            response_timeout: Duration::from_secs(60),
            active_test_interval: Duration::from_secs(180),
            active_test_misses: 3,
            max_length: DEFAULT_MAX_LENGTH,
        }
    }
}

/// Redacts the shared secret, so logging a config never leaks it.
impl fmt::Debug for SpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SpConfig")
            .field("source_addr", &self.source_addr)
            .field("shared_secret", &"<redacted>")
            .field("version", &self.version)
            .field("window", &self.window)
            .field("response_timeout", &self.response_timeout)
            .field("active_test_interval", &self.active_test_interval)
            .field("active_test_misses", &self.active_test_misses)
            .field("max_length", &self.max_length)
            .finish()
    }
}

/// A configuration the session cannot log in with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Source_Addr is a 6-octet field.
    #[error("source_addr {0:?} is longer than the 6-octet Source_Addr field")]
    SourceAddrTooLong(String),
    /// The CONNECT timestamp must be a valid `MMDDHHMMSS`: the ISMG hashes it as such.
    #[error("CONNECT timestamp {0} is not a valid MMDDHHMMSS")]
    Timestamp(u32),
}

/// Where the session is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpState {
    /// CONNECT sent, waiting for CONNECT_RESP.
    Connecting,
    /// Logged in: traffic flows.
    Connected,
    /// [`SpSession::terminate`] was called: no new SUBMITs; TERMINATE goes out once the
    /// window is empty, and responses to earlier SUBMITs may still arrive.
    Terminating,
    /// Over; the driver writes what [`SpSession::poll_transmit`] still yields and closes
    /// the socket.
    Closed(CloseReason),
}

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloseReason {
    /// Our TERMINATE was answered (or timed out).
    #[error("terminated")]
    Terminated,
    /// The ISMG sent TERMINATE.
    #[error("the ISMG terminated the link")]
    PeerTerminate,
    /// The ISMG refused the CONNECT with this Status (2 bad source address, 3
    /// authentication failed, 4 version too high, …).
    #[error("the ISMG refused the CONNECT: {0}")]
    ConnectRefused(ConnectStatus),
    /// No CONNECT_RESP in time.
    #[error("no CONNECT_RESP within the response timeout")]
    ConnectTimeout,
    /// The CONNECT_RESP did not decode, so neither the status nor the version is known.
    #[error("the CONNECT_RESP did not decode")]
    MalformedConnectResp,
    /// CONNECT_RESP accepted us on a version byte we cannot run (not CMPP 2.x/3.x, or
    /// above the one we asked for).
    #[error("the ISMG answered with version byte {0:#04x}, which this session cannot run")]
    VersionUnsupported(u8),
    /// `active_test_misses` ACTIVE_TESTs in a row went unanswered: the link is dead.
    #[error("ACTIVE_TEST went unanswered")]
    ActiveTestTimeout,
    /// The byte stream cannot be trusted any more (Total_Length out of range).
    #[error("unframeable input (bad Total_Length)")]
    Protocol,
    /// The driver lost the connection.
    #[error("disconnected")]
    Disconnected,
}

/// Did the ISMG prove it knows the shared secret (AuthenticatorISMG)?
///
/// Informational only: many ISMGs send zeros or hash differently, so a mismatch does not
/// fail the login; the driver may log or alert on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IsmgAuth {
    /// AuthenticatorISMG matches our secret.
    Verified,
    /// AuthenticatorISMG is all zeros: the ISMG did not send one.
    Absent,
    /// AuthenticatorISMG is present and does not match.
    Mismatch,
}

/// What the session reports to its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpEvent<T> {
    /// Logged in.
    Connected {
        /// The version the link runs (may be lower than the one asked for).
        version: Version,
        /// Whether AuthenticatorISMG verified.
        ismg_auth: IsmgAuth,
    },
    /// A SUBMIT got its SUBMIT_RESP (any Result; the caller classifies it, e.g.
    /// [`ResultCode::is_throttle`]).
    Response {
        /// The caller's tag given to [`SpSession::submit`].
        tag: T,
        /// The ISMG's Msg_Id (status reports name it).
        msg_id: MsgId,
        /// SUBMIT_RESP Result; 0 is accepted.
        result: ResultCode,
        /// When the SUBMIT was queued.
        sent_at: Instant,
    },
    /// No SUBMIT_RESP within `response_timeout`; the SUBMIT's fate is unknown.
    ResponseTimeout {
        /// The caller's tag.
        tag: T,
        /// When the SUBMIT was queued.
        sent_at: Instant,
    },
    /// The session closed with this SUBMIT still unanswered; its fate is unknown.
    Aborted {
        /// The caller's tag.
        tag: T,
        /// When the SUBMIT was queued.
        sent_at: Instant,
    },
    /// A DELIVER (MO message or status report) from the ISMG, NOT yet answered: the caller
    /// answers with [`SpSession::answer_deliver`] once it is safe (durable).
    Deliver {
        /// Sequence_Id to answer.
        sequence: u32,
        /// The message; its `msg_id` is echoed in the answer.
        deliver: Box<Deliver>,
    },
    /// A PDU decoded with accepted deviations from the specification (for metrics).
    Tolerated {
        /// The PDU's command.
        command_id: CommandId,
        /// What was accepted.
        tolerated: Tolerated,
    },
    /// A PDU framed but did not decode; it was answered as [`DecodeError::response`] says
    /// (if at all). Reported for logs and metrics.
    Undecodable(DecodeError),
    /// The session is over; no more events follow.
    Closed(CloseReason),
}

/// One PDU to write: the driver encodes it with [`Transmit::encode`] on
/// [`SpSession::version`] and may batch many into one write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Sequence_Id for the header.
    pub sequence_id: u32,
    /// The body.
    pub pdu: Pdu,
}

impl Transmit {
    /// Appends the frame to `dst`. The session only queues PDUs that encode on its
    /// version, so an error here is a bug, not input.
    ///
    /// # Errors
    /// [`EncodeError`] when `version` is not the session's version.
    pub fn encode(&self, version: Version, dst: &mut BytesMut) -> Result<(), EncodeError> {
        self.pdu.encode(self.sequence_id, version, dst)
    }
}

/// Why [`SpSession::submit`] refused a message; the message comes back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitRefused<T> {
    /// The caller's tag, handed back.
    pub tag: T,
    /// The SUBMIT, handed back.
    pub submit: Box<Submit>,
    /// Why.
    pub reason: RefuseReason,
}

/// Why a SUBMIT was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefuseReason {
    /// Not connected (still connecting, terminating or closed).
    #[error("not connected")]
    NotConnected,
    /// The window is full.
    #[error("window full")]
    WindowFull,
    /// The SUBMIT cannot be encoded on the link's version (e.g. 3.0-only fields on a 2.0
    /// link); retrying will not help.
    #[error(transparent)]
    Unencodable(EncodeError),
}

#[derive(Debug, Clone)]
struct Pending<T> {
    tag: T,
    sent_at: Instant,
}

/// An outstanding control request (CONNECT, ACTIVE_TEST, TERMINATE).
#[derive(Debug, Clone, Copy)]
struct Control {
    sequence: u32,
    deadline: Instant,
}

/// The SP side of one CMPP connection. `T` tags each SUBMIT (the worker uses it for the
/// message id and part).
#[derive(Debug)]
pub struct SpSession<T> {
    config: SpConfig,
    state: SpState,
    /// The link's version: the requested one until CONNECT_RESP settles it.
    version: Version,
    /// Sent in CONNECT, needed to check AuthenticatorISMG.
    authenticator_source: [u8; 16],
    /// Outstanding requests, their deadlines and the sequence numbers.
    window: Window<Pending<T>>,
    connect: Option<Control>,
    active_test: Option<Control>,
    /// ACTIVE_TESTs in a row that went unanswered.
    active_test_missed: u32,
    /// Our TERMINATE once it is sent (it waits for the window to empty first).
    terminate: Option<Control>,
    /// Last time anything arrived from the ISMG; the ACTIVE_TEST timer counts from it.
    last_received: Instant,
    transmit: VecDeque<Transmit>,
    events: VecDeque<SpEvent<T>>,
}

impl<T> SpSession<T> {
    /// A session on a freshly connected socket: the CONNECT is queued at once.
    /// `timestamp` is the local time as `MMDDHHMMSS` (see [`auth::timestamp`]); the ISMG
    /// hashes it with the secret, so it must be the real time.
    ///
    /// # Errors
    /// [`ConfigError`] when `source_addr` does not fit or `timestamp` is not a valid
    /// `MMDDHHMMSS`.
    pub fn new(config: SpConfig, now: Instant, timestamp: u32) -> Result<Self, ConfigError> {
        let source_addr = FixedStr::<6>::new(config.source_addr.as_bytes())
            .map_err(|_| ConfigError::SourceAddrTooLong(config.source_addr.clone()))?;
        if !valid_timestamp(timestamp) {
            return Err(ConfigError::Timestamp(timestamp));
        }
        let connect = Connect::new(
            source_addr,
            config.shared_secret.as_bytes(),
            config.version,
            timestamp,
        );
        let mut session = Self {
            state: SpState::Connecting,
            version: config.version,
            authenticator_source: connect.authenticator_source,
            window: Window::with_capacity(config.window),
            connect: None,
            active_test: None,
            active_test_missed: 0,
            terminate: None,
            last_received: now,
            transmit: VecDeque::new(),
            events: VecDeque::new(),
            config,
        };
        let sequence = session.request(Pdu::Connect(connect));
        session.connect = Some(Control {
            sequence,
            deadline: now + session.config.response_timeout,
        });
        Ok(session)
    }

    /// The current state.
    #[must_use]
    pub fn state(&self) -> &SpState {
        &self.state
    }

    /// The configuration the session runs with.
    #[must_use]
    pub fn config(&self) -> &SpConfig {
        &self.config
    }

    /// The version to encode and decode with: the requested one until CONNECT_RESP, then
    /// the one the ISMG named.
    #[must_use]
    pub fn version(&self) -> Version {
        self.version
    }

    /// Outstanding SUBMITs.
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.window.len()
    }

    /// True when a SUBMIT would be accepted now (encodability aside).
    #[must_use]
    pub fn can_submit(&self) -> bool {
        self.state == SpState::Connected && self.window.len() < self.config.window
    }

    /// True once the session has closed.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        matches!(self.state, SpState::Closed(_))
    }

    /// Queues a SUBMIT and tracks it in the window under `tag`; returns its Sequence_Id.
    /// The SUBMIT is sent as given (Msg_Id is normally left 0 for the ISMG to assign).
    ///
    /// # Errors
    /// [`SubmitRefused`] (with the tag and SUBMIT handed back) when not connected, the
    /// window is full, or the SUBMIT does not encode on the link's version.
    pub fn submit(
        &mut self,
        now: Instant,
        tag: T,
        submit: Box<Submit>,
    ) -> Result<u32, SubmitRefused<T>> {
        let refuse = |tag, submit, reason| {
            Err(SubmitRefused {
                tag,
                submit,
                reason,
            })
        };
        if self.state != SpState::Connected {
            return refuse(tag, submit, RefuseReason::NotConnected);
        }
        if self.window.len() >= self.config.window {
            return refuse(tag, submit, RefuseReason::WindowFull);
        }
        if let Err(e) = submit.body_len(self.version) {
            return refuse(tag, submit, RefuseReason::Unencodable(e));
        }
        let sequence = self.request(Pdu::Submit(submit));
        let deadline = now + self.config.response_timeout;
        self.window
            .insert(sequence, Pending { tag, sent_at: now }, deadline);
        Ok(sequence)
    }

    /// Answers a DELIVER reported by [`SpEvent::Deliver`]: `msg_id` is the DELIVER's
    /// Msg_Id, `result` [`ResultCode::Success`] once it is safe, or
    /// [`ResultCode::FlowControl`] (8) when it could not be kept — CMPP has no other
    /// retryable code, and the ISMG resends after it.
    ///
    /// A result that does not fit the 2.0 one-byte field is sent as 9 (2.0's "other
    /// error"), so the ISMG always gets an answer. Does nothing once closed.
    pub fn answer_deliver(&mut self, sequence: u32, msg_id: MsgId, result: ResultCode) {
        if self.is_closed() {
            return;
        }
        let mut resp = DeliverResp { msg_id, result };
        if Pdu::DeliverResp(resp).encoded_len(self.version).is_err() {
            resp.result = ResultCode::FeeTerminalNotServed;
        }
        self.answer(sequence, Pdu::DeliverResp(resp));
    }

    /// Starts a graceful TERMINATE: no new SUBMITs; the TERMINATE goes out once every
    /// SUBMIT in the window is answered or has timed out (within `response_timeout`), and
    /// the session closes on TERMINATE_RESP or `response_timeout` after sending it.
    /// Does nothing unless connected.
    pub fn terminate(&mut self, now: Instant) {
        if self.state != SpState::Connected {
            return;
        }
        self.state = SpState::Terminating;
        self.active_test = None;
        self.send_terminate_if_drained(now);
    }

    /// The connection is gone (EOF, I/O error): close, aborting what is in the window.
    pub fn handle_disconnect(&mut self) {
        self.close(CloseReason::Disconnected);
    }

    /// Feeds bytes read from the socket: decodes every whole frame at the front of `buf`
    /// (on the link's current version, which CONNECT_RESP may change mid-buffer) and
    /// handles it. Leaves an incomplete frame in `buf`; stops when the session closes.
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
    /// so the session closes (CMPP has nothing to answer it with).
    pub fn handle_frame_error(&mut self, now: Instant, _error: &FrameError) {
        self.last_received = now;
        self.close(CloseReason::Protocol);
    }

    /// A frame that did not decode. Answers as [`DecodeError::response`] says (e.g. a
    /// DELIVER_RESP with Result 4 and the echoed Msg_Id for a truncated DELIVER) and keeps
    /// the link; a malformed CONNECT_RESP while connecting closes the session.
    ///
    /// A malformed SUBMIT_RESP leaves its SUBMIT in the window: its Result is unknown, so
    /// it ends as [`SpEvent::ResponseTimeout`].
    pub fn handle_decode_error(&mut self, now: Instant, error: &DecodeError) {
        if self.is_closed() {
            return;
        }
        self.alive(now);
        self.events.push_back(SpEvent::Undecodable(error.clone()));
        if let Some(answer) = error.response(self.version) {
            self.answer(error.header.sequence_id, answer);
        }
        if error.header.command_id == CommandId::ConnectResp
            && self
                .connect
                .is_some_and(|c| c.sequence == error.header.sequence_id)
        {
            self.close(CloseReason::MalformedConnectResp);
        }
    }

    /// A decoded PDU from the ISMG.
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
            self.events.push_back(SpEvent::Tolerated {
                command_id: header.command_id,
                tolerated,
            });
        }
        let sequence = header.sequence_id;
        match pdu {
            Pdu::ConnectResp(resp) => self.on_connect_resp(now, sequence, &resp),
            Pdu::SubmitResp(resp) => self.on_submit_resp(now, sequence, resp),
            Pdu::Deliver(deliver) => self.on_deliver(sequence, deliver),
            Pdu::ActiveTest => {
                self.answer(sequence, Pdu::ActiveTestResp(ActiveTestResp::default()));
            }
            // `alive` has already cleared the outstanding test, whatever its sequence.
            Pdu::ActiveTestResp(_) => {}
            Pdu::Terminate => {
                self.answer(sequence, Pdu::TerminateResp);
                self.close(CloseReason::PeerTerminate);
            }
            Pdu::TerminateResp => {
                if self.terminate.is_some_and(|c| c.sequence == sequence) {
                    self.close(CloseReason::Terminated);
                }
            }
            // Requests an SP does not serve. CMPP has no generic NACK; answer the ones
            // whose response can say "no" so the peer does not wait for a timeout.
            Pdu::Submit(_) => self.answer(
                sequence,
                Pdu::SubmitResp(SubmitResp {
                    msg_id: MsgId::default(),
                    result: ResultCode::CommandWordError,
                }),
            ),
            Pdu::Cancel(_) => self.answer(sequence, Pdu::CancelResp(CancelResp { success_id: 1 })),
            // CONNECT and QUERY from an ISMG have no meaningful answer from an SP; responses
            // to requests we never send are ignored.
            Pdu::Connect(_)
            | Pdu::Query(_)
            | Pdu::QueryResp(_)
            | Pdu::CancelResp(_)
            | Pdu::DeliverResp(_) => {}
        }
    }

    /// Fires every timer that is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.is_closed() {
            return;
        }
        if self.state == SpState::Connecting && self.connect.is_some_and(|c| c.deadline <= now) {
            self.close(CloseReason::ConnectTimeout);
            return;
        }
        if self.terminate.is_some_and(|c| c.deadline <= now) {
            self.close(CloseReason::Terminated);
            return;
        }
        if self.active_test.is_some_and(|c| c.deadline <= now) {
            self.active_test = None;
            self.active_test_missed += 1;
            if self.active_test_missed >= self.config.active_test_misses.max(1) {
                self.close(CloseReason::ActiveTestTimeout);
                return;
            }
            self.send_active_test(now);
        }
        while let Some(p) = self.window.pop_expired(now) {
            self.events.push_back(SpEvent::ResponseTimeout {
                tag: p.tag,
                sent_at: p.sent_at,
            });
        }
        self.send_terminate_if_drained(now);
        if self.state == SpState::Connected
            && self.active_test.is_none()
            && self.last_received + self.config.active_test_interval <= now
        {
            self.send_active_test(now);
        }
    }

    /// The next instant at which [`Self::handle_timeout`] must be called; `None` when closed.
    /// Call again after every `handle_*`, `submit`, `answer_deliver` and `terminate`.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        if self.is_closed() {
            return None;
        }
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        if self.state == SpState::Connecting
            && let Some(c) = self.connect
        {
            consider(c.deadline);
        }
        if let Some(c) = self.terminate {
            consider(c.deadline);
        }
        if let Some(deadline) = self.window.next_deadline() {
            consider(deadline);
        }
        match (self.state == SpState::Connected, self.active_test) {
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
    pub fn poll_event(&mut self) -> Option<SpEvent<T>> {
        self.events.pop_front()
    }

    /// Anything from the ISMG proves the link alive: restart the silence timer and forget
    /// the outstanding ACTIVE_TEST and its misses.
    fn alive(&mut self, now: Instant) {
        self.last_received = now;
        self.active_test = None;
        self.active_test_missed = 0;
    }

    fn allocate_sequence(&mut self) -> u32 {
        self.window.allocate_sequence()
    }

    /// Queues a request under a fresh Sequence_Id.
    fn request(&mut self, pdu: Pdu) -> u32 {
        let sequence_id = self.allocate_sequence();
        self.transmit.push_back(Transmit { sequence_id, pdu });
        sequence_id
    }

    /// Queues a response with the request's Sequence_Id.
    fn answer(&mut self, sequence_id: u32, pdu: Pdu) {
        self.transmit.push_back(Transmit { sequence_id, pdu });
    }

    fn send_active_test(&mut self, now: Instant) {
        let sequence = self.request(Pdu::ActiveTest);
        self.active_test = Some(Control {
            sequence,
            deadline: now + self.config.response_timeout,
        });
    }

    fn send_terminate_if_drained(&mut self, now: Instant) {
        if self.state == SpState::Terminating && self.terminate.is_none() && self.window.is_empty()
        {
            let sequence = self.request(Pdu::Terminate);
            self.terminate = Some(Control {
                sequence,
                deadline: now + self.config.response_timeout,
            });
        }
    }

    fn on_connect_resp(&mut self, now: Instant, sequence: u32, resp: &ConnectResp) {
        if self.state != SpState::Connecting || self.connect.is_none_or(|c| c.sequence != sequence)
        {
            return;
        }
        self.connect = None;
        if resp.status != ConnectStatus::Ok {
            self.close(CloseReason::ConnectRefused(resp.status));
            return;
        }
        let version = match Version::from_byte(resp.version) {
            Some((v, _)) if v <= self.config.version => v,
            _ => {
                self.close(CloseReason::VersionUnsupported(resp.version));
                return;
            }
        };
        self.version = version;
        let ismg_auth = self.check_ismg_auth(resp);
        self.state = SpState::Connected;
        self.last_received = now;
        self.events
            .push_back(SpEvent::Connected { version, ismg_auth });
    }

    /// Checks AuthenticatorISMG with the Status width of either version: ISMGs differ in
    /// which one they hash, and the check is informational.
    fn check_ismg_auth(&self, resp: &ConnectResp) -> IsmgAuth {
        if resp.authenticator_ismg == [0; 16] {
            return IsmgAuth::Absent;
        }
        let secret = self.config.shared_secret.as_bytes();
        let verified = [self.version, Version::V20, Version::V30].iter().any(|&v| {
            auth::verify_ismg(
                v,
                resp.status,
                &self.authenticator_source,
                secret,
                &resp.authenticator_ismg,
            )
        });
        if verified {
            IsmgAuth::Verified
        } else {
            IsmgAuth::Mismatch
        }
    }

    fn on_submit_resp(&mut self, now: Instant, sequence: u32, resp: SubmitResp) {
        if let Some(p) = self.window.remove(sequence) {
            self.events.push_back(SpEvent::Response {
                tag: p.tag,
                msg_id: resp.msg_id,
                result: resp.result,
                sent_at: p.sent_at,
            });
            self.send_terminate_if_drained(now);
        }
    }

    fn on_deliver(&mut self, sequence: u32, deliver: Box<Deliver>) {
        // Before login an ISMG has no business delivering; leaving it unanswered makes it
        // resend once we are logged in, instead of losing it.
        if matches!(self.state, SpState::Connected | SpState::Terminating) {
            self.events
                .push_back(SpEvent::Deliver { sequence, deliver });
        }
    }

    fn close(&mut self, reason: CloseReason) {
        if self.is_closed() {
            return;
        }
        for p in self.window.drain_by(|sequence, p| (p.sent_at, sequence)) {
            self.events.push_back(SpEvent::Aborted {
                tag: p.tag,
                sent_at: p.sent_at,
            });
        }
        // Requests not yet written must not go out after their SUBMIT was reported
        // aborted; answers already owed (TERMINATE_RESP, DELIVER_RESP) still may.
        self.transmit.retain(|t| t.pdu.command_id().is_response());
        self.connect = None;
        self.active_test = None;
        self.terminate = None;
        self.state = SpState::Closed(reason.clone());
        self.events.push_back(SpEvent::Closed(reason));
    }
}

/// Is `timestamp` a real `MMDDHHMMSS` (as [`auth::timestamp`] would build it)?
fn valid_timestamp(timestamp: u32) -> bool {
    let part = |div: u32| ((timestamp / div) % 100) as u8;
    auth::timestamp(
        part(100_000_000),
        part(1_000_000),
        part(10_000),
        part(100),
        part(1),
    ) == Some(timestamp)
}

#[cfg(test)]
mod tests;

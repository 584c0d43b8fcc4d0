//! The egress seam: the protocol-neutral types dispatch hands to a channel worker and gets
//! back, and the types a protocol's binds exchange with the neutral worker.
//!
//! ```text
//! dispatch ──OutboundMessage──▶ worker (channel::worker) ──PartJob<P>──▶ binds (smpp/, cmpp/)
//!     ▲                            │  ▲                                     │
//!     └──────── Settled ───────────┘  └────────── BindReport ───────────────┘
//! ```
//!
//! Dispatch depends on this module only: it never names SMPP or CMPP. A protocol plugs in by
//! implementing [`crate::channel::worker::Wire`] (how a message becomes parts, what a response
//! status means) and by running binds that pull [`PartJob`]s and push [`BindReport`]s.
//!
//! One path per fact: a part's submit outcome travels only as a [`BindReport::Outcome`] to the
//! worker, which folds a message's parts into one [`Outcome`] for dispatch; receipts and MO
//! leave the binds as [`crate::channel::ChannelEvent`]s for the receipt layer; whether a
//! channel can send is the worker's `binds_up` watch.

use std::sync::Arc;
use std::time::{Duration, Instant};

use compact_str::CompactString;
use sluice_protocols::sms::Encoding;
use tokio::sync::{Mutex, OwnedSemaphorePermit, mpsc, watch};
use tokio::task::JoinHandle;

use crate::channel::MessageId;
use crate::channel::backoff::Backoff;

/// What the client asked to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// Text; `hint` is the client's encoding wish (`None` = cheapest).
    Text {
        /// UTF-8 text.
        text: String,
        /// Requested encoding, honoured when it can carry the text and the protocol defines it.
        hint: Option<Encoding>,
    },
    /// Raw 8-bit data with an optional client UDH (whole UDH including UDHL).
    Binary {
        /// Payload.
        data: Vec<u8>,
        /// Client UDH, e.g. WAP port addressing.
        udh: Option<Vec<u8>>,
    },
    /// A multimedia message: its content is shared by every recipient of one campaign, so it
    /// travels behind an `Arc` (one copy in memory however many recipients are in flight).
    Mms(Arc<MmsContent>),
}

/// An MMS's content as a channel sends it (MM7's SubmitReq content part).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MmsContent {
    /// The subject line, if any.
    pub subject: Option<String>,
    /// The content's `Content-Type` header value: `multipart/related; boundary=…;
    /// type="application/smil"; start=…` (or a single part's media type).
    pub content_type: String,
    /// The content's MIME body exactly as it goes inside the request (SMIL and media parts).
    pub body: bytes::Bytes,
    /// SHA-256 of `body`: the content store's key, so equal contents are one entry.
    pub digest: [u8; 32],
}

/// A message handed to the channel worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundMessage {
    /// Gateway id.
    pub id: MessageId,
    /// Attempts already made (0 for the first).
    pub attempt: u32,
    /// Sender; `None` = the channel's default.
    pub from: Option<CompactString>,
    /// Destination.
    pub to: CompactString,
    /// What to send.
    pub content: Content,
}

/// How a message left the worker; dispatch turns it into a store write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every part was accepted; `center_ids[n]` is part n + 1's raw center id.
    Sent {
        /// Message.
        id: MessageId,
        /// Raw center ids, in part order.
        center_ids: Vec<CompactString>,
    },
    /// Put it back; attempt it again after `after`.
    Retry {
        /// Message.
        id: MessageId,
        /// Attempts made so far, this one included.
        attempts: u32,
        /// Backoff delay.
        after: Duration,
        /// Why, for logs.
        reason: String,
    },
    /// Never sent (channel stopped, no bind up): put it back due now without counting an
    /// attempt — only real send failures use up the retry budget.
    Release {
        /// Message.
        id: MessageId,
        /// Why, for logs.
        reason: String,
    },
    /// Failed for good.
    Failed {
        /// Message.
        id: MessageId,
        /// Protocol status that decided it (SMPP command_status, CMPP Result; 0 for local
        /// reasons).
        status: u32,
        /// Receipt status word: `REJECTD` (refused by the center or unbuildable) or
        /// `UNDELIV` (retries exhausted).
        stat: &'static str,
        /// Why.
        reason: String,
    },
}

impl Outcome {
    /// The message this outcome is about.
    #[must_use]
    pub const fn id(&self) -> MessageId {
        match self {
            Self::Sent { id, .. }
            | Self::Retry { id, .. }
            | Self::Release { id, .. }
            | Self::Failed { id, .. } => *id,
        }
    }
}

/// An [`Outcome`] on its way to the store, holding one of the worker's credits.
///
/// The worker holds at most `capacity` messages that are either in its care *or* finished
/// but not yet written to the store: each takes a credit, and the credit comes back only
/// when the consumer drops this value — after its store commit. So a crash can lose (and
/// the center see twice) at most `capacity` = window × binds messages' outcomes, the
/// in-flight window the design allows.
#[derive(Debug)]
pub struct Settled {
    /// What happened to the message.
    pub outcome: Outcome,
    /// Returned to the worker on drop.
    pub(crate) _credit: Option<OwnedSemaphorePermit>,
}

impl Settled {
    /// An outcome without a credit (tests, tools, messages never taken into care).
    #[must_use]
    pub fn new(outcome: Outcome) -> Self {
        Self {
            outcome,
            _credit: None,
        }
    }
}

/// Handle to a running channel worker, whatever its protocol.
#[derive(Debug)]
pub struct WorkerHandle {
    /// Number of sending binds (transmitter / transceiver / CMPP connections) currently up;
    /// dispatch and route failover watch it.
    pub binds_up: watch::Receiver<usize>,
    /// The AIMD send rate (msg/s) in force.
    pub rate: watch::Receiver<u32>,
    /// The channel's live status for operators (written by the worker and the receipt
    /// layer, read by `GET /v1/channels`).
    pub status: std::sync::Arc<crate::status::ChannelStatus>,
    pub(crate) shutdown: watch::Sender<bool>,
    pub(crate) task: JoinHandle<()>,
}

impl WorkerHandle {
    /// Asks the binds to unbind and waits for the worker to finish (it drains the messages
    /// it holds: their parts either come back or are aborted and reported as retries).
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

/// What to do after a submit response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Accepted.
    Accepted,
    /// Flow control (SMPP ESME_RTHROTTLED / ESME_RMSGQFUL, CMPP Result 8): slow the channel
    /// down (AIMD) and send the same part again soon.
    Throttled,
    /// Transient: retry the message later with backoff.
    Temporary,
    /// The message itself is refused: fail it (`REJECTD`).
    Permanent,
}

/// Identifies one part of one message in the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PartTag {
    /// Gateway message id.
    pub id: MessageId,
    /// 1-based part number.
    pub part: u16,
}

/// A part ready for the wire; `P` is the protocol's request body (SMPP `Sm`, CMPP `Submit`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartJob<P> {
    /// Which part.
    pub tag: PartTag,
    /// The request body (already validated to encode).
    pub body: Box<P>,
}

/// How a submitted part ended on one bind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartOutcome {
    /// The center answered with `status` (0 → `center_id` is its id for the part).
    Response {
        /// Protocol status (SMPP command_status, CMPP SUBMIT_RESP Result).
        status: u32,
        /// The center's id, raw as it wrote it (CMPP's u64 Msg_Id in decimal).
        center_id: CompactString,
    },
    /// No response in time: the center may or may not have it.
    Timeout,
    /// The bind died (or refused the part) before an answer came.
    Aborted,
}

/// What a bind tells its channel worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindReport {
    /// The bind is up.
    Up {
        /// Bind index.
        bind: usize,
        /// Whether it submits (transmitter / transceiver) — only those make a channel usable.
        sends: bool,
    },
    /// The bind went down (it will reconnect unless shutting down).
    Down {
        /// Bind index.
        bind: usize,
        /// Why, for logs.
        reason: String,
    },
    /// A part finished on this bind.
    Outcome {
        /// Bind index.
        bind: usize,
        /// The part.
        tag: PartTag,
        /// What happened.
        outcome: PartOutcome,
        /// When it was written (for AIMD's staleness rule).
        sent_at: Instant,
        /// When the outcome was known.
        at: Instant,
    },
}

/// The queue binds pull parts from (a multi-consumer view of one mpsc).
pub type PartQueue<P> = Arc<Mutex<mpsc::Receiver<PartJob<P>>>>;

/// What every bind of a channel shares with the neutral worker.
#[derive(Debug)]
pub struct WorkerLinks<P> {
    /// Parts to submit (shared by the channel's sending binds).
    pub parts: PartQueue<P>,
    /// Outcomes and up/down to the worker.
    pub reports: mpsc::Sender<BindReport>,
    /// Becomes `true` when the binds should unbind and stop.
    pub shutdown: watch::Receiver<bool>,
}

impl<P> Clone for WorkerLinks<P> {
    fn clone(&self) -> Self {
        Self {
            parts: Arc::clone(&self.parts),
            reports: self.reports.clone(),
            shutdown: self.shutdown.clone(),
        }
    }
}

/// How often and how late a message is retried after temporary failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total (the first one included) before a message fails for good.
    pub max_attempts: u32,
    /// Delay before attempt n + 1.
    pub backoff: Backoff,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            backoff: Backoff {
                base: Duration::from_secs(5),
                max: Duration::from_secs(600),
            },
        }
    }
}

impl RetryPolicy {
    /// The policy of a channel's `retry` table.
    #[must_use]
    pub fn from_config(c: &crate::config::RetryConfig) -> Self {
        Self {
            max_attempts: c.max_attempts.max(1),
            backoff: Backoff {
                base: Duration::from_millis(c.backoff_base_ms),
                max: Duration::from_millis(c.backoff_max_ms),
            },
        }
    }
}

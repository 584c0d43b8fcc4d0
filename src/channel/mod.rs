//! Egress channels: the workers that own the binds to one message center and push messages
//! to it.
//!
//! ```text
//!  store ◀──ops── dispatch ──(bounded mpsc of OutboundMessage)──▶ worker ──▶ N × bind ──▶ center
//!                    ▲                                             │  │          │
//!                    └────────────(mpsc of Outcome)────────────────┘  └─(mpsc of ChannelEvent)──▶ receipt layer
//! ```
//!
//! - [`limiter`]: governor rate per channel, steered by AIMD on throttle answers.
//! - [`backoff`]: jittered exponential backoff (reconnects, temporary errors).
//! - [`smpp`]: the SMPP egress: sans-IO session, bind driver task, inbound (DLR/MO), part
//!   builder, status classes, channel worker.
//! - [`metrics_names`]: metric names used here.
//! - `crate::dispatch` (sibling module): leases from the store by lane and writes outcomes.
//!
//! # Who writes what to the store
//! The message life cycle (`Submitted` with each part's normalised center id, `Requeue` for
//! retries, `Finish` for failures) is written by dispatch from the worker's
//! [`smpp::worker::Outcome`]s — one outcome per message attempt, sent only after every part
//! that went out has come back. Receipts and MO are the receipt layer's, from
//! [`ChannelEvent`]s.
//!
//! # Event contract with the receipt layer
//! Every DLR, MO and bind change leaves the channel as a [`ChannelEvent`] on one `mpsc`
//! that the receipt layer consumes. Ordering between events of *different* binds is not
//! guaranteed, and a center may send a delivery receipt before (or on another bind than) the
//! submit_sm_resp that tells us its message id. The channel does not buffer or reorder for
//! that: it emits [`ChannelEvent::Receipt`] as soon as the DLR arrives, carrying the center's
//! raw id. The receipt layer looks the id up under [`normalise_center_id`] (with the
//! channel's DLR id format) and, when it is not known yet, keeps the receipt (bounded, with
//! expiry — the store's `Op::Receipt` does exactly this: it holds an unmatched receipt and
//! applies it when the matching `Op::Submitted` arrives) and correlates it later. Ids in
//! events are raw, exactly as the center wrote them.
//!
//! `PartAccepted` is emitted for every part the center accepted (part numbers are 1-based, as
//! in the store and the HTTP API). When a message attempt ends without all parts accepted,
//! one `PartFailed` is emitted for it (naming its first unaccepted part): `temporary: true`
//! means the message goes back to the store for another attempt, `false` means it failed
//! for good. A retried message is sent again as a whole with a fresh concatenation
//! reference (at-least-once: the center may see parts accepted in the failed attempt again,
//! which DESIGN.md allows within the in-flight window).

pub mod backoff;
pub mod limiter;
pub mod metrics_names;
pub mod smpp;

use std::time::SystemTime;

use sluice_protocols::smpp::{CanonicalId, IdFormat, canonical_id};

/// Gateway message id (the store's sortable u64, `store::MessageId.0`).
pub type MessageId = u64;

/// The center-id key the store indexes parts under: [`canonical_id`] of `raw` under the
/// channel's id format, written as a decimal number when numeric, else the upper-cased text.
///
/// Dispatch stores accepted parts with it (`Op::Submitted`), and the receipt layer must look
/// DLR ids up with the *same* function (with the channel's DLR id format), so that a center
/// answering hex `1A2B` and quoting decimal `6699` in its receipt matches.
#[must_use]
pub fn normalise_center_id(raw: &str, format: IdFormat) -> String {
    match canonical_id(raw.as_bytes(), format) {
        CanonicalId::Numeric(n) => n.to_string(),
        CanonicalId::Text(t) => String::from_utf8_lossy(&t).into_owned(),
    }
}

/// The answer the center is waiting for on one deliver_sm.
///
/// A receipt (or an MO) is acknowledged to the center only after the receipt layer has made
/// it durable, so a crash in between makes the center resend it rather than lose it. Clones share one
/// answer (the first wins). Dropping every clone without answering counts as
/// [`done`](Self::done): consumers that do not care about durability (tests, tools) need not
/// know about it. Equality ignores the ack: two events are equal when their data is.
#[derive(Debug, Clone, Default)]
pub struct DeliverAck(
    Option<std::sync::Arc<std::sync::Mutex<Option<tokio::sync::oneshot::Sender<bool>>>>>,
);

impl DeliverAck {
    /// An ack wired to `tx`; the bind answers the center when it fires.
    #[must_use]
    pub fn new(tx: tokio::sync::oneshot::Sender<bool>) -> Self {
        Self(Some(std::sync::Arc::new(std::sync::Mutex::new(Some(tx)))))
    }

    /// The receipt is safe: the center gets ESME_ROK.
    pub fn done(&self) {
        self.answer(true);
    }

    /// The receipt could not be kept: the center gets ESME_RX_T_APPN and resends it later.
    pub fn fail(&self) {
        self.answer(false);
    }

    fn answer(&self, ok: bool) {
        if let Some(slot) = &self.0
            && let Some(tx) = slot
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take()
        {
            let _ = tx.send(ok);
        }
    }
}

impl PartialEq for DeliverAck {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for DeliverAck {}

/// What happened on a channel, for the receipt layer (and route failover).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelEvent {
    /// The center accepted part `part` (1-based) of message `id` and named it `center_id`.
    PartAccepted {
        /// Gateway message id.
        id: MessageId,
        /// 1-based part number.
        part: u16,
        /// Total parts of the message, so the receipt layer can aggregate.
        parts: u16,
        /// The center's message id, raw as received (hex or decimal, maybe zero-padded).
        center_id: String,
        /// When the response arrived.
        at: SystemTime,
    },
    /// The center (or the channel) refused part `part` of message `id`.
    PartFailed {
        /// Gateway message id.
        id: MessageId,
        /// 1-based part number (the first part not accepted, for a whole-message failure).
        part: u16,
        /// Protocol status (SMPP command_status); 0 when the failure was local, e.g. a
        /// response timeout or a lost bind.
        status: u32,
        /// `true`: the message was put back for another attempt. `false`: it failed for good
        /// and the receipt layer should report it (`REJECTD` / `UNDELIV`).
        temporary: bool,
        /// Why, for logs and the client (`ESME_RINVDSTADR`, `response timeout`, …).
        reason: String,
    },
    /// A delivery receipt from the center.
    Receipt {
        /// The center's id of the receipted message, raw.
        center_id: String,
        /// `DELIVRD`, `UNDELIV`, `EXPIRED`, `REJECTD`, … (as the center wrote it).
        stat: String,
        /// The `err:` field, raw.
        err: String,
        /// The `done date:` field, raw (`YYMMDDhhmm[ss]`), when present.
        done_at: Option<String>,
        /// The `text:` field (first characters of the original message), raw.
        text: String,
        /// The handset the receipt is about (the deliver_sm source address).
        source: String,
        /// When the receipt arrived.
        at: SystemTime,
        /// Answers the center's deliver_sm: the receipt layer calls [`DeliverAck::done`]
        /// after the receipt is durable (or [`DeliverAck::fail`] when it could not be kept).
        ack: DeliverAck,
    },
    /// A mobile-originated message.
    Mo {
        /// The handset.
        from: String,
        /// Our long number / extension code.
        to: String,
        /// Text decoded from `data_coding` (lossy for undecodable bytes).
        text: String,
        /// The data_coding the center used.
        data_coding: u8,
        /// When it arrived.
        at: SystemTime,
        /// Answers the center's deliver_sm (the last part's, for a concatenated MO): the
        /// receipt layer calls [`DeliverAck::done`] once the MO is kept (durable in its
        /// account's MO outbox, or handed to subscribers when nobody keeps it).
        ack: DeliverAck,
    },
    /// A bind of `channel` is up and may carry traffic.
    BindUp {
        /// Channel name.
        channel: String,
        /// Bind index within the channel.
        bind: usize,
    },
    /// A bind of `channel` is down (it is reconnecting).
    BindDown {
        /// Channel name.
        channel: String,
        /// Bind index within the channel.
        bind: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_decimal_ids_normalise_alike() {
        assert_eq!(normalise_center_id("1A2B", IdFormat::Hex), "6699");
        assert_eq!(normalise_center_id("0006699", IdFormat::Decimal), "6699");
        assert_eq!(normalise_center_id("abc-1", IdFormat::Auto), "ABC-1");
    }
}

//! Egress channels: the workers that own the binds to one message center and push messages
//! to it.
//!
//! ```text
//!  store ◀──ops── dispatch ──(bounded mpsc of OutboundMessage)──▶ worker ──▶ N × bind ──▶ center
//!                    ▲                                             │          │
//!                    └────────────(mpsc of Settled)────────────────┘          │
//!                                                     receipt layer ◀──ChannelEvent (DLR, MO)
//! ```
//!
//! - [`egress`]: the seam — what dispatch hands to a worker and gets back, what binds and the
//!   worker exchange. Dispatch depends on it and on nothing protocol-specific.
//! - [`worker`]: the protocol-neutral worker (rate, AIMD, part accounting, retries), with the
//!   [`worker::Wire`] trait a protocol implements.
//! - [`limiter`]: governor rate per channel, steered by AIMD on throttle answers.
//! - [`backoff`]: jittered exponential backoff (reconnects, temporary errors).
//! - [`smpp`], [`cmpp`], [`mm7`]: one `spawn` per channel kind — the protocol's binds, part
//!   builder, status classes and inbound (DLR/MO) handling (MM7's inbound is an HTTP route).
//!
//! # Who writes what to the store
//! The message life cycle (`Submitted` with each part's normalised center id, `Requeue` for
//! retries, `Finish` for failures) is written by dispatch from the worker's
//! [`egress::Outcome`]s — one outcome per message attempt, sent only after every part that
//! went out has come back. That outcome is the only path of a part's fate. Receipts and MO
//! are the receipt layer's, from [`ChannelEvent`]s.
//!
//! # Event contract with the receipt layer
//! Every DLR and MO leaves the channel as a [`ChannelEvent`] on one `mpsc` that the receipt
//! layer consumes. Ordering between events of *different* binds is not guaranteed, and a
//! center may send a delivery receipt before (or on another bind than) the submit response
//! that tells us its message id. The channel does not buffer or reorder for that: it emits
//! [`ChannelEvent::Receipt`] as soon as the DLR arrives, carrying the center's raw id. The
//! receipt layer looks the id up under [`normalise_center_id`] (with the channel's DLR id
//! format) and, when it is not known yet, keeps the receipt (bounded, with expiry — the
//! store's `Op::Receipt` does exactly this: it holds an unmatched receipt and applies it when
//! the matching `Op::Submitted` arrives) and correlates it later. Ids in events are raw,
//! exactly as the center wrote them (CMPP's u64 Msg_Id as decimal digits).
//!
//! A retried message is sent again as a whole with a fresh concatenation reference
//! (at-least-once: the center may see parts accepted in the failed attempt again, which the
//! design allows within the in-flight window).

pub mod backoff;
pub mod cmpp;
pub mod content;
pub mod driver;
pub mod egress;
pub mod limiter;
pub mod mm7;
pub mod mo;
pub mod smpp;
pub mod worker;

pub use egress::{Content, OutboundMessage, Outcome, Settled, WorkerHandle};

use std::time::SystemTime;

use compact_str::{CompactString, ToCompactString};
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
pub fn normalise_center_id(raw: &str, format: IdFormat) -> CompactString {
    match canonical_id(raw.as_bytes(), format) {
        // Inline up to 24 digits, as is a text id up to 24 bytes: no allocation for the ids
        // centers give, each made twice a message (submit response and receipt).
        CanonicalId::Numeric(n) => n.to_compact_string(),
        // Only bytes that are not UTF-8 are replaced, lossily.
        CanonicalId::Text(t) => compact_lossy(&t),
    }
}

/// `b` as text, inline up to 24 bytes; bytes that are not UTF-8 are replaced, lossily.
/// Valid UTF-8 (every id, status word and address a center sends) is copied in one piece:
/// `CompactString::from_utf8_lossy` pushes its input piece by piece, which was 1.2 % of the
/// gateway's samples at full speed for the receipt fields alone.
#[must_use]
pub fn compact_lossy(b: &[u8]) -> CompactString {
    match std::str::from_utf8(b) {
        Ok(s) => CompactString::from(s),
        Err(_) => CompactString::from(String::from_utf8_lossy(b)),
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
pub struct DeliverAck(Option<std::sync::Arc<AckSlot>>);

/// One answer, shared by the clones of a [`DeliverAck`].
#[derive(Debug)]
struct AckSlot {
    answered: std::sync::atomic::AtomicBool,
    to: AckTarget,
}

/// Where an answer goes.
#[derive(Debug)]
enum AckTarget {
    /// A task waiting on this one answer (an MM7 request).
    Once(std::sync::Mutex<Option<tokio::sync::oneshot::Sender<bool>>>),
    /// A bind's answer queue, under the bind's token for the request: one queue per bind,
    /// where a channel and a waiting future per deliver_sm were four allocations a receipt.
    Bind {
        token: u64,
        tx: tokio::sync::mpsc::UnboundedSender<(u64, bool)>,
    },
}

impl DeliverAck {
    /// An ack wired to `tx`; the waiting task answers the center when it fires.
    #[must_use]
    pub fn new(tx: tokio::sync::oneshot::Sender<bool>) -> Self {
        Self::to(AckTarget::Once(std::sync::Mutex::new(Some(tx))))
    }

    /// An ack that sends `(token, kept)` to a bind's answer queue ([`driver`]).
    #[must_use]
    pub fn to_bind(token: u64, tx: tokio::sync::mpsc::UnboundedSender<(u64, bool)>) -> Self {
        Self::to(AckTarget::Bind { token, tx })
    }

    fn to(to: AckTarget) -> Self {
        Self(Some(std::sync::Arc::new(AckSlot {
            answered: std::sync::atomic::AtomicBool::new(false),
            to,
        })))
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
        if let Some(slot) = &self.0 {
            slot.answer(ok);
        }
    }
}

impl AckSlot {
    fn answer(&self, ok: bool) {
        if self
            .answered
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            return;
        }
        match &self.to {
            AckTarget::Once(slot) => {
                if let Some(tx) = slot
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .take()
                {
                    let _ = tx.send(ok);
                }
            }
            // The bind may be gone (closed): its center resends what it did not hear of.
            AckTarget::Bind { token, tx } => {
                let _ = tx.send((*token, ok));
            }
        }
    }
}

impl Drop for AckSlot {
    /// Unanswered when the last clone goes: kept.
    fn drop(&mut self) {
        self.answer(true);
    }
}

impl PartialEq for DeliverAck {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for DeliverAck {}

/// What a center sent us unasked, for the receipt layer: delivery receipts and MO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelEvent {
    /// A delivery receipt from the center.
    Receipt {
        /// The center's id of the receipted message, raw.
        center_id: CompactString,
        /// `DELIVRD`, `UNDELIV`, `EXPIRED`, `REJECTD`, … (as the center wrote it).
        stat: CompactString,
        /// The `err:` field, raw.
        err: CompactString,
        /// The `done date:` field, raw (`YYMMDDhhmm[ss]`), when present.
        done_at: Option<CompactString>,
        /// The `text:` field (first characters of the original message), raw.
        text: CompactString,
        /// The handset the receipt is about (the deliver_sm source address).
        source: CompactString,
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_decimal_ids_normalise_alike() {
        assert_eq!(normalise_center_id("1A2B", IdFormat::Hex), "6699");
        assert_eq!(normalise_center_id("0006699", IdFormat::Decimal), "6699");
        assert_eq!(normalise_center_id("abc-1", IdFormat::Auto), "ABC-1");
        // Only ASCII letters change case.
        assert_eq!(normalise_center_id("x\u{e9}", IdFormat::Text), "X\u{e9}");
    }

    #[test]
    fn a_bind_ack_answers_once_and_counts_as_kept_when_dropped() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        // The first answer of the clones wins.
        let a = DeliverAck::to_bind(7, tx.clone());
        let b = a.clone();
        b.fail();
        a.done();
        drop((a, b));
        assert_eq!(rx.try_recv().ok(), Some((7, false)));
        assert!(rx.try_recv().is_err(), "one answer per ack");
        // Dropped unanswered: kept, once the last clone goes.
        let c = DeliverAck::to_bind(8, tx.clone());
        let d = c.clone();
        drop(c);
        assert!(rx.try_recv().is_err());
        drop(d);
        assert_eq!(rx.try_recv().ok(), Some((8, true)));
        // The default ack answers nobody.
        DeliverAck::default().fail();
        assert!(rx.try_recv().is_err());
    }
}

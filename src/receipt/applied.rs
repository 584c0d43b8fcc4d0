//! Held receipts that a submit response applied: the one path from dispatch's outcome writer
//! to a channel's receipt task.
//!
//! A receipt that beats its submit response is held by the store (`OpResult::ReceiptHeld`)
//! and applied by the `Op::Submitted` that records its center id, which answers
//! `OpResult::ReceiptApplied`. Dispatch is the caller that sees that answer, so it reports
//! each applied receipt here ([`AppliedSink::report`], one send per outcome commit); the
//! channel's receipt task ([`super::Receipts::run_channel`]) takes the reports from the same
//! queue, settles them in its pending map, counts the messages they ended from the report
//! itself ([`super::FinalCounts`]) and wakes the outbox. Nothing polls the store to find
//! out.
//!
//! Ordering: the receipt task answers its own `ReceiptHeld` (and records the hold) before it
//! reads this queue again, and a submit response can only apply a receipt after the commit
//! that held it, so a report never overtakes the hold it settles.
//!
//! The queue is unbounded: one entry per early receipt, drained by a task that does no I/O
//! for it (the report carries what is counted); a bound would have to drop reports (and
//! count settled receipts as unmatched) or stall dispatch's outcome commits.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::mpsc;

use crate::store::{MessageId, MessageState};
use compact_str::CompactString;

/// One held receipt a submit response applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedReceipt {
    /// The normalised center id the receipt was held under.
    pub center_key: CompactString,
    /// The message it belongs to.
    pub id: MessageId,
    /// The message's state after the submit response.
    pub state: MessageState,
    /// `Some(latency ms)` when that submit response ended the message (count it, once;
    /// see `OpResult::ReceiptApplied`).
    pub ended_in_ms: Option<u64>,
}

/// Dispatch's end of a channel's queue of applied receipts. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppliedSink {
    tx: mpsc::UnboundedSender<Vec<AppliedReceipt>>,
}

impl AppliedSink {
    /// Hands the receipts one outcome commit applied to the channel's receipt task. A
    /// receipt task that is gone (shutdown) loses nothing durable: the store applied them.
    pub fn report(&self, applied: Vec<AppliedReceipt>) {
        if !applied.is_empty() {
            let _ = self.tx.send(applied);
        }
    }
}

type Queue = (
    mpsc::UnboundedSender<Vec<AppliedReceipt>>,
    Option<mpsc::UnboundedReceiver<Vec<AppliedReceipt>>>,
);

/// One queue per channel, made by whichever side asks first (dispatch's sink or the receipt
/// task's receiver), so `serve` may start them in either order.
#[derive(Debug, Default)]
pub(crate) struct AppliedQueues {
    by_channel: Mutex<HashMap<String, Queue>>,
}

impl AppliedQueues {
    fn with<T>(&self, channel: &str, f: impl FnOnce(&mut Queue) -> T) -> T {
        let mut map = self
            .by_channel
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let q = map.entry(channel.to_owned()).or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            (tx, Some(rx))
        });
        f(q)
    }

    /// The sending end for `channel`.
    pub(crate) fn sink(&self, channel: &str) -> AppliedSink {
        self.with(channel, |q| AppliedSink { tx: q.0.clone() })
    }

    /// The receiving end for `channel` (a second receipt task for the same channel gets a
    /// fresh queue, which later sinks feed).
    pub(crate) fn receiver(&self, channel: &str) -> mpsc::UnboundedReceiver<Vec<AppliedReceipt>> {
        self.with(channel, |q| {
            q.1.take().unwrap_or_else(|| {
                let (tx, rx) = mpsc::unbounded_channel();
                q.0 = tx;
                rx
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(key: &str) -> AppliedReceipt {
        AppliedReceipt {
            center_key: key.into(),
            id: MessageId(1),
            state: MessageState::Delivered,
            ended_in_ms: Some(1),
        }
    }

    #[test]
    fn sink_and_receiver_meet_whichever_comes_first() {
        let q = AppliedQueues::default();
        let early_sink = q.sink("a");
        let mut rx = q.receiver("a");
        let late_sink = q.sink("a");
        early_sink.report(vec![applied("1")]);
        late_sink.report(vec![applied("2")]);
        late_sink.report(Vec::new());
        assert_eq!(rx.try_recv().unwrap(), vec![applied("1")]);
        assert_eq!(rx.try_recv().unwrap(), vec![applied("2")]);
        assert!(rx.try_recv().is_err(), "empty reports are not sent");
        // Another channel has its own queue.
        q.sink("b").report(vec![applied("3")]);
        assert!(rx.try_recv().is_err());
        assert_eq!(q.receiver("b").try_recv().unwrap(), vec![applied("3")]);
    }
}

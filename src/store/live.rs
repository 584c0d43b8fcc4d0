//! Messages the writer saved lately, kept decoded, so that the next op of a message takes it
//! from memory instead of reading and decoding its two records again.
//!
//! Why: a message's ops come in a row within moments: the lease, the submit response, the
//! receipt. Each one loaded the message (its body record and its state record, through the
//! layers below) and decoded both: about a dozen allocations for the body's strings and tags
//! alone. The submit response's and the receipt's loads were 7.8 % of the gateway's CPU
//! samples at full speed, for a message the writer had just held, decoded, in its hands.
//! Here an op that saves a message it will hear of again hands it over
//! ([`Kv::keep_live`](super::backend::Kv::keep_live)): the submit response and a part's
//! receipt the message itself, the lease a copy (the original goes to the channel). The next
//! op that loads it takes it ([`Kv::take_live`](super::backend::Kv::take_live)): no read, no
//! decode.
//!
//! Invariants:
//! - a kept message is the one its last save wrote: [`LiveKv`] drops a message from memory
//!   when anything writes its body or state record through it, and `ops` keeps a message only
//!   right after saving it. Debug builds check every message taken against a fresh load;
//! - taking removes: an op that loads a message owns it, and keeps it again only if it saved
//!   it (an op that fails, or ends the message, leaves it out);
//! - transactional: a transaction takes the whole memory at its start and gives it back only
//!   if it committed ([`Live::apply`]); one that failed drops it all, so memory never holds a
//!   change the engine does not have;
//! - emptied when the engine was reopened (it went back to its last durable commit);
//! - bounded: two generations of at most [`CAPACITY`]` / 2` messages each; the older goes
//!   when the younger fills. A message held longer is loaded from its records, as before.

use std::sync::{Mutex, PoisonError};

use super::backend::{
    Kv, KvRead, forget_before_writes, pass_retire_through, pass_scans_through, tags_between,
    take_range_noting,
};
use super::error::StoreError;
use super::generations::Generations;
use super::id::MessageId;
use super::keys;
use super::model::{Message, ReceiptEvent};

/// Most messages kept. A message waits here from its lease to its receipt: milliseconds to
/// seconds at full speed (about 40 k messages a second). A decoded message is a few hundred
/// bytes, so this is at most about 10 MB.
pub(crate) const CAPACITY: usize = 32_768;

/// The kept messages, moved from memory into a transaction and back.
pub(crate) type Pending = Generations<Message>;

/// The committed kept messages, between the writer's transactions.
#[derive(Debug, Default)]
pub(crate) struct Live {
    memory: Mutex<Pending>,
}

impl Live {
    /// Takes back the messages of a transaction that committed.
    pub(crate) fn apply(&self, pending: Pending) {
        *self.memory.lock().unwrap_or_else(PoisonError::into_inner) = pending;
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.memory
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// The writer's transaction with the messages it saved lately at hand.
pub(crate) struct LiveKv<'a> {
    inner: &'a mut dyn Kv,
    kept: Pending,
}

impl<'a> LiveKv<'a> {
    /// The layer over `inner`, a transaction against the engine's `reopens`-th opening. It
    /// holds the kept messages until [`into_pending`](Self::into_pending).
    pub(crate) fn new(inner: &'a mut dyn Kv, memory: &Live, reopens: u64) -> Self {
        let mut kept =
            std::mem::take(&mut *memory.memory.lock().unwrap_or_else(PoisonError::into_inner));
        kept.check_reopens(reopens);
        Self { inner, kept }
    }

    /// The kept messages, for [`Live::apply`] once the transaction committed.
    pub(crate) fn into_pending(self) -> Pending {
        self.kept
    }

    /// Drops the message whose body or state record `key` is from memory.
    fn forget(&mut self, key: &[u8]) {
        if let Some(id) = message_of(key) {
            self.kept.forget(id);
        }
    }
}

/// The message id of a body or state record key, `None` for any other key.
fn message_of(key: &[u8]) -> Option<u64> {
    keys::id_in(keys::MESSAGE, key).or_else(|| keys::id_in(keys::STATE, key))
}

impl KvRead for LiveKv<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(key)
    }

    pass_scans_through!(inner);
}

impl Kv for LiveKv<'_> {
    forget_before_writes!(inner, forget);

    fn replace(&mut self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.forget(key);
        self.inner.replace(key, value)
    }

    take_range_noting!(inner, |this, k, _| this.forget(k));

    /// Passed on whole, so the outbox memo below still removes its entries without producing
    /// their values; a run over message records (none on a message's way) drops them all.
    fn remove_range(
        &mut self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<usize, StoreError> {
        if tags_between(start, end).any(|t| t == keys::MESSAGE || t == keys::STATE) {
            self.kept.clear();
        }
        self.inner.remove_range(start, end, limit)
    }

    fn put_receipt_entry(
        &mut self,
        key: &[u8],
        event: std::sync::Arc<ReceiptEvent>,
    ) -> Result<(), StoreError> {
        self.inner.put_receipt_entry(key, event)
    }

    pass_retire_through!(inner);

    fn take_live(&mut self, id: MessageId) -> Option<Message> {
        self.kept.take(id.0)
    }

    fn keep_live(&mut self, m: Message) {
        self.kept.insert(m.id.0, m, CAPACITY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::backend::MapKv;
    use crate::store::model::{Lane, MessageKind, MessageState, Payload};

    fn message(id: u64) -> Message {
        Message {
            id: MessageId(id),
            account: "acme".into(),
            to: "4912345".into(),
            from: None,
            payload: Payload::Text {
                text: "hi".into(),
                encoding: Default::default(),
            },
            kind: MessageKind::default(),
            lane: Lane::default(),
            channel: "smsc".into(),
            not_before_ms: None,
            expires_at_ms: None,
            window: None,
            client_ref: None,
            callback_url: None,
            tags: Default::default(),
            state: MessageState::Sent,
            attempts: 0,
            parts: Vec::new(),
            receipts: Vec::new(),
            created_ms: 1,
            submitted_ms: Some(2),
            done_ms: None,
            due_ms: 1,
            lease_until_ms: None,
        }
    }

    #[test]
    fn a_kept_message_is_taken_once_and_survives_only_a_committed_transaction() {
        let live = Live::default();
        let mut engine = MapKv::default();
        {
            let mut kv = LiveKv::new(&mut engine, &live, 0);
            kv.keep_live(message(1));
            kv.keep_live(message(2));
            // Dropped without `into_pending`: a failed transaction.
        }
        assert_eq!(live.len(), 0);
        {
            let mut kv = LiveKv::new(&mut engine, &live, 0);
            kv.keep_live(message(1));
            kv.keep_live(message(2));
            live.apply(kv.into_pending());
        }
        let mut kv = LiveKv::new(&mut engine, &live, 0);
        assert_eq!(kv.take_live(MessageId(1)), Some(message(1)));
        assert_eq!(kv.take_live(MessageId(1)), None, "taking removes");
        assert_eq!(kv.take_live(MessageId(2)), Some(message(2)));
    }

    #[test]
    fn a_write_of_either_record_drops_the_message() {
        let live = Live::default();
        let mut engine = MapKv::default();
        let mut kv = LiveKv::new(&mut engine, &live, 0);
        for id in 1..=6 {
            kv.keep_live(message(id));
        }
        kv.put(&keys::state(MessageId(1)), b"x").unwrap();
        kv.delete(&keys::message(MessageId(2))).unwrap();
        kv.replace(&keys::state(MessageId(3)), b"x").unwrap();
        kv.take(&keys::message(MessageId(4))).unwrap();
        // Other keys of the message leave it kept.
        kv.put(&keys::lease(9, MessageId(5)), b"smsc").unwrap();
        kv.delete(&keys::terminal(9, MessageId(5))).unwrap();
        for id in 1..=4 {
            assert_eq!(kv.take_live(MessageId(id)), None, "message {id}");
        }
        assert!(kv.take_live(MessageId(5)).is_some());
        // A run taken drops the messages whose records it took.
        kv.put(&keys::state(MessageId(7)), b"x").unwrap();
        kv.keep_live(message(7));
        let mut out = Vec::new();
        kv.take_range(&[keys::STATE], &[keys::STATE + 1], 10, &mut out)
            .unwrap();
        assert_eq!(out.len(), 3, "states 1, 3 and 7");
        assert_eq!(kv.take_live(MessageId(7)), None);
        // A range removal over the records drops them all.
        kv.remove_range(&[keys::STATE], &[keys::STATE + 1], 10)
            .unwrap();
        assert_eq!(kv.take_live(MessageId(6)), None);
    }

    #[test]
    fn a_reopened_engine_empties_memory_and_generations_let_the_oldest_go() {
        let live = Live::default();
        let mut engine = MapKv::default();
        let mut kv = LiveKv::new(&mut engine, &live, 0);
        for id in 0..u64::try_from(CAPACITY).unwrap() + 1 {
            kv.keep_live(message(id));
        }
        live.apply(kv.into_pending());
        assert_eq!(live.len(), CAPACITY / 2 + 1, "the oldest generation went");
        let mut kv = LiveKv::new(&mut engine, &live, 0);
        assert_eq!(kv.take_live(MessageId(0)), None);
        assert!(
            kv.take_live(MessageId(u64::try_from(CAPACITY).unwrap()))
                .is_some()
        );
        live.apply(kv.into_pending());
        let mut kv = LiveKv::new(&mut engine, &live, 1);
        assert_eq!(
            kv.take_live(MessageId(u64::try_from(CAPACITY).unwrap() - 1)),
            None,
            "the engine went back to its last durable commit"
        );
    }
}

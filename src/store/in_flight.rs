//! The state records of leased (in-flight) messages kept in memory instead of the engine, and,
//! while the redo log is on, every state record until a durable commit writes it.
//!
//! Why: a lease rewrote the message's state record (state `InFlight`, the lease's end) only to
//! have the submit response rewrite it again moments later, and a lease need not be durable —
//! after a crash every message that was in flight is sendable again (the promise is
//! "duplicates ≤ the window per kill"). So the writer's transactions run through
//! [`InFlightKv`], which keeps a state record that says `InFlight` in memory: the lease keeps
//! its lease key (the queue counters and recovery find it) but no longer writes the record.
//! The durable state record stays what it was before the lease (queued or scheduled), and the
//! lease key's recovery at open (`ops::recover_all`) returns such a message to its ready
//! queue. Only a bare lease is never written (`codec::state_is_bare_lease`): an in-flight
//! record that holds a part's center id or receipt (a multipart message partly submitted)
//! carries facts a crash must keep.
//!
//! With the redo log, the submit response's record (sent) is in turn replaced moments later by
//! the receipt's (final), and the log is what makes either durable: a crash replays it through
//! this layer. So there every other record stays in memory too, and only a durable commit
//! writes the ones it still finds (`writer::Memory::durable_commit`), in key order: the sent
//! record of a message whose receipt came before the checkpoint never reaches the engine.
//!
//! Invariants:
//! - without the redo log, a message id is in memory iff its latest state record is a bare
//!   lease; the first later record (sent, scheduled, final, a partly submitted lease, or a
//!   delete) leaves memory and goes to the engine;
//! - with it, a record other than a bare lease is `Unflushed` until a durable commit writes it
//!   ([`InFlight::flush_into`]) and `Flushed` until the next one lets it go
//!   ([`InFlight::flushed`]): a reader whose snapshot predates the commit that wrote it still
//!   finds it here, so no read goes back in time. A delete always reaches the engine too;
//! - changes made inside a transaction are pending until the writer has committed it
//!   ([`InFlight::apply`]); a failed transaction's pending changes are dropped with it;
//! - readers outside the writer see a committed in-memory record over the engine's
//!   ([`InFlightRead`]), so a lookup shows a leased message as in flight; a lookup whose
//!   snapshot is older than the in-memory records it read is made again
//!   ([`InFlightRead::load`]);
//! - after the engine was reopened (an I/O error; relaxed commits since the last durable one
//!   may be gone, leases among them) the writer keeps only the records whose lease key the
//!   engine still has ([`InFlight::check_after_reopen`]), so no lease lives on in memory
//!   that the engine lost; with the redo log, the replay that follows makes the rest again.

use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};

use super::backend::{
    Entry, Kv, KvRead, last_key_merged, pass_retire_through, pass_scans_through, scan_merged,
    tags_between, take_each,
};
use super::codec;
use super::error::StoreError;
use super::id::{IdMap, MessageId};
use super::keys;
use super::model::Message;
use super::ops;

/// Changes of one transaction: `Some(record)` now in memory, `None` gone from memory.
pub(crate) type Pending = IdMap<Option<Record>>;

/// A state record in memory.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    bytes: Vec<u8>,
    kind: Kind,
}

/// What the engine is owed for a record in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A bare lease: never written (a crash makes the message sendable again).
    BareLease,
    /// Any other record while the redo log is on: the next durable commit writes it
    /// ([`InFlight::flush_into`]). Until then the log is its durable copy.
    Unflushed,
    /// Written by the last durable commit, kept until the next one so that a reader whose
    /// snapshot predates that commit still finds it here (reads never go back in time).
    Flushed,
}

/// The committed in-memory state records, by message id.
#[derive(Debug, Default)]
pub(crate) struct InFlight {
    records: RwLock<IdMap<Record>>,
    /// The engine's reopen count ([`Backend::reopens`](super::backend::Backend::reopens))
    /// the records were last checked against.
    reopens_seen: AtomicU64,
}

impl InFlight {
    fn get(&self, id: u64) -> Option<Vec<u8>> {
        self.records
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&id)
            .map(|r| r.bytes.clone())
    }

    fn contains(&self, id: u64) -> bool {
        self.records
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains_key(&id)
    }

    /// The committed records whose ids `within` accepts.
    fn between(&self, within: impl Fn(u64) -> bool) -> Vec<(u64, Vec<u8>)> {
        self.records
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|(id, _)| within(**id))
            .map(|(&id, r)| (id, r.bytes.clone()))
            .collect()
    }

    /// Takes in the changes of a transaction that committed.
    pub(crate) fn apply(&self, pending: Pending) {
        if pending.is_empty() {
            return;
        }
        let mut records = self
            .records
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (id, record) in pending {
            match record {
                Some(r) => records.insert(id, r),
                None => records.remove(&id),
            };
        }
    }

    /// Writes every record the engine is owed into `kv`, a durable commit's transaction;
    /// the caller calls [`InFlight::flushed`] once it committed. Returns how many.
    pub(crate) fn flush_into(&self, kv: &mut dyn Kv) -> Result<usize, StoreError> {
        let records = self
            .records
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // In key order: ids grow with time, so the engine's tree is written along its edge
        // instead of at random places.
        let mut owed: Vec<(u64, &Record)> = records
            .iter()
            .filter(|(_, r)| r.kind == Kind::Unflushed)
            .map(|(&id, r)| (id, r))
            .collect();
        owed.sort_unstable_by_key(|(id, _)| *id);
        for (id, r) in &owed {
            kv.put(&keys::state(MessageId(*id)), &r.bytes)?;
        }
        Ok(owed.len())
    }

    /// After a durable commit that [`InFlight::flush_into`] wrote: its records are now the
    /// engine's too, and those of the durable commit before it leave memory.
    pub(crate) fn flushed(&self) {
        let mut records = self
            .records
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        records.retain(|_, r| match r.kind {
            Kind::BareLease => true,
            Kind::Unflushed => {
                r.kind = Kind::Flushed;
                true
            }
            Kind::Flushed => false,
        });
    }

    /// Drops the records of leases the engine no longer has, once per reopen of the engine
    /// (`reopens`: its count now). A reopen goes back to the last durable commit: a relaxed
    /// lease commit after it is gone with its lease key, its message is queued again in the
    /// engine, and an in-memory record kept for it would make the writer treat a queued
    /// message as in flight. Called by the writer inside its transaction (`kv`), after the
    /// engine was reopened for it. A lost relaxed op that ended a lease (lease expiry) needs
    /// nothing here: its lease key is back over the record from before the lease, which the
    /// next expiry pass gives back to its queue.
    /// Returns whether the engine was reopened since the last check.
    pub(crate) fn check_after_reopen(
        &self,
        reopens: u64,
        kv: &dyn KvRead,
    ) -> Result<bool, StoreError> {
        if self.reopens_seen.load(Ordering::Acquire) == reopens {
            return Ok(false);
        }
        let ids: Vec<u64> = self
            .records
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .keys()
            .copied()
            .collect();
        let mut lost = Vec::new();
        for id in ids {
            let view = InFlightRead {
                inner: kv,
                committed: self,
            };
            let kept = match ops::load_queued(&view, MessageId(id))? {
                Some(m) => match m.lease_until_ms {
                    Some(until) => kv.get(&keys::lease(until, MessageId(id)))?.is_some(),
                    None => false,
                },
                None => false,
            };
            if !kept {
                lost.push(id);
            }
        }
        if !lost.is_empty() {
            tracing::warn!(
                leases = lost.len(),
                "the reopened store lost leases that were not durable yet: their messages are queued again (with the redo log, its replay leases them again)"
            );
            self.apply(lost.into_iter().map(|id| (id, None)).collect());
        }
        self.reopens_seen.store(reopens, Ordering::Release);
        Ok(true)
    }

    /// Messages whose state lives here.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.records
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }
}

/// Whether `[start, end)` may hold a state record.
fn covers_state_records(start: &[u8], end: &[u8]) -> bool {
    tags_between(start, end).any(|t| t == keys::STATE)
}

/// The id of a state-record key.
fn state_id(key: &[u8]) -> Option<u64> {
    keys::id_in(keys::STATE, key)
}

/// The writer's view: in-flight state records in memory, everything else to `inner`.
pub(crate) struct InFlightKv<'a> {
    inner: &'a mut dyn Kv,
    committed: &'a InFlight,
    pending: Pending,
    /// The redo log is on: every state record stays in memory until a durable commit.
    logged: bool,
}

impl<'a> InFlightKv<'a> {
    pub(crate) fn new(inner: &'a mut dyn Kv, committed: &'a InFlight, logged: bool) -> Self {
        Self {
            inner,
            committed,
            pending: Pending::default(),
            logged,
        }
    }

    /// The kind a record written now is kept as, if it is kept in memory at all.
    fn kept_as(&self, value: &[u8]) -> Option<Kind> {
        if codec::state_is_bare_lease(value) {
            Some(Kind::BareLease)
        } else if self.logged {
            Some(Kind::Unflushed)
        } else {
            None
        }
    }

    fn keep(&mut self, id: u64, bytes: Vec<u8>, kind: Kind) {
        self.pending.insert(id, Some(Record { bytes, kind }));
    }

    /// This transaction's changes, for [`InFlight::apply`] once it committed.
    pub(crate) fn into_pending(self) -> Pending {
        self.pending
    }

    /// The in-memory record of `id` as this transaction sees it: `Some` in memory, `None`
    /// not in memory (read the engine).
    fn memory(&self, id: u64) -> Option<Vec<u8>> {
        match self.pending.get(&id) {
            Some(r) => r.as_ref().map(|r| r.bytes.clone()),
            None => self.committed.get(id),
        }
    }

    fn in_memory(&self, id: u64) -> bool {
        match self.pending.get(&id) {
            Some(r) => r.is_some(),
            None => self.committed.contains(id),
        }
    }

    /// The state records memory holds in `[start, end)` as this transaction sees them, or
    /// `None` when it holds none there: then the range is the engine's alone. Walks the
    /// whole memory, which holds the records since about the last two durable commits; only
    /// a purge's pass over a run of ended messages asks (the writer's other ops read state
    /// records by key).
    fn held_between(&self, start: &[u8], end: &[u8]) -> Option<Vec<Entry>> {
        if !covers_state_records(start, end) {
            return None;
        }
        let within = |id: u64| {
            let k = keys::state(MessageId(id));
            start <= &k[..] && &k[..] < end
        };
        let mut held: Vec<Entry> = self
            .pending
            .iter()
            .filter(|(id, _)| within(**id))
            .filter_map(|(&id, r)| {
                Some((
                    keys::state(MessageId(id)).to_vec(),
                    r.as_ref()?.bytes.clone(),
                ))
            })
            .collect();
        held.extend(
            self.committed
                .between(|id| within(id) && !self.pending.contains_key(&id))
                .into_iter()
                .map(|(id, bytes)| (keys::state(MessageId(id)).to_vec(), bytes)),
        );
        (!held.is_empty()).then_some(held)
    }

    /// Leaves memory (if there), so the engine's record counts again.
    fn forget(&mut self, id: u64) -> Option<Vec<u8>> {
        let old = self.memory(id);
        if old.is_some() {
            self.pending.insert(id, None);
        }
        old
    }
}

impl KvRead for InFlightKv<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(id) = state_id(key)
            && let Some(r) = self.memory(id)
        {
            return Ok(Some(r));
        }
        self.inner.get(key)
    }

    /// The engine's records merged with memory's, which win: a record memory holds is newer
    /// than the engine's, and a record memory let go of was written to (or removed from)
    /// the engine in the same transaction.
    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
        out: &mut Vec<Entry>,
    ) -> Result<(), StoreError> {
        scan_merged(
            &*self.inner,
            (start, end),
            limit,
            self.held_between(start, end),
            out,
        )
    }

    fn last_key(&self, start: &[u8], end: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let held_last = self
            .held_between(start, end)
            .and_then(|held| held.into_iter().map(|(k, _)| k).max());
        last_key_merged(&*self.inner, (start, end), held_last)
    }
}

impl Kv for InFlightKv<'_> {
    // Other keys go on as the same call: a layer below may implement `replace` / `take` as
    // a `get` plus a write, so turning a put into a replace would cost a read.
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        if state_id(key).is_none() {
            return self.inner.put(key, value);
        }
        self.put_owned(key, value.to_vec())
    }

    fn put_owned(&mut self, key: &[u8], value: Vec<u8>) -> Result<(), StoreError> {
        let Some(id) = state_id(key) else {
            return self.inner.put_owned(key, value);
        };
        match self.kept_as(&value) {
            Some(kind) => {
                self.keep(id, value, kind);
                Ok(())
            }
            None => {
                self.forget(id);
                self.inner.put_owned(key, value)
            }
        }
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), StoreError> {
        if let Some(id) = state_id(key) {
            self.forget(id);
        }
        self.inner.delete(key)
    }

    fn replace(&mut self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(id) = state_id(key) else {
            return self.inner.replace(key, value);
        };
        if let Some(kind) = self.kept_as(value) {
            let old = self.memory(id);
            self.keep(id, value.to_vec(), kind);
            // Only the in-memory record is reported; callers never look at a state
            // record's old value.
            return Ok(old);
        }
        let old = self.forget(id);
        if old.is_some() {
            self.inner.put(key, value)?;
            return Ok(old);
        }
        self.inner.replace(key, value)
    }

    fn take(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(id) = state_id(key) else {
            return self.inner.take(key);
        };
        if self.in_memory(id) {
            let old = self.forget(id);
            self.inner.delete(key)?;
            return Ok(old);
        }
        self.inner.take(key)
    }

    /// Key by key through this layer where memory holds a record of the range (each leaves
    /// memory and the engine); else the engine's own pass.
    fn take_range(
        &mut self,
        start: &[u8],
        end: &[u8],
        limit: usize,
        out: &mut Vec<Entry>,
    ) -> Result<(), StoreError> {
        if self.held_between(start, end).is_some() {
            return take_each(self, start, end, limit, out);
        }
        self.inner.take_range(start, end, limit, out)
    }

    pass_retire_through!(inner);
}

/// A reader's view: committed in-memory state records over a read transaction's.
pub(crate) struct InFlightRead<'a> {
    pub(crate) inner: &'a dyn KvRead,
    pub(crate) committed: &'a InFlight,
}

impl InFlightRead<'_> {
    /// A message as a reader outside the writer sees it, and whether to read again with a
    /// newer snapshot. The snapshot is taken before the in-memory records are looked at, and
    /// the writer changes them just after its commit; so a lease that ended (or began) in
    /// between leaves the snapshot's record from before the lease with no in-memory record
    /// over it: a sent message would read as queued. A waiting message has a ready key; one
    /// without (in this snapshot) was leased in it, and a newer snapshot tells how it went
    /// on. (A paused account's parked messages have none either: the caller reads again a
    /// bounded number of times.)
    pub(crate) fn load(&self, id: MessageId) -> Result<(Option<Message>, bool), StoreError> {
        let Some(m) = ops::load(self, id)? else {
            return Ok((None, false));
        };
        let waiting = m.waits_in_ready_queue();
        let stale = waiting
            && self
                .inner
                .get(&keys::ready(&m.channel, m.lane, m.due_ms, m.id))?
                .is_none();
        Ok((Some(m), stale))
    }
}

impl KvRead for InFlightRead<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(id) = state_id(key)
            && let Some(r) = self.committed.get(id)
        {
            return Ok(Some(r));
        }
        self.inner.get(key)
    }

    // No reader scans state records (only the writer's purge does, through `InFlightKv`).
    pass_scans_through!(inner);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::backend::MapKv as Map;
    use crate::store::id::MessageId;
    use crate::store::model::{Message, MessageState, Payload};

    fn record(state: MessageState) -> Vec<u8> {
        let mut m = Message::new(
            MessageId(7),
            "acme",
            "+861",
            Payload::Text {
                text: "hi".into(),
                encoding: Default::default(),
            },
            "smsc1",
            1,
            1,
        );
        m.state = state;
        codec::encode_state(&m)
    }

    #[test]
    fn with_the_redo_log_every_record_waits_for_a_durable_commit_and_outlives_it_by_one() {
        let id = MessageId(7);
        let key = keys::state(id);
        let (leased, sent, delivered) = (
            record(MessageState::InFlight),
            record(MessageState::Sent),
            record(MessageState::Delivered),
        );
        let mut engine = Map::default();
        let committed = InFlight::default();
        let write = |engine: &mut Map, value: &[u8]| {
            let mut kv = InFlightKv::new(engine, &committed, true);
            kv.put(&key, value).unwrap();
            committed.apply(kv.into_pending());
        };
        let read = |engine: &Map| {
            InFlightRead {
                inner: engine,
                committed: &committed,
            }
            .get(&key)
            .unwrap()
        };
        let durable_commit = |engine: &mut Map| {
            committed.flush_into(engine).unwrap();
            committed.flushed();
        };

        // The lease, then the submit response: neither reaches the engine.
        write(&mut engine, &leased);
        write(&mut engine, &sent);
        assert_eq!((engine.puts, read(&engine)), (0, Some(sent.clone())));
        // A durable commit writes the sent record, which stays readable from memory.
        durable_commit(&mut engine);
        assert_eq!(engine.map.get(&key[..]), Some(&sent));
        assert_eq!(committed.len(), 1);
        // The receipt's record replaces it in memory; the next durable commit writes it.
        write(&mut engine, &delivered);
        assert_eq!(engine.map.get(&key[..]), Some(&sent));
        assert_eq!(read(&engine), Some(delivered.clone()));
        durable_commit(&mut engine);
        assert_eq!(engine.map.get(&key[..]), Some(&delivered));
        assert_eq!(committed.len(), 1);
        // One durable commit later, memory lets it go; a bare lease is never written.
        durable_commit(&mut engine);
        assert_eq!(committed.len(), 0);
        assert_eq!(engine.puts, 2);
        write(&mut engine, &leased);
        durable_commit(&mut engine);
        assert_eq!((engine.puts, committed.len()), (2, 1));
    }

    /// A purge's pass over a range of state records sees memory's over the engine's, and
    /// taking the range takes both: what memory holds leaves memory and the engine, and a
    /// range memory holds nothing of goes to the engine's own pass.
    #[test]
    fn a_range_of_state_records_merges_memory_over_the_engine() {
        let (engine_rec, memory_rec, newest) = (
            record(MessageState::Sent),
            record(MessageState::Delivered),
            record(MessageState::Failed),
        );
        let mut engine = Map::default();
        for id in 1..=10u64 {
            engine
                .put(&keys::state(MessageId(id)), &engine_rec)
                .unwrap();
        }
        let committed = InFlight::default();
        let mut kv = InFlightKv::new(&mut engine, &committed, true);
        for id in [3u64, 5] {
            kv.put(&keys::state(MessageId(id)), &memory_rec).unwrap();
        }
        committed.apply(kv.into_pending());
        // This transaction: 7 newer in memory, 5 removed.
        let mut kv = InFlightKv::new(&mut engine, &committed, true);
        kv.put(&keys::state(MessageId(7)), &newest).unwrap();
        kv.delete(&keys::state(MessageId(5))).unwrap();
        let range = |a: u64, b: u64| (keys::state(MessageId(a)), keys::state(MessageId(b)));
        let ids = |entries: &[Entry]| -> Vec<u64> {
            entries.iter().filter_map(|(k, _)| state_id(k)).collect()
        };

        let (a, b) = range(2, 9);
        let mut seen = Vec::new();
        kv.scan(&a, &b, 100, &mut seen).unwrap();
        assert_eq!(ids(&seen), [2, 3, 4, 6, 7, 8]);
        let value = |id: u64| {
            seen.iter()
                .find(|(k, _)| state_id(k) == Some(id))
                .unwrap()
                .1
                .clone()
        };
        assert_eq!(
            (value(2), value(3), value(7)),
            (engine_rec.clone(), memory_rec.clone(), newest.clone())
        );
        let mut first = Vec::new();
        kv.scan(&a, &b, 2, &mut first).unwrap();
        assert_eq!(ids(&first), [2, 3], "a limit takes the first of the union");
        let (all_a, all_b) = range(0, 100);
        assert_eq!(
            kv.last_key(&all_a, &all_b).unwrap(),
            Some(keys::state(MessageId(10)).to_vec())
        );

        let (a, b) = range(3, 8);
        let mut taken = Vec::new();
        kv.take_range(&a, &b, 100, &mut taken).unwrap();
        assert_eq!(ids(&taken), [3, 4, 6, 7]);
        // Memory holds none of 8..: the engine's pass.
        let (a, b) = range(9, 100);
        let mut taken = Vec::new();
        kv.take_range(&a, &b, 100, &mut taken).unwrap();
        assert_eq!(ids(&taken), [9, 10]);
        let mut left = Vec::new();
        kv.scan(&all_a, &all_b, 100, &mut left).unwrap();
        assert_eq!(ids(&left), [1, 2, 8]);
        committed.apply(kv.into_pending());
        assert_eq!(committed.len(), 0, "what was taken left memory");
        let engine_ids: Vec<u64> = engine.map.keys().filter_map(|k| state_id(k)).collect();
        assert_eq!(engine_ids, [1, 2, 8], "and the engine");
    }

    #[test]
    fn an_in_flight_record_stays_in_memory_until_a_later_one_replaces_it() {
        let id = MessageId(7);
        let key = keys::state(id);
        let queued = record(MessageState::Queued);
        let leased = record(MessageState::InFlight);
        let sent = record(MessageState::Sent);
        let mut engine = Map::default();
        engine.put(&key, &queued).unwrap();
        let committed = InFlight::default();

        // The lease: memory only, the engine keeps the queued record.
        let mut kv = InFlightKv::new(&mut engine, &committed, false);
        kv.put(&key, &leased).unwrap();
        assert_eq!(kv.get(&key).unwrap(), Some(leased.clone()));
        let pending = kv.into_pending();
        assert_eq!(engine.get(&key).unwrap(), Some(queued.clone()));
        // Not committed yet: readers see the engine.
        let read = InFlightRead {
            inner: &engine,
            committed: &committed,
        };
        assert_eq!(read.get(&key).unwrap(), Some(queued.clone()));
        committed.apply(pending);
        let read = InFlightRead {
            inner: &engine,
            committed: &committed,
        };
        assert_eq!(read.get(&key).unwrap(), Some(leased.clone()));

        // A transaction that fails drops its changes: memory keeps the lease.
        let mut kv = InFlightKv::new(&mut engine, &committed, false);
        kv.put(&key, &sent).unwrap();
        drop(kv);
        assert_eq!(committed.len(), 1);

        // The submit response: to the engine, out of memory.
        let mut kv = InFlightKv::new(&mut engine, &committed, false);
        kv.put(&key, &sent).unwrap();
        assert_eq!(kv.get(&key).unwrap(), Some(sent.clone()));
        committed.apply(kv.into_pending());
        assert_eq!(committed.len(), 0);
        assert_eq!(engine.get(&key).unwrap(), Some(sent));

        // A delete of an in-memory record reaches the engine too.
        let mut kv = InFlightKv::new(&mut engine, &committed, false);
        kv.put(&key, &leased).unwrap();
        kv.delete(&key).unwrap();
        assert_eq!(kv.get(&key).unwrap(), None);
        committed.apply(kv.into_pending());
        assert_eq!(committed.len(), 0);
        assert_eq!(engine.get(&key).unwrap(), None);

        // Other keys pass through untouched.
        let mut kv = InFlightKv::new(&mut engine, &committed, false);
        kv.put(b"\x02other", &leased).unwrap();
        assert!(kv.into_pending().is_empty());
        assert_eq!(engine.get(b"\x02other").unwrap(), Some(leased));
    }

    mod store {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

        use crate::store::{
            Backend, Kv, KvRead, Lane, Message, MessageId, MessageState, Op, OpResult, PartState,
            Payload, RedbBackend, Store, StoreError, WriterConfig, codec, keys,
        };

        const CH: &str = "smsc1";

        fn open(dir: &std::path::Path) -> Store<RedbBackend> {
            Store::open(RedbBackend::open(dir).unwrap(), WriterConfig::default(), 0).unwrap()
        }

        /// `open` with the redo log under `dir`.
        fn open_logged(dir: &std::path::Path) -> Store<RedbBackend> {
            Store::open_logged(
                RedbBackend::open(dir).unwrap(),
                WriterConfig::default(),
                0,
                &dir.join("content"),
                &dir.join("log"),
            )
            .unwrap()
        }

        fn message(id: MessageId) -> Message {
            let payload = Payload::Text {
                text: "x".into(),
                encoding: Default::default(),
            };
            Message::new(id, "acme", "+861", payload, CH, 0, 0)
        }

        fn lease(store: &Store<RedbBackend>, limit: usize) -> Vec<Message> {
            futures::executor::block_on(store.lease(CH, Lane::Notification, 0, limit, 1000))
                .unwrap()
                .messages
        }

        /// With the redo log, the lease keys and the sent and final records are still in the
        /// writer's memory; a recount and a stop's preview see them there.
        #[test]
        fn readers_see_what_the_logged_writer_holds_in_memory() {
            let dir = tempfile::tempdir().unwrap();
            let store = open_logged(dir.path());
            let msgs: Vec<Message> = (0..3)
                .map(|_| {
                    let mut m = message(store.ids().next(0));
                    m.tags.insert("task".into(), "t1".into());
                    m
                })
                .collect();
            futures::executor::block_on(store.insert_batch(msgs)).unwrap();
            let leased = lease(&store, 3);
            assert_eq!(leased.len(), 3);
            let submitted = |m: &Message, cid: &str| Op::Submitted {
                id: m.id,
                part: 1,
                parts: 1,
                center_id: cid.into(),
                now_ms: 5,
            };
            let receipt = Op::Receipt {
                channel: CH.into(),
                center_id: "C0".into(),
                part_state: PartState::Delivered,
                stat: "DELIVRD".into(),
                err: "000".into(),
                now_ms: 6,
            };
            store
                .submit_blocking(vec![submitted(&leased[0], "C0"), receipt])
                .unwrap();
            store
                .submit_blocking(vec![submitted(&leased[1], "C1")])
                .unwrap();
            // Nothing of it is in the engine yet: no durable commit came since.
            assert_eq!(store.stats().checkpoints(), 0);
            let state = |i: usize| store.get(leased[i].id).unwrap().unwrap().state;
            assert_eq!(
                [state(0), state(1), state(2)],
                [
                    MessageState::Delivered,
                    MessageState::Sent,
                    MessageState::InFlight
                ]
            );
            // Only the one still in flight would be stopped.
            assert_eq!(store.would_cancel("acme", "task", "t1").unwrap(), Ok(1));
            let recount = store.recount_queue_depths().unwrap();
            assert_eq!(recount.in_flight(CH), 1);
            assert_eq!(store.queue_depths().in_flight(CH), 1);
        }

        /// The receipt's answer: it ended the message as delivered.
        fn assert_delivered(answer: &OpResult) {
            assert!(
                matches!(
                    answer,
                    OpResult::ReceiptApplied {
                        state: MessageState::Delivered,
                        ended_in_ms: Some(_)
                    }
                ),
                "{answer:?}"
            );
        }

        /// `id` is back in its queue, not in flight, with the queue counters equal to a
        /// recount and `ready` messages waiting.
        fn assert_queued_again<B: Backend>(store: &Store<B>, id: MessageId, ready: u64) {
            let m = store.get(id).unwrap().unwrap();
            assert_eq!(m.state, MessageState::Queued);
            assert_eq!(m.lease_until_ms, None);
            assert_eq!(
                store.queue_depths().without_zeros(),
                store.recount_queue_depths().unwrap()
            );
            assert_eq!(store.queue_depths().ready(CH, Lane::Notification), ready);
        }

        fn deliver<B: Backend>(store: &Store<B>, id: MessageId, cid: &str) -> Vec<OpResult> {
            store
                .submit_blocking(vec![
                    Op::Submitted {
                        id,
                        part: 1,
                        parts: 1,
                        center_id: cid.into(),
                        now_ms: 5,
                    },
                    Op::Receipt {
                        channel: CH.into(),
                        center_id: cid.into(),
                        part_state: PartState::Delivered,
                        stat: "DELIVRD".into(),
                        err: "000".into(),
                        now_ms: 6,
                    },
                ])
                .unwrap()
        }

        /// A lease leaves the durable records as they were before it (no state record at
        /// all for a message fresh from insert) and keeps only its lease key; after the
        /// process is gone, open gives the message back to its queue.
        #[test]
        fn a_lease_lives_in_memory_and_its_key_brings_the_message_back_after_a_restart() {
            let dir = tempfile::tempdir().unwrap();
            let store = open(dir.path());
            let ids = [store.ids().next(0), store.ids().next(0)];
            futures::executor::block_on(
                store.insert_batch(ids.iter().map(|&id| message(id)).collect()),
            )
            .unwrap();
            let got = lease(&store, 1);
            assert_eq!(got.len(), 1);
            let leased = got[0].id;
            let m = store.get(leased).unwrap().unwrap();
            assert_eq!(m.state, MessageState::InFlight);
            assert_eq!(m.lease_until_ms, Some(1000));
            assert_eq!(store.inner.memory.in_flight.len(), 1);
            // A durable commit after it makes the relaxed lease durable too.
            futures::executor::block_on(store.insert_batch(vec![message(store.ids().next(0))]))
                .unwrap();
            drop(store);

            let backend = RedbBackend::open(dir.path()).unwrap();
            backend
                .read(|kv| {
                    assert_eq!(kv.get(&keys::state(leased))?, None, "no state record");
                    let mut found = Vec::new();
                    kv.scan(&[keys::LEASE], &[keys::LEASE + 1], 10, &mut found)?;
                    assert_eq!(found.len(), 1, "the lease key is durable");
                    assert_eq!(keys::be_u64(&found[0].0, 9), Some(leased.0));
                    Ok(())
                })
                .unwrap();
            drop(backend);

            let store = open(dir.path());
            assert_queued_again(&store, leased, 3);
            let again = lease(&store, 10);
            assert_eq!(again.len(), 3, "every message is sendable again");
            for (i, m) in again.iter().enumerate() {
                let r = deliver(&store, m.id, &format!("C{i}"));
                assert_delivered(&r[1]);
            }
            assert_eq!(
                store.inner.memory.in_flight.len(),
                0,
                "nothing left in memory"
            );
            assert_eq!(
                store.queue_depths().without_zeros(),
                store.recount_queue_depths().unwrap()
            );
        }

        /// redb whose next relaxed commit can be made to vanish after it reported success,
        /// as a reopen after an I/O error does with commits that were not durable yet: the
        /// commit is rolled back and the reopen count goes up.
        struct Lossy {
            inner: RedbBackend,
            lose_next_relaxed: AtomicBool,
            reopens: AtomicU64,
        }

        impl Backend for Lossy {
            fn name(&self) -> &'static str {
                "lossy"
            }

            fn write<R>(
                &self,
                f: impl FnOnce(&mut dyn Kv) -> Result<R, StoreError>,
            ) -> Result<R, StoreError> {
                self.inner.write(f)
            }

            fn write_relaxed<R>(
                &self,
                f: impl FnOnce(&mut dyn Kv) -> Result<R, StoreError>,
            ) -> Result<R, StoreError> {
                if !self.lose_next_relaxed.swap(false, Ordering::SeqCst) {
                    return self.inner.write_relaxed(f);
                }
                let mut out = None;
                let rolled_back = self.inner.write(|kv| {
                    out = Some(f(kv));
                    Err::<(), _>(StoreError::Backend("rolled back".into()))
                });
                assert!(rolled_back.is_err());
                self.reopens.fetch_add(1, Ordering::SeqCst);
                out.expect("the transaction ran")
            }

            fn read<R>(
                &self,
                f: impl FnOnce(&dyn KvRead) -> Result<R, StoreError>,
            ) -> Result<R, StoreError> {
                self.inner.read(f)
            }

            fn reopens(&self) -> u64 {
                self.reopens.load(Ordering::SeqCst)
            }
        }

        /// A relaxed lease that the engine loses (reopened after an I/O error before a
        /// durable commit) leaves no lease in memory: the message reads as queued, the queue
        /// counters are the engine's, and it is leased and delivered once.
        #[test]
        fn a_lease_the_engine_lost_in_a_reopen_is_not_kept_in_memory() {
            let dir = tempfile::tempdir().unwrap();
            let backend = Lossy {
                inner: RedbBackend::open(dir.path()).unwrap(),
                lose_next_relaxed: AtomicBool::new(false),
                reopens: AtomicU64::new(0),
            };
            let store = Store::open(backend, WriterConfig::default(), 0).unwrap();
            let insert = |n: usize| {
                let batch = (0..n).map(|_| message(store.ids().next(0))).collect();
                futures::executor::block_on(store.insert_batch(batch)).unwrap();
            };
            let lease = |limit: usize| {
                futures::executor::block_on(store.lease(CH, Lane::Notification, 0, limit, 1000))
                    .unwrap()
                    .messages
            };
            insert(2);
            store
                .inner
                .backend
                .lose_next_relaxed
                .store(true, Ordering::SeqCst);
            let lost = lease(1);
            assert_eq!(lost.len(), 1, "the lease reported success");
            let lost = lost[0].id;
            // The next commit runs on the reopened engine.
            insert(1);
            assert_eq!(store.inner.memory.in_flight.len(), 0, "no phantom lease");
            assert_queued_again(&store, lost, 3);

            let again = lease(10);
            assert_eq!(again.len(), 3, "the lost lease's message is sendable again");
            assert!(again.iter().any(|m| m.id == lost));
            for (i, m) in again.iter().enumerate() {
                let r = deliver(&store, m.id, &format!("C{i}"));
                assert_delivered(&r[1]);
            }
            assert_eq!(store.inner.memory.in_flight.len(), 0);
            assert_eq!(
                store.queue_depths().without_zeros(),
                store.recount_queue_depths().unwrap()
            );
        }

        /// A multipart message with one part submitted and receipted is still in flight, but
        /// its record now holds facts the center was answered for: it goes to the engine, so
        /// a crash keeps the part's center id and receipt.
        #[test]
        fn a_partly_submitted_lease_is_written_to_the_engine() {
            let dir = tempfile::tempdir().unwrap();
            let store = open(dir.path());
            let id = store.ids().next(0);
            futures::executor::block_on(store.insert_batch(vec![message(id)])).unwrap();
            assert_eq!(lease(&store, 1).len(), 1);
            assert_eq!(store.inner.memory.in_flight.len(), 1);
            let r = store
                .submit_blocking(vec![
                    Op::Submitted {
                        id,
                        part: 1,
                        parts: 2,
                        center_id: "P1".into(),
                        now_ms: 5,
                    },
                    Op::Receipt {
                        channel: CH.into(),
                        center_id: "P1".into(),
                        part_state: PartState::Delivered,
                        stat: "DELIVRD".into(),
                        err: "000".into(),
                        now_ms: 6,
                    },
                ])
                .unwrap();
            assert_eq!(r[0], OpResult::Updated(MessageState::InFlight));
            assert_eq!(
                store.inner.memory.in_flight.len(),
                0,
                "no longer a bare lease"
            );
            let m = store.get(id).unwrap().unwrap();
            assert_eq!(m.state, MessageState::InFlight);
            assert_eq!(m.receipts.len(), 1);
            drop(store);

            let store = open(dir.path());
            let m = store.get(id).unwrap().unwrap();
            assert_eq!(m.state, MessageState::Queued, "recovered at open");
            assert_eq!(m.parts[0].center_id.as_deref(), Some("P1"));
            assert_eq!(m.receipts.len(), 1, "the part's receipt survived");
            assert_eq!(store.by_center(CH, "P1").unwrap(), Some((id, 1)));
        }

        /// A center-id entry serves its part until the message ends; then it stays readable
        /// from memory for a while, but no durable commit writes it: after a restart a
        /// repeated receipt for it is held like an early one. One still waiting for its
        /// receipt reaches the engine with the durable commit, as before.
        #[test]
        fn an_ended_message_leaves_its_center_id_out_of_the_engine() {
            let dir = tempfile::tempdir().unwrap();
            let repeat = |store: &Store<RedbBackend>| {
                store
                    .submit_blocking(vec![Op::Receipt {
                        channel: CH.into(),
                        center_id: "C0".into(),
                        part_state: PartState::Delivered,
                        stat: "DELIVRD".into(),
                        err: "000".into(),
                        now_ms: 7,
                    }])
                    .unwrap()
                    .remove(0)
            };
            let store = open_logged(dir.path());
            let ids = [store.ids().next(0), store.ids().next(0)];
            futures::executor::block_on(store.insert_batch(ids.map(message).to_vec())).unwrap();
            assert_eq!(lease(&store, 2).len(), 2);
            assert_delivered(&deliver(&store, ids[0], "C0")[1]);
            store
                .submit_blocking(vec![Op::Submitted {
                    id: ids[1],
                    part: 1,
                    parts: 1,
                    center_id: "C1".into(),
                    now_ms: 5,
                }])
                .unwrap();
            assert_eq!(store.by_center(CH, "C0").unwrap(), Some((ids[0], 1)));
            assert_eq!(repeat(&store), OpResult::Stale(MessageState::Delivered));
            drop(store);

            let store = open_logged(dir.path());
            let in_engine = |cid: &str| {
                store
                    .inner
                    .backend
                    .read(|kv| kv.get(&keys::center(CH, cid)))
                    .unwrap()
            };
            assert_eq!(in_engine("C0"), None);
            assert_eq!(
                in_engine("C1").as_deref(),
                Some(&keys::center_value(ids[1], 1)[..])
            );
            assert_eq!(store.by_center(CH, "C0").unwrap(), None);
            assert_eq!(store.by_center(CH, "C1").unwrap(), Some((ids[1], 1)));
            assert_eq!(repeat(&store), OpResult::ReceiptHeld);
        }

        /// A lookup says in flight for a leased message, and what the engine says once the
        /// lease ended.
        #[test]
        fn a_lookup_follows_the_lease() {
            let dir = tempfile::tempdir().unwrap();
            let store = open(dir.path());
            let id = store.ids().next(0);
            futures::executor::block_on(store.insert_batch(vec![message(id)])).unwrap();
            assert_eq!(store.get(id).unwrap().unwrap().state, MessageState::Queued);
            assert_eq!(lease(&store, 1).len(), 1);
            let by_number = store.by_destination("+861", 10).unwrap();
            assert_eq!(by_number.len(), 1);
            assert_eq!(by_number[0].state, MessageState::InFlight);
            assert_eq!(
                store.get(id).unwrap().unwrap().state,
                MessageState::InFlight
            );
            store
                .submit_blocking(vec![Op::Submitted {
                    id,
                    part: 1,
                    parts: 1,
                    center_id: "C1".into(),
                    now_ms: 5,
                }])
                .unwrap();
            assert_eq!(store.get(id).unwrap().unwrap().state, MessageState::Sent);
            assert_eq!(store.inner.memory.in_flight.len(), 0);
        }

        /// A data directory written by the layout before this one: every message a body v1
        /// record plus a state record, a lease with its in-flight state record on disk.
        #[test]
        fn a_directory_of_the_previous_layout_opens_and_its_messages_go_on() {
            let dir = tempfile::tempdir().unwrap();
            let (queued, leased) = (MessageId(1 << 20), MessageId(2 << 20));
            {
                let backend = RedbBackend::open(dir.path()).unwrap();
                backend
                    .write(|kv| {
                        let mut q = message(queued);
                        q.client_ref = Some("r1".into());
                        kv.put(&keys::idem("acme", "r1"), &queued.to_be_bytes())?;
                        kv.put(&keys::message(queued), &codec::encode_body(&q))?;
                        kv.put(&keys::state(queued), &codec::encode_state(&q))?;
                        kv.put(&keys::ready(CH, q.lane, q.due_ms, queued), &[])?;
                        let mut l = message(leased);
                        kv.put(&keys::message(leased), &codec::encode_body(&l))?;
                        l.state = MessageState::InFlight;
                        l.lease_until_ms = Some(777);
                        kv.put(&keys::state(leased), &codec::encode_state(&l))?;
                        kv.put(&keys::lease(777, leased), CH.as_bytes())?;
                        Ok(())
                    })
                    .unwrap();
            }
            let store = open(dir.path());
            for id in [queued, leased] {
                let m = store.get(id).unwrap().unwrap();
                assert_eq!(m.state, MessageState::Queued, "{id}");
                assert_eq!(m.lease_until_ms, None);
            }
            assert_eq!(
                store.queue_depths().without_zeros(),
                store.recount_queue_depths().unwrap()
            );
            // The old idempotency key still answers a resend.
            let mut again = message(store.ids().next(0));
            again.client_ref = Some("r1".into());
            assert_eq!(
                futures::executor::block_on(store.insert_batch(vec![again])).unwrap(),
                [OpResult::Duplicate(queued)]
            );
            let got = lease(&store, 10);
            assert_eq!(got.len(), 2);
            for (i, m) in got.iter().enumerate() {
                let r = deliver(&store, m.id, &format!("C{i}"));
                assert_delivered(&r[1]);
            }
            assert_eq!(futures::executor::block_on(store.purge(7, 10)).unwrap(), 2);
            assert_eq!(store.get(queued).unwrap(), None);
            assert_eq!(
                store.by_center(CH, "C0").unwrap(),
                None,
                "center ids purged"
            );
            let idem = store
                .inner
                .backend
                .read(|kv| kv.get(&keys::idem("acme", "r1")))
                .unwrap();
            assert_eq!(idem, None, "idempotency key purged");
        }
    }
}

//! Message bodies a quiet writer's inserts wrote, kept in its memory so that their lease
//! reads them without the engine.
//!
//! Why: a message's body record is written once, by its insert, and never changed (its state
//! lives in a record of its own, `ops::save`). With no backlog the lease comes within
//! milliseconds of the insert, and reading the body back was a search from the root of
//! redb's B-tree per message. A busy writer notes nothing: behind a backlog those bodies
//! would only push each other out (at full speed that cost 0.9 µs per message and saved
//! nothing). Bodies read from the engine are not noted either: the op that reads one keeps
//! the message decoded for its next op (`live.rs`), and a lease reads a run of bodies in one
//! pass (`ops::RecordRun`), so a copy here would only be made and dropped.
//!
//! Invariants:
//! - only message body keys (`keys::MESSAGE`) are kept, and only values a transaction that
//!   committed wrote as a new body ([`BodyCache::apply`]): a transaction that failed may have
//!   made writes the engine does not have;
//! - every write of a body key through the layer (an insert's replace, a duplicate's put
//!   back, a purge's delete, a take) drops the key from memory before it reaches the engine,
//!   so memory never holds a value the engine no longer has. Only the writer writes bodies,
//!   and only through this layer;
//! - bounded: two generations of at most [`CAPACITY`]` / 2` bodies each; the older goes
//!   when the younger fills, and a body read from the older moves to the younger;
//! - emptied when the engine was reopened (it went back to its last durable commit, and a
//!   replay that skips a batch would not make its body again).

use std::cell::RefCell;
use std::sync::{Mutex, MutexGuard, PoisonError};

use super::backend::{
    Kv, KvRead, forget_before_writes, pass_retire_through, pass_scans_through, take_range_noting,
};
use super::error::StoreError;
use super::generations::Generations;
use super::id::IdMap;
use super::keys;

/// Most bodies kept. A quiet writer leases what it inserts within milliseconds, so this
/// covers the time many times over; a body is a few hundred bytes, so this is at most about
/// 10 MB. A lease that comes later than that reads the engine.
pub(crate) const CAPACITY: usize = 32_768;

/// Bodies inserted by one transaction (or read again from the older generation), by
/// message id (the key's last eight bytes).
pub(crate) type Pending = IdMap<Vec<u8>>;

/// The message id of a body key, `None` for any other key.
fn body_id(key: &[u8]) -> Option<u64> {
    keys::id_in(keys::MESSAGE, key)
}

/// The committed bodies.
#[derive(Debug, Default)]
pub(crate) struct BodyCache {
    memory: Mutex<Generations<Vec<u8>>>,
}

impl BodyCache {
    fn lock(&self) -> MutexGuard<'_, Generations<Vec<u8>>> {
        self.memory.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes in the bodies noted by a transaction that committed against the engine's
    /// `reopens`-th opening.
    pub(crate) fn apply(&self, pending: Pending, reopens: u64) {
        if pending.is_empty() {
            return;
        }
        let mut g = self.lock();
        g.check_reopens(reopens);
        for (id, body) in pending {
            g.insert(id, body, CAPACITY);
        }
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

/// The writer's transaction with the bodies a quiet writer inserted lately answered from
/// memory.
pub(crate) struct BodyCacheKv<'a> {
    inner: &'a mut dyn Kv,
    committed: MutexGuard<'a, Generations<Vec<u8>>>,
    /// Bodies noted in this transaction (reads take `&self`).
    pending: RefCell<Pending>,
    /// Note the bodies inserts write (a quiet writer).
    note_new: bool,
}

impl<'a> BodyCacheKv<'a> {
    /// The layer over `inner`, a transaction against the engine's `reopens`-th opening;
    /// `note_new`: keep the new bodies it writes too.
    pub(crate) fn new(
        inner: &'a mut dyn Kv,
        memory: &'a BodyCache,
        reopens: u64,
        note_new: bool,
    ) -> Self {
        let mut committed = memory.lock();
        committed.check_reopens(reopens);
        Self {
            inner,
            committed,
            pending: RefCell::new(Pending::default()),
            note_new,
        }
    }

    /// The bodies this transaction noted, for [`BodyCache::apply`] after its commit.
    pub(crate) fn into_pending(self) -> Pending {
        self.pending.into_inner()
    }

    /// Drops a body about to be written from memory.
    fn forget(&mut self, key: &[u8]) {
        if let Some(id) = body_id(key) {
            self.committed.forget(id);
            self.pending.get_mut().remove(&id);
        }
    }
}

impl KvRead for BodyCacheKv<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(id) = body_id(key) else {
            return self.inner.get(key);
        };
        if let Some(body) = self.pending.borrow().get(&id) {
            return Ok(Some(body.clone()));
        }
        if let Some(body) = self.committed.get(id) {
            let body = body.clone();
            // Read again: it moves to the younger generation.
            if !self.committed.is_young(id) {
                self.pending.borrow_mut().insert(id, body.clone());
            }
            return Ok(Some(body));
        }
        // Not noted: the op that read it keeps the message decoded for its next op
        // (`live.rs`), which a copy of its bytes here would only duplicate.
        self.inner.get(key)
    }

    pass_scans_through!(inner);
}

impl Kv for BodyCacheKv<'_> {
    forget_before_writes!(inner, forget);

    /// An insert's write of a new body is noted when the writer is quiet (`note_new`).
    fn replace(&mut self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.forget(key);
        let old = self.inner.replace(key, value)?;
        if self.note_new
            && old.is_none()
            && let Some(id) = body_id(key)
        {
            self.pending.get_mut().insert(id, value.to_vec());
        }
        Ok(old)
    }

    take_range_noting!(inner, |this, k, _| this.forget(k));

    pass_retire_through!(inner);
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::store::backend::MapKv;
    use crate::store::id::MessageId;

    /// Body key `n` (`f` 0), or state key `n` (`f` 1), which the layer passes through.
    fn key(f: u8, n: u8) -> Vec<u8> {
        let id = MessageId(u64::from(n));
        if f == 0 {
            keys::message(id).to_vec()
        } else {
            keys::state(id).to_vec()
        }
    }

    #[derive(Debug, Clone)]
    enum Step {
        Get(u8, u8),
        Put(u8, u8, u8),
        Replace(u8, u8, u8),
        Delete(u8, u8),
        Take(u8, u8),
        TakeRange(u8, u8, usize),
        Commit,
        /// Fail the transaction: the engine and the pending reads go back.
        Abort,
        /// The engine is reopened at its state as of the last commit, with another value
        /// for key `n` (a replay that skipped a batch).
        Reopen(u8, u8),
    }

    fn step() -> impl Strategy<Value = Step> {
        let fam = 0u8..2;
        let n = 0u8..6;
        prop_oneof![
            6 => (fam.clone(), n.clone()).prop_map(|(f, n)| Step::Get(f, n)),
            3 => (fam.clone(), n.clone(), any::<u8>()).prop_map(|(f, n, v)| Step::Put(f, n, v)),
            2 => (fam.clone(), n.clone(), any::<u8>()).prop_map(|(f, n, v)| Step::Replace(f, n, v)),
            2 => (fam.clone(), n.clone()).prop_map(|(f, n)| Step::Delete(f, n)),
            2 => (fam.clone(), n.clone()).prop_map(|(f, n)| Step::Take(f, n)),
            1 => (fam, 0u8..6, 1usize..4).prop_map(|(f, n, l)| Step::TakeRange(f, n, l)),
            3 => Just(Step::Commit),
            1 => Just(Step::Abort),
            1 => (n, any::<u8>()).prop_map(|(n, v)| Step::Reopen(n, v)),
        ]
    }

    proptest! {
        /// Every read through the layer answers what the engine holds, across commits,
        /// failed transactions and reopens.
        #[test]
        fn reads_answer_what_the_engine_holds(
            steps in proptest::collection::vec(step(), 1..80),
        ) {
            let memory = BodyCache::default();
            let mut engine = MapKv::default();
            let mut reopens = 0;
            let mut at_begin = engine.map.clone();
            let mut pending = Pending::default();
            for st in steps {
                let mut layer = BodyCacheKv::new(&mut engine, &memory, reopens, true);
                *layer.pending.get_mut() = std::mem::take(&mut pending);
                let model: BTreeMap<Vec<u8>, Vec<u8>> = match st {
                    Step::Get(f, n) => {
                        let got = layer.get(&key(f, n)).unwrap();
                        pending = layer.into_pending();
                        prop_assert_eq!(got, engine.map.get(&key(f, n)).cloned());
                        continue;
                    }
                    Step::Put(f, n, v) => {
                        layer.put(&key(f, n), &[v]).unwrap();
                        pending = layer.into_pending();
                        engine.map.clone()
                    }
                    Step::Replace(f, n, v) => {
                        let before = layer.get(&key(f, n)).unwrap();
                        prop_assert_eq!(layer.replace(&key(f, n), &[v]).unwrap(), before);
                        pending = layer.into_pending();
                        engine.map.clone()
                    }
                    Step::Delete(f, n) => {
                        layer.delete(&key(f, n)).unwrap();
                        pending = layer.into_pending();
                        engine.map.clone()
                    }
                    Step::Take(f, n) => {
                        layer.take(&key(f, n)).unwrap();
                        pending = layer.into_pending();
                        engine.map.clone()
                    }
                    Step::TakeRange(f, n, limit) => {
                        let mut out = Vec::new();
                        layer.take_range(&key(f, n), &key(f, 6), limit, &mut out).unwrap();
                        pending = layer.into_pending();
                        engine.map.clone()
                    }
                    Step::Commit => {
                        memory.apply(layer.into_pending(), reopens);
                        at_begin = engine.map.clone();
                        engine.map.clone()
                    }
                    Step::Abort => {
                        drop(layer);
                        engine.map = at_begin.clone();
                        engine.map.clone()
                    }
                    Step::Reopen(n, v) => {
                        drop(layer);
                        engine.map = at_begin.clone();
                        engine.map.insert(key(0, n), vec![v]);
                        at_begin = engine.map.clone();
                        reopens += 1;
                        engine.map.clone()
                    }
                };
                // Every key, read through a fresh layer over the transaction so far.
                let layer = BodyCacheKv::new(&mut engine, &memory, reopens, true);
                *layer.pending.borrow_mut() = std::mem::take(&mut pending);
                for f in 0..2 {
                    for n in 0..6 {
                        prop_assert_eq!(layer.get(&key(f, n)).unwrap(), model.get(&key(f, n)).cloned());
                    }
                }
                pending = layer.into_pending();
            }
        }
    }

    /// A body read from the engine is not kept; a new body kept is read from memory by the
    /// next transactions, and a write drops it.
    #[test]
    fn a_new_body_is_read_from_memory_until_written_and_a_read_one_is_not_kept() {
        let memory = BodyCache::default();
        let mut engine = MapKv::default();
        let old = keys::message(MessageId(6));
        engine.map.insert(old.to_vec(), b"old".to_vec());
        let layer = BodyCacheKv::new(&mut engine, &memory, 0, true);
        assert_eq!(layer.get(&old).unwrap(), Some(b"old".to_vec()));
        memory.apply(layer.into_pending(), 0);
        assert_eq!(memory.len(), 0);
        let k = keys::message(MessageId(7));
        let mut layer = BodyCacheKv::new(&mut engine, &memory, 0, true);
        layer.replace(&k, b"body").unwrap();
        memory.apply(layer.into_pending(), 0);
        let before = engine.gets.get();
        for _ in 0..3 {
            let layer = BodyCacheKv::new(&mut engine, &memory, 0, true);
            assert_eq!(layer.get(&k).unwrap(), Some(b"body".to_vec()));
            memory.apply(layer.into_pending(), 0);
        }
        assert_eq!(engine.gets.get(), before);
        let mut layer = BodyCacheKv::new(&mut engine, &memory, 0, true);
        layer.delete(&k).unwrap();
        assert_eq!(layer.get(&k).unwrap(), None);
        memory.apply(layer.into_pending(), 0);
        assert_eq!(memory.len(), 0);
    }

    /// A new body written by a quiet writer's insert is kept; a busy writer's is not.
    #[test]
    fn new_bodies_are_kept_only_when_asked() {
        for note_new in [true, false] {
            let memory = BodyCache::default();
            let mut engine = MapKv::default();
            let k = keys::message(MessageId(7));
            let mut layer = BodyCacheKv::new(&mut engine, &memory, 0, note_new);
            assert_eq!(layer.replace(&k, b"body").unwrap(), None);
            memory.apply(layer.into_pending(), 0);
            assert_eq!(memory.len(), usize::from(note_new));
            let before = engine.gets.get();
            let layer = BodyCacheKv::new(&mut engine, &memory, 0, note_new);
            assert_eq!(layer.get(&k).unwrap(), Some(b"body".to_vec()));
            drop(layer);
            assert_eq!(engine.gets.get() - before, usize::from(!note_new));
        }
    }

    /// A body inserted by a transaction that failed is not kept, and a reopen forgets every
    /// body.
    #[test]
    fn failed_inserts_and_reopens_leave_nothing() {
        let memory = BodyCache::default();
        let mut engine = MapKv::default();
        let k = keys::message(MessageId(7));
        let mut layer = BodyCacheKv::new(&mut engine, &memory, 0, true);
        layer.replace(&k, b"body").unwrap();
        drop(layer);
        assert_eq!(memory.len(), 0);
        engine.map.clear();
        let mut layer = BodyCacheKv::new(&mut engine, &memory, 0, true);
        layer.replace(&k, b"body").unwrap();
        memory.apply(layer.into_pending(), 0);
        assert_eq!(memory.len(), 1);
        drop(BodyCacheKv::new(&mut engine, &memory, 1, true));
        assert_eq!(memory.len(), 0);
    }

    /// Memory never holds more than [`CAPACITY`] bodies, and the newest are the ones kept.
    #[test]
    fn memory_is_bounded_and_keeps_the_newest() {
        let memory = BodyCache::default();
        let mut engine = MapKv::default();
        let n = u64::try_from(CAPACITY).unwrap() * 2;
        for id in 0..n {
            let mut layer = BodyCacheKv::new(&mut engine, &memory, 0, true);
            layer.replace(&keys::message(MessageId(id)), &[1]).unwrap();
            memory.apply(layer.into_pending(), 0);
            assert!(memory.len() <= CAPACITY);
        }
        let before = engine.gets.get();
        let layer = BodyCacheKv::new(&mut engine, &memory, 0, true);
        layer.get(&keys::message(MessageId(n - 1))).unwrap();
        drop(layer);
        assert_eq!(engine.gets.get(), before);
    }
}

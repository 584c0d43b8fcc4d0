//! Keys that live from one op to a later one, usually for milliseconds — lease keys (a lease,
//! then its submit response), held receipts (a receipt that overtook its submit response,
//! then that response) and center-id index entries (a submit response, then the receipt that
//! ends its message) — kept in the writer's memory while the redo log is on, and written to
//! the engine only by a durable commit that still finds them.
//!
//! A center-id entry outlives its use: a repeated receipt, or the purge, reads it after its
//! message ended. Rather than removed, it is *retired* when the message ends
//! ([`Kv::retire`](super::backend::Kv::retire)): it stays readable from memory, among the
//! last [`RETIRED_KEPT`] to [`RETIRED_KEPT`] × 2 retired, but no durable commit writes it. So a
//! repeat arriving within that while is still told `Stale`; one after it, or after a restart,
//! finds no entry and is held like an early receipt, which changes the answer only (both
//! ways hold it, `ops::receipt`). One that a durable commit wrote while its message waited for
//! the receipt stays in the engine until purge, as every entry did before.
//!
//! Why: with the redo log, what a crash keeps is the engine's last durable commit plus the
//! log's groups after it, which opening applies again through the same writer code (and so
//! through this layer). A key put and removed between two durable commits therefore never
//! needs to reach the engine. At full speed these keys cost the engine a put and a take per
//! message for the lease key and four writes per held receipt (about four receipts in ten
//! overtake their submit response from the simulator), each a walk of redb's B-tree plus the
//! pages its commit copies; here each is a hash-map insert or remove.
//!
//! Invariants:
//! - only the writer writes these key families. Readers outside it see them only through
//!   [`ShortLived::over`] (`Store::recount_queue_depths`, which counts lease keys), and the
//!   store's open reads them after [`replay_at_open`] wrote the replayed ones out
//!   (`writer.rs`);
//! - memory holds the live keys of these families put since the engine's last durable commit,
//!   each with `in_engine`: whether the engine may hold the key too (then a removal of it goes
//!   to the engine as well), and the retired center-id entries of the last while. A key not
//!   in memory is the engine's business alone;
//! - every durable commit of the logged writer (checkpoint, the commit after a relaxed op that
//!   ended messages, the end of the replay at open) writes every key held, in its own
//!   transaction, before it records the log position; memory lets them go once it committed
//!   ([`ShortLived::flushed`]). So no durable commit claims a log group whose keys it lacks.
//!   Retired entries are the exception, on purpose: nothing needs them after a restart;
//! - a transaction's changes stay pending until it committed ([`ShortLived::apply`]);
//! - after an engine reopen (it went back to its last durable commit) memory is emptied before
//!   the log is applied again ([`ShortLived::clear`]): it held changes after that commit,
//!   which the replay makes again;
//! - off without the redo log: there every relaxed commit becomes durable with the engine's
//!   next durable commit, whoever makes it, so keys must be in the engine.
//!
//! [`replay_at_open`]: super::writer::replay_at_open

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use smallvec::SmallVec;

use super::backend::{
    Kv, KvRead, last_key_merged, pass_scans_through, scan_merged, tag_of, tags_between,
    take_range_unless_kept,
};
use super::error::StoreError;
use super::keys;

/// A held key's bytes, inline up to the usual length of a center-id key (tag, channel,
/// center id) or a lease key: holding, retiring and taking one allocates nothing, where two
/// heap copies (key and value) per held key were about seven allocations a message.
pub(crate) type HeldBytes = SmallVec<[u8; 48]>;

/// A key held in memory.
#[derive(Debug, Clone)]
pub(crate) struct Held {
    /// A lease key's channel name, a center-id entry's id and part, a held receipt.
    value: SmallVec<[u8; 16]>,
    /// The engine may hold the key too (with this or an older value).
    in_engine: bool,
    /// Readable, never written by a durable commit (module docs).
    retired: bool,
}

/// Retired center-id entries kept readable per generation: two generations, so between
/// this many and twice this many of the newest (at 40 k msg/s a few seconds' worth; at a
/// few thousand messages a second, half a minute or more). About 180 bytes each,
/// the hash table's own share included (keys and values inline, [`HeldBytes`]).
pub(crate) const RETIRED_KEPT: usize = 65_536;

/// Keys to values, hashed with a seeded foldhash: a held receipt's key carries the center's
/// id, bytes a peer chose, and std's SipHash was about 2 % of the gateway's samples at full
/// speed across the writer's maps.
pub(crate) type KeyMap<V> = HashMap<HeldBytes, V, foldhash::fast::RandomState>;

/// Changes of one transaction: `Some` now held, `None` no longer held.
pub(crate) type Pending = KeyMap<Option<Held>>;

/// Whether keys of `tag` are held in memory.
fn held_tag(tag: u8) -> bool {
    matches!(
        tag,
        keys::LEASE | keys::EARLY | keys::EARLY_AGE | keys::CENTER
    )
}

/// Whether a key of `tag` is new whenever it is put: a lease key names its lease's end and
/// its message (a message has one lease at a time), and a held receipt's age key its arrival,
/// whose older key is removed first when a receipt is held again. Such a put never finds the
/// key in the engine, so it is not asked. A held receipt's own key repeats (its channel and
/// center id), so one the memory does not hold may be in the engine.
fn fresh_tag(tag: u8) -> bool {
    matches!(tag, keys::LEASE | keys::EARLY_AGE)
}

/// The committed held keys: the live ones, and the retired ones in two generations.
#[derive(Debug, Default)]
pub(crate) struct Committed {
    live: KeyMap<Held>,
    retired: KeyMap<Held>,
    older: KeyMap<Held>,
}

impl Committed {
    /// The key as memory holds it, live before retired. Only center-id entries are ever
    /// retired, so another key (a lease key, a held receipt a submit response looks for) is
    /// not looked for in the retired generations: two probes of tables far larger than the
    /// cache, per lookup.
    fn get(&self, key: &[u8]) -> Option<&Held> {
        let found = self.live.get(key);
        if found.is_some() || tag_of(key) != keys::CENTER {
            return found;
        }
        self.retired.get(key).or_else(|| self.older.get(key))
    }

    /// Every key held in `[start, end)`, each once (as [`Committed::get`] answers it), in no
    /// order. The retired generations, which only center-id entries reach, are walked only
    /// for a range that holds center-id keys: they are far larger than the live keys, which
    /// the lease sweeps scan.
    fn between<'s>(
        &'s self,
        start: &'s [u8],
        end: &'s [u8],
    ) -> impl Iterator<Item = (&'s HeldBytes, &'s Held)> {
        let within = move |k: &[u8]| start <= k && k < end;
        let center = tags_between(start, end).any(|t| t == keys::CENTER);
        let retired = center
            .then(|| self.retired.iter())
            .into_iter()
            .flatten()
            .filter(move |(k, _)| !self.live.contains_key(*k));
        let older = center
            .then(|| self.older.iter())
            .into_iter()
            .flatten()
            .filter(move |(k, _)| !self.live.contains_key(*k) && !self.retired.contains_key(*k));
        self.live
            .iter()
            .chain(retired)
            .chain(older)
            .filter(move |(k, _)| within(k))
    }

    /// Removes a retired copy of `key`: a key put again (a center id a newer message got)
    /// must not read as the older message's once the live one has gone to the engine.
    fn forget_retired(&mut self, key: &[u8]) {
        if tag_of(key) == keys::CENTER {
            self.retired.remove(key);
            self.older.remove(key);
        }
    }

    /// A new, empty generation, sized for what it will hold (growing it would rehash).
    fn generation() -> KeyMap<Held> {
        KeyMap::with_capacity_and_hasher(RETIRED_KEPT, Default::default())
    }

    /// The oldest generation's table, emptied, for the next: its pages are the process's
    /// already, where a fresh table of this size (about 12 MB) was page-faulted in again as
    /// it filled, every 65 536 ended messages.
    fn recycled_generation(&mut self) -> KeyMap<Held> {
        let mut next = std::mem::take(&mut self.older);
        if next.capacity() < RETIRED_KEPT {
            return Self::generation();
        }
        next.clear();
        next
    }
}

/// The committed held keys.
#[derive(Debug, Default)]
pub(crate) struct ShortLived {
    keys: Mutex<Committed>,
}

impl ShortLived {
    fn lock(&self) -> MutexGuard<'_, Committed> {
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes in the changes of a transaction that committed.
    pub(crate) fn apply(&self, pending: Pending) {
        if pending.is_empty() {
            return;
        }
        let mut keys = self.lock();
        // One map operation per change where it can be: a live key shadows a retired copy
        // until `flushed` lets the live one go.
        for (k, held) in pending {
            match held {
                Some(h) if h.retired => {
                    keys.live.remove(&k);
                    keys.retired.insert(k, h);
                    if keys.retired.len() >= RETIRED_KEPT {
                        let next = keys.recycled_generation();
                        keys.older = std::mem::replace(&mut keys.retired, next);
                    }
                }
                Some(h) => {
                    keys.live.insert(k, h);
                }
                None => {
                    keys.live.remove(&k);
                    keys.forget_retired(&k);
                }
            }
        }
    }

    /// Writes every live held key into `kv`, a durable commit's transaction; the caller calls
    /// [`ShortLived::flushed`] once it committed. Returns how many.
    pub(crate) fn flush_into(&self, kv: &mut dyn Kv) -> Result<usize, StoreError> {
        let keys = self.lock();
        // In key order: neighbours share the engine's pages.
        let mut sorted: Vec<(&HeldBytes, &Held)> = keys.live.iter().collect();
        sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
        for (k, h) in &sorted {
            kv.put(k, &h.value)?;
        }
        Ok(sorted.len())
    }

    /// Lets go of what a committed durable commit wrote to the engine (retired keys stay).
    pub(crate) fn flushed(&self) {
        let mut keys = self.lock();
        // Taken out and put back empty, so its capacity stays.
        let mut live = std::mem::take(&mut keys.live);
        for k in live.keys() {
            keys.forget_retired(k);
        }
        live.clear();
        keys.live = live;
    }

    /// Forgets everything: the engine went back to its last durable commit, and the log is
    /// about to be applied again from there.
    pub(crate) fn clear(&self) {
        *self.lock() = Committed::default();
    }

    /// `inner`, a reader's snapshot, with the committed held keys over it, for a reader
    /// outside the writer that scans these families (`Store::recount_queue_depths`). It holds
    /// the writer's next transaction back while it lives. The snapshot and memory agree when
    /// the writer is idle; under load a key may show in both or in neither, as a count
    /// taken while messages move may.
    pub(crate) fn over<'a>(&'a self, inner: &'a dyn KvRead) -> ShortLivedRead<'a> {
        ShortLivedRead {
            inner,
            committed: self.lock(),
        }
    }

    /// Live keys held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().live.len()
    }
}

/// A reader's snapshot with the committed held keys over it ([`ShortLived::over`]).
pub(crate) struct ShortLivedRead<'a> {
    inner: &'a dyn KvRead,
    committed: MutexGuard<'a, Committed>,
}

impl KvRead for ShortLivedRead<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.view().get(key)
    }

    pass_scans_through!(view());
}

impl ShortLivedRead<'_> {
    fn view(&self) -> HeldView<'_> {
        HeldView {
            inner: self.inner,
            committed: &self.committed,
            pending: None,
        }
    }
}

/// The engine's keys with memory's over them: the one read path of [`ShortLivedKv`] (its
/// pending changes over the committed keys) and [`ShortLivedRead`] (the committed keys).
struct HeldView<'a> {
    inner: &'a dyn KvRead,
    committed: &'a Committed,
    pending: Option<&'a Pending>,
}

impl<'a> HeldView<'a> {
    /// The key as memory holds it now, pending over committed.
    fn held(&self, key: &[u8]) -> Option<&'a Held> {
        match self.pending.and_then(|p| p.get(key)) {
            Some(p) => p.as_ref(),
            None => self.committed.get(key),
        }
    }

    /// Memory's keys in `[start, end)`, pending over committed, in key order.
    fn held_between(&self, start: &[u8], end: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        let within = |k: &[u8]| start <= k && k < end;
        let pending = self.pending;
        let overridden = |k: &[u8]| pending.is_some_and(|p| p.contains_key(k));
        let mut found: Vec<(Vec<u8>, Vec<u8>)> = self
            .committed
            .between(start, end)
            .filter(|(k, _)| !overridden(k))
            .map(|(k, h)| (k.to_vec(), h.value.to_vec()))
            .chain(pending.into_iter().flatten().filter_map(|(k, p)| {
                p.as_ref()
                    .filter(|_| within(k))
                    .map(|h| (k.to_vec(), h.value.to_vec()))
            }))
            .collect();
        found.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        found
    }
}

impl KvRead for HeldView<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if held_tag(tag_of(key))
            && let Some(h) = self.held(key)
        {
            return Ok(Some(h.value.to_vec()));
        }
        self.inner.get(key)
    }

    /// The engine's first `limit` keys merged with memory's: every key among the first
    /// `limit` of the union is one of those (a removal reaches the engine in the same
    /// transaction, so the engine has no key memory removed).
    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
        out: &mut Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<(), StoreError> {
        let held = touches_held(start, end).then(|| self.held_between(start, end));
        scan_merged(self.inner, (start, end), limit, held, out)
    }

    fn last_key(&self, start: &[u8], end: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let last = touches_held(start, end)
            .then(|| self.held_between(start, end).pop().map(|(k, _)| k))
            .flatten();
        last_key_merged(self.inner, (start, end), last)
    }
}

/// The writer's transaction with the held families in memory.
pub(crate) struct ShortLivedKv<'a> {
    inner: &'a mut dyn Kv,
    committed: MutexGuard<'a, Committed>,
    pending: Pending,
}

impl<'a> ShortLivedKv<'a> {
    pub(crate) fn new(inner: &'a mut dyn Kv, memory: &'a ShortLived) -> Self {
        Self {
            inner,
            committed: memory.lock(),
            pending: Pending::default(),
        }
    }

    /// The transaction's changes, for [`ShortLived::apply`] after its commit.
    pub(crate) fn into_pending(self) -> Pending {
        self.pending
    }

    fn view(&self) -> HeldView<'_> {
        HeldView {
            inner: &*self.inner,
            committed: &self.committed,
            pending: Some(&self.pending),
        }
    }

    /// The key as memory holds it now, pending over committed.
    fn held(&self, key: &[u8]) -> Option<&Held> {
        self.view().held(key)
    }

    /// Holds `key` at `value` in memory.
    fn hold(&mut self, key: &[u8], value: &[u8], in_engine: bool) {
        self.pending.insert(
            HeldBytes::from_slice(key),
            Some(Held {
                value: SmallVec::from_slice(value),
                in_engine,
                retired: false,
            }),
        );
    }

    /// Removes a held key from memory, and from the engine if it may be there too.
    fn unhold(&mut self, key: &[u8], in_engine: bool) -> Result<(), StoreError> {
        self.pending.insert(HeldBytes::from_slice(key), None);
        if in_engine {
            self.inner.delete(key)?;
        }
        Ok(())
    }
}

fn touches_held(start: &[u8], end: &[u8]) -> bool {
    tags_between(start, end).any(held_tag)
}

impl KvRead for ShortLivedKv<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.view().get(key)
    }

    pass_scans_through!(view());
}

impl Kv for ShortLivedKv<'_> {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let tag = tag_of(key);
        if !held_tag(tag) {
            return self.inner.put(key, value);
        }
        let in_engine = self.held(key).map_or(!fresh_tag(tag), |h| h.in_engine);
        self.hold(key, value, in_engine);
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), StoreError> {
        if !held_tag(tag_of(key)) {
            return self.inner.delete(key);
        }
        match self.held(key).map(|h| h.in_engine) {
            Some(in_engine) => self.unhold(key, in_engine),
            None => self.inner.delete(key),
        }
    }

    fn replace(&mut self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let tag = tag_of(key);
        if !held_tag(tag) {
            return self.inner.replace(key, value);
        }
        let (old, in_engine) = match self.held(key) {
            Some(h) => (Some(h.value.to_vec()), h.in_engine),
            None if fresh_tag(tag) => (None, false),
            None => {
                let old = self.inner.get(key)?;
                let there = old.is_some();
                (old, there)
            }
        };
        self.hold(key, value, in_engine);
        Ok(old)
    }

    fn take(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if !held_tag(tag_of(key)) {
            return self.inner.take(key);
        }
        match self.held(key).map(|h| (h.value.to_vec(), h.in_engine)) {
            Some((value, in_engine)) => {
                self.unhold(key, in_engine)?;
                Ok(Some(value))
            }
            None => self.inner.take(key),
        }
    }

    take_range_unless_kept!(inner, touches_held);

    /// A live held key still at `value` becomes retired; any other (one the engine holds since
    /// a durable commit, or another message's since) stays as it is.
    fn retire(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        // Only center-id entries are retired (what `Committed::get` relies on).
        if tag_of(key) != keys::CENTER {
            return self.inner.retire(key, value);
        }
        if let Some(h) = self.held(key)
            && !h.retired
            && h.value.as_slice() == value
        {
            let retired = Held {
                retired: true,
                ..h.clone()
            };
            self.pending
                .insert(HeldBytes::from_slice(key), Some(retired));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;
    use crate::store::backend::MapKv;

    /// A key of family `f` (0: lease, 1: held receipt, 2: its age key, 3: a message body,
    /// which the layer passes through) and number `n`.
    fn key(f: u8, n: u8) -> Vec<u8> {
        let tag = [keys::LEASE, keys::EARLY, keys::EARLY_AGE, keys::MESSAGE][usize::from(f)];
        vec![tag, 0, n]
    }

    #[derive(Debug, Clone)]
    enum Step {
        Put(u8, u8, u8),
        Replace(u8, u8, u8),
        Delete(u8, u8),
        Take(u8, u8),
        TakeRange(u8, u8, usize),
        /// Commit the transaction so far.
        Commit,
        /// Fail it: the engine and the pending changes go back.
        Abort,
        /// A durable commit: the held keys go to the engine.
        Flush,
    }

    fn step() -> impl Strategy<Value = Step> {
        let fam = 0u8..4;
        let n = 0u8..6;
        prop_oneof![
            4 => (fam.clone(), n.clone(), any::<u8>()).prop_map(|(f, n, v)| Step::Put(f, n, v)),
            2 => (fam.clone(), n.clone(), any::<u8>()).prop_map(|(f, n, v)| Step::Replace(f, n, v)),
            2 => (fam.clone(), n.clone()).prop_map(|(f, n)| Step::Delete(f, n)),
            3 => (fam.clone(), n).prop_map(|(f, n)| Step::Take(f, n)),
            1 => (fam, 0u8..6, 1usize..4).prop_map(|(f, n, l)| Step::TakeRange(f, n, l)),
            2 => Just(Step::Commit),
            1 => Just(Step::Abort),
            1 => Just(Step::Flush),
        ]
    }

    /// Every read through the layer answers what the model (every change applied to one map)
    /// holds, over each family's whole range and key by key.
    fn agrees(layer: &ShortLivedKv<'_>, model: &BTreeMap<Vec<u8>, Vec<u8>>) {
        for f in 0..4 {
            let (start, end) = (key(f, 0), key(f, 6));
            let want: Vec<(Vec<u8>, Vec<u8>)> = model
                .range(start.clone()..end.clone())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            for limit in [1, 2, 100] {
                let mut got = Vec::new();
                layer.scan(&start, &end, limit, &mut got).unwrap();
                assert_eq!(got, want.iter().take(limit).cloned().collect::<Vec<_>>());
            }
            assert_eq!(
                layer.last_key(&start, &end).unwrap(),
                want.last().map(|(k, _)| k.clone())
            );
            for n in 0..6 {
                assert_eq!(
                    layer.get(&key(f, n)).unwrap(),
                    model.get(&key(f, n)).cloned()
                );
            }
        }
    }

    proptest! {
        #[test]
        fn the_layer_reads_as_one_map_and_durable_commits_hold_every_key(
            older in proptest::collection::vec((1u8..2, 0u8..6, any::<u8>()), 0..4),
            steps in proptest::collection::vec(step(), 1..60),
        ) {
            let memory = ShortLived::default();
            let mut engine = MapKv::default();
            // Held receipts and bodies the engine had before this process.
            for &(f, n, v) in &older {
                engine.map.insert(key(f, n), vec![v]);
            }
            let mut model = engine.map.clone();
            let (mut engine_at_begin, mut model_at_begin) = (engine.map.clone(), model.clone());
            let mut pending = Pending::default();
            for st in steps {
                let mut layer = ShortLivedKv::new(&mut engine, &memory);
                layer.pending = std::mem::take(&mut pending);
                match st {
                    Step::Put(f, n, v) | Step::Replace(f, n, v) => {
                        let k = key(f, n);
                        // A lease or age key is never put while it exists (`fresh_tag`).
                        if f != 0 && f != 2 || !model.contains_key(&k) {
                            if matches!(st, Step::Put(..)) {
                                layer.put(&k, &[v]).unwrap();
                            } else {
                                assert_eq!(layer.replace(&k, &[v]).unwrap(), model.get(&k).cloned());
                            }
                            model.insert(k, vec![v]);
                        }
                    }
                    Step::Delete(f, n) => {
                        layer.delete(&key(f, n)).unwrap();
                        model.remove(&key(f, n));
                    }
                    Step::Take(f, n) => {
                        assert_eq!(layer.take(&key(f, n)).unwrap(), model.remove(&key(f, n)));
                    }
                    Step::TakeRange(f, n, limit) => {
                        let (start, end) = (key(f, n), key(f, 6));
                        let mut got = Vec::new();
                        layer.take_range(&start, &end, limit, &mut got).unwrap();
                        let want: Vec<(Vec<u8>, Vec<u8>)> = model
                            .range(start..end)
                            .take(limit)
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect();
                        for (k, _) in &want {
                            model.remove(k);
                        }
                        assert_eq!(got, want);
                    }
                    Step::Commit | Step::Abort | Step::Flush => {}
                }
                agrees(&layer, &model);
                pending = layer.into_pending();
                match st {
                    Step::Commit => {
                        memory.apply(std::mem::take(&mut pending));
                        (engine_at_begin, model_at_begin) = (engine.map.clone(), model.clone());
                    }
                    Step::Abort => {
                        pending.clear();
                        engine.map = engine_at_begin.clone();
                        model = model_at_begin.clone();
                    }
                    Step::Flush => {
                        memory.apply(std::mem::take(&mut pending));
                        memory.flush_into(&mut engine).unwrap();
                        memory.flushed();
                        // The engine alone now holds everything, as after a crash.
                        prop_assert_eq!(&engine.map, &model);
                        prop_assert_eq!(memory.len(), 0);
                        (engine_at_begin, model_at_begin) = (engine.map.clone(), model.clone());
                    }
                    _ => {}
                }
                // A key removed never stays in the engine.
                for k in engine.map.keys() {
                    prop_assert!(
                        model.contains_key(k),
                        "the engine kept {k:?}, which was removed"
                    );
                }
            }
        }
    }

    #[test]
    fn a_lease_key_put_and_taken_between_durable_commits_never_reaches_the_engine() {
        let memory = ShortLived::default();
        let mut engine = MapKv::default();
        let lease = keys::lease(9, crate::store::id::MessageId(7));
        let mut layer = ShortLivedKv::new(&mut engine, &memory);
        assert_eq!(layer.replace(&lease, b"ch").unwrap(), None);
        memory_apply(layer, &memory);
        let mut layer = ShortLivedKv::new(&mut engine, &memory);
        assert_eq!(layer.take(&lease).unwrap(), Some(b"ch".to_vec()));
        memory_apply(layer, &memory);
        assert_eq!(memory.len(), 0);
        assert_eq!((engine.puts, engine.gets.get()), (0, 0));
    }

    #[test]
    fn a_retired_center_id_stays_readable_for_a_while_but_never_reaches_the_engine() {
        use crate::store::id::MessageId;
        let memory = ShortLived::default();
        let mut engine = MapKv::default();
        let key = keys::center("sim", "C1");
        let value = keys::center_value(MessageId(7), 1);
        let mut layer = ShortLivedKv::new(&mut engine, &memory);
        layer.put(&key, &value).unwrap();
        // Another message's entry by now: not retired.
        layer
            .retire(&key, &keys::center_value(MessageId(8), 1))
            .unwrap();
        memory_apply(layer, &memory);
        assert_eq!(memory.len(), 1);
        let mut layer = ShortLivedKv::new(&mut engine, &memory);
        layer.retire(&key, &value).unwrap();
        assert_eq!(layer.get(&key).unwrap().as_deref(), Some(&value[..]));
        memory_apply(layer, &memory);
        assert_eq!(memory.len(), 0, "no longer live");
        assert_eq!(memory.flush_into(&mut engine).unwrap(), 0);
        memory.flushed();
        assert!(engine.map.is_empty(), "a durable commit leaves it out");
        let read =
            |memory: &ShortLived, engine: &MapKv, k: &[u8]| memory.over(engine).get(k).unwrap();
        assert_eq!(read(&memory, &engine, &key).as_deref(), Some(&value[..]));
        // The purge's delete removes it.
        let mut layer = ShortLivedKv::new(&mut engine, &memory);
        layer.delete(&key).unwrap();
        assert_eq!(layer.get(&key).unwrap(), None);
        memory_apply(layer, &memory);
        assert_eq!(read(&memory, &engine, &key), None);

        // A center id that comes back (a newer message's) reads as the newer message's, in
        // memory and once a durable commit wrote it.
        let newer = keys::center_value(MessageId(9), 1);
        let mut layer = ShortLivedKv::new(&mut engine, &memory);
        layer.put(&key, &value).unwrap();
        layer.retire(&key, &value).unwrap();
        memory_apply(layer, &memory);
        let mut layer = ShortLivedKv::new(&mut engine, &memory);
        layer.put(&key, &newer).unwrap();
        memory_apply(layer, &memory);
        assert_eq!(read(&memory, &engine, &key).as_deref(), Some(&newer[..]));
        assert_eq!(memory.flush_into(&mut engine).unwrap(), 1);
        memory.flushed();
        assert_eq!(read(&memory, &engine, &key).as_deref(), Some(&newer[..]));
        engine.map.clear();

        // Kept readable among the newest RETIRED_KEPT to twice that: three transactions, the
        // first two of RETIRED_KEPT retirements each.
        let entry = |n: usize| {
            (
                keys::center("sim", &n.to_string()),
                keys::center_value(MessageId(n as u64), 1),
            )
        };
        for ns in [
            0..RETIRED_KEPT,
            RETIRED_KEPT..2 * RETIRED_KEPT,
            2 * RETIRED_KEPT..2 * RETIRED_KEPT + 1,
        ] {
            let mut layer = ShortLivedKv::new(&mut engine, &memory);
            for n in ns {
                let (k, v) = entry(n);
                layer.put(&k, &v).unwrap();
                layer.retire(&k, &v).unwrap();
            }
            memory_apply(layer, &memory);
        }
        let first = entry(0).0;
        let newest = entry(2 * RETIRED_KEPT - 1);
        assert_eq!(
            read(&memory, &engine, &first),
            None,
            "the oldest are let go"
        );
        assert_eq!(read(&memory, &engine, &newest.0), Some(newest.1.to_vec()));
        // A restart forgets them.
        memory.clear();
        assert_eq!(read(&memory, &engine, &newest.0), None);
    }

    fn memory_apply(layer: ShortLivedKv<'_>, memory: &ShortLived) {
        let pending = layer.into_pending();
        memory.apply(pending);
    }
}

//! The writer's write-through cache of message records (body and state, tags `MESSAGE` and
//! `STATE` in `keys.rs`), kept across group commits.
//!
//! Why: every op after the insert (lease, submitted, receipt, purge) starts by loading the
//! message it changes — two engine reads (B-tree walks) per op, about half of all engine
//! reads per message in the lifecycle bench. The writer thread is the only one that writes
//! these records once the store is open, so what it last wrote or read is what the engine
//! holds, and the next op on the same message can take it from memory.
//!
//! Invariants:
//! - only the writer touches it, and only keys of the two record tags are cached; every call
//!   still goes to the engine, except a `get` the cache answers;
//! - a transaction's changes (and the values it read) go into an overlay
//!   ([`CachedKv`]) and reach the cache only after the commit succeeded
//!   ([`RecordCache::apply`]); after any failed write the writer empties the cache
//!   ([`RecordCache::clear`]), since a relaxed commit may have landed before a later
//!   durable one failed;
//! - `None` in the cache means "known absent" (deleted by a committed transaction); a key
//!   not in the cache is asked of the engine;
//! - bounded: at most `capacity` keys, oldest-cached first out, so memory does not grow with
//!   the queue (the in-flight window is what it is for).

use std::collections::{HashMap, VecDeque};

use super::backend::{Kv, KvRead};
use super::error::StoreError;
use super::keys;

/// A cached key: the tag byte and the 8-byte id.
type Key = [u8; 9];

fn cached_key(key: &[u8]) -> Option<Key> {
    match key.first() {
        Some(&keys::MESSAGE | &keys::STATE) => key.try_into().ok(),
        _ => None,
    }
}

/// The cache itself, owned by the writer loop.
#[derive(Debug)]
pub(crate) struct RecordCache {
    map: HashMap<Key, Option<Vec<u8>>>,
    /// Keys in the order they entered `map` (may hold keys evicted or re-added since; those
    /// are skipped or compacted away).
    order: VecDeque<Key>,
    capacity: usize,
}

/// What one transaction wrote to or read from cached keys, for [`RecordCache::apply`].
#[derive(Debug, Default)]
pub(crate) struct Pending(HashMap<Key, Option<Vec<u8>>>);

impl RecordCache {
    /// A cache of at most `capacity` keys (0: caches nothing).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            map: HashMap::new(),
            order: VecDeque::new(),
            capacity,
        }
    }

    /// Takes in a committed transaction's changes and reads.
    pub(crate) fn apply(&mut self, pending: Pending) {
        if self.capacity == 0 {
            return;
        }
        for (k, v) in pending.0 {
            if self.map.insert(k, v).is_none() {
                self.order.push_back(k);
            }
        }
        while self.map.len() > self.capacity {
            let Some(k) = self.order.pop_front() else {
                break;
            };
            self.map.remove(&k);
        }
        if self.order.len() > self.capacity.saturating_mul(2) {
            // Keys removed and re-added leave duplicates behind: keep one entry per live key.
            let map = &self.map;
            let mut seen = std::collections::HashSet::with_capacity(map.len());
            self.order
                .retain(|k| map.contains_key(k) && seen.insert(*k));
        }
    }

    /// Forgets everything (after a failed write).
    pub(crate) fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.len()
    }
}

/// A [`Kv`] over one transaction that answers record reads from the cache and notes what the
/// transaction wrote or read, for [`RecordCache::apply`] after the commit.
pub(crate) struct CachedKv<'a> {
    inner: &'a mut dyn Kv,
    cache: &'a RecordCache,
    // `get` takes `&self`; the reads it notes go through a RefCell.
    pending: std::cell::RefCell<Pending>,
}

impl<'a> CachedKv<'a> {
    pub(crate) fn new(inner: &'a mut dyn Kv, cache: &'a RecordCache) -> Self {
        Self {
            inner,
            cache,
            pending: std::cell::RefCell::default(),
        }
    }

    /// What to hand to [`RecordCache::apply`] once the transaction committed.
    pub(crate) fn into_pending(self) -> Pending {
        self.pending.into_inner()
    }

    fn note(&self, key: Key, value: Option<Vec<u8>>) {
        if self.cache.capacity > 0 {
            self.pending.borrow_mut().0.insert(key, value);
        }
    }
}

impl KvRead for CachedKv<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(k) = cached_key(key) else {
            return self.inner.get(key);
        };
        if let Some(v) = self.pending.borrow().0.get(&k) {
            return Ok(v.clone());
        }
        if let Some(v) = self.cache.map.get(&k) {
            return Ok(v.clone());
        }
        let v = self.inner.get(key)?;
        self.note(k, v.clone());
        Ok(v)
    }

    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
        out: &mut Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<(), StoreError> {
        // The engine sees every write of this transaction: scans need no merging.
        self.inner.scan(start, end, limit, out)
    }

    fn last_key(&self, start: &[u8], end: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.last_key(start, end)
    }
}

impl Kv for CachedKv<'_> {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.inner.put(key, value)?;
        if let Some(k) = cached_key(key) {
            self.note(k, Some(value.to_vec()));
        }
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), StoreError> {
        self.inner.delete(key)?;
        if let Some(k) = cached_key(key) {
            self.note(k, None);
        }
        Ok(())
    }

    fn replace(&mut self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let old = self.inner.replace(key, value)?;
        if let Some(k) = cached_key(key) {
            self.note(k, Some(value.to_vec()));
        }
        Ok(old)
    }

    fn take(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let old = self.inner.take(key)?;
        if let Some(k) = cached_key(key) {
            self.note(k, None);
        }
        Ok(old)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::backend::Backend;
    use crate::store::counting::{CountingKv, KvCounts};
    use crate::store::redb_backend::RedbBackend;

    fn key(tag: u8, id: u64) -> Vec<u8> {
        let mut k = vec![tag];
        k.extend_from_slice(&id.to_be_bytes());
        k
    }

    /// One transaction through the cache, counted; the overlay is applied only if `commit`.
    fn txn(
        db: &RedbBackend,
        cache: &mut RecordCache,
        counts: &KvCounts,
        f: impl FnOnce(&mut dyn Kv) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let pending = db.write(|kv| {
            let mut counting = CountingKv::new(kv);
            let res = {
                let mut c = CachedKv::new(&mut counting, cache);
                f(&mut c).map(|()| c.into_pending())
            };
            counting.finish(counts);
            res
        });
        match pending {
            Ok(p) => {
                cache.apply(p);
                Ok(())
            }
            Err(e) => {
                cache.clear();
                Err(e)
            }
        }
    }

    #[test]
    fn answers_what_it_saw_and_only_that() {
        let dir = tempfile::tempdir().unwrap();
        let db = RedbBackend::open(dir.path()).unwrap();
        let mut cache = RecordCache::new(16);
        let counts = KvCounts::default();
        let (m, s, other) = (
            key(keys::MESSAGE, 1),
            key(keys::STATE, 1),
            key(keys::READY, 1),
        );
        txn(&db, &mut cache, &counts, |kv| {
            kv.put(&m, b"body")?;
            kv.put(&s, b"state1")?;
            kv.put(&other, b"x")
        })
        .unwrap();
        // Served from the cache: no engine read for the records, one for the other tag.
        txn(&db, &mut cache, &counts, |kv| {
            assert_eq!(kv.get(&m)?.as_deref(), Some(&b"body"[..]));
            assert_eq!(kv.get(&s)?.as_deref(), Some(&b"state1"[..]));
            assert_eq!(kv.get(&other)?.as_deref(), Some(&b"x"[..]));
            Ok(())
        })
        .unwrap();
        assert_eq!(counts.gets(), 1);
        // A transaction that fails leaves nothing of itself behind, and empties the cache.
        let failed = txn(&db, &mut cache, &counts, |kv| {
            kv.put(&s, b"state2")?;
            assert_eq!(kv.get(&s)?.as_deref(), Some(&b"state2"[..]));
            Err(StoreError::Backend("abort".into()))
        });
        assert!(failed.is_err());
        assert_eq!(cache.len(), 0);
        txn(&db, &mut cache, &counts, |kv| {
            assert_eq!(kv.get(&s)?.as_deref(), Some(&b"state1"[..]));
            kv.delete(&m)
        })
        .unwrap();
        // Known absent after a committed delete: answered without the engine.
        let before = counts.gets();
        txn(&db, &mut cache, &counts, |kv| {
            assert_eq!(kv.get(&m)?, None);
            Ok(())
        })
        .unwrap();
        assert_eq!(counts.gets(), before);
    }

    #[test]
    fn stays_within_capacity() {
        let mut cache = RecordCache::new(4);
        for round in 0..10u64 {
            let mut p = Pending::default();
            for id in 0..3 {
                p.0.insert(
                    key(keys::STATE, round * 3 + id).try_into().unwrap(),
                    Some(vec![1]),
                );
            }
            cache.apply(p);
            assert!(cache.len() <= 4);
            assert!(cache.order.len() <= 8);
        }
        // The newest keys are the ones kept.
        assert!(
            cache
                .map
                .contains_key(&<Key>::try_from(key(keys::STATE, 29)).unwrap())
        );
    }
}

//! Write-back cache of the per-account outbox sequence counters for one group commit.
//!
//! Every message that reaches a final state reads and bumps its account's counter (tag
//! `OUTBOX_SEQ` in `keys.rs`). A group commit of 1000 receipts for one account would read and
//! rewrite the same key 1000 times; through this wrapper it reads it once and writes it once,
//! in [`SeqCache::flush`] before the commit.
//!
//! Invariants:
//! - only keys with the `OUTBOX_SEQ` tag are cached; every other call goes straight through;
//! - nothing scans the `OUTBOX_SEQ` tag (scans and `last_key` are passed through unmerged,
//!   and debug builds assert they do not cover the tag);
//! - `flush` must run before the transaction commits, or the counters' new values are lost
//!   (the writer does it for every group; an aborted group drops the cache with its changes).

use rustc_hash::FxHashMap;

use super::backend::{Kv, KvRead, pass_retire_through, take_range_unless_kept};
use super::error::StoreError;
use super::keys;

/// A [`Kv`] that keeps outbox counters in memory until [`flush`](Self::flush).
pub(crate) struct SeqCache<'a> {
    inner: &'a mut dyn Kv,
    /// Counters written in this group (`None`: deleted). Only writes fill it, so every
    /// entry is dirty; the first read of a counter goes to the store.
    seqs: FxHashMap<Vec<u8>, Option<Vec<u8>>>,
}

impl<'a> SeqCache<'a> {
    pub(crate) fn new(inner: &'a mut dyn Kv) -> Self {
        Self {
            inner,
            seqs: FxHashMap::default(),
        }
    }

    /// Writes the changed counters through. Call once, before the commit.
    pub(crate) fn flush(self) -> Result<(), StoreError> {
        for (k, v) in &self.seqs {
            match v {
                Some(v) => self.inner.put(k, v)?,
                None => self.inner.delete(k)?,
            }
        }
        Ok(())
    }

    fn cached(key: &[u8]) -> bool {
        key.first() == Some(&keys::OUTBOX_SEQ)
    }

    fn set(&mut self, key: &[u8], value: Option<Vec<u8>>) {
        match self.seqs.get_mut(key) {
            Some(v) => *v = value,
            None => {
                self.seqs.insert(key.to_vec(), value);
            }
        }
    }
}

/// Whether `[start, end)` can hold a key of the cached tag.
fn covers_cached_tag(start: &[u8], end: &[u8]) -> bool {
    let lo: &[u8] = &[keys::OUTBOX_SEQ];
    let hi: &[u8] = &[keys::OUTBOX_SEQ + 1];
    start < hi && end > lo
}

impl KvRead for SeqCache<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if Self::cached(key)
            && let Some(v) = self.seqs.get(key)
        {
            return Ok(v.clone());
        }
        self.inner.get(key)
    }

    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
        out: &mut Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<(), StoreError> {
        debug_assert!(
            self.seqs.is_empty() || !covers_cached_tag(start, end),
            "scan over cached outbox counters"
        );
        self.inner.scan(start, end, limit, out)
    }

    fn last_key(&self, start: &[u8], end: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        debug_assert!(
            self.seqs.is_empty() || !covers_cached_tag(start, end),
            "last_key over cached outbox counters"
        );
        self.inner.last_key(start, end)
    }
}

impl Kv for SeqCache<'_> {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        if Self::cached(key) {
            self.set(key, Some(value.to_vec()));
            return Ok(());
        }
        self.inner.put(key, value)
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), StoreError> {
        if Self::cached(key) {
            self.set(key, None);
            return Ok(());
        }
        self.inner.delete(key)
    }

    /// Keys it does not cache go on as one call (the engine reports the old value of a key it
    /// writes for free); its own keys take the `get` + `put` way through the cache.
    fn replace(&mut self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if Self::cached(key) {
            let old = self.get(key)?;
            self.put(key, value)?;
            return Ok(old);
        }
        self.inner.replace(key, value)
    }

    /// As [`replace`](Self::replace), for removals.
    fn take(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if Self::cached(key) {
            let old = self.get(key)?;
            self.delete(key)?;
            return Ok(old);
        }
        self.inner.take(key)
    }

    take_range_unless_kept!(inner, covers_cached_tag);

    pass_retire_through!(inner);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::backend::MapKv as Mem;

    #[test]
    fn counters_are_read_once_and_written_once() {
        let mut mem = Mem::default();
        let k = keys::outbox_seq("acme").to_vec();
        mem.put(&k, &5u64.to_be_bytes()).unwrap();
        mem.puts = 0;
        {
            let mut c = SeqCache::new(&mut mem);
            for _ in 0..100 {
                let v = c.get(&k).unwrap().unwrap();
                let n = keys::be_u64(&v, 0).unwrap();
                c.put(&k, &(n + 1).to_be_bytes()).unwrap();
            }
            // Other keys go straight through.
            c.put(&[keys::MESSAGE, 1], b"m").unwrap();
            assert_eq!(c.get(&[keys::MESSAGE, 1]).unwrap(), Some(b"m".to_vec()));
            c.flush().unwrap();
        }
        assert_eq!(mem.map.get(&k), Some(&105u64.to_be_bytes().to_vec()));
        // One read and one write of the counter, one write of the message.
        assert_eq!(mem.puts, 2);
        assert_eq!(mem.gets.get(), 2);
    }

    #[test]
    fn unflushed_changes_are_dropped_and_deletes_flush() {
        let mut mem = Mem::default();
        let k = keys::outbox_seq("a").to_vec();
        mem.put(&k, b"x").unwrap();
        {
            let mut c = SeqCache::new(&mut mem);
            c.put(&k, b"y").unwrap();
        }
        assert_eq!(mem.map.get(&k), Some(&b"x".to_vec()));
        {
            let mut c = SeqCache::new(&mut mem);
            c.delete(&k).unwrap();
            assert_eq!(c.get(&k).unwrap(), None);
            c.flush().unwrap();
        }
        assert!(!mem.map.contains_key(&k));
    }

    #[test]
    fn ranges_covering_the_tag() {
        let t = keys::OUTBOX_SEQ;
        assert!(covers_cached_tag(&[t], &[t + 1]));
        assert!(covers_cached_tag(&[t - 1], &[t, 0]));
        assert!(!covers_cached_tag(&[t - 1], &[t]));
        assert!(!covers_cached_tag(&[t + 1], &[t + 2]));
    }
}

//! Counts the calls a group commit makes on the engine: gets, puts, deletes, scans.
//!
//! Why: the store's cost per message is mostly engine work (every put and delete rewrites
//! B-tree pages in the commit), so "how many engine calls per message" is the figure that
//! shows what a change to `ops.rs` saved before any timing does. Benches and tests turn it on
//! with `WriterConfig::count_kv_ops`; the gateway leaves it off and never builds this layer.
//!
//! It sits directly on the engine's transaction, below the queue counters and the outbox
//! counter cache, so it sees exactly what reaches the engine. A `replace` counts as one put
//! and a `take` as one delete (engines answer the old value from the same B-tree walk).
//!
//! Invariants: it changes nothing it forwards; counts are kept in plain fields during the
//! group and added to the shared [`KvCounts`] once per group (no atomics per call).

use std::sync::atomic::{AtomicU64, Ordering};

use super::backend::{Kv, KvRead, taken_by};
use super::error::StoreError;

/// Engine calls made by the writer since the store opened (only with
/// `WriterConfig::count_kv_ops`; zeros otherwise).
#[derive(Debug, Default)]
pub struct KvCounts {
    gets: AtomicU64,
    puts: AtomicU64,
    deletes: AtomicU64,
    scans: AtomicU64,
}

impl KvCounts {
    /// Point reads (`get`).
    pub fn gets(&self) -> u64 {
        self.gets.load(Ordering::Relaxed)
    }
    /// Writes (`put`, `replace`).
    pub fn puts(&self) -> u64 {
        self.puts.load(Ordering::Relaxed)
    }
    /// Removals (`delete`, `take`).
    pub fn deletes(&self) -> u64 {
        self.deletes.load(Ordering::Relaxed)
    }
    /// Range reads (`scan`, `last_key`).
    pub fn scans(&self) -> u64 {
        self.scans.load(Ordering::Relaxed)
    }
}

/// A [`Kv`] that forwards everything and counts it; [`finish`](Self::finish) publishes.
pub(crate) struct CountingKv<'a> {
    inner: &'a mut dyn Kv,
    // `get` takes `&self`: a Cell keeps the read path honest without `&mut`.
    gets: std::cell::Cell<u64>,
    scans: std::cell::Cell<u64>,
    puts: u64,
    deletes: u64,
}

impl<'a> CountingKv<'a> {
    pub(crate) fn new(inner: &'a mut dyn Kv) -> Self {
        Self {
            inner,
            gets: std::cell::Cell::new(0),
            scans: std::cell::Cell::new(0),
            puts: 0,
            deletes: 0,
        }
    }

    /// Adds this group's counts to `to`. Counts of a group that failed are published too:
    /// the engine did that work.
    pub(crate) fn finish(self, to: &KvCounts) {
        to.gets.fetch_add(self.gets.get(), Ordering::Relaxed);
        to.scans.fetch_add(self.scans.get(), Ordering::Relaxed);
        to.puts.fetch_add(self.puts, Ordering::Relaxed);
        to.deletes.fetch_add(self.deletes, Ordering::Relaxed);
    }
}

impl KvRead for CountingKv<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.gets.set(self.gets.get() + 1);
        self.inner.get(key)
    }

    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
        out: &mut Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<(), StoreError> {
        self.scans.set(self.scans.get() + 1);
        self.inner.scan(start, end, limit, out)
    }

    fn last_key(&self, start: &[u8], end: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.scans.set(self.scans.get() + 1);
        self.inner.last_key(start, end)
    }
}

impl Kv for CountingKv<'_> {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.puts += 1;
        self.inner.put(key, value)
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), StoreError> {
        self.deletes += 1;
        self.inner.delete(key)
    }

    fn replace(&mut self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.puts += 1;
        self.inner.replace(key, value)
    }

    fn take(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.deletes += 1;
        self.inner.take(key)
    }

    /// One scan, and a delete per entry taken.
    fn take_range(
        &mut self,
        start: &[u8],
        end: &[u8],
        limit: usize,
        out: &mut Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<(), StoreError> {
        self.scans.set(self.scans.get() + 1);
        self.deletes += taken_by(self.inner, (start, end), limit, out)?.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::backend::Backend;
    use crate::store::redb_backend::RedbBackend;

    #[test]
    fn counts_what_it_forwards() {
        let dir = tempfile::tempdir().unwrap();
        let db = RedbBackend::open(dir.path()).unwrap();
        let counts = KvCounts::default();
        db.write(|kv| {
            let mut c = CountingKv::new(kv);
            c.put(b"\x01a", b"1")?;
            c.replace(b"\x01a", b"2")?;
            assert_eq!(c.get(b"\x01a")?.as_deref(), Some(&b"2"[..]));
            let mut out = Vec::new();
            c.scan(b"\x01", b"\x02", 10, &mut out)?;
            assert_eq!(out.len(), 1);
            assert_eq!(c.take(b"\x01a")?.as_deref(), Some(&b"2"[..]));
            c.delete(b"\x01b")?;
            c.finish(&counts);
            Ok(())
        })
        .unwrap();
        assert_eq!(
            (
                counts.gets(),
                counts.puts(),
                counts.deletes(),
                counts.scans()
            ),
            (1, 2, 2, 1)
        );
    }
}

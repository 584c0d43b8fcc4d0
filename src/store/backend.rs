//! The one storage trait. It names no engine: an engine is an ordered byte-key map with atomic,
//! durable write transactions and snapshot reads. Every gateway operation (`ops.rs`) is written
//! once against it, so the redb and sled backends differ only in how they map these calls.
//!
//! Invariants a backend must keep:
//! - `write` is atomic: either every put/delete made by the closure is visible afterwards, or
//!   none (closure returned `Err`, or the commit failed).
//! - `write` returns `Ok` only after the changes are durable (fsync or equivalent);
//!   `write_relaxed` may return earlier, but its changes become durable no later than those of
//!   the next `write` (commits are durable in order).
//! - Reads inside `write` see the closure's own earlier writes.
//! - Only one `write` runs at a time (the store's single writer thread guarantees it).

use super::error::StoreError;

/// Creates the data directory `dir` (and its parents) for a backend to open its files in.
pub(crate) fn create_dir(dir: &std::path::Path) -> Result<(), StoreError> {
    std::fs::create_dir_all(dir).map_err(|source| StoreError::Open {
        path: dir.display().to_string(),
        source,
    })
}

/// Tag of a key: its first byte (the "table" of `keys.rs`; the empty key has tag 0). Engines
/// that keep one tree per tag (redb's tables, fjall's keyspaces) split the key space by it.
pub(crate) fn tag_of(key: &[u8]) -> u8 {
    key.first().copied().unwrap_or(0)
}

/// The tags a scan over `[start, end)` may touch, in ascending order (a superset is fine:
/// each table is still scanned with the exact bounds).
pub(crate) fn tags_between(start: &[u8], end: &[u8]) -> impl DoubleEndedIterator<Item = u8> {
    let last = match end {
        // No key sorts before the empty key.
        [] => None,
        // `[t]` ends before every key of tag t, except that tag 0's table also holds the
        // empty key, which sorts before `[0]`.
        [t] => Some(t.saturating_sub(1)),
        [t, ..] => Some(*t),
    };
    last.into_iter().flat_map(move |last| tag_of(start)..=last)
}

/// Read access to the key space.
pub trait KvRead {
    /// Value under `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Pairs with `start <= key < end` in ascending key order, at most `limit` of them,
    /// appended to `out`.
    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
        out: &mut Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<(), StoreError>;

    /// The greatest key in `[start, end)`.
    fn last_key(&self, start: &[u8], end: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
}

/// Write access inside a transaction.
pub trait Kv: KvRead {
    /// Sets `key` to `value`.
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError>;

    /// Removes `key` if present.
    fn delete(&mut self, key: &[u8]) -> Result<(), StoreError>;

    /// Sets `key` to `value` and returns the value it had. Engines whose insert reports the
    /// old value for free should override the default (a `get`, then a `put`): the queue
    /// counters call it for every ready and lease key.
    fn replace(&mut self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let old = self.get(key)?;
        self.put(key, value)?;
        Ok(old)
    }

    /// Removes `key` and returns the value it had (default: a `get`, then a `delete`).
    fn take(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let old = self.get(key)?;
        if old.is_some() {
            self.delete(key)?;
        }
        Ok(old)
    }
}

/// A storage engine.
pub trait Backend: Send + Sync + 'static {
    /// Short engine name for logs and benches.
    fn name(&self) -> &'static str;

    /// Runs `f` in one atomic write transaction and commits it durably if `f` returns `Ok`.
    fn write<R>(
        &self,
        f: impl FnOnce(&mut dyn Kv) -> Result<R, StoreError>,
    ) -> Result<R, StoreError>;

    /// Like [`write`](Self::write), but may return before the commit is durable: it becomes
    /// durable with the next durable `write`, and a crash before that may lose it (never
    /// partially). For changes a crash makes harmless to lose (see `ops::needs_fsync`). The
    /// default is a durable `write`.
    fn write_relaxed<R>(
        &self,
        f: impl FnOnce(&mut dyn Kv) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        self.write(f)
    }

    /// Runs `f` against a consistent snapshot of committed data.
    fn read<R>(
        &self,
        f: impl FnOnce(&dyn KvRead) -> Result<R, StoreError>,
    ) -> Result<R, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_ranges_of_scans() {
        let tags = |a: &[u8], b: &[u8]| tags_between(a, b).collect::<Vec<_>>();
        assert_eq!(tags(&[1], &[2]), [1]);
        assert_eq!(tags(&[1, 5], &[3, 0]), [1, 2, 3]);
        assert_eq!(tags(&[], &[0, 1]), [0]);
        assert_eq!(tags(&[], &[0]), [0]);
        assert!(tags(&[3], &[2, 1]).is_empty());
        assert!(tags(&[], &[]).is_empty());
        assert_eq!(tags(&[0xFE], &[0xFF, 0xFF]), [0xFE, 0xFF]);
    }
}

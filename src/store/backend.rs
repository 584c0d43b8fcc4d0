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

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};

use super::error::StoreError;
use super::id::MessageId;
use super::model::{Message, ReceiptEvent};

/// An engine handle that a failed file write latches, reopened from its path before the next
/// operation. redb latches its first failed write and fjall poisons itself; both recover to
/// their last durable commit when opened again, so a full disk that frees up needs no restart.
#[derive(Debug)]
pub(crate) struct Reopening<T> {
    /// `None` only while a reopen failed (the next operation tries again).
    slot: RwLock<Option<T>>,
    /// Where the engine's files are, for reopening.
    path: PathBuf,
    /// An I/O error latched the engine: reopen before the next operation.
    failed: AtomicBool,
    /// How many times the handle was closed for a reopen ([`Backend::reopens`]).
    reopens: AtomicU64,
}

impl<T> Reopening<T> {
    pub(crate) fn new(handle: T, path: PathBuf) -> Self {
        Self {
            slot: RwLock::new(Some(handle)),
            path,
            failed: AtomicBool::new(false),
            reopens: AtomicU64::new(0),
        }
    }

    /// How many times the handle was closed for a reopen: each time, the commits not yet
    /// durable (relaxed ones) may be gone.
    pub(crate) fn reopens(&self) -> u64 {
        self.reopens.load(Ordering::Acquire)
    }

    #[cfg(feature = "fjall")]
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The handle, reopened first with `open` when an I/O error latched it.
    pub(crate) fn get(
        &self,
        open: impl FnOnce(&Path) -> Result<T, StoreError>,
    ) -> Result<RwLockReadGuard<'_, Option<T>>, StoreError> {
        if self.failed.load(Ordering::Acquire) {
            self.reopen(open)?;
        }
        let g = self.slot.read().unwrap_or_else(PoisonError::into_inner);
        if g.is_none() {
            return Err(StoreError::Io("the database is being reopened".into()));
        }
        Ok(g)
    }

    fn reopen(&self, open: impl FnOnce(&Path) -> Result<T, StoreError>) -> Result<(), StoreError> {
        let mut g = self.slot.write().unwrap_or_else(PoisonError::into_inner);
        if !self.failed.load(Ordering::Acquire) {
            return Ok(());
        }
        // Close first: both engines lock their files, a second handle could not open them.
        *g = None;
        self.reopens.fetch_add(1, Ordering::AcqRel);
        *g = Some(open(&self.path)?);
        self.failed.store(false, Ordering::Release);
        tracing::info!(path = %self.path.display(), "Store reopened after an I/O error.");
        Ok(())
    }

    /// Marks the handle for a reopen when `r` failed on file I/O.
    pub(crate) fn note<R>(&self, r: Result<R, StoreError>) -> Result<R, StoreError> {
        if let Err(StoreError::NoSpace(_) | StoreError::Io(_)) = &r {
            self.failed.store(true, Ordering::Release);
        }
        r
    }

    /// Whether an I/O error latched the handle and it was not reopened yet.
    #[cfg(all(test, feature = "fjall"))]
    pub(crate) fn is_failed(&self) -> bool {
        self.failed.load(Ordering::Acquire)
    }
}

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

/// The `scan` and `last_key` of a layer over the key space that changes only point reads
/// or writes (queue counters, in-flight records): both go on, unchanged, to the layer's
/// field `$inner` (or to what its method `view()` returns). Written inside the layer's
/// `impl KvRead`.
macro_rules! pass_scans_through {
    ($($inner:tt)+) => {
        fn scan(
            &self,
            start: &[u8],
            end: &[u8],
            limit: usize,
            out: &mut Vec<(Vec<u8>, Vec<u8>)>,
        ) -> Result<(), StoreError> {
            self.$($inner)+.scan(start, end, limit, out)
        }

        fn last_key(&self, start: &[u8], end: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            self.$($inner)+.last_key(start, end)
        }
    };
}
pub(crate) use pass_scans_through;

/// The `take_range` of a layer that keeps some keys itself: a range `$covers(start, end)`
/// says may hold one goes key by key through the layer ([`take_each`]), any other on to its
/// field `$inner`, whose engine may take the run in one cursor pass. Written inside the
/// layer's `impl Kv`.
macro_rules! take_range_unless_kept {
    ($inner:ident, $covers:expr) => {
        fn take_range(
            &mut self,
            start: &[u8],
            end: &[u8],
            limit: usize,
            out: &mut Vec<(Vec<u8>, Vec<u8>)>,
        ) -> Result<(), StoreError> {
            if $covers(start, end) {
                return $crate::store::backend::take_each(self, start, end, limit, out);
            }
            self.$inner.take_range(start, end, limit, out)
        }
    };
}
pub(crate) use take_range_unless_kept;

/// The `take_range` of a layer that notes what was taken: forwarded to its field `$inner`
/// ([`taken_by`]), whose engine may take the run in one cursor pass, then `$body` for each
/// entry taken, with `$this` the layer and `$k`, `$v` the entry. Written inside the layer's
/// `impl Kv`.
macro_rules! take_range_noting {
    ($inner:ident, |$this:ident, $k:pat_param, $v:pat_param| $body:expr) => {
        fn take_range(
            &mut self,
            start: &[u8],
            end: &[u8],
            limit: usize,
            out: &mut Vec<(Vec<u8>, Vec<u8>)>,
        ) -> Result<(), StoreError> {
            let taken = $crate::store::backend::taken_by(self.$inner, (start, end), limit, out)?;
            for ($k, $v) in taken {
                let $this = &mut *self;
                $body;
            }
            Ok(())
        }
    };
}
pub(crate) use take_range_noting;

/// The `put`, `delete` and `take` of a layer that holds something of some keys in memory and
/// must let it go before such a key is written: `self.$forget(key)` first, then on to its
/// field `$inner`. Written inside the layer's `impl Kv`.
macro_rules! forget_before_writes {
    ($inner:ident, $forget:ident) => {
        fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
            self.$forget(key);
            self.$inner.put(key, value)
        }

        fn put_owned(&mut self, key: &[u8], value: Vec<u8>) -> Result<(), StoreError> {
            self.$forget(key);
            self.$inner.put_owned(key, value)
        }

        fn delete(&mut self, key: &[u8]) -> Result<(), StoreError> {
            self.$forget(key);
            self.$inner.delete(key)
        }

        fn take(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            self.$forget(key);
            self.$inner.take(key)
        }
    };
}
pub(crate) use forget_before_writes;

/// A key and its value.
pub(crate) type Entry = (Vec<u8>, Vec<u8>);

/// [`Kv::take_range`] forwarded to `inner`, answering the entries it appended to `out`: for
/// a layer that notes what was taken (`take_range_noting!`, or counts it).
pub(crate) fn taken_by<'o>(
    inner: &mut dyn Kv,
    (start, end): (&[u8], &[u8]),
    limit: usize,
    out: &'o mut Vec<(Vec<u8>, Vec<u8>)>,
) -> Result<&'o [Entry], StoreError> {
    let from = out.len();
    inner.take_range(start, end, limit, out)?;
    Ok(&out[from..])
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

    /// [`put`](Self::put) of a value made for it and handed over: a layer that keeps values
    /// in memory (`in_flight.rs`, the state records a message's every op saves) takes it
    /// without a copy. Layers above it pass it on; the default puts a borrow of it.
    fn put_owned(&mut self, key: &[u8], value: Vec<u8>) -> Result<(), StoreError> {
        self.put(key, &value)
    }

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

    /// Removes the first `limit` entries of `[start, end)`, in key order, and appends them to
    /// `out`: the head of a queue taken in one pass. Why: a lease takes up to a batch of
    /// ready keys that sit side by side, and an outbox ack the entries it delivered; an
    /// engine with a cursor (redb) removes them in one walk instead of one search from the
    /// root each. The default scans, then deletes each key through `self`.
    fn take_range(
        &mut self,
        start: &[u8],
        end: &[u8],
        limit: usize,
        out: &mut Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<(), StoreError> {
        take_each(self, start, end, limit, out)
    }

    /// [`take_range`](Self::take_range) for a caller that only counts what it removed (a
    /// run of outbox entries a client took), so a layer that holds entries in memory need
    /// not produce their values. Answers how many were removed.
    fn remove_range(
        &mut self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<usize, StoreError> {
        let mut out = Vec::new();
        self.take_range(start, end, limit, &mut out)?;
        Ok(out.len())
    }

    /// Puts receipt outbox entry `key`, whose value is `event` encoded
    /// ([`receipt_entry_body`]). Engines (and the default) store the encoding; the writer's
    /// outbox memo (`outbox_memo.rs`) keeps the event, so the pumps that deliver it need not
    /// read it back and decode it, and encodes it only if the entry reaches the engine.
    fn put_receipt_entry(
        &mut self,
        key: &[u8],
        event: Arc<ReceiptEvent>,
    ) -> Result<(), StoreError> {
        self.put(key, &receipt_entry_body(&event)?)
    }

    /// Says that `key`, if it still holds `value`, no longer needs to survive a restart: a
    /// center-id index entry whose message ended. A layer that holds such keys in memory
    /// (`short_lived.rs`) keeps it readable for a while but never writes it to the engine;
    /// engines, and this default, keep it as it is (until purge, as before). Layers in
    /// between pass it on.
    fn retire(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let _ = (key, value);
        Ok(())
    }

    /// Takes message `id` as its last save in the writer left it, decoded, if the writer's
    /// outermost layer (`live.rs`) still has it: the op that asks then owns it, and loads it
    /// from its records when this answers `None` (engines and other layers always do).
    fn take_live(&mut self, id: MessageId) -> Option<Message> {
        let _ = id;
        None
    }

    /// Hands a message an op has just saved to the writer's outermost layer (`live.rs`), for
    /// the message's next op to [`take_live`](Self::take_live). Engines and other layers
    /// drop it.
    fn keep_live(&mut self, m: Message) {
        drop(m);
    }
}

/// The `retire` of a layer that holds nothing of it: passed on to its field `$inner`.
/// Written inside the layer's `impl Kv`.
macro_rules! pass_retire_through {
    ($inner:ident) => {
        fn retire(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
            self.$inner.retire(key, value)
        }
    };
}
pub(crate) use pass_retire_through;

/// The `scan` of a layer that keeps some keys of `[start, end)` itself: `inner`'s first
/// `limit` keys merged with `held`, the layer's own keys in the range (at least its first
/// `limit`, in any order), or `inner`'s alone when `held` is `None` (the range holds none of
/// the layer's keys). Every key among the first `limit` of the union is one of those,
/// because a layer's removals of keys `inner` has reach `inner` in the same transaction.
pub(crate) fn scan_merged(
    inner: &dyn KvRead,
    (start, end): (&[u8], &[u8]),
    limit: usize,
    held: Option<Vec<Entry>>,
    out: &mut Vec<Entry>,
) -> Result<(), StoreError> {
    let Some(held) = held else {
        return inner.scan(start, end, limit, out);
    };
    let mut engine = Vec::new();
    inner.scan(start, end, limit, &mut engine)?;
    let mut merged: std::collections::BTreeMap<Vec<u8>, Vec<u8>> = engine.into_iter().collect();
    merged.extend(held);
    out.extend(merged.into_iter().take(limit));
    Ok(())
}

/// A receipt outbox entry's stored value: its event as JSON.
pub(crate) fn receipt_entry_body(event: &ReceiptEvent) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(event).map_err(|e| StoreError::Encode(e.to_string()))
}

/// The `last_key` of a layer that keeps some keys itself: the later of `inner`'s last key
/// in `[start, end)` and `held_last`, the layer's own.
pub(crate) fn last_key_merged(
    inner: &dyn KvRead,
    (start, end): (&[u8], &[u8]),
    held_last: Option<Vec<u8>>,
) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(inner.last_key(start, end)?.max(held_last))
}

/// Fills `out` with up to `limit` entries of `[start, end)` table by table: `each(tag, left,
/// out)` appends at most `left` entries of the table for key tag `tag`, in key order (engines
/// keep one table per tag), and the next table is asked only while entries are still wanted.
pub(crate) fn per_table(
    start: &[u8],
    end: &[u8],
    limit: usize,
    out: &mut Vec<(Vec<u8>, Vec<u8>)>,
    mut each: impl FnMut(u8, usize, &mut Vec<(Vec<u8>, Vec<u8>)>) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    if start >= end || limit == 0 {
        return Ok(());
    }
    let goal = out.len() + limit;
    for tag in tags_between(start, end) {
        let left = goal - out.len();
        if left == 0 {
            break;
        }
        each(tag, left, out)?;
    }
    Ok(())
}

/// [`Kv::take_range`] key by key: a scan, then a delete of each key through `kv` (the
/// default, and what a layer does for the keys it keeps itself).
pub(crate) fn take_each(
    kv: &mut (impl Kv + ?Sized),
    start: &[u8],
    end: &[u8],
    limit: usize,
    out: &mut Vec<(Vec<u8>, Vec<u8>)>,
) -> Result<(), StoreError> {
    let from = out.len();
    kv.scan(start, end, limit, out)?;
    let keys: Vec<Vec<u8>> = out[from..].iter().map(|(k, _)| k.clone()).collect();
    for k in &keys {
        kv.delete(k)?;
    }
    Ok(())
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

    /// How many times the engine was closed and opened again in this process (after an I/O
    /// error). Each reopen goes back to the last durable commit, so relaxed commits since
    /// then may be gone: the writer checks its in-memory lease records against the engine
    /// when this changes (`in_flight.rs`). Engines that never reopen keep the default, 0.
    fn reopens(&self) -> u64 {
        0
    }
}

/// An engine stand-in for the unit tests of the Kv layers: an ordered map, to check what
/// reaches the engine, counting point reads and writes.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct MapKv {
    pub(crate) map: std::collections::BTreeMap<Vec<u8>, Vec<u8>>,
    pub(crate) gets: std::cell::Cell<usize>,
    pub(crate) puts: usize,
}

#[cfg(test)]
impl KvRead for MapKv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.gets.set(self.gets.get() + 1);
        Ok(self.map.get(key).cloned())
    }
    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
        out: &mut Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<(), StoreError> {
        out.extend(
            self.map
                .range(start.to_vec()..end.to_vec())
                .take(limit)
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        Ok(())
    }
    fn last_key(&self, start: &[u8], end: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .map
            .range(start.to_vec()..end.to_vec())
            .next_back()
            .map(|(k, _)| k.clone()))
    }
}

#[cfg(test)]
impl Kv for MapKv {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.puts += 1;
        self.map.insert(key.to_vec(), value.to_vec());
        Ok(())
    }
    fn delete(&mut self, key: &[u8]) -> Result<(), StoreError> {
        self.map.remove(key);
        Ok(())
    }
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

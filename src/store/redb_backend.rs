//! redb backend (the default), committed with `Durability::Immediate` (fsync before `commit`
//! returns), or `Durability::None` for `write_relaxed`.
//!
//! The store's one ordered key space is split by the key's first byte (the "table" tag of
//! `keys.rs`) into one redb table per tag, named `sluice.XX` (hex of the tag; the empty key
//! lives in `sluice.00`). Each table keeps the whole key, so ordering inside a table is the
//! key-space order and a scan over several tags walks their tables in tag order. Why: the
//! small, hot queue indexes (ready, lease, outbox) then sit in shallow trees of their own
//! instead of deep inside the tree of ~250-byte message records, which cuts the pages every
//! put, delete and commit touches.
//!
//! Tables are opened lazily, the first time a transaction touches a tag. A write transaction
//! creates the table of a tag it writes; reads treat a missing table as empty. `tags` remembers
//! which tables may exist (a superset: a table created by an aborted transaction stays marked),
//! so a wide scan skips absent tags without asking redb.
//!
//! Stores written before the split kept everything in one table named `sluice`; `open` moves
//! its entries into the per-tag tables in one transaction and drops it.
//!
//! Crash recovery: every commit records the allocator state (redb's quick repair), so an
//! open after a crash is as fast as a clean one instead of a walk over the whole file.
//!
//! I/O failures (a full disk above all): redb latches its first failed file write and answers
//! every later operation `PreviousIo` until the database is closed and opened again. So an
//! I/O error marks the handle failed, and the next operation closes and reopens the file
//! (redb recovers to the last durable commit, which is all that was ever acknowledged):
//! a gateway whose disk filled up works again once space returns, without a restart.
//! A full disk is reported as [`StoreError::NoSpace`], other I/O as [`StoreError::Io`].

use std::cell::RefCell;
use std::path::Path;
use std::sync::RwLockReadGuard;
use std::sync::atomic::{AtomicU64, Ordering};

use redb::{
    Database, Durability, ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTable, Table,
    TableDefinition, TableError, TableHandle, WriteTransaction,
};

use super::backend::{Backend, Kv, KvRead, Reopening, per_table, tag_of, tags_between};
use super::error::StoreError;

type Def<'a> = TableDefinition<'a, &'static [u8], &'static [u8]>;
type RwTable<'t> = Table<'t, &'static [u8], &'static [u8]>;
type RoTable = ReadOnlyTable<&'static [u8], &'static [u8]>;

/// The single table of the layout before the per-tag split.
const LEGACY: Def<'static> = TableDefinition::new("sluice");
/// Prefix of per-tag table names.
const PREFIX: &str = "sluice.";
/// Entries moved per step when migrating the legacy table.
const MIGRATE_CHUNK: usize = 4096;

fn table_name(tag: u8) -> String {
    format!("{PREFIX}{tag:02x}")
}

/// Which per-tag tables may exist: 256 bits.
#[derive(Debug, Default)]
struct Tags([AtomicU64; 4]);

impl Tags {
    fn mark(&self, tag: u8) {
        self.0[usize::from(tag >> 6)].fetch_or(1 << (tag & 63), Ordering::Relaxed);
    }

    fn has(&self, tag: u8) -> bool {
        self.0[usize::from(tag >> 6)].load(Ordering::Relaxed) & (1 << (tag & 63)) != 0
    }
}

/// A redb database file.
#[derive(Debug)]
pub struct RedbBackend {
    /// The database file, reopened after an I/O error latched redb.
    db: Reopening<Database>,
    tags: Tags,
}

/// A redb error as a store error: a full disk → [`StoreError::NoSpace`], other file I/O
/// (and redb's latch of an earlier one) → [`StoreError::Io`], the rest → `Backend`.
fn redb_error(e: impl Into<redb::Error>) -> StoreError {
    match e.into() {
        redb::Error::Io(io) => StoreError::from_io(io),
        redb::Error::PreviousIo => StoreError::Io("an earlier I/O error latched the file".into()),
        other => StoreError::backend(other),
    }
}

fn open_db(path: &Path) -> Result<Database, StoreError> {
    Database::builder()
        .set_cache_size(CACHE_BYTES)
        .create(path)
        .map_err(redb_error)
}

/// redb's page cache. Its default (1 GiB) alone would blow the gateway's memory budget
/// (the target: RSS < 300 MB with 10 M queued, see BENCHMARKS.md); the hot set is the queue indexes and the
/// newest pages, which fit comfortably in this.
pub(crate) const CACHE_BYTES: usize = 64 * 1024 * 1024;

impl RedbBackend {
    /// Opens (or creates) the database file `dir/sluice.redb`, creating `dir` if needed.
    /// A file in the single-table layout is converted on the way.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        let dir = dir.as_ref();
        super::backend::create_dir(dir)?;
        let path = dir.join("sluice.redb");
        let db = open_db(&path)?;
        let backend = Self {
            db: Reopening::new(db, path),
            tags: Tags::default(),
        };
        let mut legacy = false;
        {
            let txn = backend.db()?.begin_read().map_err(redb_error)?;
            for t in txn.list_tables().map_err(redb_error)? {
                let name = t.name();
                if name == LEGACY.name() {
                    legacy = true;
                } else if let Some(tag) = name
                    .strip_prefix(PREFIX)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    backend.tags.mark(tag);
                }
            }
        }
        if legacy {
            backend.migrate_legacy()?;
        }
        Ok(backend)
    }

    /// Moves every entry of the legacy single table into the per-tag tables, atomically.
    fn migrate_legacy(&self) -> Result<(), StoreError> {
        let db = self.db()?;
        let txn = db.begin_write().map_err(redb_error)?;
        let moved = {
            let old = txn.open_table(LEGACY).map_err(redb_error)?;
            let mut kv = WriteKv::new(&txn, &self.tags);
            let mut n = 0usize;
            let mut from: Vec<u8> = Vec::new();
            loop {
                let mut chunk = Vec::with_capacity(MIGRATE_CHUNK);
                for item in old
                    .range::<&[u8]>(from.as_slice()..)
                    .map_err(redb_error)?
                    .take(MIGRATE_CHUNK)
                {
                    let (k, v) = item.map_err(redb_error)?;
                    chunk.push((k.value().to_vec(), v.value().to_vec()));
                }
                let Some((last, _)) = chunk.last() else { break };
                from = last.clone();
                from.push(0); // the next key after `last`
                for (k, v) in &chunk {
                    kv.put(k, v)?;
                }
                n += chunk.len();
            }
            n
        };
        txn.delete_table(LEGACY).map_err(redb_error)?;
        txn.commit().map_err(redb_error)?;
        tracing::info!(
            entries = moved,
            "redb store: moved the single-table layout to per-tag tables"
        );
        Ok(())
    }
}

/// The open database, behind the handle's read lock.
struct Open<'a>(RwLockReadGuard<'a, Option<Database>>);

impl std::ops::Deref for Open<'_> {
    type Target = Database;
    fn deref(&self) -> &Database {
        // `RedbBackend::db` hands out an `Open` only over `Some`.
        self.0
            .as_ref()
            .unwrap_or_else(|| unreachable!("Open over a closed handle"))
    }
}

impl RedbBackend {
    /// The database, reopened first when an I/O error latched it (redb recovers to its last
    /// durable commit).
    fn db(&self) -> Result<Open<'_>, StoreError> {
        self.db.get(open_db).map(Open)
    }

    /// Marks the handle for a reopen when `r` failed on file I/O.
    fn note<R>(&self, r: Result<R, StoreError>) -> Result<R, StoreError> {
        self.db.note(r)
    }

    fn write_with<R>(
        &self,
        durability: Durability,
        f: impl FnOnce(&mut dyn Kv) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let r = self.write_once(durability, f);
        self.note(r)
    }

    fn write_once<R>(
        &self,
        durability: Durability,
        f: impl FnOnce(&mut dyn Kv) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let db = self.db()?;
        let mut txn = db.begin_write().map_err(redb_error)?;
        txn.set_durability(durability).map_err(redb_error)?;
        // Quick repair: the commit records redb's allocator state (two-phase commit), so an
        // open after a crash loads it instead of walking every page of the file to rebuild
        // it. Without it a restart after kill -9 costs time in proportion to the file: 26 s
        // for a 1 GiB file, where 10 M queued messages take ≈ 3.6 GB (BENCHMARKS.md,
        // "Restart with 10 M queued"). Each commit pays for it: ≈ 2.7 ms more wall time per
        // small durable commit in the same measurement.
        txn.set_quick_repair(true);
        let result = {
            let mut kv = WriteKv::new(&txn, &self.tags);
            f(&mut kv)
        };
        match result {
            Ok(r) => {
                txn.commit().map_err(redb_error)?;
                Ok(r)
            }
            Err(e) => {
                // Dropping the changes is all that matters; an abort error adds nothing.
                let _ = txn.abort();
                Err(e)
            }
        }
    }
}

/// Pairs with `start <= key < end` from one table.
fn scan_table<T: ReadableTable<&'static [u8], &'static [u8]>>(
    t: &T,
    start: &[u8],
    end: &[u8],
    limit: usize,
    out: &mut Vec<(Vec<u8>, Vec<u8>)>,
) -> Result<(), StoreError> {
    for item in t.range(start..end).map_err(redb_error)?.take(limit) {
        let (k, v) = item.map_err(redb_error)?;
        out.push((k.value().to_vec(), v.value().to_vec()));
    }
    Ok(())
}

fn last_in<T: ReadableTable<&'static [u8], &'static [u8]>>(
    t: &T,
    start: &[u8],
    end: &[u8],
) -> Result<Option<Vec<u8>>, StoreError> {
    match t.range(start..end).map_err(redb_error)?.next_back() {
        Some(item) => Ok(Some(item.map_err(redb_error)?.0.value().to_vec())),
        None => Ok(None),
    }
}

/// Per-tag table access shared by the read and write views: `with(tag, f)` runs `f` on the
/// tag's table, or returns `None` when the table does not exist.
trait Tables {
    type T: ReadableTable<&'static [u8], &'static [u8]>;

    fn with<R>(
        &self,
        tag: u8,
        f: impl FnOnce(&Self::T) -> Result<R, StoreError>,
    ) -> Result<Option<R>, StoreError>;
}

fn get<S: Tables>(s: &S, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(s.with(tag_of(key), |t| {
        Ok(t.get(key).map_err(redb_error)?.map(|v| v.value().to_vec()))
    })?
    .flatten())
}

fn scan<S: Tables>(
    s: &S,
    start: &[u8],
    end: &[u8],
    limit: usize,
    out: &mut Vec<(Vec<u8>, Vec<u8>)>,
) -> Result<(), StoreError> {
    per_table(start, end, limit, out, |tag, left, out| {
        s.with(tag, |t| scan_table(t, start, end, left, out))
            .map(drop)
    })
}

fn last_key<S: Tables>(s: &S, start: &[u8], end: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
    if start >= end {
        return Ok(None);
    }
    for tag in tags_between(start, end).rev() {
        if let Some(k) = s.with(tag, |t| last_in(t, start, end))?.flatten() {
            return Ok(Some(k));
        }
    }
    Ok(None)
}

/// The view inside a write transaction. Tables are opened on first use and kept for the
/// transaction; they must all be dropped before the commit.
struct WriteKv<'t> {
    txn: &'t WriteTransaction,
    tags: &'t Tags,
    open: RefCell<Vec<(u8, RwTable<'t>)>>,
}

impl<'t> WriteKv<'t> {
    fn new(txn: &'t WriteTransaction, tags: &'t Tags) -> Self {
        Self {
            txn,
            tags,
            open: RefCell::new(Vec::with_capacity(12)),
        }
    }

    /// Index in `open` of the tag's table, opening (creating) it if `create`.
    fn slot(&self, tag: u8, create: bool) -> Result<Option<usize>, StoreError> {
        let mut open = self.open.borrow_mut();
        if let Some(i) = open.iter().position(|(t, _)| *t == tag) {
            return Ok(Some(i));
        }
        if !create && !self.tags.has(tag) {
            return Ok(None);
        }
        let name = table_name(tag);
        let table = self.txn.open_table(Def::new(&name)).map_err(redb_error)?;
        self.tags.mark(tag);
        open.push((tag, table));
        Ok(Some(open.len() - 1))
    }
}

impl<'t> Tables for WriteKv<'t> {
    type T = RwTable<'t>;

    fn with<R>(
        &self,
        tag: u8,
        f: impl FnOnce(&Self::T) -> Result<R, StoreError>,
    ) -> Result<Option<R>, StoreError> {
        let Some(i) = self.slot(tag, false)? else {
            return Ok(None);
        };
        let open = self.open.borrow();
        f(&open[i].1).map(Some)
    }
}

impl KvRead for WriteKv<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        get(self, key)
    }

    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
        out: &mut Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<(), StoreError> {
        scan(self, start, end, limit, out)
    }

    fn last_key(&self, start: &[u8], end: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        last_key(self, start, end)
    }
}

impl Kv for WriteKv<'_> {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let Some(i) = self.slot(tag_of(key), true)? else {
            return Err(StoreError::Backend("table not opened".into()));
        };
        self.open.get_mut()[i]
            .1
            .insert(key, value)
            .map_err(redb_error)?;
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), StoreError> {
        let Some(i) = self.slot(tag_of(key), false)? else {
            return Ok(());
        };
        self.open.get_mut()[i].1.remove(key).map_err(redb_error)?;
        Ok(())
    }

    /// redb's insert returns the old value anyway: no extra lookup.
    fn replace(&mut self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(i) = self.slot(tag_of(key), true)? else {
            return Err(StoreError::Backend("table not opened".into()));
        };
        Ok(self.open.get_mut()[i]
            .1
            .insert(key, value)
            .map_err(redb_error)?
            .map(|old| old.value().to_vec()))
    }

    /// One cursor per table removes the run of entries (`extract_from_if`), instead of a
    /// search from the root per key.
    fn take_range(
        &mut self,
        start: &[u8],
        end: &[u8],
        limit: usize,
        out: &mut Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<(), StoreError> {
        per_table(start, end, limit, out, |tag, left, out| {
            let Some(i) = self.slot(tag, false)? else {
                return Ok(());
            };
            let table = &mut self.open.get_mut()[i].1;
            let taken = table
                .extract_from_if(start..end, |_, _| true)
                .map_err(redb_error)?;
            for item in taken.take(left) {
                let (k, v) = item.map_err(redb_error)?;
                out.push((k.value().to_vec(), v.value().to_vec()));
            }
            Ok(())
        })
    }

    /// redb's remove returns the old value anyway: no extra lookup.
    fn take(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(i) = self.slot(tag_of(key), false)? else {
            return Ok(None);
        };
        Ok(self.open.get_mut()[i]
            .1
            .remove(key)
            .map_err(redb_error)?
            .map(|old| old.value().to_vec()))
    }
}

/// The view of a read transaction; a missing table reads as empty.
struct ReadKv<'a> {
    txn: ReadTransaction,
    tags: &'a Tags,
    /// Tables looked up so far: `None` = does not exist in this snapshot.
    open: RefCell<Vec<(u8, Option<RoTable>)>>,
}

impl Tables for ReadKv<'_> {
    type T = RoTable;

    fn with<R>(
        &self,
        tag: u8,
        f: impl FnOnce(&Self::T) -> Result<R, StoreError>,
    ) -> Result<Option<R>, StoreError> {
        if !self.tags.has(tag) {
            return Ok(None);
        }
        let mut open = self.open.borrow_mut();
        let i = match open.iter().position(|(t, _)| *t == tag) {
            Some(i) => i,
            None => {
                let table = match self.txn.open_table(Def::new(&table_name(tag))) {
                    Ok(t) => Some(t),
                    Err(TableError::TableDoesNotExist(_)) => None,
                    Err(e) => return Err(StoreError::backend(e)),
                };
                open.push((tag, table));
                open.len() - 1
            }
        };
        match &open[i].1 {
            Some(t) => f(t).map(Some),
            None => Ok(None),
        }
    }
}

impl KvRead for ReadKv<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        get(self, key)
    }

    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
        out: &mut Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<(), StoreError> {
        scan(self, start, end, limit, out)
    }

    fn last_key(&self, start: &[u8], end: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        last_key(self, start, end)
    }
}

impl Backend for RedbBackend {
    fn name(&self) -> &'static str {
        "redb"
    }

    fn write<R>(
        &self,
        f: impl FnOnce(&mut dyn Kv) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        self.write_with(Durability::Immediate, f)
    }

    /// redb's `Durability::None`: the commit is visible at once and made durable by the next
    /// `Immediate` commit.
    fn write_relaxed<R>(
        &self,
        f: impl FnOnce(&mut dyn Kv) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        self.write_with(Durability::None, f)
    }

    fn reopens(&self) -> u64 {
        self.db.reopens()
    }

    fn read<R>(
        &self,
        f: impl FnOnce(&dyn KvRead) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let r = (|| {
            let txn = self.db()?.begin_read().map_err(redb_error)?;
            f(&ReadKv {
                txn,
                tags: &self.tags,
                open: RefCell::new(Vec::new()),
            })
        })();
        self.note(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `take_range` through redb's cursor takes what a scan and a delete per key would:
    /// the same entries, in order, across tables, leaving the same rest.
    #[test]
    fn take_range_agrees_with_a_scan_and_deletes() {
        use crate::store::backend::{MapKv, take_each};
        let dir = tempfile::tempdir().unwrap();
        let db = RedbBackend::open(dir.path()).unwrap();
        let mut model = MapKv::default();
        let keys: Vec<Vec<u8>> = (0u8..40).map(|i| vec![2 + i % 3, i / 3, i]).collect();
        db.write(|kv| {
            for k in &keys {
                kv.put(k, &[k[2], 7])?;
                model.put(k, &[k[2], 7])?;
            }
            Ok(())
        })
        .unwrap();
        let cases: [(&[u8], &[u8], usize); 7] = [
            (&[2], &[3], 5),
            (&[2, 3], &[4, 2], 9),
            (&[3], &[5], 100),
            (&[2], &[2], 3),
            (&[4, 9], &[4, 200], 0),
            (&[0], &[9], 4),
            (&[0], &[9], 1000),
        ];
        for (start, end, limit) in cases {
            let mut want = vec![(b"x".to_vec(), b"y".to_vec())];
            take_each(&mut model, start, end, limit, &mut want).unwrap();
            let mut got = vec![(b"x".to_vec(), b"y".to_vec())];
            db.write(|kv| kv.take_range(start, end, limit, &mut got))
                .unwrap();
            assert_eq!(got, want, "take_range({start:?}, {end:?}, {limit})");
            let mut rest = Vec::new();
            db.read(|kv| kv.scan(&[0], &[9], usize::MAX, &mut rest))
                .unwrap();
            let model_rest: Vec<_> = model.map.clone().into_iter().collect();
            assert_eq!(
                rest, model_rest,
                "after take_range({start:?}, {end:?}, {limit})"
            );
        }
        assert!(model.map.is_empty(), "the last case takes everything");
    }

    #[test]
    fn single_table_stores_are_converted_on_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = Database::create(dir.path().join("sluice.redb")).unwrap();
            let txn = db.begin_write().unwrap();
            {
                let mut t = txn.open_table(LEGACY).unwrap();
                t.insert(&[1u8, 0, 1][..], &b"a"[..]).unwrap();
                t.insert(&[2u8, 9][..], &b"b"[..]).unwrap();
                t.insert(&[][..], &b"empty"[..]).unwrap();
            }
            txn.commit().unwrap();
        }
        let b = RedbBackend::open(dir.path()).unwrap();
        let all = b
            .read(|kv| {
                let mut out = Vec::new();
                kv.scan(&[], &[0xFF, 0xFF], 10, &mut out)?;
                Ok(out)
            })
            .unwrap();
        assert_eq!(
            all,
            vec![
                (vec![], b"empty".to_vec()),
                (vec![1, 0, 1], b"a".to_vec()),
                (vec![2, 9], b"b".to_vec()),
            ]
        );
        drop(b);
        // Converted once: the legacy table is gone and the data stays after a reopen.
        let b = RedbBackend::open(dir.path()).unwrap();
        let txn = b.db().unwrap().begin_read().unwrap();
        assert!(matches!(
            txn.open_table(LEGACY),
            Err(TableError::TableDoesNotExist(_))
        ));
        assert_eq!(b.read(|kv| kv.get(&[2, 9])).unwrap(), Some(b"b".to_vec()));
    }
}

//! fjall backend (`--features fjall`): an LSM tree, kept to compare with redb on the queue
//! lifecycle (issue 19); never the default.
//!
//! One `SingleWriterTxDatabase` in `dir/sluice.fjall`. The store's one ordered key space is
//! split by the key's tag (its first byte, `keys.rs`) into one keyspace per tag, named
//! `sluice.XX` like redb's tables, each keeping whole keys, so a scan over several tags walks
//! their keyspaces in tag order. Why one per tag: each keyspace is its own LSM tree, so the
//! short-lived queue indexes (ready, lease, center id, outbox) compact apart from the large
//! message records, and their tombstones do not sit in front of record lookups.
//!
//! Keyspaces are created the first time a transaction writes a tag (an empty keyspace left by
//! an aborted transaction is harmless); reads treat a missing one as empty.
//!
//! fjall refuses (panics on) an empty key and keys over 64 KiB. The backend trait allows the
//! empty key, so keyspace `sluice.00` stores every key behind one extra 0x00 byte (the same
//! byte in front of every key keeps their order, and scan bounds get it too); a key too long
//! for fjall is an error, never handed to it.
//!
//! Durability: a `write` commits with `PersistMode::SyncAll` (journal flushed and fsync'd
//! before `commit` returns), so an acknowledged batch survives kill -9. `write_relaxed`
//! commits with no persist at all: the batch sits in the journal's buffer and reaches the disk
//! with the next durable commit (the journal is one sequential file, so commits become
//! durable in order), or is lost whole by a crash before it (fjall's journal recovery drops a
//! torn batch).
//!
//! I/O failures: fjall poisons the database after a failed journal write or fsync and answers
//! every later write `Poisoned`. As in `redb_backend.rs`, an I/O error (or the poison) marks
//! the handle failed, and the next operation drops every handle and opens the directory again;
//! fjall recovers from its journal to the last durable commit, which is all that was ever
//! acknowledged. A full disk is [`StoreError::NoSpace`], other I/O [`StoreError::Io`].

use std::borrow::Cow;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard};

use fjall::{
    KeyspaceCreateOptions, PersistMode, Readable, SingleWriterTxDatabase, SingleWriterTxKeyspace,
    SingleWriterWriteTx,
};

use super::backend::{Backend, Kv, KvRead, Reopening, per_table, tag_of, tags_between};
use super::error::StoreError;

/// Prefix of per-tag keyspace names (the same names as redb's tables).
const PREFIX: &str = "sluice.";

/// fjall's block cache; the same budget as redb's page cache (`redb_backend::CACHE_BYTES`), for
/// the same reason (RSS < 300 MB with 10 M queued) and so the comparison is fair.
const CACHE_BYTES: u64 = super::redb_backend::CACHE_BYTES as u64;

/// Longest key fjall takes (its limit is 65 536 bytes; one byte kept for the tag-0 prefix).
const MAX_KEY: usize = 65_535;

fn keyspace_name(tag: u8) -> String {
    format!("{PREFIX}{tag:02x}")
}

/// The key as stored in its tag's keyspace: tag 0 (which holds the empty key fjall refuses)
/// stores every key behind a 0x00 byte, the other tags store it as is.
fn stored(tag: u8, key: &[u8]) -> Cow<'_, [u8]> {
    if tag == 0 {
        let mut k = Vec::with_capacity(key.len() + 1);
        k.push(0);
        k.extend_from_slice(key);
        Cow::Owned(k)
    } else {
        Cow::Borrowed(key)
    }
}

/// The store's key back from the stored one (see [`stored`]).
fn unstored(tag: u8, stored: &[u8]) -> &[u8] {
    if tag == 0 {
        stored.get(1..).unwrap_or_default()
    } else {
        stored
    }
}

/// A key fjall would refuse (only the tag-0 prefix keeps the empty key away from it).
fn check_len(key: &[u8]) -> Result<(), StoreError> {
    if key.len() > MAX_KEY {
        return Err(StoreError::Encode(format!(
            "key of {} bytes, longer than fjall's limit",
            key.len()
        )));
    }
    Ok(())
}

/// A fjall error as a store error: a full disk → [`StoreError::NoSpace`], other file I/O and
/// the poison an earlier one left → [`StoreError::Io`], the rest → `Backend`.
fn fjall_error(e: fjall::Error) -> StoreError {
    match e {
        fjall::Error::Io(io) | fjall::Error::Storage(fjall::LsmError::Io(io)) => {
            StoreError::from_io(io)
        }
        fjall::Error::Poisoned => {
            StoreError::Io("an earlier I/O error poisoned the database".into())
        }
        other => StoreError::backend(other),
    }
}

/// The open database and its per-tag keyspaces.
struct Db {
    db: SingleWriterTxDatabase,
    /// Indexed by tag; `None` = no keyspace for that tag yet.
    spaces: RwLock<Vec<Option<SingleWriterTxKeyspace>>>,
}

impl Db {
    fn open(path: &Path) -> Result<Self, StoreError> {
        let db = SingleWriterTxDatabase::builder(path)
            .cache_size(CACHE_BYTES)
            .open()
            .map_err(fjall_error)?;
        let mut spaces = vec![None; 256];
        for name in db.list_keyspace_names() {
            let Some(tag) = name
                .strip_prefix(PREFIX)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            else {
                continue;
            };
            let ks = db
                .keyspace(&name, KeyspaceCreateOptions::default)
                .map_err(fjall_error)?;
            spaces[usize::from(tag)] = Some(ks);
        }
        Ok(Self {
            db,
            spaces: RwLock::new(spaces),
        })
    }

    fn spaces(&self) -> RwLockReadGuard<'_, Vec<Option<SingleWriterTxKeyspace>>> {
        self.spaces.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the tag's keyspace, or returns `None` when it does not exist.
    fn with<R>(
        &self,
        tag: u8,
        f: impl FnOnce(&SingleWriterTxKeyspace) -> Result<R, StoreError>,
    ) -> Result<Option<R>, StoreError> {
        match &self.spaces()[usize::from(tag)] {
            Some(ks) => f(ks).map(Some),
            None => Ok(None),
        }
    }

    /// Makes sure the tag's keyspace exists (only the writer creates them).
    fn create(&self, tag: u8) -> Result<(), StoreError> {
        if self.spaces()[usize::from(tag)].is_some() {
            return Ok(());
        }
        let ks = self
            .db
            .keyspace(&keyspace_name(tag), KeyspaceCreateOptions::default)
            .map_err(fjall_error)?;
        self.spaces.write().unwrap_or_else(PoisonError::into_inner)[usize::from(tag)] = Some(ks);
        Ok(())
    }
}

/// A fjall database directory.
pub struct FjallBackend {
    /// The database directory, reopened after an I/O error poisoned fjall.
    open: Reopening<Db>,
    /// A relaxed commit changed data since the last fsync of the journal.
    unpersisted: AtomicBool,
}

impl std::fmt::Debug for FjallBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FjallBackend")
            .field("path", &self.open.path())
            .finish_non_exhaustive()
    }
}

/// The open database, behind the handle's read lock.
struct Handle<'a>(RwLockReadGuard<'a, Option<Db>>);

impl std::ops::Deref for Handle<'_> {
    type Target = Db;
    fn deref(&self) -> &Db {
        // `FjallBackend::handle` hands out a `Handle` only over `Some`.
        self.0
            .as_ref()
            .unwrap_or_else(|| unreachable!("Handle over a closed database"))
    }
}

impl FjallBackend {
    /// Opens (or creates) the database in `dir/sluice.fjall`, creating `dir` if needed.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        let dir = dir.as_ref();
        super::backend::create_dir(dir)?;
        let path = dir.join("sluice.fjall");
        let open = Db::open(&path)?;
        Ok(Self {
            open: Reopening::new(open, path),
            unpersisted: AtomicBool::new(false),
        })
    }

    /// Bytes the database takes on disk (journal and tables), as fjall counts them.
    pub fn disk_space(&self) -> Result<u64, StoreError> {
        self.note(
            self.handle()
                .and_then(|h| h.db.disk_space().map_err(fjall_error)),
        )
    }

    /// The database, reopened first when an I/O error poisoned it (fjall recovers from its
    /// journal; dropping the last handle stops fjall's workers and releases its lock).
    fn handle(&self) -> Result<Handle<'_>, StoreError> {
        self.open
            .get(|path| {
                let db = Db::open(path)?;
                // Whatever a relaxed commit left in the dropped journal buffer is gone or on disk.
                self.unpersisted.store(false, Ordering::Relaxed);
                Ok(db)
            })
            .map(Handle)
    }

    /// Marks the handle for a reopen when `r` failed on file I/O.
    fn note<R>(&self, r: Result<R, StoreError>) -> Result<R, StoreError> {
        self.open.note(r)
    }

    fn write_with<R>(
        &self,
        durable: bool,
        f: impl FnOnce(&mut dyn Kv) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let r = self.write_once(durable, f);
        self.note(r)
    }

    fn write_once<R>(
        &self,
        durable: bool,
        f: impl FnOnce(&mut dyn Kv) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let h = self.handle()?;
        let mode = durable.then_some(PersistMode::SyncAll);
        let mut kv = WriteKv {
            tx: h.db.write_tx().durability(mode),
            open: &h,
            wrote: false,
        };
        let r = f(&mut kv)?;
        let WriteKv { tx, wrote, .. } = kv;
        if wrote {
            // An empty transaction commits nothing (fjall skips it), so only a written one
            // persists here; with SyncAll it also fsyncs every relaxed batch before it.
            tx.commit().map_err(fjall_error)?;
            self.unpersisted.store(!durable, Ordering::Relaxed);
        } else {
            tx.rollback();
            // A durable write makes every earlier relaxed one durable, even if it changed
            // nothing itself.
            if durable && self.unpersisted.load(Ordering::Relaxed) {
                h.db.persist(PersistMode::SyncAll).map_err(fjall_error)?;
                self.unpersisted.store(false, Ordering::Relaxed);
            }
        }
        Ok(r)
    }
}

/// Pairs with `start <= key < end` from the keyspace of `tag`, read through `r`.
fn scan_space(
    r: &impl Readable,
    (tag, ks): (u8, &SingleWriterTxKeyspace),
    start: &[u8],
    end: &[u8],
    limit: usize,
    out: &mut Vec<(Vec<u8>, Vec<u8>)>,
) -> Result<(), StoreError> {
    let range = stored(tag, start)..stored(tag, end);
    for item in r.range(ks, range).take(limit) {
        let (k, v) = item.into_inner().map_err(fjall_error)?;
        out.push((unstored(tag, &k).to_vec(), v.to_vec()));
    }
    Ok(())
}

fn get(r: &impl Readable, open: &Db, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
    if key.len() > MAX_KEY {
        // Never written, so absent.
        return Ok(None);
    }
    let tag = tag_of(key);
    Ok(open
        .with(tag, |ks| {
            let v = r.get(ks, stored(tag, key)).map_err(fjall_error)?;
            Ok(v.map(|v| v.to_vec()))
        })?
        .flatten())
}

fn scan(
    r: &impl Readable,
    open: &Db,
    start: &[u8],
    end: &[u8],
    limit: usize,
    out: &mut Vec<(Vec<u8>, Vec<u8>)>,
) -> Result<(), StoreError> {
    per_table(start, end, limit, out, |tag, left, out| {
        open.with(tag, |ks| scan_space(r, (tag, ks), start, end, left, out))
            .map(drop)
    })
}

fn last_key(
    r: &impl Readable,
    open: &Db,
    start: &[u8],
    end: &[u8],
) -> Result<Option<Vec<u8>>, StoreError> {
    if start >= end {
        return Ok(None);
    }
    for tag in tags_between(start, end).rev() {
        let last = open.with(tag, |ks| {
            let range = stored(tag, start)..stored(tag, end);
            match r.range(ks, range).next_back() {
                Some(item) => {
                    let k = item.key().map_err(fjall_error)?;
                    Ok(Some(unstored(tag, &k).to_vec()))
                }
                None => Ok(None),
            }
        })?;
        if let Some(k) = last.flatten() {
            return Ok(Some(k));
        }
    }
    Ok(None)
}

/// The view inside a write transaction (reads see its own writes).
struct WriteKv<'a> {
    tx: SingleWriterWriteTx<'a>,
    open: &'a Db,
    /// A put or delete was made (an empty transaction is not committed).
    wrote: bool,
}

impl KvRead for WriteKv<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        get(&self.tx, self.open, key)
    }

    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
        out: &mut Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<(), StoreError> {
        scan(&self.tx, self.open, start, end, limit, out)
    }

    fn last_key(&self, start: &[u8], end: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        last_key(&self.tx, self.open, start, end)
    }
}

impl Kv for WriteKv<'_> {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        check_len(key)?;
        let tag = tag_of(key);
        self.open.create(tag)?;
        let tx = &mut self.tx;
        self.open.with(tag, |ks| {
            tx.insert(ks, &*stored(tag, key), value);
            Ok(())
        })?;
        self.wrote = true;
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), StoreError> {
        if key.len() > MAX_KEY {
            // Never written, nothing to delete.
            return Ok(());
        }
        let tag = tag_of(key);
        let tx = &mut self.tx;
        // No keyspace, nothing to delete.
        if self
            .open
            .with(tag, |ks| {
                tx.remove(ks, &*stored(tag, key));
                Ok(())
            })?
            .is_some()
        {
            self.wrote = true;
        }
        Ok(())
    }
}

/// The view of a snapshot; a missing keyspace reads as empty.
struct ReadKv<'a> {
    snapshot: fjall::Snapshot,
    open: &'a Db,
}

impl KvRead for ReadKv<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        get(&self.snapshot, self.open, key)
    }

    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
        out: &mut Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<(), StoreError> {
        scan(&self.snapshot, self.open, start, end, limit, out)
    }

    fn last_key(&self, start: &[u8], end: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        last_key(&self.snapshot, self.open, start, end)
    }
}

impl Backend for FjallBackend {
    fn name(&self) -> &'static str {
        "fjall"
    }

    fn write<R>(
        &self,
        f: impl FnOnce(&mut dyn Kv) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        self.write_with(true, f)
    }

    /// Commits without persisting: the next durable `write` fsyncs it with its own batch.
    fn write_relaxed<R>(
        &self,
        f: impl FnOnce(&mut dyn Kv) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        self.write_with(false, f)
    }

    fn reopens(&self) -> u64 {
        self.open.reopens()
    }

    fn read<R>(
        &self,
        f: impl FnOnce(&dyn KvRead) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let r = (|| {
            let h = self.handle()?;
            f(&ReadKv {
                snapshot: h.db.read_tx(),
                open: &h,
            })
        })();
        self.note(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(b: &FjallBackend) -> Vec<(Vec<u8>, Vec<u8>)> {
        b.read(|kv| {
            let mut out = Vec::new();
            kv.scan(&[], &[0xFF, 0xFF], 100, &mut out)?;
            Ok(out)
        })
        .unwrap()
    }

    #[test]
    fn keyspaces_per_tag_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let b = FjallBackend::open(dir.path()).unwrap();
            b.write(|kv| {
                kv.put(&[2, 9], b"b")?;
                kv.put(&[], b"empty")?;
                kv.put(&[1, 0, 1], b"a")
            })
            .unwrap();
        }
        let b = FjallBackend::open(dir.path()).unwrap();
        assert_eq!(
            all(&b),
            vec![
                (vec![], b"empty".to_vec()),
                (vec![1, 0, 1], b"a".to_vec()),
                (vec![2, 9], b"b".to_vec()),
            ]
        );
        let h = b.handle().unwrap();
        let mut names: Vec<String> =
            h.db.list_keyspace_names()
                .iter()
                .map(|n| n.to_string())
                .collect();
        names.sort();
        assert_eq!(names, ["sluice.00", "sluice.01", "sluice.02"]);
    }

    #[test]
    fn keys_fjall_refuses_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        let b = FjallBackend::open(dir.path()).unwrap();
        let long = vec![7u8; MAX_KEY + 1];
        assert!(matches!(
            b.write(|kv| kv.put(&long, b"v")),
            Err(StoreError::Encode(_))
        ));
        b.write(|kv| {
            assert_eq!(kv.get(&long)?, None);
            kv.delete(&long)
        })
        .unwrap();
        // The empty key and tag-0 keys keep their order around the other tags.
        b.write(|kv| {
            kv.put(&[0], b"zero")?;
            kv.put(&[], b"empty")?;
            kv.put(&[0, 0], b"zero-zero")?;
            kv.put(&[1], b"one")
        })
        .unwrap();
        let keys: Vec<Vec<u8>> = all(&b).into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, [vec![], vec![0], vec![0, 0], vec![1]]);
        b.read(|kv| {
            assert_eq!(kv.last_key(&[], &[1])?, Some(vec![0, 0]));
            assert_eq!(kv.last_key(&[], &[0])?, Some(vec![]));
            assert_eq!(kv.get(&[])?, Some(b"empty".to_vec()));
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn a_durable_write_that_changes_nothing_persists_earlier_relaxed_ones() {
        let dir = tempfile::tempdir().unwrap();
        let b = FjallBackend::open(dir.path()).unwrap();
        b.write_relaxed(|kv| kv.put(&[5, 1], b"x")).unwrap();
        assert!(b.unpersisted.load(Ordering::Relaxed));
        b.write(|kv| kv.get(&[5, 1]).map(drop)).unwrap();
        assert!(!b.unpersisted.load(Ordering::Relaxed));
        b.write_relaxed(|kv| kv.put(&[5, 2], b"y")).unwrap();
        b.write(|kv| kv.put(&[5, 3], b"z")).unwrap();
        assert!(!b.unpersisted.load(Ordering::Relaxed));
    }

    #[test]
    fn a_failed_handle_is_reopened_before_the_next_operation() {
        let dir = tempfile::tempdir().unwrap();
        let b = FjallBackend::open(dir.path()).unwrap();
        b.write(|kv| kv.put(&[1, 1], b"kept")).unwrap();
        // What an I/O error inside fjall leaves behind.
        let r: Result<(), _> = b.note(Err(StoreError::Io("disk gone".into())));
        assert!(r.is_err());
        assert!(b.open.is_failed());
        assert_eq!(
            b.read(|kv| kv.get(&[1, 1])).unwrap(),
            Some(b"kept".to_vec())
        );
        assert!(!b.open.is_failed());
        b.write(|kv| kv.put(&[1, 2], b"new")).unwrap();
        assert_eq!(all(&b).len(), 2);
    }
}

//! sled 0.34 backend (`--features sled`), kept for comparison with redb (unmaintained since 2021; never the default).
//!
//! sled transactions cannot scan, so a write transaction here is an in-memory overlay of puts
//! and deletes over the tree: reads merge the overlay with committed data, and commit applies
//! the overlay as one atomic `Batch` and then `flush`es. That is sound only because the store's
//! single writer thread is the only one that writes.
//!
//! Weakness (documented, not fixed): sled range iterators are not a point-in-time snapshot, so
//! a pure read that scans (outbox) can observe a batch applied while it iterates.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::backend::{Backend, Kv, KvRead};
use super::error::StoreError;

/// How long `open` waits for the lock a just-closed handle is still releasing.
const LOCK_WAIT: Duration = Duration::from_secs(3);

/// A sled database directory.
#[derive(Debug)]
pub struct SledBackend {
    db: sled::Db,
    /// A batch was applied since the last `flush`.
    unflushed: AtomicBool,
}

impl SledBackend {
    /// Opens (or creates) the sled database in `dir/sluice.sled`.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        let dir = dir.as_ref();
        super::backend::create_dir(dir)?;
        let config = sled::Config::new().path(dir.join("sluice.sled"));
        // sled 0.34 releases its file lock from a background thread after the last handle is
        // dropped, so reopening right after a close can briefly fail with WouldBlock.
        let mut wait = Duration::from_millis(5);
        let deadline = Instant::now() + LOCK_WAIT;
        loop {
            match config.open() {
                Ok(db) => {
                    return Ok(Self {
                        db,
                        unflushed: AtomicBool::new(false),
                    });
                }
                Err(sled::Error::Io(e))
                    if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline =>
                {
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_millis(100));
                }
                Err(e) => return Err(StoreError::backend(e)),
            }
        }
    }
}

impl SledBackend {
    fn write_with<R>(
        &self,
        durable: bool,
        f: impl FnOnce(&mut dyn Kv) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let mut overlay = Overlay {
            tree: &self.db,
            pending: BTreeMap::new(),
        };
        let r = f(&mut overlay)?;
        if !overlay.pending.is_empty() {
            let mut batch = sled::Batch::default();
            for (k, v) in overlay.pending {
                match v {
                    Some(v) => batch.insert(k, v),
                    None => batch.remove(k),
                }
            }
            self.db.apply_batch(batch).map_err(StoreError::backend)?;
            self.unflushed.store(true, Ordering::Relaxed);
        }
        // A durable write also makes every earlier relaxed one durable, even if it changed
        // nothing itself.
        if durable
            && self.unflushed.swap(false, Ordering::Relaxed)
            && let Err(e) = self.db.flush()
        {
            self.unflushed.store(true, Ordering::Relaxed);
            return Err(StoreError::backend(e));
        }
        Ok(r)
    }
}

impl Drop for SledBackend {
    /// A clean close makes relaxed writes durable too (as redb does on close).
    fn drop(&mut self) {
        if self.unflushed.load(Ordering::Relaxed)
            && let Err(e) = self.db.flush()
        {
            tracing::error!(error = %e, "sled: flush on close failed");
        }
    }
}

struct Committed<'a>(&'a sled::Tree);

impl KvRead for Committed<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .0
            .get(key)
            .map_err(StoreError::backend)?
            .map(|v| v.to_vec()))
    }

    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
        out: &mut Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<(), StoreError> {
        if start >= end {
            return Ok(());
        }
        for item in self.0.range(start..end).take(limit) {
            let (k, v) = item.map_err(StoreError::backend)?;
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok(())
    }

    fn last_key(&self, start: &[u8], end: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if start >= end {
            return Ok(None);
        }
        match self.0.range(start..end).next_back() {
            Some(item) => Ok(Some(item.map_err(StoreError::backend)?.0.to_vec())),
            None => Ok(None),
        }
    }
}

/// Pending writes over committed data; `None` = deleted.
struct Overlay<'a> {
    tree: &'a sled::Tree,
    pending: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl Overlay<'_> {
    fn pending_range(
        &self,
        start: &[u8],
        end: &[u8],
    ) -> impl DoubleEndedIterator<Item = (&Vec<u8>, &Option<Vec<u8>>)> {
        self.pending
            .range::<[u8], _>((Bound::Included(start), Bound::Excluded(end)))
    }
}

impl KvRead for Overlay<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.pending.get(key) {
            Some(v) => Ok(v.clone()),
            None => Committed(self.tree).get(key),
        }
    }

    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
        out: &mut Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<(), StoreError> {
        if start >= end {
            return Ok(());
        }
        let mut tree = self.tree.range(start..end).peekable();
        let mut over = self.pending_range(start, end).peekable();
        let mut taken = 0;
        while taken < limit {
            let tree_key = match tree.peek() {
                Some(Ok((k, _))) => Some(k.to_vec()),
                Some(Err(_)) => {
                    return Err(StoreError::backend(
                        tree.next()
                            .and_then(Result::err)
                            .map_or_else(|| "iteration failed".to_owned(), |e| e.to_string()),
                    ));
                }
                None => None,
            };
            let use_overlay = match (over.peek(), &tree_key) {
                (None, None) => break,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (Some((ok, _)), Some(tk)) => ok.as_slice() <= tk.as_slice(),
            };
            if use_overlay {
                let Some((k, v)) = over.next() else { break };
                if tree_key.as_deref() == Some(k.as_slice()) {
                    tree.next();
                }
                if let Some(v) = v {
                    out.push((k.clone(), v.clone()));
                    taken += 1;
                }
            } else if let Some(Ok((k, v))) = tree.next() {
                out.push((k.to_vec(), v.to_vec()));
                taken += 1;
            }
        }
        Ok(())
    }

    fn last_key(&self, start: &[u8], end: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if start >= end {
            return Ok(None);
        }
        let from_overlay = self
            .pending_range(start, end)
            .rev()
            .find(|(_, v)| v.is_some())
            .map(|(k, _)| k.clone());
        let mut from_tree = None;
        for item in self.tree.range(start..end).rev() {
            let (k, _) = item.map_err(StoreError::backend)?;
            if !matches!(self.pending.get(k.as_ref()), Some(None)) {
                from_tree = Some(k.to_vec());
                break;
            }
        }
        Ok(from_overlay.max(from_tree))
    }
}

impl Kv for Overlay<'_> {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.pending.insert(key.to_vec(), Some(value.to_vec()));
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), StoreError> {
        self.pending.insert(key.to_vec(), None);
        Ok(())
    }
}

impl Backend for SledBackend {
    fn name(&self) -> &'static str {
        "sled"
    }

    fn write<R>(
        &self,
        f: impl FnOnce(&mut dyn Kv) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        self.write_with(true, f)
    }

    /// Applies the batch without `flush`; the next durable write flushes it.
    fn write_relaxed<R>(
        &self,
        f: impl FnOnce(&mut dyn Kv) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        self.write_with(false, f)
    }

    fn read<R>(
        &self,
        f: impl FnOnce(&dyn KvRead) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        f(&Committed(&self.db))
    }
}

//! redb backend (the default): one table of byte keys → byte values, committed with
//! `Durability::Immediate` (fsync before `commit` returns).
//!
//! All namespaces live in one table (see `keys.rs`), so a transaction opens exactly one table
//! and the generic op code needs no table handles.

use std::path::Path;

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use super::backend::{Backend, Kv, KvRead};
use super::error::StoreError;

const TABLE: TableDefinition<'static, &'static [u8], &'static [u8]> =
    TableDefinition::new("sluice");

/// A redb database file.
#[derive(Debug)]
pub struct RedbBackend {
    db: Database,
}

impl RedbBackend {
    /// Opens (or creates) the database file `dir/sluice.redb`, creating `dir` if needed.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Open {
            path: dir.display().to_string(),
            source,
        })?;
        let db = Database::create(dir.join("sluice.redb")).map_err(StoreError::backend)?;
        // Create the table so read transactions can open it before the first write.
        let txn = db.begin_write().map_err(StoreError::backend)?;
        txn.open_table(TABLE).map_err(StoreError::backend)?;
        txn.commit().map_err(StoreError::backend)?;
        Ok(Self { db })
    }
}

/// Shared read logic for read-only and writable tables.
fn scan_table<T: ReadableTable<&'static [u8], &'static [u8]>>(
    t: &T,
    start: &[u8],
    end: &[u8],
    limit: usize,
    out: &mut Vec<(Vec<u8>, Vec<u8>)>,
) -> Result<(), StoreError> {
    if start >= end || limit == 0 {
        return Ok(());
    }
    for item in t
        .range(start..end)
        .map_err(StoreError::backend)?
        .take(limit)
    {
        let (k, v) = item.map_err(StoreError::backend)?;
        out.push((k.value().to_vec(), v.value().to_vec()));
    }
    Ok(())
}

fn last_in<T: ReadableTable<&'static [u8], &'static [u8]>>(
    t: &T,
    start: &[u8],
    end: &[u8],
) -> Result<Option<Vec<u8>>, StoreError> {
    if start >= end {
        return Ok(None);
    }
    match t
        .range(start..end)
        .map_err(StoreError::backend)?
        .next_back()
    {
        Some(item) => Ok(Some(item.map_err(StoreError::backend)?.0.value().to_vec())),
        None => Ok(None),
    }
}

struct Reader<T>(T);

impl<T: ReadableTable<&'static [u8], &'static [u8]>> KvRead for Reader<T> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .0
            .get(key)
            .map_err(StoreError::backend)?
            .map(|v| v.value().to_vec()))
    }

    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
        out: &mut Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<(), StoreError> {
        scan_table(&self.0, start, end, limit, out)
    }

    fn last_key(&self, start: &[u8], end: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        last_in(&self.0, start, end)
    }
}

impl Kv for Reader<redb::Table<'_, &'static [u8], &'static [u8]>> {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.0.insert(key, value).map_err(StoreError::backend)?;
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), StoreError> {
        self.0.remove(key).map_err(StoreError::backend)?;
        Ok(())
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
        let mut txn = self.db.begin_write().map_err(StoreError::backend)?;
        txn.set_durability(Durability::Immediate)
            .map_err(StoreError::backend)?;
        let result = {
            let table = txn.open_table(TABLE).map_err(StoreError::backend)?;
            let mut kv = Reader(table);
            f(&mut kv)
        };
        match result {
            Ok(r) => {
                txn.commit().map_err(StoreError::backend)?;
                Ok(r)
            }
            Err(e) => {
                // Dropping the changes is all that matters; an abort error adds nothing.
                let _ = txn.abort();
                Err(e)
            }
        }
    }

    fn read<R>(
        &self,
        f: impl FnOnce(&dyn KvRead) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let txn = self.db.begin_read().map_err(StoreError::backend)?;
        let table = txn.open_table(TABLE).map_err(StoreError::backend)?;
        f(&Reader(table))
    }
}

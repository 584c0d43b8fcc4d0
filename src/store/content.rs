//! Content-addressed blobs: the MIME bodies of MMS messages, stored once per distinct
//! SHA-256 digest under `<dir>/<first two hex digits>/<64 hex digits>`, however many message
//! records reference them (a campaign sends one MMS to millions of subscribers).
//!
//! Durability: [`ContentStore::put`] writes a temporary file, fsyncs it, renames it into
//! place and fsyncs the directory before it returns, and the caller commits the messages
//! that reference it only after that — so a committed message never points at content a
//! crash could lose.
//!
//! References: the store keeps a count per digest (`keys::CONTENT_REF`), changed in the SAME
//! transaction as the insert (+1) or purge (−1) of a message that references it. When a purge
//! takes a count to 0 it leaves a release marker (`keys::CONTENT_FREE`); after that commit
//! [`collect`] removes the file (unless a new reference or a pending insert appeared) and the
//! marker. A crash anywhere in between leaves either a marker (collected on the next purge)
//! or a file with no count (removed at the next open by [`ContentStore::sweep_orphans`], as
//! are files written for an insert that never committed).
//!
//! Pins close the one race left: between `put` and the commit of its insert, a digest has a
//! file but no count yet. A [`ContentPin`] marks it in memory until the caller drops it
//! (after the commit), and removal skips pinned digests; `put` and removal hold the same
//! lock, so a put either sees the file gone (and writes it again) or keeps it.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use sha2::{Digest as _, Sha256};

use super::backend::{Kv, KvRead};
use super::error::StoreError;
use super::keys;

/// SHA-256 of `body`: the content's key.
pub fn digest(body: &[u8]) -> [u8; 32] {
    Sha256::digest(body).into()
}

/// Lowercase hex of a digest (the file name).
pub fn digest_hex(d: &[u8; 32]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn digest_from_hex(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut d = [0u8; 32];
    for (i, out) in d.iter_mut().enumerate() {
        *out = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(d)
}

/// The content files of one store.
#[derive(Debug)]
pub struct ContentStore {
    dir: PathBuf,
    /// Digests put but not yet committed (count of live pins each); guarded together with
    /// every file creation and removal.
    pins: Mutex<HashMap<[u8; 32], usize>>,
}

/// Keeps a digest's file from being collected until the insert that references it has
/// committed. Drop it after the commit (or after giving up).
#[derive(Debug)]
pub struct ContentPin {
    store: Arc<ContentStore>,
    digest: [u8; 32],
    size: u64,
}

impl ContentPin {
    /// The content's digest.
    pub const fn digest(&self) -> &[u8; 32] {
        &self.digest
    }

    /// The content's size in bytes.
    pub const fn size(&self) -> u64 {
        self.size
    }
}

impl Drop for ContentPin {
    fn drop(&mut self) {
        let mut pins = self.store.lock();
        if let Some(n) = pins.get_mut(&self.digest) {
            *n -= 1;
            if *n == 0 {
                pins.remove(&self.digest);
            }
        }
    }
}

fn io_err(path: &Path, source: std::io::Error) -> StoreError {
    StoreError::Content {
        path: path.display().to_string(),
        source,
    }
}

/// Makes a rename or removal in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(|e| io_err(dir, e))
}

impl ContentStore {
    /// Opens (creating) the content directory `dir`.
    ///
    /// # Errors
    /// The directory cannot be created.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Open {
            path: dir.display().to_string(),
            source,
        })?;
        Ok(Self {
            dir: dir.to_owned(),
            pins: Mutex::new(HashMap::new()),
        })
    }

    /// The directory the files live in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<[u8; 32], usize>> {
        // The map stays consistent whatever panicked while holding it (plain counters).
        self.pins.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Where the content with digest `d` lives.
    pub fn path(&self, d: &[u8; 32]) -> PathBuf {
        let hex = digest_hex(d);
        self.dir.join(&hex[..2]).join(hex)
    }

    /// Makes `body` durable (once per distinct digest) and pins it until the returned pin
    /// is dropped. Blocking file I/O: call it off the async runtime's workers.
    ///
    /// # Errors
    /// The file could not be written or synced.
    pub fn put(self: &Arc<Self>, body: &[u8]) -> Result<ContentPin, StoreError> {
        let d = digest(body);
        let mut pins = self.lock();
        let path = self.path(&d);
        if !path.exists() {
            write_durably(&path, body)?;
        }
        *pins.entry(d).or_insert(0) += 1;
        drop(pins);
        Ok(ContentPin {
            store: Arc::clone(self),
            digest: d,
            size: body.len() as u64,
        })
    }

    /// The body stored under `d`; `None` when there is no such file.
    ///
    /// # Errors
    /// The file exists but cannot be read.
    pub fn load(&self, d: &[u8; 32]) -> Result<Option<Vec<u8>>, StoreError> {
        let path = self.path(d);
        match std::fs::read(&path) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path, e)),
        }
    }

    /// Removes the file of `d` if no pin holds it and `referenced` (asked under the lock, so
    /// no put can slip in between) says no message references it. `true` if removed.
    fn remove_unless(
        &self,
        d: &[u8; 32],
        referenced: impl FnOnce() -> Result<bool, StoreError>,
    ) -> Result<bool, StoreError> {
        let pins = self.lock();
        if pins.contains_key(d) || referenced()? {
            return Ok(false);
        }
        let path = self.path(d);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_err(&path, e)),
        }
        drop(pins);
        if let Some(parent) = path.parent() {
            sync_dir(parent)?;
        }
        Ok(true)
    }

    /// Every content file (digest and path), plus leftover temporary files.
    fn files(&self) -> Result<(Vec<[u8; 32]>, Vec<PathBuf>), StoreError> {
        let mut found = Vec::new();
        let mut junk = Vec::new();
        let read = |p: &Path| std::fs::read_dir(p).map_err(|e| io_err(p, e));
        for sub in read(&self.dir)? {
            let sub = sub.map_err(|e| io_err(&self.dir, e))?.path();
            if !sub.is_dir() {
                continue;
            }
            for f in read(&sub)? {
                let f = f.map_err(|e| io_err(&sub, e))?.path();
                match f
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(digest_from_hex)
                {
                    Some(d) => found.push(d),
                    None => junk.push(f),
                }
            }
        }
        Ok((found, junk))
    }

    /// At open, before anything is put: removes temporary files and every content file no
    /// message references (written for an insert that never committed, or whose release a
    /// crash interrupted), and clears the release markers. Returns how many files went.
    ///
    /// # Errors
    /// Listing or removing files, or reading the counts, failed.
    pub(crate) fn sweep_orphans(&self, kv: &mut dyn Kv) -> Result<usize, StoreError> {
        let (found, junk) = self.files()?;
        for f in junk {
            std::fs::remove_file(&f).map_err(|e| io_err(&f, e))?;
        }
        let mut n = 0;
        for d in found {
            if refs(kv, &d)? == 0 && self.remove_unless(&d, || Ok(false))? {
                n += 1;
            }
        }
        let mut markers = Vec::new();
        loop {
            markers.clear();
            kv.scan(
                &[keys::CONTENT_FREE],
                &[keys::CONTENT_FREE + 1],
                1024,
                &mut markers,
            )?;
            if markers.is_empty() {
                return Ok(n);
            }
            for (k, _) in &markers {
                kv.delete(k)?;
            }
        }
    }

    /// Removes the files of the released digests `released` that are still unreferenced in
    /// the committed data `read` returns. Returns the digests handled (file removed or
    /// found re-referenced), whose markers may go.
    pub(crate) fn collect(
        &self,
        released: &[[u8; 32]],
        referenced: impl Fn(&[u8; 32]) -> Result<bool, StoreError>,
    ) -> Result<Vec<[u8; 32]>, StoreError> {
        let mut done = Vec::with_capacity(released.len());
        for d in released {
            let pinned = self.lock().contains_key(d);
            if pinned {
                // An insert of the same content is under way: its commit deletes the marker.
                continue;
            }
            self.remove_unless(d, || referenced(d))?;
            done.push(*d);
        }
        Ok(done)
    }
}

fn write_durably(path: &Path, body: &[u8]) -> Result<(), StoreError> {
    let dir = path
        .parent()
        .ok_or_else(|| io_err(path, std::io::ErrorKind::InvalidInput.into()))?;
    std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
    let tmp = dir.join(format!(
        ".tmp-{}",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("content")
    ));
    let mut f = std::fs::File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
    f.write_all(body)
        .and_then(|()| f.sync_all())
        .map_err(|e| io_err(&tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| io_err(path, e))?;
    sync_dir(dir)?;
    // The two-hex-digit directory may be new: its entry in the top directory too.
    if let Some(top) = dir.parent() {
        sync_dir(top)?;
    }
    Ok(())
}

// ---- reference counts, inside store transactions ----

/// Messages referencing `d` in the data `kv` sees.
pub(crate) fn refs(kv: &dyn KvRead, d: &[u8; 32]) -> Result<u64, StoreError> {
    let k = keys::content(keys::CONTENT_REF, d);
    kv.get(&k)?.map_or(Ok(0), |v| {
        keys::be_u64(&v, 0).ok_or_else(|| super::ops::corrupt(&k, "short reference count"))
    })
}

/// One more message references `d` (at its insert).
pub(crate) fn add_ref(kv: &mut dyn Kv, d: &[u8; 32]) -> Result<(), StoreError> {
    let n = refs(kv, d)?;
    kv.put(&keys::content(keys::CONTENT_REF, d), &(n + 1).to_be_bytes())?;
    if n == 0 {
        // Released earlier but not collected yet: it is in use again.
        kv.delete(&keys::content(keys::CONTENT_FREE, d))?;
    }
    Ok(())
}

/// One message fewer references `d` (at its purge); at 0 the count goes and a release
/// marker is left for [`collect`](ContentStore::collect).
pub(crate) fn release_ref(kv: &mut dyn Kv, d: &[u8; 32]) -> Result<(), StoreError> {
    let k = keys::content(keys::CONTENT_REF, d);
    match refs(kv, d)? {
        0 | 1 => {
            kv.delete(&k)?;
            kv.put(&keys::content(keys::CONTENT_FREE, d), &[])?;
        }
        n => kv.put(&k, &(n - 1).to_be_bytes())?,
    }
    Ok(())
}

/// Up to `limit` released digests.
pub(crate) fn released(kv: &dyn KvRead, limit: usize) -> Result<Vec<[u8; 32]>, StoreError> {
    let mut found = Vec::new();
    kv.scan(
        &[keys::CONTENT_FREE],
        &[keys::CONTENT_FREE + 1],
        limit,
        &mut found,
    )?;
    Ok(found
        .iter()
        .filter_map(|(k, _)| <[u8; 32]>::try_from(k.get(1..)?).ok())
        .collect())
}

/// Removes the release markers of `digests` (their files were collected).
pub(crate) fn forget(kv: &mut dyn Kv, digests: &[[u8; 32]]) -> Result<usize, StoreError> {
    for d in digests {
        kv.delete(&keys::content(keys::CONTENT_FREE, d))?;
    }
    Ok(digests.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_names_round_trip() {
        let d = digest(b"hello");
        assert_eq!(
            digest_hex(&d),
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(digest_from_hex(&digest_hex(&d)), Some(d));
        assert_eq!(digest_from_hex("zz"), None);
    }

    #[test]
    fn put_writes_once_and_pins_keep_files() {
        let dir = tempfile::tempdir().unwrap();
        let cs = Arc::new(ContentStore::open(dir.path()).unwrap());
        let a = cs.put(b"body").unwrap();
        let b = cs.put(b"body").unwrap();
        assert_eq!(a.digest(), b.digest());
        assert_eq!(cs.load(a.digest()).unwrap().as_deref(), Some(&b"body"[..]));
        let (files, junk) = cs.files().unwrap();
        assert_eq!((files.len(), junk.len()), (1, 0));
        // Pinned: not removed even though nothing references it.
        let d = *a.digest();
        assert_eq!(
            cs.collect(&[d], |_| Ok(false)).unwrap(),
            Vec::<[u8; 32]>::new()
        );
        assert!(cs.path(&d).exists());
        drop((a, b));
        // Referenced: kept, but handled.
        assert_eq!(cs.collect(&[d], |_| Ok(true)).unwrap(), vec![d]);
        assert!(cs.path(&d).exists());
        assert_eq!(cs.collect(&[d], |_| Ok(false)).unwrap(), vec![d]);
        assert!(!cs.path(&d).exists());
        assert_eq!(cs.load(&d).unwrap(), None);
    }
}

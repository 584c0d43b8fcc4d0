//! The engine chosen in config (`storage.backend`), as one type: the gateway binary holds a
//! `Store<AnyBackend>` while tests and benches can name an engine directly.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::backend::{Backend, Kv, KvRead};
use super::error::StoreError;
#[cfg(feature = "fjall")]
use super::fjall_backend::FjallBackend;
use super::redb_backend::RedbBackend;
#[cfg(feature = "sled")]
use super::sled_backend::SledBackend;

/// Which engine to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// redb (default).
    #[default]
    Redb,
    /// sled 0.34 (needs the `sled` cargo feature).
    Sled,
    /// fjall 3 (needs the `fjall` cargo feature).
    Fjall,
}

/// One of the compiled-in engines.
#[derive(Debug)]
#[non_exhaustive]
pub enum AnyBackend {
    /// redb.
    Redb(RedbBackend),
    /// sled.
    #[cfg(feature = "sled")]
    Sled(SledBackend),
    /// fjall.
    #[cfg(feature = "fjall")]
    Fjall(FjallBackend),
}

impl AnyBackend {
    /// Opens `kind` under `dir`. Asking for sled or fjall in a build without its feature is an
    /// error.
    pub fn open(kind: BackendKind, dir: &Path) -> Result<Self, StoreError> {
        match kind {
            BackendKind::Redb => Ok(Self::Redb(RedbBackend::open(dir)?)),
            #[cfg(feature = "sled")]
            BackendKind::Sled => Ok(Self::Sled(SledBackend::open(dir)?)),
            #[cfg(not(feature = "sled"))]
            BackendKind::Sled => Err(StoreError::Backend(
                "this build has no sled backend (rebuild with --features sled)".into(),
            )),
            #[cfg(feature = "fjall")]
            BackendKind::Fjall => Ok(Self::Fjall(FjallBackend::open(dir)?)),
            #[cfg(not(feature = "fjall"))]
            BackendKind::Fjall => Err(StoreError::Backend(
                "this build has no fjall backend (rebuild with --features fjall)".into(),
            )),
        }
    }
}

impl Backend for AnyBackend {
    fn name(&self) -> &'static str {
        match self {
            Self::Redb(b) => b.name(),
            #[cfg(feature = "sled")]
            Self::Sled(b) => b.name(),
            #[cfg(feature = "fjall")]
            Self::Fjall(b) => b.name(),
        }
    }

    fn write<R>(
        &self,
        f: impl FnOnce(&mut dyn Kv) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        match self {
            Self::Redb(b) => b.write(f),
            #[cfg(feature = "sled")]
            Self::Sled(b) => b.write(f),
            #[cfg(feature = "fjall")]
            Self::Fjall(b) => b.write(f),
        }
    }

    fn write_relaxed<R>(
        &self,
        f: impl FnOnce(&mut dyn Kv) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        match self {
            Self::Redb(b) => b.write_relaxed(f),
            #[cfg(feature = "sled")]
            Self::Sled(b) => b.write_relaxed(f),
            #[cfg(feature = "fjall")]
            Self::Fjall(b) => b.write_relaxed(f),
        }
    }

    fn read<R>(
        &self,
        f: impl FnOnce(&dyn KvRead) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        match self {
            Self::Redb(b) => b.read(f),
            #[cfg(feature = "sled")]
            Self::Sled(b) => b.read(f),
            #[cfg(feature = "fjall")]
            Self::Fjall(b) => b.read(f),
        }
    }

    fn reopens(&self) -> u64 {
        match self {
            Self::Redb(b) => b.reopens(),
            #[cfg(feature = "sled")]
            Self::Sled(b) => b.reopens(),
            #[cfg(feature = "fjall")]
            Self::Fjall(b) => b.reopens(),
        }
    }
}

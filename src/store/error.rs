//! Store errors. Logical outcomes (duplicate, unknown id) are results, not errors: an error
//! means the batch was not applied.

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The storage engine failed (I/O, corruption detected by the engine, …).
    #[error("storage engine: {0}")]
    Backend(String),
    /// A stored value could not be decoded.
    #[error("corrupt record under key {key}: {reason}")]
    Corrupt {
        /// Hex of the key.
        key: String,
        /// What was wrong.
        reason: String,
    },
    /// A record could not be encoded.
    #[error("cannot encode record: {0}")]
    Encode(String),
    /// The disk is full: nothing of the operation was written. Ingress answers it as
    /// "try later" (HTTP 503 with `Retry-After`, SMPP `ESME_RMSGQFUL`), not as a failure;
    /// the store works again once space returns.
    #[error("no space left on the store's disk: {0}")]
    NoSpace(String),
    /// File I/O of the engine failed (other than a full disk); the engine's file is reopened
    /// before the next operation.
    #[error("storage I/O: {0}")]
    Io(String),
    /// The writer thread has stopped (store closed or crashed).
    #[error("store writer stopped")]
    Closed,
    /// Filesystem error while opening.
    #[error("opening store at {path}: {source}")]
    Open {
        /// Path opened.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
    /// A content file (`content.rs`) could not be written, read or removed.
    #[error("content store at {path}: {source}")]
    Content {
        /// File or directory.
        path: String,
        /// Cause.
        source: std::io::Error,
    },
}

impl StoreError {
    /// The same failure again, for the next producer of a group that failed as one (errors
    /// are not `Clone`: an `io::Error` is not).
    pub(crate) fn again(&self) -> Self {
        match self {
            Self::NoSpace(s) => Self::NoSpace(s.clone()),
            Self::Io(s) => Self::Io(s.clone()),
            Self::Encode(s) => Self::Encode(s.clone()),
            Self::Backend(s) => Self::Backend(s.clone()),
            Self::Corrupt { key, reason } => Self::Corrupt {
                key: key.clone(),
                reason: reason.clone(),
            },
            Self::Closed => Self::Closed,
            other if other.is_no_space() => Self::NoSpace(other.to_string()),
            other => Self::Io(other.to_string()),
        }
    }

    /// Wraps any engine error.
    pub fn backend(e: impl std::fmt::Display) -> Self {
        Self::Backend(e.to_string())
    }

    /// An engine's I/O error: [`Self::NoSpace`] when the disk (or quota) is full, else
    /// [`Self::Io`].
    pub fn from_io(e: std::io::Error) -> Self {
        if is_no_space(&e) {
            Self::NoSpace(e.to_string())
        } else {
            Self::Io(e.to_string())
        }
    }

    /// Whether the operation failed for want of disk space (a content file or the engine).
    pub fn is_no_space(&self) -> bool {
        match self {
            Self::NoSpace(_) => true,
            Self::Content { source, .. } | Self::Open { source, .. } => is_no_space(source),
            _ => false,
        }
    }
}

/// `ENOSPC` / `EDQUOT` (std maps them to these kinds).
pub fn is_no_space(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_told_apart_from_other_io() {
        let full = || std::io::Error::from(std::io::ErrorKind::StorageFull);
        assert!(StoreError::from_io(full()).is_no_space());
        assert!(StoreError::from_io(std::io::Error::from_raw_os_error(28)).is_no_space());
        let content = StoreError::Content {
            path: "content/ab".into(),
            source: full(),
        };
        assert!(content.is_no_space());
        let other = StoreError::from_io(std::io::Error::other("bad sector"));
        assert!(matches!(other, StoreError::Io(_)));
        assert!(!other.is_no_space());
    }
}

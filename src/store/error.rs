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
    /// Wraps any engine error.
    pub fn backend(e: impl std::fmt::Display) -> Self {
        Self::Backend(e.to_string())
    }
}

//! Error types of the campaign service, one enum per operation family.
//!
//! Variants carry the values that failed so callers (CLI, HTTP API) can print them
//! without re-deriving context.

use crate::lifecycle::{Blocked, TaskState};

/// Errors from the SQLite store and everything built on it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite reported an error (I/O, constraint, corrupt file, ...).
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A persisted roaring bitmap did not deserialize.
    #[error("corrupt bitmap in {table} row {id}: {source}")]
    Bitmap {
        table: &'static str,
        id: i64,
        #[source]
        source: std::io::Error,
    },
    /// A persisted JSON column did not deserialize.
    #[error("corrupt json in {table} row {id}: {source}")]
    Json {
        table: &'static str,
        id: i64,
        #[source]
        source: serde_json::Error,
    },
    /// The database was written by a newer schema than this binary knows.
    #[error("database schema version {found} is newer than supported {supported}")]
    SchemaTooNew { found: i64, supported: i64 },
}

/// Errors of the campaign service operations.
#[derive(Debug, thiserror::Error)]
pub enum CampaignError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A referenced row does not exist.
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: i64 },
    /// A lifecycle transition that is refused; `why` says by what (the state machine, the
    /// approval chain owning the move, or an unapproved activity/campaign).
    #[error("task {task}: illegal transition {from} -> {to} ({why})")]
    IllegalTransition {
        task: i64,
        from: TaskState,
        to: TaskState,
        why: Blocked,
    },
    /// Launch/dispatch requested for a task that is not approved for sending.
    #[error("task {task} is {state}; only scheduled/running tasks send")]
    NotSendable { task: i64, state: TaskState },
    /// A condition expression failed to parse.
    #[error(transparent)]
    Parse(#[from] crate::expr::ParseError),
    /// A condition referenced an unknown column or mixed types.
    #[error(transparent)]
    Eval(#[from] crate::expr::EvalError),
    /// Invalid input that is not an expression (bad window, bad template, bad shares ...).
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// No credential, or an unknown, revoked or expired one (HTTP 401).
    #[error("missing or invalid credential")]
    Unauthenticated,
    /// The caller's roles do not allow the operation (HTTP 403).
    #[error("forbidden: {reason}")]
    Forbidden { reason: String },
    /// The caller tried to approve a task they submitted themselves (HTTP 403).
    #[error("cannot approve your own submission")]
    SelfApproval { task: i64 },
    /// The gateway did not take a request the service had to make (an emergency stop);
    /// HTTP 502.
    #[error("gateway: {0}")]
    Gateway(String),
    /// I/O while reading or writing a file (CSV import/export).
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// CSV framing error that makes the rest of the file unreadable.
    #[error("csv: {0}")]
    Csv(#[from] csv::Error),
}

impl From<rusqlite::Error> for CampaignError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Store(StoreError::Sqlite(e))
    }
}

impl CampaignError {
    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

/// Result alias for campaign operations.
pub type Result<T, E = CampaignError> = std::result::Result<T, E>;

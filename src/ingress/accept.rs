//! Accepting a validated batch: ids, routing, one durable store commit.
//!
//! Job: turn [`Item`]s into store [`Message`]s and hand them to the store as ONE group of
//! insert ops, so the batch is atomic (all or nothing) and the caller is answered only after
//! the store's fsync'd commit.
//!
//! Idempotency: the store maps (account, client_ref) → first id inside the same transaction,
//! so a repeat — in a later request or later in the same batch — comes back as
//! `Duplicate(first id)` and nothing new is stored for it.
//!
//! Routing happens here (the channel is part of the ready-queue key); a message no route
//! accepts fails the whole batch with 422 on its `to` field before anything is written.

use std::sync::Arc;

use super::batch::Item;
use super::message::{FieldError, Kind, Submission};
use crate::store::{AnyBackend, Message, MessageId, OpResult, Store, StoreError};

/// Picks the channel for (account, kind, destination); `None` = no route.
pub type RouteFn = Arc<dyn Fn(&str, Kind, &str) -> Option<String> + Send + Sync>;

/// Outcome for one message of an accepted batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// 1-based line in the request.
    pub line: usize,
    /// Gateway id (the first one for a duplicate).
    pub id: MessageId,
    /// Whether the client_ref had been seen before.
    pub duplicate: bool,
}

/// Why a batch could not be accepted.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    /// A message has no route (422).
    #[error("line {line}: {error}")]
    NoRoute {
        /// 1-based line.
        line: usize,
        /// Field `to` and the reason.
        error: FieldError,
    },
    /// The store failed or is closed (500/503); nothing was acknowledged.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store answered an insert with something other than inserted/duplicate.
    #[error("store refused line {line}: {reason}")]
    Refused {
        /// 1-based line.
        line: usize,
        /// Store's reason.
        reason: String,
    },
}

/// Builds the store record for one submission.
pub fn to_message(
    id: MessageId,
    account: &str,
    channel: String,
    s: Submission,
    now_ms: u64,
) -> Message {
    let not_before_ms = s.not_before.map(ms);
    let due_ms = not_before_ms.map_or(now_ms, |nb| nb.max(now_ms));
    let mut m = Message::new(id, account, s.to, s.payload, channel, due_ms, now_ms);
    m.from = Some(s.from);
    m.kind = s.kind;
    m.lane = s.lane;
    m.not_before_ms = not_before_ms;
    m.expires_at_ms = s.expires_at.map(ms);
    m.window = s.window;
    m.client_ref = s.client_ref;
    m.callback_url = s.callback_url;
    m.tags = s.tags;
    m
}

fn ms(t: jiff::Timestamp) -> u64 {
    u64::try_from(t.as_millisecond()).unwrap_or(0)
}

/// Routes, ids and stores a batch durably; resolves after the commit.
///
/// # Errors
/// [`AcceptError`]; on any error nothing of the batch was acknowledged (and on `NoRoute`
/// nothing was written).
pub async fn accept(
    store: &Store<AnyBackend>,
    route: &RouteFn,
    account: &str,
    items: Vec<Item>,
    now_ms: u64,
) -> Result<Vec<Accepted>, AcceptError> {
    let mut lines = Vec::with_capacity(items.len());
    let mut messages = Vec::with_capacity(items.len());
    for Item { line, submission } in items {
        let Some(channel) = route(account, submission.kind, &submission.to) else {
            return Err(AcceptError::NoRoute {
                line,
                error: FieldError {
                    field: "to".into(),
                    reason: format!(
                        "no route for {:?} {:?} from this account",
                        submission.kind, submission.to
                    ),
                },
            });
        };
        let id = store.ids().next(now_ms);
        lines.push(line);
        messages.push(to_message(id, account, channel, submission, now_ms));
    }
    let results = store.insert_batch(messages).await?;
    lines
        .into_iter()
        .zip(results)
        .map(|(line, r)| match r {
            OpResult::Inserted(id) => Ok(Accepted {
                line,
                id,
                duplicate: false,
            }),
            OpResult::Duplicate(id) => Ok(Accepted {
                line,
                id,
                duplicate: true,
            }),
            other => Err(AcceptError::Refused {
                line,
                reason: format!("{other:?}"),
            }),
        })
        .collect()
}

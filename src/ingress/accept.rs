//! Accepting a validated batch: ids, routing, one durable store commit.
//!
//! Job: turn [`Item`]s into store [`Message`]s ([`prepare`]) and hand them to the store as
//! ONE group of insert ops ([`store_prepared`]), so the batch is atomic (all or nothing) and
//! the caller is answered only after the store's fsync'd commit. `http::accept_items` is the
//! two in a row.
//!
//! Idempotency: the store maps (account, client_ref) → first id inside the same transaction,
//! so a repeat — in a later request or later in the same batch — comes back as
//! `Duplicate(first id)` and nothing new is stored for it.
//!
//! Placement happens here: the channel (part of the ready-queue key) and the first due time
//! (not_before, then the first instant inside every applicable window). A message that cannot
//! be placed — no route, or windows that never open — fails the whole batch with 422 before
//! anything is written. Expiry is left to the store's lease, which ends an expired message
//! with an `EXPIRED` receipt.

use std::sync::Arc;

use super::batch::Item;
use super::message::{FieldError, Kind, Submission};
use crate::store::{Message, MessageId, MessageStore, OpResult, StoreError};

/// Where and when a message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Channel name.
    pub channel: String,
    /// First time it may be sent, ms since the epoch.
    pub due_ms: u64,
}

/// Places a message of an account at `now_ms`; the error names the field at fault.
pub type PlaceFn =
    Arc<dyn Fn(&str, &Submission, u64) -> Result<Placement, FieldError> + Send + Sync>;

/// A placement that routes with `route` and makes messages due at max(now, not_before):
/// for tests and setups without windows.
pub fn simple_place(
    route: impl Fn(&str, Kind, &str) -> Option<String> + Send + Sync + 'static,
) -> PlaceFn {
    Arc::new(move |account, s, now_ms| {
        let channel = route(account, s.kind, &s.to).ok_or_else(|| FieldError {
            field: "to".into(),
            reason: format!("no route for {:?} {:?} from this account", s.kind, s.to),
        })?;
        let due_ms = s.not_before.map_or(now_ms, |nb| ms(nb).max(now_ms));
        Ok(Placement { channel, due_ms })
    })
}

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

/// An accepted batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedBatch {
    /// One result per message, in request order.
    pub results: Vec<Accepted>,
    /// Channels the batch's new messages went to (each once).
    pub channels: Vec<String>,
}

/// Why a batch could not be accepted.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    /// A message cannot be placed: no route, or its windows never open (422).
    #[error("line {line}: {error}")]
    Unplaceable {
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
    place: Placement,
    s: Submission,
    now_ms: u64,
) -> Message {
    let not_before_ms = s.not_before.map(ms);
    let Placement { channel, due_ms } = place;
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

/// A batch routed and made into store records, not yet stored: [`prepare`] makes it,
/// [`store_prepared`] stores it in one commit. Batches of one account made apart may be
/// stored together ([`Prepared::append`]): the SMPP server stores the submits of one batch of
/// wake-ups in one store request.
#[derive(Debug, Default)]
pub struct Prepared {
    lines: Vec<usize>,
    messages: Vec<Message>,
    channels: Vec<String>,
}

impl Prepared {
    /// Messages in the batch.
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// Whether it holds no message.
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Appends `other`'s messages after this batch's; their results follow in that order.
    pub fn append(&mut self, other: Self) {
        self.lines.extend(other.lines);
        self.messages.extend(other.messages);
        for c in other.channels {
            if !self.channels.contains(&c) {
                self.channels.push(c);
            }
        }
    }
}

/// Routes `items` and makes their store records, the first taking the ids in `ids`
/// (allocated earlier from `store.ids()`: the SMPP server answers the first parts of a long
/// message with the id the whole message gets once its last part arrives), the rest fresh
/// ones. Nothing is written: [`store_prepared`] stores the batch.
///
/// # Errors
/// [`AcceptError::Unplaceable`] (no route, or windows that never open) and
/// [`AcceptError::Refused`] (an MMS whose content was not stored first).
pub fn prepare(
    store: &dyn MessageStore,
    place: &PlaceFn,
    account: &str,
    items: Vec<Item>,
    ids: Vec<MessageId>,
    now_ms: u64,
) -> Result<Prepared, AcceptError> {
    let mut ids = ids.into_iter();
    let mut out = Prepared {
        lines: Vec::with_capacity(items.len()),
        messages: Vec::with_capacity(items.len()),
        channels: Vec::new(),
    };
    for Item { line, submission } in items {
        if submission.mms.is_some() {
            // Its content was never built and stored (`mms::resolve`): storing the
            // placeholder would reference nothing.
            return Err(AcceptError::Refused {
                line,
                reason: "MMS content not resolved before accept".into(),
            });
        }
        let placement = place(account, &submission, now_ms)
            .map_err(|error| AcceptError::Unplaceable { line, error })?;
        if !out.channels.contains(&placement.channel) {
            out.channels.push(placement.channel.clone());
        }
        let id = ids.next().unwrap_or_else(|| store.ids().next(now_ms));
        out.lines.push(line);
        out.messages
            .push(to_message(id, account, placement, submission, now_ms));
    }
    Ok(out)
}

/// Stores a prepared batch durably in one commit; resolves after it.
///
/// # Errors
/// [`AcceptError::Store`], or [`AcceptError::Refused`] when the store answered a record
/// with something other than inserted or duplicate. Either way nothing was acknowledged.
pub async fn store_prepared(
    store: &dyn MessageStore,
    prepared: Prepared,
) -> Result<AcceptedBatch, AcceptError> {
    let Prepared {
        lines,
        messages,
        channels,
    } = prepared;
    let results = store.insert_batch(messages).await?;
    let results = lines
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
        .collect::<Result<Vec<_>, _>>()?;
    Ok(AcceptedBatch { results, channels })
}

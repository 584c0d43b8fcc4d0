//! Every state change the gateway makes, written once against the [`Kv`] trait.
//!
//! Each `Op` is applied inside the writer's transaction; a batch of ops from one producer is
//! atomic. Logical outcomes (duplicate, unknown id, op no longer applies) are [`OpResult`]s and
//! leave the key space unchanged for that op — only engine/decoding failures are errors, and
//! they abort the whole transaction.
//!
//! A message is two records (`codec.rs`): its body, written once by `insert` (carrying the
//! first state, so an insert writes no state record), and its state, which every later op
//! rewrites through `save`. `load` reads both. A bare lease's state record (in flight, no
//! part submitted yet) stays in the writer's memory (`in_flight.rs`): the durable record keeps
//! the state before the lease, and the durable lease key is what recovery finds.
//!
//! Index invariants kept here:
//! - a queued or scheduled message has exactly one ready key `(channel, lane, due_ms, id)`
//!   (a paused account's may have its parked key instead, `stop.rs`); an in-flight one has
//!   exactly one lease key `(lease_until_ms, id)` (a bare lease's state record in memory; a
//!   lease key over a queued or scheduled record is the lease of a process that is gone); a
//!   sent one (every part has a center id,
//!   receipts pending) has neither; a final one has neither and has one terminal key
//!   `(done_ms, id)`;
//! - reaching a final state appends exactly one receipt event to the account's outbox, in the
//!   same transaction (a receipt can never be lost between state change and outbox);
//! - an MO is kept by appending it to the account's MO outbox (`MoEnqueue`); the caller
//!   answers the center only after that commit, so the center resends what was not kept.

use std::sync::Arc;

use crate::clock::rfc3339;
use compact_str::CompactString;

use super::backend::{Kv, KvRead};
use super::codec;
use super::content;
use super::error::StoreError;
use super::id::MessageId;
use super::keys;
use super::model::{
    Lane, Message, MessageState, MoEvent, Part, PartState, Receipt, ReceiptEvent, ReceiptOriginal,
    SMPP_RECEIPT_TAG,
};
use super::stop::{self, Guards, PauseTarget, StopFilter, StopRecord};
use super::terminal_runs;

/// Scan chunk for unbounded sweeps (outbox ack).
const CHUNK: usize = 1024;

/// One state change, sent to the writer. Serializable: the redo log (`wal.rs`) keeps the
/// rare ones in their JSON form.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum Op {
    /// Store a new message in its ready queue (or as final, if its state is final).
    /// Honours `client_ref` as an idempotency key per account.
    Insert(Box<Message>),
    /// Move up to `limit` messages of `channel` with `due_ms <= now_ms` to in flight, leased
    /// until `now_ms + lease_ms`, taking from `lanes` in the order given (strict priority).
    /// Messages past `expires_at_ms` become `expired` instead (they count toward `limit`).
    Lease {
        /// Channel.
        channel: String,
        /// Lanes, highest priority first.
        lanes: Vec<Lane>,
        /// Current time, ms.
        now_ms: u64,
        /// Most messages to take.
        limit: usize,
        /// Lease length, ms.
        lease_ms: u64,
    },
    /// The center accepted part `part` (1-based) of `parts` and called it `center_id`
    /// (normalised by the caller). When every part has an id the message is `sent`.
    Submitted {
        /// Message.
        id: MessageId,
        /// 1-based part number.
        part: u16,
        /// Total parts.
        parts: u16,
        /// Center's id for the part.
        center_id: CompactString,
        /// Current time, ms.
        now_ms: u64,
    },
    /// Give an in-flight message back to its ready queue at `due_ms` (retryable failure);
    /// counts an attempt.
    Requeue {
        /// Message.
        id: MessageId,
        /// When to try again, ms.
        due_ms: u64,
    },
    /// Give an in-flight message back to its ready queue at `due_ms` WITHOUT counting an
    /// attempt: it was never sent (dispatch's buffer at shutdown, a closed window, a worker
    /// with no bind up). Only real send failures ([`Op::Requeue`]) use up the retry budget.
    Release {
        /// Message.
        id: MessageId,
        /// When it may be leased again, ms.
        due_ms: u64,
    },
    /// End a message with a final `state` decided by the gateway or a submit response
    /// (rejected, failed, expired).
    Finish {
        /// Message.
        id: MessageId,
        /// Final state.
        state: MessageState,
        /// Status word for the receipt (`REJECTD`, `EXPIRED`, …).
        stat: String,
        /// Error code text.
        err: String,
        /// Current time, ms.
        now_ms: u64,
    },
    /// A delivery receipt for (channel, center_id). Answers `ReceiptApplied`; if no part has
    /// that id yet (the receipt beat the submit response), `ReceiptHeld`: it is held and
    /// applied by the matching `Submitted`.
    Receipt {
        /// Channel it came from.
        channel: CompactString,
        /// Normalised center id.
        center_id: CompactString,
        /// Part state it reports (`Submitted` for intermediate states like ENROUTE).
        part_state: PartState,
        /// Status word.
        stat: CompactString,
        /// Error code text.
        err: CompactString,
        /// Arrival time, ms.
        now_ms: u64,
    },
    /// Remove the account's outbox entries with `seq <= through_seq` (client took them).
    OutboxAck {
        /// Account.
        account: String,
        /// Highest sequence acknowledged.
        through_seq: u64,
    },
    /// Remove one outbox entry.
    OutboxDelete {
        /// Account.
        account: String,
        /// Sequence.
        seq: u64,
    },
    /// Remove the outbox entries `from_seq ..= through_seq`: a run of them its webhook took
    /// in one answer, removed in one cursor pass instead of one search per entry.
    OutboxDeleteRun {
        /// Account.
        account: String,
        /// First sequence of the run.
        from_seq: u64,
        /// Last sequence of the run.
        through_seq: u64,
    },
    /// Keep a reply in `account`'s MO outbox until its webhook takes it (answers
    /// [`OpResult::Enqueued`] with its sequence). Durable before it is answered.
    MoEnqueue {
        /// Account the reply was routed to (no NUL bytes).
        account: String,
        /// The reply; its `account` field is not stored (the key holds it).
        event: MoEvent,
    },
    /// Remove one MO outbox entry (its webhook answered 2xx).
    MoDelete {
        /// Account.
        account: String,
        /// Sequence.
        seq: u64,
    },
    /// Return leases that expired at or before `now_ms` to their ready queues.
    Recover {
        /// Current time, ms.
        now_ms: u64,
    },
    /// End as `expired` (with an EXPIRED receipt) up to `limit` waiting messages whose
    /// `expires_at_ms <= now_ms`, through the expiry index — so a message whose channel is
    /// down or outside its window still gets its receipt on time. In-flight messages are
    /// left to the lease path (which checks expiry again when they are requeued).
    SweepExpired {
        /// Current time, ms.
        now_ms: u64,
        /// Most index entries to visit in this step.
        limit: usize,
    },
    /// Delete up to `limit` final messages that ended before `before_ms` (with their
    /// idempotency and center-id entries, and their content references), and held receipts
    /// older than `before_ms`.
    Purge {
        /// Retention cut-off, ms.
        before_ms: u64,
        /// Most messages to delete in this step.
        limit: usize,
    },
    /// Record an emergency stop of `account`'s messages matching `filter` (see `stop.rs`):
    /// from this commit on no lease hands out a match. Id stops settle every id now; tag
    /// stops are swept by [`Op::StopStep`]. Answers [`OpResult::Stopped`].
    Stop {
        /// Account whose messages stop.
        account: String,
        /// What to stop.
        filter: StopFilter,
        /// Current time, ms.
        now_ms: u64,
        /// How long the stop keeps filtering leases after its sweep ended, ms.
        hold_ms: u64,
    },
    /// One sweep step of a tag stop: up to `limit` tag index entries from its durable cursor.
    StopStep {
        /// Stop id.
        stop: u64,
        /// Current time, ms.
        now_ms: u64,
        /// Most index entries to visit in this step.
        limit: usize,
    },
    /// Retire stops whose hold ended by `now_ms` (leases stop checking them).
    StopRetire {
        /// Current time, ms.
        now_ms: u64,
    },
    /// Turn a pause switch on or off (durable).
    Pause {
        /// Channel or account.
        target: PauseTarget,
        /// On (`true`) or off.
        paused: bool,
    },
    /// Set the tag names the tag index covers (what tag stops may name), from config.
    IndexTags {
        /// Tag names.
        names: Vec<String>,
    },
    /// Forget the release markers of content files that were collected (`content.rs`).
    ContentForget {
        /// Digests whose files went (or were found referenced again).
        digests: Vec<[u8; 32]>,
    },
    /// Put up to `limit` parked messages of a resumed account back in their ready queues.
    Unpark {
        /// Account.
        account: String,
        /// Most entries in this step.
        limit: usize,
    },
}

/// What an [`Op`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OpResult {
    /// Stored under this id.
    Inserted(MessageId),
    /// Already stored (same idempotency key or same id): the first id.
    Duplicate(MessageId),
    /// Refused; nothing written for this op.
    Invalid(String),
    /// Leased messages, and the ids that expired or were cancelled instead.
    Leased {
        /// Now in flight.
        messages: Vec<Message>,
        /// Ended as `expired` (a receipt was queued).
        expired: Vec<MessageId>,
        /// Ended as `cancelled` by an active stop (a receipt was queued).
        cancelled: Vec<MessageId>,
    },
    /// The message's state after the op.
    Updated(MessageState),
    /// No such message (never stored, or purged).
    NotFound,
    /// The op no longer applies (e.g. requeue of a message that is not in flight,
    /// a duplicate receipt for a final message).
    Stale(MessageState),
    /// Receipt for an unknown center id, held for the submit response.
    ReceiptHeld,
    /// A receipt applied to its message: by `Op::Receipt`, or by the submit response
    /// (`Op::Submitted`) that found the receipt held for its center id (the receipt came
    /// first). The answer tells the receipt layer all it counts — whether the message ended
    /// and how long it took — so nothing has to read the message back.
    ReceiptApplied {
        /// The message's state after the op.
        state: MessageState,
        /// `Some(ms)` when this op ended the message: its latency from submit (or, never
        /// submitted, from creation) to the final state, counted by the receipt layer, once.
        /// `None`: parts are still open, or the message was already final (the receipt was
        /// only recorded).
        ended_in_ms: Option<u64>,
    },
    /// Number of records affected (outbox ack/delete, recover, purge).
    Count(usize),
    /// Appended to an outbox under this sequence.
    Enqueued(u64),
    /// A stop's record after the op.
    Stopped(Box<StopRecord>),
}

fn decode<T: serde::de::DeserializeOwned>(key: &[u8], v: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(v).map_err(|e| StoreError::Corrupt {
        key: keys::hex(key),
        reason: e.to_string(),
    })
}

fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| StoreError::Encode(e.to_string()))
}

fn corrupt_record(key: &[u8], e: &codec::DecodeError) -> StoreError {
    StoreError::Corrupt {
        key: keys::hex(key),
        reason: e.to_string(),
    }
}

/// Loads a message: its body record and its state record.
pub(crate) fn load(kv: &dyn KvRead, id: MessageId) -> Result<Option<Message>, StoreError> {
    load_with(kv, id, false)
}

/// [`load`], told by a ready key's value ([`keys::READY_BODY_ONLY`]) whether the message may
/// have a state record: one whose body carries its state and that has none is read in one
/// engine call.
fn load_with(
    kv: &dyn KvRead,
    id: MessageId,
    body_only: bool,
) -> Result<Option<Message>, StoreError> {
    let k = keys::message(id);
    let Some(v) = kv.get(&k)? else {
        return Ok(None);
    };
    load_from_body(kv, id, &v, body_only)
}

/// [`load_with`] for a body record already read (`v`).
fn load_from_body(
    kv: &dyn KvRead,
    id: MessageId,
    v: &[u8],
    body_only: bool,
) -> Result<Option<Message>, StoreError> {
    let k = keys::message(id);
    let body = codec::decode_body(v).map_err(|e| corrupt_record(&k, &e))?;
    if body_only && body.whole {
        return Ok(Some(body.message));
    }
    let state = kv.get(&keys::state(id))?;
    with_state(body, id, state.as_deref()).map(Some)
}

/// The message of a decoded body record and its state record (`None`: it has none).
fn with_state(
    body: codec::Body,
    id: MessageId,
    state: Option<&[u8]>,
) -> Result<Message, StoreError> {
    let codec::Body { mut message, whole } = body;
    let sk = keys::state(id);
    match state {
        Some(v) => {
            codec::decode_state_into(&mut message, v).map_err(|e| corrupt_record(&sk, &e))?
        }
        // A legacy whole-message record not changed since: its own state fields stand.
        None if whole => {}
        None => return Err(corrupt(&sk, "message has no state record")),
    }
    Ok(message)
}

/// [`load`] for an op that will change the message: takes it decoded from the writer's
/// memory when its last save left it there (`live.rs`), else loads it from its records.
fn load_mut(kv: &mut dyn Kv, id: MessageId) -> Result<Option<Message>, StoreError> {
    let Some(m) = kv.take_live(id) else {
        return load(kv, id);
    };
    #[cfg(debug_assertions)]
    {
        let stored = load(kv, id)?;
        assert_eq!(
            stored.as_ref(),
            Some(&m),
            "a kept message differs from its records"
        );
    }
    Ok(Some(m))
}

/// [`save`] for a message whose next op is coming (a receipt, the other parts' responses):
/// it stays decoded in the writer's memory for that op's [`load_mut`].
fn save_live(kv: &mut dyn Kv, m: Message) -> Result<(), StoreError> {
    save(kv, &m)?;
    kv.keep_live(m);
    Ok(())
}

/// Loads a message reached through a queue index. A record that cannot be decoded is logged
/// and treated as absent, so one bad record cannot wedge a whole queue (or recovery).
pub(crate) fn load_queued(kv: &dyn KvRead, id: MessageId) -> Result<Option<Message>, StoreError> {
    skip_undecodable(id, load(kv, id))
}

/// What [`load_queued`] makes of a load's result.
fn skip_undecodable(
    id: MessageId,
    loaded: Result<Option<Message>, StoreError>,
) -> Result<Option<Message>, StoreError> {
    match loaded {
        Err(e @ StoreError::Corrupt { .. }) => {
            tracing::error!(%id, error = %e, "skipping undecodable message record");
            Ok(None)
        }
        other => other,
    }
}

/// Saves a message's state. Its body never changes after insert (which wrote the first state
/// inside the body record when it could: `codec::BODY_V2`).
fn save(kv: &mut dyn Kv, m: &Message) -> Result<(), StoreError> {
    kv.put_owned(&keys::state(m.id), codec::encode_state(m))?;
    if m.waits_in_ready_queue() {
        // Still in its ready queue, where the key may say "no state record" (the insert's
        // [`keys::READY_BODY_ONLY`]): a submit response or receipt for a message that was
        // never leased since would otherwise be lost to the next lease, which would read the
        // body alone. Leased messages (the usual case) skip this read.
        let ready = keys::ready(&m.channel, m.lane, m.due_ms, m.id);
        if kv.get(&ready)?.as_deref() == Some(keys::READY_BODY_ONLY) {
            kv.put(&ready, &[])?;
        }
    }
    Ok(())
}

/// Removes whichever queue key (ready or lease) the message currently has. A sent message
/// has neither (`submitted` took it out of its queue), so nothing is deleted for it: the
/// engine call a receipt would spend on a key that is not there is saved.
fn unqueue(kv: &mut dyn Kv, m: &mut Message) -> Result<(), StoreError> {
    if let Some(exp) = m.lease_until_ms.take() {
        kv.delete(&keys::lease(exp, m.id))?;
    } else if !m.state.is_final() && m.state != MessageState::Sent {
        kv.delete(&keys::ready(&m.channel, m.lane, m.due_ms, m.id))?;
    }
    Ok(())
}

/// Ends `m` in `state`, queues its receipt event, and saves it.
///
/// The event takes the client's fields (`to`, `client_ref`, `callback_url`, `tags`) out of
/// `m` instead of copying them: every caller is done with the message once it ended, and
/// the state record saved here holds none of them.
pub(crate) fn finalize(
    kv: &mut dyn Kv,
    m: &mut Message,
    state: MessageState,
    stat: &str,
    err: &str,
    now_ms: u64,
) -> Result<(), StoreError> {
    unqueue(kv, m)?;
    if let Some(exp) = m.expires_at_ms {
        kv.delete(&keys::expiry(exp, m.id))?;
    }
    stop::unindex_tags(kv, m)?;
    m.state = state;
    m.done_ms = Some(now_ms);
    kv.put(&keys::terminal(now_ms, m.id), &[])?;
    // Its center-id entries have done their work: what reads them now (a repeated receipt,
    // the purge) can do without them after a while (`Kv::retire`).
    for (i, part) in m.parts.iter().enumerate() {
        if let Some(center_id) = &part.center_id {
            let n = u16::try_from(i + 1).unwrap_or(u16::MAX);
            kv.retire(
                &keys::center(&m.channel, center_id),
                &keys::center_value(m.id, n),
            )?;
        }
    }
    save(kv, m)?;
    let original = m
        .tags
        .contains_key(SMPP_RECEIPT_TAG)
        .then(|| ReceiptOriginal::of(m));
    let event = ReceiptEvent {
        id: m.id,
        client_ref: m.client_ref.take(),
        to: std::mem::take(&mut m.to),
        state,
        stat: stat.into(),
        err: err.into(),
        parts: u16::try_from(m.parts.len()).unwrap_or(u16::MAX),
        submitted_at: m.submitted_ms.map(rfc3339),
        done_at: rfc3339(now_ms),
        callback_url: m.callback_url.take(),
        tags: std::mem::take(&mut m.tags),
        kind: m.kind,
        lane: m.lane,
        original,
    };
    let seq = next_seq(kv, keys::Outbox::Receipts, &m.account)?;
    kv.put_receipt_entry(&keys::outbox(&m.account, seq), Arc::new(event))
}

/// Takes the next sequence (from 1) of `account`'s `which` outbox, for an entry the caller
/// puts in the same transaction.
fn next_seq(kv: &mut dyn Kv, which: keys::Outbox, account: &str) -> Result<u64, StoreError> {
    let seq_key = which.next_seq(account);
    let seq = kv
        .get(&seq_key)?
        .map(|v| keys::be_u64(&v, 0).ok_or_else(|| corrupt(&seq_key, "short sequence")))
        .transpose()?
        .unwrap_or(1);
    kv.put(&seq_key, &(seq + 1).to_be_bytes())?;
    Ok(seq)
}

/// Removes entry `seq` of `account`'s `which` outbox; counts 1 if it was there.
fn delete_entry(
    kv: &mut dyn Kv,
    which: keys::Outbox,
    account: &str,
    seq: u64,
) -> Result<OpResult, StoreError> {
    let found = kv.take(&which.entry(account, seq))?.is_some();
    Ok(OpResult::Count(usize::from(found)))
}

pub(crate) fn corrupt(key: &[u8], reason: &str) -> StoreError {
    StoreError::Corrupt {
        key: keys::hex(key),
        reason: reason.to_owned(),
    }
}

/// Whether a commit holding `op` must be durable before it is answered.
///
/// Losing these in a crash is harmless, so their commits skip the fsync (they become durable
/// with the next durable commit):
/// - `Lease`: after a crash every in-flight message is sent again anyway (a durable lease
///   only delays that until the lease expires), so a lost lease adds no duplicate beyond the
///   in-flight window;
/// - `Recover`/`Purge`: idempotent housekeeping, run again after the restart.
///
/// Retiring outbox entries (`OutboxAck`, `OutboxDelete`, `MoDelete`) is durable: a lost
/// retirement re-sends what the client already took, and "the next durable commit" may never
/// come while the gateway only drains its outboxes (no new traffic), so every delivery since
/// the last receipt or insert would be repeated after a crash. Durable, the re-sends per crash
/// are bounded by the pumps' in-flight limits.
pub(crate) fn needs_fsync(op: &Op) -> bool {
    !matches!(
        op,
        Op::Lease { .. } | Op::Recover { .. } | Op::Purge { .. } | Op::ContentForget { .. }
    )
}

/// Whether applying a crash-harmless op nevertheless ended messages (queued receipts and
/// advanced an outbox sequence), so its commit must be made durable after all. Only a lease
/// can: it finalizes messages it finds past their expiry.
pub(crate) fn finalized_something(result: &OpResult) -> bool {
    matches!(result, OpResult::Leased { expired, cancelled, .. }
        if !expired.is_empty() || !cancelled.is_empty())
}

/// Whether `op` was a lease that took as many messages as it asked for: more were likely
/// waiting, a backlog the channel is working through (`spacing.rs`).
pub(crate) fn leased_full(op: &Op, result: &OpResult) -> bool {
    match (op, result) {
        (
            Op::Lease { limit, .. },
            OpResult::Leased {
                messages,
                expired,
                cancelled,
            },
        ) => *limit > 0 && messages.len() + expired.len() + cancelled.len() >= *limit,
        _ => false,
    }
}

/// Applies one op. Ops are borrowed so the writer can retry a group batch by batch.
/// `index_by_number`: whether inserts write the destination index
/// (`WriterConfig::index_by_number`).
pub(crate) fn apply(
    kv: &mut dyn Kv,
    op: &Op,
    index_by_number: bool,
) -> Result<OpResult, StoreError> {
    match op {
        Op::Insert(m) => insert(kv, m, index_by_number),
        Op::Lease {
            channel,
            lanes,
            now_ms,
            limit,
            lease_ms,
        } => lease(kv, channel, lanes, *now_ms, *limit, *lease_ms),
        Op::Submitted {
            id,
            part,
            parts,
            center_id,
            now_ms,
        } => submitted(kv, *id, *part, *parts, center_id, *now_ms),
        Op::Requeue { id, due_ms } => requeue(kv, *id, *due_ms, true),
        Op::Release { id, due_ms } => requeue(kv, *id, *due_ms, false),
        Op::Finish {
            id,
            state,
            stat,
            err,
            now_ms,
        } => finish(kv, *id, *state, stat, err, *now_ms),
        Op::Receipt {
            channel,
            center_id,
            part_state,
            stat,
            err,
            now_ms,
        } => receipt(kv, channel, center_id, *part_state, stat, err, *now_ms),
        Op::OutboxAck {
            account,
            through_seq,
        } => outbox_ack(kv, account, *through_seq),
        Op::OutboxDelete { account, seq } => {
            delete_entry(kv, keys::Outbox::Receipts, account, *seq)
        }
        Op::OutboxDeleteRun {
            account,
            from_seq,
            through_seq,
        } => take_entries(
            kv,
            &keys::outbox(account, *from_seq),
            &keys::outbox(account, through_seq.saturating_add(1)),
        ),
        Op::MoEnqueue { account, event } => {
            if !valid_name(account) {
                return Ok(OpResult::Invalid(
                    "account must be non-empty and contain no NUL".into(),
                ));
            }
            let seq = next_seq(kv, keys::Outbox::Mo, account)?;
            kv.put(&keys::Outbox::Mo.entry(account, seq), &encode(event)?)?;
            Ok(OpResult::Enqueued(seq))
        }
        Op::MoDelete { account, seq } => delete_entry(kv, keys::Outbox::Mo, account, *seq),
        Op::Recover { now_ms } => recover(kv, *now_ms),
        Op::Purge { before_ms, limit } => purge(kv, *before_ms, *limit),
        Op::SweepExpired { now_ms, limit } => sweep_expired(kv, *now_ms, *limit),
        Op::Stop {
            account,
            filter,
            now_ms,
            hold_ms,
        } => stop::record(kv, account, filter, *now_ms, *hold_ms),
        Op::StopStep {
            stop,
            now_ms,
            limit,
        } => stop::step(kv, *stop, *now_ms, *limit),
        Op::StopRetire { now_ms } => stop::retire(kv, *now_ms),
        Op::Pause { target, paused } => stop::set_pause(kv, target, *paused),
        Op::Unpark { account, limit } => stop::unpark(kv, account, *limit),
        Op::IndexTags { names } => stop::set_indexed(kv, names),
        Op::ContentForget { digests } => content::forget(kv, digests).map(OpResult::Count),
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty() && !s.contains('\0')
}

fn insert(kv: &mut dyn Kv, m: &Message, index_by_number: bool) -> Result<OpResult, StoreError> {
    if !valid_name(&m.account) || !valid_name(&m.channel) {
        return Ok(OpResult::Invalid(
            "account and channel must be non-empty and contain no NUL".into(),
        ));
    }
    // Write first and look at what was there (`replace`: one engine call, where a `get` and
    // a `put` were two); a duplicate, the rare case, puts the old value back.
    let idem_key = m.client_ref.as_deref().map(|r| keys::idem(&m.account, r));
    if let Some(k) = &idem_key
        && let Some(v) = kv.replace(k, &m.id.to_be_bytes())?
    {
        kv.put(k, &v)?;
        let id = keys::be_u64(&v, 0).ok_or_else(|| corrupt(k, "short id"))?;
        return Ok(OpResult::Duplicate(MessageId(id)));
    }
    let plain = m.waits_in_ready_queue();
    // The usual case carries its first state in the body record (no state record until an op
    // changes it); any other is saved through `finalize` / `save` below.
    let body = if plain {
        codec::encode_body_with_state(m)
    } else {
        codec::encode_body(m)
    };
    let mk = keys::message(m.id);
    if let Some(old) = kv.replace(&mk, &body)? {
        kv.put(&mk, &old)?;
        if let Some(k) = &idem_key {
            kv.delete(k)?;
        }
        return Ok(OpResult::Duplicate(m.id));
    }
    if let Some(d) = m.payload.content_digest() {
        // The reference and the record commit together: the count is exact across crashes.
        content::add_ref(kv, d)?;
    }
    if index_by_number {
        kv.put(&keys::by_to(&m.to, m.id), &[])?;
    }
    if plain {
        // The usual case, stored as given (no copy of the message), its state in the body.
        kv.put(
            &keys::ready(&m.channel, m.lane, m.due_ms, m.id),
            keys::READY_BODY_ONLY,
        )?;
        index_expiry(kv, m)?;
        stop::index_tags(kv, m)?;
        return Ok(OpResult::Inserted(m.id));
    }
    let mut m = m.clone();
    m.lease_until_ms = None;
    if m.state.is_final() {
        let state = m.state;
        let now = m.done_ms.unwrap_or(m.created_ms);
        // Stored straight as final (e.g. no route): no queue key exists, a receipt is due.
        finalize(kv, &mut m, state, state.stat_word(), "000", now)?;
    } else {
        // In flight or sent at insert makes no sense: it starts in the ready queue.
        m.state = MessageState::Queued;
        kv.put(&keys::ready(&m.channel, m.lane, m.due_ms, m.id), &[])?;
        index_expiry(kv, &m)?;
        stop::index_tags(kv, &m)?;
        save(kv, &m)?;
    }
    Ok(OpResult::Inserted(m.id))
}

fn lease(
    kv: &mut dyn Kv,
    channel: &str,
    lanes: &[Lane],
    now_ms: u64,
    limit: usize,
    lease_ms: u64,
) -> Result<OpResult, StoreError> {
    let until = now_ms.saturating_add(lease_ms);
    let mut messages = Vec::new();
    let mut expired = Vec::new();
    let mut cancelled = Vec::new();
    let mut skipped = 0usize;
    let mut guards = Guards::load(kv, now_ms)?;
    for &lane in lanes {
        let left = limit.saturating_sub(messages.len() + expired.len() + cancelled.len() + skipped);
        if left == 0 {
            break;
        }
        let prefix = keys::ready_prefix(channel, lane);
        let mut end = prefix.clone();
        end.extend_from_slice(&now_ms.saturating_add(1).to_be_bytes());
        // Every ready key looked at leaves the ready queue, whichever way it goes below
        // (leased, expired, cancelled, parked, or dropped as unreadable), so they are taken
        // at once: one pass over the run of keys instead of a delete per key.
        let mut found = Vec::new();
        kv.take_range(&prefix, &end, left, &mut found)?;
        let ready_ids = found.iter().filter_map(|(k, _)| keys::ready_id(k));
        let mut bodies = RecordRun::read(kv, keys::MESSAGE, ready_ids, found.len())?;
        for (key, value) in found {
            let id = keys::ready_id(&key).ok_or_else(|| corrupt(&key, "short ready key"))?;
            let body_only = value == keys::READY_BODY_ONLY;
            let Some(mut m) = skip_undecodable(id, bodies.load(kv, id, body_only))? else {
                // Index entry without a readable record: dropped (above) rather than fail
                // every lease of this queue forever (the record, if corrupt, stays for
                // inspection).
                continue;
            };
            if m.expires_at_ms.is_some_and(|e| e <= now_ms) {
                finalize(kv, &mut m, MessageState::Expired, "EXPIRED", "000", now_ms)?;
                expired.push(id);
                continue;
            }
            if !guards.is_empty() {
                if guards.cancel_if_stopped(kv, &mut m, now_ms)? {
                    cancelled.push(id);
                    continue;
                }
                if guards.paused(&m.account) {
                    stop::park(kv, &key, &m)?;
                    skipped += 1;
                    continue;
                }
            }
            m.state = MessageState::InFlight;
            m.lease_until_ms = Some(until);
            // The value names the channel, for its in-flight counter (`depth.rs`).
            kv.put(&keys::lease(until, id), channel.as_bytes())?;
            save(kv, &m)?;
            // Its submit response takes it from memory: a copy costs about a third of the
            // load and decode it saves (`live.rs`).
            kv.keep_live(m.clone());
            messages.push(m);
        }
    }
    guards.save(kv)?;
    Ok(OpResult::Leased {
        messages,
        expired,
        cancelled,
    })
}

/// The records of one kind (bodies; a purge's state records too) of a lease's or a purge's
/// messages, read in one pass over their table where they sit close together.
///
/// Why: a campaign's messages are inserted, and so leased, in id order, and they end in
/// about that order too; the body and state tables are keyed by id, and a search from the
/// root of the B-tree per record (the lease's largest engine cost) walks the same few leaves
/// again and again, where one cursor walks each once.
/// Messages of other channels between them are read and passed over, so the pass is made
/// only where the run is dense ([`Self::SPREAD`]); what it does not cover is read one by
/// one, as before.
#[derive(Default)]
struct RecordRun {
    /// (id, record), ascending by id; a record is taken once.
    records: Vec<(u64, Option<Vec<u8>>)>,
}

impl RecordRun {
    /// Fewest messages for which a pass is worth its setup.
    const FEWEST: usize = 8;
    /// Most records a pass reads per message it wants: past this the run is too sparse
    /// (other channels' messages in between) and the rest is read one by one.
    const SPREAD: usize = 2;

    /// Reads the records of key tag `tag` of `ids` (`n` of them, in any order) where a pass
    /// is worth it.
    fn read(
        kv: &dyn KvRead,
        tag: u8,
        ids: impl Iterator<Item = MessageId>,
        n: usize,
    ) -> Result<Self, StoreError> {
        let mut records = Vec::new();
        if n >= Self::FEWEST {
            let (lo, hi) = ids.fold((u64::MAX, 0), |(lo, hi), id| (lo.min(id.0), hi.max(id.0)));
            if lo <= hi {
                let mut out = Vec::new();
                kv.scan(
                    &keys::id_key(tag, MessageId(lo)),
                    &keys::id_key(tag, MessageId(hi.saturating_add(1))),
                    n.saturating_mul(Self::SPREAD),
                    &mut out,
                )?;
                records = out
                    .into_iter()
                    .filter_map(|(k, v)| keys::id_in(tag, &k).map(|id| (id, Some(v))))
                    .collect();
            }
        }
        Ok(Self { records })
    }

    /// Whether the pass read the records of `ids` (ascending, distinct) and no other: so
    /// between the first and the last of them the table holds theirs alone. (A pass reads up
    /// to [`Self::SPREAD`] records per message, so one that found as many as it wanted
    /// reached the end of its range.)
    fn is_exactly(&self, ids: &[u64]) -> bool {
        self.records.len() == ids.len()
            && self
                .records
                .iter()
                .map(|(id, _)| *id)
                .eq(ids.iter().copied())
    }

    /// Whether every record the pass read is one of `ids` (ascending).
    fn is_within(&self, ids: &[u64]) -> bool {
        self.records
            .iter()
            .all(|(id, _)| ids.binary_search(id).is_ok())
    }

    /// The record of message `id` if the pass read it.
    fn take(&mut self, id: MessageId) -> Option<Vec<u8>> {
        let i = self.records.binary_search_by_key(&id.0, |(i, _)| *i).ok()?;
        self.records[i].1.take()
    }

    /// Message `id` ([`load_with`]), its body from this pass (of bodies) if it read it.
    fn load(
        &mut self,
        kv: &dyn KvRead,
        id: MessageId,
        body_only: bool,
    ) -> Result<Option<Message>, StoreError> {
        match self.take(id) {
            Some(body) => load_from_body(kv, id, &body, body_only),
            None => load_with(kv, id, body_only),
        }
    }
}

/// Stored form of a receipt that arrived before its submit response.
#[derive(serde::Serialize, serde::Deserialize)]
struct EarlyReceipt {
    part_state: PartState,
    stat: CompactString,
    err: CompactString,
    at_ms: u64,
}

/// Longest a held receipt may wait for the submit response it belongs to. A receipt
/// overtakes its submit response by milliseconds; one held longer than this (two minutes,
/// as the receipt layer's default `hold_for`) was a repeat for an older message with the
/// same center id, and applying it to a newer one would give that message another's fate.
pub const EARLY_RECEIPT_FOR_MS: u64 = 120_000;

fn submitted(
    kv: &mut dyn Kv,
    id: MessageId,
    part: u16,
    parts: u16,
    center_id: &str,
    now_ms: u64,
) -> Result<OpResult, StoreError> {
    if part == 0 || part > parts {
        return Ok(OpResult::Invalid(format!("part {part} of {parts}")));
    }
    let Some(mut m) = load_mut(kv, id)? else {
        return Ok(OpResult::NotFound);
    };
    if m.parts.len() < usize::from(parts) {
        let have = m.parts.len();
        m.parts.extend((have..usize::from(parts)).map(|i| Part {
            seq: u16::try_from(i + 1).unwrap_or(u16::MAX),
            ..Part::default()
        }));
    }
    let idx = usize::from(part - 1);
    m.parts[idx].center_id = Some(center_id.into());
    if !m.parts[idx].state.is_final() {
        m.parts[idx].state = PartState::Submitted;
    }
    kv.put(
        &keys::center(&m.channel, center_id),
        &keys::center_value(id, part),
    )?;
    let early_key = keys::early(&m.channel, center_id);
    let mut deciding: Option<(CompactString, CompactString)> = None;
    if let Some(v) = kv.get(&early_key)? {
        let arrived = keys::be_u64(&v, 0).ok_or_else(|| corrupt(&early_key, "short"))?;
        let r: EarlyReceipt = decode(&early_key, &v[8..])?;
        kv.delete(&early_key)?;
        kv.delete(&keys::early_age(arrived, &early_key))?;
        if now_ms.saturating_sub(arrived) > EARLY_RECEIPT_FOR_MS {
            // Held too long before this submit to be its receipt: a repeated receipt of an
            // older message that had this center id (see `receipt`). Dropped, not applied.
            tracing::debug!(%id, center_id, held_ms = now_ms.saturating_sub(arrived), "Held receipt too old for this submit; dropped.");
        } else {
            m.parts[idx].state = r.part_state;
            m.receipts.push(Receipt {
                part,
                stat: r.stat.clone(),
                err: r.err.clone(),
                at_ms: r.at_ms,
            });
            deciding = Some((r.stat, r.err));
        }
    }
    if m.state.is_final() {
        // A late or repeated submit response: the index entry above is all that matters.
        save(kv, &m)?;
        if deciding.is_some() {
            return Ok(OpResult::ReceiptApplied {
                state: m.state,
                ended_in_ms: None,
            });
        }
        return Ok(OpResult::Stale(m.state));
    }
    if m.parts.iter().all(|p| p.center_id.is_some()) && m.state != MessageState::Sent {
        // Also covers a lease that expired and was recovered before the response came:
        // the message leaves the ready queue instead of being sent twice.
        unqueue(kv, &mut m)?;
        m.state = MessageState::Sent;
        m.submitted_ms = Some(now_ms);
    }
    let Some((stat, err)) = deciding else {
        let state = m.state;
        save_live(kv, m)?;
        return Ok(OpResult::Updated(state));
    };
    settle_parts(kv, m, &stat, &err, now_ms)
}

/// After a part's receipt: ends `m` if every part is final, else saves it for the next
/// part's receipt. Answers the op's result.
fn settle_parts(
    kv: &mut dyn Kv,
    mut m: Message,
    stat: &str,
    err: &str,
    now_ms: u64,
) -> Result<OpResult, StoreError> {
    let ended_in_ms = match aggregate(&m.parts) {
        Some(state) => {
            finalize(kv, &mut m, state, stat, err, now_ms)?;
            Some(latency_ms(&m))
        }
        None => None,
    };
    let state = m.state;
    if ended_in_ms.is_none() {
        save_live(kv, m)?;
    }
    Ok(OpResult::ReceiptApplied { state, ended_in_ms })
}

/// A final message's time from submit (from creation, if it never was) to its end, ms: the
/// DLR latency operators watch.
fn latency_ms(m: &Message) -> u64 {
    m.done_ms
        .unwrap_or(m.created_ms)
        .saturating_sub(m.submitted_ms.unwrap_or(m.created_ms))
}

/// Final message state once every part is final: delivered only if all parts were.
fn aggregate(parts: &[Part]) -> Option<MessageState> {
    if parts.is_empty() || !parts.iter().all(|p| p.state.is_final()) {
        return None;
    }
    Some(
        parts
            .iter()
            .find(|p| p.state != PartState::Delivered)
            .map_or(MessageState::Delivered, |p| p.state.as_message_state()),
    )
}

/// Back to the ready queue at `due_ms`; `count` says whether this was a real attempt.
fn requeue(
    kv: &mut dyn Kv,
    id: MessageId,
    due_ms: u64,
    count: bool,
) -> Result<OpResult, StoreError> {
    let Some(mut m) = load_mut(kv, id)? else {
        return Ok(OpResult::NotFound);
    };
    if m.state != MessageState::InFlight {
        return Ok(OpResult::Stale(m.state));
    }
    // A stop recorded while it was in flight: it goes no further. The op carries no clock;
    // every stop not yet retired filters here, and the cancel is dated no later than the
    // lease's end or the requeue's due time, whichever is first (both are now or just after
    // for the hand-backs and retries that reach this).
    let mut guards = Guards::load(kv, 0)?;
    let at = due_ms.min(m.lease_until_ms.unwrap_or(u64::MAX));
    if guards.cancel_if_stopped(kv, &mut m, at)? {
        guards.save(kv)?;
        return Ok(OpResult::Updated(MessageState::Cancelled));
    }
    unqueue(kv, &mut m)?;
    if count {
        m.attempts = m.attempts.saturating_add(1);
    }
    m.due_ms = due_ms;
    m.state = MessageState::Scheduled;
    kv.put(&keys::ready(&m.channel, m.lane, due_ms, id), &[])?;
    // A sweep may have dropped the entry while the message was in flight.
    index_expiry(kv, &m)?;
    save(kv, &m)?;
    Ok(OpResult::Updated(m.state))
}

fn finish(
    kv: &mut dyn Kv,
    id: MessageId,
    state: MessageState,
    stat: &str,
    err: &str,
    now_ms: u64,
) -> Result<OpResult, StoreError> {
    if !state.is_final() {
        return Ok(OpResult::Invalid(format!("{state:?} is not a final state")));
    }
    let Some(mut m) = load_mut(kv, id)? else {
        return Ok(OpResult::NotFound);
    };
    if m.state.is_final() {
        return Ok(OpResult::Stale(m.state));
    }
    m.receipts.push(Receipt {
        part: 0,
        stat: stat.into(),
        err: err.into(),
        at_ms: now_ms,
    });
    finalize(kv, &mut m, state, stat, err, now_ms)?;
    Ok(OpResult::Updated(state))
}

fn receipt(
    kv: &mut dyn Kv,
    channel: &str,
    center_id: &str,
    part_state: PartState,
    stat: &str,
    err: &str,
    now_ms: u64,
) -> Result<OpResult, StoreError> {
    let ckey = keys::center(channel, center_id);
    let Some(v) = kv.get(&ckey)? else {
        hold_early(kv, channel, center_id, part_state, stat, err, now_ms)?;
        return Ok(OpResult::ReceiptHeld);
    };
    let (Some(id), Some(part)) = (keys::be_u64(&v, 0), keys::be_u16(&v, 8)) else {
        return Err(corrupt(&ckey, "short center-id value"));
    };
    let Some(mut m) = load_mut(kv, MessageId(id))? else {
        return Ok(OpResult::NotFound);
    };
    if m.state.is_final() {
        // A repeated receipt of a final message — or the receipt of a newer message the
        // center gave the same id (a center that restarted its counter, like the embedded
        // simulator after a restart), arriving before that message's submit response moved
        // the index to it. Kept as held too: the newer message's `Submitted` applies it if
        // it comes within `EARLY_RECEIPT_FOR_MS`; a repeat nobody claims is purged with the
        // other old held receipts. The answer stays `Stale`: nothing waits for it.
        hold_early(kv, channel, center_id, part_state, stat, err, now_ms)?;
        return Ok(OpResult::Stale(m.state));
    }
    let idx = usize::from(part.max(1) - 1);
    if idx >= m.parts.len() {
        return Err(corrupt(&ckey, "part beyond the message's parts"));
    }
    m.parts[idx].state = part_state;
    m.receipts.push(Receipt {
        part,
        stat: stat.into(),
        err: err.into(),
        at_ms: now_ms,
    });
    settle_parts(kv, m, stat, err, now_ms)
}

/// Keeps a receipt no live message has claimed under (channel, center id), replacing one
/// held there before, until a submit response with that id applies it (`submitted`) or
/// purge removes it.
fn hold_early(
    kv: &mut dyn Kv,
    channel: &str,
    center_id: &str,
    part_state: PartState,
    stat: &str,
    err: &str,
    now_ms: u64,
) -> Result<(), StoreError> {
    let early_key = keys::early(channel, center_id);
    let mut value = now_ms.to_be_bytes().to_vec();
    value.extend_from_slice(&encode(&EarlyReceipt {
        part_state,
        stat: stat.into(),
        err: err.into(),
        at_ms: now_ms,
    })?);
    if let Some(old) = kv.get(&early_key)?
        && let Some(arrived) = keys::be_u64(&old, 0)
    {
        kv.delete(&keys::early_age(arrived, &early_key))?;
    }
    kv.put(&early_key, &value)?;
    kv.put(&keys::early_age(now_ms, &early_key), &[])
}

fn outbox_ack(kv: &mut dyn Kv, account: &str, through: u64) -> Result<OpResult, StoreError> {
    take_entries(
        kv,
        &keys::outbox_prefix(account),
        &keys::outbox(account, through.saturating_add(1)),
    )
}

/// Removes every receipt outbox entry in `[start, end)`, a chunk per cursor pass.
fn take_entries(kv: &mut dyn Kv, start: &[u8], end: &[u8]) -> Result<OpResult, StoreError> {
    let mut n = 0;
    loop {
        match kv.remove_range(start, end, CHUNK)? {
            0 => return Ok(OpResult::Count(n)),
            removed => n += removed,
        }
    }
}

fn recover(kv: &mut dyn Kv, now_ms: u64) -> Result<OpResult, StoreError> {
    recover_before(kv, &keys::lease(now_ms.saturating_add(1), MessageId(0)))
}

/// Returns EVERY lease to its ready queue, expired or not. Only right when opening the store:
/// the engine's file lock makes this process the only owner, so no lease can belong to a live
/// sender and waiting for expiry would only delay those messages by up to a lease time.
pub(crate) fn recover_all(kv: &mut dyn Kv) -> Result<OpResult, StoreError> {
    recover_before(kv, &[keys::LEASE + 1])
}

/// Returns the leases with keys below `end` to their ready queues.
fn recover_before(kv: &mut dyn Kv, end: &[u8]) -> Result<OpResult, StoreError> {
    let start = [keys::LEASE];
    let mut n = 0;
    loop {
        let mut found = Vec::new();
        kv.scan(&start, end, CHUNK, &mut found)?;
        if found.is_empty() {
            return Ok(OpResult::Count(n));
        }
        for (k, _) in found {
            kv.delete(&k)?;
            let (Some(exp), Some(id)) = (keys::be_u64(&k, 1), keys::be_u64(&k, 9)) else {
                continue;
            };
            let Some(mut m) = load_queued(kv, MessageId(id))? else {
                continue;
            };
            // A lease of this process has its in-flight state record (in memory); a lease of
            // a process that is gone left only its key, over the record it had before the
            // lease (queued or scheduled, no lease end: `in_flight.rs`). Both go back.
            let ours = m.state == MessageState::InFlight && m.lease_until_ms == Some(exp);
            let orphaned = m.waits_in_ready_queue();
            if !ours && !orphaned {
                continue;
            }
            m.lease_until_ms = None;
            m.state = MessageState::Queued;
            kv.put(&keys::ready(&m.channel, m.lane, m.due_ms, m.id), &[])?;
            index_expiry(kv, &m)?;
            save(kv, &m)?;
            n += 1;
        }
    }
}

/// Adds the expiry index entry of a message that has a validity end.
fn index_expiry(kv: &mut dyn Kv, m: &Message) -> Result<(), StoreError> {
    if let Some(exp) = m.expires_at_ms {
        kv.put(&keys::expiry(exp, m.id), &[])?;
    }
    Ok(())
}

fn sweep_expired(kv: &mut dyn Kv, now_ms: u64, limit: usize) -> Result<OpResult, StoreError> {
    let mut found = Vec::new();
    kv.scan(
        &[keys::EXPIRY],
        &keys::expiry(now_ms.saturating_add(1), MessageId(0)),
        limit,
        &mut found,
    )?;
    let mut n = 0;
    for (k, _) in found {
        // Each entry is visited once: ended here, already final, or in flight (the lease
        // path checks expiry when it comes back).
        kv.delete(&k)?;
        let Some(id) = keys::be_u64(&k, 9) else {
            continue;
        };
        let Some(mut m) = load_queued(kv, MessageId(id))? else {
            continue;
        };
        let waiting = m.waits_in_ready_queue();
        if waiting && m.expires_at_ms.is_some_and(|e| e <= now_ms) {
            finalize(kv, &mut m, MessageState::Expired, "EXPIRED", "000", now_ms)?;
            n += 1;
        }
    }
    Ok(OpResult::Count(n))
}

/// Removes `key` if its value is `expected`; a key holding anything else is left as it was.
fn take_if(kv: &mut dyn Kv, key: &[u8], expected: &[u8]) -> Result<(), StoreError> {
    if let Some(old) = kv.take(key)?
        && old != expected
    {
        kv.put(key, &old)?;
    }
    Ok(())
}

fn purge(kv: &mut dyn Kv, before_ms: u64, limit: usize) -> Result<OpResult, StoreError> {
    let mut found = Vec::new();
    kv.scan(
        &[keys::TERMINAL],
        &keys::terminal(before_ms, MessageId(0)),
        limit,
        &mut found,
    )?;
    let mut n = 0;
    for (k, v) in found {
        if n >= limit {
            break;
        }
        kv.delete(&k)?;
        // A run of entries (`terminal_runs.rs`): those past `before_ms`, or past `limit`
        // messages, go back as a run of their own.
        let run = terminal_runs::unpack(&k, &v)?;
        let due = run
            .iter()
            .take_while(|(done, _)| *done < before_ms)
            .count()
            .min(limit - n);
        if let Some(((done, id), rest)) = run[due..].split_first() {
            kv.put(&keys::terminal(*done, *id), &terminal_runs::pack(rest))?;
        }
        let mut pass = PurgeRun::read(kv, &run[..due])?;
        for &(_, id) in &run[..due] {
            n += usize::from(purge_message(kv, id, &mut pass)?);
        }
        pass.remove_records(kv)?;
    }
    // Receipts that never found their message.
    let mut old = Vec::new();
    let mut end = vec![keys::EARLY_AGE];
    end.extend_from_slice(&before_ms.to_be_bytes());
    kv.scan(&[keys::EARLY_AGE], &end, limit, &mut old)?;
    for (k, _) in old {
        kv.delete(&k)?;
        let mut early_key = vec![keys::EARLY];
        early_key.extend_from_slice(k.get(9..).unwrap_or_default());
        kv.delete(&early_key)?;
    }
    Ok(OpResult::Count(n))
}

/// What a purge read of one terminal run's messages in passes, and how their records go.
///
/// A checkpoint's run ends messages sent together, whose bodies sit side by side: their
/// bodies are read in one pass ([`RecordRun`]). Where that pass found the run's bodies and
/// no other between its first and last id — a campaign's messages, ended in about the order
/// they were sent — the state records there are the run's alone too (a state record never
/// outlives its body: a purge removes both, and nothing else removes a body), so they are
/// read in one pass as well, and both tables' ranges are removed in one cursor pass each
/// ([`Kv::remove_range`]) instead of a search from the root per record.
#[derive(Default)]
struct PurgeRun {
    bodies: RecordRun,
    /// The run's state records, read in one pass, when its records go by range; `None`:
    /// each is read by key and removed with its message.
    states: Option<RecordRun>,
    /// The run's first and last id and how many messages it holds.
    span: (u64, u64, usize),
}

impl PurgeRun {
    fn read(kv: &dyn KvRead, run: &[(u64, MessageId)]) -> Result<Self, StoreError> {
        let mut ids: Vec<u64> = run.iter().map(|(_, id)| id.0).collect();
        ids.sort_unstable();
        ids.dedup();
        let each = ids.iter().map(|&id| MessageId(id));
        let bodies = RecordRun::read(kv, keys::MESSAGE, each.clone(), ids.len())?;
        let (Some(&lo), Some(&hi)) = (ids.first(), ids.last()) else {
            return Ok(Self::default());
        };
        let states = if bodies.is_exactly(&ids) {
            // Checked rather than assumed: a state record of another message in the range
            // would otherwise be removed, and one of the run's kept.
            Some(RecordRun::read(kv, keys::STATE, each, ids.len())?).filter(|s| s.is_within(&ids))
        } else {
            None
        };
        Ok(Self {
            bodies,
            states,
            span: (lo, hi, ids.len()),
        })
    }

    /// Whether the run's body and state records go by range ([`PurgeRun::remove_records`])
    /// rather than with each message.
    fn by_range(&self) -> bool {
        self.states.is_some()
    }

    /// Message `id` as the passes (or, past them, reads by key) find it.
    fn load(&mut self, kv: &dyn KvRead, id: MessageId) -> Result<Option<Message>, StoreError> {
        let Some(states) = &mut self.states else {
            return self.bodies.load(kv, id, false);
        };
        // The state pass covered the whole range: a record it did not find is not there.
        let Some(v) = self.bodies.take(id) else {
            return Ok(None);
        };
        let body = codec::decode_body(&v).map_err(|e| corrupt_record(&keys::message(id), &e))?;
        with_state(body, id, states.take(id).as_deref()).map(Some)
    }

    /// Removes a by-range run's body and state records (a run read otherwise had each
    /// removed with its message).
    fn remove_records(&self, kv: &mut dyn Kv) -> Result<(), StoreError> {
        if !self.by_range() {
            return Ok(());
        }
        let (lo, hi, n) = self.span;
        for tag in [keys::MESSAGE, keys::STATE] {
            kv.remove_range(
                &keys::id_key(tag, MessageId(lo)),
                &keys::id_key(tag, MessageId(hi.saturating_add(1))),
                n,
            )?;
        }
        Ok(())
    }
}

/// Removes message `id` and the index entries that name it; false when it was gone.
/// `pass`: what a pass over the message's run read, and whether its records go by range
/// ([`PurgeRun`]).
fn purge_message(kv: &mut dyn Kv, id: MessageId, pass: &mut PurgeRun) -> Result<bool, StoreError> {
    let Some(m) = pass.load(kv, id)? else {
        return Ok(false);
    };
    // Remove and look at what was removed (`take`: one engine call where a `get` and a
    // `delete` were two); an entry that names another message is put back.
    if let Some(r) = &m.client_ref {
        let ik = keys::idem(&m.account, r);
        take_if(kv, &ik, &id.to_be_bytes())?;
    }
    for (i, p) in m.parts.iter().enumerate() {
        let Some(cid) = &p.center_id else { continue };
        let part = u16::try_from(i + 1).unwrap_or(u16::MAX);
        take_if(
            kv,
            &keys::center(&m.channel, cid),
            &keys::center_value(id, part),
        )?;
    }
    if let Some(d) = m.payload.content_digest() {
        content::release_ref(kv, d)?;
    }
    kv.delete(&keys::by_to(&m.to, id))?;
    if !pass.by_range() {
        kv.delete(&keys::message(id))?;
        kv.delete(&keys::state(id))?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::backend::MapKv;
    use crate::store::model::Payload;

    const CH: &str = "smsc1";

    fn message(id: u64) -> Message {
        let payload = Payload::Text {
            text: "hi".into(),
            encoding: Default::default(),
        };
        Message::new(MessageId(id), "acme", "+861", payload, CH, 0, 0)
    }

    fn lease_all(kv: &mut MapKv, now_ms: u64) -> Vec<Message> {
        match lease(kv, CH, &Lane::ALL, now_ms, 10, 1_000).unwrap() {
            OpResult::Leased { messages, .. } => messages,
            other => panic!("{other:?}"),
        }
    }

    /// A lease reads its messages' bodies in one pass where they sit close together, and one
    /// by one past what that pass covers: however the channel's messages are interleaved with
    /// other channels' (every second one, every fourth one), and with a requeued message's
    /// state record among them, every message leased is the one inserted, state included.
    #[test]
    fn a_lease_reads_a_run_of_bodies_whatever_lies_between_them() {
        for every in [1u64, 2, 4] {
            let mut kv = MapKv::default();
            let mut ours = Vec::new();
            for id in 1..=40u64 {
                let mut m = message(id);
                m.to = compact_str::format_compact!("+86{id}");
                if id % every != 0 {
                    m.channel = "other".into();
                } else {
                    ours.push(m.clone());
                }
                insert(&mut kv, &m, false).unwrap();
            }
            // One of ours leased and requeued: it now has a state record (attempts 1).
            let first = ours[0].id;
            match lease(&mut kv, CH, &Lane::ALL, 0, 1, 1_000).unwrap() {
                OpResult::Leased { messages, .. } => assert_eq!(messages[0].id, first),
                other => panic!("{other:?}"),
            }
            requeue(&mut kv, first, 0, true).unwrap();
            let before = kv.gets.get();
            let leased = match lease(&mut kv, CH, &Lane::ALL, 10, 100, 1_000).unwrap() {
                OpResult::Leased { messages, .. } => messages,
                other => panic!("{other:?}"),
            };
            assert_eq!(leased.len(), ours.len(), "every {every}");
            for m in &leased {
                let want = ours.iter().find(|o| o.id == m.id).expect("one of ours");
                assert_eq!(m.to, want.to, "every {every}: its own body");
                assert_eq!(m.state, MessageState::InFlight);
                let attempts = u32::from(m.id == first);
                assert_eq!(m.attempts, attempts, "every {every}: its own state");
            }
            // Dense runs are read in the pass (only the requeued one's state record is a
            // point read); a sparse one reads what the pass did not reach one by one.
            let point_reads = kv.gets.get() - before;
            if every <= 2 {
                assert!(point_reads <= 2, "every {every}: {point_reads} point reads");
            } else {
                assert!(point_reads > 2, "every {every}: {point_reads} point reads");
            }
        }
    }

    /// Thirty messages, each with a client reference and its own number; those `ends` picks
    /// ended (failed at 5 ms) and in one checkpoint's packed run, as `terminal_runs` writes
    /// it, the others queued. Answers the store, the ended and the queued.
    fn ended_run(ends: impl Fn(u64) -> bool) -> (MapKv, Vec<Message>, Vec<Message>) {
        let mut kv = MapKv::default();
        let (mut ended, mut queued) = (Vec::new(), Vec::new());
        for id in 1..=30u64 {
            let mut m = message(id);
            m.client_ref = Some(format!("r{id}"));
            m.to = compact_str::format_compact!("+86{id}");
            if ends(id) {
                m.state = MessageState::Failed;
                m.done_ms = Some(5);
                ended.push(m.clone());
            } else {
                queued.push(m.clone());
            }
            insert(&mut kv, &m, true).unwrap();
        }
        let run: Vec<(u64, MessageId)> = ended.iter().map(|m| (5, m.id)).collect();
        for (done, id) in &run {
            kv.delete(&keys::terminal(*done, *id)).unwrap();
        }
        kv.put(
            &keys::terminal(run[0].0, run[0].1),
            &terminal_runs::pack(&run[1..]),
        )
        .unwrap();
        (kv, ended, queued)
    }

    /// A run whose messages sit alone between its first and last id (a campaign ended in
    /// the order it was sent) has its body and state records read in one pass each and
    /// removed by range: no record is read by key, and the messages after it stay whole.
    #[test]
    fn a_purge_removes_a_dense_run_by_range() {
        let (mut kv, ended, queued) = ended_run(|id| id <= 20);
        assert!(
            ended
                .iter()
                .all(|m| kv.map.contains_key(&keys::state(m.id)[..])),
            "an ended message has a state record"
        );
        let before = kv.gets.get();
        assert!(matches!(
            purge(&mut kv, 100, 100).unwrap(),
            OpResult::Count(20)
        ));
        assert_eq!(
            kv.gets.get() - before,
            ended.len(),
            "one read each, the client reference's take: no record read by key"
        );
        for m in &ended {
            assert!(!kv.map.contains_key(&keys::message(m.id)[..]));
            assert!(!kv.map.contains_key(&keys::state(m.id)[..]));
            assert!(kv.get(&keys::by_to(&m.to, m.id)).unwrap().is_none());
        }
        for m in &queued {
            assert_eq!(load(&kv, m.id).unwrap().unwrap().to, m.to);
            assert!(kv.get(&keys::by_to(&m.to, m.id)).unwrap().is_some());
        }
    }

    /// A purge reads a checkpoint's run of ended messages' bodies in one pass, and removes
    /// those messages and their index entries, and nothing of the messages still queued
    /// between them.
    #[test]
    fn a_purge_reads_a_run_of_bodies_and_removes_only_what_ended() {
        let (mut kv, ended, queued) = ended_run(|id| id % 3 != 0);
        let before = kv.gets.get();
        assert!(matches!(
            purge(&mut kv, 100, 100).unwrap(),
            OpResult::Count(20)
        ));
        let with_pass = kv.gets.get() - before;
        for m in &ended {
            assert!(load(&kv, m.id).unwrap().is_none());
            let r = m.client_ref.as_deref().unwrap();
            assert!(kv.get(&keys::idem("acme", r)).unwrap().is_none());
            assert!(kv.get(&keys::by_to(&m.to, m.id)).unwrap().is_none());
        }
        for m in &queued {
            assert_eq!(load(&kv, m.id).unwrap().unwrap().to, m.to);
            let r = m.client_ref.as_deref().unwrap();
            assert!(kv.get(&keys::idem("acme", r)).unwrap().is_some());
            assert!(kv.get(&keys::by_to(&m.to, m.id)).unwrap().is_some());
        }
        assert!(
            !kv.map.keys().any(|k| k[0] == keys::TERMINAL),
            "the run is gone"
        );
        // The same purge one message at a time reads every body on its own.
        let mut again = MapKv::default();
        for m in &ended {
            insert(&mut again, m, true).unwrap();
        }
        let before = again.gets.get();
        for m in &ended {
            assert!(purge_message(&mut again, m.id, &mut PurgeRun::default()).unwrap());
        }
        let one_by_one = again.gets.get() - before;
        assert_eq!(
            one_by_one - with_pass,
            ended.len(),
            "one body read each saved"
        );
    }

    #[test]
    fn a_lease_is_full_when_it_took_its_limit() {
        let mut kv = MapKv::default();
        for id in 1..=3 {
            insert(&mut kv, &message(id), false).unwrap();
        }
        let lease = |limit| Op::Lease {
            channel: CH.into(),
            lanes: Lane::ALL.to_vec(),
            now_ms: 10,
            limit,
            lease_ms: 1_000,
        };
        let (two, all) = (lease(2), lease(5));
        let took_two = apply(&mut kv, &two, false).unwrap();
        assert!(leased_full(&two, &took_two), "two of three: more wait");
        let took_rest = apply(&mut kv, &all, false).unwrap();
        assert!(!leased_full(&all, &took_rest), "the last one of five asked");
        assert!(!leased_full(&two, &OpResult::Count(2)));
        let none = lease(0);
        let took_none = apply(&mut kv, &none, false).unwrap();
        assert!(
            !leased_full(&none, &took_none),
            "asking for nothing is no backlog"
        );
    }

    #[test]
    fn a_delete_run_takes_exactly_its_entries() {
        let mut kv = MapKv::default();
        for account in ["acme", "acme2"] {
            for seq in 1..=6 {
                kv.put(&keys::outbox(account, seq), b"{}").unwrap();
            }
        }
        let run = Op::OutboxDeleteRun {
            account: "acme".into(),
            from_seq: 2,
            through_seq: 4,
        };
        assert!(matches!(
            apply(&mut kv, &run, false),
            Ok(OpResult::Count(3))
        ));
        let left: Vec<Vec<u8>> = kv.map.keys().cloned().collect();
        let want: Vec<Vec<u8>> = [1, 5, 6]
            .map(|s| keys::outbox("acme", s).to_vec())
            .into_iter()
            .chain((1..=6).map(|s| keys::outbox("acme2", s).to_vec()))
            .collect();
        assert_eq!(left.len(), want.len());
        for k in want {
            assert!(kv.map.contains_key(&k), "{}", keys::hex(&k));
        }
    }

    #[test]
    fn a_fresh_message_is_leased_from_its_body_alone_and_a_requeued_one_with_its_state() {
        let mut kv = MapKv::default();
        insert(&mut kv, &message(1), false).unwrap();
        let gets = kv.gets.get();
        assert_eq!(lease_all(&mut kv, 10).len(), 1);
        assert_eq!(
            kv.gets.get() - gets,
            1,
            "the body only: no state record to read"
        );

        // Sent back with an attempt counted: its state now lives in a state record, which
        // the next lease must read (the body still says queued, no attempts).
        requeue(&mut kv, MessageId(1), 20, true).unwrap();
        let gets = kv.gets.get();
        let again = lease_all(&mut kv, 30);
        assert_eq!(kv.gets.get() - gets, 2, "body and state record");
        assert_eq!(again[0].attempts, 1);
        assert_eq!(again[0].due_ms, 20);
    }

    /// The lease, each part's submit response and a part's receipt leave the message decoded
    /// in the writer's memory, equal to its records, for the next op; an ended message is not
    /// kept.
    #[test]
    fn a_submitted_message_waits_decoded_for_its_next_op() {
        use crate::store::live::{Live, LiveKv};
        let live = Live::default();
        let mut engine = MapKv::default();
        insert(&mut engine, &message(1), false).unwrap();
        let mut kv = LiveKv::new(&mut engine, &live, 0);
        let id = MessageId(1);
        assert!(matches!(
            lease(&mut kv, CH, &Lane::ALL, 10, 10, 1_000).unwrap(),
            OpResult::Leased { messages, .. } if messages.len() == 1
        ));
        // Each op that leaves the message waiting for another keeps it, equal to its records.
        let kept_equals_records = |kv: &mut LiveKv<'_>, after: &str| {
            let kept = kv
                .take_live(id)
                .unwrap_or_else(|| panic!("kept after {after}"));
            assert_eq!(load(kv, id).unwrap().as_ref(), Some(&kept), "after {after}");
            kv.keep_live(kept);
        };
        kept_equals_records(&mut kv, "the lease");
        submitted(&mut kv, id, 1, 2, "c-1", 20).unwrap();
        kept_equals_records(&mut kv, "part 1's response");
        submitted(&mut kv, id, 2, 2, "c-2", 21).unwrap();
        kept_equals_records(&mut kv, "part 2's response");
        let part = |kv: &mut LiveKv<'_>, center| {
            receipt(kv, CH, center, PartState::Delivered, "DELIVRD", "000", 30).unwrap()
        };
        assert!(matches!(
            part(&mut kv, "c-1"),
            OpResult::ReceiptApplied {
                ended_in_ms: None,
                ..
            }
        ));
        kept_equals_records(&mut kv, "part 1's receipt");
        assert!(matches!(
            part(&mut kv, "c-2"),
            OpResult::ReceiptApplied {
                ended_in_ms: Some(_),
                ..
            }
        ));
        assert_eq!(kv.take_live(id), None, "an ended message is not kept");
        live.apply(kv.into_pending());
        assert_eq!(live.len(), 0);
    }

    /// Debug builds check every kept message taken against its records.
    #[cfg(debug_assertions)]
    #[test]
    #[should_panic(expected = "a kept message differs from its records")]
    fn a_kept_message_that_differs_from_its_records_is_caught() {
        use crate::store::live::{Live, LiveKv};
        let live = Live::default();
        let mut engine = MapKv::default();
        insert(&mut engine, &message(1), false).unwrap();
        let mut kv = LiveKv::new(&mut engine, &live, 0);
        let mut m = load(&kv, MessageId(1)).unwrap().unwrap();
        m.attempts += 1;
        kv.keep_live(m);
        let _ = load_mut(&mut kv, MessageId(1));
    }

    /// A state written while the message still waits under its insert's ready key (here a
    /// submit response for a message never leased) is what the next lease reads: the key no
    /// longer says "body only", and the part's center id survives for its receipt.
    #[test]
    fn a_state_written_while_queued_is_read_by_the_next_lease() {
        let mut kv = MapKv::default();
        insert(&mut kv, &message(1), false).unwrap();
        submitted(&mut kv, MessageId(1), 2, 2, "c-2", 5).unwrap();
        let leased = lease_all(&mut kv, 10);
        assert_eq!(leased[0].parts.len(), 2);
        assert_eq!(leased[0].parts[1].center_id.as_deref(), Some("c-2"));
        let r = receipt(
            &mut kv,
            CH,
            "c-2",
            PartState::Delivered,
            "DELIVRD",
            "000",
            20,
        );
        assert!(r.is_ok(), "{r:?}");
    }
}

//! Emergency stops and pause switches as store operations, written once for every engine.
//!
//! # Stops
//! A stop is a durable record (`keys::STOP`) naming an account and a filter: a tag
//! (`task = 42`) or a set of message ids. It is committed before the caller is answered and
//! from then on:
//! - every lease checks each message it takes against the active stops ([`Guards`]) and ends a
//!   match as `cancelled` instead of handing it out, in the same transaction — so nothing
//!   more of a stopped tag reaches a worker from the commit on, whatever the sweep's progress;
//! - a requeue or release of a matching in-flight message (a retry, a dispatcher giving back
//!   its buffer) ends it as `cancelled` too;
//! - a tag stop is swept by [`step`]: it walks the tag index of (account, key, value) from a
//!   durable cursor and ends every waiting match as `cancelled`, `limit` entries per commit,
//!   counting what it found (cancelled, in flight, already submitted). The cursor and counts
//!   live in the record, so a restart resumes the sweep where the last commit left it.
//!
//! An id stop is resolved in its own op (ids are bounded by the request size); only the ids
//! that were in flight stay in its filter. A stop keeps filtering for `hold_ms` after its
//! sweep ended (long enough for every message in flight at the call to come back or be
//! submitted), then [`retire`] moves it to `keys::STOP_DONE`, where progress queries still
//! find it and leases no longer look.
//!
//! # Tag index
//! Every non-final message has one entry per *indexed* tag (`keys::TAGGED`: account, key,
//! value, id), written at insert and removed when the message ends: what lets a sweep visit
//! exactly the messages of one task instead of every queued message. Which tag names are
//! indexed is stored (`keys::STOP_TAGS`, set from config with [`set_indexed`]; default
//! `task`): an entry costs a put at insert and a delete at the end, so indexing names no stop
//! uses (a per-subscriber tag) would halve the insert rate of campaign traffic for nothing. A
//! tag stop on a name that is not indexed is refused. Messages stored before a name was
//! indexed are not in the index; leases still catch them.
//!
//! # Pauses
//! A pause switch (`keys::PAUSE`) is a durable key per channel or account. Channel pauses are
//! enforced by dispatch (a paused channel does not lease). Account pauses are enforced here:
//! a lease that meets a message of a paused account moves its ready key to the account's
//! parked set (`keys::PARKED`) instead of leasing it, so each such message is skipped once,
//! not at every lease; [`unpark`] puts them back on resume. A parked message keeps its state
//! (`queued` / `scheduled`) and its expiry, and is not counted in the ready depth.

use serde::{Deserialize, Serialize};

use super::backend::{Kv, KvRead};
use super::error::StoreError;
use super::id::MessageId;
use super::keys;
use super::model::{Message, MessageState};
use super::ops::{self, OpResult};

/// Most active stops a lease consults: bounds the hot path. Stops beyond it still sweep and
/// are consulted once earlier ones retire.
const MAX_ACTIVE: usize = 1024;

/// Status word and error text of a cancellation receipt.
pub(crate) const CANCEL_STAT: &str = "CANCELD";
const CANCEL_ERR: &str = "000";

/// Which messages of an account a stop matches.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopFilter {
    /// Messages carrying the tag `key` with `value`.
    Tag {
        /// Tag name.
        key: String,
        /// Tag value.
        value: String,
    },
    /// These messages. In a stored record: only those that were in flight at the call (the
    /// others were settled by the call itself), sorted.
    Ids {
        /// Message ids.
        ids: Vec<MessageId>,
    },
}

/// What a stop found so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopCounts {
    /// Ended as `cancelled` by this stop (by the call, its sweep, or a lease / requeue that
    /// met a match).
    pub cancelled: u64,
    /// Already submitted to a center (`sent`): reported, not cancelled.
    pub already_submitted: u64,
    /// Already in a final state.
    pub already_final: u64,
    /// Ids not found, or not the account's.
    pub unknown: u64,
    /// Leased to a channel when looked at: each is either cancelled when it comes back or
    /// submitted (then it ends with its receipt as usual).
    pub in_flight: u64,
}

/// A stop as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopRecord {
    /// Store-assigned id (from 1).
    pub id: u64,
    /// Account whose messages it stops.
    pub account: String,
    /// What it matches.
    pub filter: StopFilter,
    /// When it was recorded, ms.
    pub created_ms: u64,
    /// How long it keeps filtering leases after its sweep ended, ms.
    pub hold_ms: u64,
    /// When its sweep ended, ms (`None`: still sweeping).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swept_ms: Option<u64>,
    /// Where the sweep continues: the next tag index key to visit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<Vec<u8>>,
    /// Counts so far.
    pub counts: StopCounts,
    /// Messages the sweep step that returned this record cancelled itself (not stored; 0
    /// elsewhere): what the sweeper counts, since the stored counts also move by leases.
    #[serde(skip)]
    pub step_cancelled: u64,
}

impl StopRecord {
    /// Whether the sweep has ended (every waiting match is cancelled).
    pub fn done(&self) -> bool {
        self.swept_ms.is_some()
    }

    /// Whether leases still check against it at `now_ms`.
    fn filtering(&self, now_ms: u64) -> bool {
        self.swept_ms
            .is_none_or(|s| now_ms < s.saturating_add(self.hold_ms))
    }

    fn matches(&self, m: &Message) -> bool {
        m.account == self.account
            && match &self.filter {
                StopFilter::Tag { key, value } => m.tags.get(key) == Some(value),
                StopFilter::Ids { ids } => ids.binary_search(&m.id).is_ok(),
            }
    }
}

/// A pause switch.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "name")]
pub enum PauseTarget {
    /// A channel: it leases nothing while paused.
    Channel(String),
    /// An account: its messages are skipped by leasing on every channel.
    Account(String),
}

impl PauseTarget {
    const fn kind_byte(&self) -> u8 {
        match self {
            Self::Channel(_) => b'c',
            Self::Account(_) => b'a',
        }
    }

    fn name(&self) -> &str {
        match self {
            Self::Channel(n) | Self::Account(n) => n,
        }
    }

    fn key(&self) -> Vec<u8> {
        keys::pause(self.kind_byte(), self.name()).into_vec()
    }
}

fn decode(key: &[u8], v: &[u8]) -> Result<StopRecord, StoreError> {
    serde_json::from_slice(v).map_err(|e| ops::corrupt(key, &e.to_string()))
}

fn put_record(kv: &mut dyn Kv, r: &StopRecord) -> Result<(), StoreError> {
    let v = serde_json::to_vec(r).map_err(|e| StoreError::Encode(e.to_string()))?;
    kv.put(&keys::stop(keys::STOP, r.id), &v)
}

/// Every record under `tag` (`STOP` or `STOP_DONE`), up to `limit`.
fn records(kv: &dyn KvRead, tag: u8, limit: usize) -> Result<Vec<StopRecord>, StoreError> {
    let mut found = Vec::new();
    kv.scan(&[tag], &[tag + 1], limit, &mut found)?;
    found.iter().map(|(k, v)| decode(k, v)).collect()
}

/// A stop by id, active or retired.
pub(crate) fn get(kv: &dyn KvRead, id: u64) -> Result<Option<StopRecord>, StoreError> {
    for tag in [keys::STOP, keys::STOP_DONE] {
        let k = keys::stop(tag, id);
        if let Some(v) = kv.get(&k)? {
            return decode(&k, &v).map(Some);
        }
    }
    Ok(None)
}

/// Ids of the active stops whose sweep has not ended (what a sweeper resumes after a restart).
pub(crate) fn unswept(kv: &dyn KvRead) -> Result<Vec<u64>, StoreError> {
    Ok(records(kv, keys::STOP, usize::MAX)?
        .into_iter()
        .filter(|r| !r.done())
        .map(|r| r.id)
        .collect())
}

/// Active stops (sweeping or holding).
pub(crate) fn active(kv: &dyn KvRead) -> Result<Vec<StopRecord>, StoreError> {
    records(kv, keys::STOP, usize::MAX)
}

/// Every pause switch that is on.
pub(crate) fn pauses(kv: &dyn KvRead) -> Result<Vec<PauseTarget>, StoreError> {
    let mut found = Vec::new();
    kv.scan(&[keys::PAUSE], &[keys::PAUSE + 1], usize::MAX, &mut found)?;
    Ok(found
        .into_iter()
        .filter_map(|(k, _)| {
            let name = String::from_utf8(k.get(2..)?.to_vec()).ok()?;
            match k.get(1)? {
                b'c' => Some(PauseTarget::Channel(name)),
                b'a' => Some(PauseTarget::Account(name)),
                _ => None,
            }
        })
        .collect())
}

/// The tag names stops may use (the tag index covers these only).
pub(crate) fn indexed(kv: &dyn KvRead) -> Result<Vec<String>, StoreError> {
    Ok(match kv.get(&[keys::STOP_TAGS])? {
        Some(v) => v
            .split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .filter_map(|s| String::from_utf8(s.to_vec()).ok())
            .collect(),
        None => vec!["task".to_owned()],
    })
}

/// Entries read per scan by [`would_cancel`] (bounds the memory of one read).
const PREVIEW_CHUNK: usize = 4096;

/// How many messages a tag stop of (account, key, value) would end now, read through the
/// same tag index the sweep walks: those waiting (`queued` / `scheduled`, ended at once) and
/// those in flight (ended when they come back), not those already submitted or final.
/// `Err` (as [`record`] answers it): the tag name is not indexed, so no stop could name it.
///
/// # Errors
/// Engine or decoding failure.
pub(crate) fn would_cancel(
    kv: &dyn KvRead,
    account: &str,
    key: &str,
    value: &str,
) -> Result<Result<u64, String>, StoreError> {
    let names = indexed(kv)?;
    if !names.iter().any(|n| n == key) {
        return Ok(Err(format!(
            "tag {key:?} is not indexed for stops (storage.stop_tags: {})",
            names.join(", ")
        )));
    }
    let prefix = keys::tagged_prefix(account, key, value);
    let end = keys::prefix_end(&prefix);
    let mut start = prefix.to_vec();
    let mut n = 0;
    loop {
        let mut found = Vec::new();
        kv.scan(&start, &end, PREVIEW_CHUNK, &mut found)?;
        for (ik, _) in &found {
            // A longer key belongs to a value that merely starts with ours (as in `step`).
            if ik.len() != prefix.len() + 8 {
                continue;
            }
            let Some(id) = keys::be_u64(ik, prefix.len()).map(MessageId) else {
                continue;
            };
            if let Some(m) = ops::load_queued(kv, id)?
                && m.account == account
                && m.tags.get(key).is_some_and(|v| v == value)
                && !m.state.is_final()
                && m.state != MessageState::Sent
            {
                n += 1;
            }
        }
        match found.last() {
            Some((last, _)) if found.len() == PREVIEW_CHUNK => {
                start = last.clone();
                start.push(0);
            }
            _ => return Ok(Ok(n)),
        }
    }
}

/// Sets the indexed tag names (messages already stored keep the entries they have).
pub(crate) fn set_indexed(kv: &mut dyn Kv, names: &[String]) -> Result<OpResult, StoreError> {
    if names.iter().any(|n| n.is_empty() || n.contains('\0')) {
        return Ok(OpResult::Invalid(
            "tag names must be non-empty and contain no NUL".into(),
        ));
    }
    let mut v = Vec::new();
    for n in names {
        v.extend_from_slice(n.as_bytes());
        v.push(0);
    }
    kv.put(&[keys::STOP_TAGS], &v)?;
    Ok(OpResult::Count(names.len()))
}

/// Adds the tag index entries of a message entering the queues.
pub(crate) fn index_tags(kv: &mut dyn Kv, m: &Message) -> Result<(), StoreError> {
    if m.tags.is_empty() {
        return Ok(());
    }
    for name in indexed(kv)? {
        if let Some(v) = m.tags.get(&name) {
            kv.put(&keys::tagged(&m.account, &name, v, m.id), &[])?;
        }
    }
    Ok(())
}

/// Removes the tag index entries of a message that ended.
pub(crate) fn unindex_tags(kv: &mut dyn Kv, m: &Message) -> Result<(), StoreError> {
    if m.tags.is_empty() {
        return Ok(());
    }
    for name in indexed(kv)? {
        if let Some(v) = m.tags.get(&name) {
            kv.delete(&keys::tagged(&m.account, &name, v, m.id))?;
        }
    }
    Ok(())
}

/// Ends a waiting or in-flight message as `cancelled` (with its receipt event).
fn cancel(kv: &mut dyn Kv, m: &mut Message, now_ms: u64) -> Result<(), StoreError> {
    ops::finalize(
        kv,
        m,
        MessageState::Cancelled,
        CANCEL_STAT,
        CANCEL_ERR,
        now_ms,
    )
}

/// What a lease or requeue must check each message against, loaded once per op.
#[derive(Debug, Default)]
pub(crate) struct Guards {
    stops: Vec<StopRecord>,
    /// Cancellations per entry of `stops`, written back by [`Guards::save`].
    hits: Vec<u64>,
    paused_accounts: Vec<String>,
}

impl Guards {
    /// The stops filtering at `now_ms` and the paused accounts. With none of either (the
    /// usual case) this is two scans of empty ranges.
    pub(crate) fn load(kv: &dyn KvRead, now_ms: u64) -> Result<Self, StoreError> {
        let stops: Vec<StopRecord> = records(kv, keys::STOP, MAX_ACTIVE)?
            .into_iter()
            .filter(|r| r.filtering(now_ms))
            .collect();
        let mut found = Vec::new();
        let start = keys::pause(b'a', "");
        kv.scan(&start, &keys::prefix_end(&start), usize::MAX, &mut found)?;
        let paused_accounts = found
            .into_iter()
            .filter_map(|(k, _)| String::from_utf8(k.get(2..)?.to_vec()).ok())
            .collect();
        Ok(Self {
            hits: vec![0; stops.len()],
            stops,
            paused_accounts,
        })
    }

    /// Nothing to check.
    pub(crate) fn is_empty(&self) -> bool {
        self.stops.is_empty() && self.paused_accounts.is_empty()
    }

    /// Ends `m` as `cancelled` if an active stop matches it; returns whether it did.
    pub(crate) fn cancel_if_stopped(
        &mut self,
        kv: &mut dyn Kv,
        m: &mut Message,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let Some(i) = self.stops.iter().position(|s| s.matches(m)) else {
            return Ok(false);
        };
        cancel(kv, m, now_ms)?;
        self.hits[i] += 1;
        Ok(true)
    }

    /// Whether `account` is paused.
    pub(crate) fn paused(&self, account: &str) -> bool {
        self.paused_accounts.iter().any(|a| a == account)
    }

    /// Adds the cancellations made through each stop to its stored counts.
    pub(crate) fn save(self, kv: &mut dyn Kv) -> Result<(), StoreError> {
        for (mut s, n) in self.stops.into_iter().zip(self.hits) {
            if n == 0 {
                continue;
            }
            // Re-read: an earlier op of the same transaction may have moved its counts on.
            if let Some(current) = get(kv, s.id)? {
                s = current;
            }
            s.counts.cancelled += n;
            put_record(kv, &s)?;
        }
        Ok(())
    }
}

/// Moves a waiting message of a paused account from its ready key to the parked set.
pub(crate) fn park(kv: &mut dyn Kv, ready_key: &[u8], m: &Message) -> Result<(), StoreError> {
    kv.delete(ready_key)?;
    kv.put(&keys::parked(&m.account, ready_key), &[])
}

/// Records a stop of `account`'s messages matching `filter`. A tag stop starts its sweep
/// (see [`step`]); an id stop settles every id now. Answers [`OpResult::Stopped`].
pub(crate) fn record(
    kv: &mut dyn Kv,
    account: &str,
    filter: &StopFilter,
    now_ms: u64,
    hold_ms: u64,
) -> Result<OpResult, StoreError> {
    if account.is_empty() || account.contains('\0') {
        return Ok(OpResult::Invalid("account must be non-empty".into()));
    }
    if let StopFilter::Tag { key, .. } = filter {
        let names = indexed(kv)?;
        if !names.contains(key) {
            return Ok(OpResult::Invalid(format!(
                "tag {key:?} is not indexed for stops (storage.stop_tags: {})",
                names.join(", ")
            )));
        }
    }
    let seq_key = [keys::STOP_SEQ];
    let id = kv
        .get(&seq_key)?
        .and_then(|v| keys::be_u64(&v, 0))
        .unwrap_or(1);
    kv.put(&seq_key, &(id + 1).to_be_bytes())?;
    let mut rec = StopRecord {
        id,
        account: account.to_owned(),
        filter: filter.clone(),
        created_ms: now_ms,
        hold_ms,
        swept_ms: None,
        cursor: None,
        counts: StopCounts::default(),
        step_cancelled: 0,
    };
    match filter {
        // Checked before anything is written.
        StopFilter::Tag { .. } => {}
        StopFilter::Ids { ids } => {
            let mut ids = ids.clone();
            ids.sort_unstable();
            ids.dedup();
            let mut in_flight = Vec::new();
            for id in ids {
                let m = ops::load_queued(kv, id)?.filter(|m| m.account == account);
                let Some(mut m) = m else {
                    rec.counts.unknown += 1;
                    continue;
                };
                match m.state {
                    s if s.is_final() => rec.counts.already_final += 1,
                    MessageState::Sent => rec.counts.already_submitted += 1,
                    MessageState::InFlight => {
                        rec.counts.in_flight += 1;
                        in_flight.push(id);
                    }
                    _ => {
                        cancel(kv, &mut m, now_ms)?;
                        rec.counts.cancelled += 1;
                    }
                }
            }
            rec.filter = StopFilter::Ids { ids: in_flight };
            rec.swept_ms = Some(now_ms);
        }
    }
    put_record(kv, &rec)?;
    Ok(OpResult::Stopped(Box::new(rec)))
}

/// One sweep step of stop `id`: visits up to `limit` tag index entries from the cursor, ends
/// waiting matches as `cancelled`, counts the rest, saves cursor and counts. The step that
/// finds fewer than `limit` entries ends the sweep. Answers [`OpResult::Stopped`] with the
/// record after the step, or [`OpResult::NotFound`].
pub(crate) fn step(
    kv: &mut dyn Kv,
    id: u64,
    now_ms: u64,
    limit: usize,
) -> Result<OpResult, StoreError> {
    let k = keys::stop(keys::STOP, id);
    let Some(v) = kv.get(&k)? else {
        return Ok(match get(kv, id)? {
            Some(r) => OpResult::Stopped(Box::new(r)),
            None => OpResult::NotFound,
        });
    };
    let mut rec = decode(&k, &v)?;
    if rec.done() {
        return Ok(OpResult::Stopped(Box::new(rec)));
    }
    let StopFilter::Tag { key, value } = &rec.filter else {
        rec.swept_ms = Some(now_ms);
        put_record(kv, &rec)?;
        return Ok(OpResult::Stopped(Box::new(rec)));
    };
    let prefix = keys::tagged_prefix(&rec.account, key, value);
    let end = keys::prefix_end(&prefix);
    let start = rec.cursor.clone().unwrap_or_else(|| prefix.to_vec());
    let mut found = Vec::new();
    kv.scan(&start, &end, limit.max(1), &mut found)?;
    let mut counts = rec.counts;
    for (ik, _) in &found {
        // A longer key belongs to a value that merely starts with ours (NUL inside a tag).
        if ik.len() != prefix.len() + 8 {
            continue;
        }
        let Some(mid) = keys::be_u64(ik, prefix.len()).map(MessageId) else {
            continue;
        };
        let Some(mut m) = ops::load_queued(kv, mid)? else {
            kv.delete(ik)?;
            continue;
        };
        if !rec.matches(&m) {
            continue;
        }
        match m.state {
            s if s.is_final() => {
                // Left behind by a message that ended before the index was kept on finalize.
                kv.delete(ik)?;
                counts.already_final += 1;
            }
            MessageState::Sent => counts.already_submitted += 1,
            MessageState::InFlight => counts.in_flight += 1,
            _ => {
                cancel(kv, &mut m, now_ms)?;
                counts.cancelled += 1;
            }
        }
    }
    rec.step_cancelled = counts.cancelled - rec.counts.cancelled;
    rec.counts = counts;
    if found.len() < limit.max(1) {
        rec.swept_ms = Some(now_ms);
        rec.cursor = None;
    } else if let Some((last, _)) = found.last() {
        let mut next = last.clone();
        next.push(0);
        rec.cursor = Some(next);
    }
    put_record(kv, &rec)?;
    Ok(OpResult::Stopped(Box::new(rec)))
}

/// Moves every stop whose hold ended by `now_ms` to the retired table; counts them.
pub(crate) fn retire(kv: &mut dyn Kv, now_ms: u64) -> Result<OpResult, StoreError> {
    let mut n = 0;
    for r in active(kv)? {
        if r.filtering(now_ms) {
            continue;
        }
        let v = serde_json::to_vec(&r).map_err(|e| StoreError::Encode(e.to_string()))?;
        kv.delete(&keys::stop(keys::STOP, r.id))?;
        kv.put(&keys::stop(keys::STOP_DONE, r.id), &v)?;
        n += 1;
    }
    Ok(OpResult::Count(n))
}

/// Turns a pause switch on or off; counts 1 if it changed.
pub(crate) fn set_pause(
    kv: &mut dyn Kv,
    target: &PauseTarget,
    paused: bool,
) -> Result<OpResult, StoreError> {
    if target.name().is_empty() || target.name().contains('\0') {
        return Ok(OpResult::Invalid("name must be non-empty".into()));
    }
    let k = target.key();
    let was = kv.get(&k)?.is_some();
    match (was, paused) {
        (false, true) => kv.put(&k, &[])?,
        (true, false) => kv.delete(&k)?,
        _ => return Ok(OpResult::Count(0)),
    }
    Ok(OpResult::Count(1))
}

/// Puts up to `limit` parked messages of `account` back in their ready queues (on resume);
/// counts the entries visited. Entries of messages that ended or moved meanwhile just go.
pub(crate) fn unpark(kv: &mut dyn Kv, account: &str, limit: usize) -> Result<OpResult, StoreError> {
    let prefix = keys::parked_prefix(account);
    let mut found = Vec::new();
    kv.scan(
        &prefix,
        &keys::prefix_end(&prefix),
        limit.max(1),
        &mut found,
    )?;
    for (pk, _) in &found {
        kv.delete(pk)?;
        let Some(ready) = keys::unparked(account, pk) else {
            continue;
        };
        let Some(id) = keys::ready_id(&ready) else {
            continue;
        };
        let Some(m) = ops::load_queued(kv, id)? else {
            continue;
        };
        let waiting = m.waits_in_ready_queue();
        let key = keys::ready(&m.channel, m.lane, m.due_ms, m.id);
        if waiting && key[..] == ready[..] {
            kv.put(&key, &[])?;
        }
    }
    Ok(OpResult::Count(found.len()))
}

//! Pure reads: lookups that run in a read transaction, outside the writer.

use super::backend::KvRead;
use super::error::StoreError;
use super::id::MessageId;
use super::keys;
use super::model::{Lane, OutboxEntry};
use super::ops::corrupt;

/// Message id and part for a center id on a channel.
pub(crate) fn by_center(
    kv: &dyn KvRead,
    channel: &str,
    center_id: &str,
) -> Result<Option<(MessageId, u16)>, StoreError> {
    let k = keys::center(channel, center_id);
    kv.get(&k)?
        .map(|v| match (keys::be_u64(&v, 0), keys::be_u16(&v, 8)) {
            (Some(id), Some(p)) => Ok((MessageId(id), p)),
            _ => Err(corrupt(&k, "short center-id value")),
        })
        .transpose()
}

/// Receipt outbox entries of `account` with `seq > after`, oldest first.
pub(crate) fn outbox(
    kv: &dyn KvRead,
    account: &str,
    after: u64,
    limit: usize,
) -> Result<Vec<OutboxEntry>, StoreError> {
    outbox_of(kv, keys::Outbox::Receipts, account, after, limit)
}

/// Entries of `account`'s `which` outbox with `seq > after`, oldest first.
pub(crate) fn outbox_of(
    kv: &dyn KvRead,
    which: keys::Outbox,
    account: &str,
    after: u64,
    limit: usize,
) -> Result<Vec<OutboxEntry>, StoreError> {
    let start = which.entry(account, after.saturating_add(1));
    let end = keys::prefix_end(&which.prefix(account));
    let mut found = Vec::new();
    kv.scan(&start, &end, limit, &mut found)?;
    found
        .into_iter()
        .map(|(k, body)| {
            let seq = k
                .len()
                .checked_sub(8)
                .and_then(|at| keys::be_u64(&k, at))
                .ok_or_else(|| corrupt(&k, "short outbox key"))?;
            Ok(OutboxEntry {
                seq,
                body,
                event: None,
            })
        })
        .collect()
}

/// How many entries `account`'s `which` outbox holds, and its oldest one (lowest sequence).
/// Scans the outbox in chunks, so it costs time in proportion to its depth but memory only
/// of one chunk (callers measure it now and then, not per entry).
pub(crate) fn outbox_depth(
    kv: &dyn KvRead,
    which: keys::Outbox,
    account: &str,
) -> Result<(u64, Option<OutboxEntry>), StoreError> {
    const CHUNK: usize = 4096;
    let mut count = 0u64;
    let mut oldest = None;
    let mut after = 0u64;
    loop {
        let found = outbox_of(kv, which, account, after, CHUNK)?;
        count += found.len() as u64;
        let full = found.len() == CHUNK;
        let Some(last) = found.last() else { break };
        after = last.seq;
        if oldest.is_none() {
            oldest = found.into_iter().next();
        }
        if !full {
            break;
        }
    }
    Ok((count, oldest))
}

/// Ids of up to `limit` messages to `to`, newest first (ids grow with time), from the
/// destination index.
pub(crate) fn by_destination(
    kv: &dyn KvRead,
    to: &str,
    limit: usize,
) -> Result<Vec<MessageId>, StoreError> {
    let prefix = keys::by_to_prefix(to);
    let mut end = keys::prefix_end(&prefix);
    let mut ids = Vec::new();
    while ids.len() < limit {
        let Some(k) = kv.last_key(&prefix, &end)? else {
            break;
        };
        // A longer key belongs to a destination that merely starts with ours (NUL inside).
        if k.len() == prefix.len() + 8
            && let Some(id) = keys::be_u64(&k, prefix.len())
        {
            ids.push(MessageId(id));
        }
        end = k;
    }
    Ok(ids)
}

/// Id stored under an idempotency key.
pub(crate) fn by_client_ref(
    kv: &dyn KvRead,
    account: &str,
    client_ref: &str,
) -> Result<Option<MessageId>, StoreError> {
    let k = keys::idem(account, client_ref);
    kv.get(&k)?
        .map(|v| {
            keys::be_u64(&v, 0)
                .map(MessageId)
                .ok_or_else(|| corrupt(&k, "short id"))
        })
        .transpose()
}

/// Due time of the first message in (channel, lane)'s ready queue.
pub(crate) fn next_due(
    kv: &dyn KvRead,
    channel: &str,
    lane: Lane,
) -> Result<Option<u64>, StoreError> {
    let prefix = keys::ready_prefix(channel, lane);
    let mut found = Vec::new();
    kv.scan(&prefix, &keys::prefix_end(&prefix), 1, &mut found)?;
    Ok(found
        .first()
        .and_then(|(k, _)| keys::be_u64(k, prefix.len())))
}

/// The greatest stored message id (to seed the id generator).
pub(crate) fn last_id(kv: &dyn KvRead) -> Result<Option<MessageId>, StoreError> {
    Ok(kv
        .last_key(&[keys::MESSAGE], &[keys::MESSAGE + 1])?
        .and_then(|k| keys::be_u64(&k, 1))
        .map(MessageId))
}

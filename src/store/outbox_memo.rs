//! The newest receipt outbox entries, kept in memory by the writer for the pumps that deliver
//! them.
//!
//! Why: every receipt event is encoded by the writer, put in the engine, and then, moments
//! later, read back by the webhook pump (or the SMPP server's receipt pump) and decoded again
//! — at full speed the read was 2 % and the JSON decode 3 % of the gateway's CPU. The writer
//! has the event in hand when it appends it, so it keeps it here once the transaction has
//! committed, and [`Store::outbox`](super::Store::outbox) answers from here when it can. The
//! engine stays the only durable copy and the format on disk does not change: after a
//! restart, or for entries older than what this holds, reads go to the engine as before.
//!
//! What is kept is learnt from the writer's own key writes ([`OutboxMemoKv`], the outermost
//! layer of its transactions), not from the ops: a put of a receipt outbox entry key is an
//! entry made, a delete or take of one an entry gone, whichever op did it. So nothing that
//! adds or removes an entry can bypass it.
//!
//! Invariants:
//! - for an account it knows, every entry the engine holds with a sequence from the
//!   account's `from` on is here, and nothing else is. An account becomes known with the
//!   first entry appended to it in this process: `from` is that entry's sequence (sequences
//!   only grow, so every later entry is appended after it, in view), or 1 when the engine
//!   held no older entry of the account then (one scan, once per account);
//! - a read is answered from here only when it starts at or after `from`
//!   ([`OutboxMemo::read`]); else the engine answers it;
//! - changes are taken in after the transaction committed and before its producers are
//!   answered ([`OutboxMemo::apply`]), so a pump that deleted an entry never reads it here
//!   again; a failed transaction's changes are dropped with it;
//! - after the engine was reopened (an I/O error: it went back to its last durable commit)
//!   everything is forgotten and the engine answers until entries are appended again;
//! - at most `cap` entries: past it, the oldest entries of the account holding the most
//!   go (its `from` moves past them), so a receiver that is down makes its account read
//!   the engine instead of growing this — but only entries the engine has (below).
//!
//! **Entries that wait for a durable commit** (redo log on). An entry usually lives for
//! milliseconds: the pump delivers it and deletes it. With the redo log, what a crash keeps
//! is the engine's last durable commit plus the log after it, which opening applies again
//! through the writer (and so through this layer), so an entry put and deleted between two
//! durable commits need never reach the engine: its put and its delete were 6 % of the
//! gateway's CPU at full speed, a B-tree walk and page copies each. So, as `short_lived.rs`
//! does for lease keys:
//! - a new receipt entry (`put_receipt_entry`, a sequence never used) is held here,
//!   *unwritten*, instead of put in the engine; removing it removes it from here only;
//! - every durable commit of the logged writer writes the unwritten entries into its own
//!   transaction ([`OutboxMemo::flush_into`]), and once it committed they are written
//!   ([`OutboxMemo::flushed`]). So no durable commit claims a log group whose entries it
//!   lacks. An account's unwritten entries are therefore newer than every entry of it the
//!   engine holds;
//! - unwritten entries are never evicted (eviction stops at an account's first unwritten
//!   one): between two durable commits, at most a checkpoint's worth of them;
//! - readers below an account's `from` read the engine below `from` and this from `from`
//!   on ([`OutboxMemo::tail`]); the depth adds the unwritten count to the engine's
//!   ([`OutboxMemo::unwritten`]), and a flush in between is detected and retried
//!   ([`OutboxMemo::flushes`], odd while one runs);
//! - after an engine reopen everything is forgotten ([`OutboxMemo::clear`]) before the log
//!   is applied again, which makes the unwritten entries again.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Bound;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::backend::{
    Entry as KvEntry, Kv, KvRead, last_key_merged, pass_retire_through, scan_merged, tags_between,
    taken_by,
};
use super::error::StoreError;
use super::keys;
use super::model::{OutboxEntry, ReceiptEvent};

/// Entries kept by default: about 1 KB each (JSON and event), and at full speed the webhook
/// pump is a few thousand entries behind the writer at most.
pub(crate) const DEFAULT_CAP: usize = 16_384;

/// Removed entries that wait for a reader to drop them: past this many, the writer drops
/// them itself.
const GRAVEYARD: usize = 4096;

/// One change of a transaction to an account's receipt outbox.
#[derive(Debug)]
pub(crate) enum Change {
    /// Entry `seq` was put (its event when the writer had it; its bytes unless it is held
    /// back, whose event is then given). `first`: the engine held no entry of the account
    /// below `seq` (checked for accounts not yet known).
    Put {
        seq: u64,
        body: Option<Vec<u8>>,
        event: Option<Arc<ReceiptEvent>>,
        first: bool,
        /// The engine has it (false: held here until a durable commit writes it).
        written: bool,
    },
    /// Entry `seq` was removed.
    Gone { seq: u64 },
}

/// A transaction's changes, for [`OutboxMemo::apply`] once it committed: per account, in
/// the order made (a run of changes to one account is one element, so a group pays one
/// account lookup, not one per entry).
pub(crate) type Pending = Vec<(String, Vec<Change>)>;

#[derive(Debug)]
struct Kept {
    /// The stored value; `None` for an entry held back, whose event (then given) was never
    /// encoded: the pumps read the event, and a durable commit encodes it.
    body: Option<Vec<u8>>,
    event: Option<Arc<ReceiptEvent>>,
    /// The engine has the entry too (false: only here, until a durable commit writes it).
    written: bool,
}

#[derive(Debug)]
struct Account {
    /// Every engine entry with a sequence from here on is in `entries`.
    from: u64,
    entries: BTreeMap<u64, Kept>,
    /// Entries of `entries` not written yet (always its last ones).
    unwritten: usize,
}

impl Account {
    fn entry(seq: u64, k: &Kept) -> OutboxEntry {
        OutboxEntry {
            seq,
            body: k.body.clone().unwrap_or_default(),
            event: k.event.clone(),
        }
    }
}

impl Kept {
    /// The stored value, encoded now if it never was.
    fn bytes(&self) -> Result<Vec<u8>, StoreError> {
        match (&self.body, &self.event) {
            (Some(body), _) => Ok(body.clone()),
            (None, Some(event)) => super::backend::receipt_entry_body(event),
            (None, None) => Err(StoreError::Encode(
                "outbox entry without body or event".into(),
            )),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    accounts: HashMap<String, Account>,
    /// Entries over all accounts.
    kept: usize,
    /// The engine's reopen count the entries are valid for.
    reopens: u64,
    /// Entries removed, dropped by the next reader outside the lock: an event's strings
    /// are a dozen frees, which the writer thread (the store's bottleneck at full speed)
    /// need not pay.
    graveyard: Vec<Kept>,
}

/// The newest receipt outbox entries per account (see the module docs).
#[derive(Debug)]
pub(crate) struct OutboxMemo {
    state: Mutex<State>,
    cap: usize,
    /// Flushes begun and ended: odd while a durable commit writes the unwritten entries.
    flushes: AtomicU64,
    /// Entries held back since start, and of them those a durable commit then wrote (the
    /// rest never reached the engine).
    held: [AtomicU64; 2],
}

impl Default for OutboxMemo {
    fn default() -> Self {
        Self::with_cap(DEFAULT_CAP)
    }
}

impl OutboxMemo {
    pub(crate) fn with_cap(cap: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            cap,
            flushes: AtomicU64::new(0),
            held: [AtomicU64::new(0), AtomicU64::new(0)],
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes in the changes of a transaction that committed against the engine as reopened
    /// `reopens` times.
    pub(crate) fn apply(&self, pending: Pending, reopens: u64) {
        if pending.is_empty() {
            return;
        }
        let mut guard = self.state();
        let st = &mut *guard;
        if st.reopens != reopens {
            st.accounts.clear();
            st.kept = 0;
            st.reopens = reopens;
        }
        let full = st.graveyard.len() >= GRAVEYARD;
        let dead = if full {
            std::mem::take(&mut st.graveyard)
        } else {
            Vec::new()
        };
        for (account, changes) in pending {
            let acc = match st.accounts.entry(account) {
                Entry::Occupied(o) => o.into_mut(),
                Entry::Vacant(v) => {
                    // Known from its first put (removals before it were of older entries,
                    // the engine's business).
                    let Some((seq, first)) = changes.iter().find_map(|c| match c {
                        Change::Put { seq, first, .. } => Some((*seq, *first)),
                        Change::Gone { .. } => None,
                    }) else {
                        continue;
                    };
                    v.insert(Account {
                        from: if first { 1 } else { seq },
                        entries: BTreeMap::new(),
                        unwritten: 0,
                    })
                }
            };
            for change in changes {
                match change {
                    Change::Put {
                        seq,
                        body,
                        event,
                        written,
                        ..
                    } => {
                        if !written {
                            self.held[0].fetch_add(1, Ordering::Relaxed);
                        }
                        // Below `from` the engine answers; nothing there is kept. The layer
                        // holds an entry back only at or above it (`OutboxMemo::holds`).
                        debug_assert!(written || seq >= acc.from, "unwritten entry below from");
                        if seq >= acc.from {
                            acc.unwritten += usize::from(!written);
                            let kept = Kept {
                                body,
                                event,
                                written,
                            };
                            match acc.entries.insert(seq, kept) {
                                None => st.kept += 1,
                                Some(old) => {
                                    acc.unwritten -= usize::from(!old.written);
                                    st.graveyard.push(old);
                                }
                            }
                        }
                    }
                    Change::Gone { seq } => {
                        if let Some(k) = acc.entries.remove(&seq) {
                            st.kept -= 1;
                            acc.unwritten -= usize::from(!k.written);
                            st.graveyard.push(k);
                        }
                    }
                }
            }
        }
        while st.kept > self.cap && st.evict_one() {}
        drop(guard);
        drop(dead);
    }

    /// Up to `limit` entries of `account` after `after`, oldest first, when every one of
    /// them is here; `None` when the engine must answer (an unknown account, a read from
    /// before what is kept, or an engine reopened since the entries were taken in, `reopens`
    /// being its count now).
    pub(crate) fn read(
        &self,
        account: &str,
        after: u64,
        limit: usize,
        reopens: u64,
    ) -> Option<Vec<OutboxEntry>> {
        let mut st = self.state();
        let dead = std::mem::take(&mut st.graveyard);
        let found = (st.reopens == reopens)
            .then(|| st.accounts.get(account))
            .flatten()
            .filter(|acc| after.saturating_add(1) >= acc.from)
            .map(|acc| {
                acc.entries
                    .range(after.saturating_add(1)..)
                    .take(limit)
                    .map(|(&seq, k)| Account::entry(seq, k))
                    .collect()
            });
        drop(st);
        drop(dead);
        found
    }

    /// For a read [`read`](Self::read) left to the engine: the account's `from` and its
    /// first `limit` entries (from `from` on), which the reader puts after the engine's
    /// entries below `from`. `None` when the memo holds nothing of the account (or the
    /// engine was reopened since): then the engine alone answers.
    pub(crate) fn tail(
        &self,
        account: &str,
        limit: usize,
        reopens: u64,
    ) -> Option<(u64, Vec<OutboxEntry>)> {
        let st = self.state();
        let acc = (st.reopens == reopens)
            .then(|| st.accounts.get(account))
            .flatten()?;
        let entries = acc
            .entries
            .iter()
            .take(limit)
            .map(|(&seq, k)| Account::entry(seq, k))
            .collect();
        Some((acc.from, entries))
    }

    /// What a read that [`read`](Self::read) left to the engine answers: `engine`, the
    /// engine's entries after `after`, below the memo's `from`, then the memo's `tail`
    /// (taken before the engine was read, so whatever moved between was below `from` then
    /// and in the engine, or in `tail`).
    pub(crate) fn merge_tail(
        mut engine: Vec<OutboxEntry>,
        tail: Option<(u64, Vec<OutboxEntry>)>,
        after: u64,
        limit: usize,
    ) -> Vec<OutboxEntry> {
        if let Some((from, tail)) = tail {
            engine.retain(|e| e.seq < from);
            engine.extend(tail.into_iter().filter(|e| e.seq > after));
            engine.truncate(limit);
        }
        engine
    }

    /// How many entries of `account` only this holds, and the oldest of them: what the
    /// engine's count lacks.
    pub(crate) fn unwritten(&self, account: &str, reopens: u64) -> (u64, Option<OutboxEntry>) {
        let st = self.state();
        let Some(acc) = (st.reopens == reopens)
            .then(|| st.accounts.get(account))
            .flatten()
        else {
            return (0, None);
        };
        let oldest = acc
            .entries
            .iter()
            .find(|(_, k)| !k.written)
            .map(|(&seq, k)| Account::entry(seq, k));
        (acc.unwritten as u64, oldest)
    }

    /// Entries held back since start, and of them those a durable commit wrote: the others
    /// were put and removed without an engine write.
    pub(crate) fn held_counts(&self) -> (u64, u64) {
        (
            self.held[0].load(Ordering::Relaxed),
            self.held[1].load(Ordering::Relaxed),
        )
    }

    /// Flushes begun and ended so far: odd while one runs. A reader that adds
    /// [`unwritten`](Self::unwritten) to an engine count takes both between two equal, even
    /// readings.
    pub(crate) fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::Acquire)
    }

    /// The body of entry `seq` of `account` when only this holds it.
    fn unwritten_body(&self, account: &str, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let st = self.state();
        match st.accounts.get(account).and_then(|a| a.entries.get(&seq)) {
            Some(k) if !k.written => k.bytes().map(Some),
            _ => Ok(None),
        }
    }

    /// Whether a new entry `seq` of `account` may be held back: the account is unknown (it
    /// becomes known from an entry no later than this) or `seq` is from its `from` on.
    fn holds(&self, account: &str, seq: u64) -> bool {
        self.state()
            .accounts
            .get(account)
            .is_none_or(|acc| seq >= acc.from)
    }

    /// The keys of the unwritten entries in `[start, end)`, in key order: at most `limit`.
    /// Keys only: their bodies would be encoded for callers that mostly remove them.
    fn unwritten_between(&self, start: &[u8], end: &[u8], limit: usize) -> Vec<Vec<u8>> {
        let st = self.state();
        let mut found = Vec::new();
        for (account, acc) in st.accounts.iter().filter(|(_, a)| a.unwritten > 0) {
            let prefix = keys::Outbox::Receipts.prefix(account);
            let Some(seqs) = seq_range(&prefix, start, end) else {
                continue;
            };
            found.extend(
                acc.entries
                    .range(seqs)
                    .filter(|(_, k)| !k.written)
                    .take(limit)
                    .map(|(&seq, _)| keys::outbox(account, seq).into_vec()),
            );
        }
        found.sort_unstable();
        found.truncate(limit);
        found
    }

    /// Writes every unwritten entry into `kv`, a durable commit's transaction, and marks a
    /// flush begun; the caller calls [`flushed`](Self::flushed) with whether it committed.
    /// Returns how many.
    pub(crate) fn flush_into(&self, kv: &mut dyn Kv) -> Result<usize, StoreError> {
        let st = self.state();
        if self.flushes().is_multiple_of(2) {
            self.flushes.fetch_add(1, Ordering::AcqRel);
        }
        let mut accounts: Vec<(&String, &Account)> = st
            .accounts
            .iter()
            .filter(|(_, a)| a.unwritten > 0)
            .collect();
        // In key order: neighbours share the engine's pages.
        accounts.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut n = 0;
        for (account, acc) in accounts {
            for (&seq, k) in acc.entries.iter().filter(|(_, k)| !k.written) {
                kv.put(&keys::outbox(account, seq), &k.bytes()?)?;
                n += 1;
            }
        }
        Ok(n)
    }

    /// Ends the flush [`flush_into`](Self::flush_into) began: once its commit `committed`,
    /// every entry held is written.
    pub(crate) fn flushed(&self, committed: bool) {
        let mut st = self.state();
        if committed {
            let n: usize = st.accounts.values().map(|a| a.unwritten).sum();
            self.held[1].fetch_add(n as u64, Ordering::Relaxed);
            for acc in st.accounts.values_mut() {
                if acc.unwritten > 0 {
                    acc.entries.values_mut().for_each(|k| k.written = true);
                    acc.unwritten = 0;
                }
            }
        }
        if self.flushes.load(Ordering::Acquire) % 2 == 1 {
            self.flushes.fetch_add(1, Ordering::AcqRel);
        }
        drop(st);
    }

    /// Forgets everything: the engine went back to its last durable commit, and the log is
    /// about to be applied again from there (it makes the unwritten entries again).
    pub(crate) fn clear(&self) {
        let mut st = self.state();
        st.accounts.clear();
        st.kept = 0;
    }

    /// Whether entries of `account` are kept (as of the last commit).
    fn knows(&self, account: &str) -> bool {
        self.state().accounts.contains_key(account)
    }

    /// Entries kept, over all accounts.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.state().kept
    }
}

impl State {
    /// Forgets the oldest entry of the account that holds the most; false when none can go.
    /// Only written entries go (the engine has them): an account whose oldest entry is
    /// unwritten keeps all of its entries until a durable commit writes them.
    fn evict_one(&mut self) -> bool {
        let Some(acc) = self
            .accounts
            .values_mut()
            .filter(|a| a.entries.first_key_value().is_some_and(|(_, k)| k.written))
            .max_by_key(|a| a.entries.len())
        else {
            return false;
        };
        let Some((seq, k)) = acc.entries.pop_first() else {
            return false;
        };
        // Nothing between the old `from` and `seq` is in the engine (it would be here), so
        // everything from `seq + 1` on still is.
        acc.from = seq + 1;
        self.kept -= 1;
        self.graveyard.push(k);
        true
    }
}

/// The sequences whose entry key (`prefix` then the sequence, big-endian) lies in
/// `[start, end)`, or `None` when none does. A bound that starts with `prefix` compares with
/// such a key as its 8-byte rest does, zero-padded when shorter (a longer rest is past the
/// sequence its first 8 bytes name); one that does not is before or after all of them.
fn seq_range(prefix: &[u8], start: &[u8], end: &[u8]) -> Option<(Bound<u64>, Bound<u64>)> {
    fn rest(r: &[u8]) -> (u64, bool) {
        let mut a = [0u8; 8];
        let n = r.len().min(8);
        a[..n].copy_from_slice(&r[..n]);
        (u64::from_be_bytes(a), r.len() > 8)
    }
    // The first sequence in range, and the first past it (2^64: none).
    let lo: u64 = if start <= prefix {
        0
    } else {
        let (v, longer) = rest(start.strip_prefix(prefix)?);
        if longer { v.checked_add(1)? } else { v }
    };
    let hi: u128 = if end <= prefix {
        return None;
    } else if let Some(r) = end.strip_prefix(prefix) {
        let (v, longer) = rest(r);
        u128::from(v) + u128::from(longer)
    } else {
        1 << 64
    };
    (u128::from(lo) < hi).then(|| {
        let hi = u64::try_from(hi).map_or(Bound::Unbounded, Bound::Excluded);
        (Bound::Included(lo), hi)
    })
}

/// The writer's outermost layer: puts and removals of receipt outbox entries are noted for
/// the memo; with `hold`, new entries wait in the memo for a durable commit instead of
/// going to `inner` (module docs). Every other call goes on to `inner`.
pub(crate) struct OutboxMemoKv<'a> {
    inner: &'a mut dyn Kv,
    memo: &'a OutboxMemo,
    pending: Pending,
    /// Accounts this transaction has put an entry of: whether their first put found the
    /// engine without older entries is decided once, with one look at the memo.
    seen: Vec<String>,
    /// New entries are held in memory (the redo log makes them again after a crash).
    hold: bool,
    /// Held entries this transaction changed: `true` held by it, `false` removed by it.
    held: BTreeMap<Vec<u8>, bool>,
}

impl<'a> OutboxMemoKv<'a> {
    pub(crate) fn new(inner: &'a mut dyn Kv, memo: &'a OutboxMemo, hold: bool) -> Self {
        Self {
            inner,
            memo,
            pending: Pending::new(),
            seen: Vec::new(),
            hold,
            held: BTreeMap::new(),
        }
    }

    /// The held (unwritten) entry at `key` as this transaction sees it: `Some(Some(body))`
    /// held, `Some(None)` removed by this transaction, `None` not held (the engine's).
    fn held_entry(&self, key: &[u8]) -> Result<Option<Option<Vec<u8>>>, StoreError> {
        let Some((account, seq)) = keys::Outbox::Receipts
            .parse_entry(key)
            .filter(|_| self.hold)
        else {
            return Ok(None);
        };
        Ok(match self.held.get(key) {
            Some(false) => Some(None),
            Some(true) => Some(self.put_by_this(account, seq)?),
            None => self.memo.unwritten_body(account, seq)?.map(Some),
        })
    }

    /// The body this transaction last put at entry `seq` of `account`.
    fn put_by_this(&self, account: &str, seq: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let put = self
            .pending
            .iter()
            .rev()
            .filter(|(a, _)| a == account)
            .flat_map(|(_, changes)| changes.iter().rev())
            .find_map(|c| match c {
                Change::Put {
                    seq: s,
                    body,
                    event,
                    ..
                } if *s == seq => Some((body, event)),
                _ => None,
            });
        match put {
            Some((Some(body), _)) => Ok(Some(body.clone())),
            Some((None, Some(event))) => super::backend::receipt_entry_body(event).map(Some),
            _ => Ok(None),
        }
    }

    /// Keys of the held entries in `[start, end)` as this transaction sees them, in key
    /// order: at most `limit`.
    fn held_keys_between(&self, start: &[u8], end: &[u8], limit: usize) -> Vec<Vec<u8>> {
        if start >= end {
            return Vec::new();
        }
        let removed = self.held.values().filter(|h| !**h).count();
        let mut found: BTreeSet<Vec<u8>> = self
            .memo
            .unwritten_between(start, end, limit.saturating_add(removed))
            .into_iter()
            .filter(|k| !self.held.contains_key(k))
            .collect();
        found.extend(
            self.held
                .range::<[u8], _>((Bound::Included(start), Bound::Excluded(end)))
                .filter(|(_, h)| **h)
                .map(|(k, _)| k.clone()),
        );
        found.into_iter().take(limit).collect()
    }

    /// Held entries in `[start, end)` as this transaction sees them, in key order: at most
    /// `limit`.
    fn held_between(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<KvEntry>, StoreError> {
        let mut found = Vec::new();
        for k in self.held_keys_between(start, end, limit) {
            if let Some(Some(body)) = self.held_entry(&k)? {
                found.push((k, body));
            }
        }
        Ok(found)
    }

    /// Whether `[start, end)` may hold entries this layer holds.
    fn touches_held(&self, start: &[u8], end: &[u8]) -> bool {
        self.hold && tags_between(start, end).any(|t| t == keys::OUTBOX)
    }

    /// Removes `key` if this layer holds it: `Some` of what it held then (`None` inside when
    /// this transaction removed it already), `None` when the key is the engine's business.
    fn take_held(&mut self, key: &[u8]) -> Result<Option<Option<Vec<u8>>>, StoreError> {
        let held = self.held_entry(key)?;
        if let Some(Some(_)) = held {
            self.unhold(key);
        }
        Ok(held)
    }

    /// The engine's part of a take from `[start, end)`: its first `limit` entries, appended
    /// to `out` and noted gone. Answers the keys of the held entries that fit in what is left
    /// of `limit` (an account's held entries are newer than every entry of it the engine
    /// has), still held: [`take_range`](Kv::take_range) and
    /// [`remove_range`](Kv::remove_range) remove them, with or without their bodies.
    fn take_from_engine(
        &mut self,
        start: &[u8],
        end: &[u8],
        limit: usize,
        out: &mut Vec<KvEntry>,
    ) -> Result<Vec<Vec<u8>>, StoreError> {
        let from = out.len();
        for (k, _) in taken_by(&mut *self.inner, (start, end), limit, out)? {
            self.gone(k);
        }
        let room = limit.saturating_sub(out.len() - from);
        Ok(if self.touches_held(start, end) && room > 0 {
            self.held_keys_between(start, end, room)
        } else {
            Vec::new()
        })
    }

    /// Removes the held entry at `key` (from memory only: the engine never had it).
    fn unhold(&mut self, key: &[u8]) {
        self.held.insert(key.to_vec(), false);
        self.gone(key);
    }

    /// This transaction's changes, for [`OutboxMemo::apply`] once it committed.
    pub(crate) fn into_pending(self) -> Pending {
        self.pending
    }

    /// The changes of `account` this transaction made last, if its last change was to it.
    fn changes_of(&mut self, account: &str) -> &mut Vec<Change> {
        if self.pending.last().is_none_or(|(a, _)| a != account) {
            self.pending.push((account.to_owned(), Vec::new()));
        }
        let (_, changes) = self.pending.last_mut().expect("pushed above");
        changes
    }

    fn put_noted(
        &mut self,
        key: &[u8],
        body: Option<Vec<u8>>,
        event: Option<Arc<ReceiptEvent>>,
        written: bool,
    ) -> Result<(), StoreError> {
        let Some((account, seq)) = keys::Outbox::Receipts.parse_entry(key) else {
            return Ok(());
        };
        // Only an account's first put in this transaction can be its first in the memo, and
        // only when the memo does not know it yet: then the engine says whether older
        // entries exist.
        let first = !self.seen.iter().any(|a| a == account) && {
            self.seen.push(account.to_owned());
            !self.memo.knows(account) && {
                let mut older = Vec::new();
                self.inner.scan(
                    &keys::Outbox::Receipts.prefix(account),
                    &keys::outbox(account, seq),
                    1,
                    &mut older,
                )?;
                older.is_empty()
            }
        };
        self.changes_of(account).push(Change::Put {
            seq,
            body,
            event,
            first,
            written,
        });
        Ok(())
    }

    fn gone(&mut self, key: &[u8]) {
        if let Some((account, seq)) = keys::Outbox::Receipts.parse_entry(key) {
            self.changes_of(account).push(Change::Gone { seq });
        }
    }
}

impl KvRead for OutboxMemoKv<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.held_entry(key)? {
            Some(held) => Ok(held),
            None => self.inner.get(key),
        }
    }

    /// The engine's first `limit` keys merged with the held entries': every key among the
    /// first `limit` of the union is one of those.
    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
        out: &mut Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<(), StoreError> {
        let held = if self.touches_held(start, end) {
            Some(self.held_between(start, end, limit)?)
        } else {
            None
        };
        scan_merged(&*self.inner, (start, end), limit, held, out)
    }

    fn last_key(&self, start: &[u8], end: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let last = self
            .touches_held(start, end)
            .then(|| self.held_keys_between(start, end, usize::MAX).pop())
            .flatten();
        last_key_merged(&*self.inner, (start, end), last)
    }
}

/// Plain puts and replaces of receipt entries go to the engine (only a new entry, from
/// `put_receipt_entry`, is held back); removals of a held entry stay in memory.
impl Kv for OutboxMemoKv<'_> {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.inner.put(key, value)?;
        if key.first() == Some(&keys::OUTBOX) {
            self.put_noted(key, Some(value.to_vec()), None, true)?;
        }
        Ok(())
    }

    fn put_owned(&mut self, key: &[u8], value: Vec<u8>) -> Result<(), StoreError> {
        if key.first() == Some(&keys::OUTBOX) {
            return self.put(key, &value);
        }
        self.inner.put_owned(key, value)
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), StoreError> {
        if self.take_held(key)?.is_none() {
            self.inner.delete(key)?;
            self.gone(key);
        }
        Ok(())
    }

    fn replace(&mut self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let old = self.inner.replace(key, value)?;
        if key.first() == Some(&keys::OUTBOX) {
            self.put_noted(key, Some(value.to_vec()), None, true)?;
        }
        Ok(old)
    }

    fn take(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(held) = self.take_held(key)? {
            return Ok(held);
        }
        let old = self.inner.take(key)?;
        self.gone(key);
        Ok(old)
    }

    /// With held entries in the range: the engine's first (an account's held entries are
    /// newer than every entry of it the engine has), then the held ones, up to `limit` in
    /// all. Across accounts that is some `limit` keys of the range rather than the first
    /// ones, which callers that take until nothing is left do not mind.
    fn take_range(
        &mut self,
        start: &[u8],
        end: &[u8],
        limit: usize,
        out: &mut Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<(), StoreError> {
        for k in self.take_from_engine(start, end, limit, out)? {
            if let Some(Some(body)) = self.take_held(&k)? {
                out.push((k, body));
            }
        }
        Ok(())
    }

    /// [`take_range`](Kv::take_range) without the bodies: a held entry leaves memory
    /// without being encoded.
    fn remove_range(
        &mut self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<usize, StoreError> {
        let mut out = Vec::new();
        let held = self.take_from_engine(start, end, limit, &mut out)?;
        for k in &held {
            self.unhold(k);
        }
        Ok(out.len() + held.len())
    }

    pass_retire_through!(inner);

    /// A held-back entry is not encoded: the pumps read its event, and a durable commit
    /// encodes it if it is still there.
    fn put_receipt_entry(
        &mut self,
        key: &[u8],
        event: Arc<ReceiptEvent>,
    ) -> Result<(), StoreError> {
        let held = self.hold
            && keys::Outbox::Receipts
                .parse_entry(key)
                .is_some_and(|(account, seq)| self.memo.holds(account, seq));
        let body = if held {
            self.held.insert(key.to_vec(), true);
            None
        } else {
            let body = super::backend::receipt_entry_body(&event)?;
            self.inner.put(key, &body)?;
            Some(body)
        };
        self.put_noted(key, body, Some(event), !held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MessageId;
    use crate::store::backend::MapKv;

    fn put(account: &str, seq: u64) -> (String, Vec<Change>) {
        let body = format!("{account}{seq}").into_bytes();
        let put = Change::Put {
            seq,
            body: Some(body),
            event: None,
            first: false,
            written: true,
        };
        (account.into(), vec![put])
    }

    fn gone(account: &str, seq: u64) -> (String, Vec<Change>) {
        (account.into(), vec![Change::Gone { seq }])
    }

    fn seqs(r: Option<Vec<OutboxEntry>>) -> Option<Vec<u64>> {
        r.map(|v| v.into_iter().map(|e| e.seq).collect())
    }

    #[test]
    fn reads_start_at_the_first_entry_seen_and_follow_removals() {
        let memo = OutboxMemo::default();
        assert_eq!(
            memo.read("a", 0, 10, 0),
            None,
            "unknown account: the engine answers"
        );
        memo.apply(vec![put("a", 5), put("a", 6), put("a", 7)], 0);
        assert_eq!(seqs(memo.read("a", 4, 10, 0)), Some(vec![5, 6, 7]));
        assert_eq!(seqs(memo.read("a", 5, 1, 0)), Some(vec![6]));
        assert_eq!(seqs(memo.read("a", 7, 10, 0)), Some(vec![]));
        // Entries 1..=4 may be in the engine: a read from before 5 is not answered here.
        assert_eq!(memo.read("a", 0, 10, 0), None);
        assert_eq!(memo.read("a", 3, 10, 0), None);
        memo.apply(vec![gone("a", 6), gone("b", 1)], 0);
        assert_eq!(seqs(memo.read("a", 4, 10, 0)), Some(vec![5, 7]));
        assert_eq!(memo.len(), 2);
        // An entry below `from` (the engine has it) is not kept.
        memo.apply(vec![put("a", 2)], 0);
        assert_eq!(memo.len(), 2);
        assert_eq!(memo.read("a", 1, 10, 0), None);
    }

    #[test]
    fn a_reopened_engine_empties_it() {
        let memo = OutboxMemo::default();
        memo.apply(vec![put("a", 1)], 0);
        assert_eq!(
            memo.read("a", 0, 10, 1),
            None,
            "read against a reopened engine"
        );
        memo.apply(vec![put("a", 9)], 1);
        assert_eq!(memo.len(), 1);
        assert_eq!(seqs(memo.read("a", 8, 10, 1)), Some(vec![9]));
        assert_eq!(memo.read("a", 0, 10, 1), None);
    }

    #[test]
    fn past_the_cap_the_fullest_account_forgets_its_oldest() {
        let memo = OutboxMemo::with_cap(4);
        memo.apply(vec![put("slow", 1), put("slow", 2), put("slow", 3)], 0);
        memo.apply(vec![put("fast", 1), put("fast", 2)], 0);
        assert_eq!(memo.len(), 4);
        // "slow" held the most: its entry 1 went, so a read from its start is the engine's.
        assert_eq!(memo.read("slow", 0, 10, 0), None);
        assert_eq!(seqs(memo.read("slow", 1, 10, 0)), Some(vec![2, 3]));
        assert_eq!(seqs(memo.read("fast", 0, 10, 0)), Some(vec![1, 2]));
    }

    fn event(id: u64) -> Arc<ReceiptEvent> {
        Arc::new(ReceiptEvent {
            id: MessageId(id),
            client_ref: None,
            to: "+8613800138000".into(),
            state: crate::store::model::MessageState::Delivered,
            stat: "DELIVRD".into(),
            err: "000".into(),
            parts: 1,
            submitted_at: None,
            done_at: "2026-12-06T00:00:00Z".into(),
            callback_url: None,
            tags: BTreeMap::new(),
            kind: crate::store::model::MessageKind::default(),
            lane: crate::store::model::Lane::default(),
            original: None,
        })
    }

    #[test]
    fn the_layer_notes_receipt_entries_and_passes_everything_on() {
        let memo = OutboxMemo::default();
        let mut engine = MapKv::default();
        let mut kv = OutboxMemoKv::new(&mut engine, &memo, false);
        let ev = event(1);
        let stored = crate::store::backend::receipt_entry_body(&ev).unwrap();
        kv.put_receipt_entry(&keys::outbox("a", 1), Arc::clone(&ev))
            .unwrap();
        kv.put(&keys::outbox("a", 2), b"{2}").unwrap();
        kv.put(&keys::Outbox::Mo.entry("a", 1), b"mo").unwrap();
        kv.put(&keys::outbox_seq("a"), &3u64.to_be_bytes()).unwrap();
        assert_eq!(
            kv.take(&keys::outbox("a", 1)).unwrap(),
            Some(stored.clone())
        );
        kv.delete(&keys::Outbox::Mo.entry("a", 1)).unwrap();
        let pending = kv.into_pending();
        assert_eq!(engine.map.len(), 2, "the second entry and the sequence");
        memo.apply(pending, 0);
        // The engine held nothing older of "a": the memo answers from the start.
        let got = memo.read("a", 0, 10, 0).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].seq, got[0].body.as_slice()), (2, &b"{2}"[..]));
        assert_eq!(got[0].event, None, "a plain put has no event");

        let mut kv = OutboxMemoKv::new(&mut engine, &memo, false);
        kv.put_receipt_entry(&keys::outbox("a", 3), Arc::clone(&ev))
            .unwrap();
        memo.apply(kv.into_pending(), 0);
        let got = memo.read("a", 2, 10, 0).unwrap();
        assert_eq!(got[0].event.as_deref(), Some(&*ev));
        assert_eq!(got[0].body, stored, "written entries come with their bytes");
        assert_eq!(engine.map.get(&keys::outbox("a", 3)[..]), Some(&stored));
    }

    #[test]
    fn an_account_with_older_entries_in_the_engine_is_kept_from_its_first_new_one() {
        let memo = OutboxMemo::default();
        let mut engine = MapKv::default();
        engine
            .map
            .insert(keys::outbox("c", 1).to_vec(), b"{1}".to_vec());
        let mut kv = OutboxMemoKv::new(&mut engine, &memo, false);
        kv.put_receipt_entry(&keys::outbox("c", 2), event(2))
            .unwrap();
        kv.put_receipt_entry(&keys::outbox("c", 3), event(3))
            .unwrap();
        memo.apply(kv.into_pending(), 0);
        assert_eq!(memo.read("c", 0, 10, 0), None, "entry 1 is the engine's");
        assert_eq!(seqs(memo.read("c", 1, 10, 0)), Some(vec![2, 3]));
    }

    /// A model of the engine's entries against the memo: every read the memo answers is
    /// what the engine holds, whatever the order of appends, removals and evictions (a
    /// small cap forces them), and reads at or past an account's newest entries are answered.
    mod model {
        use std::collections::{BTreeMap, BTreeSet};

        use proptest::prelude::*;

        use super::*;

        #[derive(Debug, Clone)]
        enum Step {
            /// Append `n` entries to account `a`.
            Append(u8, u8),
            /// Remove the `k`-th remaining entry of account `a` (mod its count).
            Remove(u8, u8),
        }

        fn step() -> impl Strategy<Value = Step> {
            prop_oneof![
                (0u8..3, 1u8..4).prop_map(|(a, n)| Step::Append(a, n)),
                (0u8..3, any::<u8>()).prop_map(|(a, k)| Step::Remove(a, k)),
            ]
        }

        proptest! {
            #[test]
            fn reads_answered_from_memory_are_the_engines(
                older in proptest::collection::vec(0u8..3, 0..4),
                steps in proptest::collection::vec(step(), 1..40),
                cap in 1usize..8,
            ) {
                let memo = OutboxMemo::with_cap(cap);
                // Entries the engine held before this process started.
                let mut engine: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
                let mut next: BTreeMap<String, u64> = BTreeMap::new();
                let mut appended: BTreeSet<String> = BTreeSet::new();
                for a in older {
                    let acc = format!("a{a}");
                    let n = next.entry(acc.clone()).or_insert(1);
                    engine.entry(acc).or_default().insert(*n);
                    *n += 1;
                }
                for st in steps {
                    let mut changes = Vec::new();
                    let acc = match st {
                        Step::Append(a, n) => {
                            let acc = format!("a{a}");
                            appended.insert(acc.clone());
                            for _ in 0..n {
                                let seq = next.entry(acc.clone()).or_insert(1);
                                let held = engine.entry(acc.clone()).or_default();
                                // What the layer's scan would find: an older entry or not.
                                let first = held.range(..*seq).next().is_none();
                                held.insert(*seq);
                                changes.push(Change::Put {
                                    seq: *seq,
                                    body: Some(seq.to_be_bytes().to_vec()),
                                    event: None,
                                    first,
                                    written: true,
                                });
                                *seq += 1;
                            }
                            acc
                        }
                        Step::Remove(a, k) => {
                            let acc = format!("a{a}");
                            let held = engine.entry(acc.clone()).or_default();
                            if !held.is_empty() {
                                let seq = *held.iter().nth(usize::from(k) % held.len()).unwrap();
                                held.remove(&seq);
                                changes.push(Change::Gone { seq });
                            }
                            acc
                        }
                    };
                    memo.apply(vec![(acc, changes)], 0);
                    for (acc, held) in &engine {
                        let last = next.get(acc).copied().unwrap_or(1) - 1;
                        if appended.contains(acc) {
                            prop_assert!(memo.read(acc, last, 1, 0).is_some(), "{} is followed", acc);
                        }
                        for after in 0..=last + 1 {
                            if let Some(got) = memo.read(acc, after, usize::MAX, 0) {
                                let got: Vec<u64> = got.iter().map(|e| e.seq).collect();
                                let want: Vec<u64> = held.range(after + 1..).copied().collect();
                                prop_assert_eq!(got, want, "{} after {}", acc, after);
                            }
                        }
                    }
                    prop_assert!(memo.len() <= cap);
                }
            }
        }
    }

    #[test]
    fn held_entries_reach_the_engine_only_if_a_durable_commit_finds_them() {
        let memo = OutboxMemo::default();
        let mut engine = MapKv::default();
        let mut kv = OutboxMemoKv::new(&mut engine, &memo, true);
        for seq in 1..=3 {
            kv.put_receipt_entry(&keys::outbox("a", seq), event(4))
                .unwrap();
        }
        memo.apply(kv.into_pending(), 0);
        assert!(engine.map.is_empty(), "held in memory");
        let mut kv = OutboxMemoKv::new(&mut engine, &memo, true);
        let mut out = Vec::new();
        kv.take_range(&keys::outbox("a", 1), &keys::outbox("a", 3), 10, &mut out)
            .unwrap();
        assert_eq!(out.len(), 2, "entries 1 and 2, delivered");
        memo.apply(kv.into_pending(), 0);
        assert!(
            engine.map.is_empty(),
            "put and removed without an engine write"
        );
        assert_eq!(memo.unwritten("a", 0).0, 1);
        memo.flush_into(&mut engine).unwrap();
        memo.flushed(true);
        assert_eq!(
            engine.map.keys().collect::<Vec<_>>(),
            [&keys::outbox("a", 3).to_vec()]
        );
        assert_eq!(memo.unwritten("a", 0).0, 0);
        assert_eq!(memo.held_counts(), (3, 1), "three held, one written");
    }

    /// New entries held back (redo log on): through transactions that commit or fail,
    /// durable commits and engine reopens, the layer reads as the outbox it was told to
    /// keep, the store's two-part read and depth agree with it, and a durable commit leaves
    /// the engine holding exactly it.
    mod held {
        use std::collections::BTreeMap;

        use proptest::prelude::*;

        use super::*;

        #[derive(Debug, Clone)]
        enum Step {
            Append(u8, u8),
            Take(u8, u64),
            TakeRange(u8, u64, u64, usize),
            RemoveRange(u8, u64, u64, usize),
            Commit,
            Abort,
            Durable,
            Reopen,
        }

        fn step() -> impl Strategy<Value = Step> {
            prop_oneof![
                4 => (0u8..2, 1u8..4).prop_map(|(a, n)| Step::Append(a, n)),
                3 => (0u8..2, 1u64..14).prop_map(|(a, s)| Step::Take(a, s)),
                2 => (0u8..2, 0u64..14, 0u64..16, 1usize..4)
                    .prop_map(|(a, lo, hi, l)| Step::TakeRange(a, lo.min(hi), hi.max(lo), l)),
                2 => (0u8..2, 0u64..14, 0u64..16, 1usize..4)
                    .prop_map(|(a, lo, hi, l)| Step::RemoveRange(a, lo.min(hi), hi.max(lo), l)),
                3 => Just(Step::Commit),
                1 => Just(Step::Abort),
                2 => Just(Step::Durable),
                1 => Just(Step::Reopen),
            ]
        }

        type Outbox = BTreeMap<Vec<u8>, Vec<u8>>;

        fn account(a: u8) -> String {
            format!("acc{a}")
        }

        /// What `Store::outbox` answers: the memo, or the engine below the memo's `from`
        /// and the memo from there.
        fn store_read(
            memo: &OutboxMemo,
            engine: &MapKv,
            a: &str,
            after: u64,
            limit: usize,
            reopens: u64,
        ) -> Vec<u64> {
            if let Some(e) = memo.read(a, after, limit, reopens) {
                return e.into_iter().map(|e| e.seq).collect();
            }
            let tail = memo.tail(a, limit, reopens);
            let engine = crate::store::reads::outbox(engine, a, after, limit).unwrap();
            OutboxMemo::merge_tail(engine, tail, after, limit)
                .into_iter()
                .map(|e| e.seq)
                .collect()
        }

        fn seqs_of(outbox: &Outbox, a: &str) -> Vec<u64> {
            outbox
                .keys()
                .filter_map(|k| keys::Outbox::Receipts.parse_entry(k))
                .filter(|(acc, _)| *acc == a)
                .map(|(_, s)| s)
                .collect()
        }

        proptest! {
            #[test]
            fn the_outbox_reads_as_kept_and_durable_commits_write_it_all(
                steps in proptest::collection::vec(step(), 1..70),
            ) {
                let memo = OutboxMemo::with_cap(3);
                let mut engine = MapKv::default();
                let mut reopens = 0;
                // The outbox as the writer left it: committed, and within the open
                // transaction; the engine and the outbox at the last durable commit.
                let mut committed = Outbox::new();
                let mut now = Outbox::new();
                let mut at_begin = engine.map.clone();
                let mut durable = (engine.map.clone(), Outbox::new(), [1u64; 2]);
                let mut next = [1u64; 2];
                let mut next_at_begin = next;
                let mut pending = Pending::new();
                let mut held = BTreeMap::new();
                for st in steps {
                    let mut layer = OutboxMemoKv::new(&mut engine, &memo, true);
                    layer.pending = std::mem::take(&mut pending);
                    layer.held = std::mem::take(&mut held);
                    match &st {
                        Step::Append(a, n) => {
                            for _ in 0..*n {
                                let (acc, seq) = (account(*a), next[usize::from(*a)]);
                                next[usize::from(*a)] += 1;
                                let key = keys::outbox(&acc, seq).to_vec();
                                let ev = event(u64::from(*a) << 32 | seq);
                                let body = crate::store::backend::receipt_entry_body(&ev).unwrap();
                                layer.put_receipt_entry(&key, ev).unwrap();
                                now.insert(key, body);
                            }
                        }
                        Step::Take(a, seq) => {
                            let key = keys::outbox(&account(*a), *seq).to_vec();
                            prop_assert_eq!(layer.take(&key).unwrap(), now.remove(&key));
                        }
                        Step::TakeRange(a, lo, hi, limit) | Step::RemoveRange(a, lo, hi, limit) => {
                            let (start, end) = (keys::outbox(&account(*a), *lo).to_vec(), keys::outbox(&account(*a), *hi).to_vec());
                            let want: Vec<(Vec<u8>, Vec<u8>)> = now
                                .range(start.clone()..)
                                .take_while(|(k, _)| start < end && **k < end)
                                .take(*limit)
                                .map(|(k, v)| (k.clone(), v.clone()))
                                .collect();
                            if matches!(st, Step::TakeRange(..)) {
                                let mut out = Vec::new();
                                layer.take_range(&start, &end, *limit, &mut out).unwrap();
                                prop_assert_eq!(&out, &want);
                            } else {
                                let n = layer.remove_range(&start, &end, *limit).unwrap();
                                prop_assert_eq!(n, want.len());
                            }
                            for (k, _) in &want {
                                now.remove(k);
                            }
                        }
                        _ => {}
                    }
                    let OutboxMemoKv { pending: p, held: h, .. } = layer;
                    let ended = match st {
                        Step::Commit => {
                            memo.apply(p, reopens);
                            committed = now.clone();
                            at_begin = engine.map.clone();
                            next_at_begin = next;
                            true
                        }
                        Step::Abort => {
                            engine.map = at_begin.clone();
                            now = committed.clone();
                            next = next_at_begin;
                            true
                        }
                        Step::Durable => {
                            memo.apply(p, reopens);
                            memo.flush_into(&mut engine).unwrap();
                            memo.flushed(true);
                            committed = now.clone();
                            let entries: Outbox = engine
                                .map
                                .iter()
                                .filter(|(k, _)| k.first() == Some(&keys::OUTBOX))
                                .map(|(k, v)| (k.clone(), v.clone()))
                                .collect();
                            prop_assert_eq!(&entries, &committed, "a durable commit holds it all");
                            at_begin = engine.map.clone();
                            next_at_begin = next;
                            durable = (engine.map.clone(), committed.clone(), next);
                            true
                        }
                        Step::Reopen => {
                            engine.map = durable.0.clone();
                            at_begin = engine.map.clone();
                            committed = durable.1.clone();
                            now = committed.clone();
                            next = durable.2;
                            next_at_begin = next;
                            memo.clear();
                            reopens += 1;
                            true
                        }
                        _ => {
                            pending = p;
                            held = h;
                            false
                        }
                    };
                    if ended {
                        // The store's reads of the committed outbox.
                        for a in 0..2u8 {
                            let acc = account(a);
                            let want = seqs_of(&committed, &acc);
                            for after in 0..16 {
                                for limit in [1, 3, 100] {
                                    let got = store_read(&memo, &engine, &acc, after, limit, reopens);
                                    let w: Vec<u64> = want.iter().copied().filter(|s| *s > after).take(limit).collect();
                                    prop_assert_eq!(got, w, "{} after {} limit {}", &acc, after, limit);
                                }
                            }
                            let (n, _) = crate::store::reads::outbox_depth(&engine, keys::Outbox::Receipts, &acc).unwrap();
                            let (held_n, _) = memo.unwritten(&acc, reopens);
                            prop_assert_eq!(n + held_n, want.len() as u64, "depth of {}", &acc);
                        }
                    }
                    // The layer reads as the outbox, key by key and by scan.
                    let layer = {
                        let mut l = OutboxMemoKv::new(&mut engine, &memo, true);
                        l.pending = std::mem::take(&mut pending);
                        l.held = std::mem::take(&mut held);
                        l
                    };
                    for a in 0..2u8 {
                        let acc = account(a);
                        for seq in 0..16 {
                            let key = keys::outbox(&acc, seq).to_vec();
                            prop_assert_eq!(layer.get(&key).unwrap(), now.get(&key).cloned());
                        }
                        let prefix = keys::Outbox::Receipts.prefix(&acc).to_vec();
                        let mut out = Vec::new();
                        layer.scan(&prefix, &keys::prefix_end(&prefix), 100, &mut out).unwrap();
                        let want: Vec<(Vec<u8>, Vec<u8>)> = now
                            .iter()
                            .filter(|(k, _)| k.starts_with(&prefix))
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect();
                        prop_assert_eq!(out, want);
                    }
                    let OutboxMemoKv { pending: p, held: h, .. } = layer;
                    pending = p;
                    held = h;
                }
            }

            #[test]
            fn seq_range_matches_key_order(
                seq in any::<u64>(),
                start in proptest::collection::vec(any::<u8>(), 0..14),
                end in proptest::collection::vec(any::<u8>(), 0..14),
                start_in in any::<bool>(),
                end_in in any::<bool>(),
            ) {
                let prefix = keys::Outbox::Receipts.prefix("a").to_vec();
                let with = |inside: bool, rest: Vec<u8>| if inside { [prefix.clone(), rest].concat() } else { rest };
                let (start, end) = (with(start_in, start), with(end_in, end));
                let key = keys::outbox("a", seq).to_vec();
                let inside = start <= key && key < end;
                let by_range = seq_range(&prefix, &start, &end)
                    .is_some_and(|r| std::ops::RangeBounds::contains(&r, &seq));
                prop_assert_eq!(by_range, inside);
            }
        }
    }

    mod store {
        use super::super::super::{
            Lane, Message, MessageId, Op, OutboxEntry, PartState, Payload, ReceiptEvent,
            RedbBackend, Store, WriterConfig,
        };

        const CH: &str = "smsc1";
        const ACC: &str = "acme";

        fn open(dir: &std::path::Path) -> Store<RedbBackend> {
            Store::open(RedbBackend::open(dir).unwrap(), WriterConfig::default(), 0).unwrap()
        }

        /// Inserts, leases and delivers `n` messages of `ACC`: `n` receipt entries.
        fn deliver(store: &Store<RedbBackend>, n: usize, tag: &str) {
            let ids: Vec<MessageId> = (0..n).map(|_| store.ids().next(0)).collect();
            let payload = Payload::Text {
                text: "x".into(),
                encoding: Default::default(),
            };
            let msgs = ids
                .iter()
                .map(|&id| Message::new(id, ACC, "+861", payload.clone(), CH, 0, 0))
                .collect();
            futures::executor::block_on(store.insert_batch(msgs)).unwrap();
            let leased =
                futures::executor::block_on(store.lease(CH, Lane::Notification, 0, n, 1000))
                    .unwrap()
                    .messages;
            assert_eq!(leased.len(), n);
            for (i, m) in leased.iter().enumerate() {
                let cid = format!("{tag}{i}");
                store
                    .submit_blocking(vec![
                        Op::Submitted {
                            id: m.id,
                            part: 1,
                            parts: 1,
                            center_id: cid.as_str().into(),
                            now_ms: 5,
                        },
                        Op::Receipt {
                            channel: CH.into(),
                            center_id: cid.into(),
                            part_state: PartState::Delivered,
                            stat: "DELIVRD".into(),
                            err: "000".into(),
                            now_ms: 6,
                        },
                    ])
                    .unwrap();
            }
        }

        fn without_events(v: &[OutboxEntry]) -> Vec<(u64, Vec<u8>)> {
            v.iter().map(|e| (e.seq, e.body.clone())).collect()
        }

        /// Every read answers what the engine alone answers, and every event handed over
        /// is its body decoded. Returns the seqs that came with their event.
        fn agrees(store: &Store<RedbBackend>) -> Vec<u64> {
            let all = store.outbox_in_engine(ACC, 0, usize::MAX).unwrap();
            let last = all.last().map_or(0, |e| e.seq);
            let mut with_event = Vec::new();
            for after in 0..=last + 1 {
                for limit in [1, 2, 100] {
                    let got = store.outbox(ACC, after, limit).unwrap();
                    let want = store.outbox_in_engine(ACC, after, limit).unwrap();
                    assert_eq!(without_events(&got), without_events(&want), "after {after}");
                    for e in got {
                        if let Some(ev) = e.event {
                            let decoded: ReceiptEvent = serde_json::from_slice(&e.body).unwrap();
                            assert_eq!(*ev, decoded);
                            if after == 0 && limit == 100 {
                                with_event.push(e.seq);
                            }
                        }
                    }
                }
            }
            with_event
        }

        #[test]
        fn reads_from_memory_agree_with_the_engine_through_deletes_acks_and_a_restart() {
            let dir = tempfile::tempdir().unwrap();
            let store = open(dir.path());
            deliver(&store, 5, "A");
            assert_eq!(
                agrees(&store),
                [1, 2, 3, 4, 5],
                "a new store's entries are all in memory"
            );
            store
                .submit_blocking(vec![Op::OutboxDelete {
                    account: ACC.into(),
                    seq: 2,
                }])
                .unwrap();
            assert_eq!(agrees(&store), [1, 3, 4, 5]);
            assert_eq!(
                futures::executor::block_on(store.outbox_ack(ACC, 3)).unwrap(),
                2
            );
            deliver(&store, 3, "B");
            assert_eq!(agrees(&store), [4, 5, 6, 7, 8]);
            drop(store);

            let store = open(dir.path());
            assert_eq!(
                agrees(&store),
                [0u64; 0],
                "after a restart the engine answers"
            );
            deliver(&store, 2, "C");
            // Entries 4..=8 are older than this process: a read from the start takes them
            // from the engine and the rest from memory, a read past them is memory's.
            assert_eq!(agrees(&store), [9, 10]);
            let (memory, engine) = store.stats().outbox_reads();
            let newest = store.outbox(ACC, 8, 10).unwrap();
            assert_eq!(newest.iter().map(|e| e.seq).collect::<Vec<_>>(), [9, 10]);
            assert!(newest.iter().all(|e| e.event.is_some()));
            store.outbox(ACC, 0, 10).unwrap();
            assert_eq!(
                store.stats().outbox_reads(),
                (memory + 1, engine + 1),
                "each read counted once, where it was answered"
            );
        }
    }
}

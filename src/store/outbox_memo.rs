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
//!   the engine instead of growing this.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use super::backend::{Kv, KvRead, pass_scans_through, take_range_noting};
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
    /// Entry `seq` was put (its event when the writer had it). `first`: the engine held no
    /// entry of the account below `seq` (checked for accounts not yet known).
    Put {
        seq: u64,
        body: Vec<u8>,
        event: Option<Arc<ReceiptEvent>>,
        first: bool,
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
    body: Vec<u8>,
    event: Option<Arc<ReceiptEvent>>,
}

#[derive(Debug)]
struct Account {
    /// Every engine entry with a sequence from here on is in `entries`.
    from: u64,
    entries: BTreeMap<u64, Kept>,
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
                    })
                }
            };
            for change in changes {
                match change {
                    Change::Put {
                        seq, body, event, ..
                    } => {
                        // Below `from` the engine answers; nothing there is kept.
                        if seq >= acc.from
                            && acc.entries.insert(seq, Kept { body, event }).is_none()
                        {
                            st.kept += 1;
                        }
                    }
                    Change::Gone { seq } => {
                        if let Some(k) = acc.entries.remove(&seq) {
                            st.kept -= 1;
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
                    .map(|(&seq, k)| OutboxEntry {
                        seq,
                        body: k.body.clone(),
                        event: k.event.clone(),
                    })
                    .collect()
            });
        drop(st);
        drop(dead);
        found
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
    /// Forgets the oldest entry of the account that holds the most; false when none is kept.
    fn evict_one(&mut self) -> bool {
        let Some(acc) = self.accounts.values_mut().max_by_key(|a| a.entries.len()) else {
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

/// The writer's outermost layer: every call goes on to `inner`; puts and removals of receipt
/// outbox entries are also noted for the memo.
pub(crate) struct OutboxMemoKv<'a> {
    inner: &'a mut dyn Kv,
    memo: &'a OutboxMemo,
    pending: Pending,
    /// Accounts this transaction has put an entry of: whether their first put found the
    /// engine without older entries is decided once, with one look at the memo.
    seen: Vec<String>,
}

impl<'a> OutboxMemoKv<'a> {
    pub(crate) fn new(inner: &'a mut dyn Kv, memo: &'a OutboxMemo) -> Self {
        Self {
            inner,
            memo,
            pending: Pending::new(),
            seen: Vec::new(),
        }
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
        body: Vec<u8>,
        event: Option<Arc<ReceiptEvent>>,
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
        self.inner.get(key)
    }

    pass_scans_through!(inner);
}

impl Kv for OutboxMemoKv<'_> {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.inner.put(key, value)?;
        if key.first() == Some(&keys::OUTBOX) {
            self.put_noted(key, value.to_vec(), None)?;
        }
        Ok(())
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), StoreError> {
        self.inner.delete(key)?;
        self.gone(key);
        Ok(())
    }

    fn replace(&mut self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let old = self.inner.replace(key, value)?;
        if key.first() == Some(&keys::OUTBOX) {
            self.put_noted(key, value.to_vec(), None)?;
        }
        Ok(old)
    }

    fn take(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let old = self.inner.take(key)?;
        self.gone(key);
        Ok(old)
    }

    take_range_noting!(inner, |this, k, _| this.gone(k));

    fn put_receipt_entry(
        &mut self,
        key: &[u8],
        body: Vec<u8>,
        event: Arc<ReceiptEvent>,
    ) -> Result<(), StoreError> {
        self.inner.put(key, &body)?;
        self.put_noted(key, body, Some(event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::backend::MapKv;

    fn put(account: &str, seq: u64) -> (String, Vec<Change>) {
        let body = format!("{account}{seq}").into_bytes();
        let put = Change::Put {
            seq,
            body,
            event: None,
            first: false,
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

    fn event(id: &str) -> Arc<ReceiptEvent> {
        Arc::new(ReceiptEvent {
            id: id.into(),
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
        let mut kv = OutboxMemoKv::new(&mut engine, &memo);
        let ev = event("id1");
        kv.put_receipt_entry(&keys::outbox("a", 1), b"{1}".to_vec(), Arc::clone(&ev))
            .unwrap();
        kv.put(&keys::outbox("a", 2), b"{2}").unwrap();
        kv.put(&keys::Outbox::Mo.entry("a", 1), b"mo").unwrap();
        kv.put(&keys::outbox_seq("a"), &3u64.to_be_bytes()).unwrap();
        assert_eq!(
            kv.take(&keys::outbox("a", 1)).unwrap(),
            Some(b"{1}".to_vec())
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

        let mut kv = OutboxMemoKv::new(&mut engine, &memo);
        kv.put_receipt_entry(&keys::outbox("a", 3), b"{3}".to_vec(), Arc::clone(&ev))
            .unwrap();
        memo.apply(kv.into_pending(), 0);
        let got = memo.read("a", 2, 10, 0).unwrap();
        assert_eq!(got[0].event.as_deref(), Some(&*ev));
        assert_eq!(
            engine.map.get(&keys::outbox("a", 3)),
            Some(&b"{3}".to_vec())
        );
    }

    #[test]
    fn an_account_with_older_entries_in_the_engine_is_kept_from_its_first_new_one() {
        let memo = OutboxMemo::default();
        let mut engine = MapKv::default();
        engine.map.insert(keys::outbox("c", 1), b"{1}".to_vec());
        let mut kv = OutboxMemoKv::new(&mut engine, &memo);
        kv.put_receipt_entry(&keys::outbox("c", 2), b"{2}".to_vec(), event("x"))
            .unwrap();
        kv.put_receipt_entry(&keys::outbox("c", 3), b"{3}".to_vec(), event("y"))
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
                                    body: seq.to_be_bytes().to_vec(),
                                    event: None,
                                    first,
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
                            center_id: cid.clone(),
                            now_ms: 5,
                        },
                        Op::Receipt {
                            channel: CH.into(),
                            center_id: cid,
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
            // Entries 4..=8 are older than this process: a read from the start is the
            // engine's, a read past them is memory's.
            assert_eq!(agrees(&store), [0u64; 0]);
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

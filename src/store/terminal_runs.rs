//! The terminal index written as one engine record per commit instead of one per message.
//!
//! Every message that ends puts a terminal index entry (`keys::terminal`: done time, id) that
//! nothing reads until purge, oldest first, looks for what retention removes. One put per
//! message was one B-tree insert per message at full speed (about 4 % of the gateway's time)
//! for a key that is only ever read in bulk. Through this layer a transaction's new entries
//! wait in memory and [`TerminalRuns::flush`] writes them as one *run*: under the key of the
//! run's first entry, a value packing the others ([`pack`], [`entries`]). An entry with an
//! empty value, as every earlier version wrote them, is a run of one, so a data directory
//! from before reads the same.
//!
//! Invariants:
//! - only puts of terminal keys with an empty value wait (a run a purge puts back, with a
//!   value, goes straight through);
//! - reads see the waiting entries as runs of one: `get`, and `scan`/`last_key` over the
//!   terminal tag merge them in;
//! - `flush` must run before the transaction commits (the writer does it for every group; an
//!   aborted group drops the layer with its entries, as the engine drops the transaction).

use std::collections::BTreeSet;

use super::backend::{
    Kv, KvRead, last_key_merged, pass_retire_through, scan_merged, tags_between,
    take_range_unless_kept,
};
use super::error::StoreError;
use super::id::MessageId;
use super::keys;

/// Bytes of one packed entry: done time and message id, big-endian.
const ENTRY: usize = 16;

/// A [`Kv`] that gathers one transaction's new terminal index entries into one run.
pub(crate) struct TerminalRuns<'a> {
    inner: &'a mut dyn Kv,
    /// Entries put in this transaction and not removed again, in key order.
    waiting: BTreeSet<[u8; 17]>,
}

impl<'a> TerminalRuns<'a> {
    pub(crate) fn new(inner: &'a mut dyn Kv) -> Self {
        Self {
            inner,
            waiting: BTreeSet::new(),
        }
    }

    /// Writes the waiting entries as one run. Call once, before the commit.
    pub(crate) fn flush(self) -> Result<(), StoreError> {
        let mut waiting = self.waiting.into_iter();
        let Some(first) = waiting.next() else {
            return Ok(());
        };
        let rest: Vec<(u64, MessageId)> = waiting.filter_map(|k| parse(&k)).collect();
        // A run already under this key would be lost by a plain put; each message ends once,
        // so there is none, but a replace costs nothing more and keeps both if there were.
        if let Some(old) = self.inner.replace(&first, &pack(&rest))?
            && !old.is_empty()
        {
            let mut all: BTreeSet<(u64, MessageId)> = rest.into_iter().collect();
            all.extend(unpack(&first, &old)?.into_iter().skip(1));
            let all: Vec<_> = all.into_iter().collect();
            self.inner.put(&first, &pack(&all))?;
        }
        Ok(())
    }

    /// A key this layer keeps: a terminal index entry put with an empty value.
    fn kept(key: &[u8], value: &[u8]) -> Option<[u8; 17]> {
        (key.first() == Some(&keys::TERMINAL) && value.is_empty())
            .then(|| key.try_into().ok())
            .flatten()
    }

    fn waiting_key(&self, key: &[u8]) -> bool {
        <[u8; 17]>::try_from(key).is_ok_and(|k| self.waiting.contains(&k))
    }

    fn forget(&mut self, key: &[u8]) -> bool {
        <[u8; 17]>::try_from(key).is_ok_and(|k| self.waiting.remove(&k))
    }

    fn waiting_between(&self, start: &[u8], end: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.waiting
            .iter()
            .filter(|k| start <= k.as_slice() && k.as_slice() < end)
            .map(|k| (k.to_vec(), Vec::new()))
            .collect()
    }

    fn touches_waiting(&self, start: &[u8], end: &[u8]) -> bool {
        !self.waiting.is_empty() && covers_terminal(start, end)
    }
}

/// Whether `[start, end)` may hold a terminal index key.
fn covers_terminal(start: &[u8], end: &[u8]) -> bool {
    tags_between(start, end).any(|t| t == keys::TERMINAL)
}

/// The done time and id a terminal index key names.
fn parse(key: &[u8]) -> Option<(u64, MessageId)> {
    entry(key.get(1..)?)
}

/// The done time and id of a packed entry: a terminal index key without its tag.
fn entry(b: &[u8]) -> Option<(u64, MessageId)> {
    Some((keys::be_u64(b, 0)?, MessageId(keys::be_u64(b, 8)?)))
}

/// A run's value: the entries after its first, in ascending order, each its terminal index
/// key without the tag (16 bytes).
pub(crate) fn pack(rest: &[(u64, MessageId)]) -> Vec<u8> {
    let mut v = Vec::with_capacity(rest.len() * ENTRY);
    for &(done, id) in rest {
        v.extend_from_slice(&keys::terminal(done, id)[1..]);
    }
    v
}

/// Every entry of the run stored under `key` with `value`, its first (the key's) included,
/// in ascending order.
pub(crate) fn unpack(key: &[u8], value: &[u8]) -> Result<Vec<(u64, MessageId)>, StoreError> {
    let bad = |reason: &str| super::ops::corrupt(key, reason);
    let first = parse(key).ok_or_else(|| bad("short terminal key"))?;
    if !value.len().is_multiple_of(ENTRY) {
        return Err(bad("terminal run of partial entries"));
    }
    let mut all = vec![first];
    all.extend(value.chunks_exact(ENTRY).filter_map(entry));
    Ok(all)
}

impl KvRead for TerminalRuns<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if self.waiting_key(key) {
            return Ok(Some(Vec::new()));
        }
        self.inner.get(key)
    }

    fn scan(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
        out: &mut Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<(), StoreError> {
        let waiting = self
            .touches_waiting(start, end)
            .then(|| self.waiting_between(start, end));
        scan_merged(&*self.inner, (start, end), limit, waiting, out)
    }

    fn last_key(&self, start: &[u8], end: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let last = self
            .touches_waiting(start, end)
            .then(|| self.waiting_between(start, end).pop().map(|(k, _)| k))
            .flatten();
        last_key_merged(&*self.inner, (start, end), last)
    }
}

impl Kv for TerminalRuns<'_> {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        match Self::kept(key, value) {
            Some(k) => {
                self.waiting.insert(k);
                Ok(())
            }
            None => {
                // A value over a waiting key replaces it in the engine.
                self.forget(key);
                self.inner.put(key, value)
            }
        }
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), StoreError> {
        if self.forget(key) {
            return Ok(());
        }
        self.inner.delete(key)
    }

    fn replace(&mut self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if key.first() != Some(&keys::TERMINAL) {
            return self.inner.replace(key, value);
        }
        let old = self.get(key)?;
        self.put(key, value)?;
        Ok(old)
    }

    fn take(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if self.forget(key) {
            return Ok(Some(Vec::new()));
        }
        self.inner.take(key)
    }

    take_range_unless_kept!(inner, covers_terminal);

    pass_retire_through!(inner);
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::store::backend::MapKv;

    /// Every terminal entry `kv` holds, runs unpacked.
    fn entries_in(kv: &dyn KvRead) -> Vec<(u64, MessageId)> {
        let mut found = Vec::new();
        kv.scan(
            &[keys::TERMINAL],
            &[keys::TERMINAL + 1],
            usize::MAX,
            &mut found,
        )
        .unwrap();
        let mut all: Vec<_> = found
            .iter()
            .flat_map(|(k, v)| unpack(k, v).unwrap())
            .collect();
        all.sort();
        all
    }

    #[test]
    fn a_transactions_entries_become_one_record() {
        let mut engine = MapKv::default();
        let mut layer = TerminalRuns::new(&mut engine);
        for (done, id) in [(7, 3), (5, 9), (7, 1)] {
            layer
                .put(&keys::terminal(done, MessageId(id)), &[])
                .unwrap();
        }
        // Seen as runs of one before the flush.
        assert_eq!(entries_in(&layer).len(), 3);
        layer.flush().unwrap();
        assert_eq!(engine.map.len(), 1, "one record");
        let (k, _) = engine.map.iter().next().unwrap();
        assert_eq!(k.as_slice(), keys::terminal(5, MessageId(9)));
        assert_eq!(
            entries_in(&engine),
            vec![(5, MessageId(9)), (7, MessageId(1)), (7, MessageId(3))]
        );
    }

    #[test]
    fn a_damaged_run_is_corrupt_not_a_panic() {
        let k = keys::terminal(1, MessageId(2));
        assert!(unpack(&k, &[0; 15]).is_err());
        assert!(unpack(&k[..9], &[]).is_err());
    }

    proptest! {
        /// Through puts, deletes, takes and flushes at random, the terminal entries read
        /// through the layer (and, after each flush, in the engine) are those a plain map
        /// of single entries holds.
        #[test]
        fn runs_hold_what_single_entries_would(
            steps in proptest::collection::vec((0u8..4, 0u64..6, 0u64..12), 1..60),
        ) {
            let mut engine = MapKv::default();
            let mut model = std::collections::BTreeSet::new();
            let mut layer = TerminalRuns::new(&mut engine);
            for (what, done, id) in steps {
                let key = keys::terminal(done, MessageId(id));
                match what {
                    // A message ends once: its entry is never put twice.
                    0 | 1 => {
                        if model.insert((done, MessageId(id))) {
                            layer.put(&key, &[]).unwrap();
                        }
                    }
                    2 => {
                        // Only a whole record can be removed: a waiting entry or a run's key.
                        let had = layer.take(&key).unwrap();
                        if let Some(v) = had {
                            for e in unpack(&key, &v).unwrap() {
                                model.remove(&e);
                            }
                        }
                    }
                    _ => {
                        layer.flush().unwrap();
                        prop_assert_eq!(entries_in(&engine), model.iter().copied().collect::<Vec<_>>());
                        layer = TerminalRuns::new(&mut engine);
                    }
                }
                prop_assert_eq!(entries_in(&layer), model.iter().copied().collect::<Vec<_>>());
            }
        }
    }
}

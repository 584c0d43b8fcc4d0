//! Exact queue-depth counters: messages in the ready index per (channel, lane) and leased
//! (in-flight) messages per channel, kept without ever scanning the queues.
//!
//! How: every write transaction of the writer runs through [`DepthKv`], a [`Kv`] wrapper that
//! watches puts and deletes of ready keys (tag `READY`, which name their channel and lane) and
//! lease keys (tag `LEASE`, whose value names the channel). The engine tells it whether the
//! key was there before (`Kv::replace` / `Kv::take`), so a counter moves only when a key really
//! appears or disappears — whatever op, now or later, caused it. [`DepthKv::flush`] adds the
//! group's net changes to the persisted counters (tag `DEPTH`, one key per (channel, lane) and
//! one per channel for in flight) in the same transaction, so counters and queues commit, and
//! roll back in a crash, together. The writer then publishes the new values to a [`Board`],
//! which [`QueueDepths`] snapshots are read from (no store access).
//!
//! Invariants:
//! - after any committed transaction, each counter equals the number of keys it counts (see
//!   [`recount`], the brute-force check the tests compare against);
//! - the marker key `[DEPTH]` exists iff the counters are maintained for this data directory;
//!   a directory without it (written before counters existed) is seeded by one scan at open,
//!   in the transaction that writes the marker;
//! - a counter at zero has no key; the board keeps it at zero, so a gauge drops to 0 instead
//!   of keeping its last value.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;
use std::sync::Mutex;

use super::backend::{Kv, KvRead, pass_retire_through, pass_scans_through, take_range_noting};
use super::error::StoreError;
use super::id::MessageId;
use super::keys;
use super::model::Lane;
use super::ops::{self, OpResult};

/// Scan chunk when seeding or recounting.
const CHUNK: usize = 4096;
/// Value of the marker key: version of the counter layout.
const MARKER_VERSION: u8 = 1;

/// Queue depths of the store at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueDepths {
    /// Messages in the ready index (due now or later) per (channel, lane).
    pub ready: BTreeMap<(String, Lane), u64>,
    /// Leased (in-flight) messages per channel.
    pub in_flight: BTreeMap<String, u64>,
}

impl QueueDepths {
    /// Messages in the ready index of (channel, lane).
    pub fn ready(&self, channel: &str, lane: Lane) -> u64 {
        self.ready
            .get(&(channel.to_owned(), lane))
            .copied()
            .unwrap_or(0)
    }

    /// Leased messages of `channel`.
    pub fn in_flight(&self, channel: &str) -> u64 {
        self.in_flight.get(channel).copied().unwrap_or(0)
    }

    /// The same depths without zero entries (a snapshot keeps queues that emptied at 0).
    #[must_use]
    pub fn without_zeros(mut self) -> Self {
        self.ready.retain(|_, n| *n > 0);
        self.in_flight.retain(|_, n| *n > 0);
        self
    }

    fn set(&mut self, slot: Slot, n: u64) {
        match slot {
            Slot::Ready(channel, lane) => self.ready.insert((channel, lane), n),
            Slot::InFlight(channel) => self.in_flight.insert(channel, n),
        };
    }
}

/// What one counter counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Slot {
    /// Ready keys of (channel, lane).
    Ready(String, Lane),
    /// Lease keys of a channel.
    InFlight(String),
}

impl Slot {
    fn key(&self) -> Vec<u8> {
        match self {
            Self::Ready(c, lane) => keys::depth(c, lane.as_byte()).into_vec(),
            Self::InFlight(c) => keys::depth(c, keys::IN_FLIGHT_SLOT).into_vec(),
        }
    }
}

fn lane_of(byte: u8) -> Option<Lane> {
    Lane::ALL.into_iter().find(|l| l.as_byte() == byte)
}

fn channel_of(bytes: &[u8]) -> Option<String> {
    String::from_utf8(bytes.to_vec()).ok()
}

/// `channel, 0, lane` of a ready key (`READY, channel, 0, lane, due u64, id u64`).
fn ready_slot_bytes(key: &[u8]) -> Option<&[u8]> {
    let end = key.len().checked_sub(16)?;
    let s = key.get(1..end)?;
    (s.len() >= 3 && s[s.len() - 2] == 0).then_some(s)
}

/// Parses `channel, 0, lane` (a ready key's slot bytes).
fn ready_slot(s: &[u8]) -> Option<Slot> {
    let (&lane, rest) = s.split_last()?;
    let (&sep, channel) = rest.split_last()?;
    (sep == 0 && !channel.is_empty())
        .then(|| Some(Slot::Ready(channel_of(channel)?, lane_of(lane)?)))
        .flatten()
}

/// Parses a counter key (`DEPTH, channel, 0, slot`); `None` for the marker.
fn counter_slot(key: &[u8]) -> Option<Slot> {
    let s = key.get(1..)?;
    let (&slot, rest) = s.split_last()?;
    let (&sep, channel) = rest.split_last()?;
    if sep != 0 || channel.is_empty() {
        return None;
    }
    let channel = channel_of(channel)?;
    if slot == keys::IN_FLIGHT_SLOT {
        Some(Slot::InFlight(channel))
    } else {
        Some(Slot::Ready(channel, lane_of(slot)?))
    }
}

fn bump(map: &mut FxHashMap<Vec<u8>, i64>, k: &[u8], by: i64) {
    match map.get_mut(k) {
        Some(n) => *n += by,
        None => {
            map.insert(k.to_vec(), by);
        }
    }
}

/// A [`Kv`] that counts ready and lease keys appearing and disappearing, for one transaction.
/// Call [`flush`](Self::flush) before the commit, or the counters miss this transaction.
pub(crate) struct DepthKv<'a> {
    inner: &'a mut dyn Kv,
    /// Net change per ready slot (`channel, 0, lane`).
    ready: FxHashMap<Vec<u8>, i64>,
    /// Net change per channel of lease keys.
    in_flight: FxHashMap<Vec<u8>, i64>,
}

impl<'a> DepthKv<'a> {
    pub(crate) fn new(inner: &'a mut dyn Kv) -> Self {
        Self {
            inner,
            ready: FxHashMap::default(),
            in_flight: FxHashMap::default(),
        }
    }

    fn ready_changed(&mut self, key: &[u8], by: i64) {
        match ready_slot_bytes(key) {
            Some(s) => bump(&mut self.ready, s, by),
            None => {
                tracing::error!(key = %keys::hex(key), "ready key of unknown shape not counted")
            }
        }
    }

    fn lease_changed(&mut self, channel: &[u8], by: i64) {
        if channel.is_empty() {
            // Only a lease written by a build without counters has no channel; open recovers
            // every lease before any of them could be counted, so this means a downgrade.
            tracing::error!("lease key without a channel not counted");
            return;
        }
        bump(&mut self.in_flight, channel, by);
    }

    /// Adds this transaction's net changes to the persisted counters; returns their new values.
    pub(crate) fn flush(self) -> Result<Vec<(Slot, u64)>, StoreError> {
        let mut out = Vec::with_capacity(self.ready.len() + self.in_flight.len());
        let ready = self
            .ready
            .into_iter()
            .filter_map(|(s, by)| Some((ready_slot(&s)?, by)));
        let in_flight = self
            .in_flight
            .into_iter()
            .filter_map(|(c, by)| Some((Slot::InFlight(channel_of(&c)?), by)));
        for (slot, by) in ready.chain(in_flight) {
            if by != 0 {
                let n = add(&mut *self.inner, &slot, by)?;
                out.push((slot, n));
            }
        }
        Ok(out)
    }
}

/// Reads a persisted counter.
fn read_counter(kv: &dyn KvRead, key: &[u8]) -> Result<u64, StoreError> {
    kv.get(key)?.map_or(Ok(0), |v| {
        keys::be_u64(&v, 0).ok_or_else(|| ops::corrupt(key, "short queue counter"))
    })
}

/// Writes a counter; zero deletes its key.
fn write_counter(kv: &mut dyn Kv, key: &[u8], n: u64) -> Result<(), StoreError> {
    if n == 0 {
        kv.delete(key)
    } else {
        kv.put(key, &n.to_be_bytes())
    }
}

fn add(kv: &mut dyn Kv, slot: &Slot, by: i64) -> Result<u64, StoreError> {
    let key = slot.key();
    let old = read_counter(kv, &key)?;
    let n = old.checked_add_signed(by).unwrap_or_else(|| {
        tracing::error!(?slot, old, by, "queue counter would go below zero; clamped");
        0
    });
    write_counter(kv, &key, n)?;
    Ok(n)
}

impl KvRead for DepthKv<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(key)
    }

    pass_scans_through!(inner);
}

impl Kv for DepthKv<'_> {
    fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        if counted(key) {
            self.replace(key, value).map(drop)
        } else {
            self.inner.put(key, value)
        }
    }

    fn delete(&mut self, key: &[u8]) -> Result<(), StoreError> {
        if counted(key) {
            self.take(key).map(drop)
        } else {
            self.inner.delete(key)
        }
    }

    fn replace(&mut self, key: &[u8], value: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        debug_assert_ne!(
            key.first(),
            Some(&keys::DEPTH),
            "counters are written by flush"
        );
        let old = self.inner.replace(key, value)?;
        match key.first() {
            Some(&keys::READY) if old.is_none() => self.ready_changed(key, 1),
            Some(&keys::LEASE) => {
                if let Some(old) = &old {
                    self.lease_changed(old, -1);
                }
                self.lease_changed(value, 1);
            }
            _ => {}
        }
        Ok(old)
    }

    fn take(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let old = self.inner.take(key)?;
        if let Some(old) = &old {
            self.gone(key, old);
        }
        Ok(old)
    }

    take_range_noting!(inner, |this, k, v| this.gone(k, v));

    pass_retire_through!(inner);
}

impl DepthKv<'_> {
    /// Counts `key` (whose value was `old`) out of its counter.
    fn gone(&mut self, key: &[u8], old: &[u8]) {
        match key.first() {
            Some(&keys::READY) => self.ready_changed(key, -1),
            Some(&keys::LEASE) => self.lease_changed(old, -1),
            _ => {}
        }
    }
}

/// Whether `key` is one the counters count (a ready or a lease key).
fn counted(key: &[u8]) -> bool {
    matches!(key.first(), Some(&(keys::READY | keys::LEASE)))
}

/// Published counter values, read without touching the store.
#[derive(Debug, Default)]
pub(crate) struct Board(Mutex<QueueDepths>);

impl Board {
    pub(crate) fn new(initial: QueueDepths) -> Self {
        Self(Mutex::new(initial))
    }

    /// Records values committed by the writer.
    pub(crate) fn publish(&self, changes: Vec<(Slot, u64)>) {
        if changes.is_empty() {
            return;
        }
        let mut d = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (slot, n) in changes {
            d.set(slot, n);
        }
    }

    /// Replaces every value with `d` (the persisted counters, after the engine was reopened
    /// and went back to its last durable commit). A counter `d` lacks is kept at zero, as
    /// [`publish`](Self::publish) keeps one that emptied.
    pub(crate) fn reset(&self, d: QueueDepths) {
        let mut b = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        b.ready.values_mut().for_each(|n| *n = 0);
        b.in_flight.values_mut().for_each(|n| *n = 0);
        b.ready.extend(d.ready);
        b.in_flight.extend(d.in_flight);
    }

    pub(crate) fn snapshot(&self) -> QueueDepths {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// Opening: returns every lease to its ready queue (`ops::recover_all`) with the counters kept
/// — or, for a data directory without counters, recovers and then seeds them by one scan —
/// and returns the recovery's result with the counters' values. Run in one write transaction.
pub(crate) fn open(kv: &mut dyn Kv) -> Result<(OpResult, QueueDepths), StoreError> {
    let recovered = if kv.get(&[keys::DEPTH])?.is_some() {
        let mut counted = DepthKv::new(kv);
        let r = ops::recover_all(&mut counted)?;
        counted.flush()?;
        r
    } else {
        let r = ops::recover_all(kv)?;
        let found = recount(kv)?;
        let n: u64 = found.ready.values().sum();
        for (slot, n) in slots(found) {
            write_counter(kv, &slot.key(), n)?;
        }
        kv.put(&[keys::DEPTH], &[MARKER_VERSION])?;
        tracing::info!(
            ready = n,
            "store: queue counters seeded by one scan (data directory written without them)"
        );
        r
    };
    Ok((recovered, persisted(kv)?))
}

fn slots(d: QueueDepths) -> impl Iterator<Item = (Slot, u64)> {
    d.ready
        .into_iter()
        .map(|((c, l), n)| (Slot::Ready(c, l), n))
        .chain(d.in_flight.into_iter().map(|(c, n)| (Slot::InFlight(c), n)))
}

/// The persisted counters.
pub(crate) fn persisted(kv: &dyn KvRead) -> Result<QueueDepths, StoreError> {
    let mut d = QueueDepths::default();
    let mut found = Vec::new();
    // Few keys (channels × 4): one unbounded scan.
    kv.scan(&[keys::DEPTH], &[keys::DEPTH + 1], usize::MAX, &mut found)?;
    for (k, v) in found {
        let Some(slot) = counter_slot(&k) else {
            continue;
        };
        let n = keys::be_u64(&v, 0).ok_or_else(|| ops::corrupt(&k, "short queue counter"))?;
        d.set(slot, n);
    }
    Ok(d)
}

/// Calls `f` on every key with tag `tag`, in chunks.
fn each_key(
    kv: &dyn KvRead,
    tag: u8,
    mut f: impl FnMut(&[u8], &[u8]) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let end = [tag + 1];
    let mut from = vec![tag];
    loop {
        let mut found = Vec::with_capacity(CHUNK);
        kv.scan(&from, &end, CHUNK, &mut found)?;
        let Some((last, _)) = found.last() else {
            return Ok(());
        };
        from.clone_from(last);
        from.push(0); // the next key after `last`
        for (k, v) in &found {
            f(k, v)?;
        }
    }
}

/// Counts the ready and lease keys by scanning them all — O(queued messages). A lease is
/// attributed to the channel of its message record (not the lease key's value), so this is
/// an independent check of the counters.
pub(crate) fn recount(kv: &dyn KvRead) -> Result<QueueDepths, StoreError> {
    let mut ready: FxHashMap<Vec<u8>, u64> = FxHashMap::default();
    each_key(kv, keys::READY, |k, _| {
        match ready_slot_bytes(k) {
            Some(s) => match ready.get_mut(s) {
                Some(n) => *n += 1,
                None => {
                    ready.insert(s.to_vec(), 1);
                }
            },
            None => tracing::error!(key = %keys::hex(k), "ready key of unknown shape"),
        }
        Ok(())
    })?;
    let mut d = QueueDepths::default();
    for (s, n) in ready {
        if let Some(slot) = ready_slot(&s) {
            d.set(slot, n);
        }
    }
    each_key(kv, keys::LEASE, |k, _| {
        let Some(id) = keys::be_u64(k, 9) else {
            return Ok(());
        };
        if let Some(m) = ops::load(kv, MessageId(id))? {
            *d.in_flight.entry(m.channel.into_string()).or_insert(0) += 1;
        }
        Ok(())
    })?;
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Backend, Message, Payload, RedbBackend, Store, WriterConfig};

    fn message(store: &Store<RedbBackend>, channel: &str, lane: Lane) -> Message {
        let payload = Payload::Text {
            text: "x".into(),
            encoding: Default::default(),
        };
        let mut m = Message::new(store.ids().next(0), "acme", "+861", payload, channel, 0, 0);
        m.lane = lane;
        m
    }

    fn expect(ready: &[(&str, Lane, u64)], in_flight: &[(&str, u64)]) -> QueueDepths {
        QueueDepths {
            ready: ready
                .iter()
                .map(|(c, l, n)| (((*c).to_owned(), *l), *n))
                .collect(),
            in_flight: in_flight
                .iter()
                .map(|(c, n)| ((*c).to_owned(), *n))
                .collect(),
        }
    }

    #[test]
    fn a_directory_without_counters_is_seeded_once_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let open = || {
            Store::open(
                RedbBackend::open(dir.path()).unwrap(),
                WriterConfig::default(),
                0,
            )
            .unwrap()
        };
        let store = open();
        let mut batch: Vec<Message> = (0..3)
            .map(|_| message(&store, "a", Lane::Notification))
            .collect();
        batch.push(message(&store, "b", Lane::Otp));
        futures::executor::block_on(store.insert_batch(batch)).unwrap();
        let leased =
            futures::executor::block_on(store.lease("a", Lane::Notification, 0, 1, 1000)).unwrap();
        assert_eq!(leased.messages.len(), 1);
        assert_eq!(
            store.queue_depths().without_zeros(),
            expect(
                &[("a", Lane::Notification, 2), ("b", Lane::Otp, 1)],
                &[("a", 1)]
            )
        );
        drop(store);

        // Make the directory look written by a build without counters: no counter keys, and
        // lease keys with empty values.
        let backend = RedbBackend::open(dir.path()).unwrap();
        backend
            .write(|kv| {
                let mut counters = Vec::new();
                kv.scan(
                    &[keys::DEPTH],
                    &[keys::DEPTH + 1],
                    usize::MAX,
                    &mut counters,
                )?;
                let mut leases = Vec::new();
                kv.scan(&[keys::LEASE], &[keys::LEASE + 1], usize::MAX, &mut leases)?;
                assert_eq!(
                    counters.len(),
                    4,
                    "marker, a/notification, b/otp, a in flight"
                );
                assert_eq!(leases, vec![(leases[0].0.clone(), b"a".to_vec())]);
                for (k, _) in counters {
                    kv.delete(&k)?;
                }
                for (k, _) in leases {
                    kv.put(&k, &[])?;
                }
                Ok(())
            })
            .unwrap();
        drop(backend);

        // Seeded at open (after the lease went back to its queue), then maintained.
        let store = open();
        let want = expect(&[("a", Lane::Notification, 3), ("b", Lane::Otp, 1)], &[]);
        assert_eq!(store.queue_depths(), want);
        assert_eq!(store.recount_queue_depths().unwrap(), want);
        futures::executor::block_on(store.lease("a", Lane::Notification, 0, 2, 1000)).unwrap();
        assert_eq!(
            store.queue_depths(),
            expect(
                &[("a", Lane::Notification, 1), ("b", Lane::Otp, 1)],
                &[("a", 2)]
            )
        );
        drop(store);
        let store = open();
        assert_eq!(store.queue_depths(), want);
    }

    #[test]
    fn slots_round_trip_through_keys() {
        let k = keys::ready("smsc1", Lane::Marketing, 77, MessageId(5));
        let s = ready_slot_bytes(&k).expect("slot");
        assert_eq!(s, b"smsc1\0\x02");
        let slot = ready_slot(s).expect("parsed");
        assert_eq!(slot, Slot::Ready("smsc1".into(), Lane::Marketing));
        assert_eq!(counter_slot(&slot.key()), Some(slot));
        let f = Slot::InFlight("a\u{e9}".into());
        assert_eq!(counter_slot(&f.key()), Some(f));
        assert_eq!(counter_slot(&[keys::DEPTH]), None);
        assert_eq!(ready_slot_bytes(&[keys::READY, 1, 2]), None);
        assert_eq!(ready_slot(b"\0\x01"), None);
        assert_eq!(ready_slot(b"c\0\x09"), None);
    }
}

//! The window of outstanding requests every session role keeps (SMPP ESME and SMSC, CMPP SP
//! and ISMG), and the sequence numbers that name them.
//!
//! Invariants:
//! - sequence numbers run 1..=0x7FFF_FFFF and wrap, skipping numbers still in the window (a
//!   response must never be matched to the wrong request);
//! - every entry has one deadline; deadlines are pushed in send order and the timeout is the
//!   same for all, so they grow along the queue and the front is always the next to expire
//!   (entries answered early leave stale queue slots, dropped lazily);
//! - an entry leaves exactly once: by [`Window::remove`] (answered), [`Window::pop_expired`]
//!   (timed out) or [`Window::drain_by`] (the session closed).

use std::collections::VecDeque;
use std::time::Instant;

// Fx: the keys are the session's own sequence numbers, never a peer's choice.
use rustc_hash::FxHashMap;

/// The largest sequence number (SMPP and CMPP both keep the top bit clear).
pub(crate) const MAX_SEQUENCE: u32 = 0x7FFF_FFFF;

/// Outstanding requests by sequence number, with their deadlines in send order.
#[derive(Debug)]
pub(crate) struct Window<P> {
    next_sequence: u32,
    entries: FxHashMap<u32, P>,
    deadlines: VecDeque<(Instant, u32)>,
}

impl<P> Window<P> {
    /// An empty window with room for `capacity` entries before it reallocates.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            next_sequence: 1,
            entries: FxHashMap::with_capacity_and_hasher(capacity, Default::default()),
            deadlines: VecDeque::with_capacity(capacity),
        }
    }

    /// Entries outstanding.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Nothing outstanding.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether `sequence` is outstanding.
    pub(crate) fn contains(&self, sequence: u32) -> bool {
        self.entries.contains_key(&sequence)
    }

    /// The next sequence number for any request the session sends, skipping those still in
    /// the window.
    pub(crate) fn allocate_sequence(&mut self) -> u32 {
        loop {
            let sequence = self.next_sequence;
            self.next_sequence = if sequence >= MAX_SEQUENCE {
                1
            } else {
                sequence + 1
            };
            if !self.entries.contains_key(&sequence) {
                return sequence;
            }
        }
    }

    /// Sets the next number to hand out (tests of the wrap).
    #[cfg(test)]
    pub(crate) fn set_next_sequence(&mut self, sequence: u32) {
        self.next_sequence = sequence;
    }

    /// Tracks `entry` under `sequence` until `deadline`.
    pub(crate) fn insert(&mut self, sequence: u32, entry: P, deadline: Instant) {
        self.entries.insert(sequence, entry);
        self.deadlines.push_back((deadline, sequence));
    }

    /// The entry answered by `sequence`, if it is outstanding.
    pub(crate) fn remove(&mut self, sequence: u32) -> Option<P> {
        self.entries.remove(&sequence)
    }

    /// One entry whose deadline is at or before `now`; call until `None`.
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<P> {
        while let Some(&(deadline, sequence)) = self.deadlines.front() {
            if deadline > now {
                return None;
            }
            self.deadlines.pop_front();
            if let Some(entry) = self.entries.remove(&sequence) {
                return Some(entry);
            }
        }
        None
    }

    /// The earliest deadline still outstanding (stale slots of answered entries dropped).
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(&(deadline, sequence)) = self.deadlines.front() {
            if self.entries.contains_key(&sequence) {
                return Some(deadline);
            }
            self.deadlines.pop_front();
        }
        None
    }

    /// Empties the window, entries ordered by `key` (the order they are reported aborted).
    pub(crate) fn drain_by<K: Ord>(&mut self, key: impl Fn(u32, &P) -> K) -> Vec<P> {
        let mut open: Vec<(u32, P)> = self.entries.drain().collect();
        open.sort_by_key(|(sequence, p)| key(*sequence, p));
        self.deadlines.clear();
        open.into_iter().map(|(_, p)| p).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn sequences_wrap_and_skip_outstanding_numbers() {
        let t = Instant::now();
        let mut w = Window::with_capacity(4);
        w.next_sequence = MAX_SEQUENCE;
        let a = w.allocate_sequence();
        assert_eq!(a, MAX_SEQUENCE);
        w.insert(1, "one", t);
        assert_eq!(w.allocate_sequence(), 2, "1 is still outstanding");
        assert!(w.contains(1) && !w.contains(2));
    }

    #[test]
    fn entries_leave_once_by_answer_expiry_or_drain() {
        let t = Instant::now();
        let mut w = Window::with_capacity(4);
        w.insert(1, 'a', t + Duration::from_secs(1));
        w.insert(2, 'b', t + Duration::from_secs(2));
        w.insert(3, 'c', t + Duration::from_secs(3));
        assert_eq!(w.remove(1), Some('a'));
        assert_eq!(
            w.next_deadline(),
            Some(t + Duration::from_secs(2)),
            "stale slot dropped"
        );
        assert_eq!(w.pop_expired(t + Duration::from_secs(2)), Some('b'));
        assert_eq!(w.pop_expired(t + Duration::from_secs(2)), None);
        w.insert(5, 'e', t + Duration::from_secs(9));
        assert_eq!(w.drain_by(|seq, _| std::cmp::Reverse(seq)), vec!['e', 'c']);
        assert!(w.is_empty() && w.next_deadline().is_none());
        assert_eq!(w.remove(2), None, "expired entries are gone");
    }
}

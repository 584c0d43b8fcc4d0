//! Reassembly of incoming concatenated messages (MO or delivered parts).
//!
//! Job: collect parts keyed by `(source, destination, reference, total)` until all `total`
//! have arrived, then hand back their payloads in part order. Works the same whether the
//! numbers came from a UDH IE ([`super::udh::Udh::concat`]) or from SMPP SAR TLVs.
//!
//! Invariants:
//! - Parts may arrive in any order; a part whose `seq` was already stored is a duplicate and
//!   is ignored (the first copy wins).
//! - Memory is bounded three ways: at most `max_pending` incomplete messages, at most
//!   `max_part_octets` per stored part (140 by default: a UDH or SAR part is one SMS's user
//!   data), and at most `max_total_octets` of stored payload over all messages. To make room
//!   the oldest message by first arrival is evicted (counted in [`Reassembler::evicted`]).
//! - Single-part messages are never stored, so no size limit applies to them.
//! - Incomplete messages sit in a queue ordered by first arrival, so eviction and
//!   [`Reassembler::expire`] cost O(log n) per message removed, never a scan of all of them.
//! - Time is passed in (`now`); nothing expires unless the caller calls [`Reassembler::expire`].

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use super::error::UdhError;
use super::split::MAX_USER_DATA;
use super::udh::{Concat, Udh};

/// Identifies one concatenated message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MessageKey {
    /// Originator address.
    pub source: String,
    /// Destination address.
    pub dest: String,
    /// Concatenation reference.
    pub reference: u16,
    /// Declared number of parts.
    pub total: u8,
}

/// Limits of a [`Reassembler`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReassemblyConfig {
    /// Incomplete messages kept at once.
    pub max_pending: usize,
    /// Largest payload accepted for one part of a concatenated message (a UDH or SAR part is
    /// one SMS: at most 140 octets of user data).
    pub max_part_octets: usize,
    /// Most payload octets stored over all incomplete messages.
    pub max_total_octets: usize,
    /// How long an incomplete message is kept after its first part, by [`Reassembler::expire`].
    pub ttl: Duration,
}

impl Default for ReassemblyConfig {
    /// 10 000 messages, 140 octets per part, 8 MiB in all, 5 minutes.
    fn default() -> Self {
        Self {
            max_pending: 10_000,
            max_part_octets: MAX_USER_DATA,
            max_total_octets: 8 << 20,
            ttl: Duration::from_secs(300),
        }
    }
}

/// What happened to a part given to [`Reassembler::push`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// All parts are here: payloads in part order (seq 1 first). Concatenate them for binary,
    /// UCS-2 or unpacked GSM; unpack packed GSM parts one by one first.
    Complete(Vec<Vec<u8>>),
    /// Stored; more parts are needed.
    Pending,
    /// This `seq` was already stored for the message; ignored.
    Duplicate,
    /// Rejected: invalid numbers (`seq` 0 or above `total`), a part over `max_part_octets`,
    /// or a part that cannot fit `max_total_octets` even after evicting every other message.
    Rejected,
}

/// Position in the arrival queue: first arrival, then a serial for equal instants.
type Slot = (Instant, u64);

#[derive(Debug)]
struct Pending {
    slot: Slot,
    parts: Vec<Option<Vec<u8>>>,
    received: usize,
    octets: usize,
}

/// Collects parts of concatenated messages. Sans-IO: the caller owns the clock.
#[derive(Debug)]
pub struct Reassembler {
    config: ReassemblyConfig,
    pending: HashMap<MessageKey, Pending>,
    /// Incomplete messages by first arrival (oldest first).
    order: BTreeMap<Slot, MessageKey>,
    serial: u64,
    octets: usize,
    evicted: u64,
}

impl Reassembler {
    /// An empty reassembler.
    #[must_use]
    pub fn new(config: ReassemblyConfig) -> Self {
        Self {
            config,
            pending: HashMap::new(),
            order: BTreeMap::new(),
            serial: 0,
            octets: 0,
            evicted: 0,
        }
    }

    /// Incomplete messages currently held.
    #[must_use]
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// True while parts of `key` are held (false once complete, expired or evicted).
    #[must_use]
    pub fn is_pending(&self, key: &MessageKey) -> bool {
        self.pending.contains_key(key)
    }

    /// Payload octets currently stored.
    #[must_use]
    pub const fn stored_octets(&self) -> usize {
        self.octets
    }

    /// Incomplete messages dropped so far to respect `max_pending` or `max_total_octets`
    /// (not counting expiry).
    #[must_use]
    pub const fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Adds one part. A single-part message (`total == 1`) completes at once.
    pub fn push(
        &mut self,
        source: &str,
        dest: &str,
        concat: Concat,
        payload: &[u8],
        now: Instant,
    ) -> Outcome {
        if !concat.is_valid() {
            return Outcome::Rejected;
        }
        if concat.total == 1 {
            return Outcome::Complete(vec![payload.to_vec()]);
        }
        if payload.len() > self.config.max_part_octets
            || payload.len() > self.config.max_total_octets
        {
            return Outcome::Rejected;
        }
        let key = MessageKey {
            source: source.to_owned(),
            dest: dest.to_owned(),
            reference: concat.reference,
            total: concat.total,
        };
        let seq = usize::from(concat.seq) - 1;
        match self.pending.get(&key) {
            Some(p) if p.parts[seq].is_some() => return Outcome::Duplicate,
            Some(_) => {}
            None => {
                if self.config.max_pending == 0 {
                    return Outcome::Rejected;
                }
                while self.pending.len() >= self.config.max_pending {
                    if !self.evict_oldest(None) {
                        break;
                    }
                }
            }
        }
        while self.octets + payload.len() > self.config.max_total_octets {
            if !self.evict_oldest(Some(&key)) {
                // Only this message is left and it alone would exceed the budget.
                return Outcome::Rejected;
            }
        }
        if !self.pending.contains_key(&key) {
            let slot = (now, self.serial);
            self.serial += 1;
            self.order.insert(slot, key.clone());
            self.pending.insert(
                key.clone(),
                Pending {
                    slot,
                    parts: vec![None; usize::from(concat.total)],
                    received: 0,
                    octets: 0,
                },
            );
        }
        let Some(entry) = self.pending.get_mut(&key) else {
            return Outcome::Rejected;
        };
        entry.parts[seq] = Some(payload.to_vec());
        entry.received += 1;
        entry.octets += payload.len();
        self.octets += payload.len();
        if entry.received < entry.parts.len() {
            return Outcome::Pending;
        }
        match self.remove(&key) {
            Some(done) => Outcome::Complete(done.parts.into_iter().flatten().collect()),
            None => Outcome::Pending,
        }
    }

    /// Adds one part given as user data with a UDH (SMPP `esm_class` 0x40 set): parses the
    /// header, keys on its concatenation IE (0x00 or 0x08), and stores the payload after the
    /// header. User data whose UDH has no valid concatenation IE is a single-part message.
    ///
    /// # Errors
    /// [`UdhError`] if the header is malformed.
    pub fn push_udh(
        &mut self,
        source: &str,
        dest: &str,
        user_data: &[u8],
        now: Instant,
    ) -> Result<Outcome, UdhError> {
        let (udh, payload) = Udh::parse(user_data)?;
        Ok(match udh.concat() {
            Some(c) => self.push(source, dest, c, payload, now),
            None => Outcome::Complete(vec![payload.to_vec()]),
        })
    }

    /// Drops incomplete messages whose first part is older than the TTL at `now`, returning
    /// their keys (so the caller can log or count them). Walks only the expired head of the
    /// arrival queue.
    pub fn expire(&mut self, now: Instant) -> Vec<MessageKey> {
        let ttl = self.config.ttl;
        let mut expired = Vec::new();
        while let Some((&(first, _), _)) = self.order.first_key_value() {
            if now.saturating_duration_since(first) < ttl {
                break;
            }
            let Some((_, key)) = self.order.pop_first() else {
                break;
            };
            if let Some(p) = self.pending.remove(&key) {
                self.octets -= p.octets;
            }
            expired.push(key);
        }
        expired
    }

    /// Removes a message from both indexes and the byte count.
    fn remove(&mut self, key: &MessageKey) -> Option<Pending> {
        let p = self.pending.remove(key)?;
        self.order.remove(&p.slot);
        self.octets -= p.octets;
        Some(p)
    }

    /// Evicts the oldest incomplete message other than `keep`; false if there is none.
    fn evict_oldest(&mut self, keep: Option<&MessageKey>) -> bool {
        let victim = self.order.values().find(|k| Some(*k) != keep).cloned();
        match victim {
            Some(k) => {
                self.remove(&k);
                self.evicted += 1;
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(reference: u16, total: u8, seq: u8) -> Concat {
        Concat {
            reference,
            total,
            seq,
        }
    }

    #[test]
    fn out_of_order_with_duplicates() {
        let now = Instant::now();
        let mut r = Reassembler::new(ReassemblyConfig::default());
        assert_eq!(r.push("a", "b", c(7, 3, 3), b"3", now), Outcome::Pending);
        assert_eq!(r.push("a", "b", c(7, 3, 1), b"1", now), Outcome::Pending);
        assert_eq!(r.push("a", "b", c(7, 3, 1), b"X", now), Outcome::Duplicate);
        // Same reference from another sender is a different message.
        assert_eq!(r.push("z", "b", c(7, 3, 2), b"z", now), Outcome::Pending);
        assert_eq!(
            r.push("a", "b", c(7, 3, 2), b"2", now),
            Outcome::Complete(vec![b"1".to_vec(), b"2".to_vec(), b"3".to_vec()])
        );
        assert_eq!(r.pending(), 1);
    }

    #[test]
    fn udh_keyed_parts() {
        let now = Instant::now();
        let mut r = Reassembler::new(ReassemblyConfig::default());
        let p2 = [0x05, 0x00, 0x03, 0x09, 0x02, 0x02, b'b'];
        let p1 = [0x06, 0x08, 0x04, 0x00, 0x09, 0x02, 0x01, b'a'];
        assert_eq!(r.push_udh("a", "b", &p2, now), Ok(Outcome::Pending));
        // A 16-bit IE with the same numbers joins the same message.
        assert_eq!(
            r.push_udh("a", "b", &p1, now),
            Ok(Outcome::Complete(vec![b"a".to_vec(), b"b".to_vec()]))
        );
        let ports_only = [0x06, 0x05, 0x04, 0x0B, 0x84, 0x23, 0xF0, 0xAA];
        assert_eq!(
            r.push_udh("a", "b", &ports_only, now),
            Ok(Outcome::Complete(vec![vec![0xAA]]))
        );
        assert!(r.push_udh("a", "b", &[0x09, 0x00], now).is_err());
    }

    #[test]
    fn bounded_and_expiring() {
        let t0 = Instant::now();
        let cfg = ReassemblyConfig {
            max_pending: 2,
            max_part_octets: 4,
            max_total_octets: 1024,
            ttl: Duration::from_secs(10),
        };
        let mut r = Reassembler::new(cfg);
        assert_eq!(r.push("a", "b", c(1, 2, 1), b"x", t0), Outcome::Pending);
        let t1 = t0 + Duration::from_secs(5);
        assert_eq!(r.push("a", "b", c(2, 2, 1), b"x", t1), Outcome::Pending);
        assert_eq!(r.push("a", "b", c(3, 2, 1), b"x", t1), Outcome::Pending);
        assert_eq!((r.pending(), r.evicted()), (2, 1));
        assert_eq!(
            r.push("a", "b", c(4, 2, 1), b"toolong", t1),
            Outcome::Rejected
        );
        assert_eq!(r.push("a", "b", c(4, 2, 0), b"x", t1), Outcome::Rejected);
        let expired = r.expire(t0 + Duration::from_secs(15));
        assert_eq!(expired.len(), 2);
        assert_eq!(r.pending(), 0);
    }

    #[test]
    fn parts_are_capped_at_one_sms() {
        let now = Instant::now();
        let mut r = Reassembler::new(ReassemblyConfig::default());
        assert_eq!(
            r.push("a", "b", c(1, 2, 1), &[0u8; 141], now),
            Outcome::Rejected
        );
        assert_eq!(
            r.push("a", "b", c(1, 2, 1), &[0u8; 140], now),
            Outcome::Pending
        );
        // A single-part message is never stored, so it is not capped.
        assert_eq!(
            r.push("a", "b", c(2, 1, 1), &[7u8; 500], now),
            Outcome::Complete(vec![vec![7u8; 500]])
        );
    }

    #[test]
    fn total_bytes_budget_evicts_the_oldest() {
        let t0 = Instant::now();
        let mut r = Reassembler::new(ReassemblyConfig {
            max_pending: 100,
            max_part_octets: 140,
            max_total_octets: 300,
            ttl: Duration::from_secs(10),
        });
        for reference in 1..=2 {
            let at = t0 + Duration::from_secs(u64::from(reference));
            assert_eq!(
                r.push("a", "b", c(reference, 3, 1), &[1u8; 140], at),
                Outcome::Pending
            );
        }
        assert_eq!(r.stored_octets(), 280);
        // 420 octets would exceed 300: the oldest (reference 1) goes.
        assert_eq!(
            r.push(
                "a",
                "b",
                c(3, 3, 1),
                &[1u8; 140],
                t0 + Duration::from_secs(3)
            ),
            Outcome::Pending
        );
        assert_eq!((r.pending(), r.evicted(), r.stored_octets()), (2, 1, 280));
        assert_eq!(
            r.push(
                "a",
                "b",
                c(1, 3, 2),
                &[1u8; 10],
                t0 + Duration::from_secs(4)
            ),
            Outcome::Pending,
            "reference 1 starts over"
        );
        // A message alone over the budget is refused rather than evicting itself.
        let mut small = Reassembler::new(ReassemblyConfig {
            max_total_octets: 200,
            ..ReassemblyConfig::default()
        });
        assert_eq!(
            small.push("a", "b", c(9, 2, 1), &[0u8; 140], t0),
            Outcome::Pending
        );
        assert_eq!(
            small.push("a", "b", c(9, 2, 2), &[0u8; 140], t0),
            Outcome::Rejected
        );
        assert_eq!(small.pending(), 1);
    }

    #[test]
    fn expiry_walks_the_arrival_queue_and_keeps_counts() {
        let t0 = Instant::now();
        let mut r = Reassembler::new(ReassemblyConfig {
            ttl: Duration::from_secs(10),
            ..ReassemblyConfig::default()
        });
        for reference in 0..5u16 {
            let at = t0 + Duration::from_secs(u64::from(reference) * 3);
            r.push("a", "b", c(reference, 2, 1), b"xy", at);
        }
        // Completing one removes it from the queue too.
        assert!(matches!(
            r.push("a", "b", c(4, 2, 2), b"z", t0 + Duration::from_secs(12)),
            Outcome::Complete(_)
        ));
        let expired = r.expire(t0 + Duration::from_secs(16));
        let refs: Vec<u16> = expired.iter().map(|k| k.reference).collect();
        assert_eq!(refs, vec![0, 1, 2]);
        assert_eq!((r.pending(), r.stored_octets()), (1, 2));
        assert!(r.expire(t0 + Duration::from_secs(18)).is_empty());
        assert_eq!(r.expire(t0 + Duration::from_secs(19)).len(), 1);
        assert_eq!((r.pending(), r.stored_octets()), (0, 0));
    }
}

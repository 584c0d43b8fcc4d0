//! Reassembly of incoming concatenated messages (MO or delivered parts).
//!
//! Job: collect parts keyed by `(source, destination, reference, total)` until all `total`
//! have arrived, then hand back their payloads in part order. Works the same whether the
//! numbers came from a UDH IE ([`super::udh::Udh::concat`]) or from SMPP SAR TLVs.
//!
//! Invariants:
//! - Parts may arrive in any order; a part whose `seq` was already stored is a duplicate and
//!   is ignored (the first copy wins).
//! - Memory is bounded: at most `max_pending` incomplete messages (the oldest by first
//!   arrival is evicted to make room) and at most `max_part_octets` per part.
//! - Time is passed in (`now`); nothing expires unless the caller calls [`Reassembler::expire`].

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::error::UdhError;
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
    /// Largest payload accepted for one part (SMS user data is at most 140 octets; SMPP
    /// `message_payload` can be larger).
    pub max_part_octets: usize,
    /// How long an incomplete message is kept after its first part, by [`Reassembler::expire`].
    pub ttl: Duration,
}

impl Default for ReassemblyConfig {
    fn default() -> Self {
        Self {
            max_pending: 10_000,
            max_part_octets: 1024,
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
    /// Rejected: invalid numbers (`seq` 0 or above `total`) or a payload over the limit.
    Rejected,
}

#[derive(Debug)]
struct Pending {
    first_seen: Instant,
    parts: Vec<Option<Vec<u8>>>,
    received: usize,
}

/// Collects parts of concatenated messages. Sans-IO: the caller owns the clock.
#[derive(Debug)]
pub struct Reassembler {
    config: ReassemblyConfig,
    pending: HashMap<MessageKey, Pending>,
    evicted: u64,
}

impl Reassembler {
    /// An empty reassembler.
    #[must_use]
    pub fn new(config: ReassemblyConfig) -> Self {
        Self {
            config,
            pending: HashMap::new(),
            evicted: 0,
        }
    }

    /// Incomplete messages currently held.
    #[must_use]
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Incomplete messages dropped so far to respect `max_pending` (not counting expiry).
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
        if !concat.is_valid() || payload.len() > self.config.max_part_octets {
            return Outcome::Rejected;
        }
        if concat.total == 1 {
            return Outcome::Complete(vec![payload.to_vec()]);
        }
        let key = MessageKey {
            source: source.to_owned(),
            dest: dest.to_owned(),
            reference: concat.reference,
            total: concat.total,
        };
        if !self.pending.contains_key(&key) {
            if self.config.max_pending == 0 {
                return Outcome::Rejected;
            }
            while self.pending.len() >= self.config.max_pending {
                self.evict_oldest();
            }
        }
        let entry = self.pending.entry(key.clone()).or_insert_with(|| Pending {
            first_seen: now,
            parts: vec![None; usize::from(concat.total)],
            received: 0,
        });
        let slot = &mut entry.parts[usize::from(concat.seq) - 1];
        if slot.is_some() {
            return Outcome::Duplicate;
        }
        *slot = Some(payload.to_vec());
        entry.received += 1;
        if entry.received < entry.parts.len() {
            return Outcome::Pending;
        }
        match self.pending.remove(&key) {
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
            None if payload.len() > self.config.max_part_octets => Outcome::Rejected,
            None => Outcome::Complete(vec![payload.to_vec()]),
        })
    }

    /// Drops incomplete messages whose first part is older than the TTL at `now`, returning
    /// their keys (so the caller can log or count them).
    pub fn expire(&mut self, now: Instant) -> Vec<MessageKey> {
        let ttl = self.config.ttl;
        let expired: Vec<MessageKey> = self
            .pending
            .iter()
            .filter(|(_, p)| now.saturating_duration_since(p.first_seen) >= ttl)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &expired {
            self.pending.remove(k);
        }
        expired
    }

    fn evict_oldest(&mut self) {
        let oldest = self
            .pending
            .iter()
            .min_by_key(|(_, p)| p.first_seen)
            .map(|(k, _)| k.clone());
        if let Some(k) = oldest {
            self.pending.remove(&k);
            self.evicted += 1;
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
}

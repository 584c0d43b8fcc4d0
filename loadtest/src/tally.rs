//! Exact count of everything the simulator received.
//!
//! **Identity of a message = (destination address, reassembled payload bytes)**: the payload
//! is the user data without UDH, concatenated over all parts in segment order. Two submits
//! with the same identity are one message received twice (a duplicate). Senders that need
//! exact checks put a unique token in the text. Data coding is not part of the identity.
//!
//! Concatenated messages are reassembled from UDH IE 0x00 (8-bit ref), IE 0x08 (16-bit ref)
//! or SAR TLVs, keyed by (source, destination, reference, total). A part seen twice before
//! completion counts in `duplicate_parts`; parts of messages never completed show up in
//! `incomplete_messages`. Counters are exact under concurrency (sharded mutexes, no sampling).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

const SHARDS: usize = 32;

/// Concatenation info of one part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Concat {
    pub reference: u16,
    pub total: u8,
    /// 1-based.
    pub seq: u8,
}

/// One accepted submit, as the tally sees it.
#[derive(Debug, Clone, Copy)]
pub struct Piece<'a> {
    pub source: &'a [u8],
    pub dest: &'a [u8],
    /// User data without UDH.
    pub payload: &'a [u8],
    pub concat: Option<Concat>,
}

/// What recording one piece produced.
#[derive(Debug, PartialEq, Eq)]
pub enum Recorded<'a> {
    /// A part of a message still missing other parts.
    Partial,
    /// A repeated part of a message still being reassembled.
    DuplicatePart,
    /// The message is complete (`payload` is the reassembled user data).
    Complete {
        duplicate: bool,
        payload: Cow<'a, [u8]>,
    },
}

/// Splits a user-data-header off `ud` and returns the concatenation IE if any.
/// Returns the payload unchanged when the UDH is malformed (counted as a plain message).
pub fn split_udh(ud: &[u8]) -> (Option<Concat>, &[u8]) {
    let Some(&udhl) = ud.first() else {
        return (None, ud);
    };
    let end = 1 + udhl as usize;
    let Some(ies) = ud.get(1..end) else {
        return (None, ud);
    };
    let mut concat = None;
    let mut i = 0;
    while i + 2 <= ies.len() {
        let (iei, len) = (ies[i], ies[i + 1] as usize);
        let Some(v) = ies.get(i + 2..i + 2 + len) else {
            break;
        };
        match (iei, len) {
            (0x00, 3) => {
                concat = Some(Concat {
                    reference: v[0] as u16,
                    total: v[1],
                    seq: v[2],
                })
            }
            (0x08, 4) => {
                concat = Some(Concat {
                    reference: u16::from_be_bytes([v[0], v[1]]),
                    total: v[2],
                    seq: v[3],
                })
            }
            _ => {}
        }
        i += 2 + len;
    }
    (concat, &ud[end..])
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PartKey {
    source: Box<[u8]>,
    dest: Box<[u8]>,
    reference: u16,
    total: u8,
}

#[derive(Debug)]
struct Partial {
    parts: Vec<Option<Box<[u8]>>>,
    have: u8,
}

/// Counters for one simulator; cheap to share (`Arc<Tally>`).
#[derive(Debug)]
pub struct Tally {
    seen: Vec<Mutex<HashMap<Box<[u8]>, u32>>>,
    hasher: RandomState,
    partials: Mutex<HashMap<PartKey, Partial>>,
    parts_hist: Mutex<BTreeMap<u8, u64>>,
    rejected: Mutex<BTreeMap<String, u64>>,
    submits: AtomicU64,
    parts_accepted: AtomicU64,
    unique: AtomicU64,
    duplicates: AtomicU64,
    duplicate_parts: AtomicU64,
    pub(crate) dlrs_sent: AtomicU64,
    pub(crate) mo_sent: AtomicU64,
    pub(crate) mo_scheduled: AtomicU64,
    pub(crate) deliver_resps: AtomicU64,
    pub(crate) binds: AtomicU64,
    pub(crate) bind_failures: AtomicU64,
    pub(crate) disconnects: AtomicU64,
}

impl Default for Tally {
    fn default() -> Self {
        Self::new()
    }
}

/// Serializable point-in-time copy of a [`Tally`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TallySnapshot {
    /// Every submit PDU read, accepted or not.
    pub submits_received: u64,
    /// Submit PDUs accepted (answered with success).
    pub parts_accepted: u64,
    /// Distinct complete messages (see module docs for identity).
    pub unique_messages: u64,
    /// Complete messages whose identity had been seen before.
    pub duplicates: u64,
    /// Parts repeated while their message was still incomplete.
    pub duplicate_parts: u64,
    /// Messages still missing parts.
    pub incomplete_messages: u64,
    /// Completed messages by number of parts (`"1"`, `"2"`, …).
    pub parts_per_message: BTreeMap<String, u64>,
    /// Rejected submits by status (`"smpp:0x00000058"`, `"cmpp:8"`).
    pub rejected: BTreeMap<String, u64>,
    pub dlrs_sent: u64,
    pub mo_sent: u64,
    /// MOs decided and queued for delivery (reply rules and the generator), sent or not yet:
    /// a reply waiting out its delay is counted here before `mo_sent`, so a client can tell
    /// "every reply arrived" from "a reply is still on its way".
    #[serde(default)]
    pub mo_scheduled: u64,
    pub deliver_resps_received: u64,
    pub binds: u64,
    pub bind_failures: u64,
    /// Connections the simulator dropped on purpose (random disconnects).
    pub disconnects: u64,
}

impl Tally {
    pub fn new() -> Self {
        Self {
            seen: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            partials: Mutex::new(HashMap::new()),
            parts_hist: Mutex::new(BTreeMap::new()),
            rejected: Mutex::new(BTreeMap::new()),
            submits: AtomicU64::new(0),
            parts_accepted: AtomicU64::new(0),
            unique: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            duplicate_parts: AtomicU64::new(0),
            dlrs_sent: AtomicU64::new(0),
            mo_sent: AtomicU64::new(0),
            mo_scheduled: AtomicU64::new(0),
            deliver_resps: AtomicU64::new(0),
            binds: AtomicU64::new(0),
            bind_failures: AtomicU64::new(0),
            disconnects: AtomicU64::new(0),
        }
    }

    /// Counts `n` submit PDUs read (before any accept/reject decision).
    pub(crate) fn count_submits(&self, n: u64) {
        self.submits.fetch_add(n, Ordering::Relaxed);
    }

    /// Counts a rejected submit under `key` (e.g. `smpp:0x00000058`).
    pub(crate) fn count_rejected(&self, key: &str) {
        let mut m = lock(&self.rejected);
        match m.get_mut(key) {
            Some(v) => *v += 1,
            None => {
                m.insert(key.to_owned(), 1);
            }
        }
    }

    /// Records one accepted part; see [`Recorded`].
    pub fn record<'a>(&self, piece: Piece<'a>) -> Recorded<'a> {
        self.parts_accepted.fetch_add(1, Ordering::Relaxed);
        match piece.concat {
            Some(c) if c.total > 1 && c.seq >= 1 && c.seq <= c.total => self.record_part(piece, c),
            _ => self.complete(piece.dest, Cow::Borrowed(piece.payload), 1),
        }
    }

    fn record_part<'a>(&self, piece: Piece<'a>, c: Concat) -> Recorded<'a> {
        let key = PartKey {
            source: piece.source.into(),
            dest: piece.dest.into(),
            reference: c.reference,
            total: c.total,
        };
        let full = {
            let mut partials = lock(&self.partials);
            let entry = partials.entry(key.clone()).or_insert_with(|| Partial {
                parts: vec![None; c.total as usize],
                have: 0,
            });
            let slot = &mut entry.parts[c.seq as usize - 1];
            if slot.is_some() {
                self.duplicate_parts.fetch_add(1, Ordering::Relaxed);
                return Recorded::DuplicatePart;
            }
            *slot = Some(piece.payload.into());
            entry.have += 1;
            if entry.have < c.total {
                return Recorded::Partial;
            }
            partials.remove(&key)
        };
        let Some(full) = full else {
            return Recorded::Partial;
        };
        let payload: Vec<u8> = full
            .parts
            .into_iter()
            .flatten()
            .flat_map(|p| p.into_vec())
            .collect();
        self.complete(piece.dest, Cow::Owned(payload), c.total)
    }

    fn complete<'a>(&self, dest: &[u8], payload: Cow<'a, [u8]>, parts: u8) -> Recorded<'a> {
        let mut key = Vec::with_capacity(dest.len() + 1 + payload.len());
        key.extend_from_slice(dest);
        key.push(0);
        key.extend_from_slice(&payload);
        let shard = (self.hasher.hash_one(&key) as usize) % SHARDS;
        let duplicate = {
            let mut seen = lock(&self.seen[shard]);
            let n = seen.entry(key.into_boxed_slice()).or_insert(0);
            *n += 1;
            *n > 1
        };
        if duplicate {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
        } else {
            self.unique.fetch_add(1, Ordering::Relaxed);
            *lock(&self.parts_hist).entry(parts).or_insert(0) += 1;
        }
        Recorded::Complete { duplicate, payload }
    }

    /// A consistent-enough copy: each counter is exact, read one after another.
    pub fn snapshot(&self) -> TallySnapshot {
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
        TallySnapshot {
            submits_received: ld(&self.submits),
            parts_accepted: ld(&self.parts_accepted),
            unique_messages: ld(&self.unique),
            duplicates: ld(&self.duplicates),
            duplicate_parts: ld(&self.duplicate_parts),
            incomplete_messages: lock(&self.partials).len() as u64,
            parts_per_message: lock(&self.parts_hist)
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
            rejected: lock(&self.rejected).clone(),
            dlrs_sent: ld(&self.dlrs_sent),
            mo_sent: ld(&self.mo_sent),
            mo_scheduled: ld(&self.mo_scheduled),
            deliver_resps_received: ld(&self.deliver_resps),
            binds: ld(&self.binds),
            bind_failures: ld(&self.bind_failures),
            disconnects: ld(&self.disconnects),
        }
    }
}

/// Locks ignoring poisoning: counters stay meaningful even if a holder panicked.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl TallySnapshot {
    /// Writes the snapshot as pretty JSON.
    pub fn write_json(&self, path: &std::path::Path) -> std::io::Result<()> {
        let s = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(path, s)
    }

    /// Writes the snapshot as pretty JSON to `<path>.tmp`, then renames it over `path`, so a
    /// reader polling `path` sees either the previous or the new tally, never a partial file.
    pub fn write_json_atomic(&self, path: &std::path::Path) -> std::io::Result<()> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = std::path::PathBuf::from(tmp);
        self.write_json(&tmp)?;
        std::fs::rename(&tmp, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece<'a>(dest: &'a [u8], payload: &'a [u8], concat: Option<Concat>) -> Piece<'a> {
        Piece {
            source: b"src",
            dest,
            payload,
            concat,
        }
    }

    #[test]
    fn counts_unique_and_duplicates() {
        let t = Tally::new();
        assert!(matches!(
            t.record(piece(b"1", b"a", None)),
            Recorded::Complete {
                duplicate: false,
                ..
            }
        ));
        assert!(matches!(
            t.record(piece(b"2", b"a", None)),
            Recorded::Complete {
                duplicate: false,
                ..
            }
        ));
        assert!(matches!(
            t.record(piece(b"1", b"a", None)),
            Recorded::Complete {
                duplicate: true,
                ..
            }
        ));
        let s = t.snapshot();
        assert_eq!(
            (s.unique_messages, s.duplicates, s.parts_accepted),
            (2, 1, 3)
        );
    }

    #[test]
    fn reassembles_out_of_order_and_counts_repeated_parts() {
        let t = Tally::new();
        let c = |seq| {
            Some(Concat {
                reference: 9,
                total: 3,
                seq,
            })
        };
        assert_eq!(t.record(piece(b"1", b"cc", c(3))), Recorded::Partial);
        assert_eq!(t.record(piece(b"1", b"aa", c(1))), Recorded::Partial);
        assert_eq!(t.record(piece(b"1", b"aa", c(1))), Recorded::DuplicatePart);
        assert_eq!(t.snapshot().incomplete_messages, 1);
        match t.record(piece(b"1", b"bb", c(2))) {
            Recorded::Complete { duplicate, payload } => {
                assert!(!duplicate);
                assert_eq!(&*payload, b"aabbcc");
            }
            other => panic!("{other:?}"),
        }
        // The same text sent as a single part is the same message.
        assert!(matches!(
            t.record(piece(b"1", b"aabbcc", None)),
            Recorded::Complete {
                duplicate: true,
                ..
            }
        ));
        let s = t.snapshot();
        assert_eq!(s.parts_per_message.get("3"), Some(&1));
        assert_eq!(
            (
                s.unique_messages,
                s.duplicates,
                s.duplicate_parts,
                s.incomplete_messages
            ),
            (1, 1, 1, 0)
        );
    }

    #[test]
    fn udh_8_and_16_bit() {
        let (c, p) = split_udh(&[5, 0x00, 3, 0x42, 2, 1, b'h', b'i']);
        assert_eq!(
            c,
            Some(Concat {
                reference: 0x42,
                total: 2,
                seq: 1
            })
        );
        assert_eq!(p, b"hi");
        let (c, p) = split_udh(&[6, 0x08, 4, 0x12, 0x34, 3, 2, b'x']);
        assert_eq!(
            c,
            Some(Concat {
                reference: 0x1234,
                total: 3,
                seq: 2
            })
        );
        assert_eq!(p, b"x");
        // Port-addressing only: no concatenation, UDH still stripped.
        let (c, p) = split_udh(&[6, 0x05, 4, 0x0B, 0x84, 0x23, 0xF0, 9]);
        assert_eq!((c, p), (None, &[9u8][..]));
        // Truncated UDH: left as is.
        assert_eq!(split_udh(&[9, 0]), (None, &[9u8, 0][..]));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]
        #[test]
        fn split_udh_never_panics(d in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let _ = split_udh(&d);
        }
    }
}

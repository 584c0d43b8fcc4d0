//! Gateway message ids: a sortable `u64` and its text form.
//!
//! Layout: `unix_ms << 20 | counter` — 44 bits of milliseconds (good until the year 2527) and a
//! 20-bit per-millisecond counter (node bits and a sequence, below), so ids sort by creation
//! time.
//!
//! Text form: **26-character Crockford base32 laid out as a ULID** — the 48-bit ULID time field
//! holds the millisecond part and the 80-bit "random" field holds the counter, zero-extended.
//! So the HTTP contract's `01JD3Q5V8Q0000000000000001` is the id with counter 1, any ULID tool
//! shows the right creation time, and string order equals numeric order.
//!
//! Node bits: the generator writes its node number (`storage.node`, 0 by default) into the top
//! [`NODE_BITS`] of the counter and counts in the low [`SEQ_BITS`], so gateways sharing one
//! clustered store never make the same id; past 4 096 ids in a millisecond it borrows the next
//! millisecond rather than spill into another node's bits. A single gateway (node 0) makes the
//! same ids as before node bits existed, at any rate below 4 M ids a second.
//!
//! Invariant: [`IdGenerator::next`] is strictly increasing for one generator, even if the wall
//! clock steps backwards (it then keeps counting from the last id).

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bits reserved for the per-millisecond counter.
const COUNTER_BITS: u32 = 20;
/// High bits of the counter that name the node that made the id.
pub const NODE_BITS: u32 = 8;

/// Low bits of the counter: the per-millisecond sequence of one node.
pub const SEQ_BITS: u32 = COUNTER_BITS - NODE_BITS;
/// Crockford base32 alphabet (no I, L, O, U).
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Length of the text form.
pub const ID_TEXT_LEN: usize = 26;

/// A hash map keyed by message ids, for the store writer's memories (`in_flight.rs`,
/// `body_cache.rs`). Fx hashing is one multiply where std's SipHash is a few dozen
/// instructions (2.8 % of the gateway's CPU samples at full speed were SipHash); its keys are
/// ids this gateway made, never network input, so no one can pick keys that collide.
pub(crate) type IdMap<V> = rustc_hash::FxHashMap<u64, V>;

/// A gateway message id. `Ord` is creation order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId(pub u64);

impl MessageId {
    /// Builds the id for millisecond `unix_ms` and `counter` (only the low 20 bits are used).
    pub const fn from_parts(unix_ms: u64, counter: u32) -> Self {
        Self((unix_ms << COUNTER_BITS) | (counter as u64 & ((1 << COUNTER_BITS) - 1)))
    }

    /// Milliseconds since the Unix epoch at which the id was made.
    pub const fn unix_ms(self) -> u64 {
        self.0 >> COUNTER_BITS
    }

    /// The per-millisecond counter.
    pub const fn counter(self) -> u32 {
        (self.0 & ((1 << COUNTER_BITS) - 1)) as u32
    }

    /// Big-endian bytes: the storage key form, which sorts like the number.
    pub const fn to_be_bytes(self) -> [u8; 8] {
        self.0.to_be_bytes()
    }

    /// The 128-bit ULID value this id is shown as.
    const fn as_ulid(self) -> u128 {
        ((self.unix_ms() as u128) << 80) | self.counter() as u128
    }

    /// The 26-character text form as ASCII bytes, on the stack (what `Display` writes), for
    /// a wire field that takes bytes.
    #[must_use]
    pub fn to_text(self) -> [u8; ID_TEXT_LEN] {
        let v = self.as_ulid();
        let mut out = [0u8; ID_TEXT_LEN];
        for (i, slot) in out.iter_mut().enumerate() {
            // 26 chars * 5 bits = 130 bits; the first char carries only the top 3 bits.
            let shift = 5 * (ID_TEXT_LEN - 1 - i);
            *slot = ALPHABET[((v >> shift) & 0x1F) as usize];
        }
        out
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let out = self.to_text();
        // The alphabet is ASCII, so this never fails; fall back to an error rather than panic.
        f.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?)
    }
}

/// Why a text id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseIdError {
    /// Not 26 characters.
    #[error("id must be {ID_TEXT_LEN} characters, got {0}")]
    Length(usize),
    /// A character outside Crockford base32.
    #[error("invalid character {0:?} in id")]
    Char(char),
    /// Valid ULID text, but not one this gateway could have issued.
    #[error("not a sluice id (value out of range)")]
    Range,
}

fn decode_char(c: u8) -> Option<u8> {
    let c = c.to_ascii_uppercase();
    let c = match c {
        b'I' | b'L' => b'1',
        b'O' => b'0',
        other => other,
    };
    ALPHABET.iter().position(|&a| a == c).map(|p| p as u8)
}

impl FromStr for MessageId {
    type Err = ParseIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bytes = s.as_bytes();
        if bytes.len() != ID_TEXT_LEN {
            return Err(ParseIdError::Length(s.chars().count()));
        }
        let mut v: u128 = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let d = decode_char(b).ok_or_else(|| ParseIdError::Char(char::from(b)))?;
            if i == 0 && d > 7 {
                return Err(ParseIdError::Range);
            }
            v = (v << 5) | u128::from(d);
        }
        let ms = v >> 80;
        let rest = v & ((1u128 << 80) - 1);
        if ms >= (1u128 << (64 - COUNTER_BITS)) || rest >= (1u128 << COUNTER_BITS) {
            return Err(ParseIdError::Range);
        }
        Ok(Self::from_parts(ms as u64, rest as u32))
    }
}

/// Serialised as the 26-character text form (what the HTTP API shows).
impl serde::Serialize for MessageId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for MessageId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Hands out strictly increasing ids; shared by all ingress tasks.
#[derive(Debug, Default)]
pub struct IdGenerator {
    last: AtomicU64,
    /// This gateway's node number, already shifted into place in the counter.
    node: u64,
}

impl IdGenerator {
    /// A generator for node 0 that will only return ids greater than `after` (the newest
    /// stored id, so a restart never reissues an id even when the clock went backwards).
    pub fn starting_after(after: Option<MessageId>) -> Self {
        Self::for_node(after, 0)
    }

    /// [`starting_after`](Self::starting_after) for node `node`: every id it returns carries
    /// `node` in its counter's top [`NODE_BITS`].
    pub fn for_node(after: Option<MessageId>, node: u8) -> Self {
        Self {
            last: AtomicU64::new(after.map_or(0, |id| id.0)),
            node: u64::from(node) << SEQ_BITS,
        }
    }

    /// The node number written into every id.
    pub fn node(&self) -> u8 {
        // The field holds at most NODE_BITS bits above SEQ_BITS, so this never truncates.
        u8::try_from(self.node >> SEQ_BITS).unwrap_or(u8::MAX)
    }

    /// The next id for wall-clock time `now_ms`.
    pub fn next(&self, now_ms: u64) -> MessageId {
        const NODE_MASK: u64 = ((1 << NODE_BITS) - 1) << SEQ_BITS;
        let floor = (now_ms << COUNTER_BITS) | self.node;
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            let mut candidate = floor.max(last.saturating_add(1));
            if candidate & NODE_MASK != self.node {
                // The sequence ran out in this millisecond (or `last` was made with other
                // node bits): first id of this node in the next millisecond.
                candidate = (((candidate >> COUNTER_BITS) + 1) << COUNTER_BITS) | self.node;
            }
            match self.last.compare_exchange_weak(
                last,
                candidate,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return MessageId(candidate),
                Err(actual) => last = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contract_example_round_trips() {
        let id: MessageId = "01JD3Q5V8Q0000000000000001".parse().unwrap();
        assert_eq!(id.counter(), 1);
        assert_eq!(id.to_string(), "01JD3Q5V8Q0000000000000001");
        // 2024-11-20 (UTC day 20047), as the ULID time field says.
        assert_eq!(id.unix_ms() / 86_400_000, 20_047);
    }

    #[test]
    fn text_order_is_numeric_order() {
        let ids = [
            MessageId::from_parts(1, 0),
            MessageId::from_parts(1, 5),
            MessageId::from_parts(1_700_000_000_000, 0),
            MessageId::from_parts(1_700_000_000_001, (1 << 20) - 1),
        ];
        for w in ids.windows(2) {
            assert!(w[0] < w[1]);
            assert!(w[0].to_string() < w[1].to_string());
            assert_eq!(w[1].to_string().parse::<MessageId>().unwrap(), w[1]);
        }
    }

    #[test]
    fn rejects_bad_text() {
        assert_eq!("abc".parse::<MessageId>(), Err(ParseIdError::Length(3)));
        assert!(matches!(
            "01JD3Q5V8Q000000000000000U".parse::<MessageId>(),
            Err(ParseIdError::Char('U'))
        ));
        // Counter wider than 20 bits.
        assert_eq!(
            "01JD3Q5V8Q0000000000100000".parse::<MessageId>(),
            Err(ParseIdError::Range)
        );
        assert_eq!(
            "8ZZZZZZZZZZZZZZZZZZZZZZZZZ".parse::<MessageId>(),
            Err(ParseIdError::Range)
        );
        // Crockford aliases are accepted.
        assert_eq!(
            "oljd3q5v8q0000000000000001".parse::<MessageId>().unwrap(),
            "01JD3Q5V8Q0000000000000001".parse::<MessageId>().unwrap()
        );
    }

    #[test]
    fn generator_is_monotonic_when_clock_steps_back() {
        let g = IdGenerator::starting_after(Some(MessageId::from_parts(1000, 7)));
        let a = g.next(999);
        let b = g.next(500);
        let c = g.next(2000);
        assert!(MessageId::from_parts(1000, 7) < a && a < b && b < c);
        assert_eq!(c, MessageId::from_parts(2000, 0));
    }

    #[test]
    fn node_bits_keep_nodes_apart_and_ids_increasing() {
        let a = IdGenerator::for_node(None, 0);
        let b = IdGenerator::for_node(None, 3);
        assert_eq!(b.node(), 3);
        let mut seen = std::collections::HashSet::new();
        let mut prev = [MessageId(0), MessageId(0)];
        // Far more than one millisecond's sequence, all at the same wall-clock time.
        for _ in 0..3 * (1 << SEQ_BITS) {
            for (i, g) in [&a, &b].into_iter().enumerate() {
                let id = g.next(5_000);
                assert!(id > prev[i], "{id:?} after {:?}", prev[i]);
                prev[i] = id;
                assert_eq!(u64::from(id.counter()) >> SEQ_BITS, u64::from(g.node()));
                assert!(seen.insert(id), "{id:?} issued twice");
            }
        }
        // Node 0 at a modest rate makes the ids of the layout without node bits.
        let c = IdGenerator::starting_after(None);
        assert_eq!(c.next(7_000), MessageId::from_parts(7_000, 0));
        assert_eq!(c.next(7_000), MessageId::from_parts(7_000, 1));
        // After ids of another layout (a full 20-bit counter), the next is still greater.
        let d = IdGenerator::for_node(Some(MessageId::from_parts(9_000, (1 << 20) - 2)), 1);
        let n = d.next(9_000);
        assert!(n > MessageId::from_parts(9_000, (1 << 20) - 2));
        assert_eq!(n, MessageId::from_parts(9_001, 1 << SEQ_BITS));
    }
}

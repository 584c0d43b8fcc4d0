//! Key layout of the single ordered key space. The first byte names the "table"; integers are
//! big-endian so byte order is numeric order; string components other than the last are
//! followed by a 0x00 separator (so accounts and channel names must not contain NUL — the
//! store refuses such messages).
//!
//! | tag | key | value |
//! |---|---|---|
//! | 0x01 message | id | message body record (`codec.rs`), written once (with the first state embedded, for a message inserted queued) |
//! | 0x02 ready | channel, 0, lane, due_ms, id | empty, or [`READY_BODY_ONLY`]: the message has no state record yet (its state is in its body record) |
//! | 0x03 lease expiry | expiry_ms, id | channel (for the in-flight counter; empty in stores written before the queue counters) |
//! | 0x04 center id | channel, 0, center_id | id, part (u16); with the redo log, held in the writer's memory while the part waits and retired when its message ends, so most never reach the engine (`short_lived.rs`) |
//! | 0x05 outbox | account, 0, seq | receipt JSON |
//! | 0x06 outbox next seq | account | u64 |
//! | 0x07 idempotency | account, 0, client_ref | id |
//! | 0x08 terminal | done_ms, id | empty |
//! | 0x09 early receipt | channel, 0, center_id | arrived_ms, receipt JSON |
//! | 0x0A early receipt age | arrived_ms, channel, 0, center_id | empty |
//! | 0x0B message state | id | message state record (`codec.rs`); absent until the first change after insert, and not written for a bare lease (that in-flight record lives in memory, `in_flight.rs`) |
//! | 0x0C expiry | expires_at_ms, id | empty (ready messages with a validity end) |
//! | 0x10 MO outbox | account, 0, seq | MO JSON (`MoEvent`) |
//! | 0x11 MO outbox next seq | account | u64 |
//! | 0x12 queue counters | (empty): marker; channel, 0, lane or 0xFF (in flight) | version; u64 (`depth.rs`) |
//! | 0x13 active stop | stop id | stop record JSON (`stop.rs`) |
//! | 0x14 retired stop | stop id | stop record JSON, kept for progress queries |
//! | 0x15 tag index | account, 0, tag key, 0, tag value, 0, id | empty (non-final messages only) |
//! | 0x16 pause | kind (`c` channel, `a` account), name | empty |
//! | 0x17 parked | account, 0, ready key without its tag | empty (a paused account's leased-over messages) |
//! | 0x18 stop id counter | (empty) | u64 |
//! | 0x19 indexed tag names | (empty) | names, each followed by 0 (absent: `task`) |
//! | 0x1A content references | digest (32 bytes) | u64: messages whose record references the content (`content.rs`) |
//! | 0x1B content released | digest (32 bytes) | empty: the count reached 0, the file may go |
//! | 0x1C destination index | to, 0, id | empty (every message until purged; operators' lookup by number) |
//! | 0x1D redo log position | (empty) | u64 BE: the last log group this state holds (`wal.rs`) |
//!
//! The two outboxes (receipts 0x05/0x06, MO 0x10/0x11) share one layout; [`Outbox`] names
//! which one a key function builds.

use smallvec::SmallVec;

use super::id::MessageId;
use super::model::Lane;

/// A key built for one engine call. Most keys a message's ops build (ready, center id,
/// outbox entry, idempotency) are passed as a slice and dropped, so they are made on the
/// stack: a heap copy each was about seven allocations a message. Names longer than the
/// inline size spill to the heap, as a `Vec` would.
pub(crate) type Key = SmallVec<[u8; 64]>;

pub(crate) const MESSAGE: u8 = 0x01;
pub(crate) const READY: u8 = 0x02;
pub(crate) const LEASE: u8 = 0x03;
pub(crate) const CENTER: u8 = 0x04;
pub(crate) const OUTBOX: u8 = 0x05;
pub(crate) const OUTBOX_SEQ: u8 = 0x06;
pub(crate) const IDEM: u8 = 0x07;
pub(crate) const TERMINAL: u8 = 0x08;
pub(crate) const EARLY: u8 = 0x09;
pub(crate) const EARLY_AGE: u8 = 0x0A;
pub(crate) const STATE: u8 = 0x0B;
pub(crate) const EXPIRY: u8 = 0x0C;
pub(crate) const MO_OUTBOX: u8 = 0x10;
pub(crate) const MO_OUTBOX_SEQ: u8 = 0x11;

/// Which per-account outbox a key belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outbox {
    /// Receipt events (tags 0x05 / 0x06).
    Receipts,
    /// Mobile-originated replies (tags 0x10 / 0x11).
    Mo,
}

impl Outbox {
    const fn tags(self) -> (u8, u8) {
        match self {
            Self::Receipts => (OUTBOX, OUTBOX_SEQ),
            Self::Mo => (MO_OUTBOX, MO_OUTBOX_SEQ),
        }
    }

    /// Prefix of the account's entries.
    pub(crate) fn prefix(self, account: &str) -> Key {
        tagged_str(self.tags().0, account)
    }

    /// The account's entry `seq`.
    pub(crate) fn entry(self, account: &str, seq: u64) -> Key {
        let mut k = self.prefix(account);
        k.extend_from_slice(&seq.to_be_bytes());
        k
    }

    /// The account and sequence of one of this outbox's entry keys ([`entry`](Self::entry)),
    /// `None` for any other key.
    pub(crate) fn parse_entry(self, key: &[u8]) -> Option<(&str, u64)> {
        if key.first() != Some(&self.tags().0) {
            return None;
        }
        let at = key.len().checked_sub(8)?;
        let account = key.get(1..at.checked_sub(1)?)?;
        (key.get(at - 1) == Some(&0))
            .then(|| Some((std::str::from_utf8(account).ok()?, be_u64(key, at)?)))
            .flatten()
    }

    /// The account's next-sequence counter.
    pub(crate) fn next_seq(self, account: &str) -> Key {
        let mut k = Key::new();
        k.push(self.tags().1);
        k.extend_from_slice(account.as_bytes());
        k
    }
}

pub(crate) const DEPTH: u8 = 0x12;
pub(crate) const STOP: u8 = 0x13;
pub(crate) const STOP_DONE: u8 = 0x14;
pub(crate) const TAGGED: u8 = 0x15;
pub(crate) const PAUSE: u8 = 0x16;
pub(crate) const PARKED: u8 = 0x17;
pub(crate) const STOP_SEQ: u8 = 0x18;
pub(crate) const STOP_TAGS: u8 = 0x19;
pub(crate) const CONTENT_REF: u8 = 0x1A;
pub(crate) const CONTENT_FREE: u8 = 0x1B;

/// Key of a content digest's reference count (`CONTENT_REF`) or release marker
/// (`CONTENT_FREE`).
pub(crate) fn content(tag: u8, digest: &[u8; 32]) -> [u8; 33] {
    let mut k = [0u8; 33];
    k[0] = tag;
    k[1..].copy_from_slice(digest);
    k
}
/// Destination index: one empty entry per stored message (destination, id), written with
/// the message and removed at purge, so operators can look a number's messages up.
pub(crate) const BY_TO: u8 = 0x1C;
/// The last redo-log group applied (`wal.rs`), written in the transaction of every logged
/// group: after a crash, replay starts after the one the engine's last durable commit holds.
pub(crate) const LOG_SEQ: u8 = 0x1D;

/// Prefix of the destination index entries of `to`.
pub(crate) fn by_to_prefix(to: &str) -> Key {
    tagged_str(BY_TO, to)
}

/// Destination index entry of message `id` to `to`.
pub(crate) fn by_to(to: &str, id: MessageId) -> Key {
    let mut k = by_to_prefix(to);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// Key of an active (`STOP`) or retired (`STOP_DONE`) stop record.
pub(crate) fn stop(tag: u8, id: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = tag;
    k[1..].copy_from_slice(&id.to_be_bytes());
    k
}

/// Prefix of the tag index entries of (account, tag key, tag value).
pub(crate) fn tagged_prefix(account: &str, key: &str, value: &str) -> Key {
    let mut k = tagged_str(TAGGED, account);
    k.extend_from_slice(key.as_bytes());
    k.push(0);
    k.extend_from_slice(value.as_bytes());
    k.push(0);
    k
}

/// Tag index entry of message `id`.
pub(crate) fn tagged(account: &str, key: &str, value: &str, id: MessageId) -> Key {
    let mut k = tagged_prefix(account, key, value);
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// Key of a pause switch: `kind` is `b'c'` (channel) or `b'a'` (account).
pub(crate) fn pause(kind: u8, name: &str) -> Key {
    let mut k = Key::with_capacity(2 + name.len());
    k.push(PAUSE);
    k.push(kind);
    k.extend_from_slice(name.as_bytes());
    k
}

/// Prefix of the parked messages of `account`.
pub(crate) fn parked_prefix(account: &str) -> Key {
    tagged_str(PARKED, account)
}

/// Parked entry of `account` for the ready key `ready_key`.
pub(crate) fn parked(account: &str, ready_key: &[u8]) -> Key {
    let mut k = parked_prefix(account);
    k.extend_from_slice(ready_key.get(1..).unwrap_or_default());
    k
}

/// The ready key a parked entry of `account` stands for.
pub(crate) fn unparked(account: &str, parked_key: &[u8]) -> Option<Vec<u8>> {
    let rest = parked_key.get(parked_prefix(account).len()..)?;
    let mut k = Vec::with_capacity(1 + rest.len());
    k.push(READY);
    k.extend_from_slice(rest);
    Some(k)
}

/// Slot byte of a channel's in-flight counter (ready counters use their lane's byte).
pub(crate) const IN_FLIGHT_SLOT: u8 = 0xFF;

/// Key of a queue counter: `slot` is a lane byte or [`IN_FLIGHT_SLOT`].
pub(crate) fn depth(channel: &str, slot: u8) -> Key {
    let mut k = tagged_str(DEPTH, channel);
    k.push(slot);
    k
}

/// Reads a big-endian u64 at `at`; `None` if the slice is too short.
pub(crate) fn be_u64(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at + 8)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_be_bytes(a))
}

/// Reads a big-endian u16 at `at`.
pub(crate) fn be_u16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at + 2)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

/// The exclusive end of every key starting with `prefix`.
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return end;
        }
    }
    vec![0xFF; prefix.len() + 1]
}

pub(crate) fn message(id: MessageId) -> [u8; 9] {
    id_key(MESSAGE, id)
}

pub(crate) fn state(id: MessageId) -> [u8; 9] {
    id_key(STATE, id)
}

/// A key of `tag` naming one message: the tag, then the id.
pub(crate) fn id_key(tag: u8, id: MessageId) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = tag;
    k[1..].copy_from_slice(&id.to_be_bytes());
    k
}

/// The message id in `key` when it is a key of `tag` naming one message ([`message`],
/// [`state`]); `None` for any other key.
pub(crate) fn id_in(tag: u8, key: &[u8]) -> Option<u64> {
    (key.len() == 9 && key[0] == tag)
        .then(|| be_u64(key, 1))
        .flatten()
}

fn tagged_str(tag: u8, s: &str) -> Key {
    let mut k = Key::with_capacity(2 + s.len() + 17);
    k.push(tag);
    k.extend_from_slice(s.as_bytes());
    k.push(0);
    k
}

/// Prefix of the ready queue of (channel, lane).
pub(crate) fn ready_prefix(channel: &str, lane: Lane) -> Key {
    let mut k = tagged_str(READY, channel);
    k.push(lane.as_byte());
    k
}

/// The value of a ready key written by insert for a message whose state is in its body
/// record: a lease then reads the body alone, not a state record that is not there. Any other
/// ready key's value is empty (a state record may exist: read it).
pub(crate) const READY_BODY_ONLY: &[u8] = &[1];

pub(crate) fn ready(channel: &str, lane: Lane, due_ms: u64, id: MessageId) -> Key {
    let mut k = ready_prefix(channel, lane);
    k.extend_from_slice(&due_ms.to_be_bytes());
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// The id at the end of a ready key.
pub(crate) fn ready_id(key: &[u8]) -> Option<MessageId> {
    key.len()
        .checked_sub(8)
        .and_then(|at| be_u64(key, at))
        .map(MessageId)
}

pub(crate) fn lease(expiry_ms: u64, id: MessageId) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = LEASE;
    k[1..9].copy_from_slice(&expiry_ms.to_be_bytes());
    k[9..].copy_from_slice(&id.to_be_bytes());
    k
}

pub(crate) fn center(channel: &str, center_id: &str) -> Key {
    let mut k = tagged_str(CENTER, channel);
    k.extend_from_slice(center_id.as_bytes());
    k
}

pub(crate) fn center_value(id: MessageId, part: u16) -> [u8; 10] {
    let mut v = [0u8; 10];
    v[..8].copy_from_slice(&id.to_be_bytes());
    v[8..].copy_from_slice(&part.to_be_bytes());
    v
}

pub(crate) fn outbox_prefix(account: &str) -> Key {
    Outbox::Receipts.prefix(account)
}

pub(crate) fn outbox(account: &str, seq: u64) -> Key {
    Outbox::Receipts.entry(account, seq)
}

#[cfg(test)]
pub(crate) fn outbox_seq(account: &str) -> Key {
    Outbox::Receipts.next_seq(account)
}

pub(crate) fn idem(account: &str, client_ref: &str) -> Key {
    let mut k = tagged_str(IDEM, account);
    k.extend_from_slice(client_ref.as_bytes());
    k
}

pub(crate) fn terminal(done_ms: u64, id: MessageId) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = TERMINAL;
    k[1..9].copy_from_slice(&done_ms.to_be_bytes());
    k[9..].copy_from_slice(&id.to_be_bytes());
    k
}

/// Expiry index entry: lets a sweep end expired messages without waiting for a lease.
pub(crate) fn expiry(expires_at_ms: u64, id: MessageId) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = EXPIRY;
    k[1..9].copy_from_slice(&expires_at_ms.to_be_bytes());
    k[9..].copy_from_slice(&id.to_be_bytes());
    k
}

pub(crate) fn early(channel: &str, center_id: &str) -> Key {
    let mut k = tagged_str(EARLY, channel);
    k.extend_from_slice(center_id.as_bytes());
    k
}

pub(crate) fn early_age(arrived_ms: u64, early_key: &[u8]) -> Key {
    let mut k = Key::with_capacity(9 + early_key.len());
    k.push(EARLY_AGE);
    k.extend_from_slice(&arrived_ms.to_be_bytes());
    // Keep the early key without its tag so the entry can be found again.
    k.extend_from_slice(&early_key[1..]);
    k
}

/// Hex of a key, for error messages.
pub(crate) fn hex(key: &[u8]) -> String {
    key.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_keys_are_told_from_other_keys() {
        assert_eq!(
            Outbox::Receipts.parse_entry(&outbox("acme", 7)),
            Some(("acme", 7))
        );
        assert_eq!(Outbox::Receipts.parse_entry(&outbox("", 1)), Some(("", 1)));
        assert_eq!(
            Outbox::Receipts.parse_entry(&Outbox::Mo.entry("acme", 7)),
            None
        );
        assert_eq!(Outbox::Receipts.parse_entry(&outbox_seq("acme")), None);
        assert_eq!(Outbox::Receipts.parse_entry(&[OUTBOX, 1, 2]), None);
        assert_eq!(Outbox::Receipts.parse_entry(&[]), None);
    }

    #[test]
    fn ready_keys_sort_by_lane_then_due_then_id() {
        let a = ready("c", Lane::Otp, 500, MessageId(9));
        let b = ready("c", Lane::Notification, 1, MessageId(1));
        let c = ready("c", Lane::Notification, 2, MessageId(0));
        let d = ready("c", Lane::Notification, 2, MessageId(1));
        assert!(a < b && b < c && c < d);
        // A channel whose name extends another's never falls in its range.
        let other = ready("c1", Lane::Otp, 0, MessageId(0));
        let p = ready_prefix("c", Lane::Otp);
        assert!(!(other >= p && other[..] < prefix_end(&p)[..]));
        assert_eq!(ready_id(&d), Some(MessageId(1)));
    }

    #[test]
    fn the_two_outboxes_never_share_keys() {
        let r = Outbox::Receipts.entry("a", 1);
        let m = Outbox::Mo.entry("a", 1);
        assert_ne!(r, m);
        let p = Outbox::Receipts.prefix("a");
        assert!(!(m >= p && m[..] < prefix_end(&p)[..]));
        assert_eq!(r, outbox("a", 1));
        assert_ne!(Outbox::Mo.next_seq("a"), outbox_seq("a"));
    }

    #[test]
    fn parked_keys_give_back_their_ready_key() {
        let r = ready("c", Lane::Marketing, 77, MessageId(5));
        let p = parked("acme", &r);
        assert!(p.starts_with(&parked_prefix("acme")));
        assert_eq!(unparked("acme", &p), Some(r.to_vec()));
        // An account whose name extends another's never falls in its range.
        let other = parked("acme2", &ready("c", Lane::Otp, 0, MessageId(0)));
        let pre = parked_prefix("acme");
        assert!(!(other >= pre && other[..] < prefix_end(&pre)[..]));
    }

    #[test]
    fn tag_index_keys_group_by_account_name_and_value() {
        let pre = tagged_prefix("acme", "task", "42");
        let k = tagged("acme", "task", "42", MessageId(9));
        assert!(k.starts_with(&pre));
        assert_eq!(k.len(), pre.len() + 8);
        for (a, n, v) in [
            ("acme", "task", "420"),
            ("acme", "task2", "42"),
            ("acme2", "task", "42"),
        ] {
            let other = tagged(a, n, v, MessageId(1));
            assert!(
                !(other >= pre && other[..] < prefix_end(&pre)[..]),
                "{a} {n} {v}"
            );
        }
    }

    #[test]
    fn prefix_end_handles_ff() {
        assert_eq!(prefix_end(&[1, 2]), vec![1, 3]);
        assert_eq!(prefix_end(&[1, 0xFF]), vec![2]);
    }
}

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
//!
//! **MMS (MM7)**: one piece per recipient of an accepted SubmitReq, identity = (recipient
//! address, MD5 of the subject and of every decoded content leaf's type and bytes): a SubmitReq
//! sent again with a fresh TransactionID or MIME boundary is still a duplicate.
//!
//! **WAP Push**: a complete message whose parts are 8-bit and carry a UDH port IE (0x05) to
//! destination port 2948 is decoded as a connectionless WSP push (after reassembly) and its
//! WBXML public id counted in `wap_push`: SI (0x05), SL (0x06) or `other` (anything else,
//! including a body that does not decode). Only unique messages are counted, and the last
//! [`RECENT_PUSHES`] pushes are kept byte for byte (each part's UDH and the reassembled
//! payload) so a test can compare them with another PPG's output.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use sluice_protocols::wap::{self, PushPdu};

const SHARDS: usize = 32;
/// WDP destination port of connectionless WAP Push (WAP-259).
pub const WAP_PUSH_PORT: u16 = 2948;
/// How many pushes [`PushTally::recent`] keeps.
pub const RECENT_PUSHES: usize = 64;

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
    /// The UDH (UDHL included) that preceded `payload`; empty when there was none.
    pub udh: &'a [u8],
    /// The data coding says 8-bit data (SMPP DCS 0x04 class, 0xF4–0xF7; CMPP Msg_Fmt 4).
    pub eight_bit: bool,
}

/// The 16-bit destination port of a UDH's port-addressing IE (0x05), if it has one.
pub fn dest_port(udh: &[u8]) -> Option<u16> {
    let ies = udh.get(1..1 + usize::from(*udh.first()?))?;
    let mut i = 0;
    while i + 2 <= ies.len() {
        let (iei, len) = (ies[i], usize::from(ies[i + 1]));
        let v = ies.get(i + 2..i + 2 + len)?;
        if iei == 0x05 && len == 4 {
            return Some(u16::from_be_bytes([v[0], v[1]]));
        }
        i += 2 + len;
    }
    None
}

/// Whether an SMPP `data_coding` means 8-bit data (GSM 03.38 §4: general group with
/// alphabet bits 01, or the message-class group 0xF_ with bit 2 set).
pub fn smpp_eight_bit(data_coding: u8) -> bool {
    match data_coding {
        0x00..=0x3F => data_coding & 0x0C == 0x04,
        0xF0..=0xFF => data_coding & 0x04 != 0,
        _ => false,
    }
}

/// WAP Push messages seen (unique, complete ones), by document type.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushTally {
    /// Service Indications (WBXML public id 0x05).
    pub si: u64,
    /// Service Loadings (WBXML public id 0x06).
    pub sl: u64,
    /// Port-2948 8-bit messages that are not a decodable SI or SL push.
    pub other: u64,
    /// The last [`RECENT_PUSHES`] pushes, oldest first.
    #[serde(default)]
    pub recent: Vec<PushRecord>,
}

/// One push as it arrived.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushRecord {
    /// Destination address.
    pub dest: String,
    /// `si`, `sl` or `other`.
    pub kind: String,
    /// Each part's UDH (UDHL included), hex, in part order.
    pub udh: Vec<String>,
    /// The reassembled payload (WSP push PDU), hex.
    pub payload: String,
}

#[derive(Debug, Default)]
struct PushState {
    si: u64,
    sl: u64,
    other: u64,
    recent: VecDeque<PushRecord>,
}

fn hex(b: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02X}");
    }
    s
}

/// `si`, `sl` or `other` for a reassembled port-2948 payload.
pub fn push_kind(payload: &[u8]) -> &'static str {
    let id = PushPdu::parse(payload)
        .ok()
        .and_then(|p| wap::wbxml_public_id(p.body));
    match id {
        Some(wap::si::PUBLIC_ID) => "si",
        Some(wap::sl::PUBLIC_ID) => "sl",
        _ => "other",
    }
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

/// One received part: its payload, and its UDH when it is addressed to the push port.
type PartBytes = (Box<[u8]>, Option<Box<[u8]>>);

#[derive(Debug)]
struct Partial {
    parts: Vec<Option<PartBytes>>,
    have: u8,
}

/// Counters for one simulator; cheap to share (`Arc<Tally>`).
#[derive(Debug)]
pub struct Tally {
    seen: Vec<Mutex<HashMap<Box<[u8]>, u32>>>,
    hasher: RandomState,
    partials: Mutex<HashMap<PartKey, Partial>>,
    pushes: Mutex<PushState>,
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
    pub(crate) content_bytes: AtomicU64,
    pub(crate) vasp_abandoned: AtomicU64,
    pub(crate) resent: AtomicU64,
    pub(crate) resent_mo: AtomicU64,
    pub(crate) connections: AtomicU64,
    pub(crate) deliver_resps_refused: AtomicU64,
    pub(crate) responses_dropped: AtomicU64,
    pub(crate) unknown_receipts: AtomicU64,
    pub(crate) duplicate_receipts: AtomicU64,
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
    /// Deliveries (receipts and MOs) sent again because the client never answered them: an
    /// SMPP/CMPP session closed first (`resend_unanswered`), or an MM7 VASP did not answer a
    /// DeliveryReportReq / DeliverReq with status 1000. `dlrs_sent` and `mo_sent` count each
    /// once, so these are exactly the duplicates the client may see.
    #[serde(default)]
    pub resent: u64,
    /// The MOs among `resent`: the client may have kept them before it went away, and MO
    /// carries no id to recognise a repeat by, so each can reach the client twice.
    #[serde(default)]
    pub resent_mo: u64,
    /// Of `deliver_resps_received`: answers with an error status (SMPP command_status other
    /// than ESME_ROK, CMPP DELIVER_RESP Result other than 0).
    #[serde(default)]
    pub deliver_resps_refused: u64,
    /// TCP connections accepted (every connect attempt that reached a listening center).
    #[serde(default)]
    pub connections: u64,
    /// Accepted submits left unanswered on purpose (`drop_response_share`).
    #[serde(default)]
    pub responses_dropped: u64,
    /// Receipts scheduled for ids never given to the client (`dlr.unknown_share`).
    #[serde(default)]
    pub unknown_receipts: u64,
    /// Receipt copies scheduled by `dlr.duplicate` (`dlrs_sent` counts copies too).
    #[serde(default)]
    pub duplicate_receipts: u64,
    /// WAP Push messages by document type (see module docs).
    #[serde(default)]
    pub wap_push: PushTally,
    /// MM7: decoded bytes of the content of accepted SubmitReqs (once per request, not per
    /// recipient).
    #[serde(default)]
    pub content_bytes: u64,
    /// MM7: reports and MOs given up after `mm7.max_attempts`.
    #[serde(default)]
    pub vasp_abandoned: u64,
}

impl Tally {
    pub fn new() -> Self {
        Self {
            seen: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            partials: Mutex::new(HashMap::new()),
            pushes: Mutex::new(PushState::default()),
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
            content_bytes: AtomicU64::new(0),
            vasp_abandoned: AtomicU64::new(0),
            resent: AtomicU64::new(0),
            resent_mo: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            deliver_resps_refused: AtomicU64::new(0),
            responses_dropped: AtomicU64::new(0),
            unknown_receipts: AtomicU64::new(0),
            duplicate_receipts: AtomicU64::new(0),
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
            _ => {
                let rec = self.complete(piece.dest, Cow::Borrowed(piece.payload), 1);
                if is_push(&piece)
                    && let Recorded::Complete {
                        duplicate: false,
                        payload,
                    } = &rec
                {
                    self.count_push(piece.dest, &[piece.udh], payload);
                }
                rec
            }
        }
    }

    fn count_push(&self, dest: &[u8], udhs: &[&[u8]], payload: &[u8]) {
        let kind = push_kind(payload);
        let mut p = lock(&self.pushes);
        match kind {
            "si" => p.si += 1,
            "sl" => p.sl += 1,
            _ => p.other += 1,
        }
        if p.recent.len() == RECENT_PUSHES {
            p.recent.pop_front();
        }
        p.recent.push_back(PushRecord {
            dest: String::from_utf8_lossy(dest).into_owned(),
            kind: kind.to_owned(),
            udh: udhs.iter().map(|u| hex(u)).collect(),
            payload: hex(payload),
        });
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
            let udh = is_push(&piece).then(|| piece.udh.into());
            *slot = Some((piece.payload.into(), udh));
            entry.have += 1;
            if entry.have < c.total {
                return Recorded::Partial;
            }
            partials.remove(&key)
        };
        let Some(full) = full else {
            return Recorded::Partial;
        };
        let parts: Vec<_> = full.parts.into_iter().flatten().collect();
        let push = parts.iter().all(|(_, udh)| udh.is_some());
        let payload: Vec<u8> = parts.iter().flat_map(|(p, _)| p.iter().copied()).collect();
        let rec = self.complete(piece.dest, Cow::Owned(payload), c.total);
        if push
            && let Recorded::Complete {
                duplicate: false,
                payload,
            } = &rec
        {
            let udhs: Vec<&[u8]> = parts.iter().filter_map(|(_, u)| u.as_deref()).collect();
            self.count_push(piece.dest, &udhs, payload);
        }
        rec
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
            resent: ld(&self.resent),
            resent_mo: ld(&self.resent_mo),
            connections: ld(&self.connections),
            deliver_resps_refused: ld(&self.deliver_resps_refused),
            responses_dropped: ld(&self.responses_dropped),
            unknown_receipts: ld(&self.unknown_receipts),
            duplicate_receipts: ld(&self.duplicate_receipts),
            wap_push: {
                let p = lock(&self.pushes);
                PushTally {
                    si: p.si,
                    sl: p.sl,
                    other: p.other,
                    recent: p.recent.iter().cloned().collect(),
                }
            },
            content_bytes: ld(&self.content_bytes),
            vasp_abandoned: ld(&self.vasp_abandoned),
        }
    }
}

fn is_push(piece: &Piece<'_>) -> bool {
    piece.eight_bit && dest_port(piece.udh) == Some(WAP_PUSH_PORT)
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
            udh: &[],
            eight_bit: false,
        }
    }

    /// Records every part of `parts` (short_message = UDH + payload) as 8-bit.
    fn record_sms(t: &Tally, dest: &[u8], parts: &[sluice_protocols::sms::Part]) {
        for p in parts {
            let sm = p.short_message();
            let (concat, payload) = split_udh(&sm);
            let udh = &sm[..sm.len() - payload.len()];
            t.record(Piece {
                source: b"src",
                dest,
                payload,
                concat,
                udh,
                eight_bit: true,
            });
        }
    }

    #[test]
    fn wap_pushes_are_decoded_and_counted_by_type() {
        use sluice_protocols::wap::{
            PushDocument, PushOptions, ServiceIndication, ServiceLoading, wap_push_sms,
        };
        let t = Tally::new();
        let si = PushDocument::Si(ServiceIndication {
            href: Some("http://www.sluice.com/a".into()),
            text: "hi".into(),
            ..Default::default()
        });
        let long_si = PushDocument::Si(ServiceIndication {
            href: Some(format!("http://example.org/{}", "x".repeat(300))),
            ..Default::default()
        });
        let sl = PushDocument::Sl(ServiceLoading {
            href: "http://www.sluice.net/x".into(),
            ..Default::default()
        });
        let opts = PushOptions::default();
        let one = wap_push_sms(&si, 1, &opts).unwrap();
        let three = wap_push_sms(&long_si, 2, &opts).unwrap();
        assert_eq!(three.len(), 3);
        record_sms(&t, b"1", &one);
        record_sms(&t, b"1", &one); // a duplicate is not a second push
        // Out of order.
        record_sms(
            &t,
            b"2",
            &[three[2].clone(), three[0].clone(), three[1].clone()],
        );
        record_sms(&t, b"3", &wap_push_sms(&sl, 3, &opts).unwrap());
        // Port 2948 but not a push PDU; and a push PDU not marked 8-bit.
        t.record(Piece {
            udh: &[6, 5, 4, 0x0B, 0x84, 0x23, 0xF0],
            eight_bit: true,
            ..piece(b"4", b"junk", None)
        });
        t.record(Piece {
            udh: &[6, 5, 4, 0x0B, 0x84, 0x23, 0xF0],
            ..piece(b"5", &one[0].payload, None)
        });
        let s = t.snapshot();
        let w = &s.wap_push;
        assert_eq!((w.si, w.sl, w.other), (2, 1, 1), "{w:?}");
        assert_eq!(w.recent.len(), 4);
        let long = &w.recent[1];
        assert_eq!((long.dest.as_str(), long.kind.as_str()), ("2", "si"));
        assert_eq!(
            long.udh,
            (1..=3)
                .map(|i| format!("0B05040B8423F0000302030{i}"))
                .collect::<Vec<_>>()
        );
        let pdu: Vec<u8> = three.iter().flat_map(|p| p.payload.clone()).collect();
        assert_eq!(long.payload, hex(&pdu));
        assert_eq!(w.recent[0].udh, ["0605040B8423F0"]);
        assert_eq!(w.recent[2].kind, "sl");
        // The JSON tally carries the counts.
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["wap_push"]["si"], 2);
        assert_eq!(json["wap_push"]["sl"], 1);
    }

    #[test]
    fn eight_bit_data_codings() {
        for dcs in [0x04, 0x14, 0xF4, 0xF5, 0xF6, 0xF7] {
            assert!(smpp_eight_bit(dcs), "{dcs:#x}");
        }
        for dcs in [0x00, 0x08, 0x03, 0xF0, 0xF1, 0x40] {
            assert!(!smpp_eight_bit(dcs), "{dcs:#x}");
        }
        assert_eq!(dest_port(&[6, 5, 4, 0x0B, 0x84, 0x23, 0xF0]), Some(2948));
        assert_eq!(dest_port(&[5, 0, 3, 1, 2, 1]), None);
        assert_eq!(dest_port(&[9, 5, 4]), None);
        assert_eq!(dest_port(&[]), None);
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
            let _ = dest_port(&d);
            let _ = push_kind(&d);
        }
    }
}

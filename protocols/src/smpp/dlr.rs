//! Delivery-receipt text (SMPP 3.4 Appendix B) and receipt extraction from deliver_sm.
//!
//! Text form: `id:IIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done date:YYMMDDhhmm
//! stat:DDDDDDD err:E text:...`. Parsing is tolerant: keys in any case and order, any field
//! missing, `submit_date`/`done_date` spellings, 10- or 12-digit dates (seconds optional),
//! and `text:` always runs to the end of the message (so keys inside the text are not
//! mistaken for fields). Values borrow from the input; nothing is allocated.
//!
//! A deliver_sm is a receipt when esm_class message type is 0x04 or it carries
//! receipted_message_id; TLVs (receipted_message_id, message_state, network_error_code)
//! take precedence over the text when both are present.

use std::io::Write as _;

use super::data_sm::DataSm;
use super::sm::{ESM_CLASS_DELIVERY_RECEIPT, ESM_CLASS_TYPE_MASK, Sm};
use super::tlv::{MessageState, NetworkErrorCode};
use super::view::SmRef;

/// A date in receipt text: `YYMMDDhhmm` or `YYMMDDhhmmss`, years taken as 2000 + YY.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReceiptDate {
    /// Full year (2000..=2099).
    pub year: u16,
    /// 1..=12.
    pub month: u8,
    /// 1..=31.
    pub day: u8,
    /// 0..=23.
    pub hour: u8,
    /// 0..=59.
    pub minute: u8,
    /// 0..=59 when the 12-digit form was used.
    pub second: Option<u8>,
}

impl ReceiptDate {
    /// Parses 10 or 12 ASCII digits; `None` for anything else or out-of-range parts.
    pub fn parse(s: &[u8]) -> Option<Self> {
        let (d, second) = match s.len() {
            10 => (digits::<10>(s)?, None),
            12 => {
                let d = digits::<12>(s)?;
                let mut head = [0u8; 10];
                head.copy_from_slice(&d[..10]);
                (head, Some(d[10] * 10 + d[11]))
            }
            _ => return None,
        };
        let two = |i: usize| d[i] * 10 + d[i + 1];
        let d = Self {
            year: 2000 + u16::from(two(0)),
            month: two(2),
            day: two(4),
            hour: two(6),
            minute: two(8),
            second,
        };
        let ok = (1..=12).contains(&d.month)
            && (1..=31).contains(&d.day)
            && d.hour < 24
            && d.minute < 60
            && d.second.is_none_or(|s| s < 60);
        ok.then_some(d)
    }

    fn write(&self, out: &mut Vec<u8>) {
        let _ = write!(
            out,
            "{:02}{:02}{:02}{:02}{:02}",
            self.year % 100,
            self.month,
            self.day,
            self.hour,
            self.minute
        );
        if let Some(s) = self.second {
            let _ = write!(out, "{s:02}");
        }
    }
}

/// The digit values of the first `N` bytes of `s` (at least `N` long), `None` unless all are
/// ASCII digits. `N` is a constant, so the test is one unrolled, branch-free pass.
#[inline]
fn digits<const N: usize>(s: &[u8]) -> Option<[u8; N]> {
    let s = s.first_chunk::<N>()?;
    let mut d = [0u8; N];
    let mut bad = false;
    for (v, &b) in d.iter_mut().zip(s) {
        *v = b.wrapping_sub(b'0');
        bad |= *v > 9;
    }
    (!bad).then_some(d)
}

/// The `stat:` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReceiptStat<'a> {
    /// DELIVRD.
    Delivered,
    /// EXPIRED.
    Expired,
    /// DELETED.
    Deleted,
    /// UNDELIV.
    Undeliverable,
    /// ACCEPTD.
    Accepted,
    /// UNKNOWN.
    Unknown,
    /// REJECTD.
    Rejected,
    /// ENROUTE.
    Enroute,
    /// Anything else, as received.
    Other(&'a [u8]),
}

impl<'a> ReceiptStat<'a> {
    /// Parses a stat word, case-insensitively, accepting common long spellings.
    pub fn parse(s: &'a [u8]) -> Self {
        // The spec's own words are all seven letters: compare them as one word each. Clearing
        // bit 5 upper-cases a letter and maps no other byte onto a letter, so a masked
        // compare against an all-letter word is an exact case-insensitive compare.
        if let Some(w) = s.first_chunk::<7>()
            && s.len() == 7
        {
            let mut word = [0u8; 8];
            word[..7].copy_from_slice(w);
            let v = u64::from_le_bytes(word) & 0x00DF_DFDF_DFDF_DFDF;
            let is = |k: &[u8; 7]| {
                let mut word = [0u8; 8];
                word[..7].copy_from_slice(k);
                v == u64::from_le_bytes(word)
            };
            let found = if is(b"DELIVRD") {
                Some(Self::Delivered)
            } else if is(b"UNDELIV") {
                Some(Self::Undeliverable)
            } else if is(b"EXPIRED") {
                Some(Self::Expired)
            } else if is(b"REJECTD") {
                Some(Self::Rejected)
            } else if is(b"ACCEPTD") {
                Some(Self::Accepted)
            } else if is(b"DELETED") {
                Some(Self::Deleted)
            } else if is(b"UNKNOWN") {
                Some(Self::Unknown)
            } else if is(b"ENROUTE") {
                Some(Self::Enroute)
            } else {
                None
            };
            return found.unwrap_or(Self::Other(s));
        }
        // Longer spellings: upper-case into a fixed buffer (the longest is 13 letters), then
        // one match on the bytes.
        const LONGEST: usize = 13;
        if s.len() > LONGEST {
            return Self::Other(s);
        }
        let mut up = [0u8; LONGEST];
        for (u, b) in up.iter_mut().zip(s) {
            *u = b.to_ascii_uppercase();
        }
        match &up[..s.len()] {
            b"DELIVRD" | b"DELIVERED" => Self::Delivered,
            b"EXPIRED" => Self::Expired,
            b"DELETED" => Self::Deleted,
            b"UNDELIV" | b"UNDELIVERABLE" | b"UNDELIVERED" => Self::Undeliverable,
            b"ACCEPTD" | b"ACCEPTED" => Self::Accepted,
            b"UNKNOWN" => Self::Unknown,
            b"REJECTD" | b"REJECTED" => Self::Rejected,
            b"ENROUTE" => Self::Enroute,
            _ => Self::Other(s),
        }
    }

    /// The 7-letter spec word.
    pub fn as_bytes(&self) -> &'a [u8] {
        match *self {
            Self::Delivered => b"DELIVRD",
            Self::Expired => b"EXPIRED",
            Self::Deleted => b"DELETED",
            Self::Undeliverable => b"UNDELIV",
            Self::Accepted => b"ACCEPTD",
            Self::Unknown => b"UNKNOWN",
            Self::Rejected => b"REJECTD",
            Self::Enroute => b"ENROUTE",
            Self::Other(s) => s,
        }
    }

    /// The equivalent message_state (`None` for unrecognised words).
    pub const fn message_state(&self) -> Option<MessageState> {
        Some(match self {
            Self::Delivered => MessageState::Delivered,
            Self::Expired => MessageState::Expired,
            Self::Deleted => MessageState::Deleted,
            Self::Undeliverable => MessageState::Undeliverable,
            Self::Accepted => MessageState::Accepted,
            Self::Unknown => MessageState::Unknown,
            Self::Rejected => MessageState::Rejected,
            Self::Enroute => MessageState::Enroute,
            Self::Other(_) => return None,
        })
    }

    /// The stat word for a message_state.
    pub const fn from_state(state: MessageState) -> Self {
        match state {
            MessageState::Delivered => Self::Delivered,
            MessageState::Expired => Self::Expired,
            MessageState::Deleted => Self::Deleted,
            MessageState::Undeliverable => Self::Undeliverable,
            MessageState::Accepted => Self::Accepted,
            MessageState::Rejected => Self::Rejected,
            MessageState::Enroute | MessageState::Scheduled => Self::Enroute,
            _ => Self::Unknown,
        }
    }
}

/// The fields of a receipt text; every one is optional because real SMSCs omit some.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct ReceiptText<'a> {
    /// `id:` the SMSC message id (hex or decimal: see [`super::message_id`]).
    pub id: Option<&'a [u8]>,
    /// `sub:` number of messages submitted.
    pub sub: Option<u32>,
    /// `dlvrd:` number delivered.
    pub dlvrd: Option<u32>,
    /// `submit date:`.
    pub submit_date: Option<ReceiptDate>,
    /// `done date:`.
    pub done_date: Option<ReceiptDate>,
    /// `stat:`.
    pub stat: Option<ReceiptStat<'a>>,
    /// `err:` network/SMSC error code, kept as text (some SMSCs use letters).
    pub err: Option<&'a [u8]>,
    /// `text:` the first characters of the original message (to the end of the input).
    pub text: Option<&'a [u8]>,
}

#[derive(Clone, Copy)]
enum Key {
    Id,
    Sub,
    Dlvrd,
    SubmitDate,
    DoneDate,
    Stat,
    Err,
    Text,
}

/// True when `w` starts with `key` (lowercase ASCII, at most 16 bytes), ignoring ASCII case.
///
/// One masked 16-byte compare: clearing bit 5 upper-cases a letter and maps no other byte
/// onto a letter, so at the key's letter positions `byte & 0xDF` equals the upper-case letter
/// exactly when the byte is that letter in either case; the other positions (`:`, ` `, `_`)
/// compare exactly. `N` and `key` are constants at each call, so the masks fold away.
#[inline(always)]
fn starts_with_key<const N: usize>(w: &[u8], key: &[u8; N]) -> bool {
    let Some(head) = w.first_chunk::<N>() else {
        return false;
    };
    let (mut bytes, mut mask, mut want) = ([0u8; 16], [0u8; 16], [0u8; 16]);
    let mut i = 0;
    while i < N && i < 16 {
        bytes[i] = head[i];
        mask[i] = if key[i].is_ascii_lowercase() {
            0xDF
        } else {
            0xFF
        };
        want[i] = key[i] & mask[i];
        i += 1;
    }
    u128::from_le_bytes(bytes) & u128::from_le_bytes(mask) == u128::from_le_bytes(want)
}

/// The key `w` starts with and its length. Dispatches on the first letter, so a word is
/// compared with at most four keys (`s`: sub, stat and the three submit-date spellings).
#[inline]
fn match_key(w: &[u8]) -> Option<(Key, usize)> {
    let first = w.first()?.to_ascii_lowercase();
    let found = match first {
        b'i' if starts_with_key(w, b"id:") => (Key::Id, 3),
        b's' => {
            if starts_with_key(w, b"sub:") {
                (Key::Sub, 4)
            } else if starts_with_key(w, b"stat:") {
                (Key::Stat, 5)
            } else if starts_with_key(w, b"submit date:") || starts_with_key(w, b"submit_date:") {
                (Key::SubmitDate, 12)
            } else if starts_with_key(w, b"submitdate:") {
                (Key::SubmitDate, 11)
            } else {
                return None;
            }
        }
        b'd' => {
            if starts_with_key(w, b"dlvrd:") {
                (Key::Dlvrd, 6)
            } else if starts_with_key(w, b"done date:") || starts_with_key(w, b"done_date:") {
                (Key::DoneDate, 10)
            } else if starts_with_key(w, b"donedate:") {
                (Key::DoneDate, 9)
            } else {
                return None;
            }
        }
        b'e' if starts_with_key(w, b"err:") => (Key::Err, 4),
        b't' if starts_with_key(w, b"text:") => (Key::Text, 5),
        _ => return None,
    };
    Some(found)
}

/// Index of the first ASCII whitespace in `s` at or after `i`, or `s.len()`.
///
/// Eight bytes at a time: a word with no byte below 0x21 has no whitespace (every ASCII
/// whitespace byte is ≤ 0x20), which is the common case for receipt values; otherwise the
/// bytes are checked one by one from the lowest flagged one (the "has a byte less than"
/// test is exact for the lowest byte it flags).
#[inline]
fn word_end(s: &[u8], mut i: usize) -> usize {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    while let Some(chunk) = s.get(i..).and_then(<[u8]>::first_chunk::<8>) {
        let w = u64::from_le_bytes(*chunk);
        let low = w.wrapping_sub(LO * 0x21) & !w & HI;
        if low != 0 {
            i += (low.trailing_zeros() / 8) as usize;
            break;
        }
        i += 8;
    }
    while i < s.len() && !s[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

/// A count of 1 to 9 digits.
fn parse_count(s: &[u8]) -> Option<u32> {
    if s.is_empty() || s.len() > 9 {
        return None;
    }
    let mut n = 0u32;
    for &b in s {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        n = n * 10 + u32::from(d);
    }
    Some(n)
}

impl<'a> ReceiptText<'a> {
    /// Parses receipt text. Never fails: unknown words are skipped, missing fields are
    /// `None`. Use [`Self::looks_like_receipt`] to decide whether it was a receipt at all.
    ///
    /// One pass over the bytes, no allocation: at each word start the first letter picks
    /// the few keys it could begin, the value runs to the next whitespace, and `text:`
    /// takes the rest.
    pub fn parse(s: &'a [u8]) -> Self {
        match Self::parse_canonical(s) {
            Some(r) => r,
            None => Self::parse_any(s),
        }
    }

    /// The Appendix B layout exactly as most centers send it (`id:… sub:… dlvrd:… submit
    /// date:… done date:… stat:… err:…[ text:…]`, lower-case keys, one space apart): each key
    /// is one fixed compare where it must be, instead of a key dispatch per word. `None` for
    /// any other layout, which [`Self::parse_any`] then reads; where this accepts, the two
    /// agree (the receipt fuzz test checks it).
    #[inline]
    fn parse_canonical(s: &'a [u8]) -> Option<Self> {
        /// The value starting at `at` (to the next whitespace) and where it ends, provided
        /// `key` starts at `at - key.len()`.
        #[inline(always)]
        fn field<'s, const N: usize>(
            s: &'s [u8],
            at: usize,
            key: &[u8; N],
        ) -> Option<(&'s [u8], usize)> {
            if s.get(at..)?.first_chunk::<N>()? != key {
                return None;
            }
            let start = at + N;
            let end = word_end(s, start);
            Some((&s[start..end], end))
        }
        let (id, at) = field(s, 0, b"id:")?;
        let (sub, at) = field(s, at, b" sub:")?;
        let (dlvrd, at) = field(s, at, b" dlvrd:")?;
        let (submit_date, at) = field(s, at, b" submit date:")?;
        let (done_date, at) = field(s, at, b" done date:")?;
        let (stat, at) = field(s, at, b" stat:")?;
        let (err, at) = field(s, at, b" err:")?;
        let text = if at == s.len() {
            None
        } else if s[at..].starts_with(b" text:") {
            Some(&s[at + 6..])
        } else {
            return None;
        };
        Some(Self {
            id: Some(id),
            sub: parse_count(sub),
            dlvrd: parse_count(dlvrd),
            submit_date: ReceiptDate::parse(submit_date),
            done_date: ReceiptDate::parse(done_date),
            stat: Some(ReceiptStat::parse(stat)),
            err: Some(err),
            text,
        })
    }

    /// Any layout: keys in any case and order, unknown words skipped. [`Self::parse`] gives
    /// the same result, faster for the canonical layout.
    pub fn parse_any(s: &'a [u8]) -> Self {
        let mut out = Self::default();
        let mut i = 0;
        while i < s.len() {
            if s[i].is_ascii_whitespace() {
                i += 1;
                continue;
            }
            let Some((key, key_len)) = match_key(&s[i..]) else {
                // Not a key: skip the word.
                i = word_end(s, i);
                continue;
            };
            let start = i + key_len;
            if let Key::Text = key {
                out.text = Some(&s[start..]);
                break;
            }
            let end = word_end(s, start);
            let v = &s[start..end];
            match key {
                Key::Id => out.id = Some(v),
                Key::Sub => out.sub = parse_count(v),
                Key::Dlvrd => out.dlvrd = parse_count(v),
                Key::SubmitDate => out.submit_date = ReceiptDate::parse(v),
                Key::DoneDate => out.done_date = ReceiptDate::parse(v),
                Key::Stat => out.stat = Some(ReceiptStat::parse(v)),
                Key::Err => out.err = Some(v),
                Key::Text => {}
            }
            i = end;
        }
        out
    }

    /// True when the text carried at least an id and a stat.
    pub const fn looks_like_receipt(&self) -> bool {
        self.id.is_some() && self.stat.is_some()
    }

    /// Appends the canonical text (present fields only, spec order and spelling, counts as
    /// three digits, dates as 10 or 12 digits).
    pub fn write(&self, out: &mut Vec<u8>) {
        let mut sep = false;
        let mut field = |out: &mut Vec<u8>, key: &[u8]| {
            if sep {
                out.push(b' ');
            }
            sep = true;
            out.extend_from_slice(key);
        };
        if let Some(id) = self.id {
            field(out, b"id:");
            out.extend_from_slice(id);
        }
        if let Some(n) = self.sub {
            field(out, b"sub:");
            let _ = write!(out, "{n:03}");
        }
        if let Some(n) = self.dlvrd {
            field(out, b"dlvrd:");
            let _ = write!(out, "{n:03}");
        }
        if let Some(d) = self.submit_date {
            field(out, b"submit date:");
            d.write(out);
        }
        if let Some(d) = self.done_date {
            field(out, b"done date:");
            d.write(out);
        }
        if let Some(st) = self.stat {
            field(out, b"stat:");
            out.extend_from_slice(st.as_bytes());
        }
        if let Some(e) = self.err {
            field(out, b"err:");
            out.extend_from_slice(e);
        }
        if let Some(t) = self.text {
            field(out, b"text:");
            out.extend_from_slice(t);
        }
    }

    /// The canonical text as a new vector.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(128);
        self.write(&mut v);
        v
    }
}

/// Receipt information extracted from a deliver_sm or data_sm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryReport<'a> {
    /// The SMSC message id being reported (TLV first, else text `id:`).
    pub message_id: &'a [u8],
    /// The state (TLV message_state first, else text `stat:`).
    pub state: Option<MessageState>,
    /// network_error_code TLV, when present.
    pub network_error: Option<NetworkErrorCode>,
    /// The parsed text, when the payload looked like a receipt.
    pub text: Option<ReceiptText<'a>>,
}

impl<'a> DeliveryReport<'a> {
    /// Extracts a receipt from a deliver_sm body: `None` when it is not a receipt (neither
    /// esm_class 0x04 nor receipted_message_id) or no message id can be found.
    pub fn from_sm(sm: &'a Sm) -> Option<Self> {
        let t = &sm.tlvs;
        Self::extract(sm.esm_class, t.receipted_message_id(), sm.payload(), || {
            (t.message_state(), t.network_error_code())
        })
    }

    /// The same for a deliver_sm read in place ([`SmRef`]): the text is parsed from the
    /// frame's short_message (or message_payload) slice, nothing is copied.
    #[inline]
    pub fn from_sm_ref(sm: &SmRef<'a>) -> Option<Self> {
        let t = sm.tlvs();
        if t.is_empty() {
            // The common receipt: everything is in the text.
            return Self::extract(sm.esm_class(), None, sm.short_message(), || (None, None));
        }
        Self::extract(
            sm.esm_class(),
            t.receipted_message_id(),
            sm.payload(),
            || (t.message_state(), t.network_error_code()),
        )
    }

    /// The same for a data_sm (text, if any, in message_payload).
    pub fn from_data_sm(ds: &'a DataSm) -> Option<Self> {
        let t = &ds.tlvs;
        let payload = t.message_payload().map_or(&[][..], |p| p.as_slice());
        Self::extract(ds.esm_class, t.receipted_message_id(), payload, || {
            (t.message_state(), t.network_error_code())
        })
    }

    /// The one extraction rule for every source: `tlv_id` is receipted_message_id, `tlv`
    /// gives message_state and network_error_code (asked only for a receipt).
    #[inline(always)]
    fn extract(
        esm_class: u8,
        tlv_id: Option<&'a [u8]>,
        payload: &'a [u8],
        tlv: impl FnOnce() -> (Option<MessageState>, Option<NetworkErrorCode>),
    ) -> Option<Self> {
        let is_receipt = esm_class & ESM_CLASS_TYPE_MASK == ESM_CLASS_DELIVERY_RECEIPT;
        if !is_receipt && tlv_id.is_none() {
            return None;
        }
        let parsed = ReceiptText::parse(payload);
        let text = (parsed.id.is_some() || parsed.stat.is_some()).then_some(parsed);
        let message_id = tlv_id.or(parsed.id)?;
        let (tlv_state, network_error) = tlv();
        let state = tlv_state.or_else(|| parsed.stat.and_then(|s| s.message_state()));
        Some(Self {
            message_id,
            state,
            network_error,
            text,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_spec_example() {
        let s = b"id:0123456789 sub:001 dlvrd:001 submit date:2511260153 done date:2511260154 stat:DELIVRD err:000 text:Hello world stat:X";
        let r = ReceiptText::parse(s);
        assert_eq!(r.id, Some(&b"0123456789"[..]));
        assert_eq!(r.sub, Some(1));
        assert_eq!(r.dlvrd, Some(1));
        assert_eq!(
            r.submit_date,
            Some(ReceiptDate {
                year: 2025,
                month: 11,
                day: 26,
                hour: 1,
                minute: 53,
                second: None
            })
        );
        assert_eq!(r.done_date.map(|d| d.minute), Some(54));
        assert_eq!(r.stat, Some(ReceiptStat::Delivered));
        assert_eq!(r.err, Some(&b"000"[..]));
        assert_eq!(r.text, Some(&b"Hello world stat:X"[..]));
        assert_eq!(r.to_vec(), s.to_vec());
    }

    #[test]
    fn key_match_is_exactly_ascii_case_insensitive() {
        fn check<const N: usize>(key: &[u8; N]) {
            for at in 0..N {
                for b in 0..=255u8 {
                    let mut w = *key;
                    w[at] = b;
                    assert_eq!(
                        starts_with_key(&w, key),
                        w.eq_ignore_ascii_case(key),
                        "{:?} byte {b:#04x} at {at}",
                        key.escape_ascii().to_string()
                    );
                }
            }
            assert!(!starts_with_key(&key[..N - 1], key));
        }
        check(b"id:");
        check(b"submit date:");
        check(b"submit_date:");
        check(b"done_date:");
        check(b"text:");
    }

    #[test]
    fn tolerates_case_variants_and_missing_fields() {
        let r = ReceiptText::parse(b"ID:1A2B Submit_Date:251126015359 DONE_DATE:bad Stat:undeliv");
        assert_eq!(r.id, Some(&b"1A2B"[..]));
        assert_eq!(r.submit_date.and_then(|d| d.second), Some(59));
        assert_eq!(r.done_date, None);
        assert_eq!(r.stat, Some(ReceiptStat::Undeliverable));
        assert_eq!(r.sub, None);
        assert_eq!(r.text, None);
        assert!(r.looks_like_receipt());
    }

    #[test]
    fn rejects_out_of_range_dates() {
        assert_eq!(ReceiptDate::parse(b"2513260153"), None);
        assert_eq!(ReceiptDate::parse(b"25112601"), None);
        assert!(ReceiptDate::parse(b"2511260153").is_some());
    }

    #[test]
    fn report_prefers_tlvs() {
        let mut sm = Sm {
            esm_class: 0x04,
            short_message: crate::smpp::Octets::from("id:99 stat:EXPIRED"),
            ..Sm::default()
        };
        let r = DeliveryReport::from_sm(&sm).unwrap();
        assert_eq!(r.message_id, b"99");
        assert_eq!(r.state, Some(MessageState::Expired));
        sm.tlvs.set_receipted_message_id(b"ABC");
        sm.tlvs.set_message_state(MessageState::Delivered);
        let r = DeliveryReport::from_sm(&sm).unwrap();
        assert_eq!(r.message_id, b"ABC");
        assert_eq!(r.state, Some(MessageState::Delivered));
        sm.esm_class = 0;
        sm.tlvs = Default::default();
        assert!(DeliveryReport::from_sm(&sm).is_none());
    }

    #[test]
    fn data_sm_receipt_from_payload_and_tlvs() {
        let mut ds = DataSm {
            esm_class: 0x04,
            ..DataSm::default()
        };
        ds.tlvs.push(
            crate::smpp::tlv::tags::MESSAGE_PAYLOAD,
            b"id:7 stat:UNDELIV err:011".to_vec(),
        );
        ds.tlvs.set_network_error_code(NetworkErrorCode {
            network_type: 3,
            error_code: 11,
        });
        let r = DeliveryReport::from_data_sm(&ds).unwrap();
        assert_eq!(r.message_id, b"7");
        assert_eq!(r.state, Some(MessageState::Undeliverable));
        assert_eq!(r.network_error.map(|n| n.error_code), Some(11));
    }
}

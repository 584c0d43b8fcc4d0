//! Arbitrary and mutated bytes never panic any SMPP decoder (the owned one and the borrowed
//! view, which must agree), and whatever decodes without tolerances re-encodes to the same
//! bytes.
//!
//! 100 000 inputs per decoder in the normal run, ten times more with SLUICE_FUZZ_LONG=1 (or
//! SLUICE_LONG_TESTS=1).
//! A seeded splitmix64 keeps it deterministic and cheap (proptest's per-case overhead would
//! dominate at these counts).

#[path = "smpp_common/mod.rs"]
mod common;

use bytes::Bytes;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use sluice_protocols::smpp::*;

fn cases() -> usize {
    if ["SLUICE_FUZZ_LONG", "SLUICE_LONG_TESTS"]
        .iter()
        .any(|k| std::env::var_os(k).is_some_and(|v| v == "1"))
    {
        1_000_000
    } else {
        100_000
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

const IDS: [u32; 28] = [
    0x8000_0000,
    1,
    0x8000_0001,
    2,
    0x8000_0002,
    3,
    0x8000_0003,
    4,
    0x8000_0004,
    5,
    0x8000_0005,
    6,
    0x8000_0006,
    7,
    0x8000_0007,
    8,
    0x8000_0008,
    9,
    0x8000_0009,
    0xB,
    0x15,
    0x8000_0015,
    0x21,
    0x8000_0021,
    0x102,
    0x103,
    0x8000_0103,
    0x104,
];

/// Decodes `b`, checks the invariants, returns whether it decoded.
fn exercise(b: &[u8]) -> bool {
    let framed = check(b, DEFAULT_MAX_LEN);
    let owned = decode(Bytes::copy_from_slice(b));
    let sliced = decode_slice(b);
    assert_eq!(owned, sliced);
    // The view: never a panic, and the owned decoder's answer after to_owned().
    let viewed = Frame::new(Bytes::copy_from_slice(b))
        .map_err(DecodeError::from)
        .and_then(|f| {
            let d = f.view()?;
            if let PduRef::DeliverSm(sm) = &d.pdu {
                let _ = DeliveryReport::from_sm_ref(sm);
            }
            d.to_owned()
        });
    assert_eq!(viewed, owned);
    match owned {
        Ok(d) => {
            assert_eq!(framed, Ok(Some(b.len())));
            let again = d.command.to_bytes().expect("decoded commands re-encode");
            let error_resp_body_dropped =
                !d.command.status.is_ok() && again.len() == HEADER_LEN && b.len() > HEADER_LEN;
            if d.tolerated.is_empty() && !error_resp_body_dropped {
                assert_eq!(&again[..], b, "{:?}", d.command);
            }
            // The re-encoding is always a conforming PDU equal to the decoded one.
            let d2 = decode(again).unwrap();
            assert!(
                Tolerated::UNKNOWN_INTERFACE_VERSION.contains(d2.tolerated)
                    || d.tolerated.contains(Tolerated::EMPTY_RESPONSE_BODY)
            );
            assert_eq!(d2.command, d.command);
            true
        }
        Err(e) => {
            let _ = e.response();
            let _ = e.to_string();
            false
        }
    }
}

#[test]
fn random_frames_with_known_ids() {
    let mut rng = Rng(1);
    let mut ok = 0;
    for _ in 0..cases() {
        let body_len = rng.below(120);
        let mut b = Vec::with_capacity(16 + body_len);
        b.extend_from_slice(&((16 + body_len) as u32).to_be_bytes());
        b.extend_from_slice(&IDS[rng.below(IDS.len())].to_be_bytes());
        let status: u32 = if rng.below(2) == 0 {
            0
        } else {
            rng.next() as u32
        };
        b.extend_from_slice(&status.to_be_bytes());
        b.extend_from_slice(&(rng.next() as u32).to_be_bytes());
        // Bias towards NULs and small values so fields line up often.
        for _ in 0..body_len {
            let v = rng.next();
            b.push(if v.is_multiple_of(3) {
                0
            } else {
                (v >> 8) as u8 % if v.is_multiple_of(5) { 255 } else { 4 }
            });
        }
        ok += usize::from(exercise(&b));
    }
    assert!(
        ok > cases() / 10,
        "only {ok} of the frames decoded: the generator is too hostile"
    );
}

#[test]
fn raw_random_bytes() {
    let mut rng = Rng(2);
    for _ in 0..cases() {
        let n = rng.below(64);
        let b = rng.bytes(n);
        exercise(&b);
        if let Ok(Some(len)) = check(&b, DEFAULT_MAX_LEN) {
            exercise(&b[..len]);
        }
    }
}

#[test]
fn mutated_valid_pdus() {
    let mut runner = TestRunner::deterministic();
    let strategy = common::command();
    let seeds: Vec<Vec<u8>> = (0..300)
        .map(|_| {
            let cmd = strategy.new_tree(&mut runner).unwrap().current();
            cmd.to_bytes().unwrap().to_vec()
        })
        .collect();
    let mut rng = Rng(3);
    for _ in 0..cases() {
        let mut b = seeds[rng.below(seeds.len())].clone();
        for _ in 0..=rng.below(3) {
            match rng.below(4) {
                0 if b.len() > 16 => {
                    let i = 16 + rng.below(b.len() - 16);
                    b[i] = rng.next() as u8;
                }
                1 if b.len() > 16 => {
                    let keep = 16 + rng.below(b.len() - 15);
                    b.truncate(keep);
                }
                2 => {
                    let n = rng.below(8);
                    b.extend_from_slice(&rng.bytes(n));
                }
                _ => {
                    let i = 16.min(b.len()) + rng.below(b.len().saturating_sub(16).max(1));
                    if i < b.len() {
                        b[i] = 0;
                    }
                }
            }
        }
        // Keep command_length honest half of the time so the body decoder is reached.
        if rng.below(2) == 0 && b.len() >= 4 {
            let len = (b.len() as u32).to_be_bytes();
            b[..4].copy_from_slice(&len);
        }
        exercise(&b);
    }
}

/// The canonical-layout fast path of `ReceiptText::parse` agrees with the general reader on
/// canonical receipts with random values and on small edits of them.
#[test]
fn canonical_receipts_parse_as_the_general_reader() {
    let mut rng = Rng(5);
    let values: [&[u8]; 10] = [
        b"",
        b"1A2B3C4D",
        b"001",
        b"2511260153",
        b"251126015359",
        b"DELIVRD",
        b"undeliv",
        b"000",
        b"x:y",
        b"99999999999",
    ];
    let keys: [&[u8]; 8] = [
        b"id:",
        b" sub:",
        b" dlvrd:",
        b" submit date:",
        b" done date:",
        b" stat:",
        b" err:",
        b" text:",
    ];
    let mut hits = 0;
    for _ in 0..cases() {
        let mut s = Vec::new();
        let n = if rng.below(2) == 0 { 7 } else { 8 };
        for key in &keys[..n] {
            s.extend_from_slice(key);
            s.extend_from_slice(values[rng.below(values.len())]);
        }
        if n == 8 && rng.below(2) == 0 {
            s.extend_from_slice(b" more text:here stat:X");
        }
        for _ in 0..rng.below(3) {
            if !s.is_empty() {
                let i = rng.below(s.len());
                s[i] = [b' ', b'\t', b':', b'A', b'0', 0][rng.below(6)];
            }
        }
        let fast = ReceiptText::parse(&s);
        assert_eq!(fast, ReceiptText::parse_any(&s), "{}", s.escape_ascii());
        hits += usize::from(fast.id.is_some() && fast.err.is_some());
    }
    assert!(hits > cases() / 4, "too few canonical receipts: {hits}");
}

#[test]
fn receipt_text_and_ids_never_panic() {
    let mut rng = Rng(4);
    let words: [&[u8]; 12] = [
        b"id:",
        b"sub:",
        b"dlvrd:",
        b"submit date:",
        b"done_date:",
        b"stat:",
        b"err:",
        b"text:",
        b" ",
        b"2511260153",
        b"DELIVRD",
        b"1A2B",
    ];
    for _ in 0..cases() {
        let mut s = Vec::new();
        for _ in 0..rng.below(12) {
            if rng.below(3) == 0 {
                let n = rng.below(6);
                s.extend_from_slice(&rng.bytes(n));
            } else {
                s.extend_from_slice(words[rng.below(words.len())]);
            }
        }
        let r = ReceiptText::parse(&s);
        assert_eq!(r, ReceiptText::parse_any(&s));
        let text = r.to_vec();
        // Re-parsing the canonical text gives the same fields.
        assert_eq!(ReceiptText::parse(&text).id.is_some(), r.id.is_some());
        for f in [
            IdFormat::Auto,
            IdFormat::Hex,
            IdFormat::Decimal,
            IdFormat::Text,
        ] {
            let _ = canonical_id(&s, f);
        }
    }
}

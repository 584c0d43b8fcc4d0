//! Bad input against the decoders the other fuzz files do not drive hard, and the length
//! fields every framing decoder must refuse before it buffers anything.
//!
//! - MM7: `mime::parse` and `soap::decode` on byte-level mutations of the real fixtures
//!   (random bytes alone never get past the first check), inputs up to 64 KB;
//! - SMPP `command_length`, CMPP `Total_Length` and the WSP headers-length uintvar claiming
//!   4 GB: an error from the header alone, nothing allocated for the body.
//!
//! Cases per decoder by default: 100 000 each (issue 18's default run), about 100 s for SOAP
//! (≈ 1 ms a case in a debug build: inputs up to 64 KB through an XML reader) and 25 s and
//! 10 s for the MIME bodies and content types. `SLUICE_FUZZ_LONG=1` runs 1 000 000 each (`SLUICE_LONG_TESTS=1`
//! also works, as in the SMPP and CMPP fuzz files) — use `--release` for that. No panic is the property; a wrong answer to garbage is not
//! checked here (the codec tests do that for valid input).

use bytes::BytesMut;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use sluice_protocols::cmpp::{self, Version};
use sluice_protocols::mm7::{mime, soap};
use sluice_protocols::smpp::{self, FrameError};
use sluice_protocols::wap::PushPdu;

/// Largest input fed to a decoder.
const MAX_INPUT: usize = 64 * 1024;

/// `default` cases, or 1 000 000 in the long run.
fn cases(default: u32) -> u32 {
    let long = ["SLUICE_FUZZ_LONG", "SLUICE_LONG_TESTS"]
        .iter()
        .any(|k| std::env::var(k).is_ok_and(|v| v == "1"));
    if long { 1_000_000 } else { default }
}

fn runner(default: u32) -> TestRunner {
    TestRunner::new(Config {
        cases: cases(default),
        // Garbage that panics shrinks fine; garbage that does not is not worth keeping.
        failure_persistence: None,
        ..Config::default()
    })
}

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/mm7_fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// One byte-level edit of a seed: flip, overwrite, insert, delete, duplicate a run, or
/// truncate.
#[derive(Debug, Clone)]
enum Edit {
    Set(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Repeat(usize, usize, usize),
    Truncate(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Set(i, b)),
        3 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, v)| Edit::Insert(i, v)),
        3 => (any::<usize>(), 1usize..64).prop_map(|(i, n)| Edit::Delete(i, n)),
        // Rare, and up to the 64 KB cap: long inputs cost more per case.
        1 => (any::<usize>(), 1usize..64, 1usize..2000).prop_map(|(i, n, k)| Edit::Repeat(i, n, k)),
        1 => any::<usize>().prop_map(Edit::Truncate),
    ]
}

/// `seed` with `edits` applied, capped at [`MAX_INPUT`].
fn mutate(seed: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for e in edits {
        let at = |i: usize, b: &Vec<u8>| if b.is_empty() { 0 } else { i % b.len() };
        match e {
            Edit::Set(i, v) => {
                let i = at(*i, &b);
                if let Some(x) = b.get_mut(i) {
                    *x = *v;
                }
            }
            Edit::Insert(i, v) => {
                let i = at(*i, &b);
                b.splice(i..i, v.iter().copied());
            }
            Edit::Delete(i, n) => {
                let i = at(*i, &b);
                let end = (i + n).min(b.len());
                b.drain(i..end);
            }
            Edit::Repeat(i, n, k) => {
                let i = at(*i, &b);
                let end = (i + n).min(b.len());
                let run = &b[i..end];
                let room = MAX_INPUT.saturating_sub(b.len()) / run.len().max(1);
                let more = run.repeat((*k).min(room));
                b.splice(end..end, more);
            }
            Edit::Truncate(i) => {
                let i = at(*i, &b);
                b.truncate(i);
            }
        }
    }
    b.truncate(MAX_INPUT);
    b
}

fn soap_seeds() -> Vec<Vec<u8>> {
    [
        "deliver_req.xml",
        "delivery_report_req.xml",
        "fault.xml",
        "rs_error_rsp.xml",
        "submit_rsp.xml",
        "submit_rsp_rel5_prefixed.xml",
    ]
    .iter()
    .map(|n| fixture(n))
    .collect()
}

#[test]
fn soap_decode_survives_mutated_envelopes() {
    let seeds = soap_seeds();
    let n = seeds.len();
    runner(100_000)
        .run(
            &(0..n, prop::collection::vec(edit(), 1..6)),
            |(s, edits)| {
                let _ = soap::decode(&mutate(&seeds[s], &edits));
                Ok(())
            },
        )
        .unwrap();
}

/// A multipart/related MM7 body (SOAP root + a nested multipart with text and binary) to
/// mutate, and its Content-Type.
fn mime_seed() -> (String, Vec<u8>) {
    use mime::{Part, TransferEncoding};
    let nested = mime::build_related(
        "inner",
        "text/plain",
        &[
            Part::new(
                "text/plain",
                TransferEncoding::EightBit,
                b"hello =\r\n".to_vec(),
            ),
            Part::new(
                "image/png",
                TransferEncoding::Base64,
                vec![0x89, 0x50, 0x4E, 0x47, 0, 1, 2],
            ),
        ],
    )
    .expect("nested");
    let built = mime::build_related(
        "outer",
        "text/xml",
        &[
            Part::new(
                "text/xml",
                TransferEncoding::EightBit,
                fixture("deliver_req.xml"),
            )
            .with_content_id("soap"),
            Part::new(&nested.content_type, TransferEncoding::Binary, nested.body),
        ],
    )
    .expect("outer");
    (built.content_type, built.body)
}

#[test]
fn mime_parse_survives_mutated_bodies() {
    let (ct, body) = mime_seed();
    runner(100_000)
        .run(&prop::collection::vec(edit(), 1..6), |edits| {
            let _ = mime::parse(&ct, &mutate(&body, &edits));
            Ok(())
        })
        .unwrap();
}

#[test]
fn mime_parse_survives_mutated_content_types() {
    let (ct, body) = mime_seed();
    runner(100_000)
        .run(&prop::collection::vec(edit(), 1..4), |edits| {
            let ct = String::from_utf8_lossy(&mutate(ct.as_bytes(), &edits)).into_owned();
            let _ = mime::parse(&ct, &body);
            Ok(())
        })
        .unwrap();
}

/// The first 16 bytes of an SMPP PDU whose `command_length` claims `len`.
fn smpp_header(len: u32) -> Vec<u8> {
    let mut b = Vec::new();
    for v in [len, 0x0000_0004, 0, 7] {
        b.extend_from_slice(&v.to_be_bytes());
    }
    b
}

#[test]
fn smpp_length_claiming_4_gb_is_refused_from_the_header() {
    for len in [u32::MAX, 0x8000_0000, (smpp::DEFAULT_MAX_LEN + 1) as u32] {
        let e = smpp::check(&smpp_header(len), smpp::DEFAULT_MAX_LEN).expect_err("too long");
        assert!(
            matches!(e, FrameError::TooLong { length, .. } if length == len),
            "{e:?}"
        );
        assert!(smpp::decode_slice(&smpp_header(len)).is_err());
    }
}

#[test]
fn cmpp_length_claiming_4_gb_is_refused_from_the_header() {
    for v in [Version::V20, Version::V30] {
        let mut head = Vec::new();
        for x in [u32::MAX, 0x0000_0004, 7] {
            head.extend_from_slice(&x.to_be_bytes());
        }
        let mut buf = BytesMut::from(&head[..]);
        let cap = buf.capacity();
        let e = cmpp::decode_frame(&mut buf, v, cmpp::DEFAULT_MAX_LENGTH).expect_err("too long");
        assert!(matches!(e, cmpp::FrameError::TooLong { .. }), "{e:?}");
        assert_eq!(buf.capacity(), cap, "nothing reserved for the claimed body");
        assert_eq!(buf.len(), head.len(), "nothing consumed");
    }
}

#[test]
fn wsp_headers_length_claiming_4_gb_is_refused() {
    // tid, PDU type push, uintvar 0xFFFFFFFF (five bytes), then almost nothing.
    let pdu = [0x01, 0x06, 0x8F, 0xFF, 0xFF, 0xFF, 0x7F, 0xAE, 0x00];
    assert!(PushPdu::parse(&pdu).is_err());
    // A uintvar longer than five bytes is refused too, not wrapped around.
    let pdu = [0x01, 0x06, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01, 0xAE];
    assert!(PushPdu::parse(&pdu).is_err());
}

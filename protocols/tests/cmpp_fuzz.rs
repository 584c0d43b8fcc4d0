//! Arbitrary and mutated bytes never panic any CMPP decoder; the borrowed SUBMIT view
//! agrees with the owned decoder on every frame.
//!
//! ≥ 100 000 cases per decoder and version in the default run; `SLUICE_FUZZ_LONG=1` (or
//! `SLUICE_LONG_TESTS=1`) multiplies that by 10. A deterministic xorshift generator keeps runs reproducible and
//! cheap (proptest's shrinking machinery is not needed to find panics).

use bytes::{Bytes, BytesMut};
use sluice_protocols::cmpp::*;

fn cases() -> usize {
    let base = 100_000;
    if ["SLUICE_FUZZ_LONG", "SLUICE_LONG_TESTS"]
        .iter()
        .any(|k| std::env::var(k).is_ok_and(|v| v == "1"))
    {
        base * 10
    } else {
        base
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

const COMMANDS: [u32; 16] = [
    0x1,
    0x8000_0001,
    0x2,
    0x8000_0002,
    0x4,
    0x8000_0004,
    0x5,
    0x8000_0005,
    0x6,
    0x8000_0006,
    0x7,
    0x8000_0007,
    0x8,
    0x8000_0008,
    0x9,
    0xDEAD,
];

/// Valid frames of every kind, to be mutated.
fn seeds(v: Version) -> Vec<Bytes> {
    let fs = |s: &str| FixedStr::<32>::new(s.as_bytes()).unwrap();
    let submit = Submit {
        dest_terminal_ids: vec![fs("13800138000"), fs("13900139000")],
        msg_content: Bytes::from_static(b"hello"),
        pk_total: 1,
        pk_number: 1,
        ..Submit::default()
    };
    let report = StatusReport {
        stat: FixedStr::new(b"DELIVRD").unwrap(),
        dest_terminal_id: fs("13800138000"),
        ..StatusReport::default()
    };
    let pdus = vec![
        Pdu::Connect(Connect::new(
            FixedStr::new(b"901234").unwrap(),
            b"s",
            v,
            1_126_015_307,
        )),
        Pdu::ConnectResp(ConnectResp {
            status: ConnectStatus::Ok,
            authenticator_ismg: [1; 16],
            version: v.byte(),
        }),
        Pdu::Submit(Box::new(submit)),
        Pdu::SubmitResp(SubmitResp {
            msg_id: MsgId(5),
            result: ResultCode::Success,
        }),
        Pdu::Deliver(Box::new(Deliver {
            content: DeliverContent::Report(report),
            ..Deliver::default()
        })),
        Pdu::Deliver(Box::new(Deliver {
            content: DeliverContent::Message(Bytes::from_static(b"mo text")),
            ..Deliver::default()
        })),
        Pdu::Query(Query::default()),
        Pdu::QueryResp(QueryResp::default()),
        Pdu::CancelResp(CancelResp { success_id: 0 }),
        Pdu::ActiveTestResp(ActiveTestResp::default()),
    ];
    pdus.iter().map(|p| p.to_bytes(1, v).unwrap()).collect()
}

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut v = seed.to_vec();
    match rng.below(4) {
        0 => {
            for _ in 0..1 + rng.below(4) {
                let i = rng.below(v.len());
                v[i] = rng.next() as u8;
            }
        }
        1 => v.truncate(rng.below(v.len() + 1)),
        2 => {
            let n = rng.below(40);
            v.extend(rng.bytes(n));
        }
        _ => {
            // Change a body byte and fix Total_Length so the frame stays well-framed.
            if v.len() > 12 {
                let i = 12 + rng.below(v.len() - 12);
                v[i] = rng.next() as u8;
            }
        }
    }
    // Keep Total_Length consistent half the time so body decoders get exercised.
    if v.len() >= 12 && rng.below(2) == 0 {
        let len = (v.len() as u32).to_be_bytes();
        v[..4].copy_from_slice(&len);
    }
    v
}

/// Feeds a byte stream through `decode_frame` until it needs more input or fails, and the
/// same stream through the view's framing: both must frame alike and decode alike.
fn drain(buf: &[u8], v: Version) {
    let mut b = BytesMut::from(buf);
    let mut vb = BytesMut::from(buf);
    loop {
        let owned = decode_frame(&mut b, v, DEFAULT_MAX_LENGTH);
        let framed = view::Frame::split(&mut vb, DEFAULT_MAX_LENGTH);
        let item = match (owned, framed) {
            (Ok(Some(item)), Ok(Some(frame))) => {
                let viewed = frame.view(v).map(|d| {
                    let _ = d.tolerated();
                    d.to_owned()
                });
                assert_eq!(viewed, item);
                item
            }
            (Ok(None), Ok(None)) => return,
            (Err(x), Err(y)) => {
                assert_eq!(x, y);
                return;
            }
            (a, f) => panic!("framing differs: {a:?} vs {f:?}"),
        };
        if let Err(e) = item {
            let _ = e.response(v);
            let _ = e.to_string();
        }
    }
}

#[test]
fn random_streams_never_panic() {
    for v in [Version::V20, Version::V30] {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..cases() {
            let n = rng.below(300);
            drain(&rng.bytes(n), v);
        }
    }
}

#[test]
fn random_bodies_for_every_command_never_panic() {
    for v in [Version::V20, Version::V30] {
        let mut rng = Rng(0xD1B5_4A32_D192_ED03);
        for _ in 0..cases() {
            let cmd = COMMANDS[rng.below(COMMANDS.len())];
            let n = rng.below(400);
            let body = Bytes::from(rng.bytes(n));
            let header = Header {
                total_length: (HEADER_LEN + body.len()) as u32,
                command_id: CommandId::from_raw(cmd),
                sequence_id: rng.next() as u32,
            };
            let frame = view::Frame::new(header, body.clone());
            let viewed = frame.view(v).map(|d| d.to_owned());
            let owned = Pdu::decode(header, body, v);
            assert_eq!(viewed, owned);
            match owned {
                Ok(d) => {
                    // Whatever decoded must re-encode or be refused cleanly, never panic.
                    let _ = d.pdu.to_bytes(1, v);
                }
                Err(e) => {
                    let _ = e.response(v);
                }
            }
        }
    }
}

#[test]
fn mutated_valid_frames_never_panic() {
    for v in [Version::V20, Version::V30] {
        let seeds = seeds(v);
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        for _ in 0..cases() {
            let seed = &seeds[rng.below(seeds.len())];
            let m = mutate(&mut rng, seed);
            drain(&m, v);
            let _ = decode_bytes(&Bytes::from(m), v, DEFAULT_MAX_LENGTH);
        }
    }
}

#[test]
fn random_msg_id_text_never_panics() {
    let mut rng = Rng(0x1234_5678_9ABC_DEF1);
    let alphabet = b"0123456789012345678901234567890123456789 -x";
    for _ in 0..cases() {
        let n = rng.below(25);
        let s: String = (0..n)
            .map(|_| alphabet[rng.below(alphabet.len())] as char)
            .collect();
        if let Ok(id) = s.parse::<MsgId>() {
            let _ = id.to_readable();
        }
        let _ = MsgId(rng.next()).parts();
    }
}

//! Codecs on the socket path: ours, rusmpp 0.4 and cmppprotocol 0.1 on the SAME bytes in the
//! same run, one criterion group per operation.
//!
//! Run: `cargo bench -p sluice-protocols --all-features --bench codec -- --warm-up-time 1
//! --measurement-time 3`. Throughput is reported in elements (PDUs) per second.
//!
//! "Decode" here is what a connection does with what it read: a read buffer (`BytesMut`)
//! holding [`FRAMES`] back-to-back PDUs, as one socket read leaves it, is drained through
//! each crate's `tokio_util` `Decoder` — framing, split off the buffer, decode, drop of the
//! decoded value — and the time is divided by [`FRAMES`]. Filling the buffer (the kernel's
//! copy in real life) happens in criterion's setup, outside the measured time.
//!
//! Time is the bench thread's CPU time (see `support/cpu_clock.rs`).

use std::hint::black_box;

#[path = "support/cpu_clock.rs"]
mod cpu_clock;

use bytes::{Bytes, BytesMut};
use cpu_clock::CpuTime;
use criterion::{
    BatchSize, BenchmarkGroup, Criterion, Throughput, criterion_group, criterion_main,
};
use rusmpp::tokio_codec::CommandCodec;
use sluice_protocols::cmpp;
use sluice_protocols::smpp::*;
use tokio_util::codec::{Decoder, Encoder};

/// PDUs per read buffer: a 64 KiB socket read holds a few hundred submit_sm; 64 keeps the
/// buffer in L1 while amortising the buffer's one shared-allocation promotion realistically.
const FRAMES: usize = 64;

fn submit_sm() -> Command {
    let mut tlvs = Tlvs::new();
    tlvs.set_sar(0x1234, 2, 1);
    Command::request(
        42,
        Pdu::SubmitSm(Sm {
            source: Address::new(5, 0, "sluice"),
            dest: Address::new(1, 1, "8613800138000"),
            registered_delivery: 1,
            data_coding: 0,
            short_message: Octets::from_static(
                b"Your verification code is 123456. It expires in 5 minutes. Do not share it.",
            ),
            tlvs,
            ..Sm::default()
        }),
    )
}

fn deliver_sm_dlr() -> Command {
    Command::request(
        43,
        Pdu::DeliverSm(Sm {
            source: Address::new(1, 1, "8613800138000"),
            dest: Address::new(5, 0, "sluice"),
            esm_class: ESM_CLASS_DELIVERY_RECEIPT,
            short_message: Octets::from_static(
                b"id:1A2B3C4D sub:001 dlvrd:001 submit date:2511260153 done date:2511260154 stat:DELIVRD err:000 text:Your verification",
            ),
            ..Sm::default()
        }),
    )
}

fn cmpp_submit() -> cmpp::Pdu {
    use cmpp::{FixedStr, MsgFmt, Submit};
    cmpp::Pdu::Submit(Box::new(Submit {
        pk_total: 1,
        pk_number: 1,
        registered_delivery: 1,
        service_id: FixedStr::new(b"MJS0019901").unwrap(),
        fee_user_type: 2,
        msg_fmt: MsgFmt::Ucs2,
        msg_src: FixedStr::new(b"901234").unwrap(),
        fee_type: FixedStr::new(b"01").unwrap(),
        fee_code: FixedStr::new(b"000000").unwrap(),
        src_id: FixedStr::new(b"1069001234").unwrap(),
        dest_terminal_ids: vec![FixedStr::new(b"13800138000").unwrap()],
        // 70 UCS-2 characters: a full single-part Chinese SMS.
        msg_content: Bytes::from(vec![0x4F; 140]),
        ..Submit::default()
    }))
}

/// A read buffer holding `FRAMES` copies of `frame`.
fn read_buffer(frame: &[u8]) -> BytesMut {
    let mut buf = BytesMut::with_capacity(frame.len() * FRAMES);
    for _ in 0..FRAMES {
        buf.extend_from_slice(frame);
    }
    buf
}

/// Drains a fresh read buffer of `frame`s through `decoder`, `inspect`ing each item.
fn bench_drain<D, F>(
    g: &mut BenchmarkGroup<'_, CpuTime>,
    name: &str,
    frame: &[u8],
    mut decoder: D,
    mut inspect: F,
) where
    D: Decoder,
    D::Error: std::fmt::Debug,
    F: FnMut(&D::Item),
{
    g.bench_function(name, |b| {
        b.iter_batched_ref(
            || read_buffer(frame),
            |buf| {
                let mut n = 0;
                while let Some(item) = decoder.decode(buf).unwrap() {
                    // By reference: the decoded value is looked at where the decoder left
                    // it, then dropped, as a session does.
                    inspect(black_box(&item));
                    n += 1;
                }
                assert_eq!(n, FRAMES);
            },
            BatchSize::SmallInput,
        )
    });
}

fn smpp(c: &mut Criterion<CpuTime>) {
    let submit = submit_sm();
    let submit_bytes = submit.to_bytes().unwrap();
    let dlr_bytes = deliver_sm_dlr().to_bytes().unwrap();
    let mut theirs = CommandCodec::new().with_max_length(DEFAULT_MAX_LEN);
    let their_submit = theirs
        .decode(&mut BytesMut::from(&submit_bytes[..]))
        .unwrap()
        .unwrap();

    let mut g = c.benchmark_group("smpp_submit_sm_encode");
    g.throughput(Throughput::Elements(1));
    let mut buf = BytesMut::with_capacity(4096);
    g.bench_function("sluice", |b| {
        b.iter(|| {
            buf.clear();
            black_box(&submit).encode(&mut buf).unwrap();
            black_box(buf.len())
        })
    });
    g.bench_function("rusmpp", |b| {
        b.iter(|| {
            buf.clear();
            theirs.encode(black_box(&their_submit), &mut buf).unwrap();
            black_box(buf.len())
        })
    });
    g.finish();

    let mut g = c.benchmark_group("smpp_submit_sm_decode");
    g.throughput(Throughput::Elements(FRAMES as u64));
    bench_drain(&mut g, "sluice", &submit_bytes, SmppCodec::default(), |c| {
        assert!(matches!(c.pdu, Pdu::SubmitSm(_)));
    });
    // The borrowed view: frames split off the same buffer, each read in place (every
    // C-octet string found, sm_length and the TLV lengths checked), nothing built.
    bench_drain(
        &mut g,
        "sluice_view",
        &submit_bytes,
        SmppViewCodec::default(),
        |f: &Frame| {
            let d = f.view().unwrap();
            assert!(matches!(d.pdu, PduRef::SubmitSm(_)));
        },
    );
    bench_drain(
        &mut g,
        "rusmpp",
        &submit_bytes,
        CommandCodec::new().with_max_length(DEFAULT_MAX_LEN),
        |_: &rusmpp::Command| (),
    );
    g.finish();

    let mut g = c.benchmark_group("smpp_deliver_sm_receipt_decode");
    g.throughput(Throughput::Elements(FRAMES as u64));
    bench_drain(&mut g, "sluice", &dlr_bytes, SmppCodec::default(), |c| {
        let Pdu::DeliverSm(sm) = &c.pdu else {
            unreachable!()
        };
        let r = DeliveryReport::from_sm(sm).unwrap();
        black_box((r.message_id.len(), r.state));
    });
    bench_drain(
        &mut g,
        "sluice_view",
        &dlr_bytes,
        SmppViewCodec::default(),
        |f: &Frame| {
            let d = f.view().unwrap();
            let PduRef::DeliverSm(sm) = &d.pdu else {
                unreachable!()
            };
            let r = DeliveryReport::from_sm_ref(sm).unwrap();
            black_box((r.message_id.len(), r.state));
        },
    );
    // rusmpp has no receipt-text parser: this is its deliver_sm decode alone.
    bench_drain(
        &mut g,
        "rusmpp_no_text",
        &dlr_bytes,
        CommandCodec::new().with_max_length(DEFAULT_MAX_LEN),
        |_: &rusmpp::Command| (),
    );
    g.finish();
}

fn cmpp(c: &mut Criterion<CpuTime>) {
    let pdu = cmpp_submit();
    let v20 = pdu.to_bytes(7, cmpp::Version::V20).unwrap();
    let v30 = pdu.to_bytes(7, cmpp::Version::V30).unwrap();
    let mut g = c.benchmark_group("cmpp_submit_decode");
    g.throughput(Throughput::Elements(FRAMES as u64));
    let is_submit = |d: &Result<cmpp::Decoded, cmpp::DecodeError>| {
        assert!(matches!(
            d,
            Ok(cmpp::Decoded {
                pdu: cmpp::Pdu::Submit(_),
                ..
            })
        ));
    };
    bench_drain(
        &mut g,
        "sluice_v20",
        &v20,
        cmpp::CmppCodec::new(cmpp::Version::V20),
        is_submit,
    );
    bench_drain(
        &mut g,
        "cmppprotocol_v20",
        &v20,
        cmppprotocol::CmppFrameCodec,
        |f| assert!(matches!(f.pdu, cmppprotocol::Pdu::Submit(_))),
    );
    // The borrowed view: the SUBMIT's bounds checked once; what an SP-facing intake reads
    // first (source, first destination, content) looked at, padding trimmed on access.
    let view = |v: cmpp::Version| {
        move |f: &cmpp::view::Frame| {
            let d = f.view(v).unwrap();
            let cmpp::PduRef::Submit(s) = &d.pdu else {
                unreachable!()
            };
            black_box((
                s.src_id().len(),
                s.dest_terminal_ids().next(),
                s.msg_content().len(),
            ));
        }
    };
    bench_drain(
        &mut g,
        "sluice_view_v20",
        &v20,
        cmpp::CmppViewCodec::new(cmpp::Version::V20),
        view(cmpp::Version::V20),
    );
    // cmppprotocol speaks 2.0 only.
    bench_drain(
        &mut g,
        "sluice_v30",
        &v30,
        cmpp::CmppCodec::new(cmpp::Version::V30),
        is_submit,
    );
    bench_drain(
        &mut g,
        "sluice_view_v30",
        &v30,
        cmpp::CmppViewCodec::new(cmpp::Version::V30),
        view(cmpp::Version::V30),
    );
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(CpuTime);
    targets = smpp, cmpp
}
criterion_main!(benches);

//! SMPP codec throughput: submit_sm encode/decode and deliver_sm receipt parsing, ours and
//! rusmpp 0.4 on the SAME bytes in the same run.
//!
//! Run: `cargo bench -p sluice-protocols --all-features --bench codec -- --warm-up-time 1
//! --measurement-time 3`. Throughput is reported in elements (PDUs) per second.
//!
//! Time is the bench thread's *CPU* time (CLOCK_THREAD_CPUTIME_ID via `cpu-time`), not wall
//! time: the development and CI machines run several builds at once on 2 cores, and wall time
//! there mostly measures the scheduler.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::measurement::{Measurement, ValueFormatter, WallTime};

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rusmpp::tokio_codec::CommandCodec;
use sluice_protocols::smpp::*;
use tokio_util::codec::{Decoder, Encoder};

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

fn bench(c: &mut Criterion<CpuTime>) {
    let submit = submit_sm();
    let submit_bytes = submit.to_bytes().unwrap();
    let dlr_bytes = deliver_sm_dlr().to_bytes().unwrap();
    let mut theirs = CommandCodec::new().with_max_length(DEFAULT_MAX_LEN);
    let their_submit = theirs
        .decode(&mut BytesMut::from(&submit_bytes[..]))
        .unwrap()
        .unwrap();

    let mut g = c.benchmark_group("smpp");
    g.throughput(Throughput::Elements(1));

    let mut buf = BytesMut::with_capacity(4096);
    g.bench_function("submit_sm_encode/ours", |b| {
        b.iter(|| {
            buf.clear();
            black_box(&submit).encode(&mut buf).unwrap();
            black_box(buf.len())
        })
    });
    g.bench_function("submit_sm_encode/rusmpp", |b| {
        b.iter(|| {
            buf.clear();
            theirs.encode(black_box(&their_submit), &mut buf).unwrap();
            black_box(buf.len())
        })
    });

    g.bench_function("submit_sm_decode/ours", |b| {
        b.iter(|| black_box(decode(black_box(submit_bytes.clone())).unwrap()))
    });
    // Both decoders fed from a socket-style BytesMut (includes one copy of the PDU each).
    let mut ours = SmppCodec::default();
    g.bench_function("submit_sm_decode_from_bytesmut/ours", |b| {
        b.iter(|| {
            let mut src = BytesMut::from(&submit_bytes[..]);
            black_box(ours.decode(&mut src).unwrap())
        })
    });
    g.bench_function("submit_sm_decode_from_bytesmut/rusmpp", |b| {
        b.iter(|| {
            let mut src = BytesMut::from(&submit_bytes[..]);
            black_box(theirs.decode(&mut src).unwrap())
        })
    });

    g.bench_function("deliver_sm_dlr_parse/ours", |b| {
        b.iter(|| {
            let d = decode(black_box(dlr_bytes.clone())).unwrap();
            let Pdu::DeliverSm(sm) = &d.command.pdu else {
                unreachable!()
            };
            let r = DeliveryReport::from_sm(sm).unwrap();
            black_box((r.message_id.len(), r.state));
        })
    });
    g.bench_function("deliver_sm_decode_from_bytesmut/ours", |b| {
        b.iter(|| {
            let mut src = BytesMut::from(&dlr_bytes[..]);
            black_box(ours.decode(&mut src).unwrap())
        })
    });
    g.bench_function("deliver_sm_decode_from_bytesmut/rusmpp", |b| {
        b.iter(|| {
            let mut src = BytesMut::from(&dlr_bytes[..]);
            black_box(theirs.decode(&mut src).unwrap())
        })
    });
    g.finish();
}

/// Criterion measurement: CPU time of the bench thread (CLOCK_THREAD_CPUTIME_ID), falling
/// back to wall time where the clock is unavailable.
struct CpuTime;

/// Start point of one sample.
enum Start {
    Cpu(cpu_time::ThreadTime),
    Wall(Instant),
}

static WALL: WallTime = WallTime;

impl Measurement for CpuTime {
    type Intermediate = Start;
    type Value = Duration;

    fn start(&self) -> Start {
        cpu_time::ThreadTime::try_now().map_or_else(|_| Start::Wall(Instant::now()), Start::Cpu)
    }
    fn end(&self, i: Start) -> Duration {
        match i {
            Start::Cpu(t) => t.try_elapsed().unwrap_or_default(),
            Start::Wall(t) => t.elapsed(),
        }
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        WALL.formatter()
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(CpuTime);
    targets = bench
}
criterion_main!(benches);

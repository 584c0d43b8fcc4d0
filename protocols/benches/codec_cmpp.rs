//! CMPP codec throughput: SUBMIT encode/decode on 2.0 and 3.0, DELIVER status-report decode.
//!
//! `cargo bench -p sluice-protocols --bench codec_cmpp -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice_protocols::cmpp::*;

fn submit() -> Pdu {
    Pdu::Submit(Box::new(Submit {
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

fn report() -> Pdu {
    Pdu::Deliver(Box::new(Deliver {
        msg_id: MsgId(0x0102_0304_0506_0708),
        dest_id: FixedStr::new(b"1069001234").unwrap(),
        service_id: FixedStr::new(b"MJS0019901").unwrap(),
        src_terminal_id: FixedStr::new(b"13800138000").unwrap(),
        content: DeliverContent::Report(StatusReport {
            msg_id: MsgId(0x1122_3344_5566_7788),
            stat: FixedStr::new(b"DELIVRD").unwrap(),
            submit_time: FixedStr::new(b"2611260153").unwrap(),
            done_time: FixedStr::new(b"2611260154").unwrap(),
            dest_terminal_id: FixedStr::new(b"13800138000").unwrap(),
            smsc_sequence: 42,
        }),
        ..Deliver::default()
    }))
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("cmpp");
    g.throughput(Throughput::Elements(1));
    for v in [Version::V20, Version::V30] {
        let tag = match v {
            Version::V20 => "v20",
            Version::V30 => "v30",
        };
        let pdu = submit();
        let mut buf = BytesMut::with_capacity(4096);
        g.bench_function(format!("submit_encode_{tag}"), |b| {
            b.iter(|| {
                buf.clear();
                black_box(&pdu).encode(7, v, &mut buf).unwrap();
                black_box(buf.len())
            })
        });
        let frame = pdu.to_bytes(7, v).unwrap();
        g.bench_function(format!("submit_decode_{tag}"), |b| {
            b.iter(|| decode_bytes(black_box(&frame), v, DEFAULT_MAX_LENGTH).unwrap())
        });
        let frame = report().to_bytes(9, v).unwrap();
        g.bench_function(format!("deliver_report_decode_{tag}"), |b| {
            b.iter(|| decode_bytes(black_box(&frame), v, DEFAULT_MAX_LENGTH).unwrap())
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

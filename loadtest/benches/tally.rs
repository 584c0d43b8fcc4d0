//! Per-message cost of the simulator's exact tally (it sits on the submit hot path):
//! single-part messages, and 3-part messages reassembled from UDH parts.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use sluice_loadtest::load::PayloadConfig;
use sluice_loadtest::tally::{Piece, Tally, split_udh};

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("tally");
    let single = PayloadConfig {
        chars: 60,
        ..Default::default()
    };
    let msgs: Vec<_> = (0..10_000u64)
        .map(|i| (single.dest(i), single.parts(i).remove(0).short_message))
        .collect();
    g.throughput(Throughput::Elements(msgs.len() as u64));
    g.bench_function("record_single_10k", |b| {
        b.iter_batched(
            Tally::new,
            |t| {
                for (dest, sm) in &msgs {
                    black_box(t.record(Piece {
                        source: b"10690001",
                        dest: dest.as_bytes(),
                        payload: sm,
                        concat: None,
                        udh: &[],
                        eight_bit: false,
                    }));
                }
                t
            },
            BatchSize::LargeInput,
        )
    });
    let long = PayloadConfig {
        chars: 400,
        ..Default::default()
    };
    let parts: Vec<_> = (0..3_000u64).flat_map(|i| long.parts(i)).collect();
    g.throughput(Throughput::Elements(parts.len() as u64));
    g.bench_function("record_udh_parts_3k_messages", |b| {
        b.iter_batched(
            Tally::new,
            |t| {
                for p in &parts {
                    let (concat, payload) = split_udh(&p.short_message);
                    black_box(t.record(Piece {
                        source: b"10690001",
                        dest: p.dest.as_bytes(),
                        payload,
                        concat,
                        udh: &[],
                        eight_bit: false,
                    }));
                }
                t
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

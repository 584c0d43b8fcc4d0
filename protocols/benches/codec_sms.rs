//! SMS content codecs: GSM 7-bit packing, encoding choice + splitting, WAP push encoding.
//!
//! Run: `cargo bench -p sluice-protocols --bench codec_sms -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice_protocols::sms::{ConcatScheme, EncodingSet, SplitOptions, choose, gsm7, split_text};
use sluice_protocols::wap::{PushDocument, PushOptions, ServiceIndication, wap_push_sms};

fn gsm_text(n: usize) -> String {
    "The quick brown fox jumps over the lazy dog {€5} 0123456789 "
        .chars()
        .cycle()
        .take(n)
        .collect()
}

fn ucs2_text(n: usize) -> String {
    "短信网关性能测试，包含表情😀和标点。"
        .chars()
        .cycle()
        .take(n)
        .collect()
}

fn bench(c: &mut Criterion) {
    let text160 = gsm_text(160);
    let septets = gsm7::encode_unpacked(&text160).unwrap();
    let mut g = c.benchmark_group("gsm7");
    g.throughput(Throughput::Elements(1));
    g.bench_function("pack_160_septets", |b| {
        b.iter(|| gsm7::pack(black_box(&septets), 0))
    });
    g.bench_function("encode_and_pack_160_chars", |b| {
        b.iter(|| gsm7::encode_packed(black_box(&text160)).unwrap())
    });
    g.finish();

    let opts = SplitOptions::new(ConcatScheme::Udh8, 7);
    let mut g = c.benchmark_group("choose_split_1000_chars");
    g.throughput(Throughput::Elements(1));
    for (name, text) in [("gsm7", gsm_text(1000)), ("ucs2", ucs2_text(1000))] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let t = black_box(text.as_str());
                let choice = choose(t, EncodingSet::SMPP_DEFAULT, ConcatScheme::Udh8).unwrap();
                split_text(t, choice.encoding, &opts).unwrap()
            })
        });
    }
    g.finish();

    let doc = PushDocument::Si(ServiceIndication {
        href: Some("http://www.sluice.com/offer/42".into()),
        text: "Your bill is ready".into(),
        ..Default::default()
    });
    c.bench_function("wap_push_sms_short_si", |b| {
        b.iter(|| wap_push_sms(black_box(&doc), 1, &PushOptions::default()).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);

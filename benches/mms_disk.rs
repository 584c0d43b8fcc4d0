//! Disk used by queued recipients of ONE MMS against the same number of queued SMS: the MMS
//! content is stored once (content-addressed), so per recipient an MMS record costs about
//! what an SMS record does (target: within 2×).
//!
//! Each run inserts `SLUICE_BENCH_RECIPIENTS` messages (default 1 000 000) in requests of
//! 10 000 — the campaign dispatcher's batch — into a fresh redb store, once as SMS (a 70-char
//! marketing text) and once as MMS (one 50 KB content, subject, the `multipart/related`
//! content type with its boundary), with the same tags a campaign puts on every message,
//! and prints the bytes on disk (allocated blocks of every file under the data directory,
//! content files included) and the bytes per recipient.
//!
//! Run: `cargo bench -p sluice --bench mms_disk` (set `SLUICE_BENCH_RECIPIENTS` for a
//! shorter run). Data lives under the system temp dir.

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use sluice::store::{
    AnyBackend, BackendKind, Lane, Message, MessageId, MessageKind, Op, Payload, Store,
    WriterConfig, open_store,
};

const NOW: u64 = 1_790_000_000_000;
const BATCH: u64 = 10_000;

/// Bytes allocated on disk by every file under `dir`.
fn disk_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir").flatten() {
            let md = e.metadata().expect("metadata");
            if md.is_dir() {
                stack.push(e.path());
            } else {
                total += md.blocks() * 512;
            }
        }
    }
    total
}

fn message(i: u64, payload: Payload, kind: MessageKind) -> Message {
    let mut m = Message::new(
        MessageId(i + 1),
        "campaigns",
        format!("+86138{:08}", i % 100_000_000),
        payload,
        if kind == MessageKind::Mms {
            "mmsc1"
        } else {
            "smsc1"
        },
        NOW,
        NOW,
    );
    m.kind = kind;
    m.lane = Lane::Marketing;
    m.from = Some("106900001234".into());
    m.client_ref = Some(format!("t7-s{i}-0"));
    m.tags.insert("task".into(), "7".into());
    m.tags.insert("group".into(), "A".into());
    m.tags.insert("subscriber".into(), i.to_string());
    m.tags.insert("bulk".into(), "3".into());
    m
}

fn fill(store: &Store<AnyBackend>, n: u64, payload: &Payload, kind: MessageKind) {
    let mut i = 0;
    while i < n {
        let end = (i + BATCH).min(n);
        let ops = (i..end)
            .map(|j| Op::Insert(Box::new(message(j, payload.clone(), kind))))
            .collect();
        store.submit_blocking(ops).expect("insert");
        i = end;
    }
}

fn main() {
    let n: u64 = std::env::var("SLUICE_BENCH_RECIPIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let sms = Payload::Text {
        text:
            "春季特惠：5GB流量包仅需10元，回复Y立即订购，回复TD退订。Spring offer: 5GB for 10 yuan."
                .into(),
        encoding: sluice::store::EncodingHint::Auto,
    };
    let mut results = Vec::new();
    for kind in [MessageKind::Sms, MessageKind::Mms] {
        let dir = tempfile::tempdir().expect("tempdir");
        let store =
            open_store(BackendKind::Redb, dir.path(), WriterConfig::default(), NOW).expect("open");
        let payload = if kind == MessageKind::Mms {
            // A 50 KB image plus text, as one stored content.
            let body: Vec<u8> = (0..50_000u32).map(|i| (i % 251) as u8).collect();
            let pin = store.put_content(&body).expect("put content");
            Payload::Mms {
                subject: Some("春季特惠 Spring offer".into()),
                content_type:
                    "multipart/related; boundary=\"sluice-mms-0123456789abcdef01234567\"; \
                               type=\"application/smil\"; start=\"<smil>\""
                        .into(),
                digest: *pin.digest(),
                size: pin.size(),
            }
        } else {
            sms.clone()
        };
        fill(&store, n, &payload, kind);
        drop(store);
        let bytes = disk_bytes(dir.path());
        let content = disk_bytes(&dir.path().join("content"));
        println!(
            "{kind:?}: {n} queued recipients, {bytes} bytes on disk ({:.1} MB), {:.0} bytes per recipient, content files {content} bytes",
            bytes as f64 / 1e6,
            bytes as f64 / n as f64
        );
        results.push(bytes as f64 / n as f64);
    }
    println!(
        "MMS / SMS per-recipient disk: {:.2}x (target ≤ 2x)",
        results[1] / results[0]
    );
}
